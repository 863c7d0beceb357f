//! OpenAI / open_clip CLIP weights (`visual.*` and the text tower) into [`ClipVision`] and
//! [`ClipText`], and trained CLIP-ReID checkpoints of the reference into [`ClipReid`].

use std::collections::{BTreeMap, BTreeSet};

use burn::module::ParamId;
use burn::prelude::*;
use burn_store::{ModuleSnapshot, TensorSnapshot};

use crate::clip_layout::{ClipLayout, PROMPT_TOKEN_KEYS};
use crate::clip_reid::ClipReid;
use crate::clip_text::ClipText;
use crate::clip_vision::ClipVision;
use crate::error::ImportError;
use crate::pos_embed::resize_pos_embed;
use crate::prompt_learner::{PromptObject, PROMPT_CONTEXT, PROMPT_PREFIX, PROMPT_TOKENS};
use crate::state_dict::{HostTensor, StateDict};

/// The model path of an OpenAI image-tower key (without its `visual.` prefix) and whether the
/// tensor is a PyTorch Linear weight (`[out, in]`, transposed for Burn).
fn clip_vision_path(key: &str) -> Option<(String, bool)> {
    let norm = |name: &str| match name {
        "weight" => Some("gamma"),
        "bias" => Some("beta"),
        _ => None,
    };
    let parts: Vec<&str> = key.split('.').collect();
    let path = match parts.as_slice() {
        ["conv1", "weight"] | ["class_embedding"] | ["positional_embedding"] | ["proj"] => {
            return Some((key.to_string(), false))
        }
        [ln @ ("ln_pre" | "ln_post"), p] => format!("{ln}.{}", norm(p)?),
        ["transformer", "resblocks", i, rest @ ..] => {
            let i: usize = i.parse().ok()?;
            let (module, linear) = match rest {
                ["ln_1", p] => (format!("norm1.{}", norm(p)?), false),
                ["ln_2", p] => (format!("norm2.{}", norm(p)?), false),
                ["attn", "in_proj_weight"] => ("attn.qkv.weight".into(), true),
                ["attn", "in_proj_bias"] => ("attn.qkv.bias".into(), false),
                ["attn", "out_proj", p @ ("weight" | "bias")] => {
                    (format!("attn.proj.{p}"), *p == "weight")
                }
                ["mlp", "c_fc", p @ ("weight" | "bias")] => {
                    (format!("mlp.fc1.{p}"), *p == "weight")
                }
                ["mlp", "c_proj", p @ ("weight" | "bias")] => {
                    (format!("mlp.fc2.{p}"), *p == "weight")
                }
                _ => return None,
            };
            return Some((format!("blocks.{i}.{module}"), linear));
        }
        _ => return None,
    };
    Some((path, false))
}

/// Every key of an OpenAI image tower with `layers` blocks, without the prefix.
fn openai_keys(layers: usize) -> Vec<String> {
    let mut keys: Vec<String> = [
        "conv1.weight",
        "class_embedding",
        "positional_embedding",
        "ln_pre.weight",
        "ln_pre.bias",
        "ln_post.weight",
        "ln_post.bias",
        "proj",
    ]
    .map(String::from)
    .into();
    for i in 0..layers {
        for tail in [
            "ln_1.weight",
            "ln_1.bias",
            "attn.in_proj_weight",
            "attn.in_proj_bias",
            "attn.out_proj.weight",
            "attn.out_proj.bias",
            "ln_2.weight",
            "ln_2.bias",
            "mlp.c_fc.weight",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "mlp.c_proj.bias",
        ] {
            keys.push(format!("transformer.resblocks.{i}.{tail}"));
        }
    }
    keys
}

/// Loads the image tower stored under `prefix` (`"visual."` for OpenAI and open_clip files)
/// into `model`, strictly: every parameter must be given once with its shape, and every key
/// under `prefix` must be one of the tower's. Keys outside `prefix` (the text tower) are left
/// alone. The position embedding is resized from its square pre-training grid to the model's
/// (bilinear, `align_corners = false`) when the token counts differ; at the same grid that
/// resize is the identity, which is why the reference's unconditional resize needs no copy here.
///
/// # Errors
/// [`ImportError::MissingKeys`], [`ImportError::UnexpectedKeys`],
/// [`ImportError::ShapeMismatch`] (keys as in the file, shapes as PyTorch lays them out) and
/// [`ImportError::NonSquarePosEmbed`].
pub fn load_clip_vision<B: Backend>(
    model: &mut ClipVision<B>,
    dict: &StateDict,
    prefix: &str,
) -> Result<(), ImportError> {
    check_clip_vision(model, dict, prefix)?.apply(model);
    Ok(())
}

/// What [`load_clip_vision`] would load, checked.
fn check_clip_vision<B: Backend>(
    model: &ClipVision<B>,
    dict: &StateDict,
    prefix: &str,
) -> Result<Checked, ImportError> {
    let grid = model.grid();
    let layers = model.blocks.len();
    let mut loader = Loader::new(model);
    for (key, tensor) in dict {
        let Some(short) = key.strip_prefix(prefix) else {
            continue;
        };
        let Some((path, linear)) = clip_vision_path(short) else {
            loader.unexpected.push(key.clone());
            continue;
        };
        let mut tensor = tensor.clone();
        if let (true, Some(shape)) = (path == "positional_embedding", loader.shape(&path)) {
            let dim = shape[1];
            if tensor.shape.len() == 2 && tensor.shape[1] == dim && tensor.shape[0] != shape[0] {
                let data = resize_pos_embed(&tensor.data, dim, 1, grid)?;
                tensor = HostTensor::new(vec![data.len() / dim, dim], data);
            }
        }
        loader.put(key, &path, tensor, linear)?;
    }
    loader.check(openai_keys(layers), prefix, |k| {
        clip_vision_path(k).expect("a tower key").0
    })
}

/// The model path of an OpenAI text-tower key (top level in OpenAI files, under
/// `text_encoder.` in CLIP-ReID checkpoints) and whether it is a PyTorch Linear weight.
fn clip_text_path(key: &str) -> Option<(String, bool)> {
    match key {
        "positional_embedding" | "text_projection" => Some((key.to_string(), false)),
        "ln_final.weight" => Some(("ln_final.gamma".into(), false)),
        "ln_final.bias" => Some(("ln_final.beta".into(), false)),
        _ => clip_vision_path(key).filter(|(path, _)| path.starts_with("blocks.")),
    }
}

/// Every key of an OpenAI text tower with `layers` blocks.
fn openai_text_keys(layers: usize) -> Vec<String> {
    let mut keys: Vec<String> = [
        "positional_embedding",
        "ln_final.weight",
        "ln_final.bias",
        "text_projection",
    ]
    .map(String::from)
    .into();
    keys.extend(
        openai_keys(layers)
            .into_iter()
            .filter(|k| k.starts_with("transformer.")),
    );
    keys
}

/// Loads CLIP's text tower (`positional_embedding`, `transformer.*`, `ln_final.*`,
/// `text_projection`) stored under `prefix` (`""` for OpenAI files, `"text_encoder."` for
/// CLIP-ReID checkpoints) into `model`, strictly like [`load_clip_vision`]. With an empty
/// prefix the keys of other towers (`visual.*`, `token_embedding.weight`, `logit_scale`, the
/// scalars) are left alone.
///
/// # Errors
/// [`ImportError::MissingKeys`], [`ImportError::UnexpectedKeys`] and
/// [`ImportError::ShapeMismatch`].
pub fn load_clip_text<B: Backend>(
    model: &mut ClipText<B>,
    dict: &StateDict,
    prefix: &str,
) -> Result<(), ImportError> {
    check_clip_text(model, dict, prefix)?.apply(model);
    Ok(())
}

/// What [`load_clip_text`] would load, checked.
fn check_clip_text<B: Backend>(
    model: &ClipText<B>,
    dict: &StateDict,
    prefix: &str,
) -> Result<Checked, ImportError> {
    let layers = model.blocks.len();
    let mut loader = Loader::new(model);
    for (key, tensor) in dict {
        let Some(short) = key.strip_prefix(prefix) else {
            continue;
        };
        let Some((path, linear)) = clip_text_path(short) else {
            // In OpenAI files the text tower sits beside `visual.*`, `token_embedding` and
            // the scalars.
            let ours = short.starts_with("transformer.") || short.starts_with("ln_final.");
            if !prefix.is_empty() || ours {
                loader.unexpected.push(key.clone());
            }
            continue;
        };
        loader.put(key, &path, tensor.clone(), linear)?;
    }
    loader.check(openai_text_keys(layers), prefix, |k| {
        clip_text_path(k).expect("a tower key").0
    })
}

/// The embeddings of `object`'s prompt tokens, rows of CLIP's `token_embedding.weight`
/// (`[vocab, width]`).
///
/// # Errors
/// [`ImportError::ShapeMismatch`] if the table is not a matrix holding every token id.
pub fn prompt_token_embeddings(
    key: &str,
    table: &HostTensor,
    object: PromptObject,
) -> Result<HostTensor, ImportError> {
    let ids = object.token_ids();
    let max = *ids.iter().max().expect("prompt ids");
    if table.shape.len() != 2 || table.shape[0] <= max {
        return Err(ImportError::ShapeMismatch {
            key: key.to_string(),
            expected: vec![max + 1, table.shape.last().copied().unwrap_or(0)],
            got: table.shape.clone(),
        });
    }
    let width = table.shape[1];
    let data = ids
        .iter()
        .flat_map(|&id| table.data[id * width..(id + 1) * width].iter().copied())
        .collect();
    Ok(HostTensor::new(vec![PROMPT_TOKENS, width], data))
}

/// Loads a trained CLIP-ReID checkpoint of the reference (`image_encoder.*`, `cv_embed`,
/// `bottleneck*`, `classifier*`, `prompt_learner.*`, `text_encoder.*`; a `module.` prefix is
/// already stripped by the readers) into `model`, which must have the checkpoint's classes,
/// SIE table and patch grid. A model without the text side leaves `prompt_learner.*` and
/// `text_encoder.*` alone: they serve training only. The prompt suffix keeps the three rows
/// the 12-token prompt reads (the reference stores the padding embeddings after them).
///
/// Returns the keys that were left alone. Nothing is loaded unless everything fits.
///
/// # Errors
/// [`ImportError::MissingKeys`], [`ImportError::UnexpectedKeys`] and
/// [`ImportError::ShapeMismatch`], keys as in the file.
pub fn load_clip_reid<B: Backend>(
    model: &mut ClipReid<B>,
    dict: &StateDict,
) -> Result<Vec<String>, ImportError> {
    let image = check_clip_vision(&model.image_encoder, dict, "image_encoder.")?;
    let mut skipped = Vec::new();
    let text = match &model.text_encoder {
        Some(text) => Some(check_clip_text(text, dict, "text_encoder.")?),
        None => {
            skipped.extend(
                dict.keys()
                    .filter(|k| k.starts_with("text_encoder.") || k.starts_with("prompt_learner."))
                    .cloned(),
            );
            None
        }
    };
    let has_text = model.prompt_learner.is_some();
    let has_sie = model.cv_embed.is_some();
    let mut expected: Vec<String> = ["bottleneck", "bottleneck_proj"]
        .iter()
        .flat_map(|bn| {
            ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{bn}.{p}"))
        })
        .chain(["classifier.weight".into(), "classifier_proj.weight".into()])
        .collect();
    if has_sie {
        expected.push("cv_embed".into());
    }
    if has_text {
        expected.extend(
            ["cls_ctx", "token_prefix", "token_suffix"].map(|p| format!("prompt_learner.{p}")),
        );
    }
    let mut loader = Loader::new(&*model);
    for (key, tensor) in dict {
        if key.starts_with("image_encoder.")
            || key.starts_with("text_encoder.")
            || key.ends_with(".num_batches_tracked")
            || skipped.contains(key)
        {
            continue;
        }
        if !expected.contains(key) {
            loader.unexpected.push(key.clone());
            continue;
        }
        let mut tensor = tensor.clone();
        // `[1, tokens, width]` buffers; the suffix's rows after end-of-text are padding.
        if let Some(part) = key.strip_prefix("prompt_learner.token_") {
            if let (3, Some(shape)) = (tensor.shape.len(), loader.shape(key)) {
                let [rows, width] = [shape[0], shape[1]];
                if tensor.shape[0] == 1 && tensor.shape[2] == width && tensor.shape[1] >= rows {
                    let keep = if part == "prefix" {
                        tensor.shape[1]
                    } else {
                        rows
                    };
                    tensor =
                        HostTensor::new(vec![keep, width], tensor.data[..keep * width].to_vec());
                }
            }
        }
        let linear = key.starts_with("classifier");
        loader.put(key, key, tensor, linear)?;
    }
    let rest = loader.check(expected, "", |k| k.to_string())?;
    image.apply(&mut model.image_encoder);
    if let (Some(text), Some(encoder)) = (text, &mut model.text_encoder) {
        text.apply(encoder);
    }
    rest.apply(model);
    Ok(skipped)
}

/// Loads pre-trained CLIP weights, converted to OpenAI's names by [`clip_openai_dict`] from
/// `layout`, into a fresh CLIP-ReID model: the image tower, its position embedding resized to
/// the model's grid, and for a model with the text side the text tower and the embeddings of
/// the prompt's fixed tokens (rows of CLIP's token table, or a CLIP-ReID model's own fixed
/// tokens). The heads, the SIE table and the prompt vectors keep their initialisation.
/// Nothing is loaded unless everything fits.
///
/// # Errors
/// [`ImportError::NoTextTower`] when the model trains with text and the file has no text
/// tower; [`ImportError::ClipShape`] for a trained CLIP-ReID model whose position embedding is
/// at another grid than the model's (its grid is not known, so it is not resized); and the
/// errors of [`load_clip_vision`] and [`load_clip_text`].
pub fn load_clip_pretrained<B: Backend>(
    model: &mut ClipReid<B>,
    layout: ClipLayout,
    openai: &StateDict,
) -> Result<(), ImportError> {
    let pos_key = "visual.positional_embedding";
    if let (ClipLayout::ClipReid, Some(pos)) = (layout, openai.get(pos_key)) {
        let [h, w] = model.image_encoder.grid();
        if pos.shape.first() != Some(&(1 + h * w)) {
            return Err(ImportError::ClipShape {
                key: "image_encoder.positional_embedding".into(),
                shape: pos.shape.clone(),
                tower: "image",
                reason: "a trained CLIP-ReID model's position embedding is at its training \
                         grid, which differs from this model's: use its input size and stride",
            });
        }
    }
    let image = check_clip_vision(&model.image_encoder, openai, "visual.")?;
    let text = match (&model.text_encoder, &model.prompt_learner) {
        (Some(text), Some(learner)) => {
            let width = learner.cls_ctx.dims()[2];
            let tokens = match layout {
                ClipLayout::ClipReid => fixed_prompt_tokens(openai, width)?,
                _ => token_table_rows(openai, layout, learner.object(), width)?,
            };
            if !openai.contains_key("ln_final.weight") {
                let key = "ln_final.weight".to_string();
                return Err(ImportError::NoTextTower { layout, key });
            }
            Some((check_clip_text(text, openai, "")?, tokens))
        }
        _ => None,
    };
    image.apply(&mut model.image_encoder);
    if let (Some((checked, tokens)), Some(encoder), Some(learner)) =
        (text, &mut model.text_encoder, &mut model.prompt_learner)
    {
        checked.apply(encoder);
        let device = learner.cls_ctx.device();
        learner.set_token_embeddings(Tensor::from_data(
            TensorData::new(tokens.data, tokens.shape),
            &device,
        ));
    }
    Ok(())
}

/// The embeddings of the prompt's tokens from CLIP's token table (`token_embedding.weight`).
fn token_table_rows(
    openai: &StateDict,
    layout: ClipLayout,
    object: PromptObject,
    width: usize,
) -> Result<HostTensor, ImportError> {
    let key = "token_embedding.weight";
    let Some(table) = openai.get(key) else {
        return Err(ImportError::NoTextTower {
            layout,
            key: key.into(),
        });
    };
    let tokens = prompt_token_embeddings(key, table, object)?;
    if tokens.shape[1] != width {
        return Err(ImportError::ShapeMismatch {
            key: key.into(),
            expected: vec![table.shape[0], width],
            got: table.shape.clone(),
        });
    }
    Ok(tokens)
}

/// The prompt's token embeddings from a CLIP-ReID model's fixed tokens: the prefix, zeros
/// where the learned context goes, and the suffix's first rows (the reference stores the
/// padding after them; both buffers may carry a leading 1).
fn fixed_prompt_tokens(openai: &StateDict, width: usize) -> Result<HostTensor, ImportError> {
    let suffix = PROMPT_TOKENS - PROMPT_PREFIX - PROMPT_CONTEXT;
    let mut rows = Vec::with_capacity(PROMPT_TOKENS * width);
    for (key, keep) in [
        (PROMPT_TOKEN_KEYS[0], PROMPT_PREFIX),
        (PROMPT_TOKEN_KEYS[1], suffix),
    ] {
        let Some(tensor) = openai.get(key) else {
            let key = key.to_string();
            return Err(ImportError::NoTextTower {
                layout: ClipLayout::ClipReid,
                key,
            });
        };
        let shape: Vec<usize> = tensor
            .shape
            .iter()
            .copied()
            .skip_while(|&d| d == 1)
            .collect();
        let fits = match shape[..] {
            [n, w] => w == width && (n == keep || (key == PROMPT_TOKEN_KEYS[1] && n > keep)),
            _ => false,
        };
        if !fits {
            return Err(ImportError::ShapeMismatch {
                key: key.to_string(),
                expected: vec![keep, width],
                got: tensor.shape.clone(),
            });
        }
        rows.extend_from_slice(&tensor.data[..keep * width]);
        if key == PROMPT_TOKEN_KEYS[0] {
            rows.extend(std::iter::repeat_n(0.0, PROMPT_CONTEXT * width));
        }
    }
    Ok(HostTensor::new(vec![PROMPT_TOKENS, width], rows))
}

/// The reference's state-dict name of a [`ClipReid`] parameter path (what
/// [`load_clip_reid`] reads it from), or `None` for paths of no CLIP encoder. Heads, SIE and
/// prompt vectors have the same names in both.
pub(crate) fn clip_reid_reference_key(path: &str) -> Option<String> {
    let find = |prefix: &str, keys: Vec<String>, map: fn(&str) -> Option<(String, bool)>| {
        let rest = path.strip_prefix(prefix)?;
        let key = keys
            .into_iter()
            .find(|k| map(k).is_some_and(|(p, _)| p == rest))?;
        Some(format!("{prefix}{key}"))
    };
    let layers = |tower: &str| {
        path.strip_prefix(tower)?
            .strip_prefix("blocks.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(i, _)| i.parse::<usize>().ok())
            .map_or(Some(1), |i| Some(i + 1))
    };
    if path.starts_with("image_encoder.") {
        find(
            "image_encoder.",
            openai_keys(layers("image_encoder.")?),
            clip_vision_path,
        )
    } else if path.starts_with("text_encoder.") {
        find(
            "text_encoder.",
            openai_text_keys(layers("text_encoder.")?),
            clip_text_path,
        )
    } else {
        None
    }
}

/// The model's tensors in the reference's names and layouts (PyTorch `[out, in]` linear
/// weights): what [`load_clip_reid`] reads back, and what the reference's `load_state_dict`
/// takes once the prompt suffix is padded to 77 tokens.
pub fn clip_reid_state_dict<B: Backend>(model: &ClipReid<B>) -> StateDict {
    crate::pretrained::reference_state_dict(model, |key| {
        match key
            .strip_prefix("image_encoder.")
            .or_else(|| key.strip_prefix("text_encoder."))
        {
            Some(rest) => clip_text_path(rest)
                .or_else(|| clip_vision_path(rest))
                .is_some_and(|(_, linear)| linear),
            None => key.starts_with("classifier"),
        }
    })
}

/// Collects the tensors of one strict import: their model paths, shapes and the keys that
/// fit nowhere.
struct Loader {
    shapes: BTreeMap<String, Vec<usize>>,
    snapshots: Vec<TensorSnapshot>,
    provided: BTreeSet<String>,
    unexpected: Vec<String>,
}

impl Loader {
    fn new<B: Backend, M: ModuleSnapshot<B>>(module: &M) -> Self {
        Self {
            shapes: module
                .collect(None, None, false)
                .into_iter()
                .map(|s| (s.full_path(), s.shape.to_vec()))
                .collect(),
            snapshots: Vec::new(),
            provided: BTreeSet::new(),
            unexpected: Vec::new(),
        }
    }

    fn shape(&self, path: &str) -> Option<&Vec<usize>> {
        self.shapes.get(path)
    }

    /// Stores the file's `key` as the parameter at `path`, transposed when it is a PyTorch
    /// Linear weight.
    fn put(
        &mut self,
        key: &str,
        path: &str,
        tensor: HostTensor,
        linear: bool,
    ) -> Result<(), ImportError> {
        let Some(shape) = self.shapes.get(path) else {
            self.unexpected.push(key.to_string());
            return Ok(());
        };
        let original = tensor.shape.clone();
        let tensor = if linear && tensor.shape.len() == 2 {
            tensor.transposed()
        } else {
            tensor
        };
        if tensor.shape != *shape {
            let mut expected = shape.clone();
            if linear {
                expected.reverse();
            }
            return Err(ImportError::ShapeMismatch {
                key: key.to_string(),
                expected,
                got: original,
            });
        }
        self.provided.insert(path.to_string());
        self.snapshots.push(TensorSnapshot::from_data(
            TensorData::new(tensor.data, tensor.shape),
            path.split('.').map(str::to_string).collect(),
            Vec::new(),
            ParamId::new(),
        ));
        Ok(())
    }

    /// What was collected, once nothing unexpected came and every key of `expected` (file
    /// names without `prefix`, mapped to model paths by `path`) did.
    fn check(
        self,
        expected: Vec<String>,
        prefix: &str,
        path: impl Fn(&str) -> String,
    ) -> Result<Checked, ImportError> {
        if !self.unexpected.is_empty() {
            return Err(ImportError::UnexpectedKeys(self.unexpected));
        }
        let missing: Vec<String> = expected
            .into_iter()
            .filter(|k| !self.provided.contains(&path(k)))
            .map(|k| format!("{prefix}{k}"))
            .collect();
        if !missing.is_empty() {
            return Err(ImportError::MissingKeys(missing));
        }
        Ok(Checked(self.snapshots))
    }
}

/// Tensors that fit a module, ready to be applied.
struct Checked(Vec<TensorSnapshot>);

impl Checked {
    fn apply<B: Backend, M: ModuleSnapshot<B>>(self, module: &mut M) {
        let result = module.apply(self.0, None, None, false);
        debug_assert!(result.errors.is_empty(), "{:?}", result.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    use crate::clip_vision::ClipVisionConfig;

    #[test]
    fn every_tower_key_has_one_parameter() {
        let model =
            ClipVisionConfig::new([32, 32], 8, 2, 2, 4).init::<NdArray>(&Default::default());
        let params: BTreeSet<String> = model
            .collect(None, None, false)
            .into_iter()
            .map(|s| s.full_path())
            .collect();
        let mapped: BTreeSet<String> = openai_keys(2)
            .iter()
            .map(|k| clip_vision_path(k).unwrap().0)
            .collect();
        assert_eq!(mapped, params);
        assert_eq!(openai_keys(2).len(), params.len());
    }
}
