//! Query-to-gallery distances computed block by block with a matrix product.

use gemm::Parallelism;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::distance_rows::DistanceRows;
use crate::error::{EvalError, FeatureSet};
use crate::features::{l2_divisor, FeatureNorm, Features};

/// The distance that ranks the gallery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Distance {
    /// `‖q‖² + ‖g‖² − 2 q·g` (no square root), the reference's `euclidean_distance`.
    #[default]
    SquaredEuclidean,
    /// `1 − q·g / (‖q‖ ‖g‖)`. Features are always L2-normalised for it, whatever
    /// [`FeatureNorm`] says. On normalised features it equals half the squared Euclidean
    /// distance, so it ranks identically.
    Cosine,
}

/// Rows ready for the blocked product: borrowed raw rows (possibly the concatenation of several
/// sets) plus, per row, the normalisation divisor and the squared norm after normalisation.
///
/// Keeping divisors instead of normalised copies is what keeps memory at one copy of the
/// features: the gallery enters the product raw and the divisor is applied to each dot product.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRows<'a> {
    parts: Vec<Features<'a>>,
    starts: Vec<usize>,
    dim: usize,
    len: usize,
    divisor: Vec<f32>,
    sq_norm: Vec<f32>,
}

impl<'a> PreparedRows<'a> {
    /// Concatenates `parts` (all of the same dimension) and computes each row's divisor
    /// (`max(‖x‖, 1e-12)` when `normalize`, else 1) and `‖x / divisor‖²`.
    ///
    /// # Errors
    ///
    /// [`EvalError::NonFiniteFeature`] for a row holding NaN or infinity.
    ///
    /// # Panics
    ///
    /// Panics if `parts` is empty or the parts differ in dimension (callers check both).
    pub(crate) fn new(
        parts: &[(FeatureSet, Features<'a>)],
        normalize: bool,
    ) -> Result<Self, EvalError> {
        let dim = parts[0].1.dim();
        assert!(
            parts.iter().all(|(_, f)| f.dim() == dim),
            "PreparedRows: parts differ in dimension"
        );
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0;
        let mut divisor = Vec::new();
        let mut sq_norm = Vec::new();
        for &(set, features) in parts {
            starts.push(len);
            len += features.len();
            let stats: Vec<Option<(f32, f32)>> = (0..features.len())
                .into_par_iter()
                .map(|i| row_stats(features.row(i), normalize))
                .collect();
            for (row, s) in stats.into_iter().enumerate() {
                let (d, s) = s.ok_or(EvalError::NonFiniteFeature { set, row })?;
                divisor.push(d);
                sq_norm.push(s);
            }
        }
        Ok(Self {
            parts: parts.iter().map(|p| p.1).collect(),
            starts,
            dim,
            len,
            divisor,
            sq_norm,
        })
    }

    /// Total number of rows.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Feature dimension.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Splits the concatenation back into one `PreparedRows` per part.
    pub(crate) fn into_parts(self) -> Vec<PreparedRows<'a>> {
        self.parts
            .iter()
            .zip(&self.starts)
            .map(|(&part, &start)| {
                let end = start + part.len();
                PreparedRows {
                    parts: vec![part],
                    starts: vec![0],
                    dim: self.dim,
                    len: part.len(),
                    divisor: self.divisor[start..end].to_vec(),
                    sq_norm: self.sq_norm[start..end].to_vec(),
                }
            })
            .collect()
    }

    /// Raw row `i` of the concatenation.
    pub(crate) fn row(&self, i: usize) -> &'a [f32] {
        let p = self.starts.partition_point(|&s| s <= i) - 1;
        self.parts[p].row(i - self.starts[p])
    }

    /// `row(i) / divisor(i)` into `out`.
    fn normalized_into(&self, i: usize, out: &mut [f32]) {
        let d = self.divisor[i];
        for (o, &x) in out.iter_mut().zip(self.row(i)) {
            *o = x / d;
        }
    }
}

/// `(divisor, ‖x / divisor‖²)` of one row, or `None` when the row is not finite.
fn row_stats(row: &[f32], normalize: bool) -> Option<(f32, f32)> {
    let sum: f64 = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if !sum.is_finite() {
        return None;
    }
    if !normalize {
        return Some((1.0, sum as f32));
    }
    let d = l2_divisor(row);
    let sq: f64 = row
        .iter()
        .map(|&x| {
            let y = f64::from(x / d);
            y * y
        })
        .sum();
    Some((d, sq as f32))
}

/// Distances of rows `row_ids` of `rows` to every row of `cols`, row-major into `out`
/// (`[row_ids.len(), cols.len()]`).
///
/// One matrix product per part of `cols`: `C = Q̂ Gᵀ` with `Q̂` the normalised query block and
/// `G` the raw rows, then `q̂·ĝ = C / divisor_g` and
/// `d = (‖q̂‖² + ‖ĝ‖²) − 2 q̂·ĝ` (the reference's summation order) or `d = 1 − q̂·ĝ`.
///
/// # Panics
///
/// Panics if `out.len() != row_ids.len() * cols.len()` or the dimensions differ.
pub(crate) fn fill_distance_rows(
    rows: &PreparedRows<'_>,
    row_ids: &[usize],
    cols: &PreparedRows<'_>,
    distance: Distance,
    out: &mut [f32],
) {
    let (m, n, dim) = (row_ids.len(), cols.len(), rows.dim());
    assert_eq!(
        out.len(),
        m * n,
        "fill_distance_rows: out has {} values, expected {m} x {n}",
        out.len()
    );
    assert_eq!(
        dim,
        cols.dim(),
        "fill_distance_rows: dimensions {dim} and {} differ",
        cols.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    let mut lhs = vec![0.0f32; m * dim];
    lhs.par_chunks_mut(dim)
        .zip(row_ids.par_iter())
        .for_each(|(dst, &i)| rows.normalized_into(i, dst));
    for (part, &start) in cols.parts.iter().zip(&cols.starts) {
        if part.is_empty() {
            continue;
        }
        // SAFETY: `out` holds m rows of n values; columns start..start + part.len() lie inside
        // each row (row stride n, column stride 1). `lhs` is m x dim row-major; the part is
        // part.len() rows of dim values, read as the dim x part.len() matrix Gᵀ (column stride
        // dim, row stride 1). `read_dst = false`, so `out` is only written.
        unsafe {
            gemm::gemm(
                m,
                part.len(),
                dim,
                out.as_mut_ptr().add(start),
                1,
                n as isize,
                false,
                lhs.as_ptr(),
                1,
                dim as isize,
                part.as_slice().as_ptr(),
                dim as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::Rayon(0),
            );
        }
    }
    let (g_div, g_sq) = (&cols.divisor, &cols.sq_norm);
    out.par_chunks_mut(n)
        .zip(row_ids.par_iter())
        .for_each(|(row, &i)| match distance {
            Distance::SquaredEuclidean => {
                let q_sq = rows.sq_norm[i];
                for ((d, &div), &g) in row.iter_mut().zip(g_div).zip(g_sq) {
                    *d = (q_sq + g) - 2.0 * (*d / div);
                }
            }
            Distance::Cosine => {
                for (d, &div) in row.iter_mut().zip(g_div) {
                    *d = 1.0 - *d / div;
                }
            }
        });
}

/// The distance between row `i` of `rows` and row `j` of `cols`, with the same formula as
/// [`fill_distance_rows`] (dot product accumulated in `f64`).
pub(crate) fn pair_distance(
    rows: &PreparedRows<'_>,
    i: usize,
    cols: &PreparedRows<'_>,
    j: usize,
    distance: Distance,
) -> f32 {
    let d_i = rows.divisor[i];
    let dot: f64 = rows
        .row(i)
        .iter()
        .zip(cols.row(j))
        .map(|(&x, &y)| f64::from(x / d_i) * f64::from(y))
        .sum();
    let dot = dot as f32 / cols.divisor[j];
    match distance {
        Distance::SquaredEuclidean => (rows.sq_norm[i] + cols.sq_norm[j]) - 2.0 * dot,
        Distance::Cosine => 1.0 - dot,
    }
}

/// Query-to-gallery distances computed from features, a block of queries at a time.
///
/// Holds only borrowed features plus two floats per row; [`DistanceRows::fill_rows`] normalises
/// the requested query rows, multiplies them with the raw gallery (`gemm`, all cores) and
/// applies the gallery's normalisation to each dot product.
#[derive(Debug, Clone)]
pub struct FeatureDistances<'a> {
    query: PreparedRows<'a>,
    gallery: PreparedRows<'a>,
    distance: Distance,
}

impl<'a> FeatureDistances<'a> {
    /// Prepares `query` x `gallery` distances.
    ///
    /// # Errors
    ///
    /// [`EvalError::Empty`] for an empty set, [`EvalError::DimMismatch`] when the dimensions
    /// differ, [`EvalError::NonFiniteFeature`] for a row with NaN or infinity.
    pub fn new(
        query: Features<'a>,
        gallery: Features<'a>,
        distance: Distance,
        feature_norm: FeatureNorm,
    ) -> Result<Self, EvalError> {
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
        let normalize = feature_norm == FeatureNorm::L2 || distance == Distance::Cosine;
        Ok(Self {
            query: PreparedRows::new(&[(FeatureSet::Query, query)], normalize)?,
            gallery: PreparedRows::new(&[(FeatureSet::Gallery, gallery)], normalize)?,
            distance,
        })
    }

    /// The whole `[num_queries, num_gallery]` matrix, row-major. Meant for small sets; large
    /// ones should go through [`DistanceRows::fill_rows`] block by block.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.query.len() * self.gallery.len()];
        self.fill_rows(0, &mut out);
        out
    }
}

impl DistanceRows for FeatureDistances<'_> {
    fn num_queries(&self) -> usize {
        self.query.len()
    }

    fn num_gallery(&self) -> usize {
        self.gallery.len()
    }

    fn fill_rows(&self, first: usize, out: &mut [f32]) {
        let n = self.gallery.len();
        assert_eq!(
            out.len() % n,
            0,
            "fill_rows: {} values is not a whole number of rows of {n}",
            out.len()
        );
        let ids: Vec<usize> = (first..first + out.len() / n).collect();
        assert!(
            ids.last().is_none_or(|&l| l < self.query.len()),
            "fill_rows: rows run past {}",
            self.query.len()
        );
        fill_distance_rows(&self.query, &ids, &self.gallery, self.distance, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive f64 reference: normalise, then the textbook formula.
    fn naive(q: &[f32], g: &[f32], dim: usize, distance: Distance, normalize: bool) -> Vec<f64> {
        let norm = |r: &[f32]| -> Vec<f64> {
            let n = r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            r.iter()
                .map(|&x| {
                    if normalize {
                        f64::from(x) / n
                    } else {
                        f64::from(x)
                    }
                })
                .collect()
        };
        let mut out = Vec::new();
        for a in q.chunks(dim).map(norm) {
            for b in g.chunks(dim).map(norm) {
                let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
                let (na, nb): (f64, f64) =
                    (a.iter().map(|x| x * x).sum(), b.iter().map(|x| x * x).sum());
                out.push(match distance {
                    Distance::SquaredEuclidean => na + nb - 2.0 * dot,
                    Distance::Cosine => 1.0 - dot / (na.sqrt() * nb.sqrt()),
                });
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32) / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn hand_checked_squared_euclidean() {
        // q = [1, 0]; g0 = [0, 2] -> [0, 1]: d = 1 + 1 - 0 = 2; g1 = [3, 0] -> [1, 0]: d = 0.
        let q = Features::new(&[1.0, 0.0], 2).unwrap();
        let g = Features::new(&[0.0, 2.0, 3.0, 0.0], 2).unwrap();
        let d = FeatureDistances::new(q, g, Distance::SquaredEuclidean, FeatureNorm::L2).unwrap();
        assert_eq!(d.to_dense(), vec![2.0, 0.0]);
        // Without normalisation: |q|²=1, |g0|²=4 -> 5; |g1|²=9, q·g1=3 -> 1 + 9 - 6 = 4.
        let d = FeatureDistances::new(q, g, Distance::SquaredEuclidean, FeatureNorm::None).unwrap();
        assert_eq!(d.to_dense(), vec![5.0, 4.0]);
        // Cosine ignores FeatureNorm::None: 1 - 0 and 1 - 1.
        let d = FeatureDistances::new(q, g, Distance::Cosine, FeatureNorm::None).unwrap();
        assert_eq!(d.to_dense(), vec![1.0, 0.0]);
    }

    #[test]
    fn blocked_product_matches_naive_formula() {
        let dim = 37;
        let (q, g) = (pseudo_random(13 * dim, 1), pseudo_random(29 * dim, 2));
        let (qf, gf) = (
            Features::new(&q, dim).unwrap(),
            Features::new(&g, dim).unwrap(),
        );
        for (distance, norm) in [
            (Distance::SquaredEuclidean, FeatureNorm::L2),
            (Distance::SquaredEuclidean, FeatureNorm::None),
            (Distance::Cosine, FeatureNorm::L2),
        ] {
            let got = FeatureDistances::new(qf, gf, distance, norm)
                .unwrap()
                .to_dense();
            let want = naive(&q, &g, dim, distance, norm == FeatureNorm::L2);
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-5,
                    "{distance:?} {norm:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn blocks_agree_with_whole_matrix_and_pair_distance() {
        let dim = 16;
        let (q, g) = (pseudo_random(10 * dim, 3), pseudo_random(7 * dim, 4));
        let d = FeatureDistances::new(
            Features::new(&q, dim).unwrap(),
            Features::new(&g, dim).unwrap(),
            Distance::SquaredEuclidean,
            FeatureNorm::L2,
        )
        .unwrap();
        let whole = d.to_dense();
        let mut block = vec![0.0; 3 * 7];
        d.fill_rows(4, &mut block);
        // A product of another shape may round differently in the last bit.
        for (a, b) in whole[4 * 7..7 * 7].iter().zip(&block) {
            assert!((a - b).abs() <= 2.0 * f32::EPSILON, "{a} vs {b}");
        }
        for (i, j) in [(0, 0), (4, 6), (9, 3)] {
            let p = pair_distance(&d.query, i, &d.gallery, j, Distance::SquaredEuclidean);
            assert!(
                (p - whole[i * 7 + j]).abs() < 1e-6,
                "{p} vs {}",
                whole[i * 7 + j]
            );
        }
    }

    #[test]
    fn concatenated_parts_index_across_the_boundary() {
        let a = [1.0, 0.0, 0.0, 1.0];
        let b = [3.0, 4.0];
        let rows = PreparedRows::new(
            &[
                (FeatureSet::Query, Features::new(&a, 2).unwrap()),
                (FeatureSet::Gallery, Features::new(&b, 2).unwrap()),
            ],
            true,
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.row(2), &[3.0, 4.0]);
        let mut out = vec![0.0; 9];
        fill_distance_rows(&rows, &[0, 1, 2], &rows, Distance::Cosine, &mut out);
        // Unit rows [1,0], [0,1], [0.6,0.8]: 1 - cosines.
        let want = [0.0, 1.0, 0.4, 1.0, 0.0, 0.2, 0.4, 0.2, 0.0];
        for (x, w) in out.iter().zip(want) {
            assert!((x - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn typed_errors_for_bad_inputs() {
        let q = Features::new(&[1.0, 0.0], 2).unwrap();
        let g3 = Features::new(&[1.0, 0.0, 0.0], 3).unwrap();
        let empty = Features::new(&[], 2).unwrap();
        let nan = Features::new(&[0.0, 1.0, f32::NAN, 1.0], 2).unwrap();
        let err = |r: Result<FeatureDistances, EvalError>| r.err().unwrap();
        let (sq, l2) = (Distance::SquaredEuclidean, FeatureNorm::L2);
        assert_eq!(
            err(FeatureDistances::new(q, g3, sq, l2)),
            EvalError::DimMismatch {
                query: 2,
                gallery: 3
            }
        );
        assert_eq!(
            err(FeatureDistances::new(empty, q, sq, l2)),
            EvalError::Empty {
                set: FeatureSet::Query
            }
        );
        assert_eq!(
            err(FeatureDistances::new(q, empty, sq, l2)),
            EvalError::Empty {
                set: FeatureSet::Gallery
            }
        );
        assert_eq!(
            err(FeatureDistances::new(q, nan, sq, l2)),
            EvalError::NonFiniteFeature {
                set: FeatureSet::Gallery,
                row: 1
            }
        );
    }
}
