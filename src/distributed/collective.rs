//! The operations data-parallel training needs from its communication engine.

/// A collective operation that failed, or ranks that disagree.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// The engine could not start or an operation failed.
    #[error("{0}")]
    Engine(String),
    /// The ranks hold different values where they must agree (configuration, weights).
    #[error("the ranks disagree on {what}: {detail}")]
    Mismatch {
        /// What was compared.
        what: String,
        /// Which ranks hold which values.
        detail: String,
    },
}

/// The collectives of data-parallel training, over `world` processes numbered `0..world`.
/// Every rank must call the same operations in the same order with the same lengths.
pub trait Collective {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world(&self) -> usize;
    /// Replaces `values` with their element-wise sum over all ranks.
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), CollectiveError>;
    /// [`Self::all_reduce_sum`] in f64 (metrics, counts).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<(), CollectiveError>;
    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CollectiveError>;
}

/// One process: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _values: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CollectiveError> {
        Ok(vec![value])
    }
}
