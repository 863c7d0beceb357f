use burn::config::Config;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::ModelConfigError;
use crate::head::BnNeck;
use crate::jpm::{JpmBranch, JpmConfig};
use crate::precision::Precision;
use crate::sie::SieConfig;
use crate::vit::{cls_of, VisionTransformer, VitConfig};

/// Which feature [`TransReid::embed`] returns (`TEST.NECK_FEAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NeckFeat {
    /// Features before the BNNeck (what every shipped reference config evaluates).
    #[default]
    Before,
    /// Features after the BNNeck.
    After,
}

/// The whole TransReID model: backbone, optional JPM, BNNecks and classifiers.
#[derive(Config, Debug, PartialEq)]
pub struct TransReidConfig {
    /// The ViT backbone.
    pub vit: VitConfig,
    /// Side information embedding. Default: none.
    #[config(default = "SieConfig::new()")]
    pub sie: SieConfig,
    /// Jigsaw Patch Module; `None` gives the plain baseline. Default: None.
    #[config(default = "None")]
    pub jpm: Option<JpmConfig>,
    /// Number of training identities (classifier outputs).
    pub num_classes: usize,
    /// Inference feature. Default: before the BNNeck.
    #[config(default = "NeckFeat::Before")]
    pub neck_feat: NeckFeat,
}

impl TransReidConfig {
    /// Number of branches: 1 + parts with JPM, else 1.
    pub fn num_branches(&self) -> usize {
        1 + self.jpm.as_ref().map_or(0, |j| j.num_parts)
    }

    /// Dimension of [`TransReid::embed`]'s output.
    pub fn embed_dim(&self) -> usize {
        self.num_branches() * self.vit.embed_dim
    }

    /// Checks the settings without building anything.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        self.vit.validate()?;
        if let Some(jpm) = &self.jpm {
            jpm.part_index(self.vit.patch_embed().num_patches())?;
        }
        Ok(())
    }

    /// Builds the model with random weights (the reference's initialisation).
    ///
    /// # Panics
    /// If the settings are invalid (see [`Self::validate`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> TransReid<B> {
        let base = self.vit.init(&self.sie, device);
        let part_index = match &self.jpm {
            Some(jpm) => jpm
                .part_index(self.vit.patch_embed().num_patches())
                .unwrap_or_else(|e| panic!("invalid JPM settings: {e}")),
            None => Vec::new(),
        };
        // b1 / b2 start as copies of the backbone's last block and final norm.
        let branch = || JpmBranch {
            block: self.vit.block(self.vit.depth - 1).init(device),
            norm: self.vit.norm(device),
        };
        let (b1, b2) = match self.jpm {
            Some(_) => (Some(branch()), Some(branch())),
            None => (None, None),
        };
        let mut model = TransReid {
            base,
            b1,
            b2,
            bottlenecks: (0..self.num_branches())
                .map(|_| BnNeck::new(self.vit.embed_dim, device))
                .collect(),
            classifiers: (0..self.num_branches())
                .map(|_| {
                    LinearConfig::new(self.vit.embed_dim, self.num_classes)
                        .with_bias(false)
                        .with_initializer(Initializer::Normal {
                            mean: 0.0,
                            std: 0.001,
                        })
                        .init(device)
                })
                .collect(),
            part_index,
            num_parts: self.jpm.as_ref().map_or(0, |j| j.num_parts),
            neck_feat: self.neck_feat,
        };
        // Burn initialises parameters lazily, and a clone of an uninitialised parameter draws
        // its own values: materialise them so that the branch copies equal the last block (and
        // every later clone equals its source).
        model.visit(&mut Materialize);
        model.copy_last_block_into_branches();
        model
    }
}

/// What a training forward returns: one entry per branch, index 0 the global branch,
/// `1..=num_parts` the JPM parts.
#[derive(Debug, Clone)]
pub struct TrainOutput<B: Backend> {
    /// Classifier logits of the BNNeck'd features, `[batch, num_classes]` each.
    pub scores: Vec<Tensor<B, 2>>,
    /// Features before the BNNeck (for the triplet loss), `[batch, D]` each.
    pub feats: Vec<Tensor<B, 2>>,
}

/// What [`TransReid::forward_probed`] returns.
#[derive(Debug, Clone)]
pub struct Probed<B: Backend> {
    /// [`TransReid::embed`]'s feature, `[batch, (1 + num_parts) * D]`.
    pub embedding: Tensor<B, 2>,
    /// The global branch's classifier logits (after its BNNeck), `[batch, num_classes]`.
    pub logits: Tensor<B, 2>,
    /// The attention probabilities of every block the global feature passes, in order,
    /// `[batch, heads, 1 + N, 1 + N]` each, without the probes.
    pub attentions: Vec<Tensor<B, 4>>,
}

/// TransReID (`build_transformer_local` with JPM, `build_transformer` without).
///
/// Training mode is an autodiff backend (BNNeck batch statistics, dropout, drop path);
/// call [`burn::module::AutodiffModule::valid`] to get the inference model.
#[derive(Module, Debug)]
pub struct TransReid<B: Backend> {
    /// The ViT backbone (`base`). With JPM, its last block and final norm are unused.
    pub base: VisionTransformer<B>,
    /// Global JPM branch.
    pub b1: Option<JpmBranch<B>>,
    /// Local JPM branch shared by all parts.
    pub b2: Option<JpmBranch<B>>,
    /// BNNeck per branch (`bottleneck`, `bottleneck_1..k`).
    pub bottlenecks: Vec<BnNeck<B>>,
    /// Bias-free classifier per branch (`classifier`, `classifier_1..k`).
    pub classifiers: Vec<Linear<B>>,
    #[module(skip)]
    part_index: Vec<usize>,
    #[module(skip)]
    num_parts: usize,
    #[module(skip)]
    neck_feat: NeckFeat,
}

impl<B: Backend> TransReid<B> {
    /// Sets the dtype of the transformer products, backbone and JPM branches (see
    /// [`Precision`]); parameters stay f32. Models start in f32.
    pub fn set_precision(&mut self, precision: Precision) {
        self.base.set_precision(precision);
        for branch in [&mut self.b1, &mut self.b2].into_iter().flatten() {
            branch.block.set_precision(precision);
        }
    }

    /// The model with [`Self::set_precision`] applied.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.set_precision(precision);
        self
    }

    /// Sets `b1` and `b2` to copies of the backbone's last block and final norm, as the
    /// reference does right after loading ImageNet weights.
    pub fn copy_last_block_into_branches(&mut self) {
        if self.b1.is_none() {
            return;
        }
        let last = self.base.blocks.last().expect("backbone has blocks");
        let fresh = || JpmBranch {
            block: copy_module(last),
            norm: copy_module(&self.base.norm),
        };
        self.b1 = Some(fresh());
        self.b2 = Some(fresh());
    }

    /// Pre-BNNeck features of every branch, `[batch, D]` each.
    fn branch_features(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Vec<Tensor<B, 2>> {
        let (Some(b1), Some(b2)) = (&self.b1, &self.b2) else {
            return vec![self.base.forward_global(images, cameras, views)];
        };
        let depth = self.base.blocks.len();
        let f = self.base.forward_blocks(images, cameras, views, depth - 1);
        let [batch, _, d] = f.dims();
        let global = b1.cls(f.clone());

        // All parts go through the shared b2 as one batch: [parts * batch, 1 + part_len, D].
        let parts = self.num_parts;
        let part_tokens = self.part_index.len() / parts;
        let index: Vec<i64> = self.part_index.iter().map(|&i| i as i64).collect();
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(index, [parts * part_tokens]),
            &f.device(),
        );
        let x = f
            .select(1, index)
            .reshape([batch, parts, part_tokens, d])
            .swap_dims(0, 1)
            .reshape([parts * batch, part_tokens, d]);
        let local = b2.cls(x).reshape([parts, batch, d]);
        std::iter::once(global)
            .chain((0..parts).map(|k| local.clone().narrow(0, k, 1).reshape([batch, d])))
            .collect()
    }

    /// Training forward.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]` (needed only by SIE)
    ///
    /// # Panics
    /// If SIE needs cameras or views that are `None`, or the image size is not the configured one.
    pub fn forward_train(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> TrainOutput<B> {
        let feats = self.branch_features(images, cameras, views);
        let scores = feats
            .iter()
            .zip(&self.bottlenecks)
            .zip(&self.classifiers)
            .map(|((f, neck), classifier)| classifier.forward(neck.forward(f.clone())))
            .collect();
        TrainOutput { scores, feats }
    }

    /// The inference feature `[global, part_1 / k, ..., part_k / k]` with `k` parts, before or
    /// after the BNNeck as configured (the reference's eval forward).
    ///
    /// # Shapes
    /// - output: `[batch, (1 + num_parts) * D]`
    pub fn embed(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 2> {
        let feats = self.branch_features(images, cameras, views);
        let parts = self.num_parts.max(1) as f64;
        let feats = feats
            .into_iter()
            .zip(&self.bottlenecks)
            .enumerate()
            .map(|(i, (f, neck))| {
                let f = match self.neck_feat {
                    NeckFeat::Before => f,
                    NeckFeat::After => neck.forward(f),
                };
                if i == 0 {
                    f
                } else {
                    f.div_scalar(parts)
                }
            })
            .collect();
        Tensor::cat(feats, 1)
    }

    /// The attention probabilities of every block the global feature of [`Self::embed`]
    /// passes through, in order: the backbone's blocks, then with JPM the global branch's
    /// block in place of the backbone's last. The model's outputs are unchanged by reading them.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]`
    /// - output: `depth` tensors `[batch, heads, 1 + N, 1 + N]`
    pub fn attention_probabilities(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Vec<Tensor<B, 4>> {
        let mut x = self.base.embed_tokens(images, cameras, views);
        let depth = self.base.blocks.len();
        let last = match &self.b1 {
            Some(b1) => &b1.block,
            None => &self.base.blocks[depth - 1],
        };
        let mut maps = Vec::with_capacity(depth);
        for block in &self.base.blocks[..depth - 1] {
            maps.push(block.attention_probabilities(x.clone()));
            x = block.forward(x);
        }
        maps.push(last.attention_probabilities(x));
        maps
    }

    /// The inference forward of [`Self::embed`] on any backend, from embedded tokens (see
    /// [`VisionTransformer::embed_tokens`]), with explicit attention probabilities in the
    /// blocks the global feature passes (those of [`Self::attention_probabilities`]) and a
    /// probe added to each: zero tensors that require gradients make the gradient of any
    /// output with respect to those probabilities readable on an autodiff backend. Without
    /// dropout or drop path, BNNecks with their running statistics, f32.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, 1 + N, D]`; `probes`: empty, or `depth` tensors
    ///   `[batch, heads, 1 + N, 1 + N]`
    ///
    /// # Panics
    /// If `probes` is neither empty nor one per block.
    pub fn forward_probed(&self, tokens: Tensor<B, 3>, probes: Vec<Tensor<B, 4>>) -> Probed<B> {
        let depth = self.base.blocks.len();
        assert!(
            probes.is_empty() || probes.len() == depth,
            "{} probes for {depth} blocks",
            probes.len()
        );
        let mut probes = probes.into_iter().map(Some).chain(std::iter::repeat(None));
        let mut attentions = Vec::with_capacity(depth);
        let mut x = tokens;
        for block in &self.base.blocks[..depth - 1] {
            let (out, attention) = block.forward_probed(x, probes.next().flatten());
            attentions.push(attention);
            x = out;
        }
        let last = match &self.b1 {
            Some(b1) => &b1.block,
            None => &self.base.blocks[depth - 1],
        };
        let (out, attention) = last.forward_probed(x.clone(), probes.next().flatten());
        attentions.push(attention);
        let norm = match &self.b1 {
            Some(b1) => &b1.norm,
            None => &self.base.norm,
        };
        let mut feats = vec![cls_of(norm.forward(out))];
        if let Some(b2) = &self.b2 {
            let [batch, _, d] = x.dims();
            let part_tokens = self.part_index.len() / self.num_parts;
            for part in self.part_index.chunks(part_tokens) {
                let index: Vec<i64> = part.iter().map(|&i| i as i64).collect();
                let index = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(index, [part_tokens]),
                    &x.device(),
                );
                let (out, _) = b2.block.forward_probed(x.clone().select(1, index), None);
                feats.push(cls_of(b2.norm.forward(out)).reshape([batch, d]));
            }
        }
        let logits =
            self.classifiers[0].forward(self.bottlenecks[0].forward_eval(feats[0].clone()));
        let parts = self.num_parts.max(1) as f64;
        let feats = feats
            .into_iter()
            .zip(&self.bottlenecks)
            .enumerate()
            .map(|(i, (f, neck))| {
                let f = match self.neck_feat {
                    NeckFeat::Before => f,
                    NeckFeat::After => neck.forward_eval(f),
                };
                if i == 0 {
                    f
                } else {
                    f.div_scalar(parts)
                }
            })
            .collect();
        Probed {
            embedding: Tensor::cat(feats, 1),
            logits,
            attentions,
        }
    }

    /// The side-information settings.
    pub fn sie(&self) -> &SieConfig {
        self.base.sie()
    }

    /// Number of JPM parts (0 without JPM).
    pub fn num_parts(&self) -> usize {
        self.num_parts
    }
}

/// A deep copy with fresh parameter ids (so optimisers treat it as a separate parameter).
fn copy_module<B: Backend, M: Module<B>>(module: &M) -> M {
    module.clone().map(&mut FreshIds)
}

struct FreshIds;

pub(crate) struct Materialize;

impl<B: Backend> burn::module::ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

impl<B: Backend> burn::module::ModuleMapper<B> for FreshIds {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        let require_grad = param.is_require_grad();
        burn::module::Param::from_tensor(param.val().detach()).set_require_grad(require_grad)
    }
}
