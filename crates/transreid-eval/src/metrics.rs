//! CMC, mAP and mINP from the filtered positions of each query's true matches.

use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// Per-query scores, computed from the 1-based positions `p_1 < … < p_R` of its `R` true
/// matches in its filtered ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QueryOutcome {
    /// `p_1`: the CMC of this query is 0 before it and 1 from it on.
    pub(crate) first_match: usize,
    /// `AP = (1/R) Σ_t t / p_t` — the reference's `Σ_k (hits≤k / k)·match_k / num_rel`, whose
    /// only non-zero terms are at the match positions `k = p_t`, where `hits≤k = t`.
    pub(crate) average_precision: f64,
    /// `INP = R / p_R` (fast-reid's `cmc[max_pos_idx] / (max_pos_idx + 1)`): the share of the
    /// ranking up to the hardest (last) true match that is correct.
    pub(crate) inverse_negative_penalty: f64,
}

impl QueryOutcome {
    /// Scores from ascending, non-empty match positions.
    ///
    /// # Panics
    ///
    /// Panics if `positions` is empty.
    pub(crate) fn from_positions(positions: &[usize]) -> Self {
        let r = positions.len();
        assert!(
            r > 0,
            "QueryOutcome::from_positions: a valid query has at least one match"
        );
        let precision_sum: f64 = positions
            .iter()
            .enumerate()
            .map(|(t, &p)| (t + 1) as f64 / p as f64)
            .sum();
        Self {
            first_match: positions[0],
            average_precision: precision_sum / r as f64,
            inverse_negative_penalty: r as f64 / positions[r - 1] as f64,
        }
    }
}

/// Ranking metrics over a query set (SPEC section 6, `eval_func`, plus fast-reid's mINP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReidMetrics {
    /// Cumulative matching characteristic: `cmc[k]` is the share of valid queries whose first
    /// true match is within the top `k + 1` of the filtered ranking. Length
    /// `min(max_rank, num_gallery)`.
    pub cmc: Vec<f64>,
    /// Mean average precision over valid queries.
    pub map: f64,
    /// Mean inverse negative penalty over valid queries.
    pub minp: f64,
    /// Queries with at least one true match after the same-camera filter.
    pub num_valid_queries: usize,
    /// Queries without one, left out of every mean.
    pub num_skipped_queries: usize,
    /// Gallery size (before filtering).
    pub num_gallery: usize,
}

impl ReidMetrics {
    /// Aggregates per-query outcomes (`None` = skipped query).
    ///
    /// # Errors
    ///
    /// [`EvalError::ZeroMaxRank`] when `max_rank == 0`; [`EvalError::NoValidQueries`] when every
    /// query was skipped (the reference asserts `num_valid_q > 0`).
    pub(crate) fn from_outcomes(
        outcomes: &[Option<QueryOutcome>],
        max_rank: usize,
        num_gallery: usize,
    ) -> Result<Self, EvalError> {
        if max_rank == 0 {
            return Err(EvalError::ZeroMaxRank);
        }
        let valid: Vec<&QueryOutcome> = outcomes.iter().flatten().collect();
        let skipped = outcomes.len() - valid.len();
        if valid.is_empty() {
            return Err(EvalError::NoValidQueries { skipped });
        }
        let n = valid.len() as f64;
        let len = max_rank.min(num_gallery);
        // first_hits[k] = queries whose first match is at position k + 1.
        let mut first_hits = vec![0usize; len];
        for o in &valid {
            if o.first_match <= len {
                first_hits[o.first_match - 1] += 1;
            }
        }
        let mut cmc = Vec::with_capacity(len);
        let mut cumulative = 0;
        for h in first_hits {
            cumulative += h;
            cmc.push(cumulative as f64 / n);
        }
        Ok(Self {
            cmc,
            map: valid.iter().map(|o| o.average_precision).sum::<f64>() / n,
            minp: valid
                .iter()
                .map(|o| o.inverse_negative_penalty)
                .sum::<f64>()
                / n,
            num_valid_queries: valid.len(),
            num_skipped_queries: skipped,
            num_gallery,
        })
    }

    /// CMC at rank `k` (1-based): the share of valid queries with a true match in the top `k`.
    ///
    /// Past the gallery size every valid query has found its match, so when the curve was
    /// clamped to the gallery (`cmc.len() == num_gallery`) ranks beyond it give `1.0`. `None`
    /// for `k == 0` or a rank beyond a `max_rank` that cut the curve short.
    pub fn rank(&self, k: usize) -> Option<f64> {
        match k {
            0 => None,
            k if k <= self.cmc.len() => Some(self.cmc[k - 1]),
            _ if self.cmc.len() == self.num_gallery => Some(1.0),
            _ => None,
        }
    }

    /// Rank-1 accuracy, see [`ReidMetrics::rank`].
    pub fn rank1(&self) -> Option<f64> {
        self.rank(1)
    }

    /// Rank-5 accuracy, see [`ReidMetrics::rank`].
    pub fn rank5(&self) -> Option<f64> {
        self.rank(5)
    }

    /// Rank-10 accuracy, see [`ReidMetrics::rank`].
    pub fn rank10(&self) -> Option<f64> {
        self.rank(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_query_outcome() {
        // Matches at positions 2 and 4 of the filtered ranking [x, m, x, m, ...]:
        //   AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 / 4 = 0.5; CMC steps to 1 at rank 2.
        let o = QueryOutcome::from_positions(&[2, 4]);
        assert_eq!(o.first_match, 2);
        assert_eq!(o.average_precision, 0.5);
        assert_eq!(o.inverse_negative_penalty, 0.5);
        // Matches at 1, 3, 6: AP = (1/1 + 2/3 + 3/6) / 3 = 13/18; INP = 3/6.
        let o = QueryOutcome::from_positions(&[1, 3, 6]);
        assert!((o.average_precision - 13.0 / 18.0).abs() < 1e-15);
        assert_eq!(o.inverse_negative_penalty, 0.5);
    }

    #[test]
    fn hand_checked_aggregate() {
        // Query A: first match at 1 (AP 1, INP 1). Query B: matches at 2, 4 (AP 0.5, INP 0.5).
        // Query C: skipped. CMC over 3 ranks: [1/2, 2/2, 2/2].
        let outcomes = [
            Some(QueryOutcome::from_positions(&[1])),
            Some(QueryOutcome::from_positions(&[2, 4])),
            None,
        ];
        let m = ReidMetrics::from_outcomes(&outcomes, 3, 10).unwrap();
        assert_eq!(m.cmc, vec![0.5, 1.0, 1.0]);
        assert_eq!((m.map, m.minp), (0.75, 0.75));
        assert_eq!(
            (m.num_valid_queries, m.num_skipped_queries, m.num_gallery),
            (2, 1, 10)
        );
        assert_eq!(
            (m.rank1(), m.rank(3), m.rank5()),
            (Some(0.5), Some(1.0), None)
        );
        assert_eq!(m.rank(0), None);
    }

    #[test]
    fn cmc_is_clamped_to_the_gallery_and_extends_past_it() {
        let outcomes = [Some(QueryOutcome::from_positions(&[2]))];
        let m = ReidMetrics::from_outcomes(&outcomes, 50, 3).unwrap();
        assert_eq!(m.cmc, vec![0.0, 1.0, 1.0]);
        assert_eq!((m.rank5(), m.rank10()), (Some(1.0), Some(1.0)));
    }

    #[test]
    fn errors_for_zero_max_rank_and_no_valid_query() {
        assert_eq!(
            ReidMetrics::from_outcomes(&[None, None], 5, 4),
            Err(EvalError::NoValidQueries { skipped: 2 })
        );
        assert_eq!(
            ReidMetrics::from_outcomes(&[], 5, 4),
            Err(EvalError::NoValidQueries { skipped: 0 })
        );
        let one = [Some(QueryOutcome::from_positions(&[1]))];
        assert_eq!(
            ReidMetrics::from_outcomes(&one, 0, 4),
            Err(EvalError::ZeroMaxRank)
        );
    }
}
