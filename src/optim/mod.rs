//! SGD with the reference's parameter groups and its per-epoch warmup + cosine schedule.

mod schedule;
mod sgd;

pub use schedule::CosineWarmup;
pub use sgd::{ParamGroup, Sgd, SolverConfig};
