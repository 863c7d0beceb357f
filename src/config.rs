//! The TOML run configuration of `transreid train`: one file per experiment, holding what the
//! reference spreads over its YAML config and `config/defaults.py`. `configs/` ships one preset
//! per reference configuration.

use std::path::{Path, PathBuf};

use burn::prelude::Backend;
use serde::{Deserialize, Serialize};
use transreid_data::{DatasetKind, LoadOptions, ReidDataset, TransformConfig};
use transreid_loss::{ClipReidObjectiveConfig, ObjectiveConfig};
use transreid_model::{
    load_pretrained, ClipArchitecture, ClipReidConfig, IcsStemConfig, ImportError, ImportOptions,
    ImportReport, JpmConfig, NeckFeat, Precision, PretrainGrid, PromptObject, SieConfig, SieMode,
    TransReid, TransReidConfig, VitPreset, WeightKind,
};

use crate::optim::{OptimizerKind, ScheduleKind, SolverConfig};
use crate::train::{PromptSettings, TrainSettings};

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run folder: checkpoints, `metrics.csv`, plots and the resolved `config.toml`
    /// (`OUTPUT_DIR`).
    pub output_dir: PathBuf,
    /// Seed of sampling, augmentation and drop path (`SOLVER.SEED`). Default: 1234.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Where the images come from.
    pub dataset: DatasetSection,
    /// The network.
    pub model: ModelSection,
    /// Train and test transforms (`INPUT.*`); the model's input size is `train_size`.
    pub input: TransformConfig,
    /// Optimiser, schedule, batches and periods (`SOLVER.*`, `DATALOADER.*`).
    pub solver: SolverSection,
    /// TransReID's loss terms (`MODEL.*_LOSS_WEIGHT`, `IF_LABELSMOOTH`, `NO_MARGIN`); a
    /// TransReID run needs it, a CLIP-ReID run takes `[clip_reid]` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<ObjectiveConfig>,
    /// CLIP-ReID: present, the run trains a CLIP image encoder (from `model.pretrained`, a
    /// CLIP file) with CLIP-ReID's heads, its prompts first when `[clip_reid.prompts]` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_reid: Option<ClipReidSection>,
    /// Evaluation settings (`TEST.*`).
    #[serde(default)]
    pub test: TestSection,
}

fn default_seed() -> u64 {
    1234
}

/// CLIP-ReID (`train_clipreid.py` with `SOLVER.STAGE1.*`, `STAGE2.*`; or the image-only
/// baseline of `train.py`). The second stage's optimiser, schedule and batches are the
/// `[solver]` section's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipReidSection {
    /// The prompt's object: `person` ("A photo of a X X X X person.") or `vehicle`.
    pub object: PromptObject,
    /// The second stage's loss. Default: CLIP-ReID's (0.25 x ID on both classifiers, triplet
    /// 0.3 on the three features, image-to-text 1.0, label smoothing 0.1).
    #[serde(default)]
    pub loss: ClipReidObjectiveConfig,
    /// The first stage, which learns the prompts; absent: the baseline (no text side, no
    /// image-to-text term).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PromptSettings>,
}

/// `DATASETS.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// Layout (`market1501`, `dukemtmc`, `msmt17`, `occluded-duke`, `veri776`, `vehicleid`,
    /// `custom`).
    pub kind: DatasetKind,
    /// Dataset folder (relative paths are relative to the working directory).
    pub root: PathBuf,
    /// Loading options (image checks, VeRi keypoint folder, VehicleID test list).
    #[serde(default)]
    pub options: LoadOptions,
}

/// Pretrained weights the run starts from (`MODEL.PRETRAIN_CHOICE` / `PRETRAIN_PATH`). The
/// file's layout is read from its keys; a file of another kind is refused with the kind to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pretrained {
    /// Random initialisation (no weights).
    None,
    /// An ImageNet ViT / DeiT backbone: timm safetensors, the original `.pth` or a Hugging
    /// Face `transformers` ViT.
    Imagenet {
        /// The weights file.
        path: PathBuf,
    },
    /// A self-supervised person backbone (PersonViT, TransReID-SSL, pretrained on LUPerson): a
    /// DINO / iBOT training checkpoint, whose teacher backbone is taken, or its flat timm-layout
    /// conversion. Read as `self-supervised` too, the command line's spelling.
    #[serde(alias = "self-supervised")]
    SelfSupervised {
        /// The weights file.
        path: PathBuf,
    },
    /// A TransReID checkpoint in the reference's layout (fine-tuning, `PRETRAIN_CHOICE self`).
    Reference {
        /// The weights file.
        path: PathBuf,
    },
    /// CLIP weights for a CLIP-ReID run: OpenAI / open_clip (`visual.*`, `transformer.*`),
    /// timm (image tower only) or Hugging Face `CLIPModel` / `CLIPVisionModel` state dicts,
    /// `.pth` or safetensors. The architecture is read from the shapes.
    Clip {
        /// The weights file.
        path: PathBuf,
    },
}

impl Pretrained {
    /// The weights file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::None => None,
            Self::Imagenet { path }
            | Self::SelfSupervised { path }
            | Self::Reference { path }
            | Self::Clip { path } => Some(path),
        }
    }

    /// The kind of weights the file must hold (for a TransReID model; CLIP files are read by
    /// CLIP-ReID runs alone).
    pub fn kind(&self) -> WeightKind {
        match self {
            Self::None | Self::Clip { .. } => WeightKind::Auto,
            Self::Imagenet { .. } => WeightKind::Imagenet,
            Self::SelfSupervised { .. } => WeightKind::SelfSupervised,
            Self::Reference { .. } => WeightKind::Reference,
        }
    }

    /// The same kind with another file; `None` becomes an ImageNet backbone.
    pub fn with_path(&self, path: PathBuf) -> Self {
        match self {
            Self::None | Self::Imagenet { .. } => Self::Imagenet { path },
            Self::SelfSupervised { .. } => Self::SelfSupervised { path },
            Self::Reference { .. } => Self::Reference { path },
            Self::Clip { .. } => Self::Clip { path },
        }
    }
}

/// The layer that turns pixels into patch tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum PatchStem {
    /// One strided convolution (ViT).
    #[default]
    Conv,
    /// TransReID-SSL's IBN convolution stem before an 8x8 projection (`*_ics_*` weights); needs
    /// stride 16.
    Ics,
}

/// `MODEL.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Backbone architecture (`TRANSFORMER_TYPE`; the DeiT-B configs use `deit_base16`).
    /// TransReID runs need it; CLIP-ReID runs read theirs from the CLIP file and refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<VitPreset>,
    /// Starting weights.
    pub pretrained: Pretrained,
    /// `height / width` of the patch grid the pretrained position embedding was trained at
    /// (`PRETRAIN_HW_RATIO`): 1 for ImageNet weights, 2 for LUPerson weights (256x128). Used
    /// when the embedding is resized. Default: 1.
    #[serde(default = "default_hw_ratio")]
    pub pretrain_hw_ratio: usize,
    /// Patch embedding layer. Default: `conv`.
    #[serde(default)]
    pub stem: PatchStem,
    /// Patch stride `[sy, sx]` (`STRIDE_SIZE`).
    pub stride: [usize; 2],
    /// Stochastic depth rate of the last block (`DROP_PATH`). Default: 0.1.
    #[serde(default = "default_drop_path")]
    pub drop_path: f64,
    /// Camera embedding (`SIE_CAMERA`).
    pub sie_camera: bool,
    /// View embedding (`SIE_VIEW`).
    pub sie_view: bool,
    /// SIE coefficient lambda (`SIE_COE`). Default: 3.0.
    #[serde(default = "default_sie_coefficient")]
    pub sie_coefficient: f64,
    /// Jigsaw Patch Module; absent: no JPM (`JPM`, `SHIFT_NUM`, `SHUFFLE_GROUP`,
    /// `DEVIDE_LENGTH`, `RE_ARRANGE`).
    #[serde(default)]
    pub jpm: Option<JpmConfig>,
    /// Feature used for retrieval (`TEST.NECK_FEAT`). Default: before the BNNeck.
    #[serde(default)]
    pub neck_feat: NeckFeat,
}

fn default_hw_ratio() -> usize {
    1
}

fn default_drop_path() -> f64 {
    0.1
}

fn default_sie_coefficient() -> f64 {
    3.0
}

/// `SOLVER.*` and `DATALOADER.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolverSection {
    /// `MAX_EPOCHS`.
    pub max_epochs: usize,
    /// `IMS_PER_BATCH`: images per training batch.
    pub ims_per_batch: usize,
    /// `DATALOADER.NUM_INSTANCE`: images per identity in a batch.
    pub num_instance: usize,
    /// `BASE_LR`.
    pub base_lr: f64,
    /// The optimiser: `sgd` (TransReID) or `adam` (CLIP-ReID). Default: `sgd`.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// The per-epoch schedule: `{ kind = "cosine" }` (TransReID) or `{ kind = "multi_step",
    /// milestones = [30, 50], gamma = 0.1, warmup_factor = 0.1 }` (CLIP-ReID's `STEPS`,
    /// `GAMMA`, `WARMUP_FACTOR`); both warm up over `warmup_epochs`. Default: the cosine.
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// SGD's `MOMENTUM`. Default: 0.9.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// `WEIGHT_DECAY`.
    pub weight_decay: f64,
    /// `WEIGHT_DECAY_BIAS`.
    pub weight_decay_bias: f64,
    /// `BIAS_LR_FACTOR`.
    pub bias_lr_factor: f64,
    /// `LARGE_FC_LR`. Default: false.
    #[serde(default)]
    pub large_fc_lr: bool,
    /// Clip the global gradient norm (not in the reference). Default: off.
    #[serde(default)]
    pub grad_clip_norm: Option<f64>,
    /// `WARMUP_EPOCHS`. Default: 5.
    #[serde(default = "default_warmup")]
    pub warmup_epochs: usize,
    /// `CHECKPOINT_PERIOD`: write `checkpoint.safetensors` every this many epochs (and after
    /// the last). The resume state is written every epoch regardless.
    pub checkpoint_period: usize,
    /// `EVAL_PERIOD`: evaluate every this many epochs (and after the last).
    pub eval_period: usize,
    /// Loader threads (`NUM_WORKERS`). Default: 8.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Dtype of the transformer's products (the reference trains with f16 autocast on the
    /// GPU). Default: `auto`.
    #[serde(default)]
    pub precision: PrecisionSetting,
    /// Gradient accumulation: micro-batches per step, each `ims_per_batch / accumulate` images
    /// (with the arithmetic of that many ranks, so a small GPU trains the reference's batch).
    /// Default: 1.
    #[serde(default = "default_accumulate")]
    pub accumulate: usize,
}

fn default_accumulate() -> usize {
    1
}

/// `solver.precision`: the compute dtype of training, see [`Precision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum PrecisionSetting {
    /// bf16 on CUDA, f32 on every other backend.
    #[default]
    Auto,
    /// f32 everywhere.
    F32,
    /// bf16 products (needs a backend with bf16 matmuls: CUDA, flex).
    Bf16,
    /// f16 products with dynamic loss scaling, as the reference's AMP.
    F16,
}

impl PrecisionSetting {
    /// The precision on a CUDA (`cuda == true`) or another backend.
    pub fn resolve(self, cuda: bool) -> Precision {
        match self {
            Self::Auto if cuda => Precision::Bf16,
            Self::Auto | Self::F32 => Precision::F32,
            Self::Bf16 => Precision::Bf16,
            Self::F16 => Precision::F16,
        }
    }
}

fn default_momentum() -> f64 {
    0.9
}

fn default_warmup() -> usize {
    5
}

fn default_workers() -> usize {
    8
}

/// `TEST.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSection {
    /// Images per evaluation batch (`TEST.IMS_PER_BATCH`). Default: 256.
    #[serde(default = "default_test_batch")]
    pub ims_per_batch: usize,
}

impl Default for TestSection {
    fn default() -> Self {
        Self {
            ims_per_batch: default_test_batch(),
        }
    }
}

fn default_test_batch() -> usize {
    256
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not describe a run (unknown key, wrong type, missing field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// Values that cannot work together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl RunConfig {
    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: RunConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML (what the run folder's `config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a run configuration serialises to TOML")
    }

    /// Checks what can be checked without the dataset.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.solver;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (key, value) in [
            ("solver.max_epochs (--epochs)", s.max_epochs),
            ("solver.checkpoint_period", s.checkpoint_period),
            ("solver.eval_period", s.eval_period),
            ("test.ims_per_batch", self.test.ims_per_batch),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be at least 1"));
            }
        }
        if s.num_instance == 0 || !s.ims_per_batch.is_multiple_of(s.num_instance) {
            return invalid(format!(
                "solver.ims_per_batch {} is not a multiple of solver.num_instance {}",
                s.ims_per_batch, s.num_instance
            ));
        }
        if s.accumulate == 0
            || !s
                .ims_per_batch
                .is_multiple_of(s.accumulate * s.num_instance)
        {
            return invalid(format!(
                "ims_per_batch {} cannot be split into accumulate = {} micro-batches of whole \
                 identities (num_instance {})",
                s.ims_per_batch, s.accumulate, s.num_instance
            ));
        }
        if !(s.base_lr > 0.0 && s.base_lr.is_finite()) {
            return invalid(format!("base_lr {} must be positive", s.base_lr));
        }
        if let Some(norm) = s.grad_clip_norm.filter(|n| !(*n > 0.0 && n.is_finite())) {
            return invalid(format!("grad_clip_norm {norm} must be positive"));
        }
        if !(0.0..1.0).contains(&self.model.drop_path) {
            return invalid(format!(
                "model.drop_path {} must be in [0, 1)",
                self.model.drop_path
            ));
        }
        if self.model.pretrain_hw_ratio == 0 {
            return invalid("model.pretrain_hw_ratio must be at least 1".into());
        }
        if self.input.train_size != self.input.test_size {
            return invalid(format!(
                "train_size {:?} and test_size {:?} differ: the position embedding is built for one size",
                self.input.train_size, self.input.test_size
            ));
        }
        let m = &self.model;
        match (&self.loss, &self.clip_reid) {
            (Some(_), Some(_)) => invalid(
                "[loss] is TransReID's objective and [clip_reid] CLIP-ReID's: give one".into(),
            ),
            (None, None) => {
                invalid("give [loss] (a TransReID run) or [clip_reid] (a CLIP-ReID run)".into())
            }
            (Some(_), None) => {
                if matches!(m.pretrained, Pretrained::Clip { .. }) {
                    return invalid(
                        "CLIP weights (model.pretrained kind \"clip\") train CLIP-ReID: add a \
                         [clip_reid] section in place of [loss]"
                            .into(),
                    );
                }
                if m.backbone.is_none() {
                    return invalid("a TransReID run needs model.backbone".into());
                }
                self.model_config(1, 1, 1)
                    .validate()
                    .map_err(|e| ConfigError::Invalid(e.to_string()))
            }
            (None, Some(clip)) => {
                let refuse = |what: &str| {
                    invalid(format!(
                        "a CLIP-ReID run {what} (its architecture comes from the CLIP file)"
                    ))
                };
                if m.backbone.is_some() {
                    return refuse("takes no model.backbone");
                }
                if !matches!(m.pretrained, Pretrained::Clip { .. }) {
                    return refuse("starts from CLIP weights: model.pretrained = { kind = \"clip\", path = ... }");
                }
                if m.stem != PatchStem::Conv || m.jpm.is_some() {
                    return refuse("has no ICS stem and no JPM");
                }
                if m.drop_path != default_drop_path() || m.pretrain_hw_ratio != default_hw_ratio() {
                    return refuse("has no drop path and reads its pre-training grid from the file: leave model.drop_path and model.pretrain_hw_ratio out");
                }
                if let Some(p) = &clip.prompts {
                    if p.epochs == 0 || p.batch_size == 0 {
                        return invalid(
                            "clip_reid.prompts: epochs and batch_size must be at least 1".into(),
                        );
                    }
                    let rates = [p.base_lr, p.warmup_lr, p.min_lr];
                    if rates.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
                        return invalid(format!(
                            "clip_reid.prompts: base_lr {}, warmup_lr {} and min_lr {} must be positive",
                            p.base_lr, p.warmup_lr, p.min_lr
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// The TransReID network for a training split with `num_classes` identities, `cameras`
    /// cameras and `views` views (SIE sizes its table from them, as the reference does). For a
    /// configuration without `model.backbone` (CLIP-ReID) this is ViT-B/16's; CLIP-ReID runs
    /// build theirs with [`Self::clip_model_config`].
    pub fn model_config(
        &self,
        num_classes: usize,
        cameras: usize,
        views: usize,
    ) -> TransReidConfig {
        let m = &self.model;
        let size = self.input.train_size;
        let backbone = m.backbone.unwrap_or(VitPreset::VitBase16);
        let vit = backbone
            .config([size.height as usize, size.width as usize], m.stride)
            .with_drop_path_rate(m.drop_path)
            .with_stem((m.stem == PatchStem::Ics).then(IcsStemConfig::new));
        TransReidConfig::new(vit, num_classes)
            .with_sie(self.sie_config(cameras, views))
            .with_jpm(m.jpm.clone())
            .with_neck_feat(m.neck_feat)
    }

    /// Loads `model.pretrained` into a freshly built model; `None` when the run starts from
    /// random weights.
    pub fn load_pretrained<B: Backend>(
        &self,
        model: &mut TransReid<B>,
    ) -> Result<Option<ImportReport>, ImportError> {
        let pretrained = &self.model.pretrained;
        let Some(path) = pretrained.path() else {
            return Ok(None);
        };
        let grid = PretrainGrid::HwRatio(self.model.pretrain_hw_ratio);
        load_pretrained(
            model,
            path,
            pretrained.kind(),
            grid,
            ImportOptions::default(),
        )
        .map(Some)
    }

    /// [`Self::model_config`] sized for a loaded dataset's training split.
    pub fn model_config_for(&self, dataset: &ReidDataset) -> TransReidConfig {
        self.model_config(
            dataset.num_train_pids,
            dataset.num_train_cams,
            dataset.num_train_views,
        )
    }

    /// The training loop's settings of a TransReID run, with `solver.precision` resolved for a
    /// CUDA (`cuda == true`) or another backend (the default objective when `[loss]` is absent).
    pub fn train_settings(&self, cuda: bool) -> TrainSettings {
        self.settings_with(
            self.loss.unwrap_or_default(),
            self.solver.precision.resolve(cuda),
        )
    }

    /// The second stage's settings of a CLIP-ReID run (its default objective without
    /// `[clip_reid]`). CLIP-ReID trains in f32: `auto` is f32 on every backend.
    pub fn clip_train_settings(&self, cuda: bool) -> TrainSettings<ClipReidObjectiveConfig> {
        let precision = match self.solver.precision {
            PrecisionSetting::Auto => Precision::F32,
            other => other.resolve(cuda),
        };
        let objective = self.clip_reid.as_ref().map(|c| c.loss).unwrap_or_default();
        self.settings_with(objective, precision)
    }

    fn settings_with<O>(&self, objective: O, precision: Precision) -> TrainSettings<O> {
        let s = &self.solver;
        TrainSettings {
            epochs: s.max_epochs,
            batch_size: s.ims_per_batch,
            instances: s.num_instance,
            solver: SolverConfig {
                base_lr: s.base_lr,
                momentum: s.momentum,
                weight_decay: s.weight_decay,
                weight_decay_bias: s.weight_decay_bias,
                bias_lr_factor: s.bias_lr_factor,
                large_fc_lr: s.large_fc_lr,
                grad_clip_norm: s.grad_clip_norm,
            },
            optimizer: s.optimizer,
            schedule: s.schedule.clone(),
            warmup_epochs: s.warmup_epochs,
            objective,
            eval_period: s.eval_period,
            checkpoint_period: s.checkpoint_period,
            eval_batch_size: self.test.ims_per_batch,
            seed: self.seed,
            workers: s.workers,
            precision,
            accumulate: s.accumulate,
        }
    }

    /// The CLIP-ReID network of the architecture `clip` (read from the CLIP file) for a
    /// training split of `dataset`: input size and stride of the run, SIE as configured, the
    /// text side when the prompts are learned.
    pub fn clip_model_config(
        &self,
        clip: &ClipArchitecture,
        dataset: &ReidDataset,
    ) -> ClipReidConfig {
        let m = &self.model;
        let size = self.input.train_size;
        let section = self.clip_reid.as_ref();
        let two_stage = section.is_some_and(|c| c.prompts.is_some());
        ClipReidConfig::new(
            clip.vision([size.height as usize, size.width as usize], m.stride),
            dataset.num_train_pids,
        )
        .with_sie(self.sie_config(dataset.num_train_cams, dataset.num_train_views))
        .with_neck_feat(m.neck_feat)
        .with_text(clip.text.clone().filter(|_| two_stage))
        .with_object(section.map(|c| c.object).unwrap_or_default())
    }

    fn sie_config(&self, cameras: usize, views: usize) -> SieConfig {
        let m = &self.model;
        SieConfig::new()
            .with_mode(SieMode::from_flags(m.sie_camera, m.sie_view))
            .with_camera_num(cameras.max(1))
            .with_view_num(views.max(1))
            .with_coefficient(m.sie_coefficient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
output_dir = "runs/x"
[dataset]
kind = "market1501"
root = "data/market1501"
[model]
backbone = "vit_base16"
pretrained = { kind = "imagenet", path = "weights/vit.safetensors" }
stride = [16, 16]
sie_camera = true
sie_view = false
jpm = { shift_num = 5, shuffle_groups = 2, num_parts = 4, rearrange = true }
[input]
train_size = { height = 256, width = 128 }
test_size = { height = 256, width = 128 }
flip_prob = 0.5
padding = 10
erasing_prob = 0.5
normalization = { mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }
[solver]
max_epochs = 120
ims_per_batch = 64
num_instance = 4
base_lr = 0.008
weight_decay = 1e-4
weight_decay_bias = 1e-4
bias_lr_factor = 2.0
checkpoint_period = 120
eval_period = 120
[loss]
id_weight = 1.0
triplet_weight = 1.0
label_smoothing = 0.0
margin = "soft"
"#;

    fn parse(text: &str) -> Result<RunConfig, String> {
        let config: RunConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn precision_is_auto_by_default_and_resolves_per_backend() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.solver.precision, PrecisionSetting::Auto);
        assert_eq!(config.train_settings(true).precision, Precision::Bf16);
        assert_eq!(config.train_settings(false).precision, Precision::F32);
        let f16 = MINIMAL.replace(
            "eval_period = 120",
            "eval_period = 120\nprecision = \"f16\"",
        );
        let config = parse(&f16).unwrap();
        assert_eq!(config.train_settings(false).precision, Precision::F16);
        let bad = MINIMAL.replace(
            "eval_period = 120",
            "eval_period = 120\nprecision = \"fp8\"",
        );
        assert!(parse(&bad).unwrap_err().contains("unknown variant `fp8`"));
    }

    #[test]
    fn defaults_fill_the_reference_values() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.seed, 1234);
        assert_eq!(config.model.drop_path, 0.1);
        assert_eq!(config.solver.momentum, 0.9);
        assert_eq!(config.solver.warmup_epochs, 5);
        assert_eq!(config.test.ims_per_batch, 256);
        let model = config.model_config(751, 6, 1);
        assert_eq!(model.sie.mode, SieMode::Camera);
        assert_eq!(model.sie.camera_num, 6);
        assert_eq!(model.vit.img_size, [256, 128]);
        assert_eq!(model.vit.drop_path_rate, 0.1);
        assert_eq!(model.jpm.as_ref().unwrap().shift_num, 5);
        let settings = config.train_settings(false);
        assert_eq!(
            settings.solver.group("base.blocks.0.attn.qkv.bias").lr,
            0.016
        );
    }

    #[test]
    fn resolved_toml_round_trips() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn typos_and_bad_values_are_rejected() {
        let typo = MINIMAL.replace("sie_view", "sie_veiw");
        assert!(parse(&typo).unwrap_err().contains("sie_veiw"));
        let batch = MINIMAL.replace("ims_per_batch = 64", "ims_per_batch = 62");
        assert!(parse(&batch)
            .unwrap_err()
            .contains("multiple of solver.num_instance"));
        let kind = MINIMAL.replace("\"market1501\"", "\"market\"");
        assert!(parse(&kind).unwrap_err().contains("market"));
        let shift = MINIMAL.replace("shift_num = 5", "shift_num = 500");
        assert!(parse(&shift).unwrap_err().contains("shift"));
        for clip in ["0.0", "-5.0", "nan"] {
            let text = MINIMAL.replace(
                "eval_period = 120",
                &format!("eval_period = 120\ngrad_clip_norm = {clip}"),
            );
            assert!(
                parse(&text).unwrap_err().contains("grad_clip_norm"),
                "{clip}"
            );
        }
        let text = MINIMAL.replace("[model]", "[model]\ndrop_path = 10.0");
        assert!(parse(&text).unwrap_err().contains("model.drop_path 10"));
    }
}
