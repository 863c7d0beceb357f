use std::path::PathBuf;

use crate::weight_layout::{PretrainGrid, UnsupportedLayout, WeightKind, WeightLayout};

fn rows_text(rows: Option<usize>) -> String {
    match rows {
        Some(n) => format!("{n} rows"),
        None => "no rows (no table)".into(),
    }
}

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
    /// A PyTorch pickle holds a Python object the reader cannot rebuild (for example a
    /// `pathlib.PosixPath` in a training checkpoint's `args`).
    #[error(
        "{path} pickles a `{object}` object that cannot be read without Python; re-save only the \
         weights, e.g. `torch.save(torch.load(f, weights_only=False)['teacher'], 'teacher.pth')`"
    )]
    UnsupportedPickleObject {
        /// The file.
        path: PathBuf,
        /// The Python class, as `module.name`.
        object: String,
    },
    /// A TorchScript archive (OpenAI's own CLIP `.pt` files), whose weights sit in compiled
    /// module objects that cannot be read without PyTorch.
    #[error(
        "{path} is a TorchScript archive (as OpenAI ships CLIP), which cannot be read without \
         PyTorch; convert it once: python -c \"import torch; from safetensors.torch import \
         save_file; m = torch.jit.load('{name}', map_location='cpu'); save_file({{k: \
         v.float().contiguous() for k, v in m.state_dict().items()}}, '{stem}.safetensors')\""
    )]
    TorchScript {
        /// The file.
        path: PathBuf,
        /// Its file name.
        name: String,
        /// Its file name without the extension.
        stem: String,
    },
    /// Two-stage CLIP-ReID training needs CLIP's text tower, which the file lacks.
    #[error(
        "two-stage CLIP-ReID training needs CLIP's text tower, which this {layout} file lacks \
         (missing `{key}`): use OpenAI's or open_clip's file or a Hugging Face CLIPModel (not \
         CLIPVisionModel, not timm's image tower), or train the image-only baseline"
    )]
    NoTextTower {
        /// The file's layout.
        layout: crate::clip_layout::ClipLayout,
        /// The first missing key, in OpenAI's names.
        key: String,
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
    /// The file's SIE table (`base.sie_embed`) has another row count than the model's.
    #[error(
        "the checkpoint's SIE table has {} but the model's has {} ({}); the reference numbers the \
         rows camera x views + view, so give the cameras and views of the training run \
         (`--cameras N --views M`, or model.sie_camera / sie_view with the dataset's counts)",
        rows_text(*.file), rows_text(*.model), .layout
    )]
    SieRows {
        /// Rows in the file (`None`: no table).
        file: Option<usize>,
        /// Rows of the model (`None`: SIE off).
        model: Option<usize>,
        /// How the model reads its table ([`crate::SieConfig::describe`]).
        layout: String,
    },
    /// The checkpoint holds no model configuration, or an unreadable one.
    #[error("{path} holds no usable TransReID configuration: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file that is not a TransReID checkpoint where one is needed.
    #[error("{path} is not a TransReID checkpoint: it is {what}")]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
        /// What the file is and what to use instead.
        what: String,
    },
    /// A CLIP file whose tensors describe no CLIP tower this crate builds.
    #[error("`{key}` has shape {shape:?}, which does not describe a CLIP {tower} tower: {reason}")]
    ClipShape {
        /// The key in the file's own names.
        key: String,
        /// Its shape.
        shape: Vec<usize>,
        /// `image` or `text`.
        tower: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The position embedding cannot be resized (its grid is not square).
    #[error(
        "position embedding with {tokens} grid tokens is not a square grid: give the grid it was \
         trained at (LUPerson weights trained at 256x128: `--pretrain-hw-ratio 2`, or \
         `pretrain_hw_ratio = 2` under [model] in a run configuration; any grid: \
         `--pretrain-grid HxW`, e.g. 16x8)"
    )]
    NonSquarePosEmbed {
        /// Number of grid tokens (without prefix tokens).
        tokens: usize,
    },
    /// The position embedding's token count does not fit the given pretraining grid.
    #[error("position embedding with {tokens} grid tokens does not fit the {grid}: give the grid it was trained at (`--pretrain-hw-ratio R` or `--pretrain-grid HxW`)")]
    PosEmbedGrid {
        /// Number of grid tokens (without prefix tokens).
        tokens: usize,
        /// The grid given.
        grid: PretrainGrid,
    },
    /// The checkpoint's embedding width differs from the model's.
    #[error("the checkpoint's embedding width is {checkpoint}, the model's {model}: choose the backbone preset of the checkpoint")]
    EmbedWidth {
        /// Width of the checkpoint's `cls_token`.
        checkpoint: usize,
        /// Width of the model.
        model: usize,
    },
    /// The checkpoint has the ICS convolution stem and the model does not, or the reverse.
    #[error("{}", if *.checkpoint_has_stem {
        "the checkpoint has the ICS convolution stem (patch_embed.conv.*): build the model with the ICS stem (`--stem ics`, or `stem = \"ics\"` under [model] in a run configuration)"
    } else {
        "the model has the ICS convolution stem but the checkpoint has none: build the model without it"
    })]
    StemMismatch {
        /// Whether the checkpoint has `patch_embed.conv.*` keys.
        checkpoint_has_stem: bool,
    },
    /// A recognised family this crate cannot load.
    #[error("this is {layout} (key `{key}`), which a TransReID model cannot load: {}", layout.hint())]
    UnsupportedLayout {
        /// The family.
        layout: UnsupportedLayout,
        /// The key that revealed it.
        key: String,
    },
    /// No known layout matches the keys.
    #[error("unrecognised checkpoint layout (first keys: {})", .sample.join(", "))]
    UnknownLayout {
        /// The first keys of the file.
        sample: Vec<String>,
    },
    /// The file is not the kind of weights asked for.
    #[error("the file is {detected}, not {}; use kind `{}` (`--kind {}`, or `kind = \"{}\"` in a run configuration) or `auto`", requested.name(), detected.kind().name(), detected.kind().name(), detected.kind().name())]
    KindMismatch {
        /// The kind asked for.
        requested: WeightKind,
        /// What the keys say.
        detected: WeightLayout,
    },
}

/// A model configuration that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelConfigError {
    /// A patch stride outside `1..=patch`.
    #[error("patch stride {stride:?} must be between 1 and the patch size {patch}")]
    Stride {
        /// The stride `[y, x]`.
        stride: [usize; 2],
        /// The patch size.
        patch: usize,
    },
    /// An image smaller than one patch.
    #[error("image size {size:?} is smaller than a {patch}x{patch} patch")]
    ImageTooSmall {
        /// `[height, width]`.
        size: [usize; 2],
        /// The patch size.
        patch: usize,
    },
    /// The ICS stem with a stride other than the patch size.
    #[error(
        "the ICS convolution stem fixes the patch stride at {patch} (the patch size); got {stride:?}"
    )]
    IcsStride {
        /// The stride `[y, x]`.
        stride: [usize; 2],
        /// The patch size.
        patch: usize,
    },
    /// JPM settings that do not fit the patch grid.
    #[error(transparent)]
    Jpm(#[from] crate::jpm::JpmError),
    /// Attention heads that do not split the embedding.
    #[error("embed_dim {dim} cannot be split into {heads} attention heads")]
    Heads {
        /// The embedding width.
        dim: usize,
        /// The heads asked for.
        heads: usize,
    },
    /// A backbone without blocks.
    #[error("depth must be at least 1 block")]
    NoBlocks,
    /// A dropout or drop-path rate outside `[0, 1)`.
    #[error("{name} {value} must be in [0, 1)")]
    Rate {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: f64,
    },
}

/// Errors from invalid side information (camera / view labels).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A camera id is outside `0..camera_num`.
    #[error("camera id {id} out of range: the model knows {count} cameras (0-based ids 0 to {}, c1 to c{count} in file names)", count.saturating_sub(1))]
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
