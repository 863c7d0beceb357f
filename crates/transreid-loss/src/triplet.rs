use burn::prelude::*;
use burn::tensor::activation::{relu, softplus};
use serde::{Deserialize, Serialize};

use crate::error::LossError;

/// The triplet margin (`MODEL.NO_MARGIN` / `SOLVER.MARGIN`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripletMargin {
    /// `mean(softplus(ap - an))` = `SoftMarginLoss(an - ap, 1)` (every shipped config).
    Soft,
    /// `mean(relu(ap - an + m))` = `MarginRankingLoss(margin = m)`.
    Hard(f64),
}

/// Batch-hard mining result and loss.
#[derive(Debug, Clone)]
pub struct TripletOutput<B: Backend> {
    /// The loss, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Hardest positive distance per anchor, `[batch]`.
    pub dist_ap: Tensor<B, 1>,
    /// Hardest negative distance per anchor, `[batch]`.
    pub dist_an: Tensor<B, 1>,
}

/// `sqrt(clamp(|x|^2 + |y|^2 - 2 x.y, 1e-12))`, the reference's `euclidean_dist`.
///
/// # Shapes
/// - `x`: `[m, d]`, `y`: `[n, d]` -> `[m, n]`
pub fn euclidean_dist<B: Backend>(x: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 2> {
    let xx = x.clone().square().sum_dim(1);
    let yy = y.clone().square().sum_dim(1).transpose();
    let xy = x.matmul(y.transpose());
    (xx + yy - xy.mul_scalar(2.0)).clamp_min(1e-12).sqrt()
}

/// Batch-hard triplet loss on pre-BNNeck features (`TripletLoss` with `hard_example_mining`):
/// `ap_i = max_{j: y_j = y_i} d_ij` (self included), `an_i = min_{j: y_j != y_i} d_ij`.
///
/// Checks the labels on the host first: every label needs another sample of its identity, a
/// sample of another identity, and (as the reference's mining assumes) an equal count.
///
/// # Shapes
/// - `feats`: `[batch, d]`; `labels`: host labels, `batch` of them
pub fn triplet_loss<B: Backend>(
    feats: Tensor<B, 2>,
    labels: &[i64],
    margin: TripletMargin,
) -> Result<TripletOutput<B>, LossError> {
    let [n, _] = feats.dims();
    check_pk_labels(labels, n)?;
    let device = feats.device();
    let dist = euclidean_dist(feats.clone(), feats);
    let same: Vec<f32> = labels
        .iter()
        .flat_map(|a| labels.iter().map(move |b| if a == b { 1.0 } else { 0.0 }))
        .collect();
    let same = Tensor::<B, 2>::from_data(TensorData::new(same, [n, n]), &device).cast(dist.dtype());
    // Masked max / min: distances are >= 1e-6, so pushing excluded entries by a large constant
    // never changes which entry wins.
    let big = 1e12;
    let dist_ap = (dist.clone() * same.clone()
        - (same.clone().neg().add_scalar(1.0)).mul_scalar(big))
    .max_dim(1)
    .reshape([n]);
    let dist_an = (dist + same.mul_scalar(big)).min_dim(1).reshape([n]);
    let loss = match margin {
        TripletMargin::Soft => softplus(dist_ap.clone() - dist_an.clone(), 1.0).mean(),
        TripletMargin::Hard(m) => relu(dist_ap.clone() - dist_an.clone() + m).mean(),
    };
    Ok(TripletOutput {
        loss,
        dist_ap,
        dist_an,
    })
}

fn check_pk_labels(labels: &[i64], n: usize) -> Result<(), LossError> {
    if labels.len() != n {
        return Err(LossError::LengthMismatch {
            features: n,
            labels: labels.len(),
        });
    }
    let Some(first) = labels.first() else {
        return Err(LossError::EmptyBatch);
    };
    let mut counts = std::collections::BTreeMap::new();
    for &l in labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    let expected = counts[first];
    for (&label, &count) in &counts {
        if count < 2 {
            return Err(LossError::NoPositive { label });
        }
        if count != expected {
            return Err(LossError::UnbalancedBatch {
                label,
                count,
                expected,
            });
        }
    }
    if counts.len() < 2 {
        return Err(LossError::NoNegative { label: labels[0] });
    }
    Ok(())
}
