use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::gelu;

use crate::attention::linear;

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
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.drop.forward(gelu(self.fc1.forward(x)));
        self.drop.forward(self.fc2.forward(x))
    }
}
