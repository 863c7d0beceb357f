//! CLIP-ReID checkpoints: a safetensors file in the reference's state-dict layout with the
//! [`ClipReidConfig`] and the test-time input as JSON in the metadata, like TransReID's.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;

use crate::clip_reid::{ClipReid, ClipReidConfig};
use crate::clip_weights::{clip_reid_state_dict, load_clip_reid};
use crate::error::ImportError;
use crate::input_spec::{InputSpec, INPUT_METADATA_KEY};
use crate::state_dict::{read_state_dict, write_safetensors};

/// Metadata key holding the [`ClipReidConfig`] JSON.
pub const CLIP_REID_CONFIG_METADATA_KEY: &str = "transreid.clip_reid_config";

/// Saves the model, its configuration and its test-time input atomically.
///
/// # Errors
/// [`ImportError::Config`] when `input`'s size is not the model's, or its normalisation is
/// unusable; [`ImportError::Io`] when the file cannot be written.
pub fn save_clip_reid_checkpoint<B: Backend>(
    model: &ClipReid<B>,
    config: &ClipReidConfig,
    input: &InputSpec,
    path: &Path,
) -> Result<(), ImportError> {
    save_clip_reid_checkpoint_with_metadata(model, config, input, BTreeMap::new(), path)
}

/// [`save_clip_reid_checkpoint`] with `extra` metadata entries (how the file was made).
///
/// # Errors
/// As [`save_clip_reid_checkpoint`].
pub fn save_clip_reid_checkpoint_with_metadata<B: Backend>(
    model: &ClipReid<B>,
    config: &ClipReidConfig,
    input: &InputSpec,
    extra: BTreeMap<String, String>,
    path: &Path,
) -> Result<(), ImportError> {
    let config_error = |message: String| ImportError::Config {
        path: path.to_path_buf(),
        message,
    };
    let usable = input.mean.iter().chain(&input.std).all(|v| v.is_finite())
        && input.std.iter().all(|&s| s > 0.0);
    if !usable {
        return Err(config_error(format!(
            "input normalisation mean {:?} std {:?} is not usable (std must be positive)",
            input.mean, input.std
        )));
    }
    let size = config.vision.img_size;
    if [input.height, input.width] != size {
        return Err(config_error(format!(
            "input size {}x{} differs from the model's {}x{}",
            input.height, input.width, size[0], size[1]
        )));
    }
    let mut metadata = extra;
    metadata.extend([
        ("format".to_string(), "pt".to_string()),
        (
            CLIP_REID_CONFIG_METADATA_KEY.to_string(),
            serde_json::to_string(config).expect("config serialises"),
        ),
        (
            INPUT_METADATA_KEY.to_string(),
            serde_json::to_string(input).expect("input spec serialises"),
        ),
    ]);
    write_safetensors(path, &clip_reid_state_dict(model), metadata)
}

/// Loads a checkpoint written by [`save_clip_reid_checkpoint`]: builds the model from the
/// stored configuration and loads every tensor strictly.
///
/// # Errors
/// [`ImportError::Config`] for a file without (or with an unreadable) CLIP-ReID
/// configuration, and the errors of [`load_clip_reid`].
pub fn load_clip_reid_checkpoint<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(ClipReid<B>, ClipReidConfig, Option<InputSpec>), ImportError> {
    let (dict, metadata) = read_state_dict(path)?;
    let config_error = |message: String| ImportError::Config {
        path: path.to_path_buf(),
        message,
    };
    let json = metadata.get(CLIP_REID_CONFIG_METADATA_KEY).ok_or_else(|| {
        config_error(format!(
            "not a CLIP-ReID checkpoint: no `{CLIP_REID_CONFIG_METADATA_KEY}` metadata"
        ))
    })?;
    let config: ClipReidConfig =
        serde_json::from_str(json).map_err(|e| config_error(e.to_string()))?;
    config.validate().map_err(|e| config_error(e.to_string()))?;
    let input = match metadata.get(INPUT_METADATA_KEY) {
        Some(json) => Some(serde_json::from_str(json).map_err(|e| config_error(e.to_string()))?),
        None => None,
    };
    let mut model = config.init(device);
    let skipped = load_clip_reid(&mut model, &dict)?;
    if !skipped.is_empty() {
        return Err(ImportError::UnexpectedKeys(skipped));
    }
    Ok((model, config, input))
}
