use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::precision::Precision;

/// Multi-head self-attention with a fused `qkv` projection (timm layout: output rows `[q | k | v]`,
/// each head-major).
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Embedding dimension.
    pub dim: usize,
    /// Number of heads.
    pub num_heads: usize,
    /// Bias on the `qkv` projection. Default: true.
    #[config(default = true)]
    pub qkv_bias: bool,
    /// Attention scale; `None` means `head_dim^-0.5`. Default: None.
    #[config(default = "None")]
    pub qk_scale: Option<f64>,
    /// Dropout on the attention weights. Default: 0.
    #[config(default = 0.0)]
    pub attn_drop: f64,
    /// Dropout after the output projection. Default: 0.
    #[config(default = 0.0)]
    pub proj_drop: f64,
}

impl AttentionConfig {
    /// Builds the module (Linear weights normal(0, 0.02), biases 0).
    ///
    /// # Panics
    /// If `dim` is not divisible by `num_heads`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        assert_eq!(
            self.dim % self.num_heads,
            0,
            "dim {} not divisible by {} heads",
            self.dim,
            self.num_heads
        );
        let head_dim = self.dim / self.num_heads;
        Attention {
            qkv: linear(self.dim, 3 * self.dim, self.qkv_bias, device),
            proj: linear(self.dim, self.dim, true, device),
            attn_drop: DropoutConfig::new(self.attn_drop).init(),
            proj_drop: DropoutConfig::new(self.proj_drop).init(),
            num_heads: self.num_heads,
            scale: self.qk_scale.unwrap_or((head_dim as f64).powf(-0.5)),
            precision: Precision::F32,
        }
    }
}

/// A Linear layer with the ViT initialisation: weight normal(0, 0.02), bias zeros.
pub(crate) fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device);
    // A fresh trainable parameter: mapping the initialised one would drop `require_grad`.
    if bias {
        layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    }
    layer
}

/// See [`AttentionConfig`].
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Fused query / key / value projection `dim -> 3 * dim`.
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    attn_drop: Dropout,
    proj_drop: Dropout,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    scale: f64,
    /// Dtype of the projections and the two attention products.
    #[module(skip)]
    pub precision: Precision,
}

impl<B: Backend> Attention<B> {
    /// `softmax(q k^T * scale) v`, heads concatenated, then projected.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]`
    /// - output: `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, d] = x.dims();
        let (h, p) = (self.num_heads, self.precision);
        let qkv = p.linear(&self.qkv, p.cast_in(x));
        // Flex without autodiff (so without attention dropout) computes it in one kernel.
        #[cfg(feature = "flex")]
        let qkv = match crate::flex_kernels::attention(qkv, h, self.scale as f32) {
            Ok(out) => {
                return self
                    .proj_drop
                    .forward(p.cast_out(p.linear(&self.proj, out)))
            }
            Err(qkv) => qkv,
        };
        // `[batch, 3 * heads, tokens, head_dim]` as a view: q, k and v are slices of it that the
        // products read in place, with no copy of the projection.
        let qkv = qkv.reshape([b, n, 3 * h, d / h]).swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.clone().narrow(1, h, h);
        let v = qkv.narrow(1, 2 * h, h);
        self.attend(q, k, v)
    }

    /// [`Self::forward`] with a causal mask: token `i` attends to tokens `0..=i` only (CLIP's
    /// text transformer). Always the generic path, which the mask needs.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]`
    /// - output: `[batch, tokens, dim]`
    pub fn forward_causal(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, d] = x.dims();
        let (h, p) = (self.num_heads, self.precision);
        let qkv = p
            .linear(&self.qkv, p.cast_in(x))
            .reshape([b, n, 3 * h, d / h])
            .swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.clone().narrow(1, h, h);
        let v = qkv.narrow(1, 2 * h, h);
        let later = Tensor::<B, 2, Bool>::tril_mask([n, n], 0, &q.device());
        self.attend_masked(q, k, v, Some(later.unsqueeze::<4>()))
    }

    /// [`Self::forward`] for the class token only: keys and values of every token, the query,
    /// the attention row and the projection of token 0. Equal to `forward(x)` narrowed to
    /// token 0, with a sixth of the work per token.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]`
    /// - output: `[batch, 1, dim]`
    pub fn forward_cls(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, d] = x.dims();
        let (h, p) = (self.num_heads, self.precision);
        let x = p.cast_in(x);
        let weight = self.qkv.weight.val();
        let bias = self.qkv.bias.as_ref().map(|b| b.val());
        // Output columns [start, start + len) of the fused projection.
        let project = |x: Tensor<B, 3>, start: usize, len: usize| {
            p.linear_with(
                x,
                weight.clone().narrow(1, start, len),
                bias.clone().map(|b| b.narrow(0, start, len)),
            )
        };
        let q = project(x.clone().narrow(1, 0, 1), 0, d)
            .reshape([b, 1, h, d / h])
            .swap_dims(1, 2);
        let kv = project(x, d, 2 * d)
            .reshape([b, n, 2 * h, d / h])
            .swap_dims(1, 2);
        let (k, v) = (kv.clone().narrow(1, 0, h), kv.narrow(1, h, h));
        self.attend(q, k, v)
    }

    /// The attention probabilities `softmax(q k^T * scale)` of every head, computed apart from
    /// [`Self::forward`] (whose fused kernels never form them), in f32 and without dropout.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]`
    /// - output: `[batch, heads, tokens, tokens]`, each row summing to 1
    pub fn probabilities(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, n, d] = x.dims();
        let h = self.num_heads;
        let qkv = Precision::F32
            .linear(&self.qkv, x)
            .reshape([b, n, 3 * h, d / h])
            .swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.narrow(1, h, h);
        softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(self.scale), 3)
    }

    /// The inference output of [`Self::forward`] (no dropout, f32) computed from explicit
    /// attention probabilities `A`, with `probe` added to them: a zero tensor that requires
    /// gradients makes `dT/dA` readable as the probe's gradient, for explanations. Returns the
    /// output and `A`.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, dim]`; `probe`: `[batch, heads, tokens, tokens]`
    /// - output: `[batch, tokens, dim]` and `[batch, heads, tokens, tokens]`
    pub fn forward_probed(
        &self,
        x: Tensor<B, 3>,
        probe: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let [b, n, d] = x.dims();
        let h = self.num_heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3 * h, d / h])
            .swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.clone().narrow(1, h, h);
        let v = qkv.narrow(1, 2 * h, h);
        let attention = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(self.scale), 3);
        let used = match probe {
            Some(probe) => attention.clone() + probe,
            None => attention.clone(),
        };
        let out = self.proj.forward(merge_heads(used.matmul(v)));
        (out, attention)
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// `softmax(q k^T * scale) v`, heads side by side, projected: softmax in f32, the products
    /// in the compute dtype.
    ///
    /// # Shapes
    /// - `q`: `[batch, heads, queries, head_dim]`; `k`, `v`: `[batch, heads, tokens, head_dim]`
    /// - output: `[batch, queries, dim]`
    fn attend(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 3> {
        self.attend_masked(q, k, v, None)
    }

    /// [`Self::attend`] with the scores where `hidden` is true set to minus infinity (a zero
    /// weight after the softmax).
    ///
    /// # Shapes
    /// - `hidden`: broadcast to `[batch, heads, queries, tokens]`
    fn attend_masked(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        hidden: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let p = self.precision;
        let mut scores = p
            .cast_out(q.matmul(k.swap_dims(2, 3)))
            .mul_scalar(self.scale);
        if let Some(hidden) = hidden {
            let shape = scores.shape();
            scores = scores.mask_fill(hidden.expand(shape), f32::NEG_INFINITY);
        }
        let attn = self.attn_drop.forward(softmax(scores, 3));
        let out = merge_heads(p.cast_in(attn).matmul(v));
        self.proj_drop
            .forward(p.cast_out(p.linear(&self.proj, out)))
    }
}

/// The heads side by side: `[batch, heads, tokens, head_dim] -> [batch, tokens, heads * head_dim]`.
fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, n, e] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, h * e])
}
