//! Compressed sparse rows of `float16` values: the storage of `V` and of the Jaccard distances.

use half::f16;
use rayon::prelude::*;

/// Rows built in parallel per chunk before being appended, so that the per-row vectors of only
/// one chunk exist next to the packed storage.
const BUILD_CHUNK: usize = 4096;

/// Rows of `(column, value)` pairs with ascending columns, stored contiguously (CSR).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SparseRows {
    offsets: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f16>,
}

impl SparseRows {
    /// Packs per-row `(columns, values)`; columns must be ascending within a row.
    pub(crate) fn from_rows(rows: Vec<(Vec<u32>, Vec<f16>)>) -> Self {
        let nnz = rows.iter().map(|r| r.0.len()).sum();
        let mut out = Self {
            offsets: Vec::with_capacity(rows.len() + 1),
            cols: Vec::with_capacity(nnz),
            vals: Vec::with_capacity(nnz),
        };
        out.offsets.push(0);
        for (c, v) in rows {
            debug_assert_eq!(c.len(), v.len());
            debug_assert!(c.windows(2).all(|w| w[0] < w[1]), "columns must ascend");
            out.cols.extend_from_slice(&c);
            out.vals.extend_from_slice(&v);
            out.offsets.push(out.cols.len());
        }
        out
    }

    /// Builds `n` rows with `row(scratch, i) -> (columns, values)` in parallel, a chunk of rows
    /// at a time; `init` creates one scratch state per worker and chunk.
    pub(crate) fn build<S, I, F>(n: usize, init: I, row: F) -> Self
    where
        S: Send,
        I: Fn() -> S + Sync + Send,
        F: Fn(&mut S, usize) -> (Vec<u32>, Vec<f16>) + Sync + Send,
    {
        let mut out = Self::from_rows(Vec::new());
        for start in (0..n).step_by(BUILD_CHUNK) {
            let rows: Vec<(Vec<u32>, Vec<f16>)> = (start..(start + BUILD_CHUNK).min(n))
                .into_par_iter()
                .map_init(&init, &row)
                .collect();
            for (c, v) in rows {
                debug_assert!(c.windows(2).all(|w| w[0] < w[1]), "columns must ascend");
                out.cols.extend_from_slice(&c);
                out.vals.extend_from_slice(&v);
                out.offsets.push(out.cols.len());
            }
        }
        out
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Stored entries in all rows.
    pub(crate) fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Columns and values of row `i`.
    pub(crate) fn row(&self, i: usize) -> (&[u32], &[f16]) {
        let (a, b) = (self.offsets[i], self.offsets[i + 1]);
        (&self.cols[a..b], &self.vals[a..b])
    }

    /// The transpose restricted to rows `first..`: for each column `l` of `0..num_cols`, the
    /// `(row - first, value)` pairs with ascending rows (the reference's `invIndex`, limited to
    /// the rows that can be gallery items).
    pub(crate) fn transpose_from(&self, first: usize, num_cols: usize) -> SparseRows {
        let mut counts = vec![0usize; num_cols + 1];
        for i in first..self.len() {
            for &c in self.row(i).0 {
                counts[c as usize + 1] += 1;
            }
        }
        for l in 0..num_cols {
            counts[l + 1] += counts[l];
        }
        let nnz = counts[num_cols];
        let mut cols = vec![0u32; nnz];
        let mut vals = vec![f16::ZERO; nnz];
        let mut next = counts.clone();
        for i in first..self.len() {
            let (c, v) = self.row(i);
            for (&l, &x) in c.iter().zip(v) {
                let slot = &mut next[l as usize];
                cols[*slot] = (i - first) as u32;
                vals[*slot] = x;
                *slot += 1;
            }
        }
        SparseRows {
            offsets: counts,
            cols,
            vals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> f16 {
        f16::from_f32(x)
    }

    #[test]
    fn rows_and_transpose() {
        // [[0.5 at 1, 0.25 at 3], [], [1 at 0, 2 at 3]]
        let m = SparseRows::from_rows(vec![
            (vec![1, 3], vec![h(0.5), h(0.25)]),
            (vec![], vec![]),
            (vec![0, 3], vec![h(1.0), h(2.0)]),
        ]);
        assert_eq!((m.len(), m.nnz()), (3, 4));
        assert_eq!(m.row(1), (&[][..], &[][..]));
        let t = m.transpose_from(0, 4);
        assert_eq!(t.row(0), (&[2u32][..], &[h(1.0)][..]));
        assert_eq!(t.row(1), (&[0u32][..], &[h(0.5)][..]));
        assert_eq!(t.row(2).0.len(), 0);
        assert_eq!(t.row(3), (&[0u32, 2][..], &[h(0.25), h(2.0)][..]));
        // From row 1 on, rows are renumbered from 0.
        let t = m.transpose_from(1, 4);
        assert_eq!(t.row(3), (&[1u32][..], &[h(2.0)][..]));
        assert_eq!(t.row(1).0.len(), 0);
    }

    #[test]
    fn parallel_build_matches_from_rows() {
        // Row i holds columns i, 2i, 3i (deduplicated), crossing several build chunks.
        let make = |i: usize| {
            let mut c: Vec<u32> = vec![i as u32, 2 * i as u32, 3 * i as u32];
            c.dedup();
            let v = c.iter().map(|&x| h(x as f32)).collect();
            (c, v)
        };
        let n = 2 * BUILD_CHUNK + 5;
        let built = SparseRows::build(n, || (), |_, i| make(i));
        assert_eq!(built, SparseRows::from_rows((0..n).map(make).collect()));
        assert_eq!(built.len(), n);
    }
}
