/// Errors from batches the losses cannot handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LossError {
    /// An anchor has no other sample of its identity.
    #[error(
        "label {label} has no positive in the batch (batch-hard triplet needs K >= 2 per identity)"
    )]
    NoPositive {
        /// The label.
        label: i64,
    },
    /// Every sample has the same identity.
    #[error("label {label} has no negative in the batch (needs at least two identities)")]
    NoNegative {
        /// The label.
        label: i64,
    },
    /// Identities occur unequally often, which the reference's batch-hard mining requires.
    #[error("labels must occur equally often (P x K batches): label {label} occurs {count} times, expected {expected}")]
    UnbalancedBatch {
        /// The label.
        label: i64,
        /// Its count.
        count: usize,
        /// The count of the first label.
        expected: usize,
    },
    /// A batch without samples.
    #[error("an empty batch has no triplets")]
    EmptyBatch,
    /// Features and labels disagree in length.
    #[error("{features} feature rows but {labels} labels")]
    LengthMismatch {
        /// Feature rows.
        features: usize,
        /// Labels.
        labels: usize,
    },
}
