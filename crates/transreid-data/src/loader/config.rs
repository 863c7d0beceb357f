//! Loader threading and seeding settings.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Settings shared by [`crate::TrainLoader`] and [`crate::EvalLoader`]. Results depend only on
/// `seed`, never on `workers` or `prefetch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Decoding/augmentation threads. Default: the machine's available parallelism.
    pub workers: usize,
    /// Batches prepared ahead of the consumer. Default: 2.
    pub prefetch: usize,
    /// Base seed of the sampler and of every sample's augmentation. Default: 1234 (`SOLVER.SEED`).
    pub seed: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: 2,
            seed: 1234,
        }
    }
}

impl LoaderConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(DataError::invalid(
                "workers",
                "at least one worker thread is needed",
            ));
        }
        if self.prefetch == 0 {
            return Err(DataError::invalid(
                "prefetch",
                "at least one batch must be buffered",
            ));
        }
        Ok(())
    }

    pub(crate) fn thread_pool(&self) -> Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.workers)
            .thread_name(|i| format!("reid-loader-{i}"))
            .build()
            .map_err(|e| DataError::invalid("workers", e.to_string()))
    }
}
