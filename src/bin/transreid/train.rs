//! `transreid train`: a run from a TOML configuration, or the continuation of one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use burn::tensor::backend::Backend;
use transreid::backend::TrainBackend;
use transreid::config::{PrecisionSetting, RunConfig};
use transreid::data::ReidDataset;
use transreid::data::{load_dataset, DataError, ImageCheck};
use transreid::distributed::{Collective, SingleProcess};
use transreid::inference::InferenceError;
use transreid::input_normalization::RUN_CONFIG_FILE;
use transreid::model::{
    clip_openai_dict, load_clip_pretrained, read_state_dict, ClipArchitecture, ClipLayout,
    ClipReid, ImportError, TransReid,
};
use transreid::train::{
    check_clip_reid_job, check_clip_reid_ranks_agree, check_job, check_ranks_agree,
    train_clip_reid, train_parallel, ClipReidJob, EpochRecord, ParallelOptions, TrainError,
    TrainJob, TrainSettings, METRICS_FILE, PLOT_FILE, PROMPT_METRICS_FILE, PROMPT_STATE_FILE,
    STATE_FILE,
};

use crate::backend::{on_backend_at, BackendJob, Device};
use crate::import::print_import_report;
use crate::inputs::write_atomic;

#[derive(clap::Args)]
pub struct TrainArgs {
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
    /// Override `solver.max_epochs`. With `--resume`, a larger value extends the run (the
    /// cosine schedule is recomputed for the new length from the next epoch on).
    #[arg(long)]
    epochs: Option<usize>,
    /// Override `solver.workers`.
    #[arg(long)]
    workers: Option<usize>,
    /// Stop after this epoch (resume later with `--resume`); for CLIP-ReID, an epoch of the
    /// second stage.
    #[arg(long)]
    stop_after: Option<usize>,
    /// CLIP-ReID: stop after this epoch of the first stage (the prompts).
    #[arg(long)]
    stop_after_prompts: Option<usize>,
    /// Override `solver.precision` (`auto`: bf16 on CUDA, f32 elsewhere).
    #[arg(long, value_enum)]
    precision: Option<PrecisionSetting>,
    /// Override `solver.accumulate`: micro-batches per step (gradient accumulation).
    #[arg(long)]
    accumulate: Option<usize>,
    /// Under `mpirun` / `srun`: megabytes of gradients per all-reduce call.
    #[arg(long, default_value_t = 25)]
    bucket_mb: usize,
    /// Under `mpirun` / `srun`: end the job when a step does not complete in this many seconds
    /// (a rank died or hangs).
    #[arg(long, default_value_t = 600)]
    step_timeout: u64,
    /// Under `mpirun` / `srun` with `--device cuda` or `wgpu`: GPUs per node; local rank `r`
    /// uses GPU `r % gpus-per-node`. Default: the devices in CUDA_VISIBLE_DEVICES, else the
    /// NVIDIA devices of /dev, else 1.
    #[arg(long)]
    gpus_per_node: Option<usize>,
}

/// The processes of this run: MPI's world when started by an MPI launcher, else this one.
pub struct Ranks {
    pub collective: Box<dyn Collective>,
    local_rank: usize,
}

impl Ranks {
    pub fn start() -> anyhow::Result<Self> {
        #[cfg(feature = "mpi")]
        if transreid::distributed::launched_by_mpi() {
            let mpi = transreid::distributed::MpiCollective::init()?;
            let local_rank = mpi.local_rank();
            return Ok(Self {
                collective: Box::new(mpi),
                local_rank,
            });
        }
        #[cfg(not(feature = "mpi"))]
        anyhow::ensure!(
            !["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
                .iter()
                .any(|var| std::env::var_os(var).is_some()),
            "started by an MPI launcher, but this binary was built without the `mpi` feature: \
             every process would train alone into the same folder (cargo build --release \
             --features mpi)"
        );
        Ok(Self {
            collective: Box::new(SingleProcess),
            local_rank: 0,
        })
    }
}

/// GPUs on this node, when not given.
fn visible_gpus() -> usize {
    if let Ok(list) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return list
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .count()
            .max(1);
    }
    let nvidia = std::fs::read_dir("/dev").map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("nvidia")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
            .count()
    });
    nvidia.max(1)
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config_path = match (&args.config, &args.resume) {
        (Some(path), _) => path.clone(),
        (None, Some(run_dir)) => {
            // --resume takes the run's output folder, which holds its config.toml.
            anyhow::ensure!(
                !run_dir.is_file(),
                "--resume takes a run folder (the output_dir of a training run), not a file: {}",
                run_dir.display()
            );
            anyhow::ensure!(
                run_dir.is_dir(),
                "--resume {}: no such run folder (give the output_dir of a training run)",
                run_dir.display()
            );
            let config = run_dir.join(RUN_CONFIG_FILE);
            anyhow::ensure!(
                config.is_file(),
                "--resume {}: not a run folder (no {RUN_CONFIG_FILE}; give the output_dir of a \
                 training run)",
                run_dir.display()
            );
            config
        }
        (None, None) => anyhow::bail!("give --config, or --resume with a run folder"),
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
        anyhow::ensure!(epochs > 0, "--epochs must be at least 1");
        config.solver.max_epochs = epochs;
    }
    if let Some(workers) = args.workers {
        config.solver.workers = workers;
    }
    if let Some(precision) = args.precision {
        config.solver.precision = precision;
    }
    if let Some(accumulate) = args.accumulate {
        config.solver.accumulate = accumulate;
    }
    if let Some(stop_after) = args.stop_after {
        anyhow::ensure!(stop_after > 0, "--stop-after must be at least 1");
    }
    if let Some(stop_after) = args.stop_after_prompts {
        anyhow::ensure!(stop_after > 0, "--stop-after-prompts must be at least 1");
        anyhow::ensure!(
            config
                .clip_reid
                .as_ref()
                .is_some_and(|c| c.prompts.is_some()),
            "--stop-after-prompts is for CLIP-ReID runs with a prompt stage ([clip_reid.prompts])"
        );
    }
    anyhow::ensure!(
        args.bucket_mb > 0 && args.step_timeout > 0,
        "--bucket-mb and --step-timeout must be at least 1"
    );
    config.validate()?;
    let ranks = Ranks::start()?;
    let gpus = args.gpus_per_node.unwrap_or_else(visible_gpus).max(1);
    let device_index = ranks.local_rank % gpus;
    let world = ranks.collective.world();
    if world > 1 && matches!(args.device, Device::Cuda | Device::Wgpu) {
        println!(
            "rank {} of {world}: GPU {device_index} of {gpus} on this node",
            ranks.collective.rank()
        );
    }
    let job = RunJob {
        config,
        resume: args.resume.is_some(),
        stop_after: args.stop_after,
        prompt_stop_after: args.stop_after_prompts,
        cuda: args.device == Device::Cuda,
        collective: ranks.collective,
        parallel: ParallelOptions {
            bucket_bytes: args.bucket_mb << 20,
            step_timeout: Duration::from_secs(args.step_timeout),
        },
    };
    on_backend_at(args.device, device_index, job)
}

/// A run on one backend: what `train` and `demo` do.
pub struct RunJob {
    pub config: RunConfig,
    pub resume: bool,
    pub stop_after: Option<usize>,
    /// CLIP-ReID: stop after this epoch of the first stage.
    pub prompt_stop_after: Option<usize>,
    /// Resolves `precision = "auto"`.
    pub cuda: bool,
    /// The ranks of the run.
    pub collective: Box<dyn Collective>,
    pub parallel: ParallelOptions,
}

impl BackendJob for RunJob {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        if self.config.clip_reid.is_some() {
            run_clip_reid_on::<B>(self, device).map(|_| ())
        } else {
            run_on::<B>(self, device).map(|_| ())
        }
    }
}

/// Paths of a run folder's configuration resolve the same from any working directory.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// Runs `job` and returns the trained model and the epoch records.
pub fn run_on<B: Backend>(
    mut job: RunJob,
    device: B::Device,
) -> anyhow::Result<(TransReid<TrainBackend<B>>, Vec<EpochRecord>)> {
    let dataset = prepare(&mut job)?;
    let config = &job.config;
    let settings = config.train_settings(job.cuda);
    let run_dir = &config.output_dir;
    let writer = job.collective.rank() == 0;
    let model_config = config.model_config_for(&dataset);
    model_config.validate()?;
    B::seed(&device, config.seed);
    let mut model = model_config.init::<TrainBackend<B>>(&device);
    if !job.resume {
        let loaded = config.load_pretrained(&mut model).with_context(|| {
            let path = config.model.pretrained.path().unwrap_or(Path::new(""));
            format!("loading pretrained weights {}", path.display())
        })?;
        if let Some(report) = loaded.filter(|_| writer) {
            print_import_report(&report);
        }
    }
    if writer {
        print_layout(&settings, job.collective.world());
    }
    let train_job = TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &config.input,
        settings: &settings,
        run_dir,
        resume: job.resume,
        stop_after: job.stop_after,
    };
    // A run that cannot start or continue is refused before its configuration is (re)written;
    // an extended run (`--resume --epochs N`) then keeps its new length.
    check_job(&train_job, job.collective.world())?;
    if job.collective.world() > 1 {
        check_ranks_agree(&train_job, job.collective.as_ref())?;
    }
    if writer {
        start_writing(config, run_dir)?;
    }
    let result = train_parallel(
        model,
        &train_job,
        &device,
        job.collective.as_ref(),
        &job.parallel,
    );
    finish(result, config, writer)
}

/// Resolves the configuration's paths and loads the dataset.
fn prepare(job: &mut RunJob) -> anyhow::Result<ReidDataset> {
    let config = &mut job.config;
    config.dataset.root = absolute(&config.dataset.root)?;
    if let Some(path) = config.model.pretrained.path() {
        config.model.pretrained = config.model.pretrained.with_path(absolute(path)?);
    }
    let config = &job.config;
    let dataset = load_dataset(
        config.dataset.kind,
        &config.dataset.root,
        &config.dataset.options,
    )
    .with_context(|| format!("loading {}", config.dataset.root.display()))?;
    if job.collective.rank() == 0 {
        println!("{}", dataset.stats());
    }
    Ok(dataset)
}

/// The precision and how a step is split.
fn print_layout<O>(settings: &TrainSettings<O>, world: usize) {
    println!("precision: {}", settings.precision.name());
    if world > 1 || settings.accumulate > 1 {
        println!(
            "{world} rank(s) x {} micro-batch(es) of {} images per step",
            settings.accumulate,
            settings.batch_size / (world * settings.accumulate)
        );
    }
}

/// Creates the run folder, writes its configuration and reports interrupts (rank 0).
fn start_writing(config: &RunConfig, run_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    write_atomic(&run_dir.join(RUN_CONFIG_FILE), config.to_toml().as_bytes())?;
    report_interrupt(run_dir);
    Ok(())
}

/// Reports a finished run, or cleans up after one that ended before its first state.
fn finish<M>(
    result: Result<(M, Vec<EpochRecord>), TrainError>,
    config: &RunConfig,
    writer: bool,
) -> anyhow::Result<(M, Vec<EpochRecord>)> {
    let run_dir = &config.output_dir;
    let (model, records) = match result {
        Ok(done) => done,
        Err(error) => {
            let error = anyhow::Error::from(error);
            let states = [STATE_FILE, PROMPT_STATE_FILE];
            if writer && !states.iter().any(|name| run_dir.join(name).exists()) {
                // No epoch ended: the files this run wrote describe nothing.
                for name in [
                    RUN_CONFIG_FILE,
                    METRICS_FILE,
                    PLOT_FILE,
                    PROMPT_METRICS_FILE,
                ] {
                    let _ = std::fs::remove_file(run_dir.join(name));
                }
                let _ = std::fs::remove_dir(run_dir); // only when nothing else is in it
            }
            let unreadable = error.chain().any(|cause| {
                matches!(
                    data_error_in(cause),
                    Some(
                        DataError::Truncated { .. }
                            | DataError::Decode { .. }
                            | DataError::EmptyFile { .. }
                            | DataError::EmptyImage { .. }
                            | DataError::ImageTooLarge { .. }
                    )
                )
            });
            if unreadable && config.dataset.options.image_check == ImageCheck::None {
                return Err(error.context(
                    "an image of the dataset cannot be read: set `options = { image_check = \
                     \"skip-unreadable\" }` under [dataset] in the configuration to leave such \
                     images out (\"verify\" lists them all before training)",
                ));
            }
            return Err(error);
        }
    };
    if !writer {
        return Ok((model, records));
    }
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
    Ok((model, records))
}

/// Runs a CLIP-ReID `job` (both stages, or the baseline) and returns the trained model and the
/// second stage's records.
pub fn run_clip_reid_on<B: Backend>(
    mut job: RunJob,
    device: B::Device,
) -> anyhow::Result<(ClipReid<TrainBackend<B>>, Vec<EpochRecord>)> {
    let dataset = prepare(&mut job)?;
    let config = &job.config;
    let section = config
        .clip_reid
        .as_ref()
        .context("not a CLIP-ReID configuration (no [clip_reid])")?;
    let settings = config.clip_train_settings(job.cuda);
    let run_dir = &config.output_dir;
    let writer = job.collective.rank() == 0;
    let path = config
        .model
        .pretrained
        .path()
        .context("a CLIP-ReID run starts from CLIP weights (model.pretrained)")?;
    let loading = || format!("loading CLIP weights {}", path.display());
    let (dict, _) = read_state_dict(path).with_context(loading)?;
    let (layout, openai) = clip_openai_dict(&dict).with_context(loading)?;
    let architecture = ClipArchitecture::from_openai(&openai).with_context(loading)?;
    if section.prompts.is_some() && architecture.text.is_none() {
        let key = "ln_final.weight".to_string();
        return Err(ImportError::NoTextTower { layout, key }).with_context(loading);
    }
    let model_config = config.clip_model_config(&architecture, &dataset);
    model_config.validate()?;
    B::seed(&device, config.seed);
    let mut model = model_config.init::<TrainBackend<B>>(&device);
    // Loaded on a resume too: stage 1's state holds the prompts alone, and stage 2's
    // replaces every tensor.
    load_clip_pretrained(&mut model, layout, &openai).with_context(loading)?;
    if writer {
        let n = config.input.normalization;
        println!(
            "CLIP weights ({layout:?} layout): width {}, {} blocks, patch {}, projection {}, {}; \
             input normalisation mean {:?} std {:?} ([input] of the configuration)",
            architecture.width,
            architecture.layers,
            architecture.patch_size,
            architecture.output_dim,
            if model_config.text.is_some() {
                "text tower loaded for the prompts"
            } else {
                "image tower only (the baseline)"
            },
            n.mean,
            n.std
        );
        if layout == ClipLayout::ClipReid {
            println!(
                "a trained CLIP-ReID model: its encoders{} are loaded; the heads, SIE table and \
                 learned prompts start afresh",
                if model_config.text.is_some() {
                    " and fixed prompt tokens"
                } else {
                    ""
                }
            );
        }
        print_layout(&settings, job.collective.world());
    }
    let stage2 = TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &config.input,
        settings: &settings,
        run_dir,
        resume: job.resume,
        stop_after: job.stop_after,
    };
    let clip_job = ClipReidJob {
        stage2,
        prompts: section.prompts.as_ref(),
        prompt_stop_after: job.prompt_stop_after,
    };
    check_clip_reid_job(&clip_job, job.collective.world())?;
    if job.collective.world() > 1 {
        check_clip_reid_ranks_agree(&clip_job, job.collective.as_ref())?;
    }
    if writer {
        start_writing(config, run_dir)?;
    }
    let result = train_clip_reid(
        model,
        &clip_job,
        &device,
        job.collective.as_ref(),
        &job.parallel,
    );
    finish(result, config, writer)
}

/// On Ctrl-C, says where the run stopped and how to continue it, then ends the process (status
/// 130). Every file of the run is written atomically, so the run folder holds the state of the
/// last finished epoch; the epoch under way is lost.
fn report_interrupt(run_dir: &Path) {
    #[cfg(unix)]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static INTERRUPTED: AtomicBool = AtomicBool::new(false);
        extern "C" fn on_interrupt(_: libc::c_int) {
            INTERRUPTED.store(true, Ordering::SeqCst);
        }
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                libc::SIGINT,
                on_interrupt as *const () as libc::sighandler_t,
            );
        }
        let run_dir = run_dir.to_path_buf();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            if INTERRUPTED.load(Ordering::SeqCst) {
                let done = std::fs::read_to_string(run_dir.join(METRICS_FILE))
                    .map(|csv| csv.lines().count().saturating_sub(1))
                    .unwrap_or(0);
                if run_dir.join(STATE_FILE).exists() {
                    eprintln!(
                        "\ninterrupted: {done} epoch(s) are saved in {}; continue with \
                         `transreid train --resume {}` (the epoch under way is lost)",
                        run_dir.display(),
                        run_dir.display()
                    );
                } else {
                    eprintln!(
                        "\ninterrupted before the first epoch ended: nothing to resume in {}",
                        run_dir.display()
                    );
                }
                std::process::exit(130);
            }
        });
    }
    #[cfg(not(unix))]
    let _ = run_dir;
}

/// The data error `cause` is or wraps: `#[error(transparent)]` wrappers hand on their inner
/// error's source, not the inner error itself, so an error chain never shows it.
fn data_error_in<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a DataError> {
    if let Some(error) = cause.downcast_ref::<DataError>() {
        return Some(error);
    }
    match (
        cause.downcast_ref::<TrainError>(),
        cause.downcast_ref::<InferenceError>(),
    ) {
        (Some(TrainError::Data(e)), _)
        | (Some(TrainError::Inference(InferenceError::Data(e))), _)
        | (_, Some(InferenceError::Data(e))) => Some(e),
        _ => None,
    }
}
