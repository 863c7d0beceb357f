//! The resume state of a run: model, optimiser buffers and progress in one file, written
//! atomically every epoch, and the checks that a run continues with its own settings.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use transreid_model::{
    read_state_dict, write_safetensors, Precision, StateDict, CONFIG_METADATA_KEY,
};

use super::error::TrainError;
use super::settings::{Setting, TrainSettings};
use super::trainee::Trainee;
use crate::epoch_record::EpochRecord;
use crate::optim::{LossScaler, Optimizer};

/// State-file prefix of SGD's momentum buffers.
const MOMENTUM_PREFIX: &str = "optimizer.momentum.";
/// State-file prefix of Adam's moments.
const ADAM_PREFIX: &str = "optimizer.adam.";
/// State-file metadata key of the progress JSON.
pub(super) const PROGRESS_METADATA_KEY: &str = "transreid.progress";

/// Progress saved in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "O: Setting")]
pub(super) struct Progress<O> {
    /// Settings of the run (checked on resume, `workers` excepted).
    pub settings: TrainSettings<O>,
    /// Every finished epoch's record, in order: the run resumes after the last.
    pub records: Vec<EpochRecord>,
    /// The loss scaler of f16 runs.
    #[serde(default)]
    pub loss_scaler: Option<LossScaler>,
    /// Ranks the run was trained on.
    #[serde(default = "super::settings::one")]
    pub world: usize,
}

/// The settings in which `now` does not continue the run `run`, as `name: run X, now Y`.
/// Worker count and precision may change (a run started on a GPU can finish on a CPU; the
/// resume is exact only with the same precision), and so may the number of epochs (extending a
/// run) and of micro-batches (a run of 4 ranks continues on one GPU with `accumulate = 4`).
fn run_differences<O: Setting>(run: &TrainSettings<O>, now: &TrainSettings<O>) -> Vec<String> {
    let key = |s: &TrainSettings<O>| TrainSettings {
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
pub(super) fn config_key(field: &str) -> String {
    let (head, rest) = field.split_once('.').unwrap_or((field, ""));
    let key = match head {
        "batch_size" => "solver.ims_per_batch",
        "instances" => "solver.num_instance",
        "eval_batch_size" => "test.ims_per_batch",
        "checkpoint_period" | "eval_period" | "warmup_epochs" => {
            return format!("solver.{field}");
        }
        "objective" => "loss",
        "optimizer" | "schedule" => return format!("solver.{field}"),
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
pub(super) fn differences<T: Serialize>(run: &T, now: &T) -> Vec<String> {
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

/// The state-file prefix of an optimiser's buffers.
fn optimizer_prefix<B: AutodiffBackend>(optimizer: &Optimizer<B>) -> &'static str {
    match optimizer {
        Optimizer::Sgd(_) => MOMENTUM_PREFIX,
        Optimizer::Adam(_) => ADAM_PREFIX,
    }
}

/// Writes model, optimiser buffers and progress into one file, atomically, so the three always
/// agree.
pub(super) fn save_state<B: AutodiffBackend, M: Trainee<B>>(
    path: &Path,
    model: &M,
    config: &M::Config,
    optimizer: &Optimizer<B>,
    progress: &Progress<M::Objective>,
) -> Result<(), TrainError> {
    let mut dict = model.export();
    let prefix = optimizer_prefix(optimizer);
    for (name, buffer) in optimizer.state() {
        dict.insert(format!("{prefix}{name}"), buffer);
    }
    Ok(write_safetensors(
        path,
        &dict,
        state_metadata(config, progress),
    )?)
}

/// A state file's metadata: the model's configuration and the run's progress as JSON.
pub(super) fn state_metadata(
    config: &impl Serialize,
    progress: &impl Serialize,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            CONFIG_METADATA_KEY.to_string(),
            serde_json::to_string(config).expect("config serialises"),
        ),
        (
            PROGRESS_METADATA_KEY.to_string(),
            serde_json::to_string(progress).expect("progress serialises"),
        ),
    ])
}

/// Restores model and optimiser buffers from [`save_state`]'s file and returns the progress.
pub(super) fn load_state<B: AutodiffBackend, M: Trainee<B>>(
    path: &Path,
    model: &mut M,
    config: &M::Config,
    settings: &TrainSettings<M::Objective>,
    optimizer: &mut Optimizer<B>,
    device: &B::Device,
) -> Result<Progress<M::Objective>, TrainError> {
    let (dict, metadata) = read_state_dict(path)?;
    let progress = check_state(path, &metadata, config, settings)?;
    let (buffers, weights): (StateDict, StateDict) = dict
        .into_iter()
        .partition(|(k, _)| k.starts_with("optimizer."));
    model.load(weights)?;
    let prefix = optimizer_prefix(optimizer);
    let buffers: StateDict = buffers
        .into_iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t)))
        .collect();
    let incomplete = optimizer.load_state(&buffers, device);
    if !incomplete.is_empty() {
        return Err(TrainError::BadState {
            path: path.to_path_buf(),
            message: format!("incomplete optimiser state of {}", incomplete.join(", ")),
        });
    }
    Ok(progress)
}

/// The progress stored in a state file's `metadata`, after checking that the run it records
/// has the model `config` and continues with `settings`.
pub(super) fn check_state<C: Setting, O: Setting>(
    path: &Path,
    metadata: &BTreeMap<String, String>,
    config: &C,
    settings: &TrainSettings<O>,
) -> Result<Progress<O>, TrainError> {
    let bad = |message: String| TrainError::BadState {
        path: path.to_path_buf(),
        message,
    };
    let mismatch = |what, differences| TrainError::ResumeMismatch {
        path: path.to_path_buf(),
        what,
        differences,
    };
    let stored: C = metadata
        .get(CONFIG_METADATA_KEY)
        .ok_or_else(|| bad(format!("no `{CONFIG_METADATA_KEY}` metadata")))
        .and_then(|json| serde_json::from_str(json).map_err(|e| bad(e.to_string())))?;
    let progress: Progress<O> = metadata
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
