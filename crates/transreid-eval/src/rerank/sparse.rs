//! Re-ranking without the dense `(n_q + n_g)²` matrices.

use half::f16;
use rayon::prelude::*;

use super::config::RerankConfig;
use super::exact::prepare_all;
use super::numpy_arith::{add_f16, jaccard_distance, mean_f16, min_f16, Blend};
use super::reciprocal::{encoding_weights, expansion_set, smallest_keys, TopLists};
use super::sparse_rows::SparseRows;
use crate::distance::{fill_distance_rows, pair_distance, Distance, PreparedRows};
use crate::distance_rows::DistanceRows;
use crate::error::EvalError;
use crate::features::Features;

/// Re-ranked query-to-gallery distances held sparsely: the Jaccard distances that differ from 1
/// plus what is needed to recompute the original distances block by block.
///
/// Produced by [`rerank_sparse`]; evaluate it with [`crate::evaluate_rows`], or expand it with
/// [`RerankedDistances::to_dense`] on small sets.
#[derive(Debug, Clone)]
pub struct RerankedDistances<'a> {
    query: PreparedRows<'a>,
    gallery: PreparedRows<'a>,
    /// `max_j d[i, j]` over all `n_q + n_g` items, per query.
    row_max: Vec<f32>,
    /// Per query, gallery columns with a non-zero overlap and their `float16` Jaccard distance.
    jaccard: SparseRows,
    blend: Blend,
}

/// k-reciprocal re-ranking (same result as [`super::rerank_exact`]) in `O(n · k)` memory.
///
/// Every step of the reference reads the initial ranking only through `rank[i, :k1 + 1]` and
/// `rank[i, :k2]`, and the distance matrix only at those neighbours, at the expanded sets and
/// at the final query-gallery pairs. So:
///
/// 1. one blocked pass over `[query; gallery]` against itself keeps, per row, its maximum and its
///    `max(k1 + 1, k2)` nearest items (by row-normalised distance, then index);
/// 2. `V`, its query expansion and the Jaccard overlaps are built as sparse rows with the same
///    `float16` arithmetic as the exact variant (distances outside a row's kept list are
///    recomputed from the features);
/// 3. the final `[n_q, n_g]` distances are produced on demand a block of queries at a time
///    ([`DistanceRows::fill_rows`]): original distances recomputed by the blocked product,
///    blended with the stored Jaccard distances (1 where no overlap).
///
/// The truncation is therefore lossless: results differ from the dense variant only through the
/// rounding of the distance product (a few ulps, which can flip a `float16` rounding of `V`).
/// Cost: one `n × n` distance product (`2 n² d` flops) plus one `n_q × n_g` product.
///
/// # Errors
///
/// As [`super::rerank_exact`].
pub fn rerank_sparse<'a>(
    query: Features<'a>,
    gallery: Features<'a>,
    config: &RerankConfig,
) -> Result<RerankedDistances<'a>, EvalError> {
    let all = prepare_all(query, gallery, config)?;
    let (nq, n) = (query.len(), all.len());
    let width = (config.k1 + 1).max(config.k2).min(n);

    // Step 1: neighbour lists and row maxima, a block of rows at a time.
    let mut lists = TopLists::new(n, width);
    let mut list_dist = vec![0.0f32; n * width];
    let mut row_max = vec![0.0f32; n];
    let block_rows = (config.block_bytes / (n * std::mem::size_of::<f32>())).clamp(1, n);
    let mut buffer = vec![0.0f32; block_rows * n];
    {
        let mut list_rows = lists.rows_mut();
        let mut first = 0;
        while first < n {
            let rows = block_rows.min(n - first);
            let ids: Vec<usize> = (first..first + rows).collect();
            let block = &mut buffer[..rows * n];
            fill_distance_rows(&all, &ids, &all, Distance::SquaredEuclidean, block);
            let dst: Vec<&mut [u32]> = list_rows.by_ref().take(rows).collect();
            block
                .par_chunks_mut(n)
                .zip(dst)
                .zip(list_dist[first * width..(first + rows) * width].par_chunks_mut(width))
                .zip(row_max[first..first + rows].par_iter_mut())
                .for_each_init(Vec::new, |keys, (((row, idx), dist), max)| {
                    *max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    for x in row.iter_mut() {
                        *x /= *max;
                    }
                    smallest_keys(row, width, keys);
                    for ((i, d), &k) in idx.iter_mut().zip(dist.iter_mut()).zip(keys.iter()) {
                        *i = (k & 0xffff_ffff) as u32;
                        *d = row[*i as usize];
                    }
                });
            first += rows;
        }
    }
    drop(buffer);

    // Row-normalised distance, from the kept list when possible.
    let od = |i: usize, j: u32| -> f32 {
        match lists.ranked(i, width).iter().position(|&x| x == j) {
            Some(p) => list_dist[i * width + p],
            None => {
                pair_distance(&all, i, &all, j as usize, Distance::SquaredEuclidean) / row_max[i]
            }
        }
    };

    // Step 2a: V.
    let half = config.half_k1();
    let mut v = SparseRows::build(
        n,
        || (),
        |_, i| {
            let e = expansion_set(&lists, i, config.k1, half);
            let d: Vec<f32> = e.iter().map(|&j| od(i, j)).collect();
            let w = encoding_weights(&d);
            e.into_iter()
                .zip(w)
                .filter(|(_, w)| *w != f16::ZERO)
                .unzip()
        },
    );

    // Step 2b: local query expansion.
    if config.k2 != 1 {
        v = query_expansion(&v, &lists, config.k2, n);
    }

    // Step 2c: Jaccard distances of query rows against gallery rows.
    let jaccard = jaccard_rows(&v, nq, n);

    let mut parts = all.into_parts();
    let gallery_rows = parts.pop().expect("two parts");
    let query_rows = parts.pop().expect("two parts");
    row_max.truncate(nq);
    Ok(RerankedDistances {
        query: query_rows,
        gallery: gallery_rows,
        row_max,
        jaccard,
        blend: Blend::new(config.lambda),
    })
}

/// `V_qe[i] = f16(Σ_{r ∈ rank[i, :k2]} V[r] / count)` with the sum in `float32` in rank order.
fn query_expansion(v: &SparseRows, lists: &TopLists, k2: usize, n: usize) -> SparseRows {
    SparseRows::build(
        n,
        || (vec![0.0f32; n], vec![false; n], Vec::<u32>::new()),
        |(sum, seen, touched), i| {
            let neighbours = lists.ranked(i, k2);
            for &r in neighbours {
                let (cols, vals) = v.row(r as usize);
                for (&l, x) in cols.iter().zip(vals) {
                    if !seen[l as usize] {
                        seen[l as usize] = true;
                        touched.push(l);
                    }
                    sum[l as usize] += x.to_f32();
                }
            }
            touched.sort_unstable();
            let mut out = (
                Vec::with_capacity(touched.len()),
                Vec::with_capacity(touched.len()),
            );
            for &l in touched.iter() {
                let m = mean_f16(sum[l as usize], neighbours.len());
                if m != f16::ZERO {
                    out.0.push(l);
                    out.1.push(m);
                }
                sum[l as usize] = 0.0;
                seen[l as usize] = false;
            }
            touched.clear();
            out
        },
    )
}

/// Per query row `i < nq`, the gallery columns `j` (0-based within the gallery) whose overlap
/// `t = Σ_l min(V[i, l], V[nq + j, l])` (float16, ascending `l`) is non-empty, with
/// `1 − t / (2 − t)`.
fn jaccard_rows(v: &SparseRows, nq: usize, n: usize) -> SparseRows {
    let ng = n - nq;
    let inv = v.transpose_from(nq, n);
    SparseRows::build(
        nq,
        || (vec![f16::ZERO; ng], vec![false; ng], Vec::<u32>::new()),
        |(overlap, seen, touched), i| {
            let (cols, vals) = v.row(i);
            for (&l, &v_il) in cols.iter().zip(vals) {
                let (js, v_js) = inv.row(l as usize);
                for (&j, &v_jl) in js.iter().zip(v_js) {
                    let j = j as usize;
                    if !seen[j] {
                        seen[j] = true;
                        touched.push(j as u32);
                    }
                    overlap[j] = add_f16(overlap[j], min_f16(v_il, v_jl));
                }
            }
            touched.sort_unstable();
            let vals: Vec<f16> = touched
                .iter()
                .map(|&j| {
                    let t = overlap[j as usize];
                    overlap[j as usize] = f16::ZERO;
                    seen[j as usize] = false;
                    jaccard_distance(t)
                })
                .collect();
            (std::mem::take(touched), vals)
        },
    )
}

impl RerankedDistances<'_> {
    /// The whole `[n_q, n_g]` matrix, row-major. For small sets.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.num_queries() * self.num_gallery()];
        self.fill_rows(0, &mut out);
        out
    }

    /// Stored query-gallery pairs with a Jaccard distance below 1 (the sparse part's size).
    pub fn num_overlaps(&self) -> usize {
        self.jaccard.nnz()
    }
}

impl DistanceRows for RerankedDistances<'_> {
    fn num_queries(&self) -> usize {
        self.query.len()
    }

    fn num_gallery(&self) -> usize {
        self.gallery.len()
    }

    fn fill_rows(&self, first: usize, out: &mut [f32]) {
        let ng = self.gallery.len();
        assert_eq!(
            out.len() % ng,
            0,
            "fill_rows: {} values is not a whole number of rows of {ng}",
            out.len()
        );
        let ids: Vec<usize> = (first..first + out.len() / ng).collect();
        fill_distance_rows(
            &self.query,
            &ids,
            &self.gallery,
            Distance::SquaredEuclidean,
            out,
        );
        let no_overlap = f16::ONE;
        out.par_chunks_mut(ng)
            .zip(ids.par_iter())
            .for_each(|(row, &i)| {
                let max = self.row_max[i];
                let (cols, jac) = self.jaccard.row(i);
                let overlapping: Vec<f32> = cols
                    .iter()
                    .zip(jac)
                    .map(|(&j, &t)| self.blend.apply(t, row[j as usize] / max))
                    .collect();
                for x in row.iter_mut() {
                    *x = self.blend.apply(no_overlap, *x / max);
                }
                for (&j, &x) in cols.iter().zip(&overlapping) {
                    row[j as usize] = x;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::super::exact::tests::clustered;
    use super::super::rerank_exact;
    use super::*;

    #[test]
    fn sparse_equals_exact_on_a_small_set() {
        // 40 queries, 200 gallery items: the exact variant holds 240 x 240 matrices.
        let (q, g) = (clustered(40, 32, 12, 11), clustered(200, 32, 12, 12));
        let (qf, gf) = (
            Features::new(&q, 32).unwrap(),
            Features::new(&g, 32).unwrap(),
        );
        for (k1, k2, lambda) in [
            (20, 6, 0.3),
            (50, 15, 0.3),
            (5, 1, 0.5),
            (3, 2, 0.0),
            (1, 1, 0.9),
        ] {
            // A small block budget forces many neighbour-search blocks.
            let config = RerankConfig {
                k1,
                k2,
                lambda,
                block_bytes: 4 * 240 * 17,
                ..Default::default()
            };
            let exact = rerank_exact(qf, gf, &config).unwrap();
            let sparse = rerank_sparse(qf, gf, &config).unwrap();
            let dense = sparse.to_dense();
            let diff = exact
                .iter()
                .zip(&dense)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 1e-6,
                "k1={k1} k2={k2} lambda={lambda}: max |exact - sparse| = {diff}"
            );
            assert!(
                sparse.num_overlaps() > 0 && sparse.num_overlaps() <= 40 * 200,
                "k1={k1} {}",
                sparse.num_overlaps()
            );
        }
    }

    #[test]
    fn blocks_of_rows_match_the_dense_expansion() {
        let (q, g) = (clustered(9, 8, 3, 21), clustered(30, 8, 3, 22));
        let sparse = rerank_sparse(
            Features::new(&q, 8).unwrap(),
            Features::new(&g, 8).unwrap(),
            &RerankConfig::default(),
        )
        .unwrap();
        let dense = sparse.to_dense();
        let mut block = vec![0.0; 4 * 30];
        sparse.fill_rows(5, &mut block);
        // The product is blocked differently for 4 rows than for 9, so allow last-bit changes.
        for (a, b) in block.iter().zip(&dense[5 * 30..9 * 30]) {
            assert!((a - b).abs() <= 2.0 * f32::EPSILON, "{a} vs {b}");
        }
    }

    #[test]
    fn lambda_one_is_the_row_normalised_distance() {
        let (q, g) = (clustered(6, 8, 3, 31), clustered(25, 8, 3, 32));
        let (qf, gf) = (Features::new(&q, 8).unwrap(), Features::new(&g, 8).unwrap());
        let config = RerankConfig {
            lambda: 1.0,
            ..Default::default()
        };
        let got = rerank_sparse(qf, gf, &config).unwrap().to_dense();
        // d / max over all 31 items of the query's row.
        let all: Vec<f32> = q.iter().chain(&g).copied().collect();
        let d = crate::FeatureDistances::new(
            qf,
            Features::new(&all, 8).unwrap(),
            Distance::SquaredEuclidean,
            config.feature_norm,
        )
        .unwrap()
        .to_dense();
        for i in 0..6 {
            let row = &d[i * 31..(i + 1) * 31];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for j in 0..25 {
                assert!((got[i * 25 + j] - row[6 + j] / max).abs() < 1e-6);
            }
        }
    }
}
