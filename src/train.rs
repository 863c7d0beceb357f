//! The training loop: PK batches, the TransReID objective, SGD with the reference's groups and
//! the per-epoch schedule, periodic evaluation, metrics CSV, plots, atomic checkpoints and an
//! exact resume.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use transreid_data::{
    derive_seed, EvalLoader, LoaderConfig, PkSampler, ReidDataset, RngPurpose, Shard, Split,
    TestTransform, TrainLoader, TrainTransform, TransformConfig,
};
use transreid_eval::{EvalConfig, ReidMetrics};
use transreid_loss::{transreid_loss, ObjectiveConfig};
use transreid_model::{
    export_state_dict, load_reference_dict, read_safetensors_metadata, read_state_dict,
    save_checkpoint_with_input, write_safetensors, ImportOptions, LabelError, Precision, StateDict,
    TransReid, TransReidConfig, CONFIG_METADATA_KEY,
};

use crate::distributed::{
    average_gradients, check_same_everywhere, check_same_fields_everywhere, fingerprint_bytes,
    mean_gradients, weights_fingerprint, Collective, CollectiveError, SingleProcess, Watchdog,
    DEFAULT_BUCKET_BYTES,
};
use crate::inference::{check_item_labels, evaluate_model, InferenceError};
use crate::input_normalization::input_spec;
use crate::optim::{CosineWarmup, LossScaler, Sgd, SolverConfig};
#[cfg(feature = "plots")]
use crate::plot::{plot_training, PlotError};
use crate::progress::Bar;

/// The model checkpoint of a run folder (what `eval`, `embed` and `search` read).
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The resume state of a run folder: model, optimiser and progress, written every epoch.
pub const STATE_FILE: &str = "state.safetensors";
/// Per-epoch metrics of a run folder.
pub const METRICS_FILE: &str = "metrics.csv";
/// The training figure of a run folder.
pub const PLOT_FILE: &str = "training.png";

/// State-file prefix of the optimiser's momentum buffers.
const MOMENTUM_PREFIX: &str = "optimizer.momentum.";
/// State-file metadata key of the progress JSON.
const PROGRESS_METADATA_KEY: &str = "transreid.progress";

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Epochs (`SOLVER.MAX_EPOCHS`).
    pub epochs: usize,
    /// Images per batch (`SOLVER.IMS_PER_BATCH`).
    pub batch_size: usize,
    /// Images per identity in a batch (`DATALOADER.NUM_INSTANCE`).
    pub instances: usize,
    /// Optimiser.
    pub solver: SolverConfig,
    /// Warmup epochs of the schedule.
    pub warmup_epochs: usize,
    /// Loss settings.
    pub objective: ObjectiveConfig,
    /// Evaluate every this many epochs (and after the last).
    pub eval_period: usize,
    /// Write `checkpoint.safetensors` every this many epochs (and after the last).
    pub checkpoint_period: usize,
    /// Images per evaluation batch.
    pub eval_batch_size: usize,
    /// Seed of sampling, augmentation and drop path.
    pub seed: u64,
    /// Loader worker threads (the batches do not depend on it).
    pub workers: usize,
    /// Dtype of the transformer's products; f16 turns loss scaling on. Evaluation always runs
    /// in f32, as the reference's.
    #[serde(default)]
    pub precision: Precision,
    /// Micro-batches per step (gradient accumulation): each is `batch_size / accumulate`
    /// images (divided further over the ranks), with its own BatchNorm statistics and triplet
    /// mining, and the step uses the mean of their gradients, as that many ranks would.
    #[serde(default = "one")]
    pub accumulate: usize,
}

impl TrainSettings {
    /// The settings every rank must share (the loader's worker count may differ).
    pub fn without_workers(&self) -> TrainSettings {
        TrainSettings {
            workers: 0,
            ..self.clone()
        }
    }
}

/// What to train on and where, besides the model.
#[derive(Debug, Clone, Copy)]
pub struct TrainJob<'a> {
    /// The model's configuration (stored in checkpoints).
    pub model_config: &'a TransReidConfig,
    /// Training split plus query / gallery for evaluation.
    pub dataset: &'a ReidDataset,
    /// Train and test transforms.
    pub transforms: &'a TransformConfig,
    /// Loop settings.
    pub settings: &'a TrainSettings,
    /// Run folder.
    pub run_dir: &'a Path,
    /// Continue from the run folder's [`STATE_FILE`] (model, optimiser, epoch, metrics).
    pub resume: bool,
    /// Stop after this epoch, leaving a state to resume from.
    pub stop_after: Option<usize>,
}

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading data or evaluating failed.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// A data error.
    #[error(transparent)]
    Data(#[from] transreid_data::DataError),
    /// A batch the losses cannot use.
    #[error(transparent)]
    Loss(#[from] transreid_loss::LossError),
    /// Writing the run folder failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] transreid_model::ImportError),
    /// A plot could not be written.
    #[cfg(feature = "plots")]
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The loss became NaN or infinite; the last checkpoint is kept.
    #[error("non-finite loss {loss} at epoch {epoch}, iteration {iteration}: stopped, last good checkpoint kept")]
    NonFiniteLoss {
        /// Epoch (1-based).
        epoch: usize,
        /// Iteration in the epoch.
        iteration: usize,
        /// The loss value.
        loss: f32,
    },
    /// A fresh run would overwrite another run's state.
    #[error("{path} already holds a run: resume it or choose another output folder")]
    RunExists {
        /// The existing state file.
        path: PathBuf,
    },
    /// Resume was asked for but there is no state.
    #[error("nothing to resume: {path} does not exist")]
    NothingToResume {
        /// The missing state file.
        path: PathBuf,
    },
    /// The state was written by a run with other settings.
    #[error(
        "{path} was written with other {what}: {}; resume with the run's own configuration",
        differences.join("; ")
    )]
    ResumeMismatch {
        /// The state file.
        path: PathBuf,
        /// `model configuration` or `training settings`.
        what: &'static str,
        /// Each differing setting: `name: run X, now Y`.
        differences: Vec<String>,
    },
    /// Resuming a run that has done every epoch it was given.
    #[error(
        "the run in {run_dir} has finished all {epochs} epochs: give --epochs N with N > {epochs} \
         to extend it (the cosine schedule is recomputed for the new length)"
    )]
    RunFinished {
        /// The run folder.
        run_dir: PathBuf,
        /// Epochs done.
        epochs: usize,
    },
    /// Asked for fewer epochs than the run has done.
    #[error("the run in {run_dir} has done {done} epochs, more than the {epochs} asked for")]
    EpochsBelowDone {
        /// The run folder.
        run_dir: PathBuf,
        /// Epochs asked for.
        epochs: usize,
        /// Epochs done.
        done: usize,
    },
    /// `stop_after` names an epoch the run has already done.
    #[error(
        "the run in {run_dir} has already done {done} epochs: nothing to do until epoch \
         {stop_after} (give a later --stop-after, or none)"
    )]
    StopAfterPassed {
        /// The run folder.
        run_dir: PathBuf,
        /// The epoch to stop after.
        stop_after: usize,
        /// Epochs done.
        done: usize,
    },
    /// The global batch cannot be split into whole identities per rank and micro-batch.
    #[error(
        "ims_per_batch {batch_size} cannot be split into {shards} blocks (ranks x micro-batches) \
         of whole identities: it must be a multiple of {shards} x K = {}",
        shards * instances
    )]
    BatchSplit {
        /// The global batch.
        batch_size: usize,
        /// Ranks times micro-batches.
        shards: usize,
        /// K, images per identity.
        instances: usize,
    },
    /// A camera or view id of the dataset is outside the model's SIE table.
    #[error("{split} split: {source}")]
    Labels {
        /// The split holding the id.
        split: Split,
        /// Which id.
        source: LabelError,
    },
    /// A block of a step needs more identities than the training split has.
    #[error(
        "a step of {batch_size} images (solver.ims_per_batch) in {shards} block(s) takes \
         {ids_per_block} identities x {instances} images (solver.num_instance) per block, but the \
         training split has {identities} identities: lower solver.ims_per_batch or raise \
         solver.num_instance"
    )]
    TooFewIdentities {
        /// Identities in the training split.
        identities: usize,
        /// Identities one block draws.
        ids_per_block: usize,
        /// The global batch.
        batch_size: usize,
        /// K, images per identity.
        instances: usize,
        /// Ranks times micro-batches.
        shards: usize,
    },
    /// An epoch draws no complete step from the training identities.
    #[error(
        "epoch {epoch} draws no complete step of {batch_size} images ({shards} block(s) of whole \
         identities) from {identities} training identities: lower solver.ims_per_batch, \
         solver.accumulate (--accumulate) or the number of ranks"
    )]
    NoSteps {
        /// The epoch (1-based).
        epoch: usize,
        /// Identities in the training split.
        identities: usize,
        /// The global batch.
        batch_size: usize,
        /// Ranks times micro-batches.
        shards: usize,
    },
    /// A collective operation failed, or the ranks disagree.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// The state file's metadata is unreadable.
    #[error("{path}: {message}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean total loss.
    pub loss: f64,
    /// Training accuracy of the global branch.
    pub accuracy: f64,
    /// Weight-group lr of the epoch.
    pub lr: f64,
    /// Images per second.
    pub images_per_second: f64,
    /// Evaluation, when the epoch was evaluated.
    pub metrics: Option<ReidMetrics>,
}

impl EpochRecord {
    const CSV_HEADER: &str = "epoch,loss,accuracy,lr,images_per_second,map,minp,rank1,rank5,rank10";

    fn csv_row(&self) -> String {
        let m = self.metrics.as_ref();
        let metric =
            |f: &dyn Fn(&ReidMetrics) -> f64| m.map_or(String::new(), |m| format!("{:.6}", f(m)));
        format!(
            "{},{:.6},{:.6},{:.8},{:.1},{},{},{},{},{}",
            self.epoch,
            self.loss,
            self.accuracy,
            self.lr,
            self.images_per_second,
            metric(&|m| m.map),
            metric(&|m| m.minp),
            metric(&|m| m.rank1().unwrap_or(0.0)),
            metric(&|m| m.rank5().unwrap_or(0.0)),
            metric(&|m| m.rank10().unwrap_or(0.0)),
        )
    }
}

/// Progress saved in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    /// Settings of the run (checked on resume, `workers` excepted).
    settings: TrainSettings,
    /// Every finished epoch's record, in order: the run resumes after the last.
    records: Vec<EpochRecord>,
    /// The loss scaler of f16 runs.
    #[serde(default)]
    loss_scaler: Option<LossScaler>,
    /// Ranks the run was trained on.
    #[serde(default = "one")]
    world: usize,
}

fn one() -> usize {
    1
}

/// How long the ranks wait for rank 0's evaluation and files at the end of an epoch.
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A step's loss and number of correct global-branch predictions, still on the device.
struct StepValues<B: Backend> {
    loss: Tensor<B, 1>,
    hits: Tensor<B, 1, Int>,
    images: usize,
}

/// Running sums of an epoch's steps.
#[derive(Default)]
struct EpochTally {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    iterations: usize,
}

impl EpochTally {
    /// Reads a step's values (waiting for the device); a non-finite loss is an error naming
    /// the step.
    fn add<B: Backend>(&mut self, step: StepValues<B>, epoch: usize) -> Result<(), TrainError> {
        let loss: f32 = step.loss.into_scalar().elem();
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                epoch,
                iteration: self.iterations,
                loss,
            });
        }
        self.loss_sum += loss as f64;
        self.correct += step.hits.into_scalar().elem::<i64>() as usize;
        self.seen += step.images;
        self.iterations += 1;
        Ok(())
    }

    /// Mean loss per step.
    fn loss(&self) -> f64 {
        self.loss_sum / self.iterations.max(1) as f64
    }

    /// Training accuracy of the global branch.
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// The settings in which `now` does not continue the run `run`, as `name: run X, now Y`.
/// Worker count and precision may change (a run started on a GPU can finish on a CPU; the
/// resume is exact only with the same precision), and so may the number of epochs (extending a
/// run) and of micro-batches (a run of 4 ranks continues on one GPU with `accumulate = 4`).
fn run_differences(run: &TrainSettings, now: &TrainSettings) -> Vec<String> {
    let key = |s: &TrainSettings| TrainSettings {
        workers: 0,
        precision: Precision::F32,
        epochs: 0,
        accumulate: 1,
        ..s.clone()
    };
    differences(&key(run), &key(now))
        .into_iter()
        .map(|line| match line.split_once(": ") {
            Some((name, values)) => format!("{}: {values}", config_key(name)),
            None => line,
        })
        .collect()
}

/// The run configuration's key of a [`TrainSettings`] field (`RunConfig::train_settings`), the
/// name the user set.
fn config_key(field: &str) -> String {
    let (head, rest) = field.split_once('.').unwrap_or((field, ""));
    let key = match head {
        "batch_size" => "solver.ims_per_batch",
        "instances" => "solver.num_instance",
        "eval_batch_size" => "test.ims_per_batch",
        "checkpoint_period" | "eval_period" | "warmup_epochs" => {
            return format!("solver.{field}");
        }
        "objective" => "loss",
        "epochs" => "solver.max_epochs",
        "precision" | "accumulate" | "workers" => return format!("solver.{field}"),
        _ => return field.to_string(),
    };
    if rest.is_empty() {
        key.to_string()
    } else {
        format!("{key}.{rest}")
    }
}

/// The leaves in which two serialisable values differ, as `a.b: run X, now Y`.
fn differences<T: Serialize>(run: &T, now: &T) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value::Object;
        match (a, b) {
            (Object(x), Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for key in keys {
                    let null = serde_json::Value::Null;
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(
                        &name,
                        x.get(key).unwrap_or(&null),
                        y.get(key).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{prefix}: run {a}, now {b}")),
            _ => {}
        }
    }
    let (a, b) = (serde_json::to_value(run), serde_json::to_value(now));
    let mut out = Vec::new();
    if let (Ok(a), Ok(b)) = (a, b) {
        walk("", &a, &b, &mut out);
    }
    out
}

/// Writes model, momentum buffers and progress into one file, atomically, so the three always
/// agree.
fn save_state<B: AutodiffBackend>(
    path: &Path,
    model: &TransReid<B>,
    config: &TransReidConfig,
    sgd: &Sgd<B>,
    progress: &Progress,
) -> Result<(), TrainError> {
    let mut dict = export_state_dict(model);
    for (name, buffer) in sgd.state() {
        dict.insert(format!("{MOMENTUM_PREFIX}{name}"), buffer);
    }
    let metadata = BTreeMap::from([
        (
            CONFIG_METADATA_KEY.to_string(),
            serde_json::to_string(config).expect("config serialises"),
        ),
        (
            PROGRESS_METADATA_KEY.to_string(),
            serde_json::to_string(progress).expect("progress serialises"),
        ),
    ]);
    Ok(write_safetensors(path, &dict, metadata)?)
}

/// Restores model and momentum buffers from [`save_state`]'s file and returns the progress.
fn load_state<B: AutodiffBackend>(
    path: &Path,
    model: &mut TransReid<B>,
    config: &TransReidConfig,
    settings: &TrainSettings,
    sgd: &mut Sgd<B>,
    device: &B::Device,
) -> Result<Progress, TrainError> {
    let (dict, metadata) = read_state_dict(path)?;
    let progress = check_state(path, &metadata, config, settings)?;
    let (momentum, weights): (StateDict, StateDict) = dict
        .into_iter()
        .partition(|(k, _)| k.starts_with(MOMENTUM_PREFIX));
    load_reference_dict(model, weights, ImportOptions::default())?;
    let momentum = momentum
        .into_iter()
        .map(|(k, t)| (k[MOMENTUM_PREFIX.len()..].to_string(), t))
        .collect();
    sgd.load_state(&momentum, device);
    Ok(progress)
}

/// The progress stored in a state file's `metadata`, after checking that the run it records
/// has the model `config` and continues with `settings`.
fn check_state(
    path: &Path,
    metadata: &BTreeMap<String, String>,
    config: &TransReidConfig,
    settings: &TrainSettings,
) -> Result<Progress, TrainError> {
    let bad = |message: String| TrainError::BadState {
        path: path.to_path_buf(),
        message,
    };
    let mismatch = |what, differences| TrainError::ResumeMismatch {
        path: path.to_path_buf(),
        what,
        differences,
    };
    let stored: TransReidConfig = metadata
        .get(CONFIG_METADATA_KEY)
        .ok_or_else(|| bad(format!("no `{CONFIG_METADATA_KEY}` metadata")))
        .and_then(|json| serde_json::from_str(json).map_err(|e| bad(e.to_string())))?;
    let progress: Progress = metadata
        .get(PROGRESS_METADATA_KEY)
        .ok_or_else(|| bad(format!("no `{PROGRESS_METADATA_KEY}` metadata")))
        .and_then(|json| serde_json::from_str(json).map_err(|e| bad(e.to_string())))?;
    if &stored != config {
        return Err(mismatch(
            "model configuration",
            differences(&stored, config),
        ));
    }
    let differing = run_differences(&progress.settings, settings);
    if !differing.is_empty() {
        return Err(mismatch("training settings", differing));
    }
    Ok(progress)
}

/// Checks, without loading any weights, that `job` can run on `world` ranks: the batch splits
/// into whole identities per rank and micro-batch; every camera and view id of the dataset
/// fits the model's SIE table; a fresh run's folder holds no state; a resumed run's state
/// matches the job's model and settings and has epochs left before `epochs` and `stop_after`;
/// the next epoch draws at least one whole step. Returns the number of epochs already done.
/// [`train`] checks the same; callers use this to refuse before they change anything.
pub fn check_job(job: &TrainJob<'_>, world: usize) -> Result<usize, TrainError> {
    let settings = job.settings;
    let shards = world * settings.accumulate.max(1);
    if !settings
        .batch_size
        .is_multiple_of(shards * settings.instances)
    {
        return Err(TrainError::BatchSplit {
            batch_size: settings.batch_size,
            shards,
            instances: settings.instances,
        });
    }
    let splits = [&job.dataset.train, &job.dataset.query, &job.dataset.gallery];
    for (split, items) in Split::ALL.into_iter().zip(splits) {
        check_item_labels(&job.model_config.sie, items)
            .map_err(|source| TrainError::Labels { split, source })?;
    }
    let state_path = job.run_dir.join(STATE_FILE);
    let done = match (job.resume, state_path.exists()) {
        (true, true) => {
            let metadata = read_safetensors_metadata(&state_path)?;
            check_state(&state_path, &metadata, job.model_config, job.settings)?
                .records
                .len()
        }
        (true, false) => return Err(TrainError::NothingToResume { path: state_path }),
        (false, true) => return Err(TrainError::RunExists { path: state_path }),
        (false, false) => 0,
    };
    let run_dir = job.run_dir.to_path_buf();
    let epochs = job.settings.epochs;
    if job.resume && done == epochs {
        return Err(TrainError::RunFinished { run_dir, epochs });
    }
    if done > epochs {
        return Err(TrainError::EpochsBelowDone {
            run_dir,
            epochs,
            done,
        });
    }
    if let Some(stop_after) = job.stop_after.filter(|&s| s <= done) {
        return Err(TrainError::StopAfterPassed {
            run_dir,
            stop_after,
            done,
        });
    }
    let ids_per_block = settings.batch_size / shards / settings.instances.max(1);
    if job.dataset.num_train_pids < ids_per_block {
        return Err(TrainError::TooFewIdentities {
            identities: job.dataset.num_train_pids,
            ids_per_block,
            batch_size: settings.batch_size,
            instances: settings.instances,
            shards,
        });
    }
    // The loader draws the same blocks (one rank's share of a step each, incomplete steps
    // dropped).
    let sampler = PkSampler::from_items(
        &job.dataset.train,
        settings.batch_size / shards,
        settings.instances,
    )?;
    let epoch = done + 1;
    let shard = Shard {
        index: 0,
        count: shards,
    };
    if sampler
        .shard_blocks(settings.seed, epoch as u64, shard)
        .is_empty()
    {
        return Err(no_steps(job, epoch, shards));
    }
    Ok(done)
}

/// Fails unless every rank runs the same model configuration and training settings (the
/// loader's worker count aside), naming the settings that differ by their configuration keys.
/// Every rank of the job must call it.
pub fn check_ranks_agree(
    job: &TrainJob<'_>,
    collective: &dyn Collective,
) -> Result<(), TrainError> {
    let hash = |value: &serde_json::Value| fingerprint_bytes(value.to_string().as_bytes());
    let object = |value: serde_json::Value| match value {
        serde_json::Value::Object(map) => map,
        _ => Default::default(),
    };
    let model = object(serde_json::to_value(job.model_config).expect("config serialises"));
    let settings = job.settings.without_workers();
    let settings = object(serde_json::to_value(&settings).expect("settings serialise"));
    let fields: Vec<(String, u64)> = model
        .iter()
        .map(|(key, value)| (format!("model.{key}"), hash(value)))
        .chain(
            settings
                .iter()
                .map(|(key, value)| (config_key(key), hash(value))),
        )
        .collect();
    check_same_fields_everywhere(collective, "the run's settings", &fields)?;
    Ok(())
}

fn no_steps(job: &TrainJob<'_>, epoch: usize, shards: usize) -> TrainError {
    TrainError::NoSteps {
        epoch,
        identities: job.dataset.num_train_pids,
        batch_size: job.settings.batch_size,
        shards,
    }
}

/// How a run is spread over processes (see [`train_parallel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelOptions {
    /// Gradient bytes per all-reduce call.
    pub bucket_bytes: usize,
    /// With several ranks: end the process when a step does not complete in this time.
    pub step_timeout: Duration,
}

impl Default for ParallelOptions {
    fn default() -> Self {
        Self {
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            step_timeout: Duration::from_secs(600),
        }
    }
}

/// Trains `model` on `job.dataset.train`, evaluating on query / gallery, and writes to the run
/// folder: [`METRICS_FILE`], [`PLOT_FILE`] (with the `plots` feature), [`CHECKPOINT_FILE`]
/// (every `checkpoint_period` epochs, after the last and at a `stop_after` stop) and [`STATE_FILE`] (every epoch), all
/// atomically.
///
/// Epoch `e` draws its batches, augmentations and drop-path masks from `(seed, e)` alone (the
/// drop-path generator is re-seeded for every block of images from its number in the epoch), so
/// a run resumed from its state ends with the same weights as an uninterrupted one.
pub fn train<B: AutodiffBackend>(
    model: TransReid<B>,
    job: &TrainJob<'_>,
    device: &B::Device,
) -> Result<(TransReid<B>, Vec<EpochRecord>), TrainError> {
    train_parallel(
        model,
        job,
        device,
        &SingleProcess,
        &ParallelOptions::default(),
    )
}

/// [`train`] as one of the `collective.world()` ranks of a data-parallel run: every rank runs
/// this with the same job. `settings.batch_size` stays the global batch: each step, every rank
/// takes its blocks of `batch_size / (world · accumulate)` images (the reference's DDP sampler),
/// computes the mean gradient of its `settings.accumulate` micro-batches, and the ranks average
/// theirs ([`average_gradients`]) before the same SGD step, so the replicas stay identical.
/// BatchNorm statistics and triplet mining are per micro-batch. Rank 0 alone evaluates and
/// writes the run folder (metrics summed over the ranks); before the first epoch the ranks
/// compare a fingerprint of their settings and weights.
pub fn train_parallel<B: AutodiffBackend>(
    mut model: TransReid<B>,
    job: &TrainJob<'_>,
    device: &B::Device,
    collective: &dyn Collective,
    options: &ParallelOptions,
) -> Result<(TransReid<B>, Vec<EpochRecord>), TrainError> {
    let (rank, world) = (collective.rank(), collective.world());
    check_job(job, world)?;
    let (settings, run_dir) = (job.settings, job.run_dir);
    let micro_batches = settings.accumulate.max(1);
    let shards = world * micro_batches;
    let writer = rank == 0;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let loader_config = LoaderConfig {
        workers: settings.workers,
        prefetch: 4,
        seed: settings.seed,
    };
    let train_loader = TrainLoader::from_dataset(
        job.dataset,
        settings.batch_size / shards,
        settings.instances,
        TrainTransform::new(job.transforms)?,
        loader_config,
    )?
    .sharded(rank, world, micro_batches)?;
    let eval_loader = EvalLoader::from_dataset(
        job.dataset,
        TestTransform::new(job.transforms)?,
        settings.eval_batch_size,
        loader_config,
    )?;
    // Epochs draw slightly different numbers of blocks: a later one can still fall short.
    let steps = |epoch: usize| match train_loader.batches_in_epoch(epoch as u64) / micro_batches {
        0 => Err(no_steps(job, epoch, shards)),
        steps => Ok(steps),
    };
    if writer {
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    }
    let schedule = CosineWarmup {
        warmup_epochs: settings.warmup_epochs,
        ..CosineWarmup::new(settings.solver.base_lr, settings.epochs)
    };
    let mut sgd = Sgd::<B>::new(settings.solver);
    let scaling = settings.precision.needs_loss_scaling();
    sgd.set_loss_scaler(scaling.then(LossScaler::default));
    let state_path = run_dir.join(STATE_FILE);
    // Checkpoints record the test input, so they embed correctly away from the run folder.
    let input = input_spec(job.transforms.normalization, job.model_config.vit.img_size);
    let mut records = Vec::new();
    if job.resume {
        let progress = load_state(
            &state_path,
            &mut model,
            job.model_config,
            settings,
            &mut sgd,
            device,
        )?;
        let before = progress.world * progress.settings.accumulate.max(1);
        if writer && before != shards {
            eprintln!(
                "warning: the run was trained with {} rank(s) x {} micro-batch(es) per step and \
                 continues with {world} x {micro_batches}: each step is now drawn as {shards} \
                 blocks instead of {before}, so the result is not what an uninterrupted run gives",
                progress.world,
                progress.settings.accumulate.max(1)
            );
        }
        records = progress.records;
        if scaling && progress.loss_scaler.is_some() {
            sgd.set_loss_scaler(progress.loss_scaler);
        }
    }
    if world > 1 {
        check_ranks_agree(job, collective)?;
        check_same_everywhere(
            collective,
            "the initial weights",
            weights_fingerprint(&model),
        )?;
    }
    model.set_precision(settings.precision);
    let first_epoch = records.len() + 1;
    let csv_path = run_dir.join(METRICS_FILE);
    let mut csv = None;
    if writer {
        let mut file = std::fs::File::create(&csv_path).map_err(io(&csv_path))?;
        writeln!(file, "{}", EpochRecord::CSV_HEADER).map_err(io(&csv_path))?;
        for record in &records {
            writeln!(file, "{}", record.csv_row()).map_err(io(&csv_path))?;
        }
        csv = Some(file);
    }
    let last_epoch = job
        .stop_after
        .unwrap_or(settings.epochs)
        .min(settings.epochs);
    let watchdog = (world > 1)
        .then(|| Watchdog::start(options.step_timeout, format!("rank {rank} of {world}")));

    for epoch in first_epoch..=last_epoch {
        let bar = Bar::new(
            (steps(epoch)? * micro_batches) as u64,
            "epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}",
            epoch.to_string(),
        );
        let started = Instant::now();
        let mut tally = EpochTally::default();
        let lr = schedule.lr(epoch, settings.solver.base_lr);
        let read = |tally: &mut EpochTally, step: StepValues<B::InnerBackend>| {
            tally.add(step, epoch).inspect_err(|_| bar.abandon())?;
            bar.advance(1, || {
                format!(
                    "loss {:.4}  acc {:.3}  lr {lr:.2e}  {:.0} img/s",
                    tally.loss(),
                    tally.accuracy(),
                    tally.seen as f64 / started.elapsed().as_secs_f64()
                )
            });
            Ok::<_, TrainError>(())
        };
        let mut pending = None;
        let mut micro_grads = Vec::with_capacity(micro_batches);
        for (micro, batch) in train_loader.epoch(epoch as u64).enumerate() {
            let batch = batch?;
            // Drop-path masks come from the block's own generator, so they do not depend on
            // which rank or micro-batch computes the block.
            let (step, m) = (micro / micro_batches, micro % micro_batches);
            let block = step * shards + m * world + rank;
            B::seed(
                device,
                derive_seed(settings.seed, RngPurpose::Model, epoch as u64, block as u64),
            );
            let [n, c, h, w] = batch.shape;
            let labels: Vec<i64> = batch.pids.iter().map(|&p| p as i64).collect();
            let ints =
                |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device);
            let images =
                Tensor::<B, 4>::from_data(TensorData::new(batch.images, [n, c, h, w]), device);
            let cams = ints(batch.camids.iter().map(|&c| c as i64).collect());
            let views = ints(batch.viewids.iter().map(|&v| v as i64).collect());
            let targets = ints(labels.clone());
            let out = model.forward_train(images, Some(cams), Some(views));
            let loss = transreid_loss(
                &out.scores,
                &out.feats,
                targets.clone(),
                &labels,
                &settings.objective,
            )?;
            let values = StepValues {
                loss: loss.total.clone().inner(),
                hits: out.scores[0]
                    .clone()
                    .inner()
                    .argmax(1)
                    .reshape([n])
                    .equal(targets.inner())
                    .int()
                    .sum(),
                images: n,
            };
            micro_grads.push(sgd.gradients(loss.total, &model));
            if micro_grads.len() == micro_batches {
                let grads = mean_gradients(std::mem::take(&mut micro_grads), &model);
                let grads = average_gradients(grads, &model, collective, options.bucket_bytes)?;
                model = sgd.step(model, grads, |group_lr| schedule.lr(epoch, group_lr));
                if let Some(watchdog) = &watchdog {
                    watchdog.feed();
                }
            }
            // The previous micro-batch's values are read only now, with this one queued, so
            // the host never waits for the device in the middle of a step. A non-finite loss
            // is caught one micro-batch late, before anything is written.
            if let Some(previous) = pending.replace(values) {
                read(&mut tally, previous)?;
            }
        }
        if let Some(last) = pending {
            read(&mut tally, last)?;
        }
        bar.finish();
        // The epoch's sums over every rank.
        let mut sums = [
            tally.loss_sum,
            tally.correct as f64,
            tally.seen as f64,
            tally.iterations as f64,
        ];
        collective.all_reduce_sum_f64(&mut sums)?;
        let tally = EpochTally {
            loss_sum: sums[0],
            correct: sums[1] as usize,
            seen: sums[2] as usize,
            iterations: sums[3] as usize,
        };
        let seconds = started.elapsed().as_secs_f64();
        if world > 1 {
            // Identical gradients and steps keep the replicas identical; a difference is a bug
            // or a faulty device, not something to train on.
            let what = format!("the weights after epoch {epoch}");
            check_same_everywhere(collective, &what, weights_fingerprint(&model))?;
        }
        // Rank 0 evaluates and writes while the others wait at their next collective.
        if let Some(watchdog) = &watchdog {
            watchdog.set_timeout(EVALUATION_TIMEOUT);
        }
        if writer {
            if let Some(scaler) = sgd.loss_scaler() {
                println!(
                    "epoch {epoch:>3}  loss scale {}  {} steps skipped so far",
                    scaler.scale, scaler.skipped_steps
                );
            }
        }
        let evaluate = epoch % settings.eval_period.max(1) == 0 || epoch == settings.epochs;
        let metrics = if evaluate && writer {
            Some(evaluate_model(
                &model.valid().with_precision(Precision::F32),
                &eval_loader,
                device,
                &EvalConfig::default(),
            )?)
        } else {
            None
        };
        let record = EpochRecord {
            epoch,
            loss: tally.loss(),
            accuracy: tally.accuracy(),
            lr,
            images_per_second: tally.seen as f64 / seconds,
            metrics,
        };
        records.push(record.clone());
        if let Some(csv) = csv.as_mut() {
            writeln!(csv, "{}", record.csv_row()).map_err(io(&csv_path))?;
            println!(
                "epoch {epoch:>3}  loss {:.4}  acc {:.3}  lr {:.2e}  {:.0} img/s{}",
                record.loss,
                record.accuracy,
                record.lr,
                record.images_per_second,
                record.metrics.as_ref().map_or(String::new(), |m| format!(
                    "  mAP {:.1}%  Rank-1 {:.1}%",
                    m.map * 100.0,
                    m.rank1().unwrap_or(0.0) * 100.0
                ))
            );
            #[cfg(feature = "plots")]
            plot_training(&run_dir.join(PLOT_FILE), &records)?;
            if epoch % settings.checkpoint_period.max(1) == 0 || epoch == last_epoch {
                save_checkpoint_with_input(
                    &model.valid(),
                    job.model_config,
                    &input,
                    &run_dir.join(CHECKPOINT_FILE),
                )?;
            }
            let progress = Progress {
                settings: settings.clone(),
                records: records.clone(),
                loss_scaler: sgd.loss_scaler().copied(),
                world,
            };
            save_state(&state_path, &model, job.model_config, &sgd, &progress)?;
        }
        if world > 1 {
            // The others wait here, under the long limit, until rank 0 has evaluated and
            // written; then every rank's next step runs under the step limit again.
            collective.all_reduce_sum_f64(&mut [0.0])?;
        }
        if let Some(watchdog) = &watchdog {
            watchdog.set_timeout(options.step_timeout);
        }
    }
    Ok((model, records))
}
