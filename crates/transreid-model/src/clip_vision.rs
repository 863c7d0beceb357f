//! The image tower of OpenAI's CLIP as CLIP-ReID uses it: overlapping patches allowed, side
//! information on the class token, and three outputs (the stream before the last block, the
//! last block after `ln_post`, and its projection).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use crate::attention::AttentionConfig;
use crate::block::{Block, BlockConfig};
use crate::error::ModelConfigError;
use crate::mlp::Activation;
use crate::patch_embed::PatchEmbedConfig;

/// A CLIP ViT image encoder (`VisionTransformer` of OpenAI's `clip/model.py`): a bias-free
/// patch convolution, class and position embeddings, `ln_pre`, pre-norm blocks with fused
/// q / k / v and QuickGELU, `ln_post` and a bias-free projection. LayerNorm epsilon 1e-5, no
/// dropout or drop path.
#[derive(Config, Debug, PartialEq)]
pub struct ClipVisionConfig {
    /// Input image size `[height, width]`.
    pub img_size: [usize; 2],
    /// Patch stride `[y, x]`; below the patch size the patches overlap. Default: `[16, 16]`.
    #[config(default = "[16, 16]")]
    pub stride: [usize; 2],
    /// Patch size. Default: 16.
    #[config(default = 16)]
    pub patch_size: usize,
    /// Token width (768 for ViT-B/16).
    pub width: usize,
    /// Number of blocks (12 for ViT-B/16).
    pub layers: usize,
    /// Attention heads (CLIP: `width / 64`).
    pub heads: usize,
    /// Projection size (512 for ViT-B/16).
    pub output_dim: usize,
}

impl ClipVisionConfig {
    /// OpenAI's CLIP ViT-B/16 at `img_size` and `stride`.
    pub fn vit_base16(img_size: [usize; 2], stride: [usize; 2]) -> Self {
        Self::new(img_size, 768, 12, 12, 512).with_stride(stride)
    }

    fn patch_embed(&self) -> PatchEmbedConfig {
        PatchEmbedConfig::new(self.img_size, self.width)
            .with_stride(self.stride)
            .with_patch_size(self.patch_size)
    }

    /// Patch grid `[num_y, num_x]`.
    pub fn grid(&self) -> [usize; 2] {
        self.patch_embed().grid()
    }

    /// Checks what [`Self::init`] needs: the patch grid, heads that split the width, at least
    /// one block.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        self.patch_embed().validate()?;
        validate_tower(self.width, self.heads, self.layers)
    }

    /// The settings of every block.
    pub fn block(&self) -> BlockConfig {
        clip_block(self.width, self.heads)
    }

    /// Builds the encoder with CLIP's initialisation scale (`width^-0.5`) for the embeddings and
    /// the projection.
    ///
    /// # Panics
    /// If the configuration does not pass [`Self::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipVision<B> {
        if let Err(e) = self.validate() {
            panic!("invalid CLIP image encoder: {e}");
        }
        let [gh, gw] = self.grid();
        let d = self.width;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: (d as f64).powf(-0.5),
        };
        let norm = || LayerNormConfig::new(d).with_epsilon(1e-5).init(device);
        ClipVision {
            conv1: Conv2dConfig::new([3, d], [self.patch_size, self.patch_size])
                .with_stride(self.stride)
                .with_bias(false)
                .init(device),
            class_embedding: normal.init([d], device),
            positional_embedding: normal.init([1 + gh * gw, d], device),
            ln_pre: norm(),
            blocks: (0..self.layers)
                .map(|_| self.block().init(device))
                .collect(),
            ln_post: norm(),
            proj: normal.init([d, self.output_dim], device),
            grid: [gh, gw],
            img_size: self.img_size,
        }
    }
}

/// A CLIP transformer block: LayerNorm eps 1e-5, QuickGELU, no dropout or drop path.
pub(crate) fn clip_block(width: usize, heads: usize) -> BlockConfig {
    BlockConfig::new(AttentionConfig::new(width, heads))
        .with_layer_norm_eps(1e-5)
        .with_activation(Activation::QuickGelu)
}

/// Heads that split the width, at least one block.
pub(crate) fn validate_tower(
    width: usize,
    heads: usize,
    layers: usize,
) -> Result<(), ModelConfigError> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(ModelConfigError::Heads { dim: width, heads });
    }
    if layers == 0 {
        return Err(ModelConfigError::NoBlocks);
    }
    Ok(())
}

/// See [`ClipVisionConfig`].
#[derive(Module, Debug)]
pub struct ClipVision<B: Backend> {
    /// Patch projection `[width, 3, patch, patch]`, no bias.
    pub conv1: Conv2d<B>,
    /// The class token `[width]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// Position embedding `[1 + grid_h * grid_w, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// Norm of every token before the blocks.
    pub ln_pre: LayerNorm<B>,
    /// The transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Norm after the last block.
    pub ln_post: LayerNorm<B>,
    /// Projection `[width, output_dim]`, applied as `x @ proj`.
    pub proj: Param<Tensor<B, 2>>,
    #[module(skip)]
    grid: [usize; 2],
    #[module(skip)]
    img_size: [usize; 2],
}

/// The three token streams of [`ClipVision::forward`].
#[derive(Debug, Clone)]
pub struct ClipVisionOutput<B: Backend> {
    /// The tokens before the last block, without a norm (CLIP-ReID's `x11`).
    pub before_last: Tensor<B, 3>,
    /// The last block's tokens after `ln_post` (`x12`).
    pub last: Tensor<B, 3>,
    /// `last @ proj` (`xproj`).
    pub projected: Tensor<B, 3>,
}

impl<B: Backend> ClipVision<B> {
    /// Patch grid `[num_y, num_x]`.
    pub fn grid(&self) -> [usize; 2] {
        self.grid
    }

    /// Input size `[height, width]`.
    pub fn img_size(&self) -> [usize; 2] {
        self.img_size
    }

    /// Encodes `images`; `side`, when given, is added to each image's class token before the
    /// position embedding (CLIP-ReID's SIE: the table row times its coefficient).
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `side`: `[batch, width]`
    /// - output: `before_last`, `last`: `[batch, 1 + N, width]`; `projected`:
    ///   `[batch, 1 + N, output_dim]`
    pub fn forward(&self, images: Tensor<B, 4>, side: Option<Tensor<B, 2>>) -> ClipVisionOutput<B> {
        let x = self.before_last(images, side);
        let (last, _) = self.blocks.split_last().expect("at least one block");
        let before_last = x.clone();
        let last = self.ln_post.forward(last.forward(x));
        let [batch, tokens, d] = last.dims();
        let projected = last
            .clone()
            .reshape([batch * tokens, d])
            .matmul(self.proj.val())
            .reshape([batch, tokens, self.proj.dims()[1]]);
        ClipVisionOutput {
            before_last,
            last,
            projected,
        }
    }

    /// The class token of each of [`Self::forward`]'s outputs, `[before_last, last,
    /// projected]`; without autodiff the last block computes the class token only.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `side`: `[batch, width]`
    /// - output: `[batch, width]`, `[batch, width]`, `[batch, output_dim]`
    pub fn forward_cls(
        &self,
        images: Tensor<B, 4>,
        side: Option<Tensor<B, 2>>,
    ) -> [Tensor<B, 2>; 3] {
        let x = self.before_last(images, side);
        let [batch, _, d] = x.dims();
        let (last, _) = self.blocks.split_last().expect("at least one block");
        let before_last = x.clone().narrow(1, 0, 1).reshape([batch, d]);
        let cls = self
            .ln_post
            .forward(last.forward_token0(x))
            .reshape([batch, d]);
        let projected = cls.clone().matmul(self.proj.val());
        [before_last, cls, projected]
    }

    /// The tokens entering the last block.
    fn before_last(&self, images: Tensor<B, 4>, side: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let mut x = self.embed_tokens(images, side);
        let (_, rest) = self.blocks.split_last().expect("at least one block");
        for block in rest {
            x = block.forward(x);
        }
        x
    }

    /// The tokens entering the first block: patches, the class token (plus `side`), the
    /// position embedding, `ln_pre`.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `side`: `[batch, width]`
    /// - output: `[batch, 1 + N, width]`
    pub fn embed_tokens(&self, images: Tensor<B, 4>, side: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let x = self.conv1.forward(images);
        let [batch, d, gh, gw] = x.dims();
        let patches = x.reshape([batch, d, gh * gw]).swap_dims(1, 2);
        let mut cls = self
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([batch, 1, d]);
        if let Some(side) = side {
            cls = cls + side.reshape([batch, 1, d]);
        }
        let x = Tensor::cat(vec![cls, patches], 1) + self.positional_embedding.val().unsqueeze();
        self.ln_pre.forward(x)
    }
}
