//! Initial-ranking prefixes and the k-reciprocal encoding `V` (steps 3 and 4 of SPEC 6).

use half::f16;

use super::numpy_arith::numpy_sum_f32;
use crate::ranking::rank_key;

/// Row prefixes `initial_rank[i, :width]` of the initial ranking, row-major `[n, width]`.
///
/// Every later step reads only `initial_rank[i, :k1 + 1]` and `initial_rank[i, :k2]`, so
/// `width = min(max(k1 + 1, k2), n)` columns hold all the ranking re-ranking needs.
#[derive(Debug, Clone)]
pub(crate) struct TopLists {
    width: usize,
    idx: Vec<u32>,
}

impl TopLists {
    /// `n` empty lists of `width` entries, to be filled through [`TopLists::rows_mut`].
    pub(crate) fn new(n: usize, width: usize) -> Self {
        Self {
            width,
            idx: vec![0; n * width],
        }
    }

    /// `initial_rank[i, :k]` (fewer entries when `k` exceeds the width, as NumPy slicing does
    /// past the end of a row).
    pub(crate) fn ranked(&self, i: usize, k: usize) -> &[u32] {
        &self.idx[i * self.width..i * self.width + k.min(self.width)]
    }

    /// Mutable rows, for filling in parallel.
    pub(crate) fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, u32> {
        self.idx.chunks_exact_mut(self.width)
    }
}

/// The `k` smallest [`rank_key`]s of `row`, sorted, left in `buf`.
///
/// One pass with a rising threshold: keys are buffered until `2k` are held, then cut back to the
/// `k` smallest, so most of a long row is rejected by one comparison.
pub(crate) fn smallest_keys(row: &[f32], k: usize, buf: &mut Vec<u64>) {
    buf.clear();
    if k == 0 {
        return;
    }
    let mut threshold = u64::MAX;
    for (j, &d) in row.iter().enumerate() {
        let key = rank_key(d, j);
        if key < threshold {
            buf.push(key);
            if buf.len() == 2 * k {
                buf.select_nth_unstable(k - 1);
                buf.truncate(k);
                threshold = *buf.iter().max().unwrap();
            }
        }
    }
    buf.sort_unstable();
    buf.truncate(k);
}

/// k-reciprocal neighbours of `i`: `{j ∈ rank[i, :k+1] : i ∈ rank[j, :k+1]}`, in `i`'s rank
/// order (the reference's `forward_k_neigh_index[fi]`).
pub(crate) fn k_reciprocal(lists: &TopLists, i: usize, k: usize) -> Vec<u32> {
    let me = i as u32;
    lists
        .ranked(i, k + 1)
        .iter()
        .copied()
        .filter(|&j| lists.ranked(j as usize, k + 1).contains(&me))
        .collect()
}

/// The expanded k-reciprocal set of `i`, sorted ascending (`np.unique`).
///
/// `R = k_reciprocal(i, k1)`; for each `c ∈ R`, `R_c = k_reciprocal(c, half_k1)` joins when
/// `|R_c ∩ R| > 2/3 · |R_c|` (compared in `f64` as Python does).
pub(crate) fn expansion_set(lists: &TopLists, i: usize, k1: usize, half_k1: usize) -> Vec<u32> {
    let r = k_reciprocal(lists, i, k1);
    let mut expanded = r.clone();
    for &c in &r {
        let rc = k_reciprocal(lists, c as usize, half_k1);
        let common = rc.iter().filter(|x| r.contains(x)).count();
        if common as f64 > 2.0 / 3.0 * rc.len() as f64 {
            expanded.extend_from_slice(&rc);
        }
    }
    expanded.sort_unstable();
    expanded.dedup();
    expanded
}

/// Row of `V` on an expanded set: `f16(exp(−d_e) / Σ exp(−d))` with the exponentials in
/// `float32` and the sum in NumPy's pairwise order, `d` the row-normalised distances of the set.
pub(crate) fn encoding_weights(distances: &[f32]) -> Vec<f16> {
    let w: Vec<f32> = distances.iter().map(|&d| (-d).exp()).collect();
    let total = numpy_sum_f32(&w);
    w.iter().map(|&x| f16::from_f32(x / total)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(rows: &[&[u32]]) -> TopLists {
        let width = rows[0].len();
        let mut t = TopLists::new(rows.len(), width);
        for (dst, src) in t.rows_mut().zip(rows) {
            dst.copy_from_slice(src);
        }
        t
    }

    #[test]
    fn smallest_keys_matches_full_sort() {
        let row: Vec<f32> = (0..500).map(|j| ((j * 7919) % 113) as f32 * 0.5).collect();
        let mut all: Vec<u64> = row
            .iter()
            .enumerate()
            .map(|(j, &d)| rank_key(d, j))
            .collect();
        all.sort_unstable();
        let mut buf = Vec::new();
        for k in [0, 1, 3, 21, 499, 500, 800] {
            smallest_keys(&row, k, &mut buf);
            assert_eq!(buf, all[..k.min(500)], "k = {k}");
        }
    }

    #[test]
    fn hand_checked_reciprocal_sets() {
        // Rankings (self first) of 5 items, k = 1 looks at the first 2 entries.
        //   0: [0, 1, ..]   1: [1, 0, ..]   2: [2, 1, ..]   3: [3, 4, ..]   4: [4, 2, ..]
        // 0 and 1 are mutual; 2 lists 1 but 1 does not list 2; 3 lists 4, 4 lists 2.
        let t = lists(&[&[0, 1, 2], &[1, 0, 2], &[2, 1, 0], &[3, 4, 2], &[4, 2, 3]]);
        assert_eq!(k_reciprocal(&t, 0, 1), vec![0, 1]);
        assert_eq!(k_reciprocal(&t, 2, 1), vec![2]);
        assert_eq!(k_reciprocal(&t, 3, 1), vec![3]);
        // k = 2 (all three entries): 4 lists [4, 2, 3]; 3 lists 4 back, 2 ([2, 1, 0]) does not.
        assert_eq!(k_reciprocal(&t, 4, 2), vec![4, 3]);
    }

    #[test]
    fn expansion_adds_sets_mostly_inside_r() {
        // i = 0 with k1 = 2: R = {0, 1, 2} (all mutual within the top 3).
        // With half_k1 = 1 (top 2): R_0 = {0} (1's top 2 is [1, 3]): 1 > 2/3, added.
        // R_1 = {1, 3} (3's top 2 is [3, 1]): |R_1 ∩ R| = 1, not > 4/3, not added.
        // R_2 = {2} (0's top 2 is [0, 1]): added. Nothing new: E = R.
        let t = lists(&[&[0, 1, 2], &[1, 3, 0], &[2, 0, 1], &[3, 1, 0]]);
        assert_eq!(k_reciprocal(&t, 0, 2), vec![0, 1, 2]);
        assert_eq!(k_reciprocal(&t, 1, 1), vec![1, 3]);
        assert_eq!(expansion_set(&t, 0, 2, 1), vec![0, 1, 2]);
        // Item 3 with k1 = 2: R = {3, 1} (3 is in 1's top 3, 0's top 3 lacks 3).
        // R_1 = {1, 3} fully inside R -> added; R_3 = {3, 1} too. E = {1, 3}.
        assert_eq!(expansion_set(&t, 3, 2, 1), vec![1, 3]);
    }

    #[test]
    fn weights_are_a_softmax_of_minus_distance() {
        // d = [0, ln 3] -> exp(-d) = [1, 1/3] -> [0.75, 0.25] exactly in f16.
        let w = encoding_weights(&[0.0, 3.0f32.ln()]);
        assert_eq!(
            w.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
            vec![0.75, 0.25]
        );
        assert!(encoding_weights(&[]).is_empty());
    }
}
