//! Presets, training / inference outputs, checkpoints and import errors.

use std::collections::BTreeMap;
use std::path::Path;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::prelude::*;
use transreid_model::{
    export_reference, load_checkpoint, load_checkpoint_with_input, load_reference, read_state_dict,
    save_checkpoint, save_checkpoint_with_input, write_safetensors, HostTensor, ImportError,
    ImportOptions, InputSpec, JpmConfig, NeckFeat, SieConfig, SieMode, TransReidConfig, VitPreset,
    IMAGENET_STATS, INPUT_METADATA_KEY,
};

mod common;

use common::{images, labels, squared_sum, tiny, values};

type Train = Autodiff<NdArray>;

#[test]
fn every_preset_at_its_real_resolution() {
    let device = Default::default();
    let cases = [
        (VitPreset::VitBase16, [256, 128], 16),
        (VitPreset::VitBase16, [256, 128], 12),
        (VitPreset::DeitBase16, [384, 128], 16),
        (VitPreset::VitBase16, [256, 256], 12),
        (VitPreset::DeitSmall16, [256, 128], 16),
        (VitPreset::VitSmallLegacy, [256, 128], 16),
        (VitPreset::Tiny, [256, 128], 11),
    ];
    for (preset, img, stride) in cases {
        let config = TransReidConfig::new(preset.config(img, [stride, stride]), 5)
            .with_sie(
                SieConfig::new()
                    .with_mode(SieMode::Camera)
                    .with_camera_num(2),
            )
            .with_jpm(Some(JpmConfig::new()));
        let model = config.init::<Flex>(&device);
        let out = model.embed(
            images(1, img[0], img[1], &device),
            labels(&[1], &device),
            None,
        );
        assert_eq!(
            out.dims(),
            [1, config.embed_dim()],
            "{preset:?} {img:?} s{stride}"
        );
        assert_eq!(config.embed_dim(), 5 * config.vit.embed_dim);
        assert!(
            values(out).iter().all(|v| v.is_finite()),
            "{preset:?} {img:?} s{stride}"
        );
    }
}

#[test]
fn jpm_branches_start_as_copies_of_the_last_block() {
    let device = Default::default();
    let model = tiny(true, SieMode::None).init::<Flex>(&device);
    let last = model.base.blocks.last().unwrap();
    for branch in [&model.b1, &model.b2] {
        let block = &branch.as_ref().unwrap().block;
        assert_eq!(
            values(block.attn.qkv.weight.val()),
            values(last.attn.qkv.weight.val())
        );
        assert_eq!(
            values(block.mlp.fc2.weight.val()),
            values(last.mlp.fc2.weight.val())
        );
        assert_ne!(block.attn.qkv.weight.id, last.attn.qkv.weight.id);
    }
    // A clone holds the same values, not a fresh draw.
    let clone = model.clone();
    assert_eq!(
        values(clone.classifiers[0].weight.val()),
        values(model.classifiers[0].weight.val())
    );
}

#[test]
fn training_outputs_one_entry_per_branch() {
    let device = Default::default();
    let model = tiny(true, SieMode::CameraView).init::<Train>(&device);
    let out = model.forward_train(
        images(4, 64, 32, &device),
        labels(&[0, 1, 2, 0], &device),
        labels(&[1, 0, 1, 1], &device),
    );
    assert_eq!(out.scores.len(), 5);
    assert_eq!(out.feats.len(), 5);
    for (s, f) in out.scores.iter().zip(&out.feats) {
        assert_eq!(s.dims(), [4, 7]);
        assert_eq!(f.dims(), [4, 64]);
    }
    let baseline = tiny(false, SieMode::None).init::<Train>(&device);
    let out = baseline.forward_train(images(2, 64, 32, &device), None, None);
    assert_eq!((out.scores.len(), out.feats.len()), (1, 1));
}

#[test]
fn embedding_concatenates_global_and_quartered_parts() {
    let device = Default::default();
    let config = tiny(true, SieMode::Camera);
    let model = config.init::<Train>(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_checkpoint(&model.valid(), &config, &path).unwrap();
    let x = images(3, 64, 32, &device);
    let cams = labels(&[0, 1, 2], &device);
    let train = model.forward_train(x.clone(), cams.clone(), None);
    let inference = model.valid();
    let emb = inference.embed(x.clone().inner(), cams.clone().map(|c| c.inner()), None);
    let emb = values(emb);
    let d = 64;
    for (k, feat) in train.feats.iter().enumerate() {
        let feat = values(feat.clone().inner());
        let scale = if k == 0 { 1.0 } else { 0.25 };
        for row in 0..3 {
            for j in 0..d {
                let got = emb[row * 5 * d + k * d + j];
                assert!((got - feat[row * d + j] * scale).abs() < 1e-5, "branch {k}");
            }
        }
    }
    // After the neck with fresh running stats (mean 0, var 1): x / sqrt(1 + eps).
    let after = config.clone().with_neck_feat(NeckFeat::After);
    let mut model_after = after.init::<NdArray>(&device);
    load_reference(&mut model_after, &path, ImportOptions::default()).unwrap();
    let emb_after = values(model_after.embed(x.inner(), cams.map(|c| c.inner()), None));
    for (a, b) in emb_after.iter().zip(&emb) {
        assert!((a - b / (1.0f32 + 1e-5).sqrt()).abs() < 1e-5);
    }
}

#[test]
fn frozen_neck_bias_gets_no_gradient_and_unused_last_block_neither() {
    let device = Default::default();
    let model = tiny(true, SieMode::Camera).init::<Train>(&device);
    let out = model.forward_train(
        images(4, 64, 32, &device),
        labels(&[0, 1, 2, 0], &device),
        None,
    );
    let loss = squared_sum(out);
    let grads = loss.backward();
    assert!(model.bottlenecks[0].bias.grad(&grads).is_none());
    assert!(model.bottlenecks[0].weight.grad(&grads).is_some());
    assert!(
        model.base.blocks[3].attn.qkv.weight.grad(&grads).is_none(),
        "last base block is unused with JPM"
    );
    assert!(model.base.norm.gamma.grad(&grads).is_none());
    assert!(model.base.blocks[2].attn.qkv.weight.grad(&grads).is_some());
    assert!(model.base.blocks[2]
        .attn
        .qkv
        .bias
        .as_ref()
        .unwrap()
        .grad(&grads)
        .is_some());
    assert!(model.base.blocks[0]
        .mlp
        .fc1
        .bias
        .as_ref()
        .unwrap()
        .grad(&grads)
        .is_some());
    assert!(model
        .b1
        .as_ref()
        .unwrap()
        .block
        .attn
        .proj
        .bias
        .as_ref()
        .unwrap()
        .grad(&grads)
        .is_some());
    assert!(model
        .b2
        .as_ref()
        .unwrap()
        .block
        .mlp
        .fc1
        .weight
        .grad(&grads)
        .is_some());
    assert!(model
        .base
        .sie_embed
        .as_ref()
        .unwrap()
        .grad(&grads)
        .is_some());
}

#[test]
fn bnneck_updates_running_stats_with_unbiased_variance() {
    let device = Default::default();
    let neck = transreid_model::BnNeck::<Train>::new(2, &device);
    let x = Tensor::<Train, 2>::from_data(
        TensorData::new(vec![1.0f32, 3.0, 2.0, 6.0], [2, 2]),
        &device,
    );
    let y = values(neck.forward(x));
    // Batch mean [1.5, 4.5], biased var [0.25, 2.25] -> normalised [-1, 1] per column.
    for (got, want) in y.iter().zip([-1.0, -1.0, 1.0, 1.0]) {
        assert!((got - want).abs() < 1e-4, "{y:?}");
    }
    let rm = values(neck.running_mean.value());
    let rv = values(neck.running_var.value());
    assert!((rm[0] - 0.15).abs() < 1e-6 && (rm[1] - 0.45).abs() < 1e-6);
    // unbiased var [0.5, 4.5]: 0.9 * 1 + 0.1 * v
    assert!(
        (rv[0] - 0.95).abs() < 1e-6 && (rv[1] - 1.35).abs() < 1e-6,
        "{rv:?}"
    );
}

#[test]
fn checkpoint_round_trip_and_reference_layout() {
    let device = Default::default();
    let config = tiny(true, SieMode::CameraView);
    let model = config.init::<NdArray>(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    save_checkpoint(&model, &config, &path).unwrap();
    let flex = Default::default();
    let (loaded, loaded_config) = load_checkpoint::<Flex>(&path, &flex).unwrap();
    assert_eq!(loaded_config, config);
    let x = images(2, 64, 32, &device);
    let a = values(model.embed(
        x.clone(),
        labels(&[0, 2], &device),
        labels(&[1, 0], &device),
    ));
    let b = values(loaded.embed(
        Tensor::from_data(x.into_data(), &flex),
        labels(&[0, 2], &flex),
        labels(&[1, 0], &flex),
    ));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5);
    }

    let export = dir.path().join("export.safetensors");
    export_reference(&model, &export).unwrap();
    let (dict, _) = read_state_dict(&export).unwrap();
    assert_eq!(
        dict["classifier_4.weight"].shape,
        vec![7, 64],
        "PyTorch [out, in] layout"
    );
    assert_eq!(dict["base.blocks.0.attn.qkv.weight"].shape, vec![192, 64]);
    assert_eq!(dict["b1.1.weight"].shape, vec![64]);
    assert_eq!(dict["base.sie_embed"].shape, vec![6, 1, 64]);
    assert!(dict.contains_key("bottleneck_2.running_var"));
    let mut other = config.init::<NdArray>(&device);
    load_reference(&mut other, &export, ImportOptions::default()).unwrap();

    // The 6-row table of 3 cameras x 2 views into a model of 3 cameras or of no SIE: refused,
    // saying how rows are numbered, even when a partial load is allowed.
    for (mode, model_rows) in [(SieMode::Camera, Some(3)), (SieMode::None, None)] {
        let mut wrong = tiny(true, mode).init::<NdArray>(&device);
        let partial = ImportOptions {
            allow_partial: true,
        };
        let err = load_reference(&mut wrong, &export, partial).unwrap_err();
        match &err {
            ImportError::SieRows { file, model, .. } => {
                assert_eq!((*file, *model), (Some(6), model_rows))
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("camera x views + view"), "{err}");
    }

    // A mis-shaped Linear weight is shown as the file holds it ([out, in]), beside the model's
    // shape in the same layout.
    let mut edited = dict.clone();
    edited.insert(
        "classifier_4.weight".into(),
        HostTensor::new(vec![5, 64], vec![0.0; 5 * 64]),
    );
    let edited_path = dir.path().join("edited.safetensors");
    write_safetensors(&edited_path, &edited, BTreeMap::new()).unwrap();
    let err = load_reference(&mut other, &edited_path, ImportOptions::default()).unwrap_err();
    match err {
        ImportError::ShapeMismatch { key, expected, got } => {
            assert_eq!(key, "classifier_4.weight");
            assert_eq!((expected, got), (vec![7, 64], vec![5, 64]));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn checkpoint_carries_its_input_normalisation_and_size() {
    let device = Default::default();
    let config = tiny(false, SieMode::None);
    let model = config.init::<NdArray>(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let input = InputSpec::new(&config, IMAGENET_STATS);
    assert_eq!([input.height, input.width], config.vit.img_size);
    save_checkpoint_with_input(&model, &config, &input, &path).unwrap();
    let (_, _, read) = load_checkpoint_with_input::<NdArray>(&path, &device).unwrap();
    assert_eq!(read, Some(input));
    let (_, metadata) = read_state_dict(&path).unwrap();
    assert!(metadata[INPUT_METADATA_KEY].contains("0.485"));

    // Older files have none; a spec that does not fit the model is refused on both sides.
    save_checkpoint(&model, &config, &path).unwrap();
    let (_, _, read) = load_checkpoint_with_input::<NdArray>(&path, &device).unwrap();
    assert_eq!(read, None);
    let wrong_size = InputSpec {
        height: 384,
        ..input
    };
    let err = save_checkpoint_with_input(&model, &config, &wrong_size, &path).unwrap_err();
    assert!(err.to_string().contains("input size 384x"), "{err}");
    let zero_std = InputSpec {
        std: [0.0; 3],
        ..input
    };
    let err = save_checkpoint_with_input(&model, &config, &zero_std, &path).unwrap_err();
    assert!(err.to_string().contains("std must be positive"), "{err}");
    let (dict, mut metadata) = read_state_dict(&path).unwrap();
    metadata.insert(
        INPUT_METADATA_KEY.to_string(),
        serde_json::to_string(&wrong_size).unwrap(),
    );
    write_safetensors(&path, &dict, metadata).unwrap();
    let err = load_checkpoint_with_input::<NdArray>(&path, &device).unwrap_err();
    assert!(err.to_string().contains("input size 384x"), "{err}");
}

fn broken_checkpoint(
    edit: impl FnOnce(&mut BTreeMap<String, HostTensor>),
) -> Result<(), ImportError> {
    let device = Default::default();
    let config = tiny(true, SieMode::Camera);
    let model = config.init::<NdArray>(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ref.safetensors");
    export_reference(&model, &path).unwrap();
    let (mut dict, _) = read_state_dict(&path).unwrap();
    edit(&mut dict);
    write_safetensors(&path, &dict, BTreeMap::new()).unwrap();
    let mut target = config.init::<NdArray>(&device);
    load_reference(&mut target, &path, ImportOptions::default()).map(|_| ())
}

#[test]
fn import_errors_name_the_key() {
    let err = broken_checkpoint(|d| {
        d.remove("b2.0.attn.proj.bias");
    })
    .unwrap_err();
    assert!(
        matches!(&err, ImportError::MissingKeys(k) if k == &vec!["b2.0.attn.proj.bias".to_string()]),
        "{err}"
    );

    let err = broken_checkpoint(|d| {
        d.insert("base.extra".into(), HostTensor::new(vec![1], vec![0.0]));
    })
    .unwrap_err();
    assert!(
        matches!(&err, ImportError::UnexpectedKeys(k) if k == &vec!["base.extra".to_string()]),
        "{err}"
    );

    let err = broken_checkpoint(|d| {
        d.insert(
            "classifier.weight".into(),
            HostTensor::new(vec![9, 64], vec![0.0; 9 * 64]),
        );
    })
    .unwrap_err();
    match err {
        ImportError::ShapeMismatch { key, expected, got } => {
            assert_eq!(key, "classifier.weight");
            // As the file holds them (PyTorch's [out, in]), not transposed.
            assert_eq!(expected, vec![7, 64]);
            assert_eq!(got, vec![9, 64]);
        }
        other => panic!("{other}"),
    }
    assert!(err_message_names_shapes());
}

fn err_message_names_shapes() -> bool {
    let err = ImportError::ShapeMismatch {
        key: "k".into(),
        expected: vec![1, 2],
        got: vec![3],
    };
    err.to_string() == "shape mismatch for `k`: model expects [1, 2], checkpoint has [3]"
}

#[test]
fn partial_loading_reports_instead_of_failing() {
    let device = Default::default();
    let config = tiny(true, SieMode::Camera);
    let model = config.init::<NdArray>(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ref.safetensors");
    export_reference(&model, &path).unwrap();
    // A model for another dataset (more identities): classifiers do not fit.
    let mut other = config.clone();
    other.num_classes = 11;
    let mut target = other.init::<NdArray>(&device);
    assert!(load_reference(&mut target, &path, ImportOptions::default()).is_err());
    let report = load_reference(
        &mut target,
        &path,
        ImportOptions {
            allow_partial: true,
        },
    )
    .unwrap();
    assert_eq!(report.mismatched.len(), 5);
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    assert_eq!(
        values(target.base.pos_embed.val()),
        values(model.base.pos_embed.val())
    );
}

#[test]
fn corrupt_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.safetensors");
    std::fs::write(&path, b"definitely not a checkpoint").unwrap();
    let device = Default::default();
    let mut model = tiny(false, SieMode::None).init::<NdArray>(&device);
    assert!(matches!(
        load_reference(&mut model, &path, ImportOptions::default()),
        Err(ImportError::Corrupt { .. })
    ));
    let zip = dir.path().join("junk.pth");
    std::fs::write(&zip, b"PK\x03\x04 truncated").unwrap();
    assert!(matches!(
        load_reference(&mut model, &zip, ImportOptions::default()),
        Err(ImportError::Corrupt { .. })
    ));
    assert!(matches!(
        load_checkpoint::<NdArray>(Path::new("/nonexistent/x.safetensors"), &device),
        Err(ImportError::Io { .. })
    ));
    // A reference checkpoint has no configuration for load_checkpoint.
    let reference = dir.path().join("ref.safetensors");
    export_reference(&model, &reference).unwrap();
    assert!(matches!(
        load_checkpoint::<NdArray>(&reference, &device),
        Err(ImportError::Config { .. })
    ));
}

#[test]
fn architectures_init_cannot_build_are_typed_errors() {
    use transreid_model::{ModelConfigError, CONFIG_METADATA_KEY};
    let base = tiny(true, SieMode::Camera);
    type Edit = fn(&mut TransReidConfig);
    let edits: [(Edit, &str); 6] = [
        (|c| c.vit.num_heads = 0, "heads"),
        (|c| c.vit.num_heads = 5, "heads"),
        (|c| c.vit.depth = 0, "depth"),
        (|c| c.vit.drop_path_rate = 10.0, "drop_path_rate"),
        (|c| c.vit.drop_rate = -0.1, "drop_rate"),
        (|c| c.vit.attn_drop_rate = 1.0, "attn_drop_rate"),
    ];
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.safetensors");
    save_checkpoint(&base.init::<NdArray>(&device), &base, &path).unwrap();
    let (dict, mut metadata) = read_state_dict(&path).unwrap();
    for (edit, what) in edits {
        let mut config = base.clone();
        edit(&mut config);
        let err = config.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ModelConfigError::Heads { .. }
                    | ModelConfigError::NoBlocks
                    | ModelConfigError::Rate { .. }
            ) && err.to_string().contains(what),
            "{what}: {err}"
        );
        // The same configuration in a checkpoint's metadata is refused before building.
        metadata.insert(
            CONFIG_METADATA_KEY.to_string(),
            serde_json::to_string(&config).unwrap(),
        );
        write_safetensors(&path, &dict, metadata.clone()).unwrap();
        assert!(
            matches!(
                load_checkpoint::<NdArray>(&path, &device),
                Err(ImportError::Config { .. })
            ),
            "{what}"
        );
    }
    base.validate().unwrap();
}
