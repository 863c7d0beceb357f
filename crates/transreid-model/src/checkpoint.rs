//! Our checkpoint format: a safetensors file in the reference's state-dict layout (PyTorch
//! users load it with `safetensors.torch.load_file` and the reference's `load_param`), with the
//! model configuration as JSON in the metadata.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;

use crate::error::ImportError;
use crate::input_spec::{InputSpec, INPUT_METADATA_KEY};
use crate::pretrained::{export_state_dict, load_reference_dict, ImportOptions};
use crate::state_dict::{write_safetensors, CheckpointFile};
use crate::transreid::{TransReid, TransReidConfig};
use crate::weight_layout::detect_layout;

/// Metadata key holding the [`TransReidConfig`] JSON.
pub const CONFIG_METADATA_KEY: &str = "transreid.config";

/// Key prefix of the optimiser state in training state files, which are not checkpoints.
const STATE_OPTIMIZER_PREFIX: &str = "optimizer.";

/// Saves the model and its configuration atomically (temporary file, then rename), without an
/// [`InputSpec`]: prefer [`save_checkpoint_with_input`], whose files need no normalisation to be
/// given or guessed when they are used.
pub fn save_checkpoint<B: Backend>(
    model: &TransReid<B>,
    config: &TransReidConfig,
    path: &Path,
) -> Result<(), ImportError> {
    write_checkpoint(model, config, None, BTreeMap::new(), path)
}

/// Saves the model, its configuration and its test-time input atomically.
pub fn save_checkpoint_with_input<B: Backend>(
    model: &TransReid<B>,
    config: &TransReidConfig,
    input: &InputSpec,
    path: &Path,
) -> Result<(), ImportError> {
    save_checkpoint_with_metadata(model, config, input, BTreeMap::new(), path)
}

/// [`save_checkpoint_with_input`] with further safetensors metadata (e.g. how the file was
/// made: `transreid import` records the seed of the weights it did not import).
pub fn save_checkpoint_with_metadata<B: Backend>(
    model: &TransReid<B>,
    config: &TransReidConfig,
    input: &InputSpec,
    extra: BTreeMap<String, String>,
    path: &Path,
) -> Result<(), ImportError> {
    if let Some(message) = input.mismatch(config) {
        return Err(ImportError::Config {
            path: path.to_path_buf(),
            message,
        });
    }
    write_checkpoint(model, config, Some(input), extra, path)
}

fn write_checkpoint<B: Backend>(
    model: &TransReid<B>,
    config: &TransReidConfig,
    input: Option<&InputSpec>,
    mut metadata: BTreeMap<String, String>,
    path: &Path,
) -> Result<(), ImportError> {
    let json = serde_json::to_string(config).expect("config serialises");
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(CONFIG_METADATA_KEY.to_string(), json);
    if let Some(input) = input {
        let json = serde_json::to_string(input).expect("input spec serialises");
        metadata.insert(INPUT_METADATA_KEY.to_string(), json);
    }
    write_safetensors(path, &export_state_dict(model), metadata)
}

/// Writes the model's weights in the reference's state-dict layout (PyTorch `[out, in]` Linear
/// weights, `bottleneck_k` / `classifier_k` names) as safetensors, without our metadata.
pub fn export_reference<B: Backend>(model: &TransReid<B>, path: &Path) -> Result<(), ImportError> {
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(path, &export_state_dict(model), metadata)
}

/// Loads a checkpoint written by [`save_checkpoint`]: builds the model from the stored
/// configuration and loads every tensor strictly.
pub fn load_checkpoint<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(TransReid<B>, TransReidConfig), ImportError> {
    let (model, config, _) = load_checkpoint_with_input(path, device)?;
    Ok((model, config))
}

/// [`load_checkpoint`], also returning the stored [`InputSpec`] (`None` for files written
/// without one, e.g. by older versions).
pub fn load_checkpoint_with_input<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(TransReid<B>, TransReidConfig, Option<InputSpec>), ImportError> {
    // Keys as stored (wrappers kept), so the file is named as `import` names it; tensors are
    // converted only once the file is known to be a checkpoint.
    let file = CheckpointFile::open(path)?;
    let keys = file.keys();
    let metadata = file.metadata();
    let config_error = |message: String| ImportError::Config {
        path: path.to_path_buf(),
        message,
    };
    let not_a_checkpoint = |what: String| ImportError::NotACheckpoint {
        path: path.to_path_buf(),
        what,
    };
    // Our training states carry the configuration and the optimiser's buffers; other files
    // with `optimizer.*` keys (DINO training checkpoints) are named by their layout below.
    if metadata.contains_key(CONFIG_METADATA_KEY)
        && keys.iter().any(|k| k.starts_with(STATE_OPTIMIZER_PREFIX))
    {
        return Err(not_a_checkpoint(
            "a training state (model and optimiser, for `transreid train --resume <run folder>`); \
             use checkpoint.safetensors of the same run folder"
                .into(),
        ));
    }
    if metadata.contains_key(crate::clip_checkpoint::CLIP_REID_CONFIG_METADATA_KEY) {
        return Err(not_a_checkpoint(
            "a CLIP-ReID checkpoint, which `eval`, `embed`, `search`, `export` and `explain` \
             read (in the library: load_any_checkpoint)"
                .into(),
        ));
    }
    let Some(json) = metadata.get(CONFIG_METADATA_KEY) else {
        let what = match detect_layout(&keys) {
            Ok(detected) => format!(
                ": the file is {}; make a checkpoint of it with `transreid import --source {}`",
                detected.layout,
                path.display()
            ),
            Err(_) => String::new(),
        };
        return Err(config_error(format!(
            "no `{CONFIG_METADATA_KEY}` metadata{what}"
        )));
    };
    let config: TransReidConfig =
        serde_json::from_str(json).map_err(|e| config_error(e.to_string()))?;
    config.validate().map_err(|e| config_error(e.to_string()))?;
    let input = metadata
        .get(INPUT_METADATA_KEY)
        .map(|json| serde_json::from_str::<InputSpec>(json))
        .transpose()
        .map_err(|e| config_error(format!("`{INPUT_METADATA_KEY}` metadata: {e}")))?;
    if let Some(message) = input.as_ref().and_then(|i| i.mismatch(&config)) {
        return Err(config_error(message));
    }
    let mut model = config.init::<B>(device);
    load_reference_dict(&mut model, file.state_dict()?, ImportOptions::default())?;
    Ok((model, config, input))
}
