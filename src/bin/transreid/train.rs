//! `transreid train`: a run from a TOML configuration, or the continuation of one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use transreid::backend::TrainBackend;
use transreid::config::{PrecisionSetting, RunConfig};
use transreid::data::load_dataset;
use transreid::input_normalization::RUN_CONFIG_FILE;
use transreid::model::TransReid;
use transreid::train::{check_job, train, EpochRecord, TrainJob, STATE_FILE};

use crate::backend::{on_backend, BackendJob, Device};
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
    /// Stop after this epoch (resume later with `--resume`).
    #[arg(long)]
    stop_after: Option<usize>,
    /// Override `solver.precision` (`auto`: bf16 on CUDA, f32 elsewhere).
    #[arg(long, value_enum)]
    precision: Option<PrecisionSetting>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config_path = match (&args.config, &args.resume) {
        (Some(path), _) => path.clone(),
        (None, Some(run_dir)) => run_dir.join(RUN_CONFIG_FILE),
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
        config.solver.max_epochs = epochs;
    }
    if let Some(workers) = args.workers {
        config.solver.workers = workers;
    }
    if let Some(precision) = args.precision {
        config.solver.precision = precision;
    }
    if let Some(stop_after) = args.stop_after {
        anyhow::ensure!(stop_after > 0, "--stop-after must be at least 1");
    }
    config.validate()?;
    let job = RunJob {
        config,
        resume: args.resume.is_some(),
        stop_after: args.stop_after,
        cuda: args.device == Device::Cuda,
    };
    on_backend(args.device, job)
}

/// A run on one backend: what `train` and `demo` do.
pub struct RunJob {
    pub config: RunConfig,
    pub resume: bool,
    pub stop_after: Option<usize>,
    /// Resolves `precision = "auto"`.
    pub cuda: bool,
}

impl BackendJob for RunJob {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        run_on::<B>(self, device).map(|_| ())
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
    let config = &mut job.config;
    config.dataset.root = absolute(&config.dataset.root)?;
    if let Some(path) = config.model.pretrained.path() {
        config.model.pretrained = config.model.pretrained.with_path(absolute(path)?);
    }
    let config = &job.config;
    let settings = config.train_settings(job.cuda);
    let run_dir = &config.output_dir;
    if !job.resume {
        anyhow::ensure!(
            !run_dir.join(STATE_FILE).exists(),
            "{} already holds a run: resume it with --resume {} or choose another --output-dir",
            run_dir.display(),
            run_dir.display()
        );
    }
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
    if !job.resume {
        let loaded = config.load_pretrained(&mut model).with_context(|| {
            let path = config.model.pretrained.path().unwrap_or(Path::new(""));
            format!("loading pretrained weights {}", path.display())
        })?;
        if let Some(report) = loaded {
            print_import_report(&report);
        }
    }
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    println!("precision: {}", settings.precision.name());
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
    check_job(&train_job)?;
    write_atomic(&run_dir.join(RUN_CONFIG_FILE), config.to_toml().as_bytes())?;
    let (model, records) = train(model, &train_job, &device)?;
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
