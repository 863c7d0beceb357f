//! Feature matrices as borrowed row-major views, and their L2 normalisation.

use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// `eps` of the reference's `F.normalize(feats, p=2, dim=1)`.
pub const NORMALIZE_EPS: f32 = 1e-12;

/// A borrowed, row-major `[n, dim]` matrix of `f32` features (one row per image).
///
/// Evaluation never copies the whole matrix: rows are normalised block by block as they are
/// needed, so the caller's buffer is the only full copy in memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> Features<'a> {
    /// Views `data` as rows of `dim` values.
    ///
    /// # Errors
    ///
    /// [`EvalError::ZeroDim`] when `dim == 0`, [`EvalError::Ragged`] when `data.len()` is not a
    /// multiple of `dim`.
    pub fn new(data: &'a [f32], dim: usize) -> Result<Self, EvalError> {
        if dim == 0 {
            return Err(EvalError::ZeroDim);
        }
        if !data.len().is_multiple_of(dim) {
            return Err(EvalError::Ragged {
                len: data.len(),
                dim,
            });
        }
        Ok(Self { data, dim })
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`.
    ///
    /// # Panics
    ///
    /// Panics if `i >= self.len()`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The underlying row-major buffer.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }
}

/// Whether features are L2-normalised before distances are taken.
///
/// The reference's `TEST.FEAT_NORM` is the string `'yes'` and any non-empty string is truthy, so
/// it always normalises: [`FeatureNorm::L2`] is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum FeatureNorm {
    /// `x / max(‖x‖₂, 1e-12)` per row (`F.normalize(p=2, dim=1, eps=1e-12)`).
    #[default]
    L2,
    /// Raw features.
    None,
}

/// `max(‖x‖₂, 1e-12)`: the divisor `F.normalize` applies to a row.
///
/// The sum of squares is accumulated in `f64`, so the result is the correctly rounded norm up to
/// one rounding of the square root.
pub fn l2_divisor(row: &[f32]) -> f32 {
    let sum: f64 = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    (sum.sqrt() as f32).max(NORMALIZE_EPS)
}

/// Writes `row / max(‖row‖₂, 1e-12)` into `out`.
///
/// # Panics
///
/// Panics if `out.len() != row.len()`.
pub fn l2_normalize_into(row: &[f32], out: &mut [f32]) {
    assert_eq!(
        row.len(),
        out.len(),
        "l2_normalize_into: row has {} values, out {}",
        row.len(),
        out.len()
    );
    let divisor = l2_divisor(row);
    for (o, &x) in out.iter_mut().zip(row) {
        *o = x / divisor;
    }
}

/// All rows of `features` L2-normalised, as a new row-major buffer `[n, dim]`.
///
/// Convenience for small sets; evaluation itself normalises block by block.
pub fn l2_normalize_rows(features: Features<'_>) -> Vec<f32> {
    let mut out = vec![0.0; features.as_slice().len()];
    for (i, chunk) in out.chunks_exact_mut(features.dim()).enumerate() {
        l2_normalize_into(features.row(i), chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_zero_dim_and_ragged_buffers() {
        assert_eq!(Features::new(&[1.0, 2.0], 0), Err(EvalError::ZeroDim));
        assert_eq!(
            Features::new(&[1.0, 2.0, 3.0], 2),
            Err(EvalError::Ragged { len: 3, dim: 2 })
        );
        let f = Features::new(&[1.0, 2.0, 3.0, 4.0], 2).unwrap();
        assert_eq!((f.len(), f.dim()), (2, 2));
        assert_eq!(f.row(1), &[3.0, 4.0]);
        assert!(Features::new(&[], 3).unwrap().is_empty());
    }

    #[test]
    fn normalize_gives_unit_rows() {
        // [3, 4] has norm 5.
        let mut out = [0.0; 2];
        l2_normalize_into(&[3.0, 4.0], &mut out);
        assert_eq!(out, [0.6, 0.8]);
    }

    #[test]
    fn normalize_zero_row_stays_zero() {
        // The eps clamp turns 0 / 0 into 0 / 1e-12.
        let mut out = [1.0; 3];
        l2_normalize_into(&[0.0, 0.0, 0.0], &mut out);
        assert_eq!(out, [0.0; 3]);
        assert_eq!(l2_divisor(&[0.0, 0.0]), NORMALIZE_EPS);
    }

    #[test]
    fn normalize_rows_matches_per_row() {
        let data = [1.0, 0.0, 0.0, 2.0, 2.0, 1.0];
        let f = Features::new(&data, 3).unwrap();
        let out = l2_normalize_rows(f);
        assert_eq!(&out[..3], &[1.0, 0.0, 0.0]);
        // [2, 2, 1] has norm 3.
        assert_eq!(&out[3..], &[2.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0]);
    }
}
