//! Why a run stops.

use std::path::PathBuf;

use transreid_data::Split;
use transreid_model::{LabelError, Precision};

use crate::distributed::CollectiveError;
use crate::inference::InferenceError;
#[cfg(feature = "plots")]
use crate::plot::PlotError;

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
    /// CLIP-ReID's stages do not fit the model: stage 1 learns the text side's prompts.
    #[error(
        "{}",
        if *has_text {
            "the model has the text side (prompts): CLIP-ReID's first stage needs its settings \
             ([prompts] in the run configuration)"
        } else {
            "the model has no text side (the CLIP-ReID baseline): there are no prompts for a \
             first stage to learn (remove [prompts], or give the model a text side)"
        }
    )]
    ClipReidStages {
        /// Whether the model has the text side.
        has_text: bool,
    },
    /// The model does not train in this precision.
    #[error(
        "this model trains in f32 only, not {precision:?}: set solver.precision = \"f32\" (or \
         --precision f32)"
    )]
    Precision {
        /// The precision asked for.
        precision: Precision,
    },
    /// The state file's metadata is unreadable.
    #[error("{path}: {message}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}
