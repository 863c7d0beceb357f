use burn::prelude::*;

/// Center loss (`CenterLoss`, off in every shipped config), computed as the reference does:
/// `d = |x|^2 + |c|^2 - 2 x c^T` masked to each sample's own class, clamped to
/// `[1e-12, 1e12]` (so every masked-out entry adds 1e-12), summed and divided by the batch.
///
/// # Shapes
/// - `feats`: `[batch, d]`; `centers`: `[classes, d]`; `targets`: `[batch]` -> `[1]`
pub fn center_loss<B: Backend>(
    feats: Tensor<B, 2>,
    centers: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [batch, _] = feats.dims();
    let [classes, _] = centers.dims();
    let xx = feats.clone().square().sum_dim(1);
    let cc = centers.clone().square().sum_dim(1).transpose();
    let dist = xx + cc - feats.matmul(centers.transpose()).mul_scalar(2.0);
    let mask = targets.one_hot::<2>(classes).float().cast(dist.dtype());
    (dist * mask)
        .clamp(1e-12, 1e12)
        .sum()
        .div_scalar(batch as f64)
}
