//! Self-supervised (DINO / iBOT), Hugging Face ViT and ICS-stem checkpoints, made from the tiny
//! timm fixture and a tiny TransReID-SSL model by scripts/ssl_fixtures.py.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use transreid_model::{
    export_state_dict, load_pretrained, read_state_dict, reference_key, write_safetensors,
    HostTensor, IcsStemConfig, ImportError, ImportOptions, ModelConfigError, PretrainGrid,
    StateDict, TransReid, TransReidConfig, VitConfig, VitPreset, WeightKind, WeightLayout,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn golden() -> StateDict {
    read_state_dict(&fixture("ssl_golden.safetensors"))
        .unwrap()
        .0
}

/// Block 0 of the timm fixture (width 48), the backbone every foreign fixture is made from.
fn timm_block0() -> StateDict {
    let (timm, _) = read_state_dict(&fixture("timm_vit_w48.safetensors")).unwrap();
    timm.into_iter()
        .filter(|(k, _)| {
            !k.starts_with("head.") && (!k.starts_with("blocks.") || k.starts_with("blocks.0."))
        })
        .collect()
}

/// A one-block TransReID of the timm fixture's width at `img` with patch stride `stride`.
fn tiny_vit(img: [usize; 2], stride: usize) -> TransReid<NdArray> {
    let vit = VitConfig::new(img, 48, 1, 3).with_stride([stride, stride]);
    TransReidConfig::new(vit, 4).init(&Default::default())
}

/// LUPerson weights: pretrained at 256x128, a 16x8 grid (8x4 in the fixtures).
const LUP: PretrainGrid = PretrainGrid::HwRatio(2);

/// The exported backbone (`base.*` without the `base.` prefix).
fn backbone_of(model: &TransReid<NdArray>) -> StateDict {
    export_state_dict(model)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("base.").map(|k| (k.to_string(), v)))
        .collect()
}

fn assert_close(got: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tolerance * scale, "{what}: max error {worst}");
}

#[test]
fn dino_training_checkpoint_loads_the_teacher_backbone_only() {
    let mut model = tiny_vit([256, 128], 16);
    let report = load_pretrained(
        &mut model,
        &fixture("dino_teacher_tiny.pth"),
        WeightKind::SelfSupervised,
        LUP,
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(report.layout, Some(WeightLayout::DinoTeacher));
    // The 8x4 pretraining grid (32 + cls) resized to 16x8.
    assert_eq!(report.pos_embed_resized, Some((33, 129)));
    // Only backbone parameters were taken: no head, student, optimiser or iBOT token.
    assert_eq!(report.loaded.len(), timm_block0().len());
    assert!(report
        .loaded
        .iter()
        .all(|k| k.starts_with("base.") && !k.contains("head") && !k.contains("masked")));

    // Teacher values (the student's are the teacher's + 1), position grid as PyTorch resizes it.
    let got = backbone_of(&model);
    let timm = timm_block0();
    for (key, tensor) in &timm {
        if key != "pos_embed" {
            assert_eq!(&got[key], tensor, "{key}");
        }
    }
    let expected = &golden()["pos_embed_16x8"];
    assert_eq!(got["pos_embed"].shape, expected.shape);
    assert_close(
        &got["pos_embed"].data,
        &expected.data,
        1e-6,
        "pos_embed 16x8",
    );

    // At stride 12 the grid is 21x10.
    let mut stride12 = tiny_vit([256, 128], 12);
    load_pretrained(
        &mut stride12,
        &fixture("dino_teacher_tiny.pth"),
        WeightKind::Auto,
        LUP,
        ImportOptions::default(),
    )
    .unwrap();
    let expected = &golden()["pos_embed_21x10"];
    assert_close(
        &backbone_of(&stride12)["pos_embed"].data,
        &expected.data,
        1e-6,
        "pos_embed 21x10",
    );
}

#[test]
fn flat_conversion_imports_like_the_training_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut from_training = tiny_vit([256, 128], 16);
    load_pretrained(
        &mut from_training,
        &fixture("dino_teacher_tiny.pth"),
        WeightKind::SelfSupervised,
        LUP,
        ImportOptions::default(),
    )
    .unwrap();

    // The flat form `convert_model_dino.py` writes: the teacher backbone in timm names.
    let (training, _) = read_state_dict(&fixture("dino_teacher_tiny.pth")).unwrap();
    let flat: StateDict = training
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("backbone.").map(|k| (k.to_string(), v)))
        .collect();
    let path = dir.path().join("flat.safetensors");
    write_safetensors(&path, &flat, BTreeMap::new()).unwrap();
    let mut from_flat = tiny_vit([256, 128], 16);
    let report = load_pretrained(
        &mut from_flat,
        &path,
        WeightKind::SelfSupervised,
        LUP,
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(report.layout, Some(WeightLayout::Timm));
    assert_eq!(backbone_of(&from_flat), backbone_of(&from_training));

    // An equal grid is not resized.
    let mut same_grid = tiny_vit([128, 64], 16);
    let report = load_pretrained(
        &mut same_grid,
        &path,
        WeightKind::Auto,
        LUP,
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(report.pos_embed_resized, None);
    assert_eq!(backbone_of(&same_grid)["pos_embed"], flat["pos_embed"]);
}

#[test]
fn wrong_kind_grid_or_pickle_is_a_typed_error() {
    let mut model = tiny_vit([256, 128], 16);
    let dino = fixture("dino_teacher_tiny.pth");
    let err = load_pretrained(
        &mut model,
        &dino,
        WeightKind::Imagenet,
        LUP,
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::KindMismatch {
                requested: WeightKind::Imagenet,
                detected: WeightLayout::DinoTeacher
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("`--kind self-supervised`"),
        "{err}"
    );
    let err = load_pretrained(
        &mut model,
        &dino,
        WeightKind::Reference,
        LUP,
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::KindMismatch { .. }), "{err}");

    // 32 grid tokens are not square: the pretraining grid must be given.
    let err = load_pretrained(
        &mut model,
        &dino,
        WeightKind::Auto,
        PretrainGrid::default(),
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ImportError::NonSquarePosEmbed { tokens: 32 }),
        "{err}"
    );
    assert!(err.to_string().contains("pretrain_hw_ratio"), "{err}");
    let grid = PretrainGrid::Grid([4, 4]);
    let err = load_pretrained(
        &mut model,
        &dino,
        WeightKind::Auto,
        grid,
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ImportError::PosEmbedGrid { tokens: 32, .. }),
        "{err}"
    );

    // A pickled object the reader cannot rebuild is named.
    let err = load_pretrained(
        &mut model,
        &fixture("dino_posixpath.pth"),
        WeightKind::Auto,
        LUP,
        ImportOptions::default(),
    )
    .unwrap_err();
    match &err {
        ImportError::UnsupportedPickleObject { object, .. } => {
            assert!(object.contains("PosixPath"), "{err}")
        }
        other => panic!("{other}"),
    }

    // A width-48 file into a ViT-B model names the widths.
    let mut base = TransReidConfig::new(VitPreset::VitBase16.config([256, 128], [16, 16]), 4)
        .init::<NdArray>(&Default::default());
    let err = load_pretrained(
        &mut base,
        &dino,
        WeightKind::Auto,
        LUP,
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::EmbedWidth {
                checkpoint: 48,
                model: 768
            }
        ),
        "{err}"
    );
}

#[test]
fn hugging_face_vit_imports_like_timm() {
    let timm = timm_block0();
    let hf_path = fixture("hf_vit_tiny.safetensors");
    let mut model = tiny_vit([224, 224], 16);
    let report = load_pretrained(
        &mut model,
        &hf_path,
        WeightKind::Imagenet,
        PretrainGrid::default(),
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(report.layout, Some(WeightLayout::HuggingFaceVit));
    assert_eq!(report.pos_embed_resized, None);
    assert_eq!(backbone_of(&model), timm);

    // `ViTModel` files: no `vit.` prefix, a pooler and a mask token instead of the classifier.
    let (hf, _) = read_state_dict(&hf_path).unwrap();
    let mut bare: StateDict = hf
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("vit.").map(|k| (k.to_string(), v)))
        .collect();
    bare.insert(
        "pooler.dense.weight".into(),
        HostTensor::new(vec![48, 48], vec![0.5; 48 * 48]),
    );
    bare.insert(
        "embeddings.mask_token".into(),
        HostTensor::new(vec![1, 1, 48], vec![0.5; 48]),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit_model.safetensors");
    write_safetensors(&path, &bare, BTreeMap::new()).unwrap();
    let mut model = tiny_vit([224, 224], 16);
    load_pretrained(
        &mut model,
        &path,
        WeightKind::Auto,
        PretrainGrid::default(),
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(backbone_of(&model), timm);

    // A missing projection is named in the file's own terms.
    bare.remove("encoder.layer.0.attention.attention.value.weight");
    write_safetensors(&path, &bare, BTreeMap::new()).unwrap();
    let err = load_pretrained(
        &mut model,
        &path,
        WeightKind::Auto,
        PretrainGrid::default(),
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("encoder.layer.0.attention.attention.value.weight"),
        "{err}"
    );
}

#[test]
fn recognised_but_unsupported_families_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = HostTensor::new(vec![1, 1, 4], vec![0.0; 4]);
    for (key, family) in [
        ("part_token1", "PASS"),
        (
            "layers.0.blocks.0.attn.relative_position_bias_table",
            "Swin",
        ),
        ("visual.class_embedding", "CLIP"),
    ] {
        let dict: StateDict = [(key.to_string(), t.clone())].into_iter().collect();
        let path = dir.path().join("x.safetensors");
        write_safetensors(&path, &dict, BTreeMap::new()).unwrap();
        let mut model = tiny_vit([224, 224], 16);
        let err = load_pretrained(
            &mut model,
            &path,
            WeightKind::Auto,
            PretrainGrid::default(),
            ImportOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ImportError::UnsupportedLayout { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(family), "{err}");
    }
}

/// The tiny TransReID-SSL ViT with the ICS stem of `ics_tiny.pth`.
fn ics_config() -> TransReidConfig {
    let vit = VitConfig::new([64, 32], 64, 2, 4)
        .with_drop_path_rate(0.0)
        .with_stem(Some(IcsStemConfig::new()));
    TransReidConfig::new(vit, 4)
}

fn tensor<B: Backend, const D: usize>(t: &HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[test]
fn ics_stem_matches_the_reference_in_eval_mode() {
    let device = Default::default();
    let golden = golden();
    let mut model = ics_config().init::<NdArray>(&device);
    let report = load_pretrained(
        &mut model,
        &fixture("ics_tiny.pth"),
        WeightKind::SelfSupervised,
        PretrainGrid::default(),
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(report.layout, Some(WeightLayout::DinoTeacher));
    let x = tensor::<NdArray, 4>(&golden["ics.input"], &device);
    let tokens = model.base.patch_embed.forward(x.clone());
    assert_close(
        &values(tokens),
        &golden["ics.eval.patch_tokens"].data,
        1e-4,
        "eval patch tokens",
    );
    let cls = model.base.forward_global(x, None, None);
    assert_close(&values(cls), &golden["ics.eval.cls"].data, 1e-4, "eval cls");

    // Round trip: the export holds the reference's names and the loaded statistics.
    let exported = export_state_dict(&model);
    let (file, _) = read_state_dict(&fixture("ics_tiny.pth")).unwrap();
    for (key, t) in file
        .iter()
        .filter(|(k, _)| k.starts_with("backbone.patch_embed.conv."))
    {
        if !key.ends_with("num_batches_tracked") {
            let ours = format!("base.{}", key.trim_start_matches("backbone."));
            assert_eq!(&exported[&ours], t, "{ours}");
        }
    }
}

#[test]
fn ics_stem_gradients_and_statistics_match_the_reference_in_training_mode() {
    type A = Autodiff<NdArray>;
    let device = Default::default();
    let golden = golden();
    let mut model = ics_config().init::<A>(&device);
    load_pretrained(
        &mut model,
        &fixture("ics_tiny.pth"),
        WeightKind::Auto,
        PretrainGrid::default(),
        ImportOptions::default(),
    )
    .unwrap();
    let x = tensor::<A, 4>(&golden["ics.input"], &device);
    let weights = tensor::<A, 2>(&golden["ics.train.weights"], &device);
    let cls = model.base.forward_global(x, None, None);
    assert_close(
        &values(cls.clone()),
        &golden["ics.train.cls"].data,
        1e-4,
        "train cls",
    );
    let loss = (cls * weights).sum();
    assert_close(
        &values(loss.clone()),
        &golden["ics.train.loss"].data,
        1e-4,
        "loss",
    );
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let by_name = grads_by_name(&model, &grads);
    let mut compared = 0;
    for (key, expected) in golden.iter() {
        let Some(name) = key.strip_prefix("ics.grad.") else {
            continue;
        };
        let got = &by_name[&format!("base.{name}")];
        // Burn stores Linear weights [in, out], PyTorch [out, in].
        let expected = if expected.shape.len() == 2 && got.len() == expected.data.len() {
            let is_linear = ["qkv", "fc1", "fc2", "attn.proj"]
                .iter()
                .any(|l| name.contains(l));
            if is_linear {
                expected.transposed()
            } else {
                expected.clone()
            }
        } else {
            expected.clone()
        };
        assert_close(got, &expected.data, 1e-4, name);
        compared += 1;
    }
    // Every parameter of the reference model has a gradient to compare, the stem's included.
    assert_eq!(compared, 43, "gradients compared");
    assert!(by_name
        .keys()
        .any(|k| k.contains("patch_embed.conv.1.IN.weight")));

    // The running statistics after one training-mode forward (unbiased variance, momentum 0.1).
    let exported = export_state_dict(&model);
    for (key, expected) in golden.iter() {
        if let Some(name) = key.strip_prefix("ics.train.") {
            if name.contains("running") {
                let got = &exported[&format!("base.{name}")];
                assert_close(&got.data, &expected.data, 1e-5, name);
            }
        }
    }
}

#[test]
fn ics_stem_needs_stride_16_and_a_matching_checkpoint() {
    let stride12 = ics_config();
    let stride12 = TransReidConfig {
        vit: stride12.vit.clone().with_stride([12, 12]),
        ..stride12
    };
    assert!(matches!(
        stride12.validate(),
        Err(ModelConfigError::IcsStride {
            stride: [12, 12],
            ..
        })
    ));
    // The ICS file into a model without the stem, and a plain file into an ICS model.
    let device = Default::default();
    let plain = TransReidConfig::new(VitConfig::new([64, 32], 64, 2, 4), 4);
    let mut model = plain.init::<NdArray>(&device);
    let err = load_pretrained(
        &mut model,
        &fixture("ics_tiny.pth"),
        WeightKind::Auto,
        PretrainGrid::default(),
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::StemMismatch {
                checkpoint_has_stem: true
            }
        ),
        "{err}"
    );
}

/// Every parameter's gradient by its reference name, in Burn's layout.
fn grads_by_name<A: AutodiffBackend>(
    model: &TransReid<A>,
    grads: &GradientsParams,
) -> HashMap<String, Vec<f32>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        names: HashMap<ParamId, String>,
        out: HashMap<String, Vec<f32>>,
    }
    impl<A: AutodiffBackend> ModuleVisitor<A> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(g) = self.grads.get::<A::InnerBackend, D>(param.id) {
                self.out.insert(self.names[&param.id].clone(), values(g));
            }
        }
    }
    let names = model
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.tensor_id.unwrap(), reference_key(&s.full_path())))
        .collect();
    let mut visitor = Collect {
        grads,
        names,
        out: HashMap::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

#[test]
fn files_that_are_not_checkpoints_say_what_they_are() {
    let device = burn::backend::ndarray::NdArrayDevice::default();
    let err =
        transreid_model::load_checkpoint::<NdArray>(&fixture("timm_vit_w48.safetensors"), &device)
            .unwrap_err();
    assert!(matches!(err, ImportError::Config { .. }), "{err}");
    assert!(
        err.to_string().contains("timm-layout ViT backbone"),
        "{err}"
    );
    assert!(err.to_string().contains("transreid import"), "{err}");

    // A training state: a checkpoint's tensors and configuration plus the optimiser's buffers.
    let dir = tempfile::tempdir().unwrap();
    let config = TransReidConfig::new(VitConfig::new([32, 32], 16, 1, 2), 3);
    let model = config.init::<NdArray>(&device);
    let path = dir.path().join("state.safetensors");
    transreid_model::save_checkpoint(&model, &config, &path).unwrap();
    let (mut dict, metadata) = read_state_dict(&path).unwrap();
    transreid_model::load_checkpoint::<NdArray>(&path, &device).unwrap();
    dict.insert(
        "optimizer.momentum.base.cls_token".into(),
        HostTensor::new(vec![1, 1, 16], vec![0.0; 16]),
    );
    write_safetensors(&path, &dict, metadata).unwrap();
    let err = transreid_model::load_checkpoint::<NdArray>(&path, &device).unwrap_err();
    assert!(matches!(err, ImportError::NotACheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("training state"), "{err}");
    assert!(err.to_string().contains("checkpoint.safetensors"), "{err}");
}

#[test]
fn malformed_patch_and_position_embeddings_are_shape_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.safetensors");
    let edits: [(&str, Vec<usize>); 5] = [
        ("patch_embed.proj.weight", vec![]),
        ("pos_embed", vec![197 * 48]),
        ("pos_embed", vec![1, 1, 48]),
        ("pos_embed", vec![1, 197, 24, 2]),
        ("pos_embed", vec![2, 197, 24]),
    ];
    for (key, shape) in edits {
        let mut dict = timm_block0();
        let len = shape.iter().product(); // 1 for the rank-0 tensor
        dict.insert(
            key.to_string(),
            HostTensor::new(shape.clone(), vec![0.1; len]),
        );
        write_safetensors(&path, &dict, BTreeMap::new()).unwrap();
        let mut model = tiny_vit([256, 128], 16);
        let err = load_pretrained(
            &mut model,
            &path,
            WeightKind::Imagenet,
            PretrainGrid::default(),
            ImportOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ImportError::ShapeMismatch { key: k, .. } if k == key),
            "{key} {shape:?}: {err}"
        );
    }
}
