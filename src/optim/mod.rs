//! SGD with the reference's parameter groups and its per-epoch warmup + cosine schedule, and
//! the loss scaler of f16 training.

mod loss_scale;
mod schedule;
mod sgd;

pub use loss_scale::LossScaler;
pub use schedule::CosineWarmup;
pub use sgd::{param_names, ParamGroup, Sgd, SolverConfig};
