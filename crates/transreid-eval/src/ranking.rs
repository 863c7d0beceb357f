//! Deterministic gallery ranking and the filtered positions of a query's true matches.
//!
//! # Tie rule
//!
//! The gallery is ranked by ascending distance; equal distances are ordered by ascending gallery
//! index (a stable sort). `-0.0` counts as `0.0`. The reference uses NumPy's default
//! `argsort` (introsort, not stable), whose order among ties is unspecified; with continuous
//! features ties are rare and both orders give the same metrics.

use crate::error::EvalError;
use crate::labels::Labels;

/// Sort key giving the order (distance ascending, then index ascending) as one `u64`:
/// the distance's bits mapped to an unsigned integer that sorts like the float, in the high 32
/// bits, and the index in the low 32 bits.
///
/// NaN maps above `+inf` (callers reject non-finite distances before ranking).
#[inline]
pub(crate) fn rank_key(distance: f32, index: usize) -> u64 {
    debug_assert!(index <= u32::MAX as usize);
    // Adding 0.0 turns -0.0 into +0.0 so that the two compare equal, as floats do.
    let d = if distance.is_nan() {
        f32::NAN
    } else {
        distance + 0.0
    };
    let bits = d.to_bits();
    let ordered = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(ordered) << 32) | index as u64
}

/// Gallery indices sorted by (distance, index): the full ranking of one query.
///
/// `O(n log n)`. The metrics do not need it (they only locate the true matches among the
/// non-matches, `O(n log R)`), but a search front end does.
pub fn rank_gallery(distances: &[f32]) -> Vec<usize> {
    let mut keys: Vec<u64> = distances
        .iter()
        .enumerate()
        .map(|(j, &d)| rank_key(d, j))
        .collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| (k & 0xffff_ffff) as usize)
        .collect()
}

/// Reusable buffers for [`match_positions`].
#[derive(Debug, Default)]
pub(crate) struct MatchScratch {
    match_keys: Vec<u64>,
    before: Vec<usize>,
}

/// 1-based positions of the true matches of one query in its filtered ranking, ascending.
///
/// The filtered ranking is the gallery ranked by [`rank_key`] with the items of the query's pid
/// **and** camera removed; true matches are the remaining items of the query's pid. An empty
/// result means the query has no true match (the reference skips it).
///
/// Instead of sorting the gallery (`O(n log n)`), each kept non-match is placed among the `R`
/// sorted match keys by binary search (`O(n log R)`): the match with sorted index `t` sits at
/// position `t + 1 + #{non-matches with key below it}`.
///
/// # Errors
///
/// [`EvalError::NonFiniteDistance`] for a NaN or infinite distance (`query` names the row).
pub(crate) fn match_positions(
    distances: &[f32],
    query: usize,
    query_pid: i64,
    query_camid: i64,
    gallery: Labels<'_>,
    scratch: &mut MatchScratch,
    positions: &mut Vec<usize>,
) -> Result<(), EvalError> {
    let (pids, camids) = (gallery.pids(), gallery.camids());
    positions.clear();
    let keys = &mut scratch.match_keys;
    keys.clear();
    for (j, (&pid, &cam)) in pids.iter().zip(camids).enumerate() {
        if pid == query_pid && cam != query_camid {
            keys.push(rank_key(distances[j], j));
        }
    }
    if keys.is_empty() {
        // Still reject non-finite rows so that a skipped query cannot hide a broken distance.
        if let Some(j) = distances.iter().position(|d| !d.is_finite()) {
            return Err(EvalError::NonFiniteDistance { query, gallery: j });
        }
        return Ok(());
    }
    keys.sort_unstable();
    let before = &mut scratch.before;
    before.clear();
    before.resize(keys.len() + 1, 0);
    let last = *keys.last().unwrap();
    for (j, (&d, &pid)) in distances.iter().zip(pids).enumerate() {
        if !d.is_finite() {
            return Err(EvalError::NonFiniteDistance { query, gallery: j });
        }
        if pid == query_pid {
            // A true match (counted through its own key) or a removed same-camera item.
            continue;
        }
        let key = rank_key(d, j);
        // Most non-matches rank after the last match: skip the binary search for them.
        let slot = if key > last {
            keys.len()
        } else {
            keys.partition_point(|&m| m < key)
        };
        before[slot] += 1;
    }
    // before[s] = non-matches ranked between match s-1 and match s.
    let mut ahead = 0;
    for (t, &between) in before[..keys.len()].iter().enumerate() {
        ahead += between;
        positions.push(t + 1 + ahead);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(d: &[f32], q_pid: i64, q_cam: i64, g_pids: &[i64], g_cams: &[i64]) -> Vec<usize> {
        let mut out = Vec::new();
        match_positions(
            d,
            0,
            q_pid,
            q_cam,
            Labels::new(g_pids, g_cams).unwrap(),
            &mut MatchScratch::default(),
            &mut out,
        )
        .unwrap();
        out
    }

    /// Positions by the definition: sort everything, drop the same-pid-same-cam items, scan.
    fn positions_by_sorting(
        d: &[f32],
        q_pid: i64,
        q_cam: i64,
        g_pids: &[i64],
        g_cams: &[i64],
    ) -> Vec<usize> {
        rank_gallery(d)
            .into_iter()
            .filter(|&j| !(g_pids[j] == q_pid && g_cams[j] == q_cam))
            .enumerate()
            .filter(|&(_, j)| g_pids[j] == q_pid)
            .map(|(p, _)| p + 1)
            .collect()
    }

    #[test]
    fn rank_gallery_breaks_ties_by_index() {
        assert_eq!(
            rank_gallery(&[0.5, 0.1, 0.5, -0.0, 0.0, 0.1]),
            vec![3, 4, 1, 5, 0, 2]
        );
        assert_eq!(
            rank_gallery(&[2.0, -1.0, f32::INFINITY, -3.0]),
            vec![3, 1, 0, 2]
        );
    }

    #[test]
    fn hand_checked_positions_with_camera_filter() {
        // Query pid 7, camera 0. Ranked gallery (by distance):
        //   j=2 (0.1, pid 7 cam 0: removed), j=0 (0.2, pid 3), j=4 (0.3, pid 7 cam 1: match),
        //   j=1 (0.4, pid 5), j=3 (0.5, pid 7 cam 2: match).
        // Filtered ranking: [j0, j4, j1, j3] -> matches at positions 2 and 4.
        let d = [0.2, 0.4, 0.1, 0.5, 0.3];
        let (pids, cams) = ([3, 5, 7, 7, 7], [0, 0, 0, 2, 1]);
        assert_eq!(positions(&d, 7, 0, &pids, &cams), vec![2, 4]);
    }

    #[test]
    fn no_true_match_gives_empty_positions() {
        // The only pid-7 item shares the query's camera, so it is removed.
        assert!(positions(&[0.1, 0.2], 7, 0, &[7, 1], &[0, 0]).is_empty());
    }

    #[test]
    fn ties_between_match_and_non_match_follow_gallery_index() {
        // Equal distances: j=0 (non-match) ranks before j=1 (match), j=3 (match) before j=4.
        let d = [0.5, 0.5, 0.9, 0.9, 0.9];
        let (pids, cams) = ([1, 2, 1, 2, 1], [1, 1, 1, 1, 1]);
        assert_eq!(positions(&d, 2, 0, &pids, &cams), vec![2, 4]);
    }

    #[test]
    fn binary_search_agrees_with_full_sort() {
        let mut s = 12345u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        };
        for _ in 0..200 {
            let n = 1 + (next() % 60) as usize;
            // Few distinct distances so that ties are frequent.
            let d: Vec<f32> = (0..n).map(|_| (next() % 7) as f32 * 0.25).collect();
            let pids: Vec<i64> = (0..n).map(|_| (next() % 4) as i64).collect();
            let cams: Vec<i64> = (0..n).map(|_| (next() % 3) as i64).collect();
            let (qp, qc) = ((next() % 4) as i64, (next() % 3) as i64);
            assert_eq!(
                positions(&d, qp, qc, &pids, &cams),
                positions_by_sorting(&d, qp, qc, &pids, &cams)
            );
        }
    }

    #[test]
    fn non_finite_distance_is_an_error() {
        let mut out = Vec::new();
        let labels = Labels::new(&[1, 2], &[1, 1]).unwrap();
        let err = match_positions(
            &[0.1, f32::NAN],
            4,
            1,
            0,
            labels,
            &mut MatchScratch::default(),
            &mut out,
        );
        assert_eq!(
            err,
            Err(EvalError::NonFiniteDistance {
                query: 4,
                gallery: 1
            })
        );
        // Also when the query has no match at all.
        let err = match_positions(
            &[f32::INFINITY, 0.0],
            4,
            9,
            0,
            labels,
            &mut MatchScratch::default(),
            &mut out,
        );
        assert_eq!(
            err,
            Err(EvalError::NonFiniteDistance {
                query: 4,
                gallery: 0
            })
        );
    }
}
