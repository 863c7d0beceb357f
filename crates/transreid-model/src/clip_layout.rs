//! CLIP weight files in the three common layouts (OpenAI / open_clip, timm, Hugging Face),
//! converted to OpenAI's names, and the architecture their shapes describe.

use std::collections::BTreeSet;
use std::fmt;

use crate::clip_text::ClipTextConfig;
use crate::clip_vision::ClipVisionConfig;
use crate::error::ImportError;
use crate::state_dict::{unwrapped_key, HostTensor, StateDict};

/// The key layout of a CLIP weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipLayout {
    /// OpenAI's `clip/model.py` and open_clip: `visual.*` beside the text tower's
    /// `transformer.*`, `token_embedding.weight`, `ln_final.*`, `text_projection`.
    OpenAi,
    /// timm's `vit_base_patch16_clip_224.openai` and its kin (image tower only): `cls_token`,
    /// `patch_embed.proj.weight`, `norm_pre.*`, `blocks.N.*`, `norm.*`, `head.*`.
    Timm,
    /// Hugging Face `CLIPModel`, `CLIPVisionModel(WithProjection)`: `vision_model.*`,
    /// `visual_projection.weight`, optionally `text_model.*` and `text_projection.weight`.
    HuggingFace,
    /// A trained CLIP-ReID model (the reference's checkpoint, or this crate's): its CLIP towers
    /// are `image_encoder.*` and optionally `text_encoder.*`, its fixed prompt tokens
    /// `prompt_learner.token_prefix` / `token_suffix` (no token table).
    ClipReid,
}

impl fmt::Display for ClipLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenAi => "CLIP in OpenAI / open_clip layout",
            Self::Timm => "a timm CLIP image tower",
            Self::HuggingFace => "a Hugging Face CLIP model",
            Self::ClipReid => "a trained CLIP-ReID model",
        })
    }
}

impl ClipLayout {
    /// The layout of a file with these keys (wrappers such as `module.` aside, which the
    /// readers strip), if it is a CLIP file.
    pub fn detect<'a>(keys: impl IntoIterator<Item = &'a String>) -> Option<Self> {
        let keys: BTreeSet<&str> = keys.into_iter().map(|k| unwrapped_key(k)).collect();
        if keys.contains("visual.class_embedding") && keys.contains("visual.conv1.weight") {
            Some(Self::OpenAi)
        } else if keys.contains("image_encoder.class_embedding") {
            Some(Self::ClipReid)
        } else if keys.contains("vision_model.embeddings.class_embedding") {
            Some(Self::HuggingFace)
        } else if keys.contains("norm_pre.weight") && keys.contains("patch_embed.proj.weight") {
            Some(Self::Timm)
        } else {
            None
        }
    }
}

/// The tensors of a CLIP file under OpenAI's names (what [`crate::load_clip_vision`] with
/// prefix `visual.` and [`crate::load_clip_text`] with an empty prefix read), with its layout.
/// Hugging Face's separate q / k / v projections are stacked into `in_proj_*`, projections
/// stored as Linear weights are transposed, timm's `[1, 1, D]` class token and `[1, T, D]`
/// position embedding lose their leading ones. Keys without a counterpart (Hugging Face's
/// `position_ids`, timm's zero head bias) are dropped. Of a trained CLIP-ReID model the towers
/// are renamed (`image_encoder.` to `visual.`, `text_encoder.` to nothing) and the fixed prompt
/// tokens keep their names (`prompt_learner.token_prefix` / `token_suffix`, what
/// [`crate::load_clip_pretrained`] reads in place of the token table); its heads, SIE table
/// and learned prompts are not CLIP's and are left out.
///
/// # Errors
/// [`ImportError::UnknownLayout`] for a file of no CLIP layout, [`ImportError::MissingKeys`]
/// for a q / k / v triple that is incomplete, [`ImportError::ClipShape`] for a timm head with
/// a bias (the projection has none) and [`ImportError::UnexpectedKeys`] for keys of the
/// layout that map to nothing.
pub fn clip_openai_dict(dict: &StateDict) -> Result<(ClipLayout, StateDict), ImportError> {
    let layout = ClipLayout::detect(dict.keys()).ok_or_else(|| ImportError::UnknownLayout {
        sample: dict.keys().take(8).cloned().collect(),
    })?;
    let mut out = StateDict::new();
    let mut unexpected = Vec::new();
    match layout {
        ClipLayout::OpenAi => out = dict.clone(),
        ClipLayout::ClipReid => {
            for (key, tensor) in dict {
                let name = if let Some(rest) = key.strip_prefix("image_encoder.") {
                    format!("visual.{rest}")
                } else if let Some(rest) = key.strip_prefix("text_encoder.") {
                    rest.to_string()
                } else if PROMPT_TOKEN_KEYS.contains(&key.as_str()) {
                    key.clone()
                } else if is_clip_reid_own(key) {
                    continue;
                } else {
                    unexpected.push(key.clone());
                    continue;
                };
                out.insert(name, tensor.clone());
            }
        }
        ClipLayout::Timm => {
            for (key, tensor) in dict {
                if key == "head.bias" {
                    if tensor.data.iter().any(|&v| v != 0.0) {
                        return Err(ImportError::ClipShape {
                            key: key.clone(),
                            shape: tensor.shape.clone(),
                            tower: "image",
                            reason: "CLIP's projection has no bias, this head's is not zero",
                        });
                    }
                    continue;
                }
                match timm_name(key) {
                    Some((name, form)) => {
                        out.insert(name, form.apply(tensor));
                    }
                    None => unexpected.push(key.clone()),
                }
            }
        }
        ClipLayout::HuggingFace => {
            let mut parts = StateDict::new();
            for (key, tensor) in dict {
                if key.ends_with("position_ids") {
                    continue;
                }
                match hf_name(key) {
                    Some((name, _)) if name.contains("#") => {
                        parts.insert(name, tensor.clone());
                    }
                    Some((name, form)) => {
                        out.insert(name, form.apply(tensor));
                    }
                    None => unexpected.push(key.clone()),
                }
            }
            stack_qkv(parts, &mut out)?;
        }
    }
    if !unexpected.is_empty() {
        return Err(ImportError::UnexpectedKeys(unexpected));
    }
    Ok((layout, out))
}

/// The fixed prompt tokens of a CLIP-ReID model: the embeddings of "A photo of a" and of the
/// noun, the full stop and end-of-text.
pub(crate) const PROMPT_TOKEN_KEYS: [&str; 2] =
    ["prompt_learner.token_prefix", "prompt_learner.token_suffix"];

/// The keys of a CLIP-ReID model that belong to the re-identification model, not to CLIP:
/// heads, SIE table and learned prompt vectors (BatchNorm counters too).
const CLIP_REID_OWN_KEYS: [&str; 4] = [
    "bottleneck",
    "classifier",
    "cv_embed",
    "prompt_learner.cls_ctx",
];

fn is_clip_reid_own(key: &str) -> bool {
    CLIP_REID_OWN_KEYS.iter().any(|own| key.starts_with(own))
}

/// How a tensor changes on its way to OpenAI's layout.
#[derive(Clone, Copy)]
enum Form {
    Same,
    Transpose,
    /// Drop leading dimensions of size one down to this rank.
    Rank(usize),
}

impl Form {
    fn apply(self, t: &HostTensor) -> HostTensor {
        match self {
            Form::Same => t.clone(),
            Form::Transpose if t.shape.len() == 2 => t.transposed(),
            Form::Transpose => t.clone(),
            Form::Rank(rank) => {
                let mut shape = t.shape.clone();
                while shape.len() > rank && shape[0] == 1 {
                    shape.remove(0);
                }
                HostTensor::new(shape, t.data.clone())
            }
        }
    }
}

/// A timm CLIP key in OpenAI's names.
fn timm_name(key: &str) -> Option<(String, Form)> {
    let visual = |name: &str, form| Some((format!("visual.{name}"), form));
    match key {
        "cls_token" => return visual("class_embedding", Form::Rank(1)),
        "pos_embed" => return visual("positional_embedding", Form::Rank(2)),
        "patch_embed.proj.weight" => return visual("conv1.weight", Form::Same),
        "head.weight" => return visual("proj", Form::Transpose),
        _ => {}
    }
    if let Some(p) = key.strip_prefix("norm_pre.") {
        return visual(&format!("ln_pre.{p}"), Form::Same);
    }
    if let Some(p) = key.strip_prefix("norm.") {
        return visual(&format!("ln_post.{p}"), Form::Same);
    }
    let rest = key.strip_prefix("blocks.")?;
    let (block, rest) = rest.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    let module = match (module, param) {
        ("norm1", _) => "ln_1".to_string(),
        ("norm2", _) => "ln_2".to_string(),
        ("attn.qkv", "weight" | "bias") => {
            return block_name(block, &format!("attn.in_proj_{param}"))
        }
        ("attn.proj", _) => "attn.out_proj".to_string(),
        ("mlp.fc1", _) => "mlp.c_fc".to_string(),
        ("mlp.fc2", _) => "mlp.c_proj".to_string(),
        _ => return None,
    };
    block_name(block, &format!("{module}.{param}"))
}

fn block_name(block: &str, rest: &str) -> Option<(String, Form)> {
    block.parse::<usize>().ok()?;
    Some((
        format!("visual.transformer.resblocks.{block}.{rest}"),
        Form::Same,
    ))
}

/// A Hugging Face CLIP key in OpenAI's names; q / k / v projections keep a `#q` / `#k` / `#v`
/// marker until [`stack_qkv`].
fn hf_name(key: &str) -> Option<(String, Form)> {
    let fixed = [
        (
            "vision_model.embeddings.class_embedding",
            "visual.class_embedding",
            Form::Same,
        ),
        (
            "vision_model.embeddings.patch_embedding.weight",
            "visual.conv1.weight",
            Form::Same,
        ),
        (
            "vision_model.embeddings.position_embedding.weight",
            "visual.positional_embedding",
            Form::Same,
        ),
        (
            "vision_model.pre_layrnorm.weight",
            "visual.ln_pre.weight",
            Form::Same,
        ),
        (
            "vision_model.pre_layrnorm.bias",
            "visual.ln_pre.bias",
            Form::Same,
        ),
        (
            "vision_model.post_layernorm.weight",
            "visual.ln_post.weight",
            Form::Same,
        ),
        (
            "vision_model.post_layernorm.bias",
            "visual.ln_post.bias",
            Form::Same,
        ),
        ("visual_projection.weight", "visual.proj", Form::Transpose),
        (
            "text_model.embeddings.token_embedding.weight",
            "token_embedding.weight",
            Form::Same,
        ),
        (
            "text_model.embeddings.position_embedding.weight",
            "positional_embedding",
            Form::Same,
        ),
        (
            "text_model.final_layer_norm.weight",
            "ln_final.weight",
            Form::Same,
        ),
        (
            "text_model.final_layer_norm.bias",
            "ln_final.bias",
            Form::Same,
        ),
        ("text_projection.weight", "text_projection", Form::Transpose),
        ("logit_scale", "logit_scale", Form::Same),
    ];
    if let Some((_, name, form)) = fixed.iter().find(|(hf, _, _)| *hf == key) {
        return Some((name.to_string(), *form));
    }
    let (tower, rest) = if let Some(rest) = key.strip_prefix("vision_model.encoder.layers.") {
        ("visual.transformer", rest)
    } else {
        (
            "transformer",
            key.strip_prefix("text_model.encoder.layers.")?,
        )
    };
    let (block, rest) = rest.split_once('.')?;
    block.parse::<usize>().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    let module = match module {
        "layer_norm1" => "ln_1",
        "layer_norm2" => "ln_2",
        "self_attn.q_proj" => "attn.in_proj#q",
        "self_attn.k_proj" => "attn.in_proj#k",
        "self_attn.v_proj" => "attn.in_proj#v",
        "self_attn.out_proj" => "attn.out_proj",
        "mlp.fc1" => "mlp.c_fc",
        "mlp.fc2" => "mlp.c_proj",
        _ => return None,
    };
    let name = match module.strip_prefix("attn.in_proj") {
        // `in_proj_weight` / `in_proj_bias`, stacked from the three parts.
        Some(part) => format!("{tower}.resblocks.{block}.attn.in_proj_{param}{part}"),
        None => format!("{tower}.resblocks.{block}.{module}.{param}"),
    };
    Some((name, Form::Same))
}

/// Stacks `...in_proj_{weight,bias}#{q,k,v}` along their first dimension in q, k, v order.
fn stack_qkv(mut parts: StateDict, out: &mut StateDict) -> Result<(), ImportError> {
    let names: BTreeSet<String> = parts
        .keys()
        .map(|k| k.rsplit_once('#').expect("marked").0.to_string())
        .collect();
    for name in names {
        let mut pieces = Vec::with_capacity(3);
        for part in ["q", "k", "v"] {
            let piece = parts
                .remove(&format!("{name}#{part}"))
                .ok_or_else(|| ImportError::MissingKeys(vec![hf_qkv_name(&name, part)]))?;
            pieces.push(piece);
        }
        let tail = pieces[0].shape[1..].to_vec();
        if let Some(bad) = pieces.iter().find(|p| p.shape[1..] != tail) {
            return Err(ImportError::ShapeMismatch {
                key: hf_qkv_name(&name, "k"),
                expected: pieces[0].shape.clone(),
                got: bad.shape.clone(),
            });
        }
        let mut shape = pieces[0].shape.clone();
        shape[0] = pieces.iter().map(|p| p.shape[0]).sum();
        let data = pieces.into_iter().flat_map(|p| p.data).collect();
        out.insert(name, HostTensor::new(shape, data));
    }
    Ok(())
}

/// The Hugging Face key of one part of an `in_proj_*` tensor, for messages.
fn hf_qkv_name(openai: &str, part: &str) -> String {
    let (tower, rest) = match openai.strip_prefix("visual.transformer.resblocks.") {
        Some(rest) => ("vision_model", rest),
        None => (
            "text_model",
            openai.trim_start_matches("transformer.resblocks."),
        ),
    };
    let (block, param) = rest.split_once(".attn.in_proj_").unwrap_or((rest, ""));
    format!("{tower}.encoder.layers.{block}.self_attn.{part}_proj.{param}")
}

/// The towers a CLIP file (in OpenAI's names, see [`clip_openai_dict`]) describes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipArchitecture {
    /// Token width of the image tower (768 for ViT-B/16).
    pub width: usize,
    /// Blocks of the image tower.
    pub layers: usize,
    /// Patch size.
    pub patch_size: usize,
    /// Projection size.
    pub output_dim: usize,
    /// Patch tokens of the position embedding: a square grid in CLIP files (resized to the
    /// model's grid on import), the training grid in a trained CLIP-ReID model.
    pub pretrain_tokens: usize,
    /// The text tower, when the file has one.
    pub text: Option<ClipTextConfig>,
}

impl ClipArchitecture {
    /// Reads the architecture from the shapes: widths from the patch convolution and
    /// `ln_final`, depths from the block numbers, heads as CLIP sets them (`width / 64`).
    ///
    /// # Errors
    /// [`ImportError::MissingKeys`] without the image tower's defining tensors,
    /// [`ImportError::ClipShape`] for shapes no CLIP has (a width that is not a multiple of
    /// 64, a non-square patch, a position embedding of another width).
    pub fn from_openai(dict: &StateDict) -> Result<Self, ImportError> {
        let get = |key: &str| {
            dict.get(key)
                .ok_or_else(|| ImportError::MissingKeys(vec![key.to_string()]))
        };
        let bad = |key: &str, t: &HostTensor, tower, reason| ImportError::ClipShape {
            key: key.to_string(),
            shape: t.shape.clone(),
            tower,
            reason,
        };
        let conv = get("visual.conv1.weight")?;
        let [width, 3, patch, patch_x] = conv.shape[..] else {
            return Err(bad(
                "visual.conv1.weight",
                conv,
                "image",
                "not [width, 3, p, p]",
            ));
        };
        if patch != patch_x {
            return Err(bad(
                "visual.conv1.weight",
                conv,
                "image",
                "the patch is not square",
            ));
        }
        heads(width).ok_or_else(|| bad("visual.conv1.weight", conv, "image", WIDTH_RULE))?;
        let proj = get("visual.proj")?;
        let [w, output_dim] = proj.shape[..] else {
            return Err(bad("visual.proj", proj, "image", "not [width, output]"));
        };
        if w != width {
            return Err(bad(
                "visual.proj",
                proj,
                "image",
                "its rows are not the width",
            ));
        }
        let pos = get("visual.positional_embedding")?;
        let pretrain_tokens = match pos.shape[..] {
            [tokens, dim] if tokens > 1 && dim == width => tokens - 1,
            _ => {
                return Err(bad(
                    "visual.positional_embedding",
                    pos,
                    "image",
                    "not [1 + patches, width]",
                ))
            }
        };
        let layers = count_blocks(dict, "visual.transformer.resblocks.");
        let text = match dict.get("ln_final.weight") {
            None => None,
            Some(ln) => {
                let text_width = ln.shape[0];
                let text_heads = heads(text_width)
                    .ok_or_else(|| bad("ln_final.weight", ln, "text", WIDTH_RULE))?;
                let projection = get("text_projection")?;
                let position = get("positional_embedding")?;
                if projection.shape.len() != 2 || projection.shape[0] != text_width {
                    return Err(bad(
                        "text_projection",
                        projection,
                        "text",
                        "not [width, output]",
                    ));
                }
                if position.shape.len() != 2 || position.shape[1] != text_width {
                    return Err(bad(
                        "positional_embedding",
                        position,
                        "text",
                        "not [context, width]",
                    ));
                }
                Some(
                    ClipTextConfig::new(
                        text_width,
                        count_blocks(dict, "transformer.resblocks."),
                        text_heads,
                        projection.shape[1],
                    )
                    .with_context_length(position.shape[0]),
                )
            }
        };
        Ok(Self {
            width,
            layers,
            patch_size: patch,
            output_dim,
            pretrain_tokens,
            text,
        })
    }

    /// The image tower at `img_size` and `stride`.
    pub fn vision(&self, img_size: [usize; 2], stride: [usize; 2]) -> ClipVisionConfig {
        ClipVisionConfig::new(
            img_size,
            self.width,
            self.layers,
            heads(self.width).expect("checked"),
            self.output_dim,
        )
        .with_patch_size(self.patch_size)
        .with_stride(stride)
    }
}

const WIDTH_RULE: &str = "CLIP's heads are width / 64, so the width must be a multiple of 64";

fn heads(width: usize) -> Option<usize> {
    (width >= 64 && width.is_multiple_of(64)).then_some(width / 64)
}

/// Number of blocks `prefix{N}.*`, N counted from 0.
fn count_blocks(dict: &StateDict, prefix: &str) -> usize {
    dict.keys()
        .filter_map(|k| {
            k.strip_prefix(prefix)?
                .split_once('.')?
                .0
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |n| n + 1)
}
