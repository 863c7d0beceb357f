//! Re-identification evaluation on plain `f32` feature rows: CMC, mAP and mINP with the
//! same-identity-same-camera filter, k-reciprocal re-ranking, and the VehicleID protocol.
//!
//! Behaviour follows the reference TransReID evaluation (`utils/metrics.py`,
//! `utils/reranking.py`; SPEC section 6). Distances are computed and ranked a block of queries
//! at a time, so MSMT17-sized sets (11,659 × 82,161 × 3,840) never need the dense distance
//! matrix. See `docs/evaluation.md` for definitions, tie rule and measurements.
//!
//! ```
//! use transreid_eval::{evaluate, EvalConfig, Features, Labels};
//!
//! let query = [1.0, 0.0];
//! let gallery = [0.9, 0.1, 0.0, 1.0];
//! let m = evaluate(
//!     Features::new(&query, 2)?,
//!     Labels::new(&[7], &[0])?,
//!     Features::new(&gallery, 2)?,
//!     Labels::new(&[7, 8], &[1, 1])?,
//!     &EvalConfig::default(),
//! )?;
//! assert_eq!((m.rank1(), m.map), (Some(1.0), 1.0));
//! # Ok::<(), transreid_eval::EvalError>(())
//! ```

mod distance;
mod distance_rows;
mod error;
mod evaluate;
mod features;
mod labels;
mod metrics;
mod ranking;
pub mod rerank;
pub mod vehicle_id;

pub use distance::{Distance, FeatureDistances};
pub use distance_rows::{DenseDistances, DistanceRows};
pub use error::{EvalError, FeatureSet};
pub use evaluate::{evaluate, evaluate_distmat, evaluate_rows, EvalConfig};
pub use features::{
    l2_divisor, l2_normalize_into, l2_normalize_rows, FeatureNorm, Features, NORMALIZE_EPS,
};
pub use labels::Labels;
pub use metrics::ReidMetrics;
pub use ranking::rank_gallery;
pub use rerank::{rerank_exact, rerank_sparse, RerankConfig, RerankedDistances};
pub use vehicle_id::{VehicleIdProtocol, VehicleIdReport, VehicleIdSplit};
