//! `transreid export`: a checkpoint as an ONNX file for onnxruntime, TensorRT and OpenVINO.

use std::path::PathBuf;

use anyhow::Context;
use transreid::backend::CpuBackend;
use transreid::data::Normalization;
use transreid::onnx_export::{
    export_checkpoint, trtexec_command, ChannelOrder, ExportSettings, OnnxInput, OnnxPrecision,
};

use crate::inputs::NormalizationChoice;

/// The exported file's format.
#[derive(clap::ValueEnum, Clone, Copy)]
enum Format {
    /// ONNX, opset 17 (onnxruntime, TensorRT 8.6 and later, OpenVINO).
    Onnx,
}

/// What the graph's `images` input holds.
#[derive(clap::ValueEnum, Clone, Copy)]
enum InputChoice {
    /// float32 [batch, 3, H, W] in [0, 1] (torchvision's ToTensor); the graph normalises.
    Float,
    /// uint8 [batch, H, W, 3], decoded frames as OpenCV hands them over (with --channel-order
    /// bgr); the graph scales and normalises.
    #[value(name = "uint8-nhwc")]
    Uint8Nhwc,
    /// float32 [batch, 3, H, W] already normalised with the checkpoint's mean and std (in the
    /// metadata); for callers that must normalise themselves.
    Normalized,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum OrderChoice {
    Rgb,
    Bgr,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum PrecisionChoice {
    /// float32 throughout.
    Fp32,
    /// Linear layers and attention products in float16 (weights stored in float16),
    /// LayerNorm, softmax, GELU and BNNecks in float32: what TensorRT 10+ builds fp16 engines
    /// from.
    Fp16,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Checkpoint (written by `train`, `demo` or `import`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output file (`.onnx`); the metadata is also written beside it as `<out>.json`.
    #[arg(long)]
    out: PathBuf,
    /// Format of the output.
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// What the `images` input holds. Resizing stays outside the graph: to the checkpoint's
    /// size with bilinear interpolation, as `embed` does.
    #[arg(long, value_enum, default_value = "float")]
    input: InputChoice,
    /// Channel order of the `images` input.
    #[arg(long, value_enum, default_value = "rgb")]
    channel_order: OrderChoice,
    /// Arithmetic of the graph.
    #[arg(long, value_enum, default_value = "fp32")]
    precision: PrecisionChoice,
    /// Bake this camera id (0-based, as `embed --camera`) into a camera SIE model instead of
    /// a `camera` input: the graph then takes the images alone, as trackers feed it.
    #[arg(long)]
    camera: Option<i64>,
    /// Bake this view id into a view SIE model instead of a `view` input.
    #[arg(long)]
    view: Option<i64>,
    /// Input normalisation in the graph. Default: the one the checkpoint records (older
    /// checkpoints: the run's `config.toml` beside it, else `half`, with a warning).
    #[arg(long, value_enum)]
    normalization: Option<NormalizationChoice>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let Format::Onnx = args.format;
    let settings = ExportSettings {
        input: match args.input {
            InputChoice::Float => OnnxInput::Float,
            InputChoice::Uint8Nhwc => OnnxInput::Uint8Nhwc,
            InputChoice::Normalized => OnnxInput::Normalized,
        },
        channel_order: match args.channel_order {
            OrderChoice::Rgb => ChannelOrder::Rgb,
            OrderChoice::Bgr => ChannelOrder::Bgr,
        },
        precision: match args.precision {
            PrecisionChoice::Fp32 => OnnxPrecision::Fp32,
            PrecisionChoice::Fp16 => OnnxPrecision::Fp16,
        },
        camera: args.camera,
        view: args.view,
    };
    let exported = export_checkpoint::<CpuBackend>(
        &args.checkpoint,
        &args.out,
        settings,
        args.normalization.map(Normalization::from),
        &Default::default(),
    )
    .with_context(|| format!("exporting {}", args.checkpoint.display()))?;
    if let Some(warning) = exported.normalization.warning(&args.checkpoint) {
        eprintln!("warning: {warning}");
    }
    let m = &exported.metadata;
    let [h, w] = exported.config.input_size();
    println!(
        "wrote {} ({:.1} MB) and {}",
        exported.onnx.display(),
        exported.bytes as f64 / 1e6,
        exported.sidecar.display()
    );
    println!(
        "input `images`: {} {} {}, {}x{} (resize outside the graph: bilinear, as embed), \
         range {}, normalisation {} (mean {} std {}, from {})",
        m["transreid.input.dtype"],
        m["transreid.input.layout"],
        m["transreid.input.color"],
        h,
        w,
        m["transreid.input.range"],
        if m["transreid.normalization_in_graph"] == "true" {
            "in the graph"
        } else {
            "by the caller"
        },
        m["transreid.mean"],
        m["transreid.std"],
        m["transreid.normalization_source"],
    );
    println!(
        "side information: camera: {}; view: {}",
        m["transreid.sie.camera"], m["transreid.sie.view"]
    );
    println!(
        "output `features`: float32 [batch, {}] ({}), not L2-normalised; precision {}",
        m["transreid.feature_dim"], m["transreid.feature_layout"], m["transreid.precision"]
    );
    println!("TensorRT: {}", trtexec_command(&exported));
    Ok(())
}
