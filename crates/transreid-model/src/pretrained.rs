//! Weight import: ImageNet ViT / DeiT backbones (timm layout) and the reference's trained
//! TransReID checkpoints, with strict, typed checks.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::ParamId;
use burn::prelude::*;
use burn_store::{ModuleSnapshot, TensorSnapshot};

use crate::error::ImportError;
use crate::pos_embed::resize_pos_embed;
use crate::state_dict::{read_state_dict, HostTensor, StateDict};
use crate::transreid::TransReid;

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
    Some(parts.join("."))
}

/// The inverse of [`model_path`].
pub fn reference_key(path: &str) -> String {
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
    model
        .collect(None, None, false)
        .into_iter()
        .map(|snapshot| {
            let path = snapshot.full_path();
            let data = snapshot.to_data().expect("model tensors are readable");
            let tensor =
                HostTensor::new(data.shape.to_vec(), data.convert::<f32>().to_vec().unwrap());
            let key = reference_key(&path);
            let tensor = if is_linear_weight(&key) {
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
        let tensor = if is_linear_weight(&key) && tensor.shape.len() == 2 {
            tensor.transposed()
        } else {
            tensor
        };
        provided.insert(path.clone());
        if &tensor.shape != shape {
            report.mismatched.push((key, shape.clone(), tensor.shape));
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

/// Loads ImageNet ViT / DeiT weights (timm key names, as in timm / Hugging Face safetensors and
/// the original `.pth` files) into the backbone, the way the reference's `load_param` does:
///
/// - unwraps `model` / `state_dict` / `teacher` wrappers and a `module.` prefix;
/// - drops every key containing `head` or `dist`; a `dist_token` in the checkpoint (DeiT
///   distilled) also removes token 1 of `pos_embed`, decided by the keys, not the file name;
/// - reshapes a flattened `patch_embed.proj.weight` to `[D, 3, 16, 16]`;
/// - resizes `pos_embed` to the model's patch grid ([`resize_pos_embed`]);
/// - then copies the last block and final norm into the JPM branches `b1` / `b2`.
///
/// Every backbone parameter except `sie_embed` must be present, with its shape.
pub fn load_imagenet<B: Backend>(
    model: &mut TransReid<B>,
    path: &Path,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let (dict, _) = read_state_dict(path)?;
    let mut report = ImportReport::default();
    let distilled = dict.contains_key("dist_token");
    report.dropped_dist_token = distilled;
    let dim = model.base.cls_token.dims()[2];
    let patch = model.base.patch_embed.proj.weight.dims()[2];
    let target_tokens = model.base.pos_embed.dims()[1];
    let mut base = StateDict::new();
    for (key, mut tensor) in dict {
        if key.contains("head") || key.contains("dist") {
            continue;
        }
        if key == "patch_embed.proj.weight" && tensor.shape.len() < 4 {
            let d = tensor.shape[0];
            tensor.shape = vec![d, tensor.data.len() / (d * patch * patch), patch, patch];
        }
        if key == "pos_embed" && tensor.shape.get(1) != Some(&target_tokens) {
            let from = tensor.shape[1];
            let mut data = tensor.data;
            if distilled {
                data.drain(dim..2 * dim);
            }
            let grid = model.base.patch_embed.grid();
            let resized = resize_pos_embed(&data, dim, 1, grid)?;
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
    load_reference_dict(model, dict, options)
}

/// [`load_reference`] from tensors already in memory.
pub fn load_reference_dict<B: Backend>(
    model: &mut TransReid<B>,
    dict: StateDict,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
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
