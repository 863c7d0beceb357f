use burn::module::{Module, Param, RunningState};
use burn::prelude::*;

use crate::batch_norm::{update_running, EPSILON};

/// BNNeck: `BatchNorm1d` whose bias is frozen at its initial 0 (never trained, never decayed).
///
/// Training mode (an autodiff backend) normalises with the batch mean and the biased batch
/// variance and updates `running = 0.9 * running + 0.1 * batch` with the **unbiased** variance,
/// as PyTorch does; otherwise it uses the running statistics. eps 1e-5.
#[derive(Module, Debug)]
pub struct BnNeck<B: Backend> {
    /// Scale, init 1.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift, frozen at 0.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (unbiased) variance.
    pub running_var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> BnNeck<B> {
    /// A fresh neck of `dim` features.
    pub fn new(dim: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([dim], device)),
            bias: Param::from_tensor(Tensor::zeros([dim], device)).set_require_grad(false),
            running_mean: RunningState::new(Tensor::zeros([dim], device)),
            running_var: RunningState::new(Tensor::ones([dim], device)),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, D]` -> `[batch, D]`
    ///
    /// # Panics
    /// In training mode with a batch of one (the variance is undefined, as in PyTorch).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let device = x.device();
        let [batch, dim] = x.dims();
        // detach keeps the bias out of the gradient even after a load resets require_grad.
        let bias = self.bias.val().detach().reshape([1, dim]);
        let weight = self.weight.val().reshape([1, dim]);
        let (mean, var) = if B::ad_enabled(&device) {
            assert!(
                batch > 1,
                "BNNeck in training mode needs more than one sample per batch"
            );
            let mean = x.clone().mean_dim(0);
            let var = (x.clone() - mean.clone()).square().mean_dim(0);
            let unbiased = var
                .clone()
                .detach()
                .mul_scalar(batch as f64 / (batch - 1) as f64);
            update_running(&self.running_mean, mean.clone().detach().reshape([dim]));
            update_running(&self.running_var, unbiased.reshape([dim]));
            (mean, var)
        } else {
            (
                self.running_mean
                    .value()
                    .to_device(&device)
                    .reshape([1, dim]),
                self.running_var
                    .value()
                    .to_device(&device)
                    .reshape([1, dim]),
            )
        };
        (x - mean).div(var.add_scalar(EPSILON).sqrt()) * weight + bias
    }

    /// [`Self::forward`] with the running statistics on any backend (inference).
    ///
    /// # Shapes
    /// - `x`: `[batch, D]` -> `[batch, D]`
    pub fn forward_eval(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let device = x.device();
        let dim = x.dims()[1];
        let stat = |s: &RunningState<Tensor<B, 1>>| s.value().to_device(&device).reshape([1, dim]);
        (x - stat(&self.running_mean)).div(stat(&self.running_var).add_scalar(EPSILON).sqrt())
            * self.weight.val().reshape([1, dim])
            + self.bias.val().detach().reshape([1, dim])
    }
}
