//! The `transreid` command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use clap::{Parser, Subcommand};
use transreid::backend::{CpuBackend, TrainBackend};
use transreid::bench::{bench_inference, bench_train_step, BenchModel};
use transreid::config::{PatchStem, PrecisionSetting, RunConfig};
use transreid::data::{
    decode_rgb, load_dataset, DatasetKind, EvalLoader, ImageSize, LoadOptions, LoaderConfig,
    Normalization, SynthConfig, TestTransform, TransformConfig,
};
use transreid::device_check::check_device;
use transreid::embedder::Embedder;
use transreid::eval::{EvalConfig, RerankConfig};
use transreid::file_name::CameraSource;
use transreid::inference::evaluate_model;
use transreid::inference::{embed_items, evaluate_features, model_transforms};
use transreid::loss::ObjectiveConfig;
use transreid::model::{
    load_checkpoint, load_pretrained, save_checkpoint, write_safetensors, HostTensor,
    IcsStemConfig, ImportOptions, ImportReport, JpmConfig, Precision, PretrainGrid, SieConfig,
    SieMode, StateDict, TransReidConfig, VitPreset, WeightKind,
};
use transreid::optim::SolverConfig;
use transreid::output_path::{check_output, refuse_special_file};
use transreid::plot::plot_cmc;
use transreid::search::{draw_ranked_list, search};
use transreid::train::{train, TrainJob, TrainSettings, STATE_FILE};

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
    Demo {
        /// Working folder for the synthetic set and the run.
        #[arg(long, default_value = "demo-run")]
        out: PathBuf,
        /// Training epochs.
        #[arg(long, default_value_t = 120)]
        epochs: usize,
        /// Base learning rate (higher than the reference's 0.008: the demo trains from scratch).
        #[arg(long, default_value_t = 0.03)]
        lr: f64,
    },
    /// Trains a model from a TOML configuration (see `configs/`).
    Train(TrainArgs),
    /// Benchmarks: `bench train` times ViT-B/16 TransReID training steps at 256x128 and prints
    /// one JSON line (images/s, peak resident memory).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Converts timm / `.pth` / reference weights into a TransReID checkpoint.
    Import(ImportArgs),
    /// Evaluates a checkpoint on a dataset's query / gallery split.
    Eval(EvalArgs),
    /// Ranks a gallery folder against a query image: a ranked-list picture and JSON.
    Search(SearchArgs),
    /// Embeds image files (or every image of folders) into a safetensors file.
    Embed(EmbedArgs),
}

#[derive(clap::Args)]
struct EvalArgs {
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
    /// Input normalisation. Default: the one of the run's `config.toml` beside the checkpoint,
    /// else `half`.
    #[arg(long, value_enum)]
    normalization: Option<NormalizationChoice>,
    /// Also draw the CMC curve into this PNG file.
    #[arg(long)]
    cmc_plot: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    device: Device,
}

#[derive(clap::Args)]
struct EmbedArgs {
    /// Image files or folders.
    #[arg(long, num_args = 1.., required = true)]
    images: Vec<PathBuf>,
    /// Output `.safetensors`: `features` [N, dim]; the paths in the metadata key `paths`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: EmbedModelArgs,
}

/// The model of `embed` and `search` and the camera / view ids its images get.
#[derive(clap::Args)]
struct EmbedModelArgs {
    /// Checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Camera of every image, for camera SIE models: a 0-based id, or `name` to read each from
    /// its `<pid>_c<camera>…` file name (default: 0).
    #[arg(long)]
    camera: Option<CameraSource>,
    /// View id of every image, for view SIE models (VeRi-776 TransReID; default 0).
    #[arg(long)]
    view: Option<i64>,
    /// Input normalisation. Default: the one of the run's `config.toml` beside the checkpoint,
    /// else `half`.
    #[arg(long, value_enum)]
    normalization: Option<NormalizationChoice>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    device: Device,
}

impl EmbedModelArgs {
    fn embedder<B: Backend>(&self, device: &B::Device) -> anyhow::Result<Embedder<B>> {
        let normalization = input_normalization(&self.checkpoint, self.normalization)?;
        Ok(Embedder::from_checkpoint(
            &self.checkpoint,
            normalization,
            32,
            device,
        )?)
    }

    /// Embeds the image files at `paths` with their camera and view ids.
    fn embed_paths<B: Backend>(
        &self,
        embedder: &Embedder<B>,
        paths: &[PathBuf],
    ) -> anyhow::Result<Vec<f32>> {
        let cameras = self.camera.map(|c| c.camera_ids(paths)).transpose()?;
        let views = self.view.map(|v| vec![v; paths.len()]);
        Ok(embedder.embed_paths(paths, cameras.as_deref(), views.as_deref())?)
    }
}

/// A compute backend.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum Device {
    /// Burn's fast pure-Rust CPU backend.
    Flex,
    /// The ndarray CPU backend.
    Ndarray,
    /// wgpu (Vulkan / Metal / DX12).
    Wgpu,
    /// CUDA (NVIDIA GPUs).
    Cuda,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Run configuration (`configs/<dataset>/<name>.toml`). With `--resume`, defaults to the
    /// run folder's resolved `config.toml`.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    device: Device,
    /// Continue the run in this folder from its last finished epoch.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Override `dataset.root`.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Override `output_dir`.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Override the pretrained weights' path.
    #[arg(long)]
    pretrained: Option<PathBuf>,
    /// Override `solver.max_epochs`.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override `solver.workers`.
    #[arg(long)]
    workers: Option<usize>,
    /// Stop after this epoch (resume later with `--resume`).
    #[arg(long)]
    stop_after: Option<usize>,
    /// Override `solver.precision` (`auto`: bf16 on CUDA, f32 elsewhere).
    #[arg(long, value_enum)]
    precision: Option<PrecisionSetting>,
}

#[derive(clap::Args)]
struct SearchArgs {
    /// The query image.
    #[arg(long)]
    query: PathBuf,
    /// Gallery image files or folders.
    #[arg(long, num_args = 1.., required = true)]
    gallery: Vec<PathBuf>,
    /// How many gallery images to keep.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// The ranked-list picture (`.png`); the JSON goes beside it (`.json`).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: EmbedModelArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Training steps (forward, loss, backward, SGD) on random PK batches; prints a JSON line.
    Train {
        #[command(flatten)]
        model: BenchModelArgs,
        /// Images per step.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed steps, after one warm-up step.
        #[arg(long, default_value_t = 3)]
        steps: usize,
    },
    /// Batched embedding of random images; prints a JSON line.
    Infer {
        #[command(flatten)]
        model: BenchModelArgs,
        /// Images per forward.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed forwards, after one warm-up forward.
        #[arg(long, default_value_t = 3)]
        iters: usize,
    },
    /// Compares a device's eval features, loss and gradients with the reference
    /// implementation's on its tiny-model fixture; prints a JSON line, exits 1 if they differ.
    Check {
        /// Compute backend.
        #[arg(long, value_enum, default_value = "flex")]
        device: Device,
        /// Dtype of the products (`auto`: bf16 on CUDA, f32 elsewhere).
        #[arg(long, value_enum, default_value = "f32")]
        precision: PrecisionSetting,
        /// The fixture written by scripts/reference_model_fixture.py.
        #[arg(long, default_value = "tests/fixtures/reference_model.safetensors")]
        fixture: PathBuf,
    },
}

/// The benchmarked network and where it runs.
#[derive(clap::Args)]
struct BenchModelArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    device: Device,
    /// Backbone: vit_base16, deit_base16, deit_small16, vit_small16, vit_small_legacy, tiny.
    #[arg(long, default_value = "vit_base16")]
    backbone: VitPreset,
    /// Image height and width.
    #[arg(long, num_args = 2, default_values_t = [256, 128])]
    size: Vec<usize>,
    /// Patch stride.
    #[arg(long, default_value_t = 16)]
    stride: usize,
    /// Dtype of the products (`auto`: bf16 on CUDA, f32 elsewhere).
    #[arg(long, value_enum, default_value = "auto")]
    precision: PrecisionSetting,
}

impl BenchModelArgs {
    fn model(&self) -> anyhow::Result<BenchModel> {
        let model = BenchModel {
            backbone: self.backbone,
            size: [self.size[0], self.size[1]],
            stride: self.stride,
        };
        model.config().validate()?;
        Ok(model)
    }

    fn precision(&self) -> Precision {
        self.precision.resolve(self.device == Device::Cuda)
    }
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
    /// Whatever the keys say (the detected layout is printed).
    Auto,
    /// An ImageNet ViT / DeiT backbone: timm names or a Hugging Face transformers ViT.
    Imagenet,
    /// A self-supervised person backbone (PersonViT, TransReID-SSL): a DINO / iBOT training
    /// checkpoint (its teacher) or its flat conversion.
    SelfSupervised,
    /// A trained TransReID checkpoint in the reference's layout.
    Reference,
}

impl From<SourceKind> for WeightKind {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::Auto => WeightKind::Auto,
            SourceKind::Imagenet => WeightKind::Imagenet,
            SourceKind::SelfSupervised => WeightKind::SelfSupervised,
            SourceKind::Reference => WeightKind::Reference,
        }
    }
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The source weights (`.safetensors`, `.pth`).
    #[arg(long)]
    source: PathBuf,
    /// What the source holds; the file's keys decide its layout and must agree.
    #[arg(long, value_enum, default_value = "auto")]
    kind: SourceKind,
    /// Height / width ratio of the patch grid the source's position embedding was trained at
    /// (2 for LUPerson weights trained at 256x128), used when it is resized.
    #[arg(long, default_value_t = 1)]
    pretrain_hw_ratio: usize,
    /// Patch embedding of the model: `conv`, or TransReID-SSL's `ics` stem (stride 16).
    #[arg(long, value_enum, default_value = "conv")]
    stem: PatchStem,
    /// Output checkpoint (`.safetensors`).
    #[arg(long)]
    out: PathBuf,
    /// Backbone: vit_base16, deit_base16, deit_small16, vit_small16, vit_small_legacy, tiny.
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
    transreid::allocator::keep_freed_memory();
    match Cli::parse().command {
        Command::Demo { out, epochs, lr } => demo(out, epochs, lr),
        Command::Train(args) => train_command(args),
        Command::Bench { command } => bench_command(command),
        Command::Search(args) => on_backend(args.model.device, ForwardJob::Search(args)),
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
        Command::Eval(args) => on_backend(args.device, ForwardJob::Eval(args)),
        Command::Embed(args) => on_backend(args.model.device, ForwardJob::Embed(args)),
    }
}

/// The input normalisation a model was trained with.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum NormalizationChoice {
    /// Mean and std 0.5 (the ViT configs).
    Half,
    /// ImageNet mean and std (the DeiT configs of VeRi-776 / VehicleID).
    Imagenet,
}

/// The input normalisation for `checkpoint`: `chosen`, else the one of the run's `config.toml`
/// beside it (what `train` writes), else 0.5 / 0.5.
fn input_normalization(
    checkpoint: &Path,
    chosen: Option<NormalizationChoice>,
) -> anyhow::Result<Normalization> {
    match chosen {
        Some(NormalizationChoice::Half) => Ok(Normalization::HALF),
        Some(NormalizationChoice::Imagenet) => Ok(Normalization::IMAGENET),
        None => {
            let run_config = checkpoint.with_file_name(RUN_CONFIG_FILE);
            if !run_config.is_file() {
                return Ok(Normalization::HALF);
            }
            let config = RunConfig::from_file(&run_config).with_context(|| {
                format!(
                    "reading the input normalisation from {} (or give --normalization)",
                    run_config.display()
                )
            })?;
            Ok(config.input.normalization)
        }
    }
}

fn eval<B: Backend>(args: EvalArgs, device: &B::Device) -> anyhow::Result<()> {
    let EvalArgs {
        checkpoint,
        dataset: kind,
        root,
        rerank,
        normalization,
        cmc_plot,
        ..
    } = args;
    if let Some(plot) = &cmc_plot {
        check_output(plot, "png", &[&checkpoint])?;
    }
    let (model, config) = load_checkpoint::<B>(&checkpoint, device)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let dataset = load_dataset(kind, &root, &LoadOptions::default())?;
    let transforms = model_transforms(&config, input_normalization(&checkpoint, normalization)?);
    let loader = EvalLoader::from_dataset(
        &dataset,
        TestTransform::new(&transforms)?,
        64,
        LoaderConfig::default(),
    )?;
    let features = embed_items(&model, &loader, device)?;
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
    if let Some(plot) = cmc_plot {
        plot_cmc(&plot, &metrics.cmc, &format!("CMC, {}", kind.title()))?;
        println!("CMC curve -> {}", plot.display());
    }
    Ok(())
}

fn embed<B: Backend>(args: EmbedArgs, device: &B::Device) -> anyhow::Result<()> {
    let EmbedArgs { images, out, model } = args;
    let paths = list_images(&images)?;
    let inputs: Vec<&Path> = std::iter::once(model.checkpoint.as_path())
        .chain(paths.iter().map(PathBuf::as_path))
        .collect();
    check_output(&out, "safetensors", &inputs)?;
    let embedder = model.embedder::<B>(device)?;
    let features = model.embed_paths(&embedder, &paths)?;
    let dim = embedder.dim();
    if let Some(row) = features
        .chunks(dim.max(1))
        .position(|f| f.iter().any(|v| !v.is_finite()))
    {
        anyhow::bail!(
            "the features of {} are not finite (NaN or infinite): the checkpoint's weights are \
             probably corrupt; nothing was written",
            paths[row].display()
        );
    }
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

/// Image files of `inputs`: files as given, folders as their sorted `.jpg` / `.jpeg` / `.png`
/// files.
fn list_images(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
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
            paths.push(input.clone());
        }
    }
    anyhow::ensure!(!paths.is_empty(), "no images found in {inputs:?}");
    Ok(paths)
}

fn search_command<B: Backend>(args: SearchArgs, device: &B::Device) -> anyhow::Result<()> {
    let gallery = list_images(&args.gallery)?;
    anyhow::ensure!(args.top_k > 0, "--top-k must be positive");
    // The picture and, beside it, the same name in .json.
    let json_path = args.out.with_extension("json");
    let inputs: Vec<&Path> = [args.model.checkpoint.as_path(), args.query.as_path()]
        .into_iter()
        .chain(gallery.iter().map(PathBuf::as_path))
        .collect();
    check_output(&args.out, "png", &inputs)?;
    check_output(&json_path, "json", &inputs)?;
    let embedder = args.model.embedder::<B>(device)?;
    let query_image = decode_rgb(&args.query)?;
    let query_feature = args
        .model
        .embed_paths(&embedder, std::slice::from_ref(&args.query))?;
    let gallery_features = args.model.embed_paths(&embedder, &gallery)?;
    let result = search(
        &args.query,
        &query_feature,
        &gallery,
        &gallery_features,
        args.top_k,
    )?;
    let mut images = vec![query_image];
    for hit in &result.hits {
        images.push(decode_rgb(&hit.path)?);
    }
    draw_ranked_list(&args.out, &result, &images)?;
    write_atomic(
        &json_path,
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    for hit in &result.hits {
        let mark = match hit.is_match {
            Some(true) => " match",
            Some(false) => " -",
            None => "",
        };
        println!(
            "{:>3}  {:.4}  {}{mark}",
            hit.rank,
            hit.distance,
            hit.path.display()
        );
    }
    println!(
        "ranked list -> {}, {}",
        args.out.display(),
        json_path.display()
    );
    Ok(())
}

/// Writes a file through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    refuse_special_file(path)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn train_command(args: TrainArgs) -> anyhow::Result<()> {
    let config_path = match (&args.config, &args.resume) {
        (Some(path), _) => path.clone(),
        (None, Some(run_dir)) => run_dir.join(RUN_CONFIG_FILE),
        (None, None) => unreachable!("clap requires --config without --resume"),
    };
    let mut config = RunConfig::from_file(&config_path)?;
    if let Some(root) = args.root {
        config.dataset.root = root;
    }
    if let Some(dir) = args.output_dir {
        config.output_dir = dir;
    }
    if let Some(dir) = &args.resume {
        config.output_dir = dir.clone();
    }
    if let Some(path) = args.pretrained {
        config.model.pretrained = config.model.pretrained.with_path(path);
    }
    if let Some(epochs) = args.epochs {
        config.solver.max_epochs = epochs;
    }
    if let Some(workers) = args.workers {
        config.solver.workers = workers;
    }
    if let Some(precision) = args.precision {
        config.solver.precision = precision;
    }
    config.validate()?;
    let job = TrainOnBackend {
        config,
        resume: args.resume.is_some(),
        stop_after: args.stop_after,
        cuda: args.device == Device::Cuda,
    };
    on_backend(args.device, job)
}

/// Work generic over the backend, run on the one `--device` names.
trait BackendJob {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()>;
}

fn on_backend(device: Device, job: impl BackendJob) -> anyhow::Result<()> {
    match device {
        #[cfg(feature = "flex")]
        Device::Flex => job.run::<burn::backend::Flex>(Default::default()),
        #[cfg(feature = "ndarray")]
        Device::Ndarray => job.run::<burn::backend::NdArray>(Default::default()),
        #[cfg(feature = "wgpu")]
        Device::Wgpu => job.run::<burn::backend::Wgpu>(Default::default()),
        #[cfg(feature = "cuda")]
        Device::Cuda => job.run::<burn::backend::Cuda>(Default::default()),
        #[allow(unreachable_patterns)]
        other => {
            let name = format!("{other:?}").to_lowercase();
            anyhow::bail!(
                "this binary was built without the `{name}` feature: cargo build --release --features {name}"
            )
        }
    }
}

/// The commands that only run the model forward.
enum ForwardJob {
    Eval(EvalArgs),
    Embed(EmbedArgs),
    Search(SearchArgs),
}

impl BackendJob for ForwardJob {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        match self {
            Self::Eval(args) => eval::<B>(args, &device),
            Self::Embed(args) => embed::<B>(args, &device),
            Self::Search(args) => search_command::<B>(args, &device),
        }
    }
}

struct TrainOnBackend {
    config: RunConfig,
    resume: bool,
    stop_after: Option<usize>,
    /// Resolves `precision = "auto"`.
    cuda: bool,
}

impl BackendJob for TrainOnBackend {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let settings = self.config.train_settings(self.cuda);
        train_on::<B>(
            &self.config,
            &settings,
            self.resume,
            self.stop_after,
            device,
        )
    }
}

fn bench_command(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Train {
            model,
            batch,
            steps,
        } => {
            anyhow::ensure!(
                batch >= 8 && batch % 4 == 0,
                "--batch must be a multiple of 4, at least 8"
            );
            anyhow::ensure!(steps > 0, "--steps must be at least 1");
            let job = BenchJob::Train {
                model: model.model()?,
                precision: model.precision(),
                batch,
                steps,
            };
            on_backend(model.device, NamedBench(model.device, job))
        }
        BenchCommand::Infer {
            model,
            batch,
            iters,
        } => {
            anyhow::ensure!(
                batch > 0 && iters > 0,
                "--batch and --iters must be at least 1"
            );
            let job = BenchJob::Infer {
                model: model.model()?,
                precision: model.precision(),
                batch,
                iters,
            };
            on_backend(model.device, NamedBench(model.device, job))
        }
        BenchCommand::Check {
            device,
            precision,
            fixture,
        } => {
            let job = BenchJob::Check {
                precision: precision.resolve(device == Device::Cuda),
                fixture,
            };
            on_backend(device, NamedBench(device, job))
        }
    }
}

/// `transreid bench` on one backend; each prints one JSON line.
enum BenchJob {
    Train {
        model: BenchModel,
        precision: Precision,
        batch: usize,
        steps: usize,
    },
    Infer {
        model: BenchModel,
        precision: Precision,
        batch: usize,
        iters: usize,
    },
    Check {
        precision: Precision,
        fixture: PathBuf,
    },
}

/// A [`BenchJob`] and the name of its `--device`, for the JSON's `impl`.
struct NamedBench(Device, BenchJob);

impl BackendJob for NamedBench {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let backend = format!("{:?}", self.0).to_lowercase();
        let name = |precision: Precision| match precision {
            Precision::F32 => format!("burn-{backend}"),
            p => format!("burn-{backend}-{}", p.name()),
        };
        let (mut json, passed) = match self.1 {
            BenchJob::Train {
                model,
                precision,
                batch,
                steps,
            } => {
                let result =
                    bench_train_step::<TrainBackend<B>>(model, batch, steps, precision, &device);
                (serde_json::to_value(&result)?, true)
            }
            BenchJob::Infer {
                model,
                precision,
                batch,
                iters,
            } => {
                let result = bench_inference::<B>(model, batch, iters, precision, &device);
                (serde_json::to_value(&result)?, true)
            }
            BenchJob::Check { precision, fixture } => {
                let result = check_device::<TrainBackend<B>>(&fixture, precision, &device)
                    .with_context(|| format!("checking against {}", fixture.display()))?;
                (serde_json::to_value(&result)?, result.passed)
            }
        };
        let precision: Precision = serde_json::from_value(json["precision"].clone())?;
        json["impl"] = name(precision).into();
        println!("{json}");
        anyhow::ensure!(passed, "the device's numbers differ from the reference's");
        Ok(())
    }
}

/// The run folder's copy of the configuration it was started with.
const RUN_CONFIG_FILE: &str = "config.toml";

fn train_on<B: Backend>(
    config: &RunConfig,
    settings: &TrainSettings,
    resume: bool,
    stop_after: Option<usize>,
    device: B::Device,
) -> anyhow::Result<()> {
    let dataset = load_dataset(
        config.dataset.kind,
        &config.dataset.root,
        &config.dataset.options,
    )
    .with_context(|| format!("loading {}", config.dataset.root.display()))?;
    println!("{}", dataset.stats());
    let model_config = config.model_config_for(&dataset);
    model_config.validate()?;
    B::seed(&device, config.seed);
    let mut model = model_config.init::<TrainBackend<B>>(&device);
    let run_dir = &config.output_dir;
    if !resume {
        anyhow::ensure!(
            !run_dir.join(STATE_FILE).exists(),
            "{} already holds a run: resume it with --resume {} or choose another --output-dir",
            run_dir.display(),
            run_dir.display()
        );
        let loaded = config.load_pretrained(&mut model).with_context(|| {
            let path = config.model.pretrained.path().unwrap_or(Path::new(""));
            format!("loading pretrained weights {}", path.display())
        })?;
        if let Some(report) = loaded {
            print_import_report(&report);
        }
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        write_atomic(&run_dir.join(RUN_CONFIG_FILE), config.to_toml().as_bytes())?;
    }
    println!("precision: {}", settings.precision.name());
    let job = TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &config.input,
        settings,
        run_dir,
        resume,
        stop_after,
    };
    let (_, records) = train(model, &job, &device)?;
    if let Some(m) = records.iter().rev().find_map(|r| r.metrics.as_ref()) {
        println!(
            "last evaluation: mAP {:.1}%  mINP {:.1}%  Rank-1 {:.1}%  Rank-5 {:.1}%",
            m.map * 100.0,
            m.minp * 100.0,
            m.rank1().unwrap_or(0.0) * 100.0,
            m.rank5().unwrap_or(0.0) * 100.0
        );
    }
    println!("run folder: {}", run_dir.display());
    Ok(())
}

fn print_import_report(report: &ImportReport) {
    if let Some(layout) = report.layout {
        println!("detected {layout}");
    }
    if let Some((from, to)) = report.pos_embed_resized {
        println!("position embedding resized from {from} to {to} tokens");
    }
    if report.dropped_dist_token {
        println!("distillation token dropped");
    }
    println!("{} tensors loaded", report.loaded.len());
    for (what, keys) in [
        ("missing", &report.missing),
        ("unexpected", &report.unexpected),
    ] {
        if !keys.is_empty() {
            println!(
                "{} {what} (left as initialised): {}",
                keys.len(),
                keys.join(", ")
            );
        }
    }
    for (key, model, file) in &report.mismatched {
        println!("skipped {key}: model {model:?}, file {file:?}");
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
    let vit = args
        .preset
        .config(size, [args.stride; 2])
        .with_stem((args.stem == PatchStem::Ics).then(IcsStemConfig::new));
    let config = TransReidConfig::new(vit, args.num_classes)
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
    anyhow::ensure!(
        args.pretrain_hw_ratio >= 1,
        "--pretrain-hw-ratio must be at least 1"
    );
    let options = ImportOptions {
        allow_partial: args.allow_partial,
    };
    let grid = PretrainGrid::HwRatio(args.pretrain_hw_ratio);
    let report = load_pretrained(&mut model, &args.source, args.kind.into(), grid, options)
        .with_context(|| format!("importing {}", args.source.display()))?;
    print_import_report(&report);
    save_checkpoint(&model, &config, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn demo(out: PathBuf, epochs: usize, lr: f64) -> anyhow::Result<()> {
    let data_root = out.join("synthetic");
    // The demo owns its folder: the set of a previous run is regenerated (it is deterministic).
    if data_root.exists() {
        std::fs::remove_dir_all(&data_root)
            .with_context(|| format!("removing the previous demo set {}", data_root.display()))?;
    }
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
    CpuBackend::seed(&device, 0);
    let model = config.init::<TrainBackend<CpuBackend>>(&device);

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
        checkpoint_period: 1,
        eval_batch_size: 64,
        seed: 0,
        workers: 2,
        precision: Precision::F32,
    };
    let run_dir = out.join("run");
    // The demo owns its folder: a previous demo run is replaced.
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("removing the previous demo run {}", run_dir.display()))?;
    }
    let job = TrainJob {
        model_config: &config,
        dataset: &dataset,
        transforms: &transforms,
        settings: &settings,
        run_dir: &run_dir,
        resume: false,
        stop_after: None,
    };
    let (model, records) = train(model, &job, &device)?;
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

    // A ranked list for the first query, with the trained model.
    let features = embed_items(&model.valid(), &eval_loader, &device)?;
    let dim = features.len() / eval_loader.items().len();
    let nq = eval_loader.num_query();
    let paths: Vec<PathBuf> = eval_loader.items().iter().map(|i| i.path.clone()).collect();
    let result = search(
        &paths[0],
        &features[..dim],
        &paths[nq..],
        &features[nq * dim..],
        10,
    )?;
    let mut images = vec![decode_rgb(&paths[0])?];
    for hit in &result.hits {
        images.push(decode_rgb(&hit.path)?);
    }
    let ranked = run_dir.join("ranked_list.png");
    draw_ranked_list(&ranked, &result, &images)?;
    println!(
        "run folder: {} (metrics.csv, training.png, ranked_list.png, checkpoint.safetensors)",
        run_dir.display()
    );
    Ok(())
}
