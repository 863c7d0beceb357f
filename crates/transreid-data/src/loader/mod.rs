//! Multi-threaded batch loading with bounded prefetch and seed-determined output.

pub mod batch_stream;
pub mod config;
pub mod eval_loader;
pub mod host_batch;
pub mod train_loader;
