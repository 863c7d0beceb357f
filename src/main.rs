//! The `transreid` command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use burn::module::AutodiffModule;
use clap::{Parser, Subcommand};
use transreid::backend::CpuBackend;
use transreid::data::{
    load_dataset, DatasetKind, EvalLoader, ImageSize, LoadOptions, LoaderConfig, Normalization,
    SynthConfig, TestTransform, TransformConfig,
};
use transreid::embedder::Embedder;
use transreid::eval::{EvalConfig, RerankConfig};
use transreid::inference::evaluate_model;
use transreid::inference::{embed_items, evaluate_features, model_transforms};
use transreid::loss::ObjectiveConfig;
use transreid::model::{
    load_checkpoint, load_imagenet, load_reference, save_checkpoint, write_safetensors, HostTensor,
    ImportOptions, JpmConfig, SieConfig, SieMode, StateDict, TransReidConfig, VitPreset,
};
use transreid::optim::SolverConfig;
use transreid::train::{train, TrainSettings};

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
    /// Evaluates a checkpoint on a dataset's query / gallery split.
    Eval {
        /// Checkpoint written by `train`, `demo` or `import`.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Dataset kind.
        #[arg(long)]
        dataset: DatasetKind,
        /// Dataset folder.
        #[arg(long)]
        root: PathBuf,
        /// k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3).
        #[arg(long)]
        rerank: bool,
        /// ImageNet normalisation (the DeiT configs of VeRi / VehicleID) instead of 0.5 / 0.5.
        #[arg(long)]
        imagenet_norm: bool,
    },
    /// Embeds image files (or every image of folders) into a safetensors file.
    Embed {
        /// Checkpoint.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Image files or folders.
        #[arg(long, num_args = 1.., required = true)]
        images: Vec<PathBuf>,
        /// Output `.safetensors`: `features` [N, dim]; the paths in the metadata key `paths`.
        #[arg(long)]
        out: PathBuf,
        /// Camera id of every image (needed by camera SIE models; default 0).
        #[arg(long)]
        camera: Option<i64>,
        /// ImageNet normalisation instead of 0.5 / 0.5.
        #[arg(long)]
        imagenet_norm: bool,
    },
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
        Command::Data {
            command:
                DataCommand::Stats {
                    dataset,
                    root,
                    json,
                },
        } => {
            let data = load_dataset(dataset, &root, &LoadOptions::default())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data.stats())?);
            } else {
                println!("{}", data.stats());
            }
            Ok(())
        }
        Command::Data {
            command:
                DataCommand::Synth {
                    out,
                    ids,
                    cameras,
                    seed,
                },
        } => {
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
        Command::Eval {
            checkpoint,
            dataset,
            root,
            rerank,
            imagenet_norm,
        } => eval(
            checkpoint,
            dataset,
            root,
            rerank,
            normalization(imagenet_norm),
        ),
        Command::Embed {
            checkpoint,
            images,
            out,
            camera,
            imagenet_norm,
        } => embed(
            checkpoint,
            images,
            out,
            camera,
            normalization(imagenet_norm),
        ),
    }
}

fn normalization(imagenet: bool) -> Normalization {
    if imagenet {
        Normalization::IMAGENET
    } else {
        Normalization::HALF
    }
}

fn eval(
    checkpoint: PathBuf,
    kind: DatasetKind,
    root: PathBuf,
    rerank: bool,
    normalization: Normalization,
) -> anyhow::Result<()> {
    let device = Default::default();
    let (model, config) = load_checkpoint::<CpuBackend>(&checkpoint, &device)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let dataset = load_dataset(kind, &root, &LoadOptions::default())?;
    let transforms = model_transforms(&config, normalization);
    let loader = EvalLoader::from_dataset(
        &dataset,
        TestTransform::new(&transforms)?,
        64,
        LoaderConfig::default(),
    )?;
    let features = embed_items(&model, &loader, &device)?;
    let rerank = rerank.then(RerankConfig::default);
    let metrics = evaluate_features(
        &features,
        loader.items(),
        loader.num_query(),
        rerank.as_ref(),
        &EvalConfig::default(),
    )?;
    println!("| mAP | mINP | Rank-1 | Rank-5 | Rank-10 |\n|---|---|---|---|---|");
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    println!(
        "| {} | {} | {} | {} | {} |",
        pct(Some(metrics.map)),
        pct(Some(metrics.minp)),
        pct(metrics.rank1()),
        pct(metrics.rank5()),
        pct(metrics.rank10())
    );
    println!(
        "{} valid queries, {} skipped",
        metrics.num_valid_queries, metrics.num_skipped_queries
    );
    Ok(())
}

fn embed(
    checkpoint: PathBuf,
    inputs: Vec<PathBuf>,
    out: PathBuf,
    camera: Option<i64>,
    normalization: Normalization,
) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&input)
                .with_context(|| format!("reading {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                    })
                })
                .collect();
            found.sort();
            paths.extend(found);
        } else {
            paths.push(input);
        }
    }
    anyhow::ensure!(!paths.is_empty(), "no images found");
    let device = Default::default();
    let embedder =
        Embedder::<CpuBackend>::from_checkpoint(&checkpoint, normalization, 32, &device)?;
    let cameras = camera.map(|c| vec![c; paths.len()]);
    let features = embedder.embed_paths(&paths, cameras.as_deref())?;
    let dim = embedder.dim();
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let tensors = StateDict::from([(
        "features".to_string(),
        HostTensor::new(vec![paths.len(), dim], features),
    )]);
    let metadata = BTreeMap::from([("paths".to_string(), serde_json::to_string(&names)?)]);
    write_safetensors(&out, &tensors, metadata)?;
    println!(
        "{} features of dimension {dim} -> {}",
        paths.len(),
        out.display()
    );
    Ok(())
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
    let options = ImportOptions {
        allow_partial: args.allow_partial,
    };
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

    let size = ImageSize {
        height: 128,
        width: 64,
    };
    let transforms = TransformConfig::person().with_size(size);
    let vit = VitPreset::Tiny.config([128, 64], [16, 16]);
    let config = TransReidConfig::new(vit, dataset.num_train_pids)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(dataset.num_train_cams),
        )
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
    let before = evaluate_model(
        &model.valid(),
        &eval_loader,
        &device,
        &EvalConfig::default(),
    )?;
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
    let (_, records) = train(
        model,
        &config,
        &dataset,
        &transforms,
        &settings,
        &run_dir,
        &device,
    )?;
    let after = records
        .last()
        .and_then(|r| r.metrics.clone())
        .context("no evaluation")?;
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
