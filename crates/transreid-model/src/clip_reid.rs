//! CLIP-ReID (Li, Sun, Li, AAAI 2023): a CLIP image encoder with side information on the
//! class token, two BNNecks and two classifiers, and for its two-stage training the CLIP text
//! encoder with learned prompts.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

use crate::clip_text::{ClipText, ClipTextConfig};
use crate::clip_vision::{ClipVision, ClipVisionConfig};
use crate::error::ModelConfigError;
use crate::head::BnNeck;
use crate::prompt_learner::{
    PromptLearner, PromptLearnerConfig, PromptObject, PROMPT_EOT, PROMPT_TOKENS,
};
use crate::sie::SieConfig;
use crate::transreid::{Materialize, NeckFeat, Probed, TrainOutput};

/// The whole CLIP-ReID model (`build_transformer` of the reference's
/// `make_model_clipreid.py`, ViT image encoder).
#[derive(Config, Debug, PartialEq)]
pub struct ClipReidConfig {
    /// The image encoder.
    pub vision: ClipVisionConfig,
    /// Number of training identities (classifier outputs and learned prompts).
    pub num_classes: usize,
    /// Side information, added to the class token only. Default: none (the coefficient
    /// defaults to the reference's 3.0; its published SIE runs use 1.0).
    #[config(default = "SieConfig::new()")]
    pub sie: SieConfig,
    /// Inference feature. Default: before the BNNecks.
    #[config(default = "NeckFeat::Before")]
    pub neck_feat: NeckFeat,
    /// The text encoder of the two-stage training; `None` for the image-only baseline and for
    /// inference. Default: None.
    #[config(default = "None")]
    pub text: Option<ClipTextConfig>,
    /// The prompt's noun. Default: person.
    #[config(default = "PromptObject::Person")]
    pub object: PromptObject,
}

impl ClipReidConfig {
    /// Size of [`ClipReid::embed`]'s feature: the class token and its projection side by side
    /// (1280 for ViT-B/16).
    pub fn embed_dim(&self) -> usize {
        self.vision.width + self.vision.output_dim
    }

    /// Checks the settings without building anything.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        self.vision.validate()?;
        if let Some(text) = &self.text {
            text.validate()?;
        }
        Ok(())
    }

    /// Builds the model with random weights: BNNecks at 1 / 0, classifiers normal(0, 0.001),
    /// the SIE table normal(0, 0.02), and prompt tokens drawn like CLIP's token embedding
    /// (normal(0, 0.02); a pre-trained import replaces them).
    ///
    /// # Panics
    /// If the settings are invalid (see [`Self::validate`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipReid<B> {
        if let Err(e) = self.validate() {
            panic!("invalid CLIP-ReID model: {e}");
        }
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        let classifier = |dim: usize| {
            LinearConfig::new(dim, self.num_classes)
                .with_bias(false)
                .with_initializer(normal(0.001))
                .init(device)
        };
        let (width, out) = (self.vision.width, self.vision.output_dim);
        let (prompt_learner, text_encoder) = match &self.text {
            Some(text) => {
                let tokens = normal(0.02).init([PROMPT_TOKENS, text.width], device);
                let learner = PromptLearnerConfig::new(self.num_classes, text.width)
                    .with_object(self.object)
                    .init(tokens.val());
                (Some(learner), Some(text.init(device)))
            }
            None => (None, None),
        };
        let model = ClipReid {
            image_encoder: self.vision.init(device),
            cv_embed: self
                .sie
                .table_len()
                .map(|rows| normal(0.02).init([rows, width], device)),
            bottleneck: BnNeck::new(width, device),
            bottleneck_proj: BnNeck::new(out, device),
            classifier: classifier(width),
            classifier_proj: classifier(out),
            prompt_learner,
            text_encoder,
            sie: self.sie.clone(),
            neck_feat: self.neck_feat,
        };
        // Parameters are drawn lazily; a clone of an undrawn one would draw its own values.
        model.visit(&mut Materialize);
        model
    }
}

/// See [`ClipReidConfig`]. Parameter names follow the reference's state dict
/// (`image_encoder.*`, `cv_embed`, `bottleneck`, `bottleneck_proj`, `classifier`,
/// `classifier_proj`, `prompt_learner.*`, `text_encoder.*`).
///
/// Training mode is an autodiff backend (BNNeck batch statistics); call
/// [`burn::module::AutodiffModule::valid`] for the inference model.
#[derive(Module, Debug)]
pub struct ClipReid<B: Backend> {
    /// The CLIP image encoder.
    pub image_encoder: ClipVision<B>,
    /// The SIE table `[rows, width]` (see [`SieConfig::table_len`]).
    pub cv_embed: Option<Param<Tensor<B, 2>>>,
    /// BNNeck of the class token (bias frozen at 0).
    pub bottleneck: BnNeck<B>,
    /// BNNeck of the projected class token (bias frozen at 0).
    pub bottleneck_proj: BnNeck<B>,
    /// Bias-free classifier of the class token.
    pub classifier: Linear<B>,
    /// Bias-free classifier of the projected class token.
    pub classifier_proj: Linear<B>,
    /// The learned prompts (two-stage training only).
    pub prompt_learner: Option<PromptLearner<B>>,
    /// The CLIP text encoder (two-stage training only).
    pub text_encoder: Option<ClipText<B>>,
    #[module(skip)]
    sie: SieConfig,
    #[module(skip)]
    neck_feat: NeckFeat,
}

impl<B: Backend> ClipReid<B> {
    /// The side-information settings.
    pub fn sie(&self) -> &SieConfig {
        &self.sie
    }

    /// Which feature [`Self::embed`] returns.
    pub fn neck_feat(&self) -> NeckFeat {
        self.neck_feat
    }

    /// The class-token vector of each sample: its SIE row times the coefficient.
    fn side(
        &self,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Option<Tensor<B, 2>> {
        let table = self.cv_embed.as_ref()?;
        let rows = self.sie.table_indices(cameras, views)?;
        Some(table.val().select(0, rows).mul_scalar(self.sie.coefficient))
    }

    /// Training forward: `scores` are the two classifiers' logits (class token, projected
    /// class token, each after its BNNeck) and `feats` the three features the triplet loss
    /// reads: the class token before the last block, after `ln_post`, and projected (the
    /// last is also the image feature of the image-to-text logits).
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]` (needed only by SIE)
    /// - `scores`: 2 x `[batch, num_classes]`; `feats`: `[batch, width]`, `[batch, width]`,
    ///   `[batch, output_dim]`
    ///
    /// # Panics
    /// If SIE needs cameras or views that are `None`.
    pub fn forward_train(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> TrainOutput<B> {
        let side = self.side(cameras, views);
        let [before_last, cls, projected] = self.image_encoder.forward_cls(images, side);
        let scores = vec![
            self.classifier
                .forward(self.bottleneck.forward(cls.clone())),
            self.classifier_proj
                .forward(self.bottleneck_proj.forward(projected.clone())),
        ];
        TrainOutput {
            scores,
            feats: vec![before_last, cls, projected],
        }
    }

    /// The inference feature `[class token, projected class token]`, before or after the
    /// BNNecks as configured (`width + output_dim`, 1280 for ViT-B/16).
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]` (needed only by SIE)
    /// - output: `[batch, width + output_dim]`
    ///
    /// # Panics
    /// If SIE needs cameras or views that are `None`.
    pub fn embed(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 2> {
        let side = self.side(cameras, views);
        let [_, cls, projected] = self.image_encoder.forward_cls(images, side);
        let (cls, projected) = match self.neck_feat {
            NeckFeat::Before => (cls, projected),
            NeckFeat::After => (
                self.bottleneck.forward(cls),
                self.bottleneck_proj.forward(projected),
            ),
        };
        Tensor::cat(vec![cls, projected], 1)
    }

    /// The tokens entering the image encoder's first block, side information included.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]` (needed only by SIE)
    /// - output: `[batch, 1 + N, width]`
    pub fn embed_tokens(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 3> {
        let side = self.side(cameras, views);
        self.image_encoder.embed_tokens(images, side)
    }

    /// The attention probabilities of every block of the image encoder, in order; the
    /// outputs are unchanged by reading them.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]`
    /// - output: `layers` tensors `[batch, heads, 1 + N, 1 + N]`
    pub fn attention_probabilities(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Vec<Tensor<B, 4>> {
        let mut x = self.embed_tokens(images, cameras, views);
        let blocks = &self.image_encoder.blocks;
        let mut maps = Vec::with_capacity(blocks.len());
        for (i, block) in blocks.iter().enumerate() {
            maps.push(block.attention_probabilities(x.clone()));
            if i + 1 < blocks.len() {
                x = block.forward(x);
            }
        }
        maps
    }

    /// The inference forward of [`Self::embed`] on any backend from embedded tokens (see
    /// [`Self::embed_tokens`]), with explicit attention probabilities in every block and a
    /// probe added to each, as [`crate::TransReid::forward_probed`]; the logits are the class
    /// token classifier's (after its BNNeck).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, 1 + N, width]`; `probes`: empty, or `layers` tensors
    ///   `[batch, heads, 1 + N, 1 + N]`
    ///
    /// # Panics
    /// If `probes` is neither empty nor one per block.
    pub fn forward_probed(&self, tokens: Tensor<B, 3>, probes: Vec<Tensor<B, 4>>) -> Probed<B> {
        let blocks = &self.image_encoder.blocks;
        assert!(
            probes.is_empty() || probes.len() == blocks.len(),
            "{} probes for {} blocks",
            probes.len(),
            blocks.len()
        );
        let mut probes = probes.into_iter().map(Some).chain(std::iter::repeat(None));
        let mut attentions = Vec::with_capacity(blocks.len());
        let mut x = tokens;
        for block in blocks {
            let (out, attention) = block.forward_probed(x, probes.next().flatten());
            attentions.push(attention);
            x = out;
        }
        let [batch, _, d] = x.dims();
        let cls = self
            .image_encoder
            .ln_post
            .forward(x.narrow(1, 0, 1))
            .reshape([batch, d]);
        let projected = cls.clone().matmul(self.image_encoder.proj.val());
        let logits = self
            .classifier
            .forward(self.bottleneck.forward_eval(cls.clone()));
        let (cls, projected) = match self.neck_feat {
            NeckFeat::Before => (cls, projected),
            NeckFeat::After => (
                self.bottleneck.forward_eval(cls),
                self.bottleneck_proj.forward_eval(projected),
            ),
        };
        Probed {
            embedding: Tensor::cat(vec![cls, projected], 1),
            logits,
            attentions,
        }
    }

    /// The image feature of the first stage: the projected class token, without side
    /// information.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]` -> `[batch, output_dim]`
    pub fn image_features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let [_, _, projected] = self.image_encoder.forward_cls(images, None);
        projected
    }

    /// The text feature of each identity's learned prompt, or `None` for a model without the
    /// text side.
    ///
    /// # Shapes
    /// - `labels`: `[batch]` -> `[batch, output_dim]`
    pub fn text_features(&self, labels: Tensor<B, 1, Int>) -> Option<Tensor<B, 2>> {
        let prompts = self.prompt_learner.as_ref()?.forward(labels);
        Some(self.text_encoder.as_ref()?.forward(prompts, PROMPT_EOT))
    }
}
