use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use crate::attention::AttentionConfig;
use crate::block::{Block, BlockConfig};
use crate::error::ModelConfigError;
use crate::ics_stem::IcsStemConfig;
use crate::patch_embed::{PatchEmbed, PatchEmbedConfig};
use crate::precision::Precision;
use crate::sie::SieConfig;

/// The ViT backbone of TransReID (`TransReID` in the reference's `vit_pytorch.py`).
#[derive(Config, Debug, PartialEq)]
pub struct VitConfig {
    /// Input image size `[height, width]`.
    pub img_size: [usize; 2],
    /// Patch stride `[y, x]`. Default: `[16, 16]`.
    #[config(default = "[16, 16]")]
    pub stride: [usize; 2],
    /// Patch size. Default: 16.
    #[config(default = 16)]
    pub patch_size: usize,
    /// Input channels. Default: 3.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Embedding dimension D.
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP hidden size over D. Default: 4.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Bias on the qkv projection. Default: true.
    #[config(default = true)]
    pub qkv_bias: bool,
    /// Attention scale; `None` means `head_dim^-0.5`. Default: None.
    #[config(default = "None")]
    pub qk_scale: Option<f64>,
    /// Dropout after the embeddings and in the MLPs (`MODEL.DROP_OUT`). Default: 0.
    #[config(default = 0.0)]
    pub drop_rate: f64,
    /// Dropout on attention weights (`MODEL.ATT_DROP_RATE`). Default: 0.
    #[config(default = 0.0)]
    pub attn_drop_rate: f64,
    /// Stochastic depth of the last block; block `i` gets `rate * i / (depth - 1)`. Default: 0.1.
    #[config(default = 0.1)]
    pub drop_path_rate: f64,
    /// LayerNorm epsilon. Default: 1e-6.
    #[config(default = 1e-6)]
    pub layer_norm_eps: f64,
    /// The ICS convolution stem of TransReID-SSL before the patch projection (needs stride
    /// `patch_size`). Default: None.
    #[config(default = "None")]
    pub stem: Option<IcsStemConfig>,
}

impl VitConfig {
    /// The patch-embedding settings.
    pub fn patch_embed(&self) -> PatchEmbedConfig {
        PatchEmbedConfig::new(self.img_size, self.embed_dim)
            .with_stride(self.stride)
            .with_patch_size(self.patch_size)
            .with_in_channels(self.in_channels)
            .with_stem(self.stem.clone())
    }

    /// Checks what [`Self::init`] needs: the patch grid, heads that split the embedding, at
    /// least one block, and dropout and drop-path rates in `[0, 1)`.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        self.patch_embed().validate()?;
        let (dim, heads) = (self.embed_dim, self.num_heads);
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(ModelConfigError::Heads { dim, heads });
        }
        if self.depth == 0 {
            return Err(ModelConfigError::NoBlocks);
        }
        for (name, value) in [
            ("drop_rate", self.drop_rate),
            ("attn_drop_rate", self.attn_drop_rate),
            ("drop_path_rate", self.drop_path_rate),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(ModelConfigError::Rate { name, value });
            }
        }
        Ok(())
    }

    /// Patch grid `[num_y, num_x]`.
    pub fn grid(&self) -> [usize; 2] {
        self.patch_embed().grid()
    }

    /// Stochastic-depth rate of block `index` (`linspace(0, rate, depth)`).
    pub fn block_drop_path(&self, index: usize) -> f64 {
        if self.depth <= 1 {
            return self.drop_path_rate;
        }
        self.drop_path_rate * index as f64 / (self.depth - 1) as f64
    }

    /// The settings of block `index`.
    pub fn block(&self, index: usize) -> BlockConfig {
        BlockConfig::new(
            AttentionConfig::new(self.embed_dim, self.num_heads)
                .with_qkv_bias(self.qkv_bias)
                .with_qk_scale(self.qk_scale)
                .with_attn_drop(self.attn_drop_rate)
                .with_proj_drop(self.drop_rate),
        )
        .with_mlp_ratio(self.mlp_ratio)
        .with_drop(self.drop_rate)
        .with_drop_path(self.block_drop_path(index))
        .with_layer_norm_eps(self.layer_norm_eps)
    }

    /// The final LayerNorm.
    pub fn norm<B: Backend>(&self, device: &B::Device) -> LayerNorm<B> {
        LayerNormConfig::new(self.embed_dim)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }

    /// Builds the backbone with its SIE table (cls token, position and SIE embeddings drawn
    /// from normal(0, 0.02), i.e. the reference's trunc_normal whose cut at +-2 never binds).
    pub fn init<B: Backend>(&self, sie: &SieConfig, device: &B::Device) -> VisionTransformer<B> {
        let d = self.embed_dim;
        let tokens = 1 + self.patch_embed().num_patches();
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        VisionTransformer {
            patch_embed: self.patch_embed().init(device),
            cls_token: normal.init([1, 1, d], device),
            pos_embed: normal.init([1, tokens, d], device),
            sie_embed: sie.table_len().map(|k| normal.init([k, 1, d], device)),
            pos_drop: DropoutConfig::new(self.drop_rate).init(),
            blocks: (0..self.depth)
                .map(|i| self.block(i).init(device))
                .collect(),
            norm: self.norm(device),
            sie: sie.clone(),
        }
    }
}

/// See [`VitConfig`].
#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    /// Overlapping patch embedding.
    pub patch_embed: PatchEmbed<B>,
    /// `[1, 1, D]`.
    pub cls_token: Param<Tensor<B, 3>>,
    /// `[1, 1 + N, D]`.
    pub pos_embed: Param<Tensor<B, 3>>,
    /// `[K, 1, D]`, one row per camera / view / pair (see [`SieConfig`]).
    pub sie_embed: Option<Param<Tensor<B, 3>>>,
    pos_drop: Dropout,
    /// Transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Final LayerNorm.
    pub norm: LayerNorm<B>,
    #[module(skip)]
    sie: SieConfig,
}

impl<B: Backend> VisionTransformer<B> {
    /// Sets the dtype of every block's products (see [`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        for block in &mut self.blocks {
            block.set_precision(precision);
        }
    }

    /// Patch tokens with the cls token prepended, position and side information added.
    ///
    /// `x = [cls; patches] + pos_embed + lambda * sie_embed[index]` (SIE on every token).
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]`
    /// - output: `[batch, 1 + N, D]`
    ///
    /// # Panics
    /// If SIE needs cameras or views that are not given.
    pub fn embed_tokens(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 3> {
        let patches = self.patch_embed.forward(images);
        let [b, _, d] = patches.dims();
        let cls = self.cls_token.val().expand([b, 1, d]);
        let mut x = Tensor::cat(vec![cls, patches], 1) + self.pos_embed.val();
        if let (Some(table), Some(index)) =
            (&self.sie_embed, self.sie.table_indices(cameras, views))
        {
            x = x + table
                .val()
                .select(0, index)
                .mul_scalar(self.sie.coefficient);
        }
        self.pos_drop.forward(x)
    }

    /// Runs the first `num_blocks` blocks on the embedded tokens, without the final norm
    /// (the JPM backbone output when `num_blocks = depth - 1`).
    ///
    /// # Shapes
    /// - output: `[batch, 1 + N, D]`
    pub fn forward_blocks(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
        num_blocks: usize,
    ) -> Tensor<B, 3> {
        let x = self.embed_tokens(images, cameras, views);
        self.blocks[..num_blocks]
            .iter()
            .fold(x, |x, block| block.forward(x))
    }

    /// All blocks then the final norm, every token (timm's `forward_features`).
    ///
    /// # Shapes
    /// - output: `[batch, 1 + N, D]`
    pub fn forward_features(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 3> {
        let x = self.forward_blocks(images, cameras, views, self.blocks.len());
        self.norm.forward(x)
    }

    /// The normalised cls token (the backbone output without JPM).
    ///
    /// # Shapes
    /// - output: `[batch, D]`
    pub fn forward_global(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 2> {
        // Only token 0 of the last block is read (`Block::forward_token0`).
        match self.blocks.last() {
            Some(last) => {
                let x = self.forward_blocks(images, cameras, views, self.blocks.len() - 1);
                cls_of(self.norm.forward(last.forward_token0(x)))
            }
            None => cls_of(self.forward_features(images, cameras, views)),
        }
    }

    /// The side-information settings of this backbone.
    pub fn sie(&self) -> &SieConfig {
        &self.sie
    }
}

/// Token 0 of every sequence.
///
/// # Shapes
/// - `x`: `[batch, tokens, D]` -> `[batch, D]`
pub fn cls_of<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, _, d] = x.dims();
    x.narrow(1, 0, 1).reshape([b, d])
}
