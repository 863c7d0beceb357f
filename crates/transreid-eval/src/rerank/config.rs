//! Parameters of k-reciprocal re-ranking.

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::features::FeatureNorm;

/// Parameters of `re_ranking(q, g, k1, k2, lambda)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankConfig {
    /// Neighbourhood of the k-reciprocal sets. Default: 20 (the paper).
    pub k1: usize,
    /// Rows averaged by local query expansion; 1 disables it. Default: 6 (the paper).
    pub k2: usize,
    /// Weight of the original distance: `final = jaccard·(1−λ) + original·λ`. Default: 0.3.
    /// A Python float in the reference, hence `f64`.
    pub lambda: f64,
    /// Normalisation applied to features first. Default: [`FeatureNorm::L2`] (the reference
    /// normalises before calling `re_ranking`).
    pub feature_norm: FeatureNorm,
    /// Memory for one block of distance rows in the sparse variant's neighbour search, in
    /// bytes. Default: 64 MiB.
    pub block_bytes: usize,
}

impl Default for RerankConfig {
    fn default() -> Self {
        Self {
            k1: 20,
            k2: 6,
            lambda: 0.3,
            feature_norm: FeatureNorm::L2,
            block_bytes: 64 << 20,
        }
    }
}

impl RerankConfig {
    /// The values `R1_mAP_eval(reranking=True)` passes: `k1 = 50, k2 = 15, lambda = 0.3`.
    pub fn reference_eval() -> Self {
        Self {
            k1: 50,
            k2: 15,
            ..Self::default()
        }
    }

    /// `round_half_even(k1 / 2)`: the neighbourhood of the expansion step (`np.around(k1 / 2)`).
    pub(crate) fn half_k1(&self) -> usize {
        (self.k1 as f64 / 2.0).round_ties_even() as usize
    }

    /// Checks `k1 >= 1`, `k2 >= 1` and `0 <= lambda <= 1`.
    pub(crate) fn validate(&self) -> Result<(), EvalError> {
        if self.k1 == 0 || self.k2 == 0 || !(0.0..=1.0).contains(&self.lambda) {
            return Err(EvalError::RerankParams {
                k1: self.k1,
                k2: self.k2,
                lambda: self.lambda,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_k1_rounds_half_to_even() {
        let half = |k1| {
            RerankConfig {
                k1,
                ..Default::default()
            }
            .half_k1()
        };
        // 20/2 = 10, 50/2 = 25, 5/2 = 2.5 -> 2, 7/2 = 3.5 -> 4, 1/2 -> 0.
        assert_eq!(
            [half(20), half(50), half(5), half(7), half(1)],
            [10, 25, 2, 4, 0]
        );
    }

    #[test]
    fn validation() {
        assert!(RerankConfig::default().validate().is_ok());
        assert!(RerankConfig::reference_eval().validate().is_ok());
        for bad in [
            RerankConfig {
                k1: 0,
                ..Default::default()
            },
            RerankConfig {
                k2: 0,
                ..Default::default()
            },
            RerankConfig {
                lambda: 1.5,
                ..Default::default()
            },
            RerankConfig {
                lambda: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(EvalError::RerankParams { .. })),
                "{bad:?}"
            );
        }
    }
}
