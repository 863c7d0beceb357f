use burn::prelude::*;
use burn::tensor::Distribution;

/// Stochastic depth: drops the whole residual branch per sample with probability `rate`.
///
/// Active only on an autodiff backend (training), identity otherwise, as `DropPath` in timm:
/// `x / keep * floor(keep + U[0, 1))` with one draw per sample.
///
/// # Shapes
/// - `x`: `[batch, tokens, dim]`
pub fn drop_path<B: Backend>(x: Tensor<B, 3>, rate: f64) -> Tensor<B, 3> {
    if rate <= 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let keep = 1.0 - rate;
    let [batch, _, _] = x.dims();
    let mask = Tensor::<B, 3>::random([batch, 1, 1], Distribution::Bernoulli(keep), &x.device());
    x.mul(mask).div_scalar(keep)
}
