//! `transreid explain`: which regions of a query and a gallery image made the model call them
//! the same, as a picture and raw maps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use image::RgbImage;
use indicatif::ProgressBar;
use transreid::data::{decode_rgb, Normalization};
use transreid::explain_picture::{draw_explanation, ExplainPanel};
use transreid::explainer::{ExplainedImages, Explainer};
use transreid::model::{write_safetensors, ExplainMethod, ExplainTarget, HeadFusion, HostTensor};
use transreid::output_path::check_output;

use crate::backend::BackendJob;
use crate::inputs::EmbedModelArgs;

/// How the maps are computed.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum MethodChoice {
    /// Gradient-weighted attention (Chefer et al. 2021): which patches raise the target.
    Gradient,
    /// Attention rollout (Abnar & Zuidema 2020): where the class token reads from.
    Rollout,
}

/// How rollout fuses the heads of a block.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum FusionChoice {
    /// Mean over heads.
    Mean,
    /// Maximum over heads.
    Max,
    /// Minimum over heads.
    Min,
}

/// The method options of `explain` and `search --explain`.
#[derive(clap::Args, Clone, Debug)]
pub struct MethodArgs {
    /// Method. Default: gradient.
    #[arg(long, value_enum)]
    method: Option<MethodChoice>,
    /// Rollout's head fusion. Default: mean.
    #[arg(long, value_enum)]
    head_fusion: Option<FusionChoice>,
    /// Rollout's share of each fused attention map set to 0, in [0, 1). Default: 0.9.
    #[arg(long)]
    discard_ratio: Option<f64>,
}

impl MethodArgs {
    /// Whether no method option was given.
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.head_fusion.is_none() && self.discard_ratio.is_none()
    }

    /// The method for a pair or one image (`identity`: the logit target of one image), and
    /// lines saying which defaults were used.
    pub fn resolve(&self, pair: bool, identity: Option<usize>) -> anyhow::Result<ExplainMethod> {
        let method = self.method.unwrap_or_else(|| {
            eprintln!(
                "note: method gradient (the default; --method rollout for attention rollout)"
            );
            MethodChoice::Gradient
        });
        match method {
            MethodChoice::Gradient => {
                anyhow::ensure!(
                    self.head_fusion.is_none() && self.discard_ratio.is_none(),
                    "--head-fusion and --discard-ratio are settings of --method rollout"
                );
                Ok(ExplainMethod::Gradient(match (pair, identity) {
                    (true, None) => ExplainTarget::PairCosine,
                    (true, Some(_)) => anyhow::bail!(
                        "--identity explains one image's logit; a pair explains its similarity \
                         (leave out --gallery or --identity)"
                    ),
                    (false, Some(class)) => ExplainTarget::Logit(class),
                    (false, None) => {
                        eprintln!(
                            "note: one image is explained by the norm of its feature (give \
                             --gallery for a pair, --identity N for a training identity's logit)"
                        );
                        ExplainTarget::FeatureNorm
                    }
                }))
            }
            MethodChoice::Rollout => {
                anyhow::ensure!(
                    identity.is_none(),
                    "--identity is a target of --method gradient; rollout has no target"
                );
                let fusion = match self.head_fusion {
                    Some(FusionChoice::Mean) => HeadFusion::Mean,
                    Some(FusionChoice::Max) => HeadFusion::Max,
                    Some(FusionChoice::Min) => HeadFusion::Min,
                    None => {
                        eprintln!("note: head fusion mean (the default)");
                        HeadFusion::Mean
                    }
                };
                let discard_ratio = self.discard_ratio.unwrap_or_else(|| {
                    eprintln!("note: discard ratio 0.9 (the default)");
                    0.9
                });
                anyhow::ensure!(
                    (0.0..1.0).contains(&discard_ratio),
                    "--discard-ratio {discard_ratio} must be in [0, 1)"
                );
                Ok(ExplainMethod::Rollout {
                    fusion,
                    discard_ratio,
                })
            }
        }
    }
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The query image.
    #[arg(long)]
    query: PathBuf,
    /// A gallery image: the pair's similarity is explained on both images.
    #[arg(long)]
    gallery: Option<PathBuf>,
    /// Explain one image by this training identity's logit (0-based) instead of its feature's
    /// norm (gradient method, no --gallery).
    #[arg(long)]
    identity: Option<usize>,
    #[command(flatten)]
    method: MethodArgs,
    /// The picture (`.png`); the raw maps go beside it (`.safetensors`).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    pub model: EmbedModelArgs,
}

/// The raw maps' file beside a picture.
pub fn maps_path(picture: &Path) -> PathBuf {
    picture.with_extension("safetensors")
}

/// Loads the checkpoint for explanations and says what it uses that was not given.
pub fn load_explainer<B: Backend>(
    model: &EmbedModelArgs,
    device: &B::Device,
) -> anyhow::Result<Explainer<B>> {
    let explainer = Explainer::from_checkpoint(
        &model.checkpoint,
        model.normalization.map(Normalization::from),
        device,
    )
    .with_context(|| format!("loading {}", model.checkpoint.display()))?;
    model.notes(explainer.embedder());
    Ok(explainer)
}

/// Computes the maps of `paths` (query first) and writes the picture and the maps.
/// `header` is the picture's first line; the method's description follows it.
#[allow(clippy::too_many_arguments)]
pub fn explain_files<B: Backend>(
    explainer: &Explainer<B>,
    model: &EmbedModelArgs,
    paths: &[PathBuf],
    images: &[RgbImage],
    method: ExplainMethod,
    out: &Path,
    header: impl FnOnce(&ExplainedImages) -> String,
) -> anyhow::Result<ExplainedImages> {
    let (cameras, views) = model.side_ids(explainer.embedder(), paths)?;
    let spinner = ProgressBar::new_spinner().with_message(format!(
        "explaining {} image(s) with {}",
        paths.len(),
        method_name(method)
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let explained = explainer.explain(images, cameras.as_deref(), views.as_deref(), method);
    spinner.finish_and_clear();
    let explained = explained?;
    if let Some(v) = explained.target_values.iter().find(|v| !v.is_finite()) {
        anyhow::bail!(
            "the explained target is {v}: the checkpoint's weights are probably corrupt; \
             nothing was written"
        );
    }
    let roles = ["query", "gallery"];
    let panels: Vec<ExplainPanel> = images
        .iter()
        .zip(&explained.pixel_maps)
        .zip(paths)
        .enumerate()
        .map(|(i, ((image, map), path))| ExplainPanel {
            image,
            map,
            caption: format!("{}: {}", roles[i.min(1)], file_name(path)),
        })
        .collect();
    let [second, third] = method_description(method);
    let lines = [header(&explained), second, third];
    let legend = match method {
        ExplainMethod::Rollout { .. } => "rollout",
        ExplainMethod::Gradient(_) => "relevance",
    };
    draw_explanation(out, &panels, explained.input_size, &lines, legend)?;
    let [gh, gw] = explained.grid;
    let dict = explained
        .grid_maps
        .iter()
        .zip(roles)
        .map(|(map, role)| {
            (
                role.to_string(),
                HostTensor {
                    shape: vec![gh, gw],
                    data: map.clone(),
                },
            )
        })
        .collect();
    let mut metadata = BTreeMap::from([
        ("method".to_string(), method_name(method)),
        ("checkpoint".into(), model.checkpoint.display().to_string()),
        ("query".into(), paths[0].display().to_string()),
        (
            "normalisation".into(),
            "the class token's row over the patches divided by its maximum".into(),
        ),
    ]);
    if let Some(gallery) = paths.get(1) {
        metadata.insert("gallery".into(), gallery.display().to_string());
    }
    if let Some(value) = explained.target_values.first() {
        metadata.insert("target_value".into(), value.to_string());
    }
    write_safetensors(&maps_path(out), &dict, metadata)?;
    Ok(explained)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// The method and its settings in a few words (also the maps file's `method`).
fn method_name(method: ExplainMethod) -> String {
    match method {
        ExplainMethod::Rollout {
            fusion,
            discard_ratio,
        } => format!(
            "rollout (head fusion {}, discard ratio {discard_ratio})",
            format!("{fusion:?}").to_lowercase()
        ),
        ExplainMethod::Gradient(ExplainTarget::PairCosine) => {
            "gradient (target: the pair's cosine similarity)".into()
        }
        ExplainMethod::Gradient(ExplainTarget::FeatureNorm) => {
            "gradient (target: the feature's norm)".into()
        }
        ExplainMethod::Gradient(ExplainTarget::Logit(class)) => {
            format!("gradient (target: identity {class}'s logit)")
        }
    }
}

/// The picture's second and third lines: the method, then what the colours mean.
fn method_description(method: ExplainMethod) -> [String; 2] {
    match method {
        ExplainMethod::Rollout {
            fusion,
            discard_ratio,
        } => [
            format!(
                "attention rollout (Abnar & Zuidema 2020), head fusion {}, discard ratio \
                 {discard_ratio}",
                format!("{fusion:?}").to_lowercase()
            ),
            "bright patches: where the class token reads from (not why the images match)".into(),
        ],
        ExplainMethod::Gradient(target) => [
            "gradient x attention (Chefer, Gur & Wolf 2021)".into(),
            match target {
                ExplainTarget::PairCosine => "bright patches raise the pair's cosine similarity",
                ExplainTarget::FeatureNorm => "bright patches raise the feature's norm",
                ExplainTarget::Logit(_) => "bright patches raise the identity's logit",
            }
            .into(),
        ],
    }
}

impl BackendJob for ExplainArgs {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let method = self.method.resolve(self.gallery.is_some(), self.identity)?;
        let maps = maps_path(&self.out);
        let mut paths = vec![self.query.clone()];
        paths.extend(self.gallery.clone());
        let mut inputs: Vec<&Path> = vec![self.model.checkpoint.as_path()];
        inputs.extend(paths.iter().map(PathBuf::as_path));
        check_output(&self.out, "png", &inputs)?;
        check_output(&maps, "safetensors", &inputs)?;
        let images = paths
            .iter()
            .map(|p| decode_rgb(p).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let explainer = load_explainer::<B>(&self.model, &device)?;
        let explained = explain_files(
            &explainer,
            &self.model,
            &paths,
            &images,
            method,
            &self.out,
            |e| match (method, e.target_values.first()) {
                (ExplainMethod::Gradient(ExplainTarget::PairCosine), Some(v)) => {
                    format!("query vs gallery: cosine similarity {v:.4}")
                }
                (ExplainMethod::Gradient(ExplainTarget::FeatureNorm), Some(v)) => {
                    format!("feature norm {v:.3}")
                }
                (ExplainMethod::Gradient(ExplainTarget::Logit(class)), Some(v)) => {
                    format!("identity {class}: logit {v:.3}")
                }
                _ if paths.len() == 2 => "query and gallery: each image's attention rollout".into(),
                _ => "the query's attention rollout".into(),
            },
        )?;
        if let (ExplainMethod::Gradient(ExplainTarget::PairCosine), Some(v)) =
            (method, explained.target_values.first())
        {
            println!("cosine similarity {v:.4}");
        }
        println!("explanation -> {}, {}", self.out.display(), maps.display());
        Ok(())
    }
}
