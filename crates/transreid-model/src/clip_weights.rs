//! OpenAI / open_clip CLIP image-tower weights (`visual.*`) into a [`ClipVision`].

use std::collections::{BTreeMap, BTreeSet};

use burn::module::ParamId;
use burn::prelude::*;
use burn_store::{ModuleSnapshot, TensorSnapshot};

use crate::clip_vision::ClipVision;
use crate::error::ImportError;
use crate::pos_embed::resize_pos_embed;
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
/// (bilinear, `align_corners = false`), also when the grids are equal, as CLIP-ReID does.
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
    let shapes: BTreeMap<String, Vec<usize>> = model
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect();
    let mut snapshots = Vec::new();
    let mut provided = BTreeSet::new();
    let mut unexpected = Vec::new();
    for (key, tensor) in dict {
        let Some(short) = key.strip_prefix(prefix) else {
            continue;
        };
        let Some((path, linear)) = clip_vision_path(short) else {
            unexpected.push(key.clone());
            continue;
        };
        let Some(shape) = shapes.get(&path) else {
            unexpected.push(key.clone());
            continue;
        };
        let mut tensor: HostTensor = if linear && tensor.shape.len() == 2 {
            tensor.transposed()
        } else {
            tensor.clone()
        };
        if path == "positional_embedding" && tensor.shape.len() == 2 && tensor.shape != *shape {
            let dim = shape[1];
            if tensor.shape[1] == dim {
                let data = resize_pos_embed(&tensor.data, dim, 1, model.grid())?;
                tensor = HostTensor::new(vec![data.len() / dim, dim], data);
            }
        }
        if tensor.shape != *shape {
            let mut expected = shape.clone();
            if linear {
                expected.reverse();
            }
            return Err(ImportError::ShapeMismatch {
                key: key.clone(),
                expected,
                got: dict[key].shape.clone(),
            });
        }
        provided.insert(path.clone());
        snapshots.push(TensorSnapshot::from_data(
            TensorData::new(tensor.data, tensor.shape),
            path.split('.').map(str::to_string).collect(),
            Vec::new(),
            ParamId::new(),
        ));
    }
    if !unexpected.is_empty() {
        return Err(ImportError::UnexpectedKeys(unexpected));
    }
    let missing: Vec<String> = openai_keys(model.blocks.len())
        .into_iter()
        .filter(|k| !provided.contains(&clip_vision_path(k).expect("a tower key").0))
        .map(|k| format!("{prefix}{k}"))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::MissingKeys(missing));
    }
    let result = model.apply(snapshots, None, None, false);
    debug_assert!(result.errors.is_empty(), "{:?}", result.errors);
    Ok(())
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
