//! Checkpoint tensors on the host, read from safetensors or PyTorch files.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use burn_store::pytorch::pickle_reader::PickleError;
use burn_store::pytorch::{PytorchError, PytorchReader};
use burn_store::TensorSnapshot;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::error::ImportError;

/// A tensor on the host in f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor from its shape and data.
    ///
    /// # Panics
    /// If the data length does not match the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?}"
        );
        Self { shape, data }
    }

    /// The transpose of a 2-D tensor (PyTorch Linear `[out, in]` <-> Burn `[in, out]`).
    pub fn transposed(&self) -> Self {
        let [rows, cols] = [self.shape[0], self.shape[1]];
        let mut data = vec![0.0; self.data.len()];
        for r in 0..rows {
            for c in 0..cols {
                data[c * rows + r] = self.data[r * cols + c];
            }
        }
        Self {
            shape: vec![cols, rows],
            data,
        }
    }
}

/// Named tensors of a checkpoint, sorted by name.
pub type StateDict = BTreeMap<String, HostTensor>;

/// Wrappers whose content is the state dict (`{'model': ...}`, `{'state_dict': ...}`,
/// DINO-style `{'teacher': ...}`) and the DistributedDataParallel prefix.
const WRAPPERS: [&str; 4] = ["model.", "state_dict.", "teacher.", "module."];

/// Reads a checkpoint, deciding the format by its content: a zip archive or pickle is a
/// PyTorch file, anything else must be safetensors. Wrappers are unwrapped.
pub fn read_state_dict(path: &Path) -> Result<(StateDict, BTreeMap<String, String>), ImportError> {
    let file = CheckpointFile::open(path)?;
    Ok((file.state_dict()?, file.metadata().clone()))
}

/// The metadata of a safetensors file, reading only its header (a training state of ViT-B is a
/// gigabyte; its metadata a few kilobytes).
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_safetensors = |what: &str| corrupt(path, "safetensors", what);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| not_safetensors("shorter than a safetensors header"))?;
    let len = u64::from_le_bytes(len);
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        return Err(not_safetensors("header length beyond the file"));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| not_safetensors("header is not JSON"))?;
    let metadata = header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(metadata)
}

/// A checkpoint opened for reading: its keys are known at once, each tensor is converted only
/// when asked for, so selecting a few keys of a large training file reads only those.
pub struct CheckpointFile {
    path: PathBuf,
    tensors: Tensors,
    metadata: BTreeMap<String, String>,
}

enum Tensors {
    /// burn-store's lazy snapshots: the pickle is parsed, the storages are read on demand.
    Pytorch(HashMap<String, TensorSnapshot>),
    /// The file's bytes; the header is parsed again per tensor (it is small).
    Safetensors(Vec<u8>),
}

impl CheckpointFile {
    /// Opens a PyTorch (zip or legacy pickle) or safetensors file, deciding by the content.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let io = |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        };
        // safetensors: an 8-byte header length, then the JSON header.
        let mut head = [0u8; 9];
        let mut file = std::fs::File::open(path).map_err(io)?;
        let read = file.read(&mut head).map_err(io)?;
        if read == 0 {
            return Err(corrupt(
                path,
                "safetensors or PyTorch",
                "the file is empty (0 bytes)",
            ));
        }
        let is_pytorch = read >= 2 && (head[..2] == *b"PK" || (head[0] == 0x80 && head[8] != b'{'));
        let (tensors, metadata) = if is_pytorch {
            let reader = PytorchReader::new(path).map_err(|e| pytorch_error(path, e))?;
            (Tensors::Pytorch(reader.into_tensors()), BTreeMap::new())
        } else {
            let bytes = std::fs::read(path).map_err(io)?;
            let (_, meta) =
                SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(path, e))?;
            let metadata = meta
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            SafeTensors::deserialize(&bytes).map_err(|e| not_safetensors(path, e))?;
            (Tensors::Safetensors(bytes), metadata)
        };
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// Every tensor name, sorted, wrappers included.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match &self.tensors {
            Tensors::Pytorch(map) => map.keys().cloned().collect(),
            Tensors::Safetensors(bytes) => SafeTensors::deserialize(bytes)
                .map(|t| t.names().into_iter().cloned().collect())
                .unwrap_or_default(),
        };
        keys.sort();
        keys
    }

    /// The safetensors metadata (empty for PyTorch files).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Every tensor as f32, with the wrappers of a reference / TransReID state dict stripped.
    pub fn state_dict(&self) -> Result<StateDict, ImportError> {
        let dict = self
            .keys()
            .into_iter()
            .map(|key| Ok((key.clone(), self.tensor(&key)?)))
            .collect::<Result<StateDict, ImportError>>()?;
        Ok(unwrap(dict))
    }

    /// Reads one tensor as f32.
    pub fn tensor(&self, key: &str) -> Result<HostTensor, ImportError> {
        let path = &self.path;
        let missing = || ImportError::MissingKeys(vec![key.to_string()]);
        match &self.tensors {
            Tensors::Pytorch(map) => {
                let snapshot = map.get(key).ok_or_else(missing)?;
                let data = snapshot
                    .to_data()
                    .map_err(|e| corrupt(path, "PyTorch", format!("{key}: {e:?}")))?;
                let shape = data.shape.to_vec();
                let values = data.convert::<f32>().to_vec::<f32>().map_err(|e| {
                    ImportError::UnsupportedDtype {
                        key: key.to_string(),
                        dtype: format!("{e:?}"),
                    }
                })?;
                Ok(HostTensor::new(shape, values))
            }
            Tensors::Safetensors(bytes) => {
                let tensors =
                    SafeTensors::deserialize(bytes).map_err(|e| not_safetensors(path, e))?;
                let view = tensors.tensor(key).map_err(|_| missing())?;
                Ok(HostTensor::new(
                    view.shape().to_vec(),
                    to_f32(key, view.dtype(), view.data())?,
                ))
            }
        }
    }
}

/// The serialised file with its JSON header written in sorted key order: `safetensors` writes
/// the metadata from a `HashMap`, whose order changes from process to process, so the same
/// tensors and metadata would give different bytes.
fn with_sorted_header(serialized: Vec<u8>, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let len = u64::from_le_bytes(serialized[..8].try_into().expect("8 bytes")) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&serialized[8..8 + len]).expect("safetensors wrote JSON");
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).expect("strings serialise"),
        );
    }
    let mut text = serde_json::to_string(&header).expect("JSON serialises");
    // The format aligns the data that follows the header to 8 bytes.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + serialized.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&serialized[8 + len..]);
    out
}

/// A safetensors parser error in words: what is wrong with the file, not the parser's name for it.
fn not_safetensors(path: &Path, error: SafeTensorError) -> ImportError {
    let reason = match error {
        SafeTensorError::HeaderTooSmall => "shorter than a safetensors header (truncated?)".into(),
        SafeTensorError::InvalidHeaderLength | SafeTensorError::HeaderTooLarge => {
            "its header length is beyond the file (truncated, or not a safetensors file)".into()
        }
        SafeTensorError::InvalidHeader
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization
        | SafeTensorError::JsonError(_) => {
            "its header is not safetensors JSON (not a safetensors file, or damaged)".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "its tensors do not cover the file's data (truncated, or extra bytes)".into()
        }
        SafeTensorError::InvalidOffset(key) => {
            format!("the data of `{key}` lies outside the file (truncated?)")
        }
        SafeTensorError::TensorInvalidInfo
        | SafeTensorError::InvalidTensorView(..)
        | SafeTensorError::ValidationOverflow => {
            "a tensor's shape and dtype do not fit its data (damaged)".into()
        }
        SafeTensorError::TensorNotFound(key) => format!("no tensor `{key}`"),
        SafeTensorError::IoError(e) => format!("reading failed: {e}"),
    };
    corrupt(path, "safetensors", reason)
}

/// burn-store's error, with a pickled Python object it cannot rebuild named as such.
fn pytorch_error(path: &Path, error: PytorchError) -> ImportError {
    match error {
        _ if is_torchscript(path) => {
            let part = |p: Option<&std::ffi::OsStr>| {
                p.map_or_else(String::new, |s| s.to_string_lossy().into_owned())
            };
            ImportError::TorchScript {
                path: path.to_path_buf(),
                name: part(path.file_name()),
                stem: part(path.file_stem()),
            }
        }
        PytorchError::Pickle(PickleError::UnsupportedType(object)) => {
            ImportError::UnsupportedPickleObject {
                path: path.to_path_buf(),
                object,
            }
        }
        other => corrupt(path, "PyTorch", other),
    }
}

/// Whether a zip archive is TorchScript: its entries include compiled code and `constants.pkl`,
/// whose names sit in the central directory at the end of the file.
fn is_torchscript(path: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    const TAIL: u64 = 1 << 20;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.seek(SeekFrom::End(0)) else {
        return false;
    };
    let mut tail = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .is_err()
        || file.read_to_end(&mut tail).is_err()
    {
        return false;
    }
    let has = |name: &[u8]| tail.windows(name.len()).any(|w| w == name);
    has(b"/constants.pkl") && has(b"/code/__torch__")
}

/// `key` without the wrappers ([`WRAPPERS`]) the readers strip.
pub(crate) fn unwrapped_key(mut key: &str) -> &str {
    while let Some(rest) = WRAPPERS.iter().find_map(|w| key.strip_prefix(w)) {
        key = rest;
    }
    key
}

/// Strips the wrappers ([`WRAPPERS`]) of a reference / TransReID state dict.
fn unwrap(mut dict: StateDict) -> StateDict {
    'outer: loop {
        for wrapper in WRAPPERS {
            if dict.keys().any(|k| k.starts_with(wrapper)) {
                dict = dict
                    .into_iter()
                    .filter_map(|(k, v)| k.strip_prefix(wrapper).map(|k| (k.to_string(), v)))
                    .collect();
                continue 'outer;
            }
        }
        return dict;
    }
}

fn corrupt(path: &Path, format: &'static str, message: impl ToString) -> ImportError {
    ImportError::Corrupt {
        path: path.to_path_buf(),
        format,
        message: message.to_string(),
    }
}

/// Little-endian safetensors data as f32.
fn to_f32(key: &str, dtype: Dtype, raw: &[u8]) -> Result<Vec<f32>, ImportError> {
    Ok(match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::I64 => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(ImportError::UnsupportedDtype {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

/// Writes tensors as an f32 safetensors file atomically (a temporary file, then a rename), so an
/// interrupted write never leaves a truncated checkpoint behind.
pub fn write_safetensors(
    path: &Path,
    dict: &StateDict,
    metadata: BTreeMap<String, String>,
) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The rename below would replace a device or a pipe with a file.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(io(std::io::Error::other(
            "exists and is not a regular file",
        )));
    }
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = dict
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    // `safetensors` writes `{}"__metadata__":{}}` for no tensors and an empty map: pass none.
    let hashed = (!metadata.is_empty()).then(|| {
        metadata
            .clone()
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
    });
    let serialized =
        safetensors::serialize(views, &hashed).map_err(|e| not_safetensors(path, e))?;
    let serialized = with_sorted_header(serialized, &metadata);
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, serialized).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let dict = StateDict::from([("w".to_string(), HostTensor::new(vec![2], vec![1.0, 2.0]))]);
        let metadata: BTreeMap<String, String> = (0..12)
            .map(|i| (format!("key{i}"), format!("value{i}")))
            .collect();
        let files: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let path = dir.path().join(format!("{i}.safetensors"));
                write_safetensors(&path, &dict, metadata.clone()).unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        assert!(files.iter().all(|f| *f == files[0]));
        let (read, read_metadata) = read_state_dict(&dir.path().join("0.safetensors")).unwrap();
        assert_eq!(read, dict);
        assert_eq!(read_metadata, metadata);
    }

    #[test]
    fn empty_dicts_and_empty_metadata_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let one = StateDict::from([("w".to_string(), HostTensor::new(vec![1], vec![3.0]))]);
        for dict in [StateDict::new(), one] {
            let path = dir.path().join("x.safetensors");
            write_safetensors(&path, &dict, BTreeMap::new()).unwrap();
            let (read, metadata) = read_state_dict(&path).unwrap();
            assert_eq!(read, dict);
            assert!(metadata.is_empty());
        }
    }

    #[test]
    fn wrappers_are_unwrapped_and_other_entries_dropped() {
        let t = HostTensor::new(vec![1], vec![1.0]);
        let dict: StateDict = [
            ("model.module.pos_embed".to_string(), t.clone()),
            ("optimizer.state.0".to_string(), t.clone()),
        ]
        .into_iter()
        .collect();
        let out = unwrap(dict);
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["pos_embed"]);
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let t = HostTensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let tt = t.transposed();
        assert_eq!(tt.shape, vec![3, 2]);
        assert_eq!(tt.data, vec![1., 4., 2., 5., 3., 6.]);
        assert_eq!(tt.transposed(), t);
    }

    #[test]
    fn safetensors_round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let dict: StateDict = [(
            "a.b".to_string(),
            HostTensor::new(vec![2, 2], vec![1., 2., 3., 4.]),
        )]
        .into_iter()
        .collect();
        let meta: BTreeMap<String, String> =
            [("k".to_string(), "v".to_string())].into_iter().collect();
        write_safetensors(&path, &dict, meta.clone()).unwrap();
        let (back, back_meta) = read_state_dict(&path).unwrap();
        assert_eq!(back, dict);
        assert_eq!(back_meta, meta);

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(
            read_state_dict(&path),
            Err(ImportError::Corrupt { .. })
        ));
        assert!(matches!(
            read_state_dict(&dir.path().join("none")),
            Err(ImportError::Io { .. })
        ));
    }
}
