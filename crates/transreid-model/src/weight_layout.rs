//! What a checkpoint holds, decided from its key names alone (never from the file name), and
//! the conversion of every supported backbone layout to timm's key names.

use std::fmt;

use crate::error::ImportError;
use crate::state_dict::{CheckpointFile, HostTensor, StateDict};

/// The key layout of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// timm / DeiT / the original ViT `.pth` names (`patch_embed.proj.weight`, `blocks.N.*`),
    /// possibly under `model.` / `state_dict.` / `module.` wrappers; also the flat form
    /// converted from a DINO checkpoint.
    Timm,
    /// A DINO / iBOT training checkpoint (PersonViT, TransReID-SSL): the teacher's backbone
    /// under `teacher.backbone.` or, DDP-wrapped, `teacher.module.backbone.`; the projection
    /// head, the student, the optimiser and the loss state are left out.
    DinoTeacher,
    /// Hugging Face `transformers` ViT (`[vit.]embeddings.patch_embeddings.projection.weight`,
    /// separate query / key / value projections).
    HuggingFaceVit,
    /// A trained TransReID in the reference's layout (`base.*`, `bottleneck*`, `classifier*`).
    Reference,
}

impl WeightLayout {
    /// The kind of weights this layout holds.
    pub fn kind(self) -> WeightKind {
        match self {
            Self::Timm | Self::HuggingFaceVit => WeightKind::Imagenet,
            Self::DinoTeacher => WeightKind::SelfSupervised,
            Self::Reference => WeightKind::Reference,
        }
    }
}

impl fmt::Display for WeightLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timm => "a timm-layout ViT backbone",
            Self::DinoTeacher => {
                "a DINO / iBOT training checkpoint (its teacher backbone is taken, as PersonViT and \
                 TransReID-SSL publish them)"
            }
            Self::HuggingFaceVit => "a Hugging Face transformers ViT",
            Self::Reference => "a trained TransReID in the reference's layout",
        })
    }
}

/// What the caller expects a weights file to be; a file whose keys say otherwise is refused
/// with the kind to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightKind {
    /// Whatever the keys say.
    #[default]
    Auto,
    /// A supervised ImageNet ViT / DeiT backbone: timm or Hugging Face layout.
    Imagenet,
    /// A self-supervised person backbone (PersonViT, TransReID-SSL): a DINO / iBOT training
    /// checkpoint or its flat timm-layout conversion.
    SelfSupervised,
    /// A trained TransReID (fine-tuning from a re-identification model).
    Reference,
}

impl WeightKind {
    /// Whether a file of `layout` is this kind.
    pub fn accepts(self, layout: WeightLayout) -> bool {
        match self {
            Self::Auto => true,
            Self::Imagenet => matches!(layout, WeightLayout::Timm | WeightLayout::HuggingFaceVit),
            Self::SelfSupervised => {
                matches!(layout, WeightLayout::DinoTeacher | WeightLayout::Timm)
            }
            Self::Reference => layout == WeightLayout::Reference,
        }
    }

    /// The name the command line (`--kind`) and the run configuration (`kind = "…"`) both take
    /// (the configuration also reads `self_supervised`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Imagenet => "imagenet",
            Self::SelfSupervised => "self-supervised",
            Self::Reference => "reference",
        }
    }
}

/// Recognised families that this crate cannot load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedLayout {
    /// PASS (part tokens with their own position parameters).
    Pass,
    /// Swin / SOLIDER (a hierarchical window-attention backbone).
    Swin,
    /// A CLIP image encoder (OpenAI, OpenCLIP, Hugging Face or timm layout).
    Clip,
    /// A trained CLIP-ReID model.
    ClipReid,
}

impl UnsupportedLayout {
    /// What to do instead.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Pass | Self::Swin => {
                "transreid supports timm, DINO / iBOT (PersonViT, TransReID-SSL), Hugging Face \
                 ViT and TransReID checkpoints"
            }
            Self::Clip | Self::ClipReid => {
                "it is for CLIP-ReID: `transreid import --kind clip`, or a configuration with a \
                 [clip_reid] section and model.pretrained = { kind = \"clip\", path = ... }"
            }
        }
    }
}

impl fmt::Display for UnsupportedLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "a PASS checkpoint (part tokens)",
            Self::Swin => "a Swin / SOLIDER checkpoint",
            Self::Clip => "a CLIP image encoder",
            Self::ClipReid => "a CLIP-ReID model",
        })
    }
}

/// A layout and the key prefix its backbone tensors live under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedLayout {
    /// The layout.
    pub layout: WeightLayout,
    /// Prefix of the kept keys (`teacher.module.backbone.`, `model.`, `vit.`, ...).
    pub prefix: String,
}

/// Wrappers whose content is the weights: checkpoint dictionaries, DINO's teacher, DDP and
/// the DINO backbone wrapper.
const WRAPPERS: [&str; 5] = ["model.", "state_dict.", "teacher.", "module.", "backbone."];

/// Decides the layout of a file from its tensor names.
pub fn detect_layout(keys: &[String]) -> Result<DetectedLayout, ImportError> {
    let mut prefix = String::new();
    let mut inner: Vec<&str> = keys.iter().map(String::as_str).collect();
    'unwrap: loop {
        for wrapper in WRAPPERS {
            if inner.iter().any(|k| k.starts_with(wrapper)) {
                prefix.push_str(wrapper);
                inner = inner
                    .iter()
                    .filter_map(|k| k.strip_prefix(wrapper))
                    .collect();
                continue 'unwrap;
            }
        }
        break;
    }
    let has = |key: &str| inner.contains(&key);
    let any = |pattern: &str| {
        inner
            .iter()
            .find(|k| k.contains(pattern))
            .map(|k| k.to_string())
    };
    let unsupported = [
        ("part_token1", UnsupportedLayout::Pass),
        ("relative_position_bias_table", UnsupportedLayout::Swin),
        ("image_encoder.", UnsupportedLayout::ClipReid),
        ("class_embedding", UnsupportedLayout::Clip),
        ("norm_pre.", UnsupportedLayout::Clip),
    ];
    for (pattern, layout) in unsupported {
        if let Some(key) = any(pattern) {
            return Err(ImportError::UnsupportedLayout { layout, key });
        }
    }
    let layout = if prefix.starts_with("teacher.") && prefix.ends_with("backbone.") {
        WeightLayout::DinoTeacher
    } else if has("embeddings.patch_embeddings.projection.weight") {
        WeightLayout::HuggingFaceVit
    } else if has("vit.embeddings.patch_embeddings.projection.weight") {
        prefix.push_str("vit.");
        WeightLayout::HuggingFaceVit
    } else if has("base.patch_embed.proj.weight") || has("base.cls_token") {
        WeightLayout::Reference
    } else if has("patch_embed.proj.weight") || has("cls_token") {
        WeightLayout::Timm
    } else {
        return Err(ImportError::UnknownLayout {
            sample: keys.iter().take(8).cloned().collect(),
        });
    };
    Ok(DetectedLayout { layout, prefix })
}

/// Keys of a backbone that no TransReID parameter takes: classification and projection heads,
/// distillation (but `dist_token`, which tells the loader to drop its position token),
/// masked-image-modelling tokens.
fn is_dropped(key: &str) -> bool {
    key != "dist_token"
        && [
            "head",
            "dist",
            "pre_logits",
            "mask_token",
            "masked_embed",
            "classifier",
            "pooler",
        ]
        .iter()
        .any(|p| key.contains(p))
}

/// Reads the backbone tensors of a file in timm's names: only the kept keys are read, so a
/// training checkpoint's student, optimiser state and loss centres are never materialised.
pub fn read_backbone(
    file: &CheckpointFile,
    detected: &DetectedLayout,
) -> Result<StateDict, ImportError> {
    let mut dict = StateDict::new();
    for key in file.keys() {
        let Some(name) = key.strip_prefix(detected.prefix.as_str()) else {
            continue;
        };
        let name = match detected.layout {
            WeightLayout::HuggingFaceVit => hf_vit_name(name).unwrap_or_else(|| name.to_string()),
            _ => name.to_string(),
        };
        if is_dropped(&name) {
            continue;
        }
        dict.insert(name, file.tensor(&key)?);
    }
    if detected.layout == WeightLayout::HuggingFaceVit {
        fuse_qkv(&mut dict)?;
    }
    Ok(dict)
}

/// The timm name of a Hugging Face ViT key (`query` / `key` / `value` keep a marker until
/// [`fuse_qkv`] concatenates them). `None` for keys without a counterpart.
fn hf_vit_name(key: &str) -> Option<String> {
    let fixed = [
        ("embeddings.cls_token", "cls_token"),
        ("embeddings.position_embeddings", "pos_embed"),
        (
            "embeddings.patch_embeddings.projection.weight",
            "patch_embed.proj.weight",
        ),
        (
            "embeddings.patch_embeddings.projection.bias",
            "patch_embed.proj.bias",
        ),
        ("layernorm.weight", "norm.weight"),
        ("layernorm.bias", "norm.bias"),
    ];
    if let Some((_, timm)) = fixed.iter().find(|(hf, _)| *hf == key) {
        return Some(timm.to_string());
    }
    let rest = key.strip_prefix("encoder.layer.")?;
    let (block, rest) = rest.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    let timm = match module {
        "layernorm_before" => "norm1",
        "layernorm_after" => "norm2",
        "attention.attention.query" => "attn.qkv#q",
        "attention.attention.key" => "attn.qkv#k",
        "attention.attention.value" => "attn.qkv#v",
        "attention.output.dense" => "attn.proj",
        "intermediate.dense" => "mlp.fc1",
        "output.dense" => "mlp.fc2",
        _ => return None,
    };
    Some(format!("blocks.{block}.{timm}.{param}"))
}

/// Concatenates `blocks.N.attn.qkv#{q,k,v}.{weight,bias}` along dim 0 in q, k, v order into
/// timm's fused `blocks.N.attn.qkv.*`.
fn fuse_qkv(dict: &mut StateDict) -> Result<(), ImportError> {
    let parts: Vec<String> = dict
        .keys()
        .filter(|k| k.contains(".attn.qkv#q."))
        .cloned()
        .collect();
    for q_key in parts {
        let mut pieces = Vec::with_capacity(3);
        for part in ["q", "k", "v"] {
            let key = q_key.replace("#q.", &format!("#{part}."));
            let name = hf_original(&key);
            pieces.push(
                dict.remove(&key)
                    .ok_or_else(|| ImportError::MissingKeys(vec![name]))?,
            );
        }
        let rest = &pieces[0].shape[1..];
        if let Some(bad) = pieces.iter().find(|p| &p.shape[1..] != rest) {
            return Err(ImportError::ShapeMismatch {
                key: hf_original(&q_key),
                expected: pieces[0].shape.clone(),
                got: bad.shape.clone(),
            });
        }
        let rows: usize = pieces.iter().map(|p| p.shape[0]).sum();
        let mut shape = pieces[0].shape.clone();
        shape[0] = rows;
        let data = pieces.into_iter().flat_map(|p| p.data).collect();
        dict.insert(q_key.replace("#q.", "."), HostTensor::new(shape, data));
    }
    Ok(())
}

/// The Hugging Face name behind a marked `blocks.N.attn.qkv#x.param` key, for error messages.
fn hf_original(key: &str) -> String {
    let name = |x: &str| match x {
        "q" => "query",
        "k" => "key",
        _ => "value",
    };
    match key.split_once(".attn.qkv#") {
        Some((block, rest)) => {
            let block = block.trim_start_matches("blocks.");
            let (part, param) = rest.split_once('.').unwrap_or((rest, ""));
            format!(
                "encoder.layer.{block}.attention.attention.{}.{param}",
                name(part)
            )
        }
        None => key.to_string(),
    }
}

/// The patch grid a checkpoint's position embedding was trained at (the reference's
/// `MODEL.PRETRAIN_HW_RATIO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PretrainGrid {
    /// `height / width` of the grid: `h = floor(sqrt(tokens * ratio))`, `w = h / ratio`, as the
    /// reference computes it. 1 for ImageNet weights (square), 2 for LUPerson weights (16x8
    /// at 256x128).
    HwRatio(usize),
    /// The grid `[height, width]` itself.
    Grid([usize; 2]),
}

impl Default for PretrainGrid {
    fn default() -> Self {
        Self::HwRatio(1)
    }
}

impl PretrainGrid {
    /// The `[height, width]` grid of `tokens` position tokens (cls excluded).
    pub fn grid(self, tokens: usize) -> Result<[usize; 2], ImportError> {
        let grid = match self {
            Self::HwRatio(ratio) => {
                let ratio = ratio.max(1);
                let h = ((tokens * ratio) as f64).sqrt().floor() as usize;
                [h, h / ratio]
            }
            Self::Grid(grid) => grid,
        };
        if grid[0] * grid[1] == tokens {
            return Ok(grid);
        }
        Err(match self {
            Self::HwRatio(1) => ImportError::NonSquarePosEmbed { tokens },
            _ => ImportError::PosEmbedGrid { tokens, grid: self },
        })
    }
}

impl fmt::Display for PretrainGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HwRatio(r) => write!(f, "height/width ratio {r}"),
            Self::Grid([h, w]) => write!(f, "grid {h}x{w}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn layouts_are_told_apart_by_their_keys() {
        let cases = [
            (
                vec!["cls_token", "patch_embed.proj.weight"],
                WeightLayout::Timm,
                "",
            ),
            (
                vec!["model.cls_token", "model.patch_embed.proj.weight"],
                WeightLayout::Timm,
                "model.",
            ),
            (
                vec![
                    "teacher.backbone.cls_token",
                    "teacher.head.mlp.0.weight",
                    "student.module.backbone.cls_token",
                    "optimizer.state.0.exp_avg",
                ],
                WeightLayout::DinoTeacher,
                "teacher.backbone.",
            ),
            (
                vec![
                    "teacher.module.backbone.cls_token",
                    "teacher.module.head.last_layer.weight_g",
                ],
                WeightLayout::DinoTeacher,
                "teacher.module.backbone.",
            ),
            (
                vec![
                    "vit.embeddings.patch_embeddings.projection.weight",
                    "classifier.weight",
                ],
                WeightLayout::HuggingFaceVit,
                "vit.",
            ),
            (
                vec![
                    "embeddings.patch_embeddings.projection.weight",
                    "pooler.dense.weight",
                ],
                WeightLayout::HuggingFaceVit,
                "",
            ),
            (
                vec!["module.base.cls_token", "module.classifier.weight"],
                WeightLayout::Reference,
                "module.",
            ),
        ];
        for (names, layout, prefix) in cases {
            let detected = detect_layout(&keys(&names)).unwrap();
            assert_eq!(detected.layout, layout, "{names:?}");
            assert_eq!(detected.prefix, prefix, "{names:?}");
        }
    }

    #[test]
    fn unsupported_families_are_named() {
        let cases = [
            ("part_token1", UnsupportedLayout::Pass),
            (
                "layers.0.blocks.0.attn.relative_position_bias_table",
                UnsupportedLayout::Swin,
            ),
            ("visual.class_embedding", UnsupportedLayout::Clip),
            (
                "vision_model.embeddings.class_embedding",
                UnsupportedLayout::Clip,
            ),
            ("norm_pre.weight", UnsupportedLayout::Clip),
            ("image_encoder.class_embedding", UnsupportedLayout::ClipReid),
        ];
        for (key, expected) in cases {
            let err = detect_layout(&keys(&[key, "cls_token"])).unwrap_err();
            match err {
                ImportError::UnsupportedLayout { layout, key: found } => {
                    assert_eq!(layout, expected);
                    assert_eq!(found, key);
                }
                other => panic!("{key}: {other}"),
            }
        }
        assert!(matches!(
            detect_layout(&keys(&["fc.weight", "conv1.weight"])),
            Err(ImportError::UnknownLayout { .. })
        ));
    }

    #[test]
    fn hugging_face_names_map_to_timm() {
        let cases = [
            ("embeddings.position_embeddings", "pos_embed"),
            (
                "encoder.layer.3.layernorm_before.weight",
                "blocks.3.norm1.weight",
            ),
            (
                "encoder.layer.3.attention.output.dense.bias",
                "blocks.3.attn.proj.bias",
            ),
            (
                "encoder.layer.3.output.dense.weight",
                "blocks.3.mlp.fc2.weight",
            ),
            (
                "encoder.layer.3.intermediate.dense.weight",
                "blocks.3.mlp.fc1.weight",
            ),
            ("layernorm.bias", "norm.bias"),
        ];
        for (hf, timm) in cases {
            assert_eq!(hf_vit_name(hf).as_deref(), Some(timm));
        }
        assert_eq!(hf_vit_name("pooler.dense.weight"), None);
    }

    #[test]
    fn query_key_value_concatenate_in_order() {
        let mut dict = StateDict::new();
        for (i, part) in ["q", "k", "v"].iter().enumerate() {
            let v = i as f32;
            dict.insert(
                format!("blocks.0.attn.qkv#{part}.weight"),
                HostTensor::new(vec![1, 2], vec![v, v + 0.5]),
            );
        }
        fuse_qkv(&mut dict).unwrap();
        let fused = &dict["blocks.0.attn.qkv.weight"];
        assert_eq!(fused.shape, vec![3, 2]);
        assert_eq!(fused.data, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);

        let mut missing = StateDict::new();
        missing.insert(
            "blocks.0.attn.qkv#q.bias".into(),
            HostTensor::new(vec![1], vec![0.0]),
        );
        let err = fuse_qkv(&mut missing).unwrap_err();
        assert!(
            err.to_string()
                .contains("encoder.layer.0.attention.attention.key.bias"),
            "{err}"
        );
    }

    #[test]
    fn pretrain_grids_follow_the_reference_rule() {
        assert_eq!(PretrainGrid::HwRatio(1).grid(196).unwrap(), [14, 14]);
        assert_eq!(PretrainGrid::HwRatio(2).grid(128).unwrap(), [16, 8]);
        assert_eq!(PretrainGrid::HwRatio(2).grid(32).unwrap(), [8, 4]);
        assert_eq!(PretrainGrid::Grid([24, 8]).grid(192).unwrap(), [24, 8]);
        assert!(matches!(
            PretrainGrid::HwRatio(1).grid(128),
            Err(ImportError::NonSquarePosEmbed { tokens: 128 })
        ));
        assert!(matches!(
            PretrainGrid::HwRatio(3).grid(128),
            Err(ImportError::PosEmbedGrid { tokens: 128, .. })
        ));
        assert!(matches!(
            PretrainGrid::Grid([10, 10]).grid(128),
            Err(ImportError::PosEmbedGrid { .. })
        ));
    }
}
