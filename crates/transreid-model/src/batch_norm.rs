//! `BatchNorm2d` with PyTorch's semantics (Burn 0.21's `BatchNorm` updates its running variance
//! with the biased batch variance; PyTorch uses the unbiased one).

use burn::module::{Module, Param, RunningState};
use burn::prelude::*;

/// Momentum of the running statistics (PyTorch's default).
pub(crate) const MOMENTUM: f64 = 0.1;
/// Added to the variance (PyTorch's default).
pub(crate) const EPSILON: f64 = 1e-5;

/// `running = (1 - momentum) * running + momentum * batch`, synced at once because module
/// visitors (export, checkpoints) read the synced value.
pub(crate) fn update_running<B: Backend>(state: &RunningState<Tensor<B, 1>>, batch: Tensor<B, 1>) {
    let old = state.value_sync().to_device(&batch.device());
    state.update(
        old.mul_scalar(1.0 - MOMENTUM)
            .add(batch.mul_scalar(MOMENTUM))
            .detach(),
    );
    let _ = state.value_sync();
}

/// Batch normalisation over the channels of `[batch, channels, height, width]` maps
/// (`nn.BatchNorm2d`, eps 1e-5, momentum 0.1, affine).
///
/// Training mode (an autodiff backend) normalises with the batch mean and biased variance over
/// batch and positions and updates the running statistics with the **unbiased** variance;
/// otherwise it uses the running statistics.
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    /// Scale, init 1.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift, init 0.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean, init 0.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (unbiased) variance, init 1.
    pub running_var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> BatchNorm2d<B> {
    /// A fresh layer of `channels` channels.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, channels, height, width]` -> same
    ///
    /// # Panics
    /// In training mode with a single value per channel (the variance is undefined, as in
    /// PyTorch).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = x.device();
        let [batch, channels, height, width] = x.dims();
        let per_channel = |t: Tensor<B, 1>| t.reshape([1, channels, 1, 1]);
        let (mean, var) = if B::ad_enabled(&device) {
            let n = batch * height * width;
            assert!(
                n > 1,
                "BatchNorm2d in training mode needs more than one value per channel"
            );
            let flat = x.clone().swap_dims(0, 1).reshape([channels, n]);
            let mean = flat.clone().mean_dim(1);
            let var = (flat - mean.clone())
                .square()
                .mean_dim(1)
                .reshape([channels]);
            let mean = mean.reshape([channels]);
            update_running(&self.running_mean, mean.clone().detach());
            update_running(
                &self.running_var,
                var.clone().detach().mul_scalar(n as f64 / (n - 1) as f64),
            );
            (mean, var)
        } else {
            (
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
            )
        };
        (x - per_channel(mean)).div(per_channel(var).add_scalar(EPSILON).sqrt())
            * per_channel(self.weight.val())
            + per_channel(self.bias.val())
    }
}
