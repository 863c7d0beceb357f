use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

use crate::attention::linear;
use crate::precision::Precision;

/// The MLP's non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `x Φ(x)` ([`gelu_exact`]): ViT, DeiT, TransReID.
    #[default]
    Gelu,
    /// `x * sigmoid(1.702 x)` ([`quick_gelu`]): OpenAI's CLIP towers.
    QuickGelu,
}

impl Activation {
    /// Applies the function element-wise.
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Gelu => gelu_exact(x),
            Activation::QuickGelu => quick_gelu(x),
        }
    }
}

/// The transformer feed-forward network: `fc1 -> activation -> dropout -> fc2 -> dropout`.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input and output dimension.
    pub dim: usize,
    /// Hidden dimension (`mlp_ratio * dim`).
    pub hidden: usize,
    /// Dropout rate. Default: 0.
    #[config(default = 0.0)]
    pub drop: f64,
    /// Non-linearity. Default: exact GELU.
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
}

impl MlpConfig {
    /// Builds the module.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        Mlp {
            fc1: linear(self.dim, self.hidden, true, device),
            fc2: linear(self.hidden, self.dim, true, device),
            drop: DropoutConfig::new(self.drop).init(),
            activation: self.activation,
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
    /// Non-linearity.
    #[module(skip)]
    pub activation: Activation,
    /// Dtype of the two products (the activation stays f32).
    #[module(skip)]
    pub precision: Precision,
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let p = self.precision;
        let x = self.drop.forward(
            self.activation
                .forward(p.cast_out(p.linear(&self.fc1, p.cast_in(x)))),
        );
        self.drop
            .forward(p.cast_out(p.linear(&self.fc2, p.cast_in(x))))
    }

    /// [`Self::forward`] for inference on any backend: no dropout, f32.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`
    pub fn forward_eval(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2
            .forward(self.activation.forward(self.fc1.forward(x)))
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

/// `x * sigmoid(1.702 x)`, the GELU approximation of OpenAI's CLIP (`QuickGELU`), which its
/// weights were trained with.
pub fn quick_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    sigmoid(x.clone().mul_scalar(1.702)).mul(x)
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
    fn quick_gelu_is_x_times_sigmoid_of_1702_x() {
        let xs = [-3.0f32, -0.5, 0.0, 0.8, 2.5];
        let y = quick_gelu(Tensor::<NdArray, 1>::from_floats(xs, &Default::default()));
        for (x, y) in xs.iter().zip(y.into_data().to_vec::<f32>().unwrap()) {
            let expected = x / (1.0 + (-1.702 * x).exp());
            assert!((y - expected).abs() < 1e-6, "{x}: {y} vs {expected}");
        }
        assert_eq!(Activation::default(), Activation::Gelu);
    }

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
