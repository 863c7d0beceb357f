//! The text tower of OpenAI's CLIP as CLIP-ReID uses it: a causal transformer over prompt
//! embeddings, `ln_final`, and the end-of-text token projected.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use crate::block::{Block, BlockConfig};
use crate::clip_vision::{clip_block, validate_tower};
use crate::error::ModelConfigError;

/// CLIP's text transformer (`transformer`, `positional_embedding`, `ln_final`,
/// `text_projection` of OpenAI's `clip/model.py`): pre-norm blocks with causal attention,
/// QuickGELU and LayerNorm epsilon 1e-5. It takes token embeddings (CLIP-ReID's prompts), not
/// token ids.
#[derive(Config, Debug, PartialEq)]
pub struct ClipTextConfig {
    /// Token width (512 for CLIP ViT-B/16).
    pub width: usize,
    /// Number of blocks (12).
    pub layers: usize,
    /// Attention heads (CLIP: `width / 64`).
    pub heads: usize,
    /// Projection size (512).
    pub output_dim: usize,
    /// Rows of the position embedding (CLIP's context length). Default: 77.
    #[config(default = 77)]
    pub context_length: usize,
}

impl ClipTextConfig {
    /// The text tower of OpenAI's CLIP ViT-B/16.
    pub fn vit_base16() -> Self {
        Self::new(512, 12, 8, 512)
    }

    /// Checks what [`Self::init`] needs.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        validate_tower(self.width, self.heads, self.layers)
    }

    /// The settings of every block.
    pub fn block(&self) -> BlockConfig {
        clip_block(self.width, self.heads)
    }

    /// Builds the tower with CLIP's initialisation scales for the position embedding (0.01)
    /// and the projection (`width^-0.5`).
    ///
    /// # Panics
    /// If the configuration does not pass [`Self::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipText<B> {
        if let Err(e) = self.validate() {
            panic!("invalid CLIP text encoder: {e}");
        }
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        ClipText {
            positional_embedding: normal(0.01).init([self.context_length, self.width], device),
            blocks: (0..self.layers)
                .map(|_| self.block().init(device))
                .collect(),
            ln_final: LayerNormConfig::new(self.width)
                .with_epsilon(1e-5)
                .init(device),
            text_projection: normal((self.width as f64).powf(-0.5))
                .init([self.width, self.output_dim], device),
        }
    }
}

/// See [`ClipTextConfig`].
#[derive(Module, Debug)]
pub struct ClipText<B: Backend> {
    /// Position embedding `[context_length, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// The causal transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Norm after the last block.
    pub ln_final: LayerNorm<B>,
    /// Projection `[width, output_dim]`, applied as `x @ text_projection`.
    pub text_projection: Param<Tensor<B, 2>>,
}

impl<B: Backend> ClipText<B> {
    /// The text feature of each prompt: the blocks over `prompts` plus the first `tokens` rows
    /// of the position embedding, then `ln_final` and the projection of the token at `eot` (the
    /// end-of-text token). Because attention is causal, tokens after `eot` cannot change the
    /// result: a prompt cut after its end-of-text token gives the feature of the whole one.
    ///
    /// # Shapes
    /// - `prompts`: `[batch, tokens, width]`, `tokens <= context_length`
    /// - output: `[batch, output_dim]`
    ///
    /// # Panics
    /// If `tokens` exceeds the context length or `eot >= tokens`.
    pub fn forward(&self, prompts: Tensor<B, 3>, eot: usize) -> Tensor<B, 2> {
        let [batch, tokens, width] = prompts.dims();
        assert!(
            eot < tokens && tokens <= self.positional_embedding.dims()[0],
            "end-of-text position {eot} outside {tokens} tokens, or more tokens than the \
             context length {}",
            self.positional_embedding.dims()[0]
        );
        let position = self.positional_embedding.val().narrow(0, 0, tokens);
        let mut x = prompts + position.unsqueeze();
        for block in &self.blocks {
            x = block.forward_causal(x);
        }
        // LayerNorm is per token: normalising the end-of-text row alone equals gathering it
        // from the normalised sequence.
        let eot = self
            .ln_final
            .forward(x.narrow(1, eot, 1))
            .reshape([batch, width]);
        eot.matmul(self.text_projection.val())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn later_tokens_do_not_change_earlier_outputs() {
        let device = Default::default();
        let text = ClipTextConfig::new(16, 2, 2, 8)
            .with_context_length(10)
            .init::<NdArray>(&device);
        let prompts = Tensor::<NdArray, 3>::random([2, 10, 16], Distribution::Default, &device);
        let other_tail = Tensor::cat(
            vec![
                prompts.clone().narrow(1, 0, 6),
                Tensor::random([2, 4, 16], Distribution::Default, &device),
            ],
            1,
        );
        for eot in [0, 3, 5] {
            let whole = text.forward(prompts.clone(), eot);
            let tail_changed = text.forward(other_tail.clone(), eot);
            let cut = text.forward(prompts.clone().narrow(1, 0, eot + 1), eot);
            cut.clone()
                .into_data()
                .assert_approx_eq::<f32>(&whole.clone().into_data(), Tolerance::absolute(1e-6));
            tail_changed
                .into_data()
                .assert_approx_eq::<f32>(&whole.into_data(), Tolerance::absolute(1e-6));
        }
        // The last token sees the changed tail.
        let whole = text.forward(prompts, 9).into_data();
        let changed = text.forward(other_tail, 9).into_data();
        assert_ne!(whole, changed);
    }
}
