//! CLIP-ReID's two stages in one run folder. Stage 1 learns only the prompt vectors: the image
//! features of the whole training split are computed once (test transform, no SIE) and each
//! epoch pairs them with their identities' text features under SupCon both ways, Adam and the
//! warmup + cosine schedule. Stage 2 is the epoch loop ([`train_parallel`]) on the image side,
//! with the text features of every identity computed once from the learned prompts.
//!
//! Stage 1 keeps its own state, metrics and figure ([`PROMPT_STATE_FILE`],
//! [`PROMPT_METRICS_FILE`], [`PROMPT_PLOT_FILE`]);
//! a run resumes in whichever stage it stopped, and stage 2 starts from the model stage 1
//! ended with.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use burn::module::{AutodiffModule, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use transreid_data::{derive_seed, EvalLoader, LoaderConfig, RngPurpose, TestTransform};
use transreid_loss::{supcon_loss, ClipReidObjectiveConfig};
use transreid_model::{
    read_safetensors_metadata, read_state_dict, write_safetensors, ClipReid, ClipReidConfig,
    HostTensor, StateDict, CONFIG_METADATA_KEY,
};

use super::epoch_loop::train_parallel;
use super::error::TrainError;
use super::job::{check_job, check_ranks_agree};
use super::settings::{ParallelOptions, TrainJob};
use super::state::{differences, state_metadata, PROGRESS_METADATA_KEY};
use super::STATE_FILE;
use crate::distributed::{check_same_fields_everywhere, fingerprint_bytes, Collective};
use crate::epoch_record::EpochRecord;
use crate::optim::{Adam, CosineWarmup, SolverConfig};
#[cfg(feature = "plots")]
use crate::plot::plot_prompt_stage;
use crate::progress::Bar;

/// Stage 1's resume state: the prompt vectors, Adam's moments and the stage's progress.
pub const PROMPT_STATE_FILE: &str = "prompt_state.safetensors";
/// Stage 1's per-epoch loss and lr.
pub const PROMPT_METRICS_FILE: &str = "prompt_metrics.csv";
/// Stage 1's figure: loss and lr per epoch.
pub const PROMPT_PLOT_FILE: &str = "prompt_training.png";

/// The prompt vectors' name in state files (the reference's).
const CLS_CTX: &str = "prompt_learner.cls_ctx";
/// State-file prefix of stage 1's Adam moments.
const ADAM_PREFIX: &str = "optimizer.adam.";

/// CLIP-ReID's first stage (`SOLVER.STAGE1.*`). Defaults: the reference's person and VeRi
/// configurations, except `epochs` (120 for persons, 60 for vehicles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSettings {
    /// Epochs (`MAX_EPOCHS`).
    pub epochs: usize,
    /// Image features per step (`IMS_PER_BATCH`: 64; VehicleID 256).
    pub batch_size: usize,
    /// Adam's lr after the warmup (`BASE_LR`, 3.5e-4).
    #[serde(default = "default_prompt_lr")]
    pub base_lr: f64,
    /// Coupled weight decay (`WEIGHT_DECAY`, 1e-4).
    #[serde(default = "default_prompt_weight_decay")]
    pub weight_decay: f64,
    /// Epochs of the linear warmup from `warmup_lr` (`WARMUP_EPOCHS`, 5).
    #[serde(default = "default_prompt_warmup")]
    pub warmup_epochs: usize,
    /// The lr the warmup starts from (`WARMUP_LR_INIT`, 1e-5).
    #[serde(default = "default_prompt_warmup_lr")]
    pub warmup_lr: f64,
    /// The cosine's floor, reached at the last epoch (`LR_MIN`, 1e-6).
    #[serde(default = "default_prompt_min_lr")]
    pub min_lr: f64,
}

fn default_prompt_lr() -> f64 {
    3.5e-4
}
fn default_prompt_weight_decay() -> f64 {
    1e-4
}
fn default_prompt_warmup() -> usize {
    5
}
fn default_prompt_warmup_lr() -> f64 {
    1e-5
}
fn default_prompt_min_lr() -> f64 {
    1e-6
}

impl PromptSettings {
    /// The reference's first stage of `epochs` epochs of `batch_size` features.
    pub fn new(epochs: usize, batch_size: usize) -> Self {
        Self {
            epochs,
            batch_size,
            base_lr: default_prompt_lr(),
            weight_decay: default_prompt_weight_decay(),
            warmup_epochs: default_prompt_warmup(),
            warmup_lr: default_prompt_warmup_lr(),
            min_lr: default_prompt_min_lr(),
        }
    }

    /// The per-epoch schedule.
    pub fn schedule(&self) -> CosineWarmup {
        CosineWarmup {
            base_lr: self.base_lr,
            warmup_epochs: self.warmup_epochs,
            max_epochs: self.epochs,
            warmup_factor: self.warmup_lr / self.base_lr,
            min_factor: self.min_lr / self.base_lr,
        }
    }

    fn solver(&self) -> SolverConfig {
        SolverConfig {
            weight_decay: self.weight_decay,
            weight_decay_bias: self.weight_decay,
            ..SolverConfig::new(self.base_lr)
        }
    }
}

/// A CLIP-ReID run: the second stage's job (run folder, data, evaluation, `resume` and
/// `stop_after` of the whole run) and the first stage's settings.
#[derive(Debug, Clone, Copy)]
pub struct ClipReidJob<'a> {
    /// Stage 2, and what both stages share. Its `stop_after` counts stage-2 epochs.
    pub stage2: TrainJob<'a, ClipReidConfig, ClipReidObjectiveConfig>,
    /// Stage 1; `None` for the baseline (a model without the text side).
    pub prompts: Option<&'a PromptSettings>,
    /// Stop after this stage-1 epoch, leaving a state to resume from.
    pub prompt_stop_after: Option<usize>,
}

/// One stage-1 epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean loss per step (SupCon image-to-text plus text-to-image).
    pub loss: f64,
    /// The epoch's lr.
    pub lr: f64,
    /// Wall time of the epoch's steps.
    pub seconds: f64,
}

/// Stage 1's progress in [`PROMPT_STATE_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PromptProgress {
    settings: PromptSettings,
    seed: u64,
    records: Vec<PromptRecord>,
}

/// Where a checked run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// In stage 1, after this many epochs.
    Prompts(usize),
    /// In stage 2 (stage 1 finished or absent); `resume` when stage 2 has a state.
    Images { resume: bool },
}

/// [`check_job`] for both stages: the model and the stages agree (a text side needs stage-1
/// settings, the baseline has none), a fresh run's folder holds no state of either stage, a
/// resumed one continues the stage it stopped in with its own settings, and `stop_after`s lie
/// ahead.
pub fn check_clip_reid_job(job: &ClipReidJob<'_>, world: usize) -> Result<(), TrainError> {
    check_start(job, world).map(|_| ())
}

fn check_start(job: &ClipReidJob<'_>, world: usize) -> Result<Start, TrainError> {
    let stage2 = &job.stage2;
    let has_text = stage2.model_config.text.is_some();
    if has_text != job.prompts.is_some() {
        return Err(TrainError::ClipReidStages { has_text });
    }
    let run_dir = stage2.run_dir;
    let (prompt_path, image_path) = (run_dir.join(PROMPT_STATE_FILE), run_dir.join(STATE_FILE));
    let fresh_stage2 = TrainJob {
        resume: false,
        ..*stage2
    };
    if image_path.exists() && stage2.resume {
        check_job(stage2, world)?;
        return Ok(Start::Images { resume: true });
    }
    let Some(prompts) = job.prompts else {
        check_job(stage2, world)?;
        return Ok(Start::Images {
            resume: stage2.resume,
        });
    };
    // Stage 2 has not started: its own checks as a fresh run (no state in the folder).
    check_job(&fresh_stage2, world)?;
    let done = match (stage2.resume, prompt_path.exists()) {
        (false, true) => return Err(TrainError::RunExists { path: prompt_path }),
        (true, false) => return Err(TrainError::NothingToResume { path: image_path }),
        (false, false) => 0,
        (true, true) => {
            let metadata = read_safetensors_metadata(&prompt_path)?;
            let progress = check_prompt_state(&prompt_path, &metadata, job, prompts)?;
            progress.records.len()
        }
    };
    if let Some(stop_after) = job.prompt_stop_after.filter(|&s| s <= done) {
        return Err(TrainError::StopAfterPassed {
            run_dir: run_dir.to_path_buf(),
            stop_after,
            done,
        });
    }
    if done > prompts.epochs {
        return Err(TrainError::EpochsBelowDone {
            run_dir: run_dir.to_path_buf(),
            epochs: prompts.epochs,
            done,
        });
    }
    Ok(match done == prompts.epochs {
        true => Start::Images { resume: false },
        false => Start::Prompts(done),
    })
}

/// The stage-1 progress of a state file, after checking that it continues with this job's
/// model and settings.
fn check_prompt_state(
    path: &Path,
    metadata: &BTreeMap<String, String>,
    job: &ClipReidJob<'_>,
    prompts: &PromptSettings,
) -> Result<PromptProgress, TrainError> {
    let bad = |message: String| TrainError::BadState {
        path: path.to_path_buf(),
        message,
    };
    let stored: ClipReidConfig = metadata
        .get(CONFIG_METADATA_KEY)
        .ok_or_else(|| bad(format!("no `{CONFIG_METADATA_KEY}` metadata")))
        .and_then(|json| serde_json::from_str(json).map_err(|e| bad(e.to_string())))?;
    let progress: PromptProgress = metadata
        .get(PROGRESS_METADATA_KEY)
        .ok_or_else(|| bad(format!("no `{PROGRESS_METADATA_KEY}` metadata")))
        .and_then(|json| serde_json::from_str(json).map_err(|e| bad(e.to_string())))?;
    let mismatch = |what, differences| TrainError::ResumeMismatch {
        path: path.to_path_buf(),
        what,
        differences,
    };
    if &stored != job.stage2.model_config {
        let differing = differences(&stored, job.stage2.model_config);
        return Err(mismatch("model configuration", differing));
    }
    let now = (prompts, job.stage2.settings.seed);
    let mut differing: Vec<String> = differences(&progress.settings, prompts)
        .into_iter()
        .map(|line| format!("prompts.{line}"))
        .collect();
    if progress.seed != now.1 {
        differing.push(format!("seed: run {}, now {}", progress.seed, now.1));
    }
    if !differing.is_empty() {
        return Err(mismatch("training settings", differing));
    }
    Ok(progress)
}

/// Fails unless every rank runs the same job ([`check_ranks_agree`]) and the same stage 1:
/// each rank learns the prompts itself, so the ranks end with the same prompts, and reach
/// stage 2 together, only when they agree on its settings and on where it stops. Every rank of
/// the job must call it.
pub fn check_clip_reid_ranks_agree(
    job: &ClipReidJob<'_>,
    collective: &dyn Collective,
) -> Result<(), TrainError> {
    check_ranks_agree(&job.stage2, collective)?;
    let hash = |value: String| fingerprint_bytes(value.as_bytes());
    let mut fields = vec![(
        "--stop-after-prompts".to_string(),
        hash(format!("{:?}", job.prompt_stop_after)),
    )];
    let prompts = job
        .prompts
        .map(|p| serde_json::to_value(p).expect("settings serialise"));
    if let Some(serde_json::Value::Object(map)) = prompts {
        fields.extend(
            map.iter()
                .map(|(key, value)| (format!("clip_reid.prompts.{key}"), hash(value.to_string()))),
        );
    }
    check_same_fields_everywhere(collective, "the prompt stage's settings", &fields)?;
    Ok(())
}

/// Trains CLIP-ReID (or its baseline) through both stages into `job.stage2.run_dir`, as one
/// of `collective.world()` ranks. Every rank runs stage 1 in full (it is cheap and
/// deterministic, so the ranks end with the same prompts); rank 0 alone writes. Returns the
/// model and stage 2's records.
pub fn train_clip_reid<B: AutodiffBackend>(
    mut model: ClipReid<B>,
    job: &ClipReidJob<'_>,
    device: &B::Device,
    collective: &dyn Collective,
    options: &ParallelOptions,
) -> Result<(ClipReid<B>, Vec<EpochRecord>), TrainError> {
    let start = check_start(job, collective.world())?;
    let writer = collective.rank() == 0;
    let run_dir = job.stage2.run_dir;
    if writer {
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    }
    let image_resume = match (start, job.prompts) {
        (Start::Prompts(done), Some(prompts)) => {
            model = learn_prompts(model, job, prompts, done, writer, device)?;
            let stopped = job.prompt_stop_after.is_some_and(|s| s < prompts.epochs);
            if stopped {
                return Ok((model, Vec::new()));
            }
            false
        }
        (Start::Images { resume }, Some(_)) if !resume => {
            // Stage 1 finished in an earlier process: its prompts are in its state.
            let path = run_dir.join(PROMPT_STATE_FILE);
            let (dict, _) = read_state_dict(&path)?;
            set_prompts(&mut model, &dict, &path)?;
            false
        }
        (Start::Images { resume }, _) => resume,
        (Start::Prompts(_), None) => unreachable!("checked: stage 1 needs its settings"),
    };
    let stage2 = TrainJob {
        resume: image_resume,
        ..job.stage2
    };
    train_parallel(model, &stage2, device, collective, options)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_path_buf();
    move |source| TrainError::Io { path, source }
}

/// Replaces the prompt vectors with the state's.
fn set_prompts<B: AutodiffBackend>(
    model: &mut ClipReid<B>,
    dict: &StateDict,
    path: &Path,
) -> Result<(), TrainError> {
    let learner = model
        .prompt_learner
        .as_mut()
        .expect("checked: the model has the text side");
    let current = learner.cls_ctx.val();
    let shape = current.dims();
    let stored = dict
        .get(CLS_CTX)
        .filter(|t| t.shape == shape)
        .ok_or_else(|| TrainError::BadState {
            path: path.to_path_buf(),
            message: format!("no `{CLS_CTX}` of shape {shape:?}"),
        })?;
    let value = Tensor::from_data(
        TensorData::new(stored.data.clone(), shape),
        &current.device(),
    );
    learner.cls_ctx = Param::initialized(learner.cls_ctx.id, value.require_grad());
    Ok(())
}

/// Stage 1 from epoch `done + 1` to the end (or `prompt_stop_after`).
fn learn_prompts<B: AutodiffBackend>(
    mut model: ClipReid<B>,
    job: &ClipReidJob<'_>,
    prompts: &PromptSettings,
    done: usize,
    writer: bool,
    device: &B::Device,
) -> Result<ClipReid<B>, TrainError> {
    let stage2 = &job.stage2;
    let (run_dir, seed) = (stage2.run_dir, stage2.settings.seed);
    let state_path = run_dir.join(PROMPT_STATE_FILE);
    let csv_path = run_dir.join(PROMPT_METRICS_FILE);
    let mut adam = Adam::<B>::new(prompts.solver());
    let mut records = Vec::new();
    if done > 0 {
        let (dict, metadata) = read_state_dict(&state_path)?;
        records = check_prompt_state(&state_path, &metadata, job, prompts)?.records;
        set_prompts(&mut model, &dict, &state_path)?;
        let moments: StateDict = dict
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(ADAM_PREFIX)?.to_string(), t.clone())))
            .collect();
        let incomplete = adam.load_state(&moments, device);
        if !incomplete.is_empty() {
            return Err(TrainError::BadState {
                path: state_path,
                message: format!("incomplete optimiser state of {}", incomplete.join(", ")),
            });
        }
    }
    // Only the prompts learn: the text encoder is a constant the gradient flows through.
    model.text_encoder = model.text_encoder.map(|t| t.no_grad());
    let (features, labels) = image_features(&model.valid(), stage2, device)?;
    let features = Tensor::<B, 2>::from_inner(features);
    let mut csv = None;
    if writer {
        let mut file = std::fs::File::create(&csv_path).map_err(io(&csv_path))?;
        writeln!(file, "epoch,loss,lr,seconds").map_err(io(&csv_path))?;
        for r in &records {
            writeln!(file, "{}", prompt_csv_row(r)).map_err(io(&csv_path))?;
        }
        csv = Some(file);
    }
    let schedule = prompts.schedule();
    let last = job
        .prompt_stop_after
        .unwrap_or(prompts.epochs)
        .min(prompts.epochs);
    let batch = prompts.batch_size.max(1);
    for epoch in done + 1..=last {
        let lr = schedule.lr(epoch, prompts.base_lr);
        // The reference iterates `n / batch + 1` slices and its last is empty when the batch
        // divides `n` (a NaN loss); only non-empty slices are taken here.
        let order = permutation(
            labels.len(),
            derive_seed(seed, RngPurpose::Sampler, epoch as u64, u64::MAX),
        );
        let steps = order.len().div_ceil(batch);
        let bar = Bar::new(
            steps as u64,
            "prompts {prefix:>3} [{bar:30}] {pos}/{len} {msg}",
            epoch.to_string(),
        );
        let started = Instant::now();
        let mut loss_sum = 0.0;
        for (iteration, chunk) in order.chunks(batch).enumerate() {
            let ids: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [chunk.len()]), device);
            let batch_labels: Vec<i64> = chunk.iter().map(|&i| labels[i]).collect();
            let targets = Tensor::<B, 1, Int>::from_data(
                TensorData::new(batch_labels.clone(), [chunk.len()]),
                device,
            );
            let images = features.clone().select(0, rows);
            let text = model
                .text_features(targets)
                .expect("checked: the model has the text side");
            let loss = supcon_loss(images.clone(), text.clone(), &batch_labels, &batch_labels)?
                + supcon_loss(text, images, &batch_labels, &batch_labels)?;
            let value: f32 = loss.clone().into_scalar().elem();
            if !value.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFiniteLoss {
                    epoch,
                    iteration,
                    loss: value,
                });
            }
            loss_sum += value as f64;
            let grads = adam.gradients(loss, &model);
            model = adam.step(model, grads, |_| lr);
            bar.advance(1, || {
                format!("loss {:.4}  lr {lr:.2e}", loss_sum / (iteration + 1) as f64)
            });
        }
        bar.finish();
        let record = PromptRecord {
            epoch,
            loss: loss_sum / steps.max(1) as f64,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        records.push(record.clone());
        if let Some(csv) = csv.as_mut() {
            writeln!(csv, "{}", prompt_csv_row(&record)).map_err(io(&csv_path))?;
            println!(
                "prompts {epoch:>3}  loss {:.4}  lr {:.2e}  {:.1} s",
                record.loss, record.lr, record.seconds
            );
            #[cfg(feature = "plots")]
            {
                let rows: Vec<_> = records.iter().map(|r| (r.epoch, r.loss, r.lr)).collect();
                plot_prompt_stage(&run_dir.join(PROMPT_PLOT_FILE), &rows)?;
            }
            let progress = PromptProgress {
                settings: prompts.clone(),
                seed,
                records: records.clone(),
            };
            save_prompt_state(&state_path, &model, stage2.model_config, &adam, &progress)?;
        }
    }
    Ok(model)
}

fn prompt_csv_row(r: &PromptRecord) -> String {
    format!("{},{:.6},{:.8},{:.2}", r.epoch, r.loss, r.lr, r.seconds)
}

/// Writes the prompt vectors, Adam's moments and the progress into one file, atomically.
fn save_prompt_state<B: AutodiffBackend>(
    path: &Path,
    model: &ClipReid<B>,
    config: &ClipReidConfig,
    adam: &Adam<B>,
    progress: &PromptProgress,
) -> Result<(), TrainError> {
    let cls_ctx = model
        .prompt_learner
        .as_ref()
        .expect("checked: the model has the text side")
        .cls_ctx
        .val();
    let shape = cls_ctx.dims().to_vec();
    let data = cls_ctx.into_data().convert::<f32>().to_vec().unwrap();
    let mut dict = StateDict::new();
    dict.insert(CLS_CTX.to_string(), HostTensor::new(shape, data));
    for (name, tensor) in adam.state() {
        dict.insert(format!("{ADAM_PREFIX}{name}"), tensor);
    }
    Ok(write_safetensors(
        path,
        &dict,
        state_metadata(config, progress),
    )?)
}

/// The projected class token of every training image (test transform, no SIE) and its
/// identity, as the reference computes them once before stage 1.
fn image_features<B: Backend>(
    model: &ClipReid<B>,
    job: &TrainJob<'_, ClipReidConfig, ClipReidObjectiveConfig>,
    device: &B::Device,
) -> Result<(Tensor<B, 2>, Vec<i64>), TrainError> {
    let settings = job.settings;
    let loader = EvalLoader::new(
        &job.dataset.train,
        &[],
        TestTransform::new(job.transforms)?,
        settings.eval_batch_size,
        LoaderConfig {
            workers: settings.workers,
            prefetch: 4,
            seed: settings.seed,
        },
    )?;
    let bar = Bar::new(
        job.dataset.train.len() as u64,
        "{prefix} [{bar:30}] {pos}/{len}",
        "image features".to_string(),
    );
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for batch in loader.batches() {
        let batch = batch?;
        let images = Tensor::<B, 4>::from_data(TensorData::new(batch.images, batch.shape), device);
        features.push(model.image_features(images));
        labels.extend(batch.pids.iter().map(|&p| p as i64));
        bar.advance(batch.pids.len() as u64, String::new);
    }
    bar.finish();
    Ok((Tensor::cat(features, 0), labels))
}

/// A permutation of `0..n` drawn from `seed` (Fisher-Yates on SplitMix64).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_follow_the_seed() {
        let a = permutation(100, 7);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, permutation(100, 7));
        assert_ne!(a, permutation(100, 8));
    }

    #[test]
    fn the_prompt_schedule_is_the_references() {
        let s = PromptSettings::new(120, 64).schedule();
        assert!((s.lr(1, 3.5e-4) - 7.8e-5).abs() < 1e-15);
        assert!((s.lr(120, 3.5e-4) - 1e-6).abs() < 1e-15);
    }
}
