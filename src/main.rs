//! The `transreid` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use transreid::backend::CpuBackend;
use transreid::data::{
    load_dataset, DatasetKind, EvalLoader, ImageSize, LoadOptions, LoaderConfig, SynthConfig,
    TestTransform, TransformConfig,
};
use transreid::eval::EvalConfig;
use burn::module::AutodiffModule;
use transreid::inference::evaluate_model;
use transreid::loss::ObjectiveConfig;
use transreid::optim::SolverConfig;
use transreid::train::{train, TrainSettings};
use transreid::model::{
    load_imagenet, load_reference, save_checkpoint, ImportOptions, JpmConfig, SieConfig, SieMode,
    TransReidConfig, VitPreset,
};

#[derive(Parser)]
#[command(name = "transreid", version, about = "TransReID object re-identification")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generates a synthetic set, embeds it with a tiny TransReID (JPM + SIE) on the CPU and
    /// evaluates it.
    Demo {
        /// Working folder for the synthetic set and the run.
        #[arg(long, default_value = "demo-run")]
        out: PathBuf,
        /// Training epochs.
        #[arg(long, default_value_t = 40)]
        epochs: usize,
        /// Base learning rate (higher than the reference's 0.008: the demo trains from scratch).
        #[arg(long, default_value_t = 0.03)]
        lr: f64,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Converts timm / `.pth` / reference weights into a TransReID checkpoint.
    Import(ImportArgs),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Prints the statistics of a dataset.
    Stats {
        /// market1501, dukemtmc, msmt17, occluded-duke, veri776, vehicleid or custom.
        #[arg(long)]
        dataset: DatasetKind,
        /// The dataset folder.
        #[arg(long)]
        root: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Writes a synthetic re-identification set in the Market-1501 layout.
    Synth {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Identities per split (train and test).
        #[arg(long, default_value_t = 32)]
        ids: usize,
        /// Cameras.
        #[arg(long, default_value_t = 4)]
        cameras: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum SourceKind {
    /// An ImageNet ViT / DeiT backbone (timm key names).
    Imagenet,
    /// A trained TransReID checkpoint in the reference's layout.
    Reference,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The source weights (`.safetensors`, `.pth`).
    #[arg(long)]
    source: PathBuf,
    /// What the source holds.
    #[arg(long, value_enum)]
    kind: SourceKind,
    /// Output checkpoint (`.safetensors`).
    #[arg(long)]
    out: PathBuf,
    /// Backbone: vit_base16, deit_base16, deit_small16, vit_small_legacy, tiny.
    #[arg(long, default_value = "vit_base16")]
    preset: VitPreset,
    /// Image height and width.
    #[arg(long, num_args = 2, default_values_t = [256, 128])]
    size: Vec<usize>,
    /// Patch stride.
    #[arg(long, default_value_t = 16)]
    stride: usize,
    /// Training identities.
    #[arg(long)]
    num_classes: usize,
    /// Use the Jigsaw Patch Module.
    #[arg(long)]
    jpm: bool,
    /// Cameras for SIE (0: no camera embedding).
    #[arg(long, default_value_t = 0)]
    cameras: usize,
    /// Views for SIE (0: no view embedding).
    #[arg(long, default_value_t = 0)]
    views: usize,
    /// Load what matches and report the rest.
    #[arg(long)]
    allow_partial: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo { out, epochs, lr } => demo(out, epochs, lr),
        Command::Data { command: DataCommand::Stats { dataset, root, json } } => {
            let data = load_dataset(dataset, &root, &LoadOptions::default())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data.stats())?);
            } else {
                println!("{}", data.stats());
            }
            Ok(())
        }
        Command::Data { command: DataCommand::Synth { out, ids, cameras, seed } } => {
            let mut config = SynthConfig::new(&out);
            config.train_ids = ids;
            config.test_ids = ids;
            config.cameras = cameras;
            config.seed = seed;
            let summary = transreid::data::synth::generate(&config)?;
            println!("{summary:#?}");
            Ok(())
        }
        Command::Import(args) => import(args),
    }
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let sie_mode = match (args.cameras > 0, args.views > 0) {
        (true, true) => SieMode::CameraView,
        (true, false) => SieMode::Camera,
        (false, true) => SieMode::View,
        (false, false) => SieMode::None,
    };
    let size = [args.size[0], args.size[1]];
    let config = TransReidConfig::new(args.preset.config(size, [args.stride; 2]), args.num_classes)
        .with_sie(
            SieConfig::new()
                .with_mode(sie_mode)
                .with_camera_num(args.cameras.max(1))
                .with_view_num(args.views.max(1)),
        )
        .with_jpm(args.jpm.then(JpmConfig::new));
    config.validate()?;
    let device = Default::default();
    let mut model = config.init::<CpuBackend>(&device);
    let options = ImportOptions { allow_partial: args.allow_partial };
    let report = match args.kind {
        SourceKind::Imagenet => load_imagenet(&mut model, &args.source, options),
        SourceKind::Reference => load_reference(&mut model, &args.source, options),
    }
    .with_context(|| format!("importing {}", args.source.display()))?;
    save_checkpoint(&model, &config, &args.out)?;
    println!(
        "loaded {} tensors into {} (missing {:?}, unexpected {:?}, mismatched {:?})",
        report.loaded.len(),
        args.out.display(),
        report.missing,
        report.unexpected,
        report.mismatched
    );
    Ok(())
}

fn demo(out: PathBuf, epochs: usize, lr: f64) -> anyhow::Result<()> {
    let data_root = out.join("synthetic");
    let mut synth = SynthConfig::new(&data_root);
    synth.height = 128;
    synth.width = 64;
    let summary = transreid::data::synth::generate(&synth)?;
    println!(
        "synthetic set: {} train / {} query / {} gallery images, {} cameras",
        summary.train_images, summary.query_images, summary.gallery_images, summary.cameras
    );
    let dataset = load_dataset(DatasetKind::Market1501, &data_root, &LoadOptions::default())?;
    println!("{}", dataset.stats());

    let size = ImageSize { height: 128, width: 64 };
    let transforms = TransformConfig::person().with_size(size);
    let vit = VitPreset::Tiny.config([128, 64], [16, 16]);
    let config = TransReidConfig::new(vit, dataset.num_train_pids)
        .with_sie(SieConfig::new().with_mode(SieMode::Camera).with_camera_num(dataset.num_train_cams))
        .with_jpm(Some(JpmConfig::new()));
    let device = Default::default();
    <CpuBackend as burn::tensor::backend::Backend>::seed(&device, 0);
    let model = config.init::<burn::backend::Autodiff<CpuBackend>>(&device);

    let eval_loader = EvalLoader::from_dataset(
        &dataset,
        TestTransform::new(&transforms)?,
        64,
        LoaderConfig::default(),
    )?;
    let before = evaluate_model(&model.valid(), &eval_loader, &device, &EvalConfig::default())?;
    let settings = TrainSettings {
        epochs,
        batch_size: 32,
        instances: 4,
        solver: SolverConfig::new(lr),
        warmup_epochs: 2,
        objective: ObjectiveConfig::default(),
        eval_period: 5,
        seed: 0,
        workers: 2,
    };
    let run_dir = out.join("run");
    let (_, records) = train(model, &config, &dataset, &transforms, &settings, &run_dir, &device)?;
    let after = records.last().and_then(|r| r.metrics.clone()).context("no evaluation")?;
    println!("\n              mAP     mINP   Rank-1  Rank-5");
    for (name, m) in [("untrained", &before), ("trained", &after)] {
        println!(
            "{name:<10} {:>6.1}%  {:>6.1}%  {:>6.1}%  {:>6.1}%",
            m.map * 100.0,
            m.minp * 100.0,
            m.rank1().unwrap_or(0.0) * 100.0,
            m.rank5().unwrap_or(0.0) * 100.0
        );
    }
    println!("run folder: {}", run_dir.display());
    Ok(())
}
