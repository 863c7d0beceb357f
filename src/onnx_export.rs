//! A checkpoint (TransReID or CLIP-ReID) as an ONNX file for onnxruntime, TensorRT and OpenVINO, with a JSON sidecar
//! holding the same metadata (the input contract, the feature layout, where the weights came
//! from): what `transreid export` runs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use sha2::{Digest, Sha256};
use transreid_data::Normalization;
use transreid_model::onnx::{export_clip_reid_onnx, export_onnx, OnnxError, OnnxOptions};
use transreid_model::{load_any_checkpoint, AnyReidConfig, AnyReidModel, ImportError};

use crate::input_normalization::{
    resolve_normalization, NormalizationError, NormalizationSource, ResolvedNormalization,
};
use crate::output_path::{check_output, OutputPathError};

pub use transreid_model::onnx::{ChannelOrder, OnnxInput, OnnxPrecision};

/// Why an export failed; nothing is written in any case.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output (or its sidecar) cannot be written where asked.
    #[error(transparent)]
    Output(#[from] OutputPathError),
    /// The checkpoint cannot be loaded (or is not a checkpoint: it says what it is).
    #[error("{source}")]
    Checkpoint {
        /// The checkpoint.
        path: PathBuf,
        /// Why.
        source: ImportError,
    },
    /// The checkpoint's input normalisation cannot be found.
    #[error(transparent)]
    Normalization(#[from] NormalizationError),
    /// The model cannot be exported as asked.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// Reading the checkpoint's bytes (for its hash) or writing an output failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// `reading` or `writing`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How the graph is fed, as `transreid export` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSettings {
    /// The `images` input.
    pub input: OnnxInput,
    /// Its channel order.
    pub channel_order: ChannelOrder,
    /// The graph's arithmetic.
    pub precision: OnnxPrecision,
    /// A camera id baked in instead of a `camera` input.
    pub camera: Option<i64>,
    /// A view id baked in instead of a `view` input.
    pub view: Option<i64>,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The `.onnx` file.
    pub onnx: PathBuf,
    /// The JSON sidecar beside it.
    pub sidecar: PathBuf,
    /// Size of the `.onnx` file in bytes.
    pub bytes: usize,
    /// The metadata written into both.
    pub metadata: BTreeMap<String, String>,
    /// The exported model's configuration.
    pub config: AnyReidConfig,
    /// The input normalisation in the graph and where it came from.
    pub normalization: ResolvedNormalization,
}

/// The sidecar of an `.onnx` file: `model.onnx` -> `model.onnx.json`.
pub fn sidecar_path(onnx: &Path) -> PathBuf {
    let mut name = onnx.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Exports `checkpoint` (written by `train`, `demo` or `import`) to `out` and its sidecar.
/// The outputs are checked before the checkpoint is read, and written through temporary files
/// renamed into place. `normalization` overrides the one the checkpoint records.
pub fn export_checkpoint<B: Backend>(
    checkpoint: &Path,
    out: &Path,
    settings: ExportSettings,
    normalization: Option<Normalization>,
    device: &B::Device,
) -> Result<Exported, ExportError> {
    let sidecar = sidecar_path(out);
    check_output(out, "onnx", &[checkpoint])?;
    check_output(&sidecar, "json", &[checkpoint])?;

    let (model, config, input) =
        load_any_checkpoint::<B>(checkpoint, device).map_err(|source| ExportError::Checkpoint {
            path: checkpoint.to_path_buf(),
            source,
        })?;
    let resolved = resolve_normalization(checkpoint, input.as_ref(), normalization)?;
    let Normalization { mean, std } = resolved.normalization;
    let options = OnnxOptions {
        input: settings.input,
        channel_order: settings.channel_order,
        precision: settings.precision,
        camera: settings.camera,
        view: settings.view,
        mean,
        std,
    };
    let name = checkpoint
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let extra = BTreeMap::from([
        ("transreid.checkpoint".to_string(), name),
        (
            "transreid.checkpoint_sha256".into(),
            sha256_hex(checkpoint)?,
        ),
        (
            "transreid.normalization_source".into(),
            source_name(&resolved.source),
        ),
    ]);
    let exported = match (&model, &config) {
        (AnyReidModel::TransReid(m), AnyReidConfig::TransReid(c)) => {
            export_onnx(m, c, &options, &extra)?
        }
        (AnyReidModel::ClipReid(m), AnyReidConfig::ClipReid(c)) => {
            export_clip_reid_onnx(m, c, &options, &extra)?
        }
        _ => unreachable!("load_any_checkpoint pairs a model with its configuration"),
    };
    let json = serde_json::to_string_pretty(&exported.metadata).expect("strings serialise");
    write_atomic(out, &exported.bytes)?;
    write_atomic(&sidecar, format!("{json}\n").as_bytes())?;
    Ok(Exported {
        onnx: out.to_path_buf(),
        sidecar,
        bytes: exported.bytes.len(),
        metadata: exported.metadata,
        config,
        normalization: resolved,
    })
}

/// A `trtexec` line building a TensorRT engine with a dynamic-batch profile of 1 / 16 / 64.
pub fn trtexec_command(exported: &Exported) -> String {
    let [h, w] = exported.config.input_size();
    let shape = |batch: usize| match exported.metadata.get("transreid.input.layout") {
        Some(layout) if layout == "NHWC" => format!("images:{batch}x{h}x{w}x3"),
        _ => format!("images:{batch}x3x{h}x{w}"),
    };
    let shapes = |flag: &str, batch: usize| {
        let mut s = format!("--{flag}Shapes={}", shape(batch));
        for side in ["camera", "view"] {
            let key = format!("transreid.sie.{side}");
            if exported
                .metadata
                .get(&key)
                .is_some_and(|v| v.starts_with("input"))
            {
                s.push_str(&format!(",{side}:{batch}"));
            }
        }
        s
    };
    format!(
        "trtexec --onnx={} {} {} {}",
        exported.onnx.display(),
        shapes("min", 1),
        shapes("opt", 16),
        shapes("max", 64)
    )
}

fn source_name(source: &NormalizationSource) -> String {
    match source {
        NormalizationSource::Given => "given on the command line".into(),
        NormalizationSource::Checkpoint => "the checkpoint".into(),
        NormalizationSource::RunConfig(path) => format!("{}", path.display()),
        NormalizationSource::Default => "default (mean and std 0.5; not recorded)".into(),
    }
}

fn sha256_hex(path: &Path) -> Result<String, ExportError> {
    let io = |source| ExportError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    crate::output_path::write_atomic(path, bytes).map_err(|source| ExportError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_sits_beside_the_model() {
        assert_eq!(
            sidecar_path(Path::new("out/model.onnx")),
            Path::new("out/model.onnx.json")
        );
    }
}
