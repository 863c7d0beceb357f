//! Dense re-ranking: the reference's `re_ranking` step by step, for sets that fit in memory.

use half::f16;
use rayon::prelude::*;

use super::config::RerankConfig;
use super::numpy_arith::{add_f16, jaccard_distance, mean_f16, min_f16, Blend};
use super::reciprocal::{encoding_weights, expansion_set, TopLists};
use crate::distance::{fill_distance_rows, Distance, PreparedRows};
use crate::error::{EvalError, FeatureSet};
use crate::features::{FeatureNorm, Features};
use crate::ranking::rank_key;

/// k-reciprocal re-ranked distances `[n_q, n_g]` (row-major), computed densely as the
/// reference's `re_ranking(q, g, k1, k2, lambda)` does (SPEC section 6):
///
/// 1. `d = (‖a‖² + ‖b‖²) − 2 a·b` over all `n = n_q + n_g` (normalised) features;
/// 2. `od[i, j] = d[i, j] / max_k d[i, k]` (the code divides by the column maximum and
///    transposes, which is the same on the symmetric `d`; the row form is used here so that
///    rounding asymmetries of the product cannot make the two variants differ);
/// 3. `rank` = rows of `od` sorted by (distance, index);
/// 4. `V[i, E_i] = f16(exp(−od[i, E_i]) / Σ exp(−od[i, E_i]))`, `E_i` the expanded
///    k-reciprocal set;
/// 5. if `k2 ≠ 1`, `V[i] = f16(mean(V[rank[i, :k2]]))`;
/// 6. `t[i, j] = Σ_l min(V[i, l], V[j, l])` accumulated in `float16` over ascending `l`,
///    `jac = 1 − t / (2 − t)`;
/// 7. `final = f16(jac · f16(1 − λ)) + od · λ`, query rows and gallery columns.
///
/// Memory is `O(n²)` (a few `n × n` matrices); use [`super::rerank_sparse`] beyond a few
/// thousand items. The only deviations from the reference are the tie order (stable here) and
/// the rounding of the distance matrix product.
///
/// # Errors
///
/// [`EvalError::RerankParams`], [`EvalError::Empty`], [`EvalError::DimMismatch`],
/// [`EvalError::NonFiniteFeature`].
pub fn rerank_exact(
    query: Features<'_>,
    gallery: Features<'_>,
    config: &RerankConfig,
) -> Result<Vec<f32>, EvalError> {
    let all = prepare_all(query, gallery, config)?;
    let (nq, n) = (query.len(), all.len());

    let od = normalized_distances(&all);
    let lists = initial_ranking(&od, n, config);
    let half = config.half_k1();

    // Step 4: V, dense float16 as in the reference.
    let mut v = vec![f16::ZERO; n * n];
    v.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let e = expansion_set(&lists, i, config.k1, half);
        let d: Vec<f32> = e.iter().map(|&j| od[i * n + j as usize]).collect();
        for (&j, w) in e.iter().zip(encoding_weights(&d)) {
            row[j as usize] = w;
        }
    });

    // Step 5: local query expansion.
    if config.k2 != 1 {
        let mut v_qe = vec![f16::ZERO; n * n];
        v_qe.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let neighbours = lists.ranked(i, config.k2);
            let mut sum = vec![0.0f32; n];
            for &r in neighbours {
                for (s, x) in sum.iter_mut().zip(&v[r as usize * n..(r as usize + 1) * n]) {
                    *s += x.to_f32();
                }
            }
            for (o, s) in row.iter_mut().zip(sum) {
                *o = mean_f16(s, neighbours.len());
            }
        });
        v = v_qe;
    }

    // Step 6: inverted index over all rows, then the float16 overlap of every query row.
    let inv: Vec<Vec<u32>> = (0..n)
        .into_par_iter()
        .map(|l| {
            (0..n as u32)
                .filter(|&j| v[j as usize * n + l] != f16::ZERO)
                .collect()
        })
        .collect();
    let blend = Blend::new(config.lambda);
    let mut out = vec![0.0f32; nq * (n - nq)];
    out.par_chunks_mut(n - nq)
        .enumerate()
        .for_each(|(i, out_row)| {
            let mut overlap = vec![f16::ZERO; n];
            for l in 0..n {
                let v_il = v[i * n + l];
                if v_il == f16::ZERO {
                    continue;
                }
                for &j in &inv[l] {
                    let j = j as usize;
                    overlap[j] = add_f16(overlap[j], min_f16(v_il, v[j * n + l]));
                }
            }
            // Step 7: blend on the gallery columns.
            for (o, j) in out_row.iter_mut().zip(nq..n) {
                *o = blend.apply(jaccard_distance(overlap[j]), od[i * n + j]);
            }
        });
    Ok(out)
}

/// Checks the inputs and prepares `[query; gallery]` for the distance product.
pub(super) fn prepare_all<'a>(
    query: Features<'a>,
    gallery: Features<'a>,
    config: &RerankConfig,
) -> Result<PreparedRows<'a>, EvalError> {
    config.validate()?;
    if query.is_empty() {
        return Err(EvalError::Empty {
            set: FeatureSet::Query,
        });
    }
    if gallery.is_empty() {
        return Err(EvalError::Empty {
            set: FeatureSet::Gallery,
        });
    }
    if query.dim() != gallery.dim() {
        return Err(EvalError::DimMismatch {
            query: query.dim(),
            gallery: gallery.dim(),
        });
    }
    PreparedRows::new(
        &[(FeatureSet::Query, query), (FeatureSet::Gallery, gallery)],
        config.feature_norm == FeatureNorm::L2,
    )
}

/// Steps 1 and 2: `od[i, j] = d[i, j] / max_k d[i, k]`, dense `[n, n]`.
fn normalized_distances(all: &PreparedRows<'_>) -> Vec<f32> {
    let n = all.len();
    let ids: Vec<usize> = (0..n).collect();
    let mut od = vec![0.0f32; n * n];
    fill_distance_rows(all, &ids, all, Distance::SquaredEuclidean, &mut od);
    od.par_chunks_mut(n).for_each(|row| {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for x in row.iter_mut() {
            *x /= max;
        }
    });
    od
}

/// Step 3: every row of `od` sorted by (distance, index), kept to the prefix re-ranking reads.
fn initial_ranking(od: &[f32], n: usize, config: &RerankConfig) -> TopLists {
    let width = (config.k1 + 1).max(config.k2).min(n);
    let mut lists = TopLists::new(n, width);
    let rows: Vec<&mut [u32]> = lists.rows_mut().collect();
    rows.into_par_iter().enumerate().for_each(|(i, dst)| {
        let mut keys: Vec<u64> = od[i * n..(i + 1) * n]
            .iter()
            .enumerate()
            .map(|(j, &x)| rank_key(x, j))
            .collect();
        keys.sort_unstable();
        for (d, k) in dst.iter_mut().zip(keys) {
            *d = (k & 0xffff_ffff) as u32;
        }
    });
    lists
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Seeded LCG values in [-0.5, 0.5).
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }
    }

    /// `n` rows of `dim` values around `ids` centres shared by every call (so sets made with
    /// different seeds contain the same identities); `seed` drives the noise and the ids.
    pub(crate) fn clustered(n: usize, dim: usize, ids: u64, seed: u64) -> Vec<f32> {
        let mut centre_values = uniform(0xC3A7);
        let centres: Vec<f32> = (0..ids as usize * dim).map(|_| centre_values()).collect();
        let mut noise = uniform(seed);
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = (i as u64 * 7 + seed) % ids;
            for k in 0..dim {
                out.push(centres[c as usize * dim + k] + 0.8 * noise());
            }
        }
        out
    }

    #[test]
    fn output_shape_and_range() {
        let (q, g) = (clustered(7, 8, 3, 1), clustered(19, 8, 3, 2));
        let (qf, gf) = (Features::new(&q, 8).unwrap(), Features::new(&g, 8).unwrap());
        let out = rerank_exact(qf, gf, &RerankConfig::default()).unwrap();
        assert_eq!(out.len(), 7 * 19);
        // Jaccard and row-normalised distances both lie in [0, 1] (up to rounding).
        assert!(
            out.iter().all(|&x| (-1e-6..=1.0 + 1e-3).contains(&x)),
            "{out:?}"
        );
    }

    #[test]
    fn lambda_one_returns_the_normalised_distances_exactly() {
        let (q, g) = (clustered(5, 6, 2, 3), clustered(11, 6, 2, 4));
        let (qf, gf) = (Features::new(&q, 6).unwrap(), Features::new(&g, 6).unwrap());
        let config = RerankConfig {
            lambda: 1.0,
            ..Default::default()
        };
        let out = rerank_exact(qf, gf, &config).unwrap();
        let od = normalized_distances(&prepare_all(qf, gf, &config).unwrap());
        let n = 16;
        for i in 0..5 {
            assert_eq!(&out[i * 11..(i + 1) * 11], &od[i * n + 5..(i + 1) * n]);
        }
    }

    #[test]
    fn lambda_zero_gives_pure_jaccard_which_is_symmetric_for_a_shared_set() {
        // Query and gallery are the same rows. With lambda = 0 the output is the Jaccard distance
        // between encodings, symmetric up to the float16 rounding of V (the rows of an item and
        // its copy may round differently because their distances come from different products).
        let x = clustered(12, 8, 3, 5);
        let f = Features::new(&x, 8).unwrap();
        let out = rerank_exact(
            f,
            f,
            &RerankConfig {
                k1: 6,
                k2: 3,
                lambda: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..12 {
            for j in 0..12 {
                assert!(
                    (out[i * 12 + j] - out[j * 12 + i]).abs() < 2e-3,
                    "({i},{j})"
                );
            }
            // An item's own copy shares its whole encoding: Jaccard distance ~0, the row minimum.
            let row = &out[i * 12..(i + 1) * 12];
            assert!(
                row[i] < 2e-3 && row.iter().all(|&v| v >= row[i]),
                "row {i}: {row:?}"
            );
        }
    }

    #[test]
    fn typed_errors() {
        let a = [1.0, 0.0, 0.0, 1.0];
        let two = Features::new(&a, 2).unwrap();
        let four = Features::new(&a, 4).unwrap();
        let empty = Features::new(&[], 2).unwrap();
        let cfg = RerankConfig::default();
        assert_eq!(
            rerank_exact(empty, two, &cfg),
            Err(EvalError::Empty {
                set: FeatureSet::Query
            })
        );
        assert_eq!(
            rerank_exact(two, empty, &cfg),
            Err(EvalError::Empty {
                set: FeatureSet::Gallery
            })
        );
        assert_eq!(
            rerank_exact(two, four, &cfg),
            Err(EvalError::DimMismatch {
                query: 2,
                gallery: 4
            })
        );
        let bad = RerankConfig {
            lambda: -0.1,
            ..Default::default()
        };
        assert_eq!(
            rerank_exact(two, two, &bad),
            Err(EvalError::RerankParams {
                k1: 20,
                k2: 6,
                lambda: -0.1
            })
        );
    }
}
