use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::error::LossError;

/// The supervised contrastive loss of CLIP-ReID's first stage (`SupConLoss`, temperature 1, no
/// normalisation): with logits `a c^T` of each anchor against every candidate, the negative
/// mean over anchors of the mean log-probability of the candidates sharing the anchor's label.
/// Image-to-text takes image features as anchors and text features as candidates,
/// text-to-image the reverse.
///
/// # Shapes
/// - `anchors`: `[batch, D]`; `candidates`: `[n, D]` -> scalar `[1]`
///
/// # Errors
/// [`LossError::EmptyBatch`], [`LossError::LengthMismatch`] when labels and rows disagree, and
/// [`LossError::NoPositive`] for an anchor whose label no candidate has (the reference divides
/// by zero there).
pub fn supcon_loss<B: Backend>(
    anchors: Tensor<B, 2>,
    candidates: Tensor<B, 2>,
    anchor_labels: &[i64],
    candidate_labels: &[i64],
) -> Result<Tensor<B, 1>, LossError> {
    let ([batch, _], [n, _]) = (anchors.dims(), candidates.dims());
    if batch == 0 || n == 0 {
        return Err(LossError::EmptyBatch);
    }
    for (rows, labels) in [(batch, anchor_labels), (n, candidate_labels)] {
        if rows != labels.len() {
            return Err(LossError::LengthMismatch {
                features: rows,
                labels: labels.len(),
            });
        }
    }
    let mut same = Vec::with_capacity(batch * n);
    for &a in anchor_labels {
        let row: Vec<f32> = candidate_labels
            .iter()
            .map(|&c| if a == c { 1.0 } else { 0.0 })
            .collect();
        let positives: f32 = row.iter().sum();
        if positives == 0.0 {
            return Err(LossError::NoPositive { label: a });
        }
        same.extend(row.iter().map(|m| m / positives));
    }
    let log_prob = log_softmax(anchors.matmul(candidates.transpose()), 1);
    let weights = Tensor::<B, 2>::from_data(TensorData::new(same, [batch, n]), &log_prob.device())
        .cast(log_prob.dtype());
    Ok((log_prob * weights).sum().neg().div_scalar(batch as f64))
}
