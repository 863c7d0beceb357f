//! The crate's error type.

use std::fmt;

/// Which input an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureSet {
    /// The query set (rows of the distance matrix).
    Query,
    /// The gallery set (columns of the distance matrix).
    Gallery,
    /// The whole test set of a protocol that splits it itself (VehicleID).
    Test,
}

impl fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FeatureSet::Query => "query",
            FeatureSet::Gallery => "gallery",
            FeatureSet::Test => "test",
        })
    }
}

/// Everything that can go wrong while evaluating.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A feature matrix was declared with zero columns.
    #[error("feature dimension must be positive")]
    ZeroDim,

    /// The flat feature buffer does not hold a whole number of rows.
    #[error("{len} feature values do not form rows of dimension {dim}")]
    Ragged { len: usize, dim: usize },

    /// A set has no rows.
    #[error("the {set} set is empty")]
    Empty { set: FeatureSet },

    /// Query and gallery features have different dimensions.
    #[error("query features have dimension {query} but gallery features {gallery}")]
    DimMismatch { query: usize, gallery: usize },

    /// `pids` and `camids` differ in length.
    #[error("{pids} pids but {camids} camids")]
    LabelLengths { pids: usize, camids: usize },

    /// A set has a different number of feature rows and labels.
    #[error("the {set} set has {rows} feature rows but {labels} labels")]
    RowCount {
        set: FeatureSet,
        rows: usize,
        labels: usize,
    },

    /// A precomputed distance matrix does not have `num_query * num_gallery` entries.
    #[error("distance matrix has {got} entries, expected {num_query} x {num_gallery}")]
    DistmatShape {
        num_query: usize,
        num_gallery: usize,
        got: usize,
    },

    /// A feature row holds NaN or infinity.
    #[error("row {row} of the {set} features is not finite")]
    NonFiniteFeature { set: FeatureSet, row: usize },

    /// A distance is NaN or infinite (so it has no place in a ranking).
    #[error("distance between query {query} and gallery item {gallery} is not finite")]
    NonFiniteDistance { query: usize, gallery: usize },

    /// `max_rank` is zero.
    #[error("max_rank must be at least 1")]
    ZeroMaxRank,

    /// No query has a true match left after the same-camera filter (the reference asserts here).
    #[error("no query has a correct match in the gallery ({skipped} queries skipped)")]
    NoValidQueries { skipped: usize },

    /// Re-ranking parameters outside their domain (`k1 >= 1`, `k2 >= 1`, `0 <= lambda <= 1`).
    #[error("invalid re-ranking parameters k1={k1} k2={k2} lambda={lambda}")]
    RerankParams { k1: usize, k2: usize, lambda: f64 },

    /// A protocol with repeated trials was asked for none.
    #[error("the number of trials must be at least 1")]
    ZeroTrials,

    /// The protocol needs a CMC at least this long to report its ranks.
    #[error("max_rank {max_rank} is below the protocol's rank {needed}")]
    MaxRankTooSmall { max_rank: usize, needed: usize },
}
