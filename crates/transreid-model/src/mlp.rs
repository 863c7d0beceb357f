use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use crate::attention::linear;
use crate::precision::Precision;

/// The transformer feed-forward network: `fc1 -> GELU (exact erf) -> dropout -> fc2 -> dropout`.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input and output dimension.
    pub dim: usize,
    /// Hidden dimension (`mlp_ratio * dim`).
    pub hidden: usize,
    /// Dropout rate. Default: 0.
    #[config(default = 0.0)]
    pub drop: f64,
}

impl MlpConfig {
    /// Builds the module.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        Mlp {
            fc1: linear(self.dim, self.hidden, true, device),
            fc2: linear(self.hidden, self.dim, true, device),
            drop: DropoutConfig::new(self.drop).init(),
            precision: Precision::F32,
        }
    }
}

/// See [`MlpConfig`].
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `dim -> hidden`.
    pub fc1: Linear<B>,
    /// `hidden -> dim`.
    pub fc2: Linear<B>,
    drop: Dropout,
    /// Dtype of the two products (GELU stays f32).
    #[module(skip)]
    pub precision: Precision,
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let p = self.precision;
        let x = self
            .drop
            .forward(gelu_exact(p.cast_out(p.linear(&self.fc1, p.cast_in(x)))));
        self.drop
            .forward(p.cast_out(p.linear(&self.fc2, p.cast_in(x))))
    }

    /// [`Self::forward`] for inference on any backend: no dropout, f32.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`
    pub fn forward_eval(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2.forward(gelu_exact(self.fc1.forward(x)))
    }
}

/// `x * 0.5 * (1 + erf(x / sqrt(2)))`, PyTorch's `nn.GELU()`, built from primitives so that its
/// gradient is exact too: Burn 0.21's fused `gelu` differentiates the tanh approximation on
/// most backends, which moves MLP gradients by ~2e-4 of their scale. On Flex without autodiff
/// a vectorised kernel computes the same function (within 5e-7 relative).
pub fn gelu_exact<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match crate::flex_kernels::gelu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    gelu_composed(x)
}

/// [`gelu_exact`] from Burn's primitives on every backend.
pub(crate) fn gelu_composed<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone()
        .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul(x)
        .mul_scalar(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    #[test]
    fn gelu_value_and_exact_derivative() {
        let x = Tensor::<Autodiff<NdArray>, 1>::from_floats(
            [-2.0, -0.5, 0.0, 0.7, 3.0],
            &Default::default(),
        )
        .require_grad();
        let y = gelu_exact(x.clone());
        let grads = y.clone().sum().backward();
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let y: Vec<f32> = y.into_data().to_vec().unwrap();
        // torch.nn.GELU() and its autograd derivative at the same points.
        let want_y = [-0.0455001, -0.15426879, 0.0, 0.53062546, 2.9959502];
        let want_g = [-0.08523187, 0.13250491, 0.5, 0.9766141, 1.0119456];
        for i in 0..5 {
            assert!((y[i] - want_y[i]).abs() < 1e-6, "gelu({i})");
            assert!(
                (g[i] - want_g[i]).abs() < 1e-6,
                "gelu'({i}): {} vs {}",
                g[i],
                want_g[i]
            );
        }
    }
}
