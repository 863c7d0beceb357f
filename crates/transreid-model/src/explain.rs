//! Why a model sees what it sees: patch maps of TransReID's global feature by attention
//! rollout ([`attention_rollout`]) or by gradient-weighted attention ([`attention_relevance`])
//! for a target such as the cosine similarity of a query and a gallery image.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::attention_relevance::attention_relevance;
use crate::attention_rollout::{attention_rollout, AttentionMapError, HeadFusion};
use crate::transreid::TransReid;

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
    model: &TransReid<B>,
    images: Tensor<B, 4>,
    cameras: Option<Tensor<B, 1, Int>>,
    views: Option<Tensor<B, 1, Int>>,
    fusion: HeadFusion,
    discard_ratio: f64,
) -> Result<Explanation, ExplainError> {
    if images.dims()[0] == 0 {
        return Err(ExplainError::NoImages);
    }
    let attentions = model.attention_probabilities(images, cameras, views);
    let [_, heads, tokens, _] = attentions[0].dims();
    let maps = per_image(attentions)
        .iter()
        .map(|blocks| attention_rollout(blocks, heads, tokens, fusion, discard_ratio))
        .collect::<Result<_, _>>()?;
    Ok(Explanation {
        grid: model.base.patch_embed.grid(),
        maps,
        target_values: Vec::new(),
    })
}

/// Gradient-weighted attention maps of a batch for `target` (see [`attention_relevance`]).
///
/// The tokens are embedded by the inference model and the blocks run on the autodiff backend
/// in inference mode ([`TransReid::forward_probed`]) on a copy of the model that tracks no
/// weight gradients; the model's weights are not changed.
///
/// # Shapes
/// - `images`: `[batch, 3, H, W]` (`batch` 2 for [`ExplainTarget::PairCosine`]);
///   `cameras`, `views`: `[batch]` (needed only by SIE)
pub fn gradient_maps<B: AutodiffBackend>(
    model: &TransReid<B>,
    images: Tensor<B::InnerBackend, 4>,
    cameras: Option<Tensor<B::InnerBackend, 1, Int>>,
    views: Option<Tensor<B::InnerBackend, 1, Int>>,
    target: ExplainTarget,
) -> Result<Explanation, ExplainError> {
    let batch = images.dims()[0];
    match target {
        _ if batch == 0 => return Err(ExplainError::NoImages),
        ExplainTarget::PairCosine if batch != 2 => {
            return Err(ExplainError::PairNeedsTwo { images: batch })
        }
        ExplainTarget::Logit(class) => {
            let num_classes = model.classifiers[0].weight.dims()[1];
            if class >= num_classes {
                return Err(ExplainError::Class { class, num_classes });
            }
        }
        _ => {}
    }
    // Only the probes need gradients: without the weights' the backward pass is about half.
    let model = model.clone().no_grad();
    let tokens = model.valid().base.embed_tokens(images, cameras, views);
    let tokens = Tensor::<B, 3>::from_inner(tokens);
    let [_, n, _] = tokens.dims();
    let heads = model.base.blocks[0].attn.num_heads();
    let device = tokens.device();
    let probes: Vec<Tensor<B, 4>> = (0..model.base.blocks.len())
        .map(|_| Tensor::zeros([batch, heads, n, n], &device).require_grad())
        .collect();
    let out = model.forward_probed(tokens, probes.clone());
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
        grid: model.base.patch_embed.grid(),
        maps,
        target_values: values
            .inner()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 data"),
    })
}
