//! `transreid import`: foreign weights into a TransReID checkpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::Backend;
use transreid::backend::CpuBackend;
use transreid::config::PatchStem;
use transreid::data::Normalization;
use transreid::input_normalization::input_spec;
use transreid::model::{
    load_pretrained, save_checkpoint_with_metadata, CheckpointFile, ClipLayout, IcsStemConfig,
    ImportOptions, ImportReport, JpmConfig, NeckFeat, PretrainGrid, PromptObject, SieConfig,
    SieMode, TransReidConfig, VitPreset, WeightKind,
};
use transreid::output_path::check_output;

use crate::inputs::NormalizationChoice;

/// What the source file holds.
#[derive(clap::ValueEnum, Clone, Copy)]
pub enum SourceKind {
    /// Whatever the keys say (the detected layout is printed).
    Auto,
    /// An ImageNet ViT / DeiT backbone: timm names or a Hugging Face transformers ViT.
    Imagenet,
    /// A self-supervised person backbone (PersonViT, TransReID-SSL): a DINO / iBOT training
    /// checkpoint (its teacher) or its flat conversion.
    #[value(alias = "self_supervised")]
    SelfSupervised,
    /// A trained TransReID checkpoint in the reference's layout.
    Reference,
    /// CLIP weights (OpenAI / open_clip, timm, Hugging Face) or a trained CLIP-ReID model (the
    /// reference's `.pth`): a CLIP-ReID checkpoint.
    Clip,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The source weights (`.safetensors`, `.pth`).
    #[arg(long)]
    pub source: PathBuf,
    /// What the source holds; the file's keys decide its layout and must agree.
    #[arg(long, value_enum, default_value = "auto")]
    pub kind: SourceKind,
    /// Height / width ratio of the patch grid the source's position embedding was trained at
    /// (2 for LUPerson weights trained at 256x128), used when it is resized.
    #[arg(long, default_value_t = 1, conflicts_with = "pretrain_grid")]
    pub pretrain_hw_ratio: usize,
    /// The patch grid the source's position embedding was trained at, `HxW` (e.g. `7x3`), for
    /// grids no ratio describes.
    #[arg(long, value_parser = parse_grid)]
    pub pretrain_grid: Option<[usize; 2]>,
    /// Patch embedding of the model: `conv`, or TransReID-SSL's `ics` stem (stride 16).
    #[arg(long, value_enum, default_value = "conv")]
    pub stem: PatchStem,
    /// Output checkpoint (`.safetensors`).
    #[arg(long)]
    pub out: PathBuf,
    /// Backbone: vit_base16 (default), deit_base16, deit_small16, vit_small16,
    /// vit_small_legacy, tiny. CLIP files carry their architecture.
    #[arg(long)]
    pub preset: Option<VitPreset>,
    /// Image height and width.
    #[arg(long, num_args = 2, default_values_t = [256, 128])]
    pub size: Vec<usize>,
    /// Patch stride (1 to the patch size, 16).
    #[arg(long, default_value_t = 16)]
    pub stride: usize,
    /// Training identities. A trained CLIP-ReID model's are its classifier's rows.
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Use the Jigsaw Patch Module.
    #[arg(long)]
    pub jpm: bool,
    /// Cameras for SIE (0: no camera embedding).
    #[arg(long, default_value_t = 0)]
    pub cameras: usize,
    /// Views for SIE (0: no view embedding).
    #[arg(long, default_value_t = 0)]
    pub views: usize,
    /// SIE coefficient (`MODEL.SIE_COE`). Default for TransReID: 3.0, the reference's; a
    /// CLIP-ReID model with SIE needs it given (the reference's default is 3.0, its published
    /// SIE runs use 1.0).
    #[arg(long)]
    pub sie_coefficient: Option<f64>,
    /// Inference feature: `before` the BNNeck (default, what the reference's configs evaluate)
    /// or `after`.
    #[arg(long, value_parser = parse_snake::<NeckFeat>, default_value = "before")]
    pub neck_feat: NeckFeat,
    /// CLIP-ReID: the prompt's noun, `person` (default) or `vehicle` (VeRi-776, VehicleID), for
    /// a CLIP file with a text tower.
    #[arg(long, value_parser = parse_snake::<PromptObject>)]
    pub object: Option<PromptObject>,
    /// CLIP-ReID: leave the text tower and the prompts out (inference needs only the image
    /// side; the checkpoint is smaller).
    #[arg(long)]
    pub image_only: bool,
    /// Input normalisation recorded in the checkpoint. Default: the backbone's (ImageNet for
    /// the DeiT presets, 0.5 for the ViT ones and CLIP, as the reference's configs).
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationChoice>,
    /// Load what matches and report the rest.
    #[arg(long)]
    pub allow_partial: bool,
    /// Seed of the weights the source does not hold (SIE table, classifiers, necks), so the
    /// same command gives the same file; recorded in the checkpoint.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A snake_case name of a serde enum (`before`, `vehicle`).
fn parse_snake<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| format!("`{text}`: {e}"))
}

/// `HxW` (e.g. `16x8`) as `[height, width]`.
fn parse_grid(text: &str) -> Result<[usize; 2], String> {
    let parse = |s: &str| s.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match text.split_once(['x', 'X']) {
        Some((h, w)) => match (parse(h), parse(w)) {
            (Some(h), Some(w)) => Ok([h, w]),
            _ => Err(format!(
                "`{text}`: expected HxW with positive numbers, e.g. 16x8"
            )),
        },
        None => Err(format!("`{text}`: expected HxW, e.g. 16x8")),
    }
}

/// The checkpoint metadata key of the seed `import` initialised the model with.
pub const IMPORT_SEED_KEY: &str = "transreid.import_seed";

impl ImportArgs {
    /// The SIE of `--cameras` / `--views`, at `--sie-coefficient` or `default_coefficient`.
    pub fn sie(&self, default_coefficient: f64) -> SieConfig {
        SieConfig::new()
            .with_mode(SieMode::from_flags(self.cameras > 0, self.views > 0))
            .with_camera_num(self.cameras.max(1))
            .with_view_num(self.views.max(1))
            .with_coefficient(self.sie_coefficient.unwrap_or(default_coefficient))
    }

    /// Says how the SIE table was read: the file cannot say how its rows split into cameras
    /// and views.
    pub fn print_sie(&self, sie: &SieConfig) {
        if sie.mode != SieMode::None {
            println!(
                "SIE table read as {} (--cameras {} --views {}), coefficient {}{}: these must \
                 be the training run's",
                sie.describe(),
                self.cameras,
                self.views,
                sie.coefficient,
                if self.sie_coefficient.is_none() {
                    " (the reference's default; --sie-coefficient overrides)"
                } else {
                    ""
                }
            );
        }
    }
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    check_output(&args.out, "safetensors", &[&args.source])?;
    anyhow::ensure!(
        args.size.iter().all(|&s| s > 0) && args.stride > 0,
        "--size and --stride must be positive"
    );
    let keys = CheckpointFile::open(&args.source)
        .with_context(|| format!("reading {}", args.source.display()))?
        .keys();
    let kind = match (args.kind, ClipLayout::detect(&keys)) {
        (SourceKind::Clip | SourceKind::Auto, Some(layout)) => {
            return crate::import_clip::run(&args, layout)
        }
        (SourceKind::Clip, None) => anyhow::bail!(
            "{} is no CLIP file: its keys ({}) are none of OpenAI / open_clip (`visual.*`), \
             timm (`norm_pre.*`), Hugging Face (`vision_model.*`) or CLIP-ReID \
             (`image_encoder.*`)",
            args.source.display(),
            keys.iter().take(4).cloned().collect::<Vec<_>>().join(", ")
        ),
        (SourceKind::Auto, None) => WeightKind::Auto,
        (SourceKind::Imagenet, _) => WeightKind::Imagenet,
        (SourceKind::SelfSupervised, _) => WeightKind::SelfSupervised,
        (SourceKind::Reference, _) => WeightKind::Reference,
    };
    let clip_only = [
        (args.object.is_some(), "--object"),
        (args.image_only, "--image-only"),
    ];
    if let Some((_, flag)) = clip_only.iter().find(|(given, _)| *given) {
        anyhow::bail!("{flag} is for CLIP files, and this is none");
    }
    let num_classes = args
        .num_classes
        .context("--num-classes is needed: the classifier's outputs, the training identities")?;
    anyhow::ensure!(num_classes > 0, "--num-classes must be at least 1");
    let preset = args.preset.unwrap_or(VitPreset::VitBase16);
    anyhow::ensure!(
        args.pretrain_hw_ratio >= 1,
        "--pretrain-hw-ratio must be at least 1"
    );
    let size = [args.size[0], args.size[1]];
    let vit = preset
        .config(size, [args.stride; 2])
        .with_stem((args.stem == PatchStem::Ics).then(IcsStemConfig::new));
    let config = TransReidConfig::new(vit, num_classes)
        .with_sie(args.sie(3.0))
        .with_jpm(args.jpm.then(JpmConfig::new))
        .with_neck_feat(args.neck_feat);
    config.validate()?;
    let normalization = match args.normalization {
        Some(choice) => Normalization::from(choice),
        None => {
            let (mean, std) = preset.pixel_stats();
            let normalization = Normalization { mean, std };
            let preset = serde_json::to_value(preset)?;
            println!(
                "input normalisation: mean {mean:?} std {std:?} (the {} preset's; \
                 --normalization overrides)",
                preset.as_str().unwrap_or_default()
            );
            normalization
        }
    };
    let device = Default::default();
    CpuBackend::seed(&device, args.seed);
    let mut model = config.init::<CpuBackend>(&device);
    let options = ImportOptions {
        allow_partial: args.allow_partial,
    };
    let grid = match args.pretrain_grid {
        Some(grid) => PretrainGrid::Grid(grid),
        None => PretrainGrid::HwRatio(args.pretrain_hw_ratio),
    };
    let report = load_pretrained(&mut model, &args.source, kind, grid, options)
        .with_context(|| format!("importing {}", args.source.display()))?;
    print_import_report(&report);
    args.print_sie(&config.sie);
    let input = input_spec(normalization, config.vit.img_size);
    let extra = BTreeMap::from([(IMPORT_SEED_KEY.to_string(), args.seed.to_string())]);
    save_checkpoint_with_metadata(&model, &config, &input, extra, &args.out)?;
    println!(
        "wrote {} (weights not in the source initialised with --seed {})",
        args.out.display(),
        args.seed
    );
    Ok(())
}

pub fn print_import_report(report: &ImportReport) {
    if let Some(layout) = report.layout {
        println!("detected {layout}");
    }
    if let Some((from, to)) = report.pos_embed_resized {
        println!("position embedding resized from {from} to {to} tokens");
    }
    if report.dropped_dist_token {
        println!("distillation token dropped");
    }
    println!("{} tensors loaded", report.loaded.len());
    for (what, keys) in [
        ("missing", &report.missing),
        ("unexpected", &report.unexpected),
    ] {
        if !keys.is_empty() {
            println!(
                "{} {what} (left as initialised): {}",
                keys.len(),
                keys.join(", ")
            );
        }
    }
    for (key, model, file) in &report.mismatched {
        println!("skipped {key}: the model's shape is {model:?}, the file's {file:?}",);
    }
}
