use std::path::PathBuf;

/// Errors from weight import, checkpoints and label checks.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors / PyTorch file.
    #[error("{path} is not a valid {format} file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The expected format.
        format: &'static str,
        /// What the parser reported.
        message: String,
    },
    /// A tensor has a dtype that cannot be converted to f32.
    #[error("tensor `{key}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The checkpoint key.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// Keys the model needs are absent from the checkpoint.
    #[error("checkpoint is missing {} key(s): {}", .0.len(), .0.join(", "))]
    MissingKeys(Vec<String>),
    /// Keys in the checkpoint that the model does not have.
    #[error("checkpoint has {} unexpected key(s): {}", .0.len(), .0.join(", "))]
    UnexpectedKeys(Vec<String>),
    /// A tensor's shape differs from the model's parameter.
    #[error("shape mismatch for `{key}`: model expects {expected:?}, checkpoint has {got:?}")]
    ShapeMismatch {
        /// The checkpoint key.
        key: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The checkpoint's shape.
        got: Vec<usize>,
    },
    /// The checkpoint holds no model configuration, or an unreadable one.
    #[error("{path} holds no usable TransReID configuration: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The position embedding cannot be resized (its grid is not square).
    #[error("position embedding with {tokens} grid tokens is not a square grid")]
    NonSquarePosEmbed {
        /// Number of grid tokens (without prefix tokens).
        tokens: usize,
    },
}

/// Errors from invalid side information (camera / view labels).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A camera id is outside `0..camera_num`.
    #[error("camera id {id} out of range: the model knows {count} cameras")]
    CameraOutOfRange {
        /// The id given.
        id: i64,
        /// The number of cameras of the model.
        count: usize,
    },
    /// A view id is outside `0..view_num`.
    #[error("view id {id} out of range: the model knows {count} views")]
    ViewOutOfRange {
        /// The id given.
        id: i64,
        /// The number of views of the model.
        count: usize,
    },
    /// Label slices of different lengths.
    #[error("{what}: expected {expected} labels, got {got}")]
    LengthMismatch {
        /// Which labels.
        what: &'static str,
        /// Batch size.
        expected: usize,
        /// Labels given.
        got: usize,
    },
}
