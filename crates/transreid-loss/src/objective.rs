use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cross_entropy::cross_entropy;
use crate::error::LossError;
use crate::triplet::{triplet_loss, TripletMargin};

/// The TransReID loss settings (`MODEL.*_LOSS_WEIGHT`, `IF_LABELSMOOTH`, `NO_MARGIN`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveConfig {
    /// Weight of the ID (cross-entropy) term. Reference: 1.0.
    pub id_weight: f64,
    /// Weight of the triplet term. Reference: 1.0.
    pub triplet_weight: f64,
    /// Label smoothing epsilon; 0 turns it off (every shipped config). Reference: 0.
    pub label_smoothing: f64,
    /// Triplet margin. Reference: soft.
    pub margin: TripletMargin,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            id_weight: 1.0,
            triplet_weight: 1.0,
            label_smoothing: 0.0,
            margin: TripletMargin::Soft,
        }
    }
}

/// The loss terms of one batch.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput<B: Backend> {
    /// `id_weight * id + triplet_weight * triplet`, `[1]`.
    pub total: Tensor<B, 1>,
    /// The combined ID term.
    pub id: Tensor<B, 1>,
    /// The combined triplet term.
    pub triplet: Tensor<B, 1>,
}

/// The reference's `make_loss` combination over branches (index 0 global, 1.. parts):
/// with parts, `term = 0.5 * term(global) + 0.5 * mean_k term(part_k)` for both the ID loss (on
/// the BNNeck'd scores) and the triplet loss (on the pre-BNNeck features); with one branch the
/// plain terms.
///
/// # Shapes
/// - `scores[k]`: `[batch, classes]`; `feats[k]`: `[batch, d]`; `targets`: `[batch]`
pub fn transreid_loss<B: Backend>(
    scores: &[Tensor<B, 2>],
    feats: &[Tensor<B, 2>],
    targets: Tensor<B, 1, Int>,
    labels: &[i64],
    config: &ObjectiveConfig,
) -> Result<ObjectiveOutput<B>, LossError> {
    let id_terms: Vec<_> = scores
        .iter()
        .map(|s| cross_entropy(s.clone(), targets.clone(), config.label_smoothing))
        .collect();
    let tri_terms = feats
        .iter()
        .map(|f| triplet_loss(f.clone(), labels, config.margin).map(|o| o.loss))
        .collect::<Result<Vec<_>, _>>()?;
    let id = combine(id_terms);
    let triplet = combine(tri_terms);
    let total =
        id.clone().mul_scalar(config.id_weight) + triplet.clone().mul_scalar(config.triplet_weight);
    Ok(ObjectiveOutput { total, id, triplet })
}

fn combine<B: Backend>(mut terms: Vec<Tensor<B, 1>>) -> Tensor<B, 1> {
    let global = terms.remove(0);
    if terms.is_empty() {
        return global;
    }
    let parts = terms.len() as f64;
    let local = terms
        .into_iter()
        .reduce(|a, b| a + b)
        .unwrap()
        .div_scalar(parts);
    global.mul_scalar(0.5) + local.mul_scalar(0.5)
}
