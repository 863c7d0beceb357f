use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cross_entropy::cross_entropy;
use crate::error::LossError;
use crate::triplet::{triplet_loss, TripletMargin};

/// The loss settings of CLIP-ReID's second stage (and of its image-only baseline).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipReidObjectiveConfig {
    /// Weight of the summed ID terms (`MODEL.ID_LOSS_WEIGHT`). CLIP-ReID: 0.25; baseline: 1.0.
    pub id_weight: f64,
    /// Weight of the summed triplet terms. Reference: 1.0.
    pub triplet_weight: f64,
    /// Weight of the image-to-text term (`MODEL.I2T_LOSS_WEIGHT`). Reference: 1.0.
    pub i2t_weight: f64,
    /// Label smoothing epsilon of the ID and image-to-text terms. Reference: 0.1.
    pub label_smoothing: f64,
    /// Triplet margin. Reference: 0.3.
    pub margin: TripletMargin,
}

impl Default for ClipReidObjectiveConfig {
    /// CLIP-ReID's second stage.
    fn default() -> Self {
        Self {
            id_weight: 0.25,
            triplet_weight: 1.0,
            i2t_weight: 1.0,
            label_smoothing: 0.1,
            margin: TripletMargin::Hard(0.3),
        }
    }
}

/// The loss terms of one CLIP-ReID batch.
#[derive(Debug, Clone)]
pub struct ClipReidObjectiveOutput<B: Backend> {
    /// The weighted sum, `[1]`.
    pub total: Tensor<B, 1>,
    /// The ID terms of every classifier, summed.
    pub id: Tensor<B, 1>,
    /// The triplet terms of every feature, summed.
    pub triplet: Tensor<B, 1>,
    /// The image-to-text term, when logits were given.
    pub i2t: Option<Tensor<B, 1>>,
}

/// The reference's `make_loss` for CLIP-ReID: `id_weight * sum_k CE(scores_k) +
/// triplet_weight * sum_k triplet(feats_k) + i2t_weight * CE(image_to_text)`, where
/// `image_to_text` holds the logits of each image's projected feature against the text
/// features of every identity (raw dot products).
///
/// # Shapes
/// - `scores[k]`: `[batch, classes]`; `feats[k]`: `[batch, d_k]`;
///   `image_to_text`: `[batch, classes]`; `targets`: `[batch]`
///
/// # Errors
/// The triplet loss's [`LossError`]s.
pub fn clip_reid_loss<B: Backend>(
    scores: &[Tensor<B, 2>],
    feats: &[Tensor<B, 2>],
    image_to_text: Option<Tensor<B, 2>>,
    targets: Tensor<B, 1, Int>,
    labels: &[i64],
    config: &ClipReidObjectiveConfig,
) -> Result<ClipReidObjectiveOutput<B>, LossError> {
    let sum = |terms: Vec<Tensor<B, 1>>| terms.into_iter().reduce(|a, b| a + b);
    let smoothing = config.label_smoothing;
    let id = sum(scores
        .iter()
        .map(|s| cross_entropy(s.clone(), targets.clone(), smoothing))
        .collect())
    .ok_or(LossError::EmptyBatch)?;
    let triplet = sum(feats
        .iter()
        .map(|f| triplet_loss(f.clone(), labels, config.margin).map(|o| o.loss))
        .collect::<Result<Vec<_>, _>>()?)
    .ok_or(LossError::EmptyBatch)?;
    let i2t = image_to_text.map(|logits| cross_entropy(logits, targets, smoothing));
    let mut total =
        id.clone().mul_scalar(config.id_weight) + triplet.clone().mul_scalar(config.triplet_weight);
    if let Some(i2t) = &i2t {
        total = total + i2t.clone().mul_scalar(config.i2t_weight);
    }
    Ok(ClipReidObjectiveOutput {
        total,
        id,
        triplet,
        i2t,
    })
}
