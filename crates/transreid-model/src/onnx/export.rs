//! [`TransReid`] and [`ClipReid`] as ONNX graphs (opset 17, IR 8), written from the module
//! tree: the same feature as their `embed` for a symbolic batch, with the input normalisation
//! inside.

use std::collections::{BTreeMap, BTreeSet};

use burn::prelude::*;
use burn_store::ModuleSnapshot;
use prost::Message;

use super::graph::{float, int, ints, Graph};
use super::proto::{
    data_type, Dimension, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use crate::batch_norm::EPSILON as BATCH_NORM_EPSILON;
use crate::block::BlockConfig;
use crate::clip_reid::{ClipReid, ClipReidConfig};
use crate::error::LabelError;
use crate::mlp::Activation;
use crate::pretrained::reference_key;
use crate::sie::{SieConfig, SieMode};
use crate::transreid::{NeckFeat, TransReid, TransReidConfig};

/// The ONNX operator set the graph uses: native `LayerNormalization`, accepted by TensorRT 8.6
/// to 11, onnxruntime and OpenVINO.
pub const ONNX_OPSET: i64 = 17;
/// The ONNX IR version written (the one that goes with opset 17).
pub const ONNX_IR_VERSION: i64 = 8;
/// Name of the symbolic batch axis of every input and of the output.
pub const BATCH_AXIS: &str = "batch";
/// Name of the image input.
pub const IMAGES_INPUT: &str = "images";
/// Name of the camera input of camera SIE models (int64 `[batch]`, 0-based).
pub const CAMERA_INPUT: &str = "camera";
/// Name of the view input of view SIE models (int64 `[batch]`).
pub const VIEW_INPUT: &str = "view";
/// Name of the output (`[batch, feature_dim]`, what `embed` gives).
pub const FEATURES_OUTPUT: &str = "features";

/// What the graph's `images` input holds. Resizing stays outside the graph in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnnxInput {
    /// float32 `[batch, 3, H, W]` in `[0, 1]` (torchvision's `ToTensor`); the graph normalises.
    #[default]
    Float,
    /// uint8 `[batch, H, W, 3]` (decoded frames as OpenCV and video decoders hand them
    /// over); the graph scales by 1/255 and normalises.
    Uint8Nhwc,
    /// float32 `[batch, 3, H, W]` already normalised by the caller with the model's mean and
    /// std (recorded in the metadata).
    Normalized,
}

impl OnnxInput {
    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Float => "float",
            Self::Uint8Nhwc => "uint8-nhwc",
            Self::Normalized => "normalized",
        }
    }
}

/// The channel order of the `images` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelOrder {
    /// Red, green, blue (what the model was trained on).
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV's order); the graph reorders.
    Bgr,
}

impl ChannelOrder {
    /// `RGB` or `BGR`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rgb => "RGB",
            Self::Bgr => "BGR",
        }
    }
}

/// The arithmetic of the exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnnxPrecision {
    /// float32 throughout.
    #[default]
    Fp32,
    /// The project's mixed policy ([`crate::Precision::F16`]): the transformer's Linear layers
    /// and attention products in float16 (their weights stored in float16), LayerNorm, softmax,
    /// GELU, residual adds, patch embedding and BNNecks in float32; inputs and output float32.
    Fp16,
}

impl OnnxPrecision {
    /// `fp32` or `fp16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
        }
    }
}

/// How the exported graph is fed.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxOptions {
    /// The `images` input. Default: float in `[0, 1]`.
    pub input: OnnxInput,
    /// Channel order of `images`. Default: RGB.
    pub channel_order: ChannelOrder,
    /// Arithmetic. Default: fp32.
    pub precision: OnnxPrecision,
    /// A camera id (0-based) baked into the graph instead of a `camera` input.
    pub camera: Option<i64>,
    /// A view id baked into the graph instead of a `view` input.
    pub view: Option<i64>,
    /// The model's input mean per RGB channel (of `[0, 1]` pixels).
    pub mean: [f32; 3],
    /// The model's input standard deviation per RGB channel.
    pub std: [f32; 3],
}

impl OnnxOptions {
    /// Defaults with the model's input normalisation.
    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            input: OnnxInput::Float,
            channel_order: ChannelOrder::Rgb,
            precision: OnnxPrecision::Fp32,
            camera: None,
            view: None,
            mean,
            std,
        }
    }
}

/// Why a model cannot be exported as asked.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A baked camera or view for a model that does not embed it.
    #[error("the model has no {label} embedding (its SIE: {sie}), so there is no {label} to bake")]
    NoSideInput {
        /// `camera` or `view`.
        label: &'static str,
        /// How the model's SIE table is read.
        sie: String,
    },
    /// A baked id outside the model's table.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// A standard deviation that is zero, negative or not finite.
    #[error("input std {std:?}: every channel must be positive and finite")]
    Std {
        /// The std given.
        std: [f32; 3],
    },
    /// Weights beyond protobuf's 2 GiB message limit (a single-file ONNX model cannot hold them).
    #[error(
        "the model's weights take {bytes} bytes; a single-file ONNX model holds at most 2 GiB"
    )]
    TooLarge {
        /// Bytes of weights.
        bytes: usize,
    },
}

/// An exported model: the `.onnx` bytes and the metadata they carry.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// The serialised `ModelProto`.
    pub bytes: Vec<u8>,
    /// Every `metadata_props` entry, also what a JSON sidecar should hold.
    pub metadata: BTreeMap<String, String>,
}

/// Exports `model` (built from `config`) as ONNX, with `extra` added to its metadata (where
/// the weights came from, say).
///
/// The graph's `features` output equals [`TransReid::embed`] of the same pixels: one symbolic
/// `batch` axis (every Reshape copies it with 0 or infers it with -1, the class token is
/// expanded from the input's shape); initializers named as the checkpoint's keys, Linear
/// weights stored `[in, out]` (the checkpoint's transpose) for `MatMul`; GELU as `Erf`;
/// attention with q scaled before the first `MatMul` (the pattern TensorRT fuses); the last
/// block computed for the class token only, as `embed` does.
pub fn export_onnx<B: Backend>(
    model: &TransReid<B>,
    config: &TransReidConfig,
    options: &OnnxOptions,
    extra: &BTreeMap<String, String>,
) -> Result<OnnxModel, OnnxError> {
    export(
        Net::TransReid(config),
        Params::of(model, |_| true),
        options,
        extra,
    )
}

/// Exports a CLIP-ReID `model` (built from `config`) as ONNX, like [`export_onnx`]: the
/// graph's `features` output equals [`ClipReid::embed`] of the same pixels (the class token
/// after `ln_post` and its projection, before or after the BNNecks; SIE on the class token
/// only). The text side, which inference does not use, is left out. Initializers are named
/// as the reference's checkpoint keys (`image_encoder.transformer.resblocks.N.*`); QuickGELU
/// is `x * Sigmoid(1.702 x)`.
pub fn export_clip_reid_onnx<B: Backend>(
    model: &ClipReid<B>,
    config: &ClipReidConfig,
    options: &OnnxOptions,
    extra: &BTreeMap<String, String>,
) -> Result<OnnxModel, OnnxError> {
    let image_side =
        |path: &str| !path.starts_with("text_encoder.") && !path.starts_with("prompt_learner.");
    export(
        Net::Clip(config),
        Params::of(model, image_side),
        options,
        extra,
    )
}

/// The network a graph is written for.
#[derive(Clone, Copy)]
enum Net<'a> {
    TransReid(&'a TransReidConfig),
    Clip(&'a ClipReidConfig),
}

impl<'a> Net<'a> {
    fn img_size(self) -> [usize; 2] {
        match self {
            Net::TransReid(c) => c.vit.img_size,
            Net::Clip(c) => c.vision.img_size,
        }
    }

    fn sie(self) -> &'a SieConfig {
        match self {
            Net::TransReid(c) => &c.sie,
            Net::Clip(c) => &c.sie,
        }
    }

    fn neck_feat(self) -> NeckFeat {
        match self {
            Net::TransReid(c) => c.neck_feat,
            Net::Clip(c) => c.neck_feat,
        }
    }

    fn embed_dim(self) -> usize {
        match self {
            Net::TransReid(c) => c.embed_dim(),
            Net::Clip(c) => c.embed_dim(),
        }
    }

    /// The settings every block shares (the blocks differ in drop path only).
    fn block(self) -> BlockConfig {
        match self {
            Net::TransReid(c) => c.vit.block(0),
            Net::Clip(c) => c.vision.block(),
        }
    }
}

fn export(
    net: Net<'_>,
    params: Params,
    options: &OnnxOptions,
    extra: &BTreeMap<String, String>,
) -> Result<OnnxModel, OnnxError> {
    if options.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(OnnxError::Std { std: options.std });
    }
    let sie = net.sie();
    for (label, baked, used) in [
        ("camera", options.camera, sie.mode.uses_cameras()),
        ("view", options.view, sie.mode.uses_views()),
    ] {
        if baked.is_some() && !used {
            return Err(OnnxError::NoSideInput {
                label,
                sie: sie.describe(),
            });
        }
    }
    // The ids' ranges, as `embed` checks them.
    sie.index(options.camera.unwrap_or(0), options.view.unwrap_or(0))?;

    let mut writer = Writer {
        g: Graph::default(),
        params,
        written: BTreeSet::new(),
        net,
        block: net.block(),
        fp16: options.precision == OnnxPrecision::Fp16,
    };
    let inputs = writer.inputs(options);
    let features = match net {
        Net::TransReid(config) => writer.transreid_features(config, &inputs),
        Net::Clip(config) => writer.clip_features(config, &inputs),
    };
    let metadata = graph_metadata(net, options, &inputs, extra);
    let Writer { g, .. } = writer;

    let dim = net.embed_dim() as i64;
    let mut graph_inputs = vec![value_info(
        &inputs.images_name,
        inputs.images_type,
        &inputs.images_dims,
    )];
    for side in [&inputs.camera_input, &inputs.view_input]
        .into_iter()
        .flatten()
    {
        graph_inputs.push(value_info(side, data_type::INT64, &[None]));
    }
    let graph = GraphProto {
        node: g.nodes,
        name: match net {
            Net::TransReid(_) => "transreid",
            Net::Clip(_) => "clip_reid",
        }
        .into(),
        initializer: g.initializers,
        doc_string: String::new(),
        input: graph_inputs,
        output: vec![value_info(&features, data_type::FLOAT, &[None, Some(dim)])],
    };
    let model_proto = ModelProto {
        ir_version: ONNX_IR_VERSION,
        producer_name: "transreid".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: match net {
            Net::TransReid(_) => {
                "TransReID re-identification features (see the metadata for the input)"
            }
            Net::Clip(_) => "CLIP-ReID re-identification features (see the metadata for the input)",
        }
        .into(),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: ONNX_OPSET,
        }],
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    };
    let bytes = model_proto.encoded_len();
    if bytes >= 2 << 30 {
        return Err(OnnxError::TooLarge { bytes });
    }
    Ok(OnnxModel {
        bytes: model_proto.encode_to_vec(),
        metadata,
    })
}

/// A graph input or output: its type, with `None` for the batch axis.
fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(size) => Dimension {
                dim_value: Some(*size),
                dim_param: None,
            },
            None => Dimension {
                dim_value: None,
                dim_param: Some(BATCH_AXIS.into()),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// The model's tensors by module path (Burn layouts: Linear weights `[in, out]`).
struct Params(BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl Params {
    /// The tensors of `model` whose paths `keep` accepts.
    fn of<B: Backend, M: ModuleSnapshot<B>>(model: &M, keep: impl Fn(&str) -> bool) -> Self {
        Self(
            model
                .collect(None, None, false)
                .into_iter()
                .filter(|snapshot| keep(&snapshot.full_path()))
                .map(|snapshot| {
                    let data = snapshot.to_data().expect("model tensors are readable");
                    let shape = data.shape.to_vec();
                    let values = data.convert::<f32>().to_vec().expect("f32 values");
                    (snapshot.full_path(), (shape, values))
                })
                .collect(),
        )
    }

    fn get(&self, path: &str) -> &(Vec<usize>, Vec<f32>) {
        self.0
            .get(path)
            .unwrap_or_else(|| panic!("the model has no tensor {path}"))
    }
}

/// The graph's inputs as the model reads them.
struct Inputs {
    images_name: String,
    images_type: i32,
    images_dims: Vec<Option<i64>>,
    /// Normalised `[batch, 3, H, W]` float32.
    pixels: String,
    /// `Shape(images)[0..1]`, int64 `[1]`.
    batch: String,
    camera_input: Option<String>,
    view_input: Option<String>,
    /// The SIE table row per sample (`[batch]`), or one baked row (`[1]`).
    sie_row: Option<String>,
}

struct Writer<'a> {
    g: Graph,
    params: Params,
    /// Initializers already in the graph.
    written: BTreeSet<String>,
    net: Net<'a>,
    /// What every block of the network shares.
    block: BlockConfig,
    fp16: bool,
}

impl Writer<'_> {
    /// An initializer holding the parameter at `path`, named by its checkpoint key (written
    /// once, however often it is read).
    fn param(&mut self, path: &str) -> String {
        self.initializer(path, false)
    }

    /// [`Self::param`] in float16 when the graph is mixed-precision.
    fn product_param(&mut self, path: &str) -> String {
        self.initializer(path, self.fp16)
    }

    fn initializer(&mut self, path: &str, f16: bool) -> String {
        let name = reference_key(path);
        if self.written.insert(name.clone()) {
            let (shape, values) = self.params.get(path);
            if f16 {
                self.g.f16_tensor(&name, shape, values);
            } else {
                self.g.f32_tensor(&name, shape, values);
            }
        }
        name
    }

    fn cast(&mut self, x: &str, to: i32) -> String {
        self.g.node("Cast", &[x], vec![int("to", to as i64)])
    }

    /// `x` in the products' dtype.
    fn cast_in(&mut self, x: &str) -> String {
        if self.fp16 {
            self.cast(x, data_type::FLOAT16)
        } else {
            x.to_string()
        }
    }

    /// `x` back in float32.
    fn cast_out(&mut self, x: &str) -> String {
        if self.fp16 {
            self.cast(x, data_type::FLOAT)
        } else {
            x.to_string()
        }
    }

    fn i64s(&mut self, values: &[i64]) -> String {
        self.g.i64_const(&[values.len()], values)
    }

    fn scalar_index(&mut self, index: i64) -> String {
        self.g.i64_const(&[], &[index])
    }

    fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let shape = self.i64s(shape);
        self.g.node("Reshape", &[x, &shape], vec![])
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.g.node("Transpose", &[x], vec![ints("perm", perm)])
    }

    /// `x[.., start..end, ..]` along `axis`.
    fn slice(&mut self, x: &str, axis: i64, start: i64, end: i64) -> String {
        let (s, e, a) = (self.i64s(&[start]), self.i64s(&[end]), self.i64s(&[axis]));
        self.g.node("Slice", &[x, &s, &e, &a], vec![])
    }

    /// `x[.., index, ..]` along `axis`, the axis removed.
    fn pick(&mut self, x: &str, axis: i64, index: i64) -> String {
        let i = self.scalar_index(index);
        self.g.node("Gather", &[x, &i], vec![int("axis", axis)])
    }

    fn scalar(&mut self, value: f32) -> String {
        self.g.f32_const(&[], &[value])
    }

    /// A per-channel constant `[1, 3, 1, 1]`.
    fn per_channel(&mut self, values: [f32; 3]) -> String {
        self.g.f32_const(&[1, 3, 1, 1], &values)
    }

    fn inputs(&mut self, options: &OnnxOptions) -> Inputs {
        self.g.set_scope("input");
        let [h, w] = self.net.img_size().map(|s| s as i64);
        let images = IMAGES_INPUT.to_string();
        let (images_type, images_dims, channels_last) = match options.input {
            OnnxInput::Uint8Nhwc => (
                data_type::UINT8,
                vec![None, Some(h), Some(w), Some(3)],
                true,
            ),
            _ => (
                data_type::FLOAT,
                vec![None, Some(3), Some(h), Some(w)],
                false,
            ),
        };
        let mut x = images.clone();
        if channels_last {
            x = self.transpose(&x, &[0, 3, 1, 2]);
        }
        if options.channel_order == ChannelOrder::Bgr {
            let order = self.i64s(&[2, 1, 0]);
            x = self.g.node("Gather", &[&x, &order], vec![int("axis", 1)]);
        }
        if channels_last {
            x = self.cast(&x, data_type::FLOAT);
            let scale = self.scalar(255.0);
            x = self.g.node("Div", &[&x, &scale], vec![]);
        }
        // `(v / 255 - mean) / std`, the test transform's arithmetic.
        if options.input != OnnxInput::Normalized {
            let mean = self.per_channel(options.mean);
            let std = self.per_channel(options.std);
            x = self.g.node("Sub", &[&x, &mean], vec![]);
            x = self.g.node("Div", &[&x, &std], vec![]);
        }
        let batch = self
            .g
            .node("Shape", &[&images], vec![int("start", 0), int("end", 1)]);

        let sie = self.net.sie();
        let mut side =
            |label: &str, used: bool, baked: Option<i64>| -> (Option<String>, Option<String>) {
                match (used, baked) {
                    (false, _) => (None, None),
                    (true, Some(id)) => (None, Some(self.i64s(&[id]))),
                    (true, None) => (Some(label.to_string()), Some(label.to_string())),
                }
            };
        let (camera_input, camera) = side(CAMERA_INPUT, sie.mode.uses_cameras(), options.camera);
        let (view_input, view) = side(VIEW_INPUT, sie.mode.uses_views(), options.view);
        let sie_row = match (sie.mode, camera, view) {
            (SieMode::CameraView, Some(camera), Some(view)) => {
                let views = self.i64s(&[sie.view_num as i64]);
                let offset = self.g.node("Mul", &[&camera, &views], vec![]);
                Some(self.g.node("Add", &[&offset, &view], vec![]))
            }
            (_, camera, view) => camera.or(view),
        };
        Inputs {
            images_name: images,
            images_type,
            images_dims,
            pixels: x,
            batch,
            camera_input,
            view_input,
            sie_row,
        }
    }

    /// `[batch, 1 + N, D]` tokens: class token, patches, position and side information.
    fn tokens(&mut self, config: &TransReidConfig, inputs: &Inputs) -> String {
        let vit = &config.vit;
        let d = vit.embed_dim as i64;
        self.g.set_scope("base.patch_embed");
        let mut x = inputs.pixels.clone();
        if let Some(stem) = &vit.stem {
            let k = 7usize;
            x = self.conv("base.patch_embed.stem.conv1", &x, k, stem.stride);
            x = self.ibn("base.patch_embed.stem.ibn1", &x, stem.hidden_dim);
            x = self.conv("base.patch_embed.stem.conv2", &x, 3, 1);
            x = self.ibn("base.patch_embed.stem.ibn2", &x, stem.hidden_dim);
            x = self.conv("base.patch_embed.stem.conv3", &x, 3, 1);
            x = self.batch_norm("base.patch_embed.stem.bn", &x);
            x = self.g.node("Relu", &[&x], vec![]);
            let k = vit.patch_size / stem.stride;
            x = self.conv_strided("base.patch_embed.proj", &x, [k, k], [k, k]);
        } else {
            x = self.conv_strided("base.patch_embed.proj", &x, [vit.patch_size; 2], vit.stride);
        }
        let patches = self.patch_tokens(&x, d);

        self.g.set_scope("base");
        let cls = self.param("base.cls_token");
        let x = self.prepend_class_token(&cls, &patches, &inputs.batch, d);
        let pos = self.param("base.pos_embed");
        let mut x = self.g.node("Add", &[&x, &pos], vec![]);
        if let Some(row) = &inputs.sie_row {
            let side = self.side_embedding("base.sie_embed", row, config.sie.coefficient);
            x = self.g.node("Add", &[&x, &side], vec![]);
        }
        x
    }

    /// A convolution without padding, with its bias when the module has one.
    fn conv_strided(
        &mut self,
        path: &str,
        x: &str,
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> String {
        let weight = self.param(&format!("{path}.weight"));
        let bias_path = format!("{path}.bias");
        let mut inputs = vec![x.to_string(), weight];
        if self.params.0.contains_key(&bias_path) {
            inputs.push(self.param(&bias_path));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.g.node(
            "Conv",
            &inputs,
            vec![
                ints("kernel_shape", &kernel.map(|k| k as i64)),
                ints("strides", &stride.map(|s| s as i64)),
            ],
        )
    }

    /// Patch tokens `[batch, N, D]` of a `[batch, D, gh, gw]` convolution output.
    fn patch_tokens(&mut self, x: &str, d: i64) -> String {
        let x = self.reshape(x, &[0, d, -1]);
        self.transpose(&x, &[0, 2, 1])
    }

    /// `[class token, patches]` along the tokens, the class token (`[D]`, `[1, 1, D]` or one
    /// per sample) expanded to the batch.
    fn prepend_class_token(&mut self, cls: &str, patches: &str, batch: &str, d: i64) -> String {
        let cls = self.reshape(cls, &[-1, 1, d]);
        let rest = self.i64s(&[1, d]);
        let shape = self.g.node("Concat", &[batch, &rest], vec![int("axis", 0)]);
        let cls = self.g.node("Expand", &[&cls, &shape], vec![]);
        self.g
            .node("Concat", &[&cls, patches], vec![int("axis", 1)])
    }

    /// The SIE rows of `row` in the table at `path`, times the coefficient.
    fn side_embedding(&mut self, path: &str, row: &str, coefficient: f64) -> String {
        let table = self.param(path);
        let rows = self.g.node("Gather", &[&table, row], vec![int("axis", 0)]);
        let coefficient = self.scalar(coefficient as f32);
        self.g.node("Mul", &[&rows, &coefficient], vec![])
    }

    /// A square convolution without bias, padded by half its size (the ICS stem's).
    fn conv(&mut self, path: &str, x: &str, kernel: usize, stride: usize) -> String {
        let weight = self.param(&format!("{path}.weight"));
        let (k, s, p) = (kernel as i64, stride as i64, kernel as i64 / 2);
        self.g.node(
            "Conv",
            &[x, &weight],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[s, s]),
                ints("pads", &[p, p, p, p]),
            ],
        )
    }

    /// BatchNorm with running statistics (eps 1e-5) over axis 1.
    fn batch_norm(&mut self, path: &str, x: &str) -> String {
        let names: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|p| self.param(&format!("{path}.{p}")))
            .collect();
        self.g.node(
            "BatchNormalization",
            &[x, &names[0], &names[1], &names[2], &names[3]],
            vec![float("epsilon", BATCH_NORM_EPSILON as f32)],
        )
    }

    /// IBN: InstanceNorm on the first half of the channels, BatchNorm on the rest, then ReLU.
    fn ibn(&mut self, path: &str, x: &str, channels: usize) -> String {
        let half = (channels / 2) as i64;
        let first = self.slice(x, 1, 0, half);
        let second = self.slice(x, 1, half, channels as i64);
        let scale = self.param(&format!("{path}.instance.gamma"));
        let shift = self.param(&format!("{path}.instance.beta"));
        let first = self.g.node(
            "InstanceNormalization",
            &[&first, &scale, &shift],
            vec![float("epsilon", 1e-5)],
        );
        let second = self.batch_norm(&format!("{path}.batch"), &second);
        let x = self
            .g
            .node("Concat", &[&first, &second], vec![int("axis", 1)]);
        self.g.node("Relu", &[&x], vec![])
    }

    fn layer_norm(&mut self, path: &str, x: &str) -> String {
        let scale = self.param(&format!("{path}.gamma"));
        let shift = self.param(&format!("{path}.beta"));
        let eps = self.block.layer_norm_eps as f32;
        self.g.node(
            "LayerNormalization",
            &[x, &scale, &shift],
            vec![int("axis", -1), float("epsilon", eps)],
        )
    }

    /// `x W + b` in the products' dtype, `x` already cast in; `columns` takes a slice of the
    /// output columns (the token-0 query or the keys and values of a fused projection).
    fn linear(&mut self, path: &str, x: &str, columns: Option<(i64, i64)>) -> String {
        let mut weight = self.product_param(&format!("{path}.weight"));
        let mut bias = self
            .params
            .0
            .contains_key(&format!("{path}.bias"))
            .then(|| self.product_param(&format!("{path}.bias")));
        if let Some((start, end)) = columns {
            weight = self.slice(&weight, 1, start, end);
            bias = bias.map(|b| self.slice(&b, 0, start, end));
        }
        let y = self.g.node("MatMul", &[x, &weight], vec![]);
        match bias {
            Some(bias) => self.g.node("Add", &[&y, &bias], vec![]),
            None => y,
        }
    }

    /// A transformer block; `token0` computes only the class token's output (`[batch, 1, D]`).
    fn block(&mut self, path: &str, x: &str, token0: bool) -> String {
        self.g.set_scope(path);
        let attention = &self.block.attention;
        let (d, h) = (attention.dim as i64, attention.num_heads as i64);
        let e = d / h;
        let scale = attention.qk_scale.unwrap_or((e as f64).powf(-0.5)) as f32;
        let qkv_path = format!("{path}.attn.qkv");

        let normed = self.layer_norm(&format!("{path}.norm1"), x);
        let normed = self.cast_in(&normed);
        let (q, k, v, residual) = if token0 {
            let cls = self.slice(&normed, 1, 0, 1);
            let q = self.linear(&qkv_path, &cls, Some((0, d)));
            let q = self.reshape(&q, &[0, 0, h, e]);
            let q = self.transpose(&q, &[0, 2, 1, 3]);
            let kv = self.linear(&qkv_path, &normed, Some((d, 3 * d)));
            let kv = self.reshape(&kv, &[0, 0, 2, h, e]);
            let kv = self.transpose(&kv, &[2, 0, 3, 1, 4]);
            let (k, v) = (self.pick(&kv, 0, 0), self.pick(&kv, 0, 1));
            (q, k, v, self.slice(x, 1, 0, 1))
        } else {
            let qkv = self.linear(&qkv_path, &normed, None);
            let qkv = self.reshape(&qkv, &[0, 0, 3, h, e]);
            let qkv = self.transpose(&qkv, &[2, 0, 3, 1, 4]);
            let (q, k, v) = (
                self.pick(&qkv, 0, 0),
                self.pick(&qkv, 0, 1),
                self.pick(&qkv, 0, 2),
            );
            (q, k, v, x.to_string())
        };
        // q scaled before the first product: the attention pattern TensorRT fuses.
        let scale = if self.fp16 {
            self.g.f16_const(&[], &[scale])
        } else {
            self.scalar(scale)
        };
        let q = self.g.node("Mul", &[&q, &scale], vec![]);
        let kt = self.transpose(&k, &[0, 1, 3, 2]);
        let scores = self.g.node("MatMul", &[&q, &kt], vec![]);
        let scores = self.cast_out(&scores);
        let attn = self.g.node("Softmax", &[&scores], vec![int("axis", -1)]);
        let attn = self.cast_in(&attn);
        let out = self.g.node("MatMul", &[&attn, &v], vec![]);
        let out = self.transpose(&out, &[0, 2, 1, 3]);
        let out = self.reshape(&out, &[0, 0, d]);
        let out = self.linear(&format!("{path}.attn.proj"), &out, None);
        let out = self.cast_out(&out);
        let x = self.g.node("Add", &[&residual, &out], vec![]);

        let normed = self.layer_norm(&format!("{path}.norm2"), &x);
        let normed = self.cast_in(&normed);
        let hidden = self.linear(&format!("{path}.mlp.fc1"), &normed, None);
        let hidden = self.cast_out(&hidden);
        let hidden = match self.block.activation {
            Activation::Gelu => self.gelu(&hidden),
            Activation::QuickGelu => self.quick_gelu(&hidden),
        };
        let hidden = self.cast_in(&hidden);
        let out = self.linear(&format!("{path}.mlp.fc2"), &hidden, None);
        let out = self.cast_out(&out);
        self.g.node("Add", &[&x, &out], vec![])
    }

    /// `x * 0.5 * (1 + erf(x / sqrt(2)))`, the exact GELU.
    fn gelu(&mut self, x: &str) -> String {
        let root2 = self.scalar(std::f32::consts::SQRT_2);
        let one = self.scalar(1.0);
        let half = self.scalar(0.5);
        let y = self.g.node("Div", &[x, &root2], vec![]);
        let y = self.g.node("Erf", &[&y], vec![]);
        let y = self.g.node("Add", &[&y, &one], vec![]);
        let y = self.g.node("Mul", &[x, &y], vec![]);
        self.g.node("Mul", &[&y, &half], vec![])
    }

    /// `x * sigmoid(1.702 x)`, CLIP's QuickGELU.
    fn quick_gelu(&mut self, x: &str) -> String {
        let factor = self.scalar(1.702);
        let y = self.g.node("Mul", &[x, &factor], vec![]);
        let y = self.g.node("Sigmoid", &[&y], vec![]);
        self.g.node("Mul", &[x, &y], vec![])
    }

    /// The last block for the class token, its norm, the class token `[rows, D]`.
    fn class_token(&mut self, block: &str, norm: &str, x: &str) -> String {
        let d = self.block.attention.dim as i64;
        let y = self.block(block, x, true);
        let y = self.layer_norm(norm, &y);
        self.reshape(&y, &[-1, d])
    }

    /// TransReID's eval feature `[batch, (1 + parts) * D]`.
    fn transreid_features(&mut self, config: &TransReidConfig, inputs: &Inputs) -> String {
        let depth = config.vit.depth;
        let d = config.vit.embed_dim as i64;
        let mut x = self.tokens(config, inputs);
        for i in 0..depth - 1 {
            x = self.block(&format!("base.blocks.{i}"), &x, false);
        }
        let mut branches = Vec::new();
        match &config.jpm {
            None => {
                let last = format!("base.blocks.{}", depth - 1);
                branches.push(self.class_token(&last, "base.norm", &x));
            }
            Some(jpm) => {
                branches.push(self.class_token("b1.block", "b1.norm", &x));
                // The parts' shuffled tokens, each with the class token first, run through b2
                // as one batch of `parts * batch` sequences.
                self.g.set_scope("jpm");
                let parts = jpm.num_parts as i64;
                let index: Vec<i64> = part_index(config).iter().map(|&i| i as i64).collect();
                let per_part = index.len() as i64 / parts;
                let index = self.i64s(&index);
                let y = self.g.node("Gather", &[&x, &index], vec![int("axis", 1)]);
                let y = self.reshape(&y, &[0, parts, per_part, d]);
                let y = self.transpose(&y, &[1, 0, 2, 3]);
                let y = self.reshape(&y, &[-1, per_part, d]);
                let local = self.class_token("b2.block", "b2.norm", &y);
                self.g.set_scope("jpm");
                let local = self.reshape(&local, &[parts, -1, d]);
                for k in 0..parts {
                    let part = self.pick(&local, 0, k);
                    branches.push(part);
                }
            }
        }
        self.g.set_scope("head");
        let parts = branches.len() - 1;
        let mut outputs = Vec::new();
        for (i, f) in branches.into_iter().enumerate() {
            let mut f = f;
            if config.neck_feat == NeckFeat::After {
                f = self.batch_norm(&format!("bottlenecks.{i}"), &f);
            }
            if i > 0 {
                let k = self.scalar(parts as f32);
                f = self.g.node("Div", &[&f, &k], vec![]);
            }
            outputs.push(f);
        }
        let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        self.g
            .node_named("Concat", &refs, vec![int("axis", 1)], FEATURES_OUTPUT);
        FEATURES_OUTPUT.to_string()
    }

    /// CLIP-ReID's eval feature `[batch, width + output_dim]`: the class token after `ln_post`
    /// and its projection, each through its BNNeck when the feature is taken after them.
    fn clip_features(&mut self, config: &ClipReidConfig, inputs: &Inputs) -> String {
        let vision = &config.vision;
        let d = vision.width as i64;
        self.g.set_scope("image_encoder");
        let x = self.conv_strided(
            "image_encoder.conv1",
            &inputs.pixels,
            [vision.patch_size; 2],
            vision.stride,
        );
        let patches = self.patch_tokens(&x, d);
        // SIE on the class token only, before the position embedding.
        let mut cls = self.param("image_encoder.class_embedding");
        if let Some(row) = &inputs.sie_row {
            let side = self.side_embedding("cv_embed", row, config.sie.coefficient);
            cls = self.g.node("Add", &[&cls, &side], vec![]);
        }
        let x = self.prepend_class_token(&cls, &patches, &inputs.batch, d);
        let pos = self.param("image_encoder.positional_embedding");
        let x = self.g.node("Add", &[&x, &pos], vec![]);
        let mut x = self.layer_norm("image_encoder.ln_pre", &x);
        for i in 0..vision.layers - 1 {
            x = self.block(&format!("image_encoder.blocks.{i}"), &x, false);
        }
        let last = format!("image_encoder.blocks.{}", vision.layers - 1);
        let cls = self.class_token(&last, "image_encoder.ln_post", &x);
        self.g.set_scope("head");
        let proj = self.param("image_encoder.proj");
        let projected = self.g.node("MatMul", &[&cls, &proj], vec![]);
        let (cls, projected) = match config.neck_feat {
            NeckFeat::Before => (cls, projected),
            NeckFeat::After => (
                self.batch_norm("bottleneck", &cls),
                self.batch_norm("bottleneck_proj", &projected),
            ),
        };
        self.g.node_named(
            "Concat",
            &[&cls, &projected],
            vec![int("axis", 1)],
            FEATURES_OUTPUT,
        );
        FEATURES_OUTPUT.to_string()
    }
}

fn part_index(config: &TransReidConfig) -> Vec<usize> {
    let jpm = config.jpm.as_ref().expect("JPM model");
    jpm.part_index(config.vit.patch_embed().num_patches())
        .expect("validated JPM settings")
}

/// What a user of the file needs to feed it and read its output.
fn graph_metadata(
    net: Net<'_>,
    options: &OnnxOptions,
    inputs: &Inputs,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let [h, w] = net.img_size();
    let list = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
    let (layout, dtype, range) = match options.input {
        OnnxInput::Float => ("NCHW", "float32", "0-1"),
        OnnxInput::Uint8Nhwc => ("NHWC", "uint8", "0-255"),
        OnnxInput::Normalized => ("NCHW", "float32", "normalized: (x / 255 - mean) / std"),
    };
    let (method, feature_layout, arch, jpm) = match net {
        Net::TransReid(config) => {
            let vit = &config.vit;
            let parts = config.jpm.as_ref().map_or(0, |j| j.num_parts);
            let mut names = vec!["global".to_string()];
            names.extend((1..=parts).map(|k| format!("part{k}/{parts}")));
            let arch = format!(
                "ViT dim {} depth {} heads {} patch {} stride {}x{}{}",
                vit.embed_dim,
                vit.depth,
                vit.num_heads,
                vit.patch_size,
                vit.stride[0],
                vit.stride[1],
                if vit.stem.is_some() { " ICS stem" } else { "" }
            );
            let jpm = match &config.jpm {
                None => "none".into(),
                Some(j) => format!(
                    "parts {} shift {} groups {}",
                    j.num_parts, j.shift_num, j.shuffle_groups
                ),
            };
            ("transreid", names.join(","), arch, jpm)
        }
        Net::Clip(config) => {
            let v = &config.vision;
            let layout = format!("class token {},projection {}", v.width, v.output_dim);
            let arch = format!(
                "CLIP ViT width {} layers {} heads {} patch {} stride {}x{} projection {}",
                v.width, v.layers, v.heads, v.patch_size, v.stride[0], v.stride[1], v.output_dim
            );
            ("clip_reid", layout, arch, "none".to_string())
        }
    };
    let side =
        |label: &str, used: bool, input: &Option<String>, baked: Option<i64>, count: usize| match (
            used, input, baked,
        ) {
            (false, _, _) => "none".to_string(),
            (true, Some(name), _) => format!("input `{name}`, int64 [batch], 0..{}", count - 1),
            (true, None, Some(id)) => format!("baked {label} {id}"),
            (true, None, None) => unreachable!("a used side input is an input or baked"),
        };
    let sie = net.sie();
    let mut m = BTreeMap::from([
        ("transreid.method".into(), method.into()),
        ("transreid.input".into(), options.input.name().into()),
        ("transreid.input.name".into(), IMAGES_INPUT.into()),
        ("transreid.input.layout".into(), layout.into()),
        ("transreid.input.dtype".into(), dtype.into()),
        ("transreid.input.range".into(), range.into()),
        ("transreid.input.color".into(), options.channel_order.name().into()),
        ("transreid.input_size".into(), format!("{h}x{w}")),
        (
            "transreid.resize".into(),
            format!("bilinear with antialiasing (Pillow's), rounded to 8 bits, to {h}x{w}, outside the graph"),
        ),
        ("transreid.mean".into(), list(options.mean)),
        ("transreid.std".into(), list(options.std)),
        (
            "transreid.normalization_in_graph".into(),
            (options.input != OnnxInput::Normalized).to_string(),
        ),
        ("transreid.output.name".into(), FEATURES_OUTPUT.into()),
        ("transreid.feature_dim".into(), net.embed_dim().to_string()),
        ("transreid.feature_layout".into(), feature_layout),
        (
            "transreid.neck_feat".into(),
            match net.neck_feat() {
                NeckFeat::Before => "before",
                NeckFeat::After => "after",
            }
            .into(),
        ),
        ("transreid.l2_normalized".into(), "false".into()),
        ("transreid.sie".into(), sie.describe()),
        (
            "transreid.sie.camera".into(),
            side("camera", sie.mode.uses_cameras(), &inputs.camera_input, options.camera, sie.camera_num),
        ),
        (
            "transreid.sie.view".into(),
            side("view", sie.mode.uses_views(), &inputs.view_input, options.view, sie.view_num),
        ),
        ("transreid.precision".into(), options.precision.name().into()),
        ("transreid.opset".into(), ONNX_OPSET.to_string()),
        ("transreid.arch".into(), arch),
        ("transreid.jpm".into(), jpm),
        ("transreid.version".into(), env!("CARGO_PKG_VERSION").into()),
    ]);
    m.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    m
}
