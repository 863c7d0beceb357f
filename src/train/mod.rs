//! Training: one epoch loop ([`train`], [`train_parallel`]) for every model that implements
//! [`Trainee`] (TransReID, CLIP-ReID's second stage and its baseline), CLIP-ReID's first stage
//! and the two stages in one run folder ([`train_clip_reid`]), the job checks, and the resume
//! state.

mod epoch_loop;
mod error;
mod job;
mod settings;
mod stages;
mod state;
mod trainee;

pub use epoch_loop::{train, train_parallel};
pub use error::TrainError;
pub use job::{check_job, check_ranks_agree};
pub use settings::{ModelSettings, ParallelOptions, Setting, TrainJob, TrainSettings};
pub use stages::{
    check_clip_reid_job, check_clip_reid_ranks_agree, train_clip_reid, ClipReidJob, PromptSettings,
    PROMPT_METRICS_FILE, PROMPT_PLOT_FILE, PROMPT_STATE_FILE,
};
pub use trainee::{StepLoss, TrainBatch, Trainee};

pub use crate::epoch_record::EpochRecord;

/// The model checkpoint of a run folder (what `eval`, `embed` and `search` read).
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The resume state of a run folder: model, optimiser and progress, written every epoch.
pub const STATE_FILE: &str = "state.safetensors";
/// Per-epoch metrics of a run folder.
pub const METRICS_FILE: &str = "metrics.csv";
/// The training figure of a run folder.
pub const PLOT_FILE: &str = "training.png";
