//! What a run is given: its loop settings, its data and folder, and how it is spread over
//! processes.

use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use transreid_data::{ReidDataset, TransformConfig};
use transreid_loss::ObjectiveConfig;
use transreid_model::{ClipReidConfig, Precision, SieConfig, TransReidConfig};

use crate::distributed::DEFAULT_BUCKET_BYTES;
use crate::optim::{OptimizerKind, ScheduleKind, SolverConfig};

/// What settings and configurations are: stored as JSON in state files and compared on resume.
pub trait Setting: Debug + Clone + PartialEq + Serialize + DeserializeOwned {}

impl<T: Debug + Clone + PartialEq + Serialize + DeserializeOwned> Setting for T {}

/// What the training loop reads of a model's configuration.
pub trait ModelSettings: Setting {
    /// The side-information table the dataset's camera and view ids must fit.
    fn sie(&self) -> &SieConfig;
    /// Input size `[height, width]`.
    fn input_size(&self) -> [usize; 2];
    /// Whether the model trains in `precision` (CLIP-ReID trains in f32 only).
    fn trains_in(&self, precision: Precision) -> bool;
}

impl ModelSettings for TransReidConfig {
    fn sie(&self) -> &SieConfig {
        &self.sie
    }

    fn input_size(&self) -> [usize; 2] {
        self.vit.img_size
    }

    fn trains_in(&self, _: Precision) -> bool {
        true
    }
}

impl ModelSettings for ClipReidConfig {
    fn sie(&self) -> &SieConfig {
        &self.sie
    }

    fn input_size(&self) -> [usize; 2] {
        self.vision.img_size
    }

    fn trains_in(&self, precision: Precision) -> bool {
        precision == Precision::F32
    }
}

/// Settings of a training run (of one stage, for CLIP-ReID); `O` is the objective's settings:
/// TransReID's [`ObjectiveConfig`] or CLIP-ReID's
/// [`ClipReidObjectiveConfig`](transreid_loss::ClipReidObjectiveConfig).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings<O = ObjectiveConfig> {
    /// Epochs (`SOLVER.MAX_EPOCHS`).
    pub epochs: usize,
    /// Images per batch (`SOLVER.IMS_PER_BATCH`).
    pub batch_size: usize,
    /// Images per identity in a batch (`DATALOADER.NUM_INSTANCE`).
    pub instances: usize,
    /// Optimiser settings and parameter groups.
    pub solver: SolverConfig,
    /// Which optimiser steps. Default: SGD.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// The per-epoch schedule. Default: the cosine.
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// Warmup epochs of the schedule.
    pub warmup_epochs: usize,
    /// Loss settings.
    pub objective: O,
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

pub(super) fn one() -> usize {
    1
}

impl<O: Clone> TrainSettings<O> {
    /// The settings every rank must share (the loader's worker count may differ).
    pub fn without_workers(&self) -> Self {
        TrainSettings {
            workers: 0,
            ..self.clone()
        }
    }
}

/// What to train on and where, besides the model.
#[derive(Debug)]
pub struct TrainJob<'a, C = TransReidConfig, O = ObjectiveConfig> {
    /// The model's configuration (stored in checkpoints).
    pub model_config: &'a C,
    /// Training split plus query / gallery for evaluation.
    pub dataset: &'a ReidDataset,
    /// Train and test transforms.
    pub transforms: &'a TransformConfig,
    /// Loop settings.
    pub settings: &'a TrainSettings<O>,
    /// Run folder.
    pub run_dir: &'a Path,
    /// Continue from the run folder's [`super::STATE_FILE`] (model, optimiser, epoch, metrics).
    pub resume: bool,
    /// Stop after this epoch, leaving a state to resume from.
    pub stop_after: Option<usize>,
}

impl<C, O> Clone for TrainJob<'_, C, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, O> Copy for TrainJob<'_, C, O> {}

/// How a run is spread over processes (see [`super::train_parallel`]).
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
