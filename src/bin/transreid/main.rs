//! The `transreid` command line: one module per command.

mod backend;
mod bench;
mod data;
mod demo;
mod embed;
mod eval;
mod explain;
mod export;
mod import;
mod import_clip;
mod inputs;
mod search;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "transreid",
    version,
    about = "TransReID object re-identification"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generates a synthetic set, trains a tiny TransReID (JPM + SIE) on it on the CPU, prints
    /// the metrics before and after, and writes the plots and a ranked list.
    Demo(demo::DemoArgs),
    /// Trains a model from a TOML configuration (see `configs/`).
    Train(train::TrainArgs),
    /// Benchmarks and the device check; each prints one JSON line.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Converts timm / `.pth` / reference weights into a TransReID checkpoint.
    Import(import::ImportArgs),
    /// Evaluates a checkpoint on a dataset's query / gallery split.
    Eval(eval::EvalArgs),
    /// Ranks a gallery against a query image: a ranked-list picture and JSON.
    Search(search::SearchArgs),
    /// Embeds image files (or every image of folders) into a safetensors file.
    Embed(embed::EmbedArgs),
    /// Shows which regions of a query and a gallery image made the model match them (or
    /// what one image's feature rests on): a picture with the maps overlaid, and the maps.
    Explain(explain::ExplainArgs),
    /// Exports a checkpoint as ONNX (onnxruntime, TensorRT, OpenVINO) with a dynamic batch;
    /// its `features` output is what `embed` gives.
    Export(export::ExportArgs),
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    transreid::allocator::keep_freed_memory();
    let result = match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Train(args) => train::run(args),
        Command::Bench { command } => bench::run(command),
        Command::Data { command } => data::run(command),
        Command::Import(args) => import::run(args),
        Command::Eval(args) => backend::on_backend(args.device, args),
        Command::Search(args) => backend::on_backend(args.model.device, args),
        Command::Embed(args) => backend::on_backend(args.model.device, args),
        Command::Explain(args) => backend::on_backend(args.model.device, args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_text(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause on its own line unless an earlier message already
/// quotes it (typed errors often include their cause in their own text).
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.is_empty() {
            text = message;
        } else if !text.contains(&message) {
            text.push_str("\n  because: ");
            text.push_str(&message);
        }
    }
    text
}

/// Writing to a closed pipe (`transreid data stats --json | head`) ends the process quietly, as
/// other command-line tools do, instead of panicking in `println!`.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let typed = anyhow::Error::new(io).context("cannot read a.toml: No such file");
        let error = typed.context("loading the run");
        assert_eq!(
            error_text(&error),
            "loading the run\n  because: cannot read a.toml: No such file"
        );
    }
}
