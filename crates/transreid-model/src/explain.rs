//! Why a model sees what it sees: patch maps of TransReID's global feature (or CLIP-ReID's
//! feature) by attention rollout ([`attention_rollout`]) or by gradient-weighted attention
//! ([`attention_relevance`]) for a target such as the cosine similarity of a query and a
//! gallery image.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::attention_relevance::attention_relevance;
use crate::attention_rollout::{attention_rollout, AttentionMapError, HeadFusion};
use crate::clip_reid::ClipReid;
use crate::transreid::{Probed, TransReid};

/// What the maps read of a model: the blocks its retrieval feature passes through.
pub trait Explainable<B: Backend> {
    /// Patch grid `[grid_h, grid_w]`.
    fn patch_grid(&self) -> [usize; 2];

    /// Attention heads of each block.
    fn attention_heads(&self) -> usize;

    /// Blocks the feature passes through (the probes [`Self::probed`] takes).
    fn explained_blocks(&self) -> usize;

    /// Training identities of the classifier an [`ExplainTarget::Logit`] reads.
    fn classes(&self) -> usize;

    /// The attention probabilities of each of those blocks, in order.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]`
    /// - output: `[batch, heads, 1 + N, 1 + N]` per block
    fn attentions(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Vec<Tensor<B, 4>>;

    /// The tokens entering the first block.
    fn tokens(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 3>;

    /// The inference forward from [`Self::tokens`] with a probe added to each block's
    /// attention probabilities.
    fn probed(&self, tokens: Tensor<B, 3>, probes: Vec<Tensor<B, 4>>) -> Probed<B>;
}

impl<B: Backend> Explainable<B> for TransReid<B> {
    fn patch_grid(&self) -> [usize; 2] {
        self.base.patch_embed.grid()
    }

    fn attention_heads(&self) -> usize {
        self.base.blocks[0].attn.num_heads()
    }

    fn explained_blocks(&self) -> usize {
        self.base.blocks.len()
    }

    fn classes(&self) -> usize {
        self.classifiers[0].weight.dims()[1]
    }

    fn attentions(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Vec<Tensor<B, 4>> {
        self.attention_probabilities(images, cameras, views)
    }

    fn tokens(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 3> {
        self.base.embed_tokens(images, cameras, views)
    }

    fn probed(&self, tokens: Tensor<B, 3>, probes: Vec<Tensor<B, 4>>) -> Probed<B> {
        self.forward_probed(tokens, probes)
    }
}

impl<B: Backend> Explainable<B> for ClipReid<B> {
    fn patch_grid(&self) -> [usize; 2] {
        self.image_encoder.grid()
    }

    fn attention_heads(&self) -> usize {
        self.image_encoder.blocks[0].attn.num_heads()
    }

    fn explained_blocks(&self) -> usize {
        self.image_encoder.blocks.len()
    }

    fn classes(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    fn attentions(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Vec<Tensor<B, 4>> {
        self.attention_probabilities(images, cameras, views)
    }

    fn tokens(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 3> {
        self.embed_tokens(images, cameras, views)
    }

    fn probed(&self, tokens: Tensor<B, 3>, probes: Vec<Tensor<B, 4>>) -> Probed<B> {
        self.forward_probed(tokens, probes)
    }
}

/// The output a gradient map explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainTarget {
    /// The cosine similarity of the eval features of a pair (two images: query, gallery),
    /// explained on both images.
    PairCosine,
    /// The L2 norm of each image's eval feature.
    FeatureNorm,
    /// The logit of one training identity from the global branch's classifier.
    Logit(usize),
}

/// How a map is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExplainMethod {
    /// Attention rollout: heads fused, the weakest `discard_ratio` of each map dropped.
    Rollout {
        /// Head fusion.
        fusion: HeadFusion,
        /// Share of each fused map set to 0, in `[0, 1)`.
        discard_ratio: f64,
    },
    /// Gradient-weighted attention for a target.
    Gradient(ExplainTarget),
}

/// Maps of a batch of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Patch grid `[grid_h, grid_w]`.
    pub grid: [usize; 2],
    /// Per image, the `grid_h * grid_w` map, row-major: the class token's row over the
    /// patches divided by its maximum, in `[0, 1]`.
    pub maps: Vec<Vec<f32>>,
    /// Per image, the value of the explained target (gradient maps only): for a pair, the
    /// cosine similarity on both.
    pub target_values: Vec<f32>,
}

/// A model or batch that cannot be explained as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExplainError {
    /// A pair target with another number of images.
    #[error("a pair's similarity is explained on two images (query, gallery), got {images}")]
    PairNeedsTwo {
        /// Images given.
        images: usize,
    },
    /// No image.
    #[error("no image to explain")]
    NoImages,
    /// A logit target outside the classifier.
    #[error("identity {class} is not one of the model's {num_classes} training identities")]
    Class {
        /// The identity asked for.
        class: usize,
        /// Training identities of the classifier.
        num_classes: usize,
    },
    /// The attention maps cannot be combined.
    #[error(transparent)]
    Map(#[from] AttentionMapError),
}

/// One image's slice of a `[batch, heads, tokens, tokens]` tensor, per block, on the host.
fn per_image<B: Backend>(blocks: Vec<Tensor<B, 4>>) -> Vec<Vec<Vec<f32>>> {
    let Some([batch, ..]) = blocks.first().map(|b| b.dims()) else {
        return Vec::new();
    };
    let host: Vec<Vec<f32>> = blocks
        .into_iter()
        .map(|b| b.into_data().convert::<f32>().to_vec().expect("f32 data"))
        .collect();
    (0..batch)
        .map(|i| {
            host.iter()
                .map(|block| {
                    let per = block.len() / batch;
                    block[i * per..(i + 1) * per].to_vec()
                })
                .collect()
        })
        .collect()
}

/// Attention-rollout maps of a batch (see [`attention_rollout`]).
///
/// # Shapes
/// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]` (needed only by SIE)
pub fn rollout_maps<B: Backend>(
    model: &impl Explainable<B>,
    images: Tensor<B, 4>,
    cameras: Option<Tensor<B, 1, Int>>,
    views: Option<Tensor<B, 1, Int>>,
    fusion: HeadFusion,
    discard_ratio: f64,
) -> Result<Explanation, ExplainError> {
    if images.dims()[0] == 0 {
        return Err(ExplainError::NoImages);
    }
    let attentions = model.attentions(images, cameras, views);
    let [_, heads, tokens, _] = attentions[0].dims();
    let maps = per_image(attentions)
        .iter()
        .map(|blocks| attention_rollout(blocks, heads, tokens, fusion, discard_ratio))
        .collect::<Result<_, _>>()?;
    Ok(Explanation {
        grid: model.patch_grid(),
        maps,
        target_values: Vec::new(),
    })
}

/// Gradient-weighted attention maps of a batch for `target` (see [`attention_relevance`]).
///
/// The tokens are embedded by the inference model and the blocks run on the autodiff backend
/// in inference mode ([`TransReid::forward_probed`], [`ClipReid::forward_probed`]) on a copy
/// of the model that tracks no weight gradients; the model's weights are not changed.
///
/// # Shapes
/// - `images`: `[batch, 3, H, W]` (`batch` 2 for [`ExplainTarget::PairCosine`]);
///   `cameras`, `views`: `[batch]` (needed only by SIE)
pub fn gradient_maps<B: AutodiffBackend, M>(
    model: &M,
    images: Tensor<B::InnerBackend, 4>,
    cameras: Option<Tensor<B::InnerBackend, 1, Int>>,
    views: Option<Tensor<B::InnerBackend, 1, Int>>,
    target: ExplainTarget,
) -> Result<Explanation, ExplainError>
where
    M: Explainable<B> + AutodiffModule<B>,
    M::InnerModule: Explainable<B::InnerBackend>,
{
    let batch = images.dims()[0];
    match target {
        _ if batch == 0 => return Err(ExplainError::NoImages),
        ExplainTarget::PairCosine if batch != 2 => {
            return Err(ExplainError::PairNeedsTwo { images: batch })
        }
        ExplainTarget::Logit(class) => {
            let num_classes = model.classes();
            if class >= num_classes {
                return Err(ExplainError::Class { class, num_classes });
            }
        }
        _ => {}
    }
    // Only the probes need gradients: without the weights' the backward pass is about half.
    let model = model.clone().no_grad();
    let tokens = model.valid().tokens(images, cameras, views);
    let tokens = Tensor::<B, 3>::from_inner(tokens);
    let [_, n, _] = tokens.dims();
    let heads = model.attention_heads();
    let device = tokens.device();
    let probes: Vec<Tensor<B, 4>> = (0..model.explained_blocks())
        .map(|_| Tensor::zeros([batch, heads, n, n], &device).require_grad())
        .collect();
    let out = model.probed(tokens, probes.clone());
    let values: Tensor<B, 1> = match target {
        ExplainTarget::PairCosine => {
            let f = out.embedding;
            let (q, g) = (f.clone().narrow(0, 0, 1), f.narrow(0, 1, 1));
            let norm = |x: Tensor<B, 2>| x.square().sum().sqrt();
            let cosine = (q.clone() * g.clone()).sum() / (norm(q) * norm(g));
            cosine.clone().expand([2])
        }
        ExplainTarget::FeatureNorm => out.embedding.square().sum_dim(1).sqrt().reshape([batch]),
        ExplainTarget::Logit(class) => out.logits.narrow(1, class, 1).reshape([batch]),
    };
    // Images do not interact in inference mode: one backward of the sum gives each image's
    // gradient (the pair's cosine is counted once).
    let objective = match target {
        ExplainTarget::PairCosine => values.clone().narrow(0, 0, 1),
        _ => values.clone().sum(),
    };
    let grads = objective.backward();
    let gradients: Vec<Tensor<B::InnerBackend, 4>> = probes
        .iter()
        .map(|p| {
            p.grad(&grads)
                .unwrap_or_else(|| p.clone().inner().zeros_like())
        })
        .collect();
    let attentions = out.attentions.into_iter().map(|a| a.inner()).collect();
    let maps = per_image(attentions)
        .iter()
        .zip(per_image(gradients))
        .map(|(a, g)| attention_relevance(a, &g, heads, n))
        .collect::<Result<_, _>>()?;
    Ok(Explanation {
        grid: model.patch_grid(),
        maps,
        target_values: values
            .inner()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 data"),
    })
}
