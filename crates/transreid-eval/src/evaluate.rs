//! The blocked evaluator: distances a block of queries at a time, each query ranked in parallel.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::distance::{Distance, FeatureDistances};
use crate::distance_rows::DistanceRows;
use crate::error::{EvalError, FeatureSet};
use crate::features::{FeatureNorm, Features};
use crate::labels::Labels;
use crate::metrics::{QueryOutcome, ReidMetrics};
use crate::ranking::{match_positions, MatchScratch};

/// Settings of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Length of the CMC curve, clamped to the gallery size. Default: 50 (the reference's
    /// `R1_mAP_eval(max_rank=50)`).
    pub max_rank: usize,
    /// Distance that ranks the gallery. Default: [`Distance::SquaredEuclidean`].
    pub distance: Distance,
    /// Normalisation applied to features first. Default: [`FeatureNorm::L2`].
    pub feature_norm: FeatureNorm,
    /// Memory for one block of distance rows, in bytes; a block holds
    /// `max(1, block_bytes / (4 · num_gallery))` queries. Default: 64 MiB. Larger blocks give the
    /// matrix product more rows to amortise packing; memory grows linearly.
    pub block_bytes: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            max_rank: 50,
            distance: Distance::default(),
            feature_norm: FeatureNorm::default(),
            block_bytes: 64 << 20,
        }
    }
}

/// CMC / mAP / mINP of `query` against `gallery` (SPEC section 6).
///
/// Features `[n_q, d]` and `[n_g, d]` are normalised per `config.feature_norm`, compared with
/// `config.distance`, and each query's gallery ranking is filtered of items with the query's pid
/// **and** camera; queries with no true match left are skipped and counted. The distance matrix
/// is produced `config.block_bytes` at a time and never held whole.
///
/// # Errors
///
/// [`EvalError::Empty`], [`EvalError::DimMismatch`], [`EvalError::RowCount`] (features vs
/// labels), [`EvalError::NonFiniteFeature`], [`EvalError::NonFiniteDistance`],
/// [`EvalError::ZeroMaxRank`], [`EvalError::NoValidQueries`].
pub fn evaluate(
    query: Features<'_>,
    query_labels: Labels<'_>,
    gallery: Features<'_>,
    gallery_labels: Labels<'_>,
    config: &EvalConfig,
) -> Result<ReidMetrics, EvalError> {
    check_sets(
        query.len(),
        query_labels,
        gallery.len(),
        gallery_labels,
        config,
    )?;
    let source = FeatureDistances::new(query, gallery, config.distance, config.feature_norm)?;
    evaluate_rows(&source, query_labels, gallery_labels, config)
}

/// Metrics from a precomputed row-major distance matrix `[n_q, n_g]` (`n_g = gallery_labels.len()`).
///
/// Only `config.max_rank` is used. The matrix is ranked in place, without copies.
///
/// # Errors
///
/// [`EvalError::DistmatShape`] when `distmat.len() != n_q · n_g`, plus those of [`evaluate`]
/// that concern labels and distances.
pub fn evaluate_distmat(
    distmat: &[f32],
    query_labels: Labels<'_>,
    gallery_labels: Labels<'_>,
    config: &EvalConfig,
) -> Result<ReidMetrics, EvalError> {
    let (nq, ng) = (query_labels.len(), gallery_labels.len());
    check_sets(nq, query_labels, ng, gallery_labels, config)?;
    if distmat.len() != nq * ng {
        return Err(EvalError::DistmatShape {
            num_query: nq,
            num_gallery: ng,
            got: distmat.len(),
        });
    }
    let outcomes = score_rows(distmat, 0, query_labels, gallery_labels)?;
    ReidMetrics::from_outcomes(&outcomes, config.max_rank, ng)
}

/// Metrics from any [`DistanceRows`] source (e.g. [`crate::RerankedDistances`]), fetched
/// `config.block_bytes` at a time.
///
/// # Errors
///
/// As [`evaluate_distmat`], with [`EvalError::RowCount`] when the labels do not match the
/// source's shape.
pub fn evaluate_rows<S: DistanceRows + ?Sized>(
    source: &S,
    query_labels: Labels<'_>,
    gallery_labels: Labels<'_>,
    config: &EvalConfig,
) -> Result<ReidMetrics, EvalError> {
    let (nq, ng) = (source.num_queries(), source.num_gallery());
    check_sets(nq, query_labels, ng, gallery_labels, config)?;
    let block_rows = (config.block_bytes / (ng * std::mem::size_of::<f32>())).clamp(1, nq);
    let mut buffer = vec![0.0f32; block_rows * ng];
    let mut outcomes = Vec::with_capacity(nq);
    let mut first = 0;
    while first < nq {
        let rows = block_rows.min(nq - first);
        let block = &mut buffer[..rows * ng];
        source.fill_rows(first, block);
        outcomes.extend(score_rows(block, first, query_labels, gallery_labels)?);
        first += rows;
    }
    ReidMetrics::from_outcomes(&outcomes, config.max_rank, ng)
}

/// Validates set sizes, label counts and `max_rank` before any work is done.
fn check_sets(
    num_query: usize,
    query_labels: Labels<'_>,
    num_gallery: usize,
    gallery_labels: Labels<'_>,
    config: &EvalConfig,
) -> Result<(), EvalError> {
    for (set, rows, labels) in [
        (FeatureSet::Query, num_query, query_labels),
        (FeatureSet::Gallery, num_gallery, gallery_labels),
    ] {
        if rows == 0 {
            return Err(EvalError::Empty { set });
        }
        if labels.len() != rows {
            return Err(EvalError::RowCount {
                set,
                rows,
                labels: labels.len(),
            });
        }
    }
    if config.max_rank == 0 {
        return Err(EvalError::ZeroMaxRank);
    }
    Ok(())
}

/// Per-query outcomes of the consecutive distance rows in `block`, starting at query `first`.
fn score_rows(
    block: &[f32],
    first: usize,
    query_labels: Labels<'_>,
    gallery_labels: Labels<'_>,
) -> Result<Vec<Option<QueryOutcome>>, EvalError> {
    let ng = gallery_labels.len();
    block
        .par_chunks(ng)
        .enumerate()
        .map_init(
            || (MatchScratch::default(), Vec::new()),
            |(scratch, positions), (r, row)| {
                let q = first + r;
                let (pid, camid) = (query_labels.pids()[q], query_labels.camids()[q]);
                match_positions(row, q, pid, camid, gallery_labels, scratch, positions)?;
                Ok((!positions.is_empty()).then(|| QueryOutcome::from_positions(positions)))
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pids: &'a [i64], cams: &'a [i64]) -> Labels<'a> {
        Labels::new(pids, cams).unwrap()
    }

    /// Seeded LCG so that the property tests need no extra dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn unit(&mut self) -> f32 {
            (self.next() >> 7) as f32 / (1u64 << 24) as f32 - 0.5
        }
    }

    /// `ids` identity centres shared by the sets drawn around them.
    fn centres(rng: &mut Lcg, ids: usize, dim: usize) -> Vec<f32> {
        (0..ids * dim).map(|_| rng.unit()).collect()
    }

    /// Random labelled features: `n` rows around the given centres, random cameras.
    fn random_set(
        rng: &mut Lcg,
        n: usize,
        centres: &[f32],
        dim: usize,
        cams: u64,
    ) -> (Vec<f32>, Vec<i64>, Vec<i64>) {
        let ids = (centres.len() / dim) as u64;
        let (mut f, mut p, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let pid = rng.next() % ids;
            for k in 0..dim {
                f.push(centres[pid as usize * dim + k] + 0.6 * rng.unit());
            }
            p.push(pid as i64);
            c.push((rng.next() % cams) as i64);
        }
        (f, p, c)
    }

    #[test]
    fn hand_checked_distmat() {
        // Two queries, five gallery items. Query 0: pid 1 cam 0; query 1: pid 2 cam 0.
        // Gallery pids [1, 2, 1, 3, 1], cams [0, 1, 1, 1, 1].
        //
        // Query 0 distances [0.1, 0.2, 0.3, 0.4, 0.5]: gallery 0 (pid 1 cam 0) is removed;
        // filtered ranking [g1 x, g2 m, g3 x, g4 m] -> matches at 2 and 4:
        //   AP = (1/2 + 2/4)/2 = 0.5, INP = 2/4 = 0.5, CMC [0, 1, 1, 1].
        // Query 1 distances [0.5, 0.1, 0.4, 0.3, 0.2]: ranking [g1 m, g4, g3, g2, g0] -> match at 1:
        //   AP = 1, INP = 1, CMC [1, 1, 1, 1].
        // Mean: mAP 0.75, mINP 0.75, CMC [0.5, 1, 1, 1]; max_rank 50 clamps to the gallery (5).
        let d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.1, 0.4, 0.3, 0.2];
        let m = evaluate_distmat(
            &d,
            labels(&[1, 2], &[0, 0]),
            labels(&[1, 2, 1, 3, 1], &[0, 1, 1, 1, 1]),
            &EvalConfig::default(),
        )
        .unwrap();
        assert_eq!(m.cmc, vec![0.5, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!((m.map, m.minp), (0.75, 0.75));
        assert_eq!((m.num_valid_queries, m.num_skipped_queries), (2, 0));
    }

    #[test]
    fn same_camera_filter_removes_only_same_pid_and_camera() {
        // Query pid 1 cam 0. Gallery: g0 pid 1 cam 0 (removed), g1 pid 4 cam 0 (kept: other pid),
        // g2 pid 1 cam 2 (match). Distances [0.0, 0.1, 0.2]: filtered ranking [g1, g2] -> match at 2.
        let d = [0.0, 0.1, 0.2];
        let m = evaluate_distmat(
            &d,
            labels(&[1], &[0]),
            labels(&[1, 4, 1], &[0, 0, 2]),
            &EvalConfig::default(),
        )
        .unwrap();
        assert_eq!(m.cmc, vec![0.0, 1.0, 1.0]);
        assert_eq!(m.map, 0.5);
        // Without the filter (query on another camera) g0 would be a rank-1 match.
        let m = evaluate_distmat(
            &d,
            labels(&[1], &[9]),
            labels(&[1, 4, 1], &[0, 0, 2]),
            &EvalConfig::default(),
        )
        .unwrap();
        assert_eq!(m.cmc[0], 1.0);
        // AP = (1/1 + 2/3) / 2.
        assert!((m.map - 5.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn invalid_queries_are_skipped_and_counted() {
        // Query 0 (pid 5) has no gallery item; query 1's only match shares its camera; query 2 is
        // valid with its match at rank 1.
        let d = [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1, 0.2, 0.3];
        let m = evaluate_distmat(
            &d,
            labels(&[5, 1, 2], &[0, 0, 0]),
            labels(&[2, 1, 3], &[1, 0, 1]),
            &EvalConfig::default(),
        )
        .unwrap();
        assert_eq!((m.num_valid_queries, m.num_skipped_queries), (1, 2));
        assert_eq!((m.map, m.minp, m.rank1()), (1.0, 1.0, Some(1.0)));
        // All skipped: the typed error the reference's assert becomes.
        let err = evaluate_distmat(
            &d[..3],
            labels(&[5], &[0]),
            labels(&[2, 1, 3], &[1, 0, 1]),
            &EvalConfig::default(),
        );
        assert_eq!(err, Err(EvalError::NoValidQueries { skipped: 1 }));
    }

    #[test]
    fn gallery_smaller_than_max_rank_clamps_the_curve() {
        let d = [0.3, 0.1];
        let m = evaluate_distmat(
            &d,
            labels(&[1], &[0]),
            labels(&[1, 2], &[1, 1]),
            &EvalConfig {
                max_rank: 10,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(m.cmc, vec![0.0, 1.0]);
        assert_eq!(m.rank10(), Some(1.0));
        let m = evaluate_distmat(
            &d,
            labels(&[1], &[0]),
            labels(&[1, 2], &[1, 1]),
            &EvalConfig {
                max_rank: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(m.cmc, vec![0.0]);
        assert_eq!(m.rank5(), None);
    }

    #[test]
    fn empty_and_mismatched_inputs_are_typed_errors() {
        let cfg = EvalConfig::default();
        let f = [1.0, 0.0, 0.0, 1.0];
        let two = Features::new(&f, 2).unwrap();
        let none = Features::new(&[], 2).unwrap();
        let l2 = labels(&[1, 2], &[0, 1]);
        let l1 = labels(&[1], &[0]);
        let l0 = labels(&[], &[]);
        assert_eq!(
            evaluate(none, l0, two, l2, &cfg),
            Err(EvalError::Empty {
                set: FeatureSet::Query
            })
        );
        assert_eq!(
            evaluate(two, l2, none, l0, &cfg),
            Err(EvalError::Empty {
                set: FeatureSet::Gallery
            })
        );
        assert_eq!(
            evaluate(two, l1, two, l2, &cfg),
            Err(EvalError::RowCount {
                set: FeatureSet::Query,
                rows: 2,
                labels: 1
            })
        );
        assert_eq!(
            evaluate(two, l2, two, l1, &cfg),
            Err(EvalError::RowCount {
                set: FeatureSet::Gallery,
                rows: 2,
                labels: 1
            })
        );
        let three = Features::new(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], 3).unwrap();
        assert_eq!(
            evaluate(two, l2, three, l2, &cfg),
            Err(EvalError::DimMismatch {
                query: 2,
                gallery: 3
            })
        );
        assert_eq!(
            evaluate_distmat(&[0.0; 3], l2, l2, &cfg),
            Err(EvalError::DistmatShape {
                num_query: 2,
                num_gallery: 2,
                got: 3
            })
        );
        assert_eq!(
            evaluate_distmat(&[], l0, l2, &cfg),
            Err(EvalError::Empty {
                set: FeatureSet::Query
            })
        );
        assert_eq!(
            evaluate(
                two,
                l2,
                two,
                l2,
                &EvalConfig {
                    max_rank: 0,
                    ..cfg.clone()
                }
            ),
            Err(EvalError::ZeroMaxRank)
        );
        assert_eq!(
            evaluate_distmat(&[0.0, f32::NAN, 0.0, 0.0], l2, l2, &cfg),
            Err(EvalError::NonFiniteDistance {
                query: 0,
                gallery: 1
            })
        );
    }

    #[test]
    fn perfect_ranking_gives_map_and_minp_one() {
        // Every query's true matches are strictly closer than every other item.
        let mut rng = Lcg(7);
        let (nq, ng) = (20, 60);
        let q_pids: Vec<i64> = (0..nq).map(|i| i as i64 % 8).collect();
        let g_pids: Vec<i64> = (0..ng).map(|j| j as i64 % 10).collect();
        let mut d = vec![0.0f32; nq * ng];
        for i in 0..nq {
            for j in 0..ng {
                let base = if g_pids[j] == q_pids[i] { 0.0 } else { 1.0 };
                d[i * ng + j] = base + 0.5 * (rng.unit() + 0.5);
            }
        }
        let m = evaluate_distmat(
            &d,
            labels(&q_pids, &vec![0; nq]),
            labels(&g_pids, &vec![1; ng]),
            &EvalConfig::default(),
        )
        .unwrap();
        assert_eq!((m.map, m.minp), (1.0, 1.0));
        assert!(m.cmc.iter().all(|&c| c == 1.0));
    }

    #[test]
    fn cmc_never_decreases_and_metrics_are_bounded() {
        let mut rng = Lcg(11);
        for trial in 0..5 {
            let dim = 8;
            let c = centres(&mut rng, 6, dim);
            let (qf, qp, qc) = random_set(&mut rng, 30, &c, dim, 3);
            let (gf, gp, gc) = random_set(&mut rng, 90, &c, dim, 3);
            let m = evaluate(
                Features::new(&qf, dim).unwrap(),
                labels(&qp, &qc),
                Features::new(&gf, dim).unwrap(),
                labels(&gp, &gc),
                &EvalConfig::default(),
            )
            .unwrap();
            assert!(
                m.cmc.windows(2).all(|w| w[0] <= w[1]),
                "trial {trial}: {:?}",
                m.cmc
            );
            assert!(m.cmc[0] > 0.0 && *m.cmc.last().unwrap() <= 1.0, "{m:?}");
            assert!(
                m.map > 0.0 && m.map <= 1.0 && m.minp > 0.0 && m.minp <= 1.0,
                "{m:?}"
            );
            assert_eq!(m.num_valid_queries + m.num_skipped_queries, 30);
        }
    }

    #[test]
    fn permuting_the_gallery_does_not_change_the_metrics() {
        let mut rng = Lcg(5);
        let dim = 6;
        let c = centres(&mut rng, 5, dim);
        let (qf, qp, qc) = random_set(&mut rng, 25, &c, dim, 2);
        let (gf, gp, gc) = random_set(&mut rng, 70, &c, dim, 2);
        let run = |gf: &[f32], gp: &[i64], gc: &[i64]| {
            evaluate(
                Features::new(&qf, dim).unwrap(),
                labels(&qp, &qc),
                Features::new(gf, dim).unwrap(),
                labels(gp, gc),
                &EvalConfig::default(),
            )
            .unwrap()
        };
        let base = run(&gf, &gp, &gc);
        // Reverse the gallery.
        let perm: Vec<usize> = (0..70).rev().collect();
        let pf: Vec<f32> = perm
            .iter()
            .flat_map(|&j| gf[j * dim..(j + 1) * dim].iter().copied())
            .collect();
        let pp: Vec<i64> = perm.iter().map(|&j| gp[j]).collect();
        let pc: Vec<i64> = perm.iter().map(|&j| gc[j]).collect();
        let permuted = run(&pf, &pp, &pc);
        assert_eq!(base.cmc, permuted.cmc);
        assert!(
            (base.map - permuted.map).abs() < 1e-12 && (base.minp - permuted.minp).abs() < 1e-12
        );
    }

    #[test]
    fn blocking_does_not_change_the_result() {
        let mut rng = Lcg(3);
        let dim = 10;
        let c = centres(&mut rng, 7, dim);
        let (qf, qp, qc) = random_set(&mut rng, 41, &c, dim, 3);
        let (gf, gp, gc) = random_set(&mut rng, 53, &c, dim, 3);
        let run = |block_bytes| {
            evaluate(
                Features::new(&qf, dim).unwrap(),
                labels(&qp, &qc),
                Features::new(&gf, dim).unwrap(),
                labels(&gp, &gc),
                &EvalConfig {
                    block_bytes,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        // One query per block, seven per block, all at once.
        let (a, b, c) = (run(1), run(7 * 53 * 4), run(1 << 30));
        assert_eq!(a, b);
        assert_eq!(a, c);
        // And evaluating the dense matrix gives the same numbers.
        let dense = FeatureDistances::new(
            Features::new(&qf, dim).unwrap(),
            Features::new(&gf, dim).unwrap(),
            Distance::SquaredEuclidean,
            FeatureNorm::L2,
        )
        .unwrap()
        .to_dense();
        assert_eq!(
            evaluate_distmat(
                &dense,
                labels(&qp, &qc),
                labels(&gp, &gc),
                &EvalConfig::default()
            )
            .unwrap(),
            a
        );
    }

    #[test]
    fn cosine_ranks_like_squared_euclidean_on_normalised_features() {
        let mut rng = Lcg(9);
        let dim = 12;
        let c = centres(&mut rng, 4, dim);
        let (qf, qp, qc) = random_set(&mut rng, 20, &c, dim, 2);
        let (gf, gp, gc) = random_set(&mut rng, 40, &c, dim, 2);
        let run = |distance| {
            evaluate(
                Features::new(&qf, dim).unwrap(),
                labels(&qp, &qc),
                Features::new(&gf, dim).unwrap(),
                labels(&gp, &gc),
                &EvalConfig {
                    distance,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let (e, c) = (run(Distance::SquaredEuclidean), run(Distance::Cosine));
        assert_eq!(e.cmc, c.cmc);
        assert!((e.map - c.map).abs() < 1e-12);
    }
}
