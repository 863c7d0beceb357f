//! Weight import: ImageNet ViT / DeiT backbones (timm layout) and the reference's trained
//! TransReID checkpoints, with strict, typed checks.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::ParamId;
use burn::prelude::*;
use burn_store::{ModuleSnapshot, TensorSnapshot};

use crate::error::ImportError;
use crate::pos_embed::resize_pos_embed_grid;
use crate::state_dict::{read_state_dict, CheckpointFile, HostTensor, StateDict};
use crate::transreid::TransReid;
use crate::weight_layout::{detect_layout, read_backbone, PretrainGrid, WeightKind, WeightLayout};

/// How strictly a checkpoint must match the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Load what matches and report the rest (missing, unexpected and mis-shaped keys) instead
    /// of failing. Default: false (strict).
    pub allow_partial: bool,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// Checkpoint keys loaded into the model.
    pub loaded: Vec<String>,
    /// Model keys the checkpoint lacked (only with `allow_partial`).
    pub missing: Vec<String>,
    /// Checkpoint keys the model lacks (only with `allow_partial`).
    pub unexpected: Vec<String>,
    /// Keys skipped for their shape: `(key, model shape, checkpoint shape)` (only with `allow_partial`).
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Position-embedding tokens before and after the resize, when one happened.
    pub pos_embed_resized: Option<(usize, usize)>,
    /// Whether a distillation token was removed from the position embedding.
    pub dropped_dist_token: bool,
    /// The layout the keys revealed.
    pub layout: Option<WeightLayout>,
}

/// The reference's `bottleneck` / `bottleneck_k` and `classifier` / `classifier_k` names.
fn branch_module(name: &str, reference: &str) -> Option<usize> {
    match name.strip_prefix(reference)? {
        "" => Some(0),
        rest => rest.strip_prefix('_')?.parse().ok(),
    }
}

/// Maps a reference / timm state-dict key (with the `base.` prefix for backbone tensors) to the
/// parameter path of [`TransReid`]. `None` for keys without a counterpart.
pub fn model_path(key: &str) -> Option<String> {
    let mut parts: Vec<String> = key.split('.').map(str::to_string).collect();
    if parts.last()? == "num_batches_tracked" {
        return None;
    }
    let first = parts[0].clone();
    match first.as_str() {
        "b1" | "b2" if parts.len() > 2 => {
            parts[1] = match parts[1].as_str() {
                "0" => "block".into(),
                "1" => "norm".into(),
                _ => return None,
            }
        }
        _ => {
            for (reference, ours) in [("bottleneck", "bottlenecks"), ("classifier", "classifiers")]
            {
                if let Some(k) = branch_module(&first, reference) {
                    parts.splice(0..1, [ours.to_string(), k.to_string()]);
                }
            }
        }
    }
    rename_layer_norm(&mut parts, [("weight", "gamma"), ("bias", "beta")]);
    stem_to_model(&mut parts)?;
    Some(parts.join("."))
}

/// The reference's `patch_embed.conv.<index>` layers of the ICS stem and our field names
/// (ReLUs take the missing indices).
const STEM_LAYERS: [(&str, &str); 6] = [
    ("0", "conv1"),
    ("1", "ibn1"),
    ("3", "conv2"),
    ("4", "ibn2"),
    ("6", "conv3"),
    ("7", "bn"),
];

/// `patch_embed.conv.K[.IN|.BN].param` -> `patch_embed.stem.<field>[.instance|.batch].param`,
/// with InstanceNorm's `weight` / `bias` as Burn's `gamma` / `beta`. `None` for an index
/// without parameters.
fn stem_to_model(parts: &mut Vec<String>) -> Option<()> {
    let Some(i) = parts
        .windows(2)
        .position(|w| w[0] == "patch_embed" && w[1] == "conv")
    else {
        return Some(());
    };
    let index = parts.get(i + 2)?;
    let (_, field) = STEM_LAYERS.iter().find(|(k, _)| k == index)?;
    parts.splice(i + 1..i + 3, ["stem".to_string(), field.to_string()]);
    match parts.get(i + 3).map(String::as_str) {
        Some("IN") => {
            parts[i + 3] = "instance".into();
            let last = parts.len() - 1;
            parts[last] = match parts[last].as_str() {
                "weight" => "gamma".into(),
                "bias" => "beta".into(),
                other => other.to_string(),
            };
        }
        Some("BN") => parts[i + 3] = "batch".into(),
        _ => {}
    }
    Some(())
}

/// The inverse of [`stem_to_model`].
fn stem_to_reference(parts: &mut Vec<String>) {
    let Some(i) = parts
        .windows(2)
        .position(|w| w[0] == "patch_embed" && w[1] == "stem")
    else {
        return;
    };
    let Some((index, _)) = STEM_LAYERS
        .iter()
        .find(|(_, f)| parts.get(i + 2).map(String::as_str) == Some(*f))
    else {
        return;
    };
    parts.splice(i + 1..i + 3, ["conv".to_string(), index.to_string()]);
    match parts.get(i + 3).map(String::as_str) {
        Some("instance") => {
            parts[i + 3] = "IN".into();
            let last = parts.len() - 1;
            parts[last] = match parts[last].as_str() {
                "gamma" => "weight".into(),
                "beta" => "bias".into(),
                other => other.to_string(),
            };
        }
        Some("batch") => parts[i + 3] = "BN".into(),
        _ => {}
    }
}

/// The inverse of [`model_path`].
pub fn reference_key(path: &str) -> String {
    if let Some(key) = crate::clip_weights::clip_reid_reference_key(path) {
        return key;
    }
    let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
    rename_layer_norm(&mut parts, [("gamma", "weight"), ("beta", "bias")]);
    match parts[0].as_str() {
        "b1" | "b2" => {
            parts[1] = if parts[1] == "block" {
                "0".into()
            } else {
                "1".into()
            };
        }
        "bottlenecks" | "classifiers" => {
            let reference = if parts[0] == "bottlenecks" {
                "bottleneck"
            } else {
                "classifier"
            };
            let name = match parts[1].as_str() {
                "0" => reference.to_string(),
                k => format!("{reference}_{k}"),
            };
            parts.splice(0..2, [name]);
        }
        _ => {}
    }
    stem_to_reference(&mut parts);
    parts.join(".")
}

fn rename_layer_norm(parts: &mut [String], renames: [(&str, &str); 2]) {
    let n = parts.len();
    let is_norm = n >= 2
        && (matches!(parts[n - 2].as_str(), "norm1" | "norm2" | "norm")
            || (n == 3
                && matches!(parts[0].as_str(), "b1" | "b2")
                && matches!(parts[1].as_str(), "1" | "norm")));
    if is_norm {
        for (from, to) in renames {
            if parts[n - 1] == from {
                parts[n - 1] = to.to_string();
            }
        }
    }
}

/// Whether a reference key is a Linear weight (stored `[out, in]` by PyTorch, `[in, out]` by Burn).
fn is_linear_weight(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    let n = parts.len();
    n >= 2
        && parts[n - 1] == "weight"
        && (matches!(parts[n - 2], "qkv" | "fc1" | "fc2")
            || (parts[n - 2] == "proj" && n >= 3 && parts[n - 3] == "attn")
            || branch_module(parts[0], "classifier").is_some())
}

/// The model's parameters in reference names with PyTorch layouts.
pub fn export_state_dict<B: Backend>(model: &TransReid<B>) -> StateDict {
    reference_state_dict(model, is_linear_weight)
}

/// A module's tensors by reference name ([`reference_key`]), those whose name `linear` accepts
/// transposed to PyTorch's `[out, in]`.
pub(crate) fn reference_state_dict<B: Backend, M: ModuleSnapshot<B>>(
    model: &M,
    linear: impl Fn(&str) -> bool,
) -> StateDict {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|snapshot| {
            let data = snapshot.to_data().expect("model tensors are readable");
            let tensor =
                HostTensor::new(data.shape.to_vec(), data.convert::<f32>().to_vec().unwrap());
            let key = reference_key(&snapshot.full_path());
            let tensor = if linear(&key) {
                tensor.transposed()
            } else {
                tensor
            };
            (key, tensor)
        })
        .collect()
}

/// Loads reference-named tensors into the model. `expected` says which model paths the
/// checkpoint must provide.
fn apply_state_dict<B: Backend>(
    model: &mut TransReid<B>,
    dict: StateDict,
    expected: impl Fn(&str) -> bool,
    options: ImportOptions,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let shapes: BTreeMap<String, Vec<usize>> = model
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect();
    let mut snapshots = Vec::new();
    let mut provided = std::collections::BTreeSet::new();
    for (key, tensor) in dict {
        let Some(path) = model_path(&key) else {
            continue;
        };
        let Some(shape) = shapes.get(&path) else {
            report.unexpected.push(key);
            continue;
        };
        let file_shape = tensor.shape.clone();
        let tensor = if is_linear_weight(&key) && tensor.shape.len() == 2 {
            tensor.transposed()
        } else {
            tensor
        };
        provided.insert(path.clone());
        if &tensor.shape != shape {
            // Both shapes as PyTorch lays them out (Linear weights `[out, in]`), as in the file.
            let mut model_shape = shape.clone();
            if is_linear_weight(&key) {
                model_shape.reverse();
            }
            report.mismatched.push((key, model_shape, file_shape));
            continue;
        }
        let path_stack = path.split('.').map(str::to_string).collect();
        let data = TensorData::new(tensor.data, tensor.shape);
        snapshots.push(TensorSnapshot::from_data(
            data,
            path_stack,
            Vec::new(),
            ParamId::new(),
        ));
        report.loaded.push(key);
    }
    report.missing = shapes
        .keys()
        .filter(|p| expected(p) && !provided.contains(*p))
        .map(|p| reference_key(p))
        .collect();
    if !options.allow_partial {
        if let Some((key, expected, got)) = report.mismatched.first().cloned() {
            return Err(ImportError::ShapeMismatch { key, expected, got });
        }
        if !report.missing.is_empty() {
            return Err(ImportError::MissingKeys(report.missing.clone()));
        }
        if !report.unexpected.is_empty() {
            return Err(ImportError::UnexpectedKeys(report.unexpected.clone()));
        }
    }
    let result = model.apply(snapshots, None, None, false);
    debug_assert!(result.errors.is_empty(), "{:?}", result.errors);
    Ok(())
}

/// Loads pretrained weights of any supported layout, decided by the keys (never the file
/// name): a timm / Hugging Face ViT backbone, a DINO / iBOT training checkpoint's teacher
/// (PersonViT, TransReID-SSL) or a trained TransReID in the reference's layout. A file whose
/// keys contradict `kind` is refused with the kind to use ([`ImportError::KindMismatch`]).
///
/// Backbones load as [`load_backbone_dict`] describes (`pretrain_grid`: the patch grid their
/// position embedding was trained at); reference checkpoints as [`load_reference_dict`]. Only the kept tensors are read from the file, so a training
/// checkpoint's student, optimiser and loss state are never materialised.
pub fn load_pretrained<B: Backend>(
    model: &mut TransReid<B>,
    path: &Path,
    kind: WeightKind,
    pretrain_grid: PretrainGrid,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let file = CheckpointFile::open(path)?;
    let detected = detect_layout(&file.keys())?;
    if !kind.accepts(detected.layout) {
        return Err(ImportError::KindMismatch {
            requested: kind,
            detected: detected.layout,
        });
    }
    let mut report = if detected.layout == WeightLayout::Reference {
        load_reference_dict(model, file.state_dict()?, options)?
    } else {
        load_backbone_dict(
            model,
            read_backbone(&file, &detected)?,
            pretrain_grid,
            options,
        )?
    };
    report.layout = Some(detected.layout);
    Ok(report)
}

/// Loads ImageNet ViT / DeiT weights (timm key names, as in timm / Hugging Face safetensors and
/// the original `.pth` files; Hugging Face `transformers` ViT files too): [`load_pretrained`]
/// with [`WeightKind::Imagenet`] and a square pretraining grid.
pub fn load_imagenet<B: Backend>(
    model: &mut TransReid<B>,
    path: &Path,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    load_pretrained(
        model,
        path,
        WeightKind::Imagenet,
        PretrainGrid::default(),
        options,
    )
}

/// Loads a backbone in timm's key names into the model, the way the reference's `load_param`
/// does:
///
/// - a `dist_token` (DeiT distilled) also removes token 1 of `pos_embed`;
/// - a flattened `patch_embed.proj.weight` is reshaped to `[D, C, k, k]`;
/// - `pos_embed` is resized to the model's patch grid when its token count differs, from the
///   grid `pretrain_grid` gives (bilinear, align_corners false); equal counts are kept;
/// - then the last block and final norm are copied into the JPM branches `b1` / `b2`.
///
/// Every backbone parameter except `sie_embed` must be present, with its shape. The embedding
/// width and the ICS stem are checked first, so a wrong preset is named as such.
pub fn load_backbone_dict<B: Backend>(
    model: &mut TransReid<B>,
    dict: StateDict,
    pretrain_grid: PretrainGrid,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let distilled = dict.contains_key("dist_token");
    report.dropped_dist_token = distilled;
    let dim = model.base.cls_token.dims()[2];
    if let Some(width) = dict.get("cls_token").and_then(|t| t.shape.last()) {
        if *width != dim {
            return Err(ImportError::EmbedWidth {
                checkpoint: *width,
                model: dim,
            });
        }
    }
    let checkpoint_has_stem = dict.keys().any(|k| k.starts_with("patch_embed.conv."));
    if checkpoint_has_stem != model.base.patch_embed.stem.is_some() {
        return Err(ImportError::StemMismatch {
            checkpoint_has_stem,
        });
    }
    let [_, channels, kernel, _] = model.base.patch_embed.proj.weight.dims();
    let target_tokens = model.base.pos_embed.dims()[1];
    let mut base = StateDict::new();
    for (key, mut tensor) in dict {
        if key == "dist_token" {
            continue;
        }
        if key == "patch_embed.proj.weight" && tensor.shape.len() < 4 {
            let Some(&d) = tensor.shape.first() else {
                return Err(ImportError::ShapeMismatch {
                    key,
                    expected: vec![dim, channels, kernel, kernel],
                    got: tensor.shape,
                });
            };
            tensor.shape = vec![d, channels, kernel, kernel];
            if tensor.shape.iter().product::<usize>() != tensor.data.len() {
                return Err(ImportError::ShapeMismatch {
                    key,
                    expected: tensor.shape,
                    got: vec![d, tensor.data.len() / d.max(1)],
                });
            }
        }
        if key == "pos_embed" && tensor.shape.get(1) != Some(&target_tokens) {
            // `[1, tokens, dim]`: the class token, the distillation token if any, and at least
            // one patch to resize from.
            let leading = 1 + usize::from(distilled);
            let from = match tensor.shape[..] {
                [1, from, width] if width == dim && from > leading => from,
                _ => {
                    return Err(ImportError::ShapeMismatch {
                        key,
                        expected: vec![1, target_tokens, dim],
                        got: tensor.shape,
                    })
                }
            };
            let mut data = tensor.data;
            if distilled {
                data.drain(dim..2 * dim);
            }
            let source = pretrain_grid.grid(data.len() / dim - 1)?;
            let grid = model.base.patch_embed.grid();
            let resized = resize_pos_embed_grid(&data, dim, 1, source, grid);
            report.pos_embed_resized = Some((from, target_tokens));
            tensor = HostTensor::new(vec![1, resized.len() / dim, dim], resized);
        }
        base.insert(format!("base.{key}"), tensor);
    }
    apply_state_dict(
        model,
        base,
        |p| p.starts_with("base.") && p != "base.sie_embed",
        options,
        &mut report,
    )?;
    model.copy_last_block_into_branches();
    Ok(report)
}

/// Loads a trained TransReID checkpoint in the reference's state-dict layout (`base.*`, `b1.*`,
/// `b2.*`, `bottleneck*`, `classifier*`; `.pth` or `.safetensors`, `module.` prefixes allowed).
/// The unused `base.fc` and `num_batches_tracked` entries are ignored. Strict unless
/// `options.allow_partial`.
pub fn load_reference<B: Backend>(
    model: &mut TransReid<B>,
    path: &Path,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let (dict, _) = read_state_dict(path)?;
    let mut report = load_reference_dict(model, dict, options)?;
    report.layout = Some(WeightLayout::Reference);
    Ok(report)
}

/// The reference's name of the SIE table.
const SIE_KEY: &str = "base.sie_embed";

/// [`load_reference`] from tensors already in memory.
///
/// # Errors
/// [`ImportError::SieRows`] when the file's SIE table has another row count than the model's
/// (or one of them has none); the key, shape and layout errors of strict loading otherwise.
pub fn load_reference_dict<B: Backend>(
    model: &mut TransReid<B>,
    dict: StateDict,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    // The table's rows cannot say how they split into cameras and views, so the count must be
    // the model's (cameras x views as configured), even when a partial load is allowed.
    let sie = model.sie();
    let file_rows = dict
        .get(SIE_KEY)
        .map(|t| t.shape.first().copied().unwrap_or(0));
    if file_rows != sie.table_len() {
        return Err(ImportError::SieRows {
            file: file_rows,
            model: sie.table_len(),
            layout: sie.describe(),
        });
    }
    let dict = dict
        .into_iter()
        .filter(|(k, _)| !k.starts_with("base.fc."))
        .collect();
    apply_state_dict(model, dict, |_| true, options, &mut report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names_map_both_ways() {
        let cases = [
            (
                "base.blocks.3.attn.qkv.weight",
                "base.blocks.3.attn.qkv.weight",
            ),
            ("base.blocks.0.norm1.weight", "base.blocks.0.norm1.gamma"),
            ("base.norm.bias", "base.norm.beta"),
            ("b1.0.norm2.bias", "b1.block.norm2.beta"),
            ("b2.1.weight", "b2.norm.gamma"),
            ("b2.0.mlp.fc1.weight", "b2.block.mlp.fc1.weight"),
            ("bottleneck.running_var", "bottlenecks.0.running_var"),
            ("bottleneck_3.weight", "bottlenecks.3.weight"),
            ("classifier_4.weight", "classifiers.4.weight"),
            ("base.sie_embed", "base.sie_embed"),
        ];
        for (reference, ours) in cases {
            assert_eq!(model_path(reference).as_deref(), Some(ours));
            assert_eq!(reference_key(ours), reference);
        }
        assert_eq!(model_path("bottleneck_1.num_batches_tracked"), None);
        assert_eq!(model_path("base.patch_embed.conv.2.weight"), None);
    }

    #[test]
    fn ics_stem_names_map_both_ways() {
        let cases = [
            (
                "base.patch_embed.conv.0.weight",
                "base.patch_embed.stem.conv1.weight",
            ),
            (
                "base.patch_embed.conv.1.IN.weight",
                "base.patch_embed.stem.ibn1.instance.gamma",
            ),
            (
                "base.patch_embed.conv.1.IN.bias",
                "base.patch_embed.stem.ibn1.instance.beta",
            ),
            (
                "base.patch_embed.conv.4.BN.running_var",
                "base.patch_embed.stem.ibn2.batch.running_var",
            ),
            (
                "base.patch_embed.conv.4.BN.weight",
                "base.patch_embed.stem.ibn2.batch.weight",
            ),
            (
                "base.patch_embed.conv.6.weight",
                "base.patch_embed.stem.conv3.weight",
            ),
            (
                "base.patch_embed.conv.7.bias",
                "base.patch_embed.stem.bn.bias",
            ),
            (
                "base.patch_embed.proj.weight",
                "base.patch_embed.proj.weight",
            ),
        ];
        for (reference, ours) in cases {
            assert_eq!(model_path(reference).as_deref(), Some(ours));
            assert_eq!(reference_key(ours), reference);
        }
        assert_eq!(
            model_path("base.patch_embed.conv.7.num_batches_tracked"),
            None
        );
    }

    #[test]
    fn linear_weights_are_recognised() {
        assert!(is_linear_weight("base.blocks.0.attn.proj.weight"));
        assert!(is_linear_weight("classifier_2.weight"));
        assert!(is_linear_weight("b1.0.mlp.fc2.weight"));
        assert!(!is_linear_weight("base.patch_embed.proj.weight"));
        assert!(!is_linear_weight("base.blocks.0.attn.qkv.bias"));
        assert!(!is_linear_weight("bottleneck.weight"));
    }
}
