//! The VehicleID test protocol: random one-image-per-id galleries, repeated and averaged.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::distance::{fill_distance_rows, Distance, PreparedRows};
use crate::distance_rows::DistanceRows;
use crate::error::{EvalError, FeatureSet};
use crate::evaluate::{evaluate_rows, EvalConfig};
use crate::features::{FeatureNorm, Features};
use crate::labels::Labels;
use crate::metrics::ReidMetrics;

/// VehicleID evaluation (SPEC section 5.3): in each trial, one image per test id is drawn into
/// the gallery (camera 1) and the rest become queries (camera 0), so the same-camera filter
/// removes nothing; Rank-1, Rank-5 and mAP are averaged over the trials.
///
/// The reference repeats 10 unseeded trials; here the draws come from one ChaCha8 stream seeded
/// with `seed`, trial after trial, so a report is reproducible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VehicleIdProtocol {
    /// Number of random splits. Default: 10 (the reference's `test.py`).
    pub trials: usize,
    /// Seed of the gallery draws. Default: 0.
    pub seed: u64,
    /// Per-trial evaluation settings. Default: [`EvalConfig::default`] (`max_rank` 50).
    pub eval: EvalConfig,
}

impl Default for VehicleIdProtocol {
    fn default() -> Self {
        Self {
            trials: 10,
            seed: 0,
            eval: EvalConfig::default(),
        }
    }
}

/// One trial's split of the test set, as row indices into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VehicleIdSplit {
    /// Every image not drawn into the gallery, ascending.
    pub query: Vec<usize>,
    /// The drawn image of each id, ids in order of first appearance.
    pub gallery: Vec<usize>,
}

/// Per-trial metrics and their means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleIdReport {
    /// Metrics of each trial.
    pub trials: Vec<ReidMetrics>,
    /// Mean Rank-1 over trials.
    pub rank1: f64,
    /// Mean Rank-5 over trials.
    pub rank5: f64,
    /// Mean mAP over trials.
    pub map: f64,
    /// Mean mINP over trials.
    pub minp: f64,
}

impl VehicleIdProtocol {
    /// The `trials` splits of a test set with ids `pids` (deterministic in `seed`).
    pub fn splits(&self, pids: &[i64]) -> Vec<VehicleIdSplit> {
        let mut group_of: HashMap<i64, usize> = HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, &pid) in pids.iter().enumerate() {
            let g = *group_of.entry(pid).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        (0..self.trials)
            .map(|_| {
                let gallery: Vec<usize> = groups
                    .iter()
                    .map(|g| g[rng.random_range(0..g.len())])
                    .collect();
                let mut in_gallery = vec![false; pids.len()];
                for &j in &gallery {
                    in_gallery[j] = true;
                }
                let query = (0..pids.len()).filter(|&i| !in_gallery[i]).collect();
                VehicleIdSplit { query, gallery }
            })
            .collect()
    }

    /// Runs every trial on test features `[n, d]` with ids `pids`.
    ///
    /// # Errors
    ///
    /// [`EvalError::ZeroTrials`], [`EvalError::MaxRankTooSmall`] (`max_rank < 5`),
    /// [`EvalError::Empty`] (no test rows, or no queries because every id has one image),
    /// [`EvalError::RowCount`], [`EvalError::NonFiniteFeature`], [`EvalError::NonFiniteDistance`].
    pub fn evaluate(
        &self,
        features: Features<'_>,
        pids: &[i64],
    ) -> Result<VehicleIdReport, EvalError> {
        if self.trials == 0 {
            return Err(EvalError::ZeroTrials);
        }
        if self.eval.max_rank < 5 {
            return Err(EvalError::MaxRankTooSmall {
                max_rank: self.eval.max_rank,
                needed: 5,
            });
        }
        if features.is_empty() {
            return Err(EvalError::Empty {
                set: FeatureSet::Test,
            });
        }
        if features.len() != pids.len() {
            return Err(EvalError::RowCount {
                set: FeatureSet::Test,
                rows: features.len(),
                labels: pids.len(),
            });
        }
        let normalize =
            self.eval.feature_norm == FeatureNorm::L2 || self.eval.distance == Distance::Cosine;
        let test = PreparedRows::new(&[(FeatureSet::Test, features)], normalize)?;
        let mut trials = Vec::with_capacity(self.trials);
        for split in self.splits(pids) {
            let gathered: Vec<f32> = split
                .gallery
                .iter()
                .flat_map(|&j| features.row(j).iter().copied())
                .collect();
            let gallery_features = Features::new(&gathered, features.dim())?;
            let source = TrialDistances {
                test: &test,
                query: &split.query,
                gallery: PreparedRows::new(&[(FeatureSet::Gallery, gallery_features)], normalize)?,
                distance: self.eval.distance,
            };
            let q_pids: Vec<i64> = split.query.iter().map(|&i| pids[i]).collect();
            let g_pids: Vec<i64> = split.gallery.iter().map(|&i| pids[i]).collect();
            let (q_cams, g_cams) = (vec![0; q_pids.len()], vec![1; g_pids.len()]);
            trials.push(evaluate_rows(
                &source,
                Labels::new(&q_pids, &q_cams)?,
                Labels::new(&g_pids, &g_cams)?,
                &self.eval,
            )?);
        }
        let mean = |f: &dyn Fn(&ReidMetrics) -> f64| {
            trials.iter().map(f).sum::<f64>() / trials.len() as f64
        };
        // max_rank >= 5 was checked, so ranks 1 and 5 always exist.
        Ok(VehicleIdReport {
            rank1: mean(&|m| m.rank1().expect("max_rank >= 1")),
            rank5: mean(&|m| m.rank5().expect("max_rank >= 5")),
            map: mean(&|m| m.map),
            minp: mean(&|m| m.minp),
            trials,
        })
    }
}

/// Distances of one trial: query rows picked from the prepared test set by index.
struct TrialDistances<'r, 'a> {
    test: &'r PreparedRows<'a>,
    query: &'r [usize],
    gallery: PreparedRows<'r>,
    distance: Distance,
}

impl DistanceRows for TrialDistances<'_, '_> {
    fn num_queries(&self) -> usize {
        self.query.len()
    }

    fn num_gallery(&self) -> usize {
        self.gallery.len()
    }

    fn fill_rows(&self, first: usize, out: &mut [f32]) {
        let rows = out.len() / self.gallery.len();
        fill_distance_rows(
            self.test,
            &self.query[first..first + rows],
            &self.gallery,
            self.distance,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::evaluate;

    #[test]
    fn splits_take_one_image_per_id_and_are_seeded() {
        let pids = [5, 5, 9, 5, 9, 7];
        let p = VehicleIdProtocol {
            trials: 4,
            seed: 3,
            ..Default::default()
        };
        let splits = p.splits(&pids);
        assert_eq!(splits.len(), 4);
        for s in &splits {
            // Ids in order of first appearance: 5, 9, 7 (7 has a single image: always gallery).
            let ids: Vec<i64> = s.gallery.iter().map(|&j| pids[j]).collect();
            assert_eq!(ids, vec![5, 9, 7]);
            assert_eq!(s.query.len(), 3);
            let mut all: Vec<usize> = s.query.iter().chain(&s.gallery).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..6).collect::<Vec<_>>());
        }
        assert_eq!(splits, p.splits(&pids), "same seed, same splits");
        let other = VehicleIdProtocol {
            trials: 4,
            seed: 4,
            ..Default::default()
        }
        .splits(&pids);
        let many = VehicleIdProtocol {
            trials: 50,
            seed: 3,
            ..Default::default()
        }
        .splits(&pids);
        assert!(
            many.iter().any(|s| s != &many[0]),
            "draws vary between trials"
        );
        assert_ne!(splits, other);
    }

    #[test]
    fn each_trial_equals_a_plain_evaluation_of_its_split() {
        // 6 ids x 3 images, features near a per-id direction.
        let dim = 4;
        let mut features = Vec::new();
        let mut pids = Vec::new();
        for id in 0..6i64 {
            for k in 0..3 {
                for c in 0..dim {
                    let base = if c as i64 == id % dim as i64 {
                        1.0
                    } else {
                        0.0
                    };
                    features.push(
                        base + 0.3 * (((id * 7 + k * 3 + c as i64 * 5) % 11) as f32 / 11.0 - 0.5),
                    );
                }
                pids.push(id);
            }
        }
        let f = Features::new(&features, dim).unwrap();
        let protocol = VehicleIdProtocol {
            trials: 3,
            seed: 1,
            ..Default::default()
        };
        let report = protocol.evaluate(f, &pids).unwrap();
        for (split, got) in protocol.splits(&pids).iter().zip(&report.trials) {
            let take = |ids: &[usize]| {
                ids.iter()
                    .flat_map(|&i| features[i * dim..(i + 1) * dim].iter().copied())
                    .collect::<Vec<f32>>()
            };
            let (qf, gf) = (take(&split.query), take(&split.gallery));
            let qp: Vec<i64> = split.query.iter().map(|&i| pids[i]).collect();
            let gp: Vec<i64> = split.gallery.iter().map(|&i| pids[i]).collect();
            let want = evaluate(
                Features::new(&qf, dim).unwrap(),
                Labels::new(&qp, &vec![0; qp.len()]).unwrap(),
                Features::new(&gf, dim).unwrap(),
                Labels::new(&gp, &vec![1; gp.len()]).unwrap(),
                &EvalConfig::default(),
            )
            .unwrap();
            assert_eq!(got, &want);
            assert_eq!(
                got.num_valid_queries, 12,
                "every query has its id's gallery image"
            );
        }
        let mean_r1 = report.trials.iter().map(|m| m.cmc[0]).sum::<f64>() / 3.0;
        assert!((report.rank1 - mean_r1).abs() < 1e-15);
        assert!(report.rank5 >= report.rank1 && report.map > 0.0);
    }

    #[test]
    fn typed_errors() {
        let f = Features::new(&[1.0, 0.0, 0.0, 1.0], 2).unwrap();
        let zero = VehicleIdProtocol {
            trials: 0,
            ..Default::default()
        };
        assert_eq!(zero.evaluate(f, &[1, 1]), Err(EvalError::ZeroTrials));
        let short = VehicleIdProtocol {
            eval: EvalConfig {
                max_rank: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            short.evaluate(f, &[1, 1]),
            Err(EvalError::MaxRankTooSmall {
                max_rank: 3,
                needed: 5
            })
        );
        let p = VehicleIdProtocol::default();
        assert_eq!(
            p.evaluate(f, &[1]),
            Err(EvalError::RowCount {
                set: FeatureSet::Test,
                rows: 2,
                labels: 1
            })
        );
        assert_eq!(
            p.evaluate(Features::new(&[], 2).unwrap(), &[]),
            Err(EvalError::Empty {
                set: FeatureSet::Test
            })
        );
        // Two ids with one image each: everything goes to the gallery.
        assert_eq!(
            p.evaluate(f, &[1, 2]),
            Err(EvalError::Empty {
                set: FeatureSet::Query
            })
        );
    }
}
