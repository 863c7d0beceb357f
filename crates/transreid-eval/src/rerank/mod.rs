//! k-reciprocal re-ranking (Zhong et al., CVPR 2017) as the reference's `utils/reranking.py`
//! computes it, in a dense variant ([`rerank_exact`]) and a sparse one that scales to MSMT17
//! ([`rerank_sparse`]). Both reproduce the reference's `float16` storage of `V` and of the
//! Jaccard distances, so they agree with it to the rounding of the distance product.

mod config;
mod exact;
mod numpy_arith;
mod reciprocal;
mod sparse;
mod sparse_rows;

pub use config::RerankConfig;
pub use exact::rerank_exact;
pub use sparse::{rerank_sparse, RerankedDistances};
