//! Exported ONNX graphs, run by tract (a pure-Rust ONNX runtime), give `TransReid::embed`'s
//! features: every stride, JPM, SIE, neck and input variant, at batch 1 and an odd batch; and
//! `ClipReid::embed`'s for CLIP-ReID models.
//!
//! With `TRANSREID_ONNX_CASES=<folder>` every case also writes its `.onnx` file, inputs and
//! expected features there (`scripts/check_onnx.py` runs them in onnxruntime).

use std::collections::{BTreeMap, BTreeSet};

use burn::backend::NdArray;
use burn::prelude::*;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tract_onnx::prelude::{
    Framework, InferenceModelExt, IntoRunnable, IntoTValue, Tensor as TractTensor,
};
use transreid_model::onnx::proto::{data_type, ModelProto, TensorTypeProto, ValueInfoProto};
use transreid_model::onnx::{
    export_clip_reid_onnx, export_onnx, ChannelOrder, OnnxError, OnnxInput, OnnxOptions,
    OnnxPrecision,
};
use transreid_model::{
    clip_reid_state_dict, export_state_dict, load_clip_reid, load_reference_dict, ClipReid,
    ClipReidConfig, ClipVisionConfig, IcsStemConfig, ImportOptions, JpmConfig, NeckFeat, ReidModel,
    SieConfig, SieMode, StateDict, TransReid, TransReidConfig, VitConfig,
};

type B = NdArray;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];
const BATCH: usize = 3;
const H: usize = 32;
const W: usize = 16;

fn vit(stride: usize) -> VitConfig {
    VitConfig::new([H, W], 32, 2, 4)
        .with_patch_size(8)
        .with_stride([stride; 2])
}

/// A model whose every tensor is random (BNNeck statistics included), so that no term of the
/// graph can be wrong unnoticed.
fn random_model(config: &TransReidConfig, seed: u64) -> TransReid<B> {
    let device = Default::default();
    let mut model = config.init::<B>(&device);
    let dict = perturbed(export_state_dict(&model), seed);
    load_reference_dict(&mut model, dict, ImportOptions::default()).unwrap();
    model
}

/// [`random_model`] for CLIP-ReID.
fn random_clip_model(config: &ClipReidConfig, seed: u64) -> ClipReid<B> {
    let mut model = config.init::<B>(&Default::default());
    let dict = perturbed(clip_reid_state_dict(&model), seed);
    load_clip_reid(&mut model, &dict).unwrap();
    model
}

/// Every tensor moved by up to 0.1, running variances drawn in 0.5..1.5.
fn perturbed(mut dict: StateDict, seed: u64) -> StateDict {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (key, tensor) in dict.iter_mut() {
        for v in tensor.data.iter_mut() {
            *v = if key.ends_with("running_var") {
                rng.random_range(0.5..1.5)
            } else {
                *v + rng.random_range(-0.1..0.1)
            };
        }
    }
    dict
}

/// One image batch in every form the graph takes, and the ids.
struct Batch {
    pixels: Vec<u8>,
    cameras: Vec<i64>,
    views: Vec<i64>,
}

impl Batch {
    fn random(n: usize, seed: u64, cameras: usize, views: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self {
            pixels: (0..n * 3 * H * W).map(|_| rng.random()).collect(),
            cameras: (0..n).map(|i| (i % cameras) as i64).collect(),
            views: (0..n).map(|i| ((i + 1) % views) as i64).collect(),
        }
    }

    fn len(&self) -> usize {
        self.cameras.len()
    }

    fn row(&self, i: usize) -> Self {
        let plane = 3 * H * W;
        Self {
            pixels: self.pixels[i * plane..(i + 1) * plane].to_vec(),
            cameras: vec![self.cameras[i]],
            views: vec![self.views[i]],
        }
    }

    /// NCHW RGB as the test transform makes it: `(v / 255 - mean) / std`.
    fn normalized(&self) -> Vec<f32> {
        self.pixels
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / (H * W)) % 3;
                (v as f32 / 255.0 - MEAN[c]) / STD[c]
            })
            .collect()
    }

    /// The `images` input of a graph.
    fn input(&self, input: OnnxInput, order: ChannelOrder) -> TractTensor {
        let n = self.len();
        // Channel `c` of the graph's input holds RGB channel `source(c)`.
        let source = |c: usize| match order {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        };
        let at = |b: usize, c: usize, y: usize, x: usize| ((b * 3 + source(c)) * H + y) * W + x;
        match input {
            OnnxInput::Uint8Nhwc => {
                let mut v = Vec::with_capacity(self.pixels.len());
                for b in 0..n {
                    for y in 0..H {
                        for x in 0..W {
                            for c in 0..3 {
                                v.push(self.pixels[at(b, c, y, x)]);
                            }
                        }
                    }
                }
                TractTensor::from_shape(&[n, H, W, 3], &v).unwrap()
            }
            OnnxInput::Float | OnnxInput::Normalized => {
                let normalized = self.normalized();
                let mut v = Vec::with_capacity(self.pixels.len());
                for b in 0..n {
                    for c in 0..3 {
                        for y in 0..H {
                            for x in 0..W {
                                v.push(if input == OnnxInput::Float {
                                    self.pixels[at(b, c, y, x)] as f32 / 255.0
                                } else {
                                    normalized[at(b, c, y, x)]
                                });
                            }
                        }
                    }
                }
                TractTensor::from_shape(&[n, 3, H, W], &v).unwrap()
            }
        }
    }
}

/// `embed` in Burn with the ids the graph reads (baked ones replace the batch's).
fn embed(model: &impl ReidModel<B>, batch: &Batch, options: &OnnxOptions) -> Vec<f32> {
    let device = Default::default();
    let n = batch.len();
    let images =
        Tensor::<B, 4>::from_data(TensorData::new(batch.normalized(), [n, 3, H, W]), &device);
    let ids = |given: &[i64], baked: Option<i64>| {
        let ids = baked.map_or(given.to_vec(), |id| vec![id; n]);
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &device)
    };
    let cameras = ids(&batch.cameras, options.camera);
    let views = ids(&batch.views, options.view);
    model
        .embed_images(images, Some(cameras), Some(views))
        .into_data()
        .to_vec()
        .unwrap()
}

/// The graph's inputs: images, then camera and view where the graph has them.
fn graph_inputs(proto: &ModelProto, batch: &Batch, options: &OnnxOptions) -> Vec<TractTensor> {
    let graph = proto.graph.as_ref().unwrap();
    graph
        .input
        .iter()
        .map(|input| match input.name.as_str() {
            "images" => batch.input(options.input, options.channel_order),
            "camera" => TractTensor::from_shape(&[batch.len()], &batch.cameras).unwrap(),
            "view" => TractTensor::from_shape(&[batch.len()], &batch.views).unwrap(),
            other => panic!("unexpected input {other}"),
        })
        .collect()
}

fn run_tract(bytes: &[u8], inputs: Vec<TractTensor>) -> Vec<f32> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let outputs = model
        .run(inputs.into_iter().map(|t| t.into_tvalue()).collect())
        .unwrap();
    outputs[0]
        .try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn min_row_cosine(a: &[f32], b: &[f32], dim: usize) -> f64 {
    a.chunks(dim)
        .zip(b.chunks(dim))
        .map(|(x, y)| {
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| (*p as f64) * (*q as f64))
                .sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny)
        })
        .fold(1.0, f64::min)
}

/// Exports, runs the graph at batch 3 and at batch 1 per image, and compares with `embed`.
/// fp32: within 1e-4 of the feature scale. fp16: float16 keeps 11 significant bits (a
/// relative rounding of 4.9e-4 per product), and each block rounds its Linear inputs,
/// weights and outputs and both attention products, so the features may move by about 1e-2 of
/// their scale; the rows must keep their direction (cosine 0.9999).
fn check(name: &str, config: TransReidConfig, options: OnnxOptions) -> ModelProto {
    config.validate().unwrap();
    let model = random_model(&config, 7);
    let exported = export_onnx(&model, &config, &options, &BTreeMap::new()).unwrap();
    let keys = [
        "base.cls_token",
        "base.pos_embed",
        "base.patch_embed.proj.weight",
        "base.blocks.0.attn.qkv.weight",
        "base.blocks.0.norm1.weight",
    ];
    compare(
        name,
        &exported.bytes,
        &model,
        config.embed_dim(),
        &keys,
        &options,
    )
}

/// [`check`] for a CLIP-ReID model.
fn check_clip(name: &str, config: ClipReidConfig, options: OnnxOptions) -> ModelProto {
    config.validate().unwrap();
    let model = random_clip_model(&config, 7);
    let exported = export_clip_reid_onnx(&model, &config, &options, &BTreeMap::new()).unwrap();
    let keys = [
        "image_encoder.class_embedding",
        "image_encoder.positional_embedding",
        "image_encoder.conv1.weight",
        "image_encoder.transformer.resblocks.0.attn.in_proj_weight",
        "image_encoder.transformer.resblocks.0.ln_1.weight",
        "image_encoder.proj",
    ];
    compare(
        name,
        &exported.bytes,
        &model,
        config.embed_dim(),
        &keys,
        &options,
    )
}

/// Runs the graph `bytes` and compares it with `model`'s `embed` (see [`check`]).
fn compare(
    name: &str,
    bytes: &[u8],
    model: &impl ReidModel<B>,
    dim: usize,
    keys: &[&str],
    options: &OnnxOptions,
) -> ModelProto {
    let proto = ModelProto::decode(bytes).unwrap();
    check_structure(&proto, dim, keys);

    let sie = model.sie_config();
    let batch = Batch::random(BATCH, 11, sie.camera_num, sie.view_num);
    let expected = embed(model, &batch, options);
    let got = run_tract(bytes, graph_inputs(&proto, &batch, options));
    assert_eq!(got.len(), BATCH * dim, "{name}: output size");
    let scale = max_abs(&expected);
    let diff = max_diff(&got, &expected);
    let cosine = min_row_cosine(&got, &expected, dim);
    match options.precision {
        OnnxPrecision::Fp32 => assert!(diff <= 1e-4 * scale, "{name}: {diff} of {scale}"),
        OnnxPrecision::Fp16 => assert!(
            diff <= 1e-2 * scale && cosine >= 0.9999,
            "{name}: {diff} of {scale}, cosine {cosine}"
        ),
    }
    // Batch 1, image by image: the batch is dynamic and each row depends on its image only.
    // In f32 the rows agree to rounding; in f16, CPUs with native f16 arithmetic (AVX512-FP16)
    // let tract pick other kernels, with another summation order, for another batch size, so
    // a row may move by f16 rounding, as against `embed` above.
    let row_tolerance = match options.precision {
        OnnxPrecision::Fp32 => 1e-5,
        OnnxPrecision::Fp16 => 1e-2,
    };
    for i in 0..BATCH {
        let row = batch.row(i);
        let single = run_tract(bytes, graph_inputs(&proto, &row, options));
        let d = max_diff(&single, &got[i * dim..(i + 1) * dim]);
        assert!(
            d <= row_tolerance * scale,
            "{name}: row {i} alone differs by {d} of {scale}"
        );
    }
    if let Ok(folder) = std::env::var("TRANSREID_ONNX_CASES") {
        write_case(
            std::path::Path::new(&folder),
            name,
            bytes,
            &proto,
            &batch,
            options,
            &expected,
        );
    }
    proto
}

/// The tensor type of a graph input or output.
fn tensor_type(info: &ValueInfoProto) -> &TensorTypeProto {
    info.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap()
}

/// What a checker would say: opset 17 / IR 8, named inputs and output with the symbolic batch,
/// unique initializer names, every node input defined before its node, metadata present.
fn check_structure(proto: &ModelProto, dim: usize, keys: &[&str]) {
    assert_eq!(proto.ir_version, 8);
    assert_eq!(proto.opset_import.len(), 1);
    assert_eq!(proto.opset_import[0].version, 17);
    let graph = proto.graph.as_ref().unwrap();
    let mut defined = BTreeSet::new();
    for init in &graph.initializer {
        assert!(defined.insert(init.name.clone()), "{} twice", init.name);
    }
    for input in &graph.input {
        assert!(defined.insert(input.name.clone()));
        let dims = &tensor_type(input).shape.as_ref().unwrap().dim;
        assert_eq!(
            dims[0].dim_param.as_deref(),
            Some("batch"),
            "{}",
            input.name
        );
    }
    for node in &graph.node {
        for input in &node.input {
            assert!(
                defined.contains(input),
                "{} reads undefined {input}",
                node.name
            );
        }
        for output in &node.output {
            assert!(defined.insert(output.clone()), "{output} twice");
        }
    }
    assert_eq!(graph.output.len(), 1);
    assert_eq!(graph.output[0].name, "features");
    let dims = &tensor_type(&graph.output[0]).shape.as_ref().unwrap().dim;
    assert_eq!(dims[0].dim_param.as_deref(), Some("batch"));
    assert_eq!(dims[1].dim_value, Some(dim as i64));
    // Parameters keep their checkpoint keys.
    let names: BTreeSet<&str> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
    for key in keys {
        assert!(names.contains(key), "no initializer {key}");
    }
    let metadata: BTreeMap<&str, &str> = proto
        .metadata_props
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(metadata["transreid.feature_dim"], dim.to_string());
    for key in [
        "transreid.input",
        "transreid.mean",
        "transreid.std",
        "transreid.input_size",
        "transreid.sie",
        "transreid.precision",
    ] {
        assert!(metadata.contains_key(key), "no metadata {key}");
    }
}

fn write_case(
    folder: &std::path::Path,
    name: &str,
    bytes: &[u8],
    proto: &ModelProto,
    batch: &Batch,
    options: &OnnxOptions,
    expected: &[f32],
) {
    std::fs::create_dir_all(folder).unwrap();
    std::fs::write(folder.join(format!("{name}.onnx")), bytes).unwrap();
    let inputs: BTreeMap<String, serde_json::Value> = proto
        .graph
        .as_ref()
        .unwrap()
        .input
        .iter()
        .zip(graph_inputs(proto, batch, options))
        .map(|(info, tensor)| {
            let values: serde_json::Value = match info.name.as_str() {
                "images" if options.input == OnnxInput::Uint8Nhwc => tensor
                    .try_as_plain_ram()
                    .unwrap()
                    .as_slice::<u8>()
                    .unwrap()
                    .to_vec()
                    .into(),
                "images" => tensor
                    .try_as_plain_ram()
                    .unwrap()
                    .as_slice::<f32>()
                    .unwrap()
                    .to_vec()
                    .into(),
                _ => tensor
                    .try_as_plain_ram()
                    .unwrap()
                    .as_slice::<i64>()
                    .unwrap()
                    .to_vec()
                    .into(),
            };
            (
                info.name.clone(),
                serde_json::json!({ "shape": tensor.shape(), "values": values }),
            )
        })
        .collect();
    let case = serde_json::json!({
        "inputs": inputs,
        "expected": expected,
        "precision": options.precision.name(),
    });
    std::fs::write(folder.join(format!("{name}.json")), case.to_string()).unwrap();
}

fn options() -> OnnxOptions {
    OnnxOptions::new(MEAN, STD)
}

fn sie(mode: SieMode) -> SieConfig {
    SieConfig::new()
        .with_mode(mode)
        .with_camera_num(3)
        .with_view_num(2)
        .with_coefficient(1.5)
}

#[test]
fn strides_16_and_overlapping_match_embed() {
    check("stride8", TransReidConfig::new(vit(8), 5), options());
    check("stride6", TransReidConfig::new(vit(6), 5), options());
}

#[test]
fn jpm_and_both_necks_match_embed() {
    let jpm = TransReidConfig::new(vit(6), 5).with_jpm(Some(JpmConfig::new()));
    check("jpm", jpm.clone(), options());
    check(
        "jpm_neck_after",
        jpm.with_neck_feat(NeckFeat::After),
        options(),
    );
    check(
        "neck_after",
        TransReidConfig::new(vit(8), 5).with_neck_feat(NeckFeat::After),
        options(),
    );
}

#[test]
fn side_information_as_inputs_or_baked_matches_embed() {
    let with = |mode| TransReidConfig::new(vit(8), 5).with_sie(sie(mode));
    let camera = check("sie_camera", with(SieMode::Camera), options());
    let names: Vec<&str> = camera
        .graph
        .as_ref()
        .unwrap()
        .input
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["images", "camera"]);
    check("sie_view", with(SieMode::View), options());
    let both = check("sie_camera_view", with(SieMode::CameraView), options());
    assert_eq!(both.graph.as_ref().unwrap().input.len(), 3);

    let baked = check(
        "sie_camera_baked",
        with(SieMode::Camera),
        OnnxOptions {
            camera: Some(2),
            ..options()
        },
    );
    assert_eq!(
        baked.graph.as_ref().unwrap().input.len(),
        1,
        "one tensor for trackers"
    );
    let half_baked = check(
        "sie_camera_view_baked_camera",
        with(SieMode::CameraView),
        OnnxOptions {
            camera: Some(1),
            ..options()
        },
    );
    let names: Vec<&str> = half_baked
        .graph
        .as_ref()
        .unwrap()
        .input
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["images", "view"]);
}

#[test]
fn every_input_contract_matches_embed() {
    let config = || {
        TransReidConfig::new(vit(8), 5)
            .with_jpm(Some(JpmConfig::new()))
            .with_sie(sie(SieMode::Camera))
    };
    check(
        "input_uint8_bgr",
        config(),
        OnnxOptions {
            input: OnnxInput::Uint8Nhwc,
            channel_order: ChannelOrder::Bgr,
            ..options()
        },
    );
    check(
        "input_uint8_rgb",
        config(),
        OnnxOptions {
            input: OnnxInput::Uint8Nhwc,
            ..options()
        },
    );
    check(
        "input_normalized",
        config(),
        OnnxOptions {
            input: OnnxInput::Normalized,
            ..options()
        },
    );
    check(
        "input_float_bgr",
        config(),
        OnnxOptions {
            channel_order: ChannelOrder::Bgr,
            ..options()
        },
    );
}

#[test]
fn the_ics_stem_matches_embed() {
    let stem = VitConfig::new([H, W], 32, 2, 4)
        .with_patch_size(8)
        .with_stride([8, 8])
        .with_stem(Some(IcsStemConfig::new().with_hidden_dim(8)));
    check("ics_stem", TransReidConfig::new(stem, 5), options());
}

#[test]
fn mixed_precision_keeps_norms_softmax_and_gelu_in_f32() {
    let config = TransReidConfig::new(vit(6), 5)
        .with_jpm(Some(JpmConfig::new()))
        .with_sie(sie(SieMode::Camera));
    let proto = check(
        "fp16",
        config,
        OnnxOptions {
            precision: OnnxPrecision::Fp16,
            ..options()
        },
    );
    let graph = proto.graph.as_ref().unwrap();
    // Each value's element type, following the graph.
    let mut types: BTreeMap<String, i32> = graph
        .initializer
        .iter()
        .map(|i| (i.name.clone(), i.data_type))
        .chain(
            graph
                .input
                .iter()
                .map(|i| (i.name.clone(), tensor_type(i).elem_type)),
        )
        .collect();
    let mut f16_products = 0;
    for node in &graph.node {
        let inputs: Vec<i32> = node.input.iter().map(|i| types[i]).collect();
        let out = match node.op_type.as_str() {
            "Cast" => node.attribute.iter().find(|a| a.name == "to").unwrap().i as i32,
            "Shape" => data_type::INT64,
            _ => inputs[0],
        };
        if matches!(
            node.op_type.as_str(),
            "LayerNormalization" | "Softmax" | "Erf" | "BatchNormalization" | "Conv"
        ) {
            assert!(
                inputs.iter().all(|&t| t == data_type::FLOAT),
                "{} reads f16",
                node.name
            );
        }
        if node.op_type == "MatMul" {
            assert_eq!(inputs, [data_type::FLOAT16; 2], "{}", node.name);
            f16_products += 1;
        }
        types.insert(node.output[0].clone(), out);
    }
    // Per block: qkv (two for the class-token blocks), two attention products, proj, fc1, fc2.
    assert!(f16_products >= 18, "{f16_products} f16 products");
    assert_eq!(types["features"], data_type::FLOAT);
    assert_eq!(types["images"], data_type::FLOAT);
}

#[test]
fn what_cannot_be_exported_is_refused() {
    let plain = TransReidConfig::new(vit(8), 5);
    let model = random_model(&plain, 1);
    let err = export_onnx(
        &model,
        &plain,
        &OnnxOptions {
            camera: Some(0),
            ..options()
        },
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            OnnxError::NoSideInput {
                label: "camera",
                ..
            }
        ),
        "{err}"
    );

    let camera = TransReidConfig::new(vit(8), 5).with_sie(sie(SieMode::Camera));
    let model = random_model(&camera, 1);
    let err = export_onnx(
        &model,
        &camera,
        &OnnxOptions {
            camera: Some(3),
            ..options()
        },
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains('3'), "{err}");
    let err = export_onnx(
        &model,
        &camera,
        &OnnxOptions {
            view: Some(0),
            ..options()
        },
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, OnnxError::NoSideInput { label: "view", .. }),
        "{err}"
    );
    let err = export_onnx(
        &model,
        &camera,
        &OnnxOptions {
            std: [0.5, 0.0, 0.5],
            ..options()
        },
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(matches!(err, OnnxError::Std { .. }), "{err}");
}

#[test]
fn the_same_model_exports_the_same_bytes_with_the_metadata_given() {
    let config = TransReidConfig::new(vit(8), 5).with_sie(sie(SieMode::Camera));
    let model = random_model(&config, 3);
    let extra = BTreeMap::from([(
        "transreid.checkpoint".to_string(),
        "ck.safetensors".to_string(),
    )]);
    let a = export_onnx(&model, &config, &options(), &extra).unwrap();
    let b = export_onnx(&model, &config, &options(), &extra).unwrap();
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.metadata["transreid.checkpoint"], "ck.safetensors");
    assert_eq!(
        a.metadata["transreid.sie.camera"],
        "input `camera`, int64 [batch], 0..2"
    );
    assert_eq!(a.metadata["transreid.mean"], "0.485,0.456,0.406");
    let proto = ModelProto::decode(&a.bytes[..]).unwrap();
    assert_eq!(proto.metadata_props.len(), a.metadata.len());
}

fn clip_vision(stride: usize) -> ClipVisionConfig {
    ClipVisionConfig::new([H, W], 32, 2, 2, 16)
        .with_patch_size(8)
        .with_stride([stride; 2])
}

#[test]
fn clip_reid_matches_embed() {
    let proto = check_clip(
        "clip_stride8",
        ClipReidConfig::new(clip_vision(8), 5),
        options(),
    );
    let metadata: BTreeMap<&str, &str> = proto
        .metadata_props
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(metadata["transreid.method"], "clip_reid");
    assert_eq!(
        metadata["transreid.feature_layout"],
        "class token 32,projection 16"
    );
    // Overlapping patches, SIE on the class token from camera and view inputs, the feature
    // after both BNNecks.
    check_clip(
        "clip_stride6_sie_after",
        ClipReidConfig::new(clip_vision(6), 5)
            .with_sie(sie(SieMode::CameraView))
            .with_neck_feat(NeckFeat::After),
        options(),
    );
    // A baked camera, uint8 BGR pixels, float16 products.
    check_clip(
        "clip_baked_uint8_fp16",
        ClipReidConfig::new(clip_vision(8), 5).with_sie(sie(SieMode::Camera)),
        OnnxOptions {
            input: OnnxInput::Uint8Nhwc,
            channel_order: ChannelOrder::Bgr,
            precision: OnnxPrecision::Fp16,
            camera: Some(2),
            ..options()
        },
    );
}
