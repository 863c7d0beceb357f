//! SGD with the reference's parameter groups and its per-epoch warmup + cosine schedule,
//! CLIP-ReID's Adam and warmup + multi-step schedule, and the loss scaler of f16 training.

mod adam;
mod loss_scale;
mod optimizer;
mod schedule;
mod sgd;

pub use adam::{Adam, ADAM_BETA1, ADAM_BETA2, ADAM_EPS};
pub use loss_scale::LossScaler;
pub use optimizer::{Optimizer, OptimizerKind};
pub use schedule::{CosineWarmup, LrSchedule, ScheduleKind, WarmupMultiStep};
pub use sgd::{param_names, ParamGroup, Sgd, SolverConfig};
