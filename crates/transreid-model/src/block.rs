use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use crate::attention::{Attention, AttentionConfig};
use crate::drop_path::drop_path;
use crate::mlp::{Activation, Mlp, MlpConfig};
use crate::precision::Precision;

/// A pre-norm transformer block:
/// `x = x + DropPath(Attn(LN1(x)))`, `x = x + DropPath(MLP(LN2(x)))`.
#[derive(Config, Debug)]
pub struct BlockConfig {
    /// Attention settings (dimension, heads, qkv bias, scale, dropouts).
    pub attention: AttentionConfig,
    /// MLP hidden size over `dim`. Default: 4.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// MLP dropout. Default: 0.
    #[config(default = 0.0)]
    pub drop: f64,
    /// Stochastic-depth rate of this block. Default: 0.
    #[config(default = 0.0)]
    pub drop_path: f64,
    /// LayerNorm epsilon. Default: 1e-6.
    #[config(default = 1e-6)]
    pub layer_norm_eps: f64,
    /// MLP non-linearity. Default: exact GELU.
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
}

impl BlockConfig {
    /// Builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Block<B> {
        let dim = self.attention.dim;
        let norm = || {
            LayerNormConfig::new(dim)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        Block {
            norm1: norm(),
            attn: self.attention.init(device),
            norm2: norm(),
            mlp: MlpConfig::new(dim, (dim as f64 * self.mlp_ratio) as usize)
                .with_drop(self.drop)
                .with_activation(self.activation)
                .init(device),
            drop_path: self.drop_path,
        }
    }
}

/// See [`BlockConfig`].
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub norm1: LayerNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm before the MLP.
    pub norm2: LayerNorm<B>,
    /// Feed-forward network.
    pub mlp: Mlp<B>,
    #[module(skip)]
    drop_path: f64,
}

impl<B: Backend> Block<B> {
    /// Sets the dtype of the attention and MLP products.
    pub fn set_precision(&mut self, precision: Precision) {
        self.attn.precision = precision;
        self.mlp.precision = precision;
    }

    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + drop_path(self.attn.forward(self.norm1.forward(x)), self.drop_path);
        x.clone() + drop_path(self.mlp.forward(self.norm2.forward(x)), self.drop_path)
    }

    /// [`Self::forward`] with causal attention (see [`Attention::forward_causal`]).
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`
    pub fn forward_causal(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let attended = self.attn.forward_causal(self.norm1.forward(x.clone()));
        let x = x + drop_path(attended, self.drop_path);
        x.clone() + drop_path(self.mlp.forward(self.norm2.forward(x)), self.drop_path)
    }

    /// The attention probabilities of this block for input `x` (see
    /// [`Attention::probabilities`]); [`Self::forward`] is unchanged by reading them.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, heads, tokens, tokens]`
    pub fn attention_probabilities(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        self.attn.probabilities(self.norm1.forward(x))
    }

    /// The inference output of [`Self::forward`] on any backend (no drop path or dropout,
    /// f32), from explicit attention probabilities with `probe` added to them (see
    /// [`Attention::forward_probed`]). Returns the output and the probabilities.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`, `[batch, heads, tokens, tokens]`
    pub fn forward_probed(
        &self,
        x: Tensor<B, 3>,
        probe: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let (attended, attention) = self
            .attn
            .forward_probed(self.norm1.forward(x.clone()), probe);
        let x = x + attended;
        let x = x.clone() + self.mlp.forward_eval(self.norm2.forward(x));
        (x, attention)
    }

    /// The output for the class token: [`Self::forward`] narrowed to token 0, without the
    /// attention rows, projections and MLP of the other tokens (see
    /// [`Attention::forward_cls`]).
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, 1, dim]`
    pub fn forward_cls(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let cls = x.clone().narrow(1, 0, 1);
        let x = cls + drop_path(self.attn.forward_cls(self.norm1.forward(x)), self.drop_path);
        x.clone() + drop_path(self.mlp.forward(self.norm2.forward(x)), self.drop_path)
    }

    /// Token 0 of [`Self::forward`], for callers that read nothing else: without autodiff
    /// from [`Self::forward_cls`]; with autodiff from the whole block, so that training keeps
    /// its arithmetic.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]` -> `[batch, 1, dim]`
    pub fn forward_token0(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if B::ad_enabled(&x.device()) {
            self.forward(x).narrow(1, 0, 1)
        } else {
            self.forward_cls(x)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Flex, NdArray};
    use burn::tensor::{Distribution, Tolerance};

    fn cls_matches_the_whole_block<B: Backend>() {
        let device = Default::default();
        let block = BlockConfig::new(AttentionConfig::new(24, 3)).init::<B>(&device);
        for tokens in [1, 2, 9] {
            let x =
                Tensor::<B, 3>::random([2, tokens, 24], Distribution::Normal(0.0, 1.0), &device);
            let whole = block.forward(x.clone()).narrow(1, 0, 1);
            let cls = block.forward_cls(x);
            assert_eq!(cls.dims(), [2, 1, 24]);
            cls.into_data()
                .assert_approx_eq::<f32>(&whole.into_data(), Tolerance::rel_abs(1e-5, 1e-6));
        }
    }

    #[test]
    fn forward_cls_is_token_zero_of_forward() {
        cls_matches_the_whole_block::<NdArray>();
        cls_matches_the_whole_block::<Flex>();
    }
}
