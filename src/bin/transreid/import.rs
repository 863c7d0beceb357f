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
    load_pretrained, save_checkpoint_with_metadata, IcsStemConfig, ImportOptions, ImportReport,
    JpmConfig, PretrainGrid, SieConfig, SieMode, TransReidConfig, VitPreset, WeightKind,
};
use transreid::output_path::check_output;

use crate::inputs::NormalizationChoice;

/// What the source file holds.
#[derive(clap::ValueEnum, Clone, Copy)]
enum SourceKind {
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
}

impl From<SourceKind> for WeightKind {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::Auto => WeightKind::Auto,
            SourceKind::Imagenet => WeightKind::Imagenet,
            SourceKind::SelfSupervised => WeightKind::SelfSupervised,
            SourceKind::Reference => WeightKind::Reference,
        }
    }
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The source weights (`.safetensors`, `.pth`).
    #[arg(long)]
    source: PathBuf,
    /// What the source holds; the file's keys decide its layout and must agree.
    #[arg(long, value_enum, default_value = "auto")]
    kind: SourceKind,
    /// Height / width ratio of the patch grid the source's position embedding was trained at
    /// (2 for LUPerson weights trained at 256x128), used when it is resized.
    #[arg(long, default_value_t = 1, conflicts_with = "pretrain_grid")]
    pretrain_hw_ratio: usize,
    /// The patch grid the source's position embedding was trained at, `HxW` (e.g. `7x3`), for
    /// grids no ratio describes.
    #[arg(long, value_parser = parse_grid)]
    pretrain_grid: Option<[usize; 2]>,
    /// Patch embedding of the model: `conv`, or TransReID-SSL's `ics` stem (stride 16).
    #[arg(long, value_enum, default_value = "conv")]
    stem: PatchStem,
    /// Output checkpoint (`.safetensors`).
    #[arg(long)]
    out: PathBuf,
    /// Backbone: vit_base16, deit_base16, deit_small16, vit_small16, vit_small_legacy, tiny.
    #[arg(long, default_value = "vit_base16")]
    preset: VitPreset,
    /// Image height and width.
    #[arg(long, num_args = 2, default_values_t = [256, 128])]
    size: Vec<usize>,
    /// Patch stride (1 to the patch size, 16).
    #[arg(long, default_value_t = 16)]
    stride: usize,
    /// Training identities.
    #[arg(long)]
    num_classes: usize,
    /// Use the Jigsaw Patch Module.
    #[arg(long)]
    jpm: bool,
    /// Cameras for SIE (0: no camera embedding).
    #[arg(long, default_value_t = 0)]
    cameras: usize,
    /// Views for SIE (0: no view embedding).
    #[arg(long, default_value_t = 0)]
    views: usize,
    /// Input normalisation recorded in the checkpoint. Default: the backbone's (ImageNet for
    /// the DeiT presets, 0.5 for the ViT ones, as the reference's configs).
    #[arg(long, value_enum)]
    normalization: Option<NormalizationChoice>,
    /// Load what matches and report the rest.
    #[arg(long)]
    allow_partial: bool,
    /// Seed of the weights the source does not hold (SIE table, classifiers, necks), so the
    /// same command gives the same file; recorded in the checkpoint.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
const IMPORT_SEED_KEY: &str = "transreid.import_seed";

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    check_output(&args.out, "safetensors", &[&args.source])?;
    anyhow::ensure!(args.num_classes > 0, "--num-classes must be at least 1");
    anyhow::ensure!(
        args.pretrain_hw_ratio >= 1,
        "--pretrain-hw-ratio must be at least 1"
    );
    let sie_mode = match (args.cameras > 0, args.views > 0) {
        (true, true) => SieMode::CameraView,
        (true, false) => SieMode::Camera,
        (false, true) => SieMode::View,
        (false, false) => SieMode::None,
    };
    let size = [args.size[0], args.size[1]];
    let vit = args
        .preset
        .config(size, [args.stride; 2])
        .with_stem((args.stem == PatchStem::Ics).then(IcsStemConfig::new));
    let config = TransReidConfig::new(vit, args.num_classes)
        .with_sie(
            SieConfig::new()
                .with_mode(sie_mode)
                .with_camera_num(args.cameras.max(1))
                .with_view_num(args.views.max(1)),
        )
        .with_jpm(args.jpm.then(JpmConfig::new));
    config.validate()?;
    let normalization = match args.normalization {
        Some(choice) => Normalization::from(choice),
        None => {
            let (mean, std) = args.preset.pixel_stats();
            let normalization = Normalization { mean, std };
            let preset = serde_json::to_value(args.preset)?;
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
    let report = load_pretrained(&mut model, &args.source, args.kind.into(), grid, options)
        .with_context(|| format!("importing {}", args.source.display()))?;
    print_import_report(&report);
    if sie_mode != SieMode::None {
        // The file cannot say how its rows split into cameras and views.
        println!(
            "SIE table read as {} (--cameras {} --views {}): these must be the training run's",
            config.sie.describe(),
            args.cameras,
            args.views
        );
    }
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
