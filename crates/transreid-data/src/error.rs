//! The crate's error type: every variant names the path (or setting) at fault.

use std::path::PathBuf;

use crate::item::Split;

/// Errors raised while reading datasets, decoding images, sampling or generating data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A directory the dataset layout requires does not exist.
    #[error("missing directory {path} (expected by the {layout} layout)")]
    MissingDir { path: PathBuf, layout: &'static str },

    /// A list, split or annotation file the dataset layout requires does not exist.
    #[error("missing file {path} (expected by the {layout} layout)")]
    MissingFile { path: PathBuf, layout: &'static str },

    /// Reading a file or listing a directory failed.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Creating a folder or writing a file failed.
    #[error("cannot {action} {path}: {source}")]
    Write {
        action: WriteAction,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The dataset folder given does not exist or is not a folder.
    #[error("the dataset folder {path} {}", if *.exists { "is not a folder" } else { "does not exist" })]
    MissingRoot { path: PathBuf, exists: bool },

    /// An image file of 0 bytes.
    #[error("image {path} is an empty file (0 bytes)")]
    EmptyFile { path: PathBuf },

    /// An image file name does not follow the dataset's naming convention.
    #[error("cannot parse image name {path}: expected {expected}")]
    UnparsableName {
        path: PathBuf,
        expected: &'static str,
    },

    /// A line of a list or annotation file does not follow its format.
    #[error("{path}:{line}: cannot parse {content:?}: expected {expected}")]
    UnparsableLine {
        path: PathBuf,
        line: usize,
        content: String,
        expected: &'static str,
    },

    /// A parsed identity, camera or view id lies outside the dataset's documented range.
    #[error("{path}: {field} {value} outside the range {min}..={max}")]
    OutOfRange {
        path: PathBuf,
        field: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },

    /// A list whose ids are used unchanged does not hold exactly the ids `0..n`.
    #[error("{path}: identity ids must be 0..{count} without gaps, but {missing} is missing")]
    NonContiguousPids {
        path: PathBuf,
        count: usize,
        missing: usize,
    },

    /// A split holds no usable image.
    #[error("the {split} split at {path} holds no usable image")]
    EmptySplit { split: Split, path: PathBuf },

    /// An image could not be decoded (corrupt file or unsupported format).
    #[error("cannot decode image {path}: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    /// An image whose decoded pixels would exceed the decoder's memory limit.
    #[error(
        "image {path} is {width}x{height} pixels, too large to decode (limit {limit_mib} MiB of \
         pixels); crop or downscale it first"
    )]
    ImageTooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        limit_mib: u64,
    },

    /// A file name with camera 0: cameras are numbered from 1 in file names.
    #[error(
        "{path}: camera 0 in the file name, but cameras in file names are 1-based (c1 is the \
         first camera, as in Market-1501)"
    )]
    ZeroCamera { path: PathBuf },

    /// A JPEG file ends before its end-of-image marker.
    #[error("truncated image {path}: no JPEG end-of-image marker after the last scan")]
    Truncated { path: PathBuf },

    /// An image decoded to zero width or height.
    #[error("image {path} has an empty size {width}x{height}")]
    EmptyImage {
        path: PathBuf,
        width: u32,
        height: u32,
    },

    /// Writing an image failed.
    #[error("cannot write image {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    /// A CSV list could not be read.
    #[error("{path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },

    /// Some items of a custom dataset carry a camera (or view) id and others do not.
    #[error("{path}: {field} id is given for some images but not for this one")]
    MixedLabels { path: PathBuf, field: &'static str },

    /// A dataset kind name that [`crate::DatasetKind`] does not know.
    #[error("unknown dataset kind {name:?}; expected one of {expected}")]
    UnknownDatasetKind { name: String, expected: String },

    /// A configuration value that cannot work.
    #[error("invalid {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    /// A loader worker thread panicked.
    #[error("a loader worker panicked while building batch {batch}")]
    WorkerPanicked { batch: usize },
}

/// What a failed [`DataError::Write`] was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAction {
    /// Creating a folder.
    CreateFolder,
    /// Creating or writing a file.
    WriteFile,
}

impl std::fmt::Display for WriteAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CreateFolder => "create the folder",
            Self::WriteFile => "write",
        })
    }
}

impl DataError {
    pub(crate) fn write(
        action: WriteAction,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Write {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
