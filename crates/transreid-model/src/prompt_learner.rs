//! CLIP-ReID's learned prompts: "A photo of a X X X X person." with four learned vectors per
//! identity in place of the X's.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Tokens of a prompt up to and including its end-of-text token. The text encoder's attention
/// is causal, so the padding CLIP adds after them up to 77 tokens cannot change the feature and
/// is never computed.
pub const PROMPT_TOKENS: usize = 12;
/// Position of the end-of-text token, whose output is the text feature.
pub const PROMPT_EOT: usize = 11;
/// Learned context vectors per identity (the X's).
pub const PROMPT_CONTEXT: usize = 4;
/// Tokens before the context vectors: start-of-text, "a", "photo", "of", "a".
pub const PROMPT_PREFIX: usize = 5;

/// The noun that ends the prompt: "person" for person datasets, "vehicle" for VeRi-776 and
/// VehicleID, as the reference chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptObject {
    /// "A photo of a X X X X person."
    #[default]
    Person,
    /// "A photo of a X X X X vehicle."
    Vehicle,
}

impl PromptObject {
    /// The prompt's text.
    pub fn text(self) -> &'static str {
        match self {
            PromptObject::Person => "A photo of a X X X X person.",
            PromptObject::Vehicle => "A photo of a X X X X vehicle.",
        }
    }

    /// CLIP's byte-pair token ids of [`Self::text`] up to its end-of-text token:
    /// `<|startoftext|> a photo of a x x x x person . <|endoftext|>`.
    pub fn token_ids(self) -> [usize; PROMPT_TOKENS] {
        let noun = match self {
            PromptObject::Person => 2533,
            PromptObject::Vehicle => 5299,
        };
        [
            49406, 320, 1125, 539, 320, 343, 343, 343, 343, noun, 269, 49407,
        ]
    }
}

/// See [`PromptLearner`].
#[derive(Config, Debug, PartialEq)]
pub struct PromptLearnerConfig {
    /// Number of training identities.
    pub num_classes: usize,
    /// Token width of the text encoder (512 for CLIP ViT-B/16).
    pub width: usize,
    /// The prompt's noun. Default: person.
    #[config(default = "PromptObject::Person")]
    pub object: PromptObject,
}

impl PromptLearnerConfig {
    /// Builds the learner from the token embeddings of [`PromptObject::token_ids`] (rows of
    /// CLIP's `token_embedding` table); the context vectors start as normal(0, 0.02).
    ///
    /// # Shapes
    /// - `token_embeddings`: `[PROMPT_TOKENS, width]`
    ///
    /// # Panics
    /// If `token_embeddings` has another shape.
    pub fn init<B: Backend>(&self, token_embeddings: Tensor<B, 2>) -> PromptLearner<B> {
        assert_eq!(
            token_embeddings.dims(),
            [PROMPT_TOKENS, self.width],
            "one token embedding per prompt token"
        );
        let device = token_embeddings.device();
        // Fixed tokens as fresh leaf tensors: a parameter cannot be made of an operation's
        // output on an autodiff backend.
        let frozen = |t: Tensor<B, 2>| {
            Param::from_tensor(Tensor::from_data(t.into_data(), &device)).set_require_grad(false)
        };
        let context = PROMPT_PREFIX + PROMPT_CONTEXT;
        PromptLearner {
            cls_ctx: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([self.num_classes, PROMPT_CONTEXT, self.width], &device),
            token_prefix: frozen(token_embeddings.clone().narrow(0, 0, PROMPT_PREFIX)),
            token_suffix: frozen(token_embeddings.narrow(0, context, PROMPT_TOKENS - context)),
            object: self.object,
        }
    }
}

/// The prompts of CLIP-ReID's first stage: the fixed token embeddings around four learned
/// vectors per identity (`cls_ctx`, the only trained tensor).
#[derive(Module, Debug)]
pub struct PromptLearner<B: Backend> {
    /// The learned context `[num_classes, 4, width]`.
    pub cls_ctx: Param<Tensor<B, 3>>,
    /// Embeddings of the tokens before the context `[5, width]`, never trained.
    pub token_prefix: Param<Tensor<B, 2>>,
    /// Embeddings of the noun, "." and end-of-text `[3, width]`, never trained (the
    /// reference stores 68 rows: the padding after them, which is never used).
    pub token_suffix: Param<Tensor<B, 2>>,
    #[module(skip)]
    object: PromptObject,
}

impl<B: Backend> PromptLearner<B> {
    /// The prompt's noun.
    pub fn object(&self) -> PromptObject {
        self.object
    }

    /// Number of identities.
    pub fn num_classes(&self) -> usize {
        self.cls_ctx.dims()[0]
    }

    /// Replaces the fixed tokens with the embeddings of [`PromptObject::token_ids`] (rows of a
    /// pre-trained CLIP's `token_embedding`), keeping the learned context.
    ///
    /// # Shapes
    /// - `token_embeddings`: `[PROMPT_TOKENS, width]`
    ///
    /// # Panics
    /// If `token_embeddings` has another shape.
    pub fn set_token_embeddings(&mut self, token_embeddings: Tensor<B, 2>) {
        let width = self.cls_ctx.dims()[2];
        let fresh = PromptLearnerConfig::new(self.num_classes(), width)
            .with_object(self.object)
            .init(token_embeddings);
        self.token_prefix = fresh.token_prefix;
        self.token_suffix = fresh.token_suffix;
    }

    /// The prompt of each identity in `labels`, to be encoded up to [`PROMPT_EOT`].
    ///
    /// # Shapes
    /// - `labels`: `[batch]` -> `[batch, PROMPT_TOKENS, width]`
    pub fn forward(&self, labels: Tensor<B, 1, Int>) -> Tensor<B, 3> {
        let [batch] = labels.dims();
        let context = self.cls_ctx.val().select(0, labels);
        let fixed = |t: &Param<Tensor<B, 2>>| {
            let [rows, width] = t.dims();
            // detach keeps the fixed tokens out of the gradient even after a load resets
            // require_grad.
            t.val()
                .detach()
                .unsqueeze::<3>()
                .expand([batch, rows, width])
        };
        Tensor::cat(
            vec![
                fixed(&self.token_prefix),
                context,
                fixed(&self.token_suffix),
            ],
            1,
        )
    }
}
