//! CLIP-ReID against the reference (`scripts/clip_reid_fixture.py`): a trained checkpoint of
//! the reference (`clip_reid.pth`) loads, and the eval features, the stage-1 image and text
//! features, the training forward, the BNNeck statistics, both stages' losses and their
//! gradients equal the reference's.

use std::collections::BTreeSet;
use std::path::PathBuf;

use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn_store::ModuleSnapshot;
use transreid_loss::{clip_reid_loss, supcon_loss, ClipReidObjectiveConfig};
use transreid_model::{
    clip_openai_dict, clip_reid_state_dict, load_clip_pretrained, load_clip_reid,
    load_clip_reid_checkpoint, read_state_dict, reference_key, save_clip_reid_checkpoint,
    ClipLayout, ClipReid, ClipReidConfig, ClipTextConfig, ClipVisionConfig, HostTensor,
    ImportError, InputSpec, NeckFeat, PromptObject, SieConfig, SieMode, StateDict, PROMPT_EOT,
    PROMPT_TOKENS,
};

type B = NdArray;
type A = Autodiff<NdArray>;

fn fixture(name: &str) -> StateDict {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    read_state_dict(&path).unwrap().0
}

fn config() -> ClipReidConfig {
    ClipReidConfig::new(ClipVisionConfig::new([64, 40], 32, 12, 2, 16), 5)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::CameraView)
                .with_camera_num(3)
                .with_view_num(2)
                .with_coefficient(1.5),
        )
        .with_text(Some(ClipTextConfig::new(64, 2, 2, 16)))
}

fn loaded<BB: Backend>(config: &ClipReidConfig) -> ClipReid<BB> {
    let mut model = config.init(&Default::default());
    let skipped = load_clip_reid(&mut model, &fixture("clip_reid.pth")).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    model
}

fn tensor<BB: Backend, const D: usize>(t: &HostTensor) -> Tensor<BB, D> {
    Tensor::from_data(
        TensorData::new(t.data.clone(), t.shape.clone()),
        &Default::default(),
    )
}

fn ints<BB: Backend>(t: &HostTensor) -> Tensor<BB, 1, Int> {
    let values: Vec<i64> = t.data.iter().map(|&v| v as i64).collect();
    Tensor::from_data(TensorData::new(values, [t.data.len()]), &Default::default())
}

/// The largest difference relative to `max(|expected|, scale)`.
fn assert_close<BB: Backend, const D: usize>(
    got: Tensor<BB, D>,
    expected: &HostTensor,
    tol: f32,
    what: &str,
) {
    assert_eq!(got.dims().to_vec(), expected.shape, "{what}: shape");
    let got = got.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let scale = expected.data.iter().fold(0.0f32, |m, v| m.max(v.abs())) * 0.1;
    let (worst, at) = got
        .iter()
        .zip(&expected.data)
        .map(|(g, e)| (g - e).abs() / e.abs().max(scale).max(1e-6))
        .enumerate()
        .fold(
            (0.0f32, 0),
            |(w, i), (j, d)| if d > w { (d, j) } else { (w, i) },
        );
    assert!(
        worst <= tol,
        "{what}: worst relative difference {worst} at {at}: {} against {} (scale {scale})",
        got[at],
        expected.data[at]
    );
}

#[test]
fn the_prompt_token_ids_are_the_reference_tokenizers() {
    let golden = fixture("clip_reid.safetensors");
    for (object, key) in [
        (PromptObject::Person, "tokens.person"),
        (PromptObject::Vehicle, "tokens.vehicle"),
    ] {
        let ids: Vec<usize> = golden[key].data.iter().map(|&v| v as usize).collect();
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[..PROMPT_TOKENS], object.token_ids());
        assert!(ids[PROMPT_TOKENS..].iter().all(|&id| id == 0));
        // The end-of-text token has the largest id: the reference's argmax.
        let eot = (0..77).max_by_key(|&i| ids[i]).unwrap();
        assert_eq!(eot, PROMPT_EOT);
    }
}

#[test]
fn a_reference_checkpoint_gives_the_references_features() {
    let golden = fixture("clip_reid.safetensors");
    let images = tensor::<B, 4>(&golden["input.images"]);
    let (cams, views) = (
        ints::<B>(&golden["input.cameras"]),
        ints::<B>(&golden["input.views"]),
    );
    let labels = ints::<B>(&golden["input.labels"]);
    for (neck, key) in [
        (NeckFeat::Before, "eval.before"),
        (NeckFeat::After, "eval.after"),
    ] {
        let model = loaded::<B>(&config().with_neck_feat(neck));
        let feature = model.embed(images.clone(), Some(cams.clone()), Some(views.clone()));
        assert_close(feature, &golden[key], 1e-4, key);
    }
    let model = loaded::<B>(&config());
    assert_close(
        model.image_features(images),
        &golden["stage1.image_features"],
        1e-4,
        "stage-1 image features",
    );
    // The reference encodes 77 tokens; the prompts here stop after end-of-text.
    let prompts = model
        .prompt_learner
        .as_ref()
        .unwrap()
        .forward(labels.clone());
    let reference = &golden["prompts"];
    let width = reference.shape[2];
    let cut: Vec<f32> = reference
        .data
        .chunks(77 * width)
        .flat_map(|p| p[..PROMPT_TOKENS * width].to_vec())
        .collect();
    let cut = HostTensor::new(vec![6, PROMPT_TOKENS, width], cut);
    assert_close(prompts, &cut, 1e-6, "prompts");
    assert_close(
        model.text_features(labels).unwrap(),
        &golden["text.batch"],
        1e-5,
        "text features of the batch",
    );
    assert_close(
        model
            .text_features(Tensor::arange(0..5, &Default::default()))
            .unwrap(),
        &golden["text.all"],
        1e-5,
        "text features of every identity",
    );
}

#[test]
fn the_training_forward_losses_and_gradients_equal_the_references() {
    let golden = fixture("clip_reid.safetensors");
    let model = loaded::<A>(&config());
    let images = tensor::<A, 4>(&golden["input.images"]);
    let targets = ints::<A>(&golden["input.labels"]);
    let labels: Vec<i64> = golden["input.labels"]
        .data
        .iter()
        .map(|&v| v as i64)
        .collect();

    // Stage 1: the prompt vectors against fixed image features.
    let image_features = tensor::<A, 2>(&golden["stage1.image_features"]);
    let text = model.text_features(targets.clone()).unwrap();
    let i2t = supcon_loss(image_features.clone(), text.clone(), &labels, &labels).unwrap();
    let t2i = supcon_loss(text, image_features, &labels, &labels).unwrap();
    assert_close(i2t.clone(), &golden["stage1.i2t"], 1e-5, "stage-1 i2t");
    assert_close(t2i.clone(), &golden["stage1.t2i"], 1e-5, "stage-1 t2i");
    let grads = (i2t + t2i).backward();
    let prompts = model.prompt_learner.as_ref().unwrap();
    assert_close(
        prompts.cls_ctx.grad(&grads).unwrap(),
        &golden["stage1.grad.cls_ctx"],
        1e-4,
        "stage-1 gradient of the prompt vectors",
    );
    assert!(prompts.token_prefix.grad(&grads).is_none());

    // Stage 2: the image side in training mode against fixed text features.
    let text_all = model
        .text_features(Tensor::arange(0..5, &Default::default()))
        .unwrap()
        .detach();
    let cams = ints::<A>(&golden["input.cameras"]);
    let views = ints::<A>(&golden["input.views"]);
    let out = model.forward_train(images, Some(cams), Some(views));
    for (i, s) in out.scores.iter().enumerate() {
        let key = format!("train.score{i}");
        assert_close(s.clone(), &golden[&key], 1e-4, &key);
    }
    for (i, f) in out.feats.iter().enumerate() {
        let key = format!("train.feat{i}");
        assert_close(f.clone(), &golden[&key], 1e-4, &key);
    }
    for (name, neck) in [
        ("bottleneck", &model.bottleneck),
        ("bottleneck_proj", &model.bottleneck_proj),
    ] {
        let key = |stat: &str| format!("train.{name}.{stat}");
        assert_close(
            neck.running_mean.value(),
            &golden[&key("running_mean")],
            1e-4,
            &key("running_mean"),
        );
        assert_close(
            neck.running_var.value(),
            &golden[&key("running_var")],
            1e-4,
            &key("running_var"),
        );
    }
    let logits = out.feats[2].clone().matmul(text_all.transpose());
    let loss = clip_reid_loss(
        &out.scores,
        &out.feats,
        Some(logits),
        targets,
        &labels,
        &ClipReidObjectiveConfig::default(),
    )
    .unwrap();
    assert_close(loss.id.clone(), &golden["stage2.id"], 1e-5, "stage-2 ID");
    assert_close(
        loss.triplet.clone(),
        &golden["stage2.triplet"],
        1e-5,
        "triplet",
    );
    assert_close(
        loss.i2t.clone().unwrap(),
        &golden["stage2.i2t"],
        1e-5,
        "i2t",
    );
    assert_close(
        loss.total.clone(),
        &golden["stage2.loss"],
        1e-5,
        "stage-2 loss",
    );
    let grads = loss.total.backward();
    let key = |name: &str| format!("stage2.grad.{name}");
    let check = |got: Option<Tensor<B, 2>>, name: &str, transpose: bool| {
        let got = got.unwrap_or_else(|| panic!("{name}: no gradient"));
        let got = if transpose { got.transpose() } else { got };
        assert_close(got, &golden[&key(name)], 2e-4, name);
    };
    let encoder = &model.image_encoder;
    assert_close(
        encoder.conv1.weight.grad(&grads).unwrap(),
        &golden[&key("image_encoder.conv1.weight")],
        2e-4,
        "conv1",
    );
    assert_close(
        encoder.class_embedding.grad(&grads).unwrap(),
        &golden[&key("image_encoder.class_embedding")],
        2e-4,
        "class embedding",
    );
    check(
        encoder.blocks[11].attn.qkv.weight.grad(&grads),
        "image_encoder.transformer.resblocks.11.attn.in_proj_weight",
        true,
    );
    check(encoder.proj.grad(&grads), "image_encoder.proj", false);
    check(
        model.cv_embed.as_ref().unwrap().grad(&grads),
        "cv_embed",
        false,
    );
    check(
        model.classifier.weight.grad(&grads),
        "classifier.weight",
        true,
    );
    check(
        model.classifier_proj.weight.grad(&grads),
        "classifier_proj.weight",
        true,
    );
    for (name, neck) in [
        ("bottleneck.weight", &model.bottleneck),
        ("bottleneck_proj.weight", &model.bottleneck_proj),
    ] {
        assert_close(
            neck.weight.grad(&grads).unwrap(),
            &golden[&key(name)],
            2e-4,
            name,
        );
        assert!(
            neck.bias.grad(&grads).is_none(),
            "{name}: the bias is frozen"
        );
    }
}

#[test]
fn strict_loading_names_what_does_not_fit() {
    let checkpoint = fixture("clip_reid.pth");
    // Inference needs no text side: its keys are left alone and named.
    let mut image_only = config().with_text(None).init::<B>(&Default::default());
    let skipped = load_clip_reid(&mut image_only, &checkpoint).unwrap();
    assert!(skipped.contains(&"prompt_learner.cls_ctx".to_string()));
    assert!(skipped
        .iter()
        .all(|k| k.starts_with("prompt_learner.") || k.starts_with("text_encoder.")));
    assert_eq!(skipped.len(), 3 + 4 + 2 * 12);

    let mut fewer = config();
    fewer.num_classes = 4;
    let mut fewer_classes = fewer.init::<B>(&Default::default());
    match load_clip_reid(&mut fewer_classes, &checkpoint) {
        Err(ImportError::ShapeMismatch { key, expected, got }) => {
            assert_eq!(key, "classifier.weight");
            assert_eq!((expected, got), (vec![4, 32], vec![5, 32]));
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    let mut no_sie = config()
        .with_sie(SieConfig::new())
        .init::<B>(&Default::default());
    match load_clip_reid(&mut no_sie, &checkpoint) {
        Err(ImportError::UnexpectedKeys(keys)) => assert_eq!(keys, ["cv_embed"]),
        other => panic!("expected an unexpected key, got {other:?}"),
    }
    let mut missing = checkpoint.clone();
    missing.remove("text_encoder.ln_final.bias");
    missing.remove("bottleneck_proj.running_var");
    for (dict, key) in [
        (missing.clone(), "text_encoder.ln_final.bias"),
        (
            {
                let mut d = missing;
                d.insert(
                    "text_encoder.ln_final.bias".into(),
                    checkpoint["text_encoder.ln_final.bias"].clone(),
                );
                d
            },
            "bottleneck_proj.running_var",
        ),
    ] {
        match load_clip_reid(&mut config().init::<B>(&Default::default()), &dict) {
            Err(ImportError::MissingKeys(keys)) => assert_eq!(keys, [key]),
            other => panic!("expected a missing key, got {other:?}"),
        }
    }
}

#[test]
fn every_parameter_has_the_reference_name_it_loads_from() {
    let model = config().init::<B>(&Default::default());
    let names: BTreeSet<String> = model
        .collect(None, None, false)
        .iter()
        .map(|s| reference_key(&s.full_path()))
        .collect();
    let keys: BTreeSet<String> = fixture("clip_reid.pth")
        .into_keys()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    assert_eq!(names, keys);
}

#[test]
fn a_checkpoint_round_trips_every_tensor_in_the_references_layout() {
    let device = Default::default();
    let mut model = config().init::<B>(&device);
    load_clip_reid(&mut model, &fixture("clip_reid.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.safetensors");
    let input = InputSpec {
        mean: [0.5; 3],
        std: [0.5; 3],
        height: 64,
        width: 40,
    };
    save_clip_reid_checkpoint(&model, &config(), &input, &path).unwrap();
    let (loaded, stored, stored_input) = load_clip_reid_checkpoint::<B>(&path, &device).unwrap();
    assert_eq!((stored, stored_input), (config(), Some(input)));
    // The reference's own tensors come back in its layout (the prompt buffers without their
    // leading 1, the suffix with the rows the 12-token prompt reads).
    let reference = fixture("clip_reid.pth");
    let exported = clip_reid_state_dict(&loaded);
    for (key, tensor) in &exported {
        let want = &reference[key];
        if key.starts_with("prompt_learner.token_") {
            assert_eq!(tensor.data, want.data[..tensor.data.len()], "{key}");
        } else {
            assert_eq!(
                (&tensor.shape, &tensor.data),
                (&want.shape, &want.data),
                "{key}"
            );
        }
    }
    let wrong = InputSpec {
        height: 32,
        ..input
    };
    assert!(matches!(
        save_clip_reid_checkpoint(&model, &config(), &wrong, &path),
        Err(ImportError::Config { .. })
    ));
}

/// The values of every parameter whose path starts with `prefix`.
fn values<BB: Backend>(model: &ClipReid<BB>, prefix: &str) -> Vec<(String, Vec<f32>)> {
    model
        .collect(None, None, false)
        .into_iter()
        .filter(|s| s.full_path().starts_with(prefix))
        .map(|s| {
            let data = s
                .to_data()
                .unwrap()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap();
            (s.full_path(), data)
        })
        .collect()
}

#[test]
fn a_trained_model_starts_a_new_run_with_its_encoders_and_fixed_prompt_tokens() {
    let reference = fixture("clip_reid.pth");
    let (layout, openai) = clip_openai_dict(&reference).unwrap();
    assert_eq!(layout, ClipLayout::ClipReid);
    assert!(openai.contains_key("visual.conv1.weight") && openai.contains_key("ln_final.weight"));
    assert!(!openai
        .keys()
        .any(|k| k.starts_with("classifier") || k == "cv_embed"));

    let trained = loaded::<B>(&config());
    // Another dataset: other classes and no SIE; the encoders come from the trained model.
    let fresh_config = config().with_sie(SieConfig::new());
    let mut fresh = ClipReidConfig {
        num_classes: 3,
        ..fresh_config
    }
    .init::<B>(&Default::default());
    let heads_before = values(&fresh, "classifier");
    load_clip_pretrained(&mut fresh, layout, &openai).unwrap();
    for prefix in ["image_encoder.", "text_encoder."] {
        assert_eq!(values(&fresh, prefix), values(&trained, prefix), "{prefix}");
    }
    let (new, old) = (
        fresh.prompt_learner.as_ref().unwrap(),
        trained.prompt_learner.as_ref().unwrap(),
    );
    for (got, want) in [
        (new.token_prefix.val(), old.token_prefix.val()),
        (new.token_suffix.val(), old.token_suffix.val()),
    ] {
        assert_eq!(got.into_data(), want.into_data());
    }
    assert_eq!(new.num_classes(), 3);
    assert_eq!(
        values(&fresh, "classifier"),
        heads_before,
        "heads start afresh"
    );

    // Its position embedding is at its training grid, which is not resized.
    let other_grid = ClipReidConfig::new(ClipVisionConfig::new([64, 48], 32, 12, 2, 16), 3)
        .with_text(Some(ClipTextConfig::new(64, 2, 2, 16)));
    let mut model = other_grid.init::<B>(&Default::default());
    let untouched = values(&model, "image_encoder.");
    match load_clip_pretrained(&mut model, layout, &openai) {
        Err(ImportError::ClipShape { key, .. }) => {
            assert_eq!(key, "image_encoder.positional_embedding")
        }
        other => panic!("expected a grid refusal, got {other:?}"),
    }
    assert_eq!(values(&model, "image_encoder."), untouched);
}

#[test]
fn a_refused_file_leaves_the_model_as_it_was() {
    let mut dict = fixture("clip_reid.pth");
    let mut model = config().init::<B>(&Default::default());
    let before = values(&model, "");
    dict.remove("bottleneck.running_var");
    assert!(matches!(
        load_clip_reid(&mut model, &dict),
        Err(ImportError::MissingKeys(keys)) if keys == ["bottleneck.running_var"]
    ));
    let (layout, mut openai) = clip_openai_dict(&dict).unwrap();
    openai.remove("ln_final.bias");
    assert!(matches!(
        load_clip_pretrained(&mut model, layout, &openai),
        Err(ImportError::MissingKeys(keys)) if keys == ["ln_final.bias"]
    ));
    assert_eq!(values(&model, ""), before, "nothing was loaded");
}
