//! One small CLIP image tower in the OpenAI, timm and Hugging Face layouts
//! (`scripts/clip_layouts_fixture.py`): the three import to identical tensors, the architecture
//! is read from the shapes, and the features equal what timm's and Hugging Face's own models
//! compute from those files. The text tower's names and transposes on a synthetic file.

use std::path::PathBuf;

use burn::backend::NdArray;
use burn::prelude::*;
use transreid_model::{
    clip_openai_dict, load_clip_pretrained, load_clip_text, load_clip_vision, read_state_dict,
    ClipArchitecture, ClipLayout, ClipReidConfig, HostTensor, ImportError, PromptObject, StateDict,
};

type B = NdArray;

fn fixture(name: &str) -> StateDict {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    read_state_dict(&path).unwrap().0
}

fn assert_close(got: Tensor<B, 2>, expected: &HostTensor, what: &str) {
    assert_eq!(got.dims().to_vec(), expected.shape, "{what}: shape");
    let got = got.into_data().to_vec::<f32>().unwrap();
    let worst = got
        .iter()
        .zip(&expected.data)
        .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "{what}: worst difference {worst}");
}

#[test]
fn three_layouts_import_to_the_same_tensors_and_features() {
    let golden = fixture("clip_layouts_golden.safetensors");
    let mut converted = Vec::new();
    for (file, layout) in [
        ("clip_openai.safetensors", ClipLayout::OpenAi),
        ("clip_timm.safetensors", ClipLayout::Timm),
        ("clip_hf.safetensors", ClipLayout::HuggingFace),
    ] {
        let (detected, dict) = clip_openai_dict(&fixture(file)).unwrap();
        assert_eq!(detected, layout, "{file}");
        converted.push(dict);
    }
    assert_eq!(converted[0], converted[1], "timm differs from OpenAI");
    assert_eq!(
        converted[0], converted[2],
        "Hugging Face differs from OpenAI"
    );

    let architecture = ClipArchitecture::from_openai(&converted[0]).unwrap();
    assert_eq!(
        architecture,
        ClipArchitecture {
            width: 128,
            layers: 2,
            patch_size: 16,
            output_dim: 32,
            pretrain_tokens: 16,
            text: None,
        }
    );
    let device = Default::default();
    let images = Tensor::<B, 4>::from_data(
        TensorData::new(
            golden["input.images"].data.clone(),
            golden["input.images"].shape.clone(),
        ),
        &device,
    );
    let mut model = architecture.vision([64, 64], [16, 16]).init::<B>(&device);
    load_clip_vision(&mut model, &converted[0], "visual.").unwrap();
    let [_, cls, projected] = model.forward_cls(images, None);
    for source in ["timm", "hf"] {
        assert_close(cls.clone(), &golden[&format!("{source}.cls")], source);
        let key = format!("{source}.projected");
        assert_close(projected.clone(), &golden[&key], &key);
    }
}

#[test]
fn layouts_refuse_what_they_cannot_express() {
    let mut timm = fixture("clip_timm.safetensors");
    timm.get_mut("head.bias").unwrap().data[3] = 0.5;
    assert!(matches!(
        clip_openai_dict(&timm),
        Err(ImportError::ClipShape { key, .. }) if key == "head.bias"
    ));
    let mut timm = fixture("clip_timm.safetensors");
    let extra = timm["norm.bias"].clone();
    timm.insert("blocks.0.ls1.gamma".into(), extra);
    assert!(matches!(
        clip_openai_dict(&timm),
        Err(ImportError::UnexpectedKeys(keys)) if keys == ["blocks.0.ls1.gamma"]
    ));

    let mut hf = fixture("clip_hf.safetensors");
    hf.remove("vision_model.encoder.layers.1.self_attn.k_proj.bias");
    match clip_openai_dict(&hf) {
        Err(ImportError::MissingKeys(keys)) => assert_eq!(
            keys,
            ["vision_model.encoder.layers.1.self_attn.k_proj.bias"]
        ),
        other => panic!("expected a missing key, got {other:?}"),
    }
    assert!(matches!(
        clip_openai_dict(&fixture("clip_reid.safetensors")),
        Err(ImportError::UnknownLayout { .. })
    ));
    // CLIP's heads are width / 64: width 32 is no CLIP.
    let (_, narrow) = clip_openai_dict(&fixture("clip_vision.safetensors")).unwrap();
    assert!(matches!(
        ClipArchitecture::from_openai(&narrow),
        Err(ImportError::ClipShape { key, tower: "image", .. }) if key == "visual.conv1.weight"
    ));
}

/// A `[rows, cols]` tensor whose values name their position: `base + row * cols + col`.
fn numbered(base: f32, rows: usize, cols: usize) -> HostTensor {
    HostTensor::new(
        vec![rows, cols],
        (0..rows * cols).map(|i| base + i as f32).collect(),
    )
}

#[test]
fn the_hugging_face_text_tower_maps_to_openai_names() {
    // The text projection ends in the image tower's projection size, as in every CLIP.
    let (width, out) = (64, 32);
    let mut hf: StateDict = fixture("clip_hf.safetensors");
    let vector =
        |base: f32| HostTensor::new(vec![width], (0..width).map(|i| base + i as f32).collect());
    hf.insert(
        "text_model.embeddings.position_ids".into(),
        HostTensor::new(vec![1, 12], vec![0.0; 12]),
    );
    hf.insert(
        "text_model.embeddings.token_embedding.weight".into(),
        numbered(0.0, 49408, width),
    );
    hf.insert(
        "text_model.embeddings.position_embedding.weight".into(),
        numbered(1.0, 12, width),
    );
    hf.insert("text_model.final_layer_norm.weight".into(), vector(2.0));
    hf.insert("text_model.final_layer_norm.bias".into(), vector(3.0));
    hf.insert("text_projection.weight".into(), numbered(4.0, out, width));
    hf.insert("logit_scale".into(), HostTensor::new(vec![], vec![4.6]));
    let layer = "text_model.encoder.layers.0";
    for (i, part) in ["q", "k", "v"].iter().enumerate() {
        hf.insert(
            format!("{layer}.self_attn.{part}_proj.weight"),
            numbered(10.0 * i as f32, width, width),
        );
        hf.insert(
            format!("{layer}.self_attn.{part}_proj.bias"),
            vector(100.0 * i as f32),
        );
    }
    hf.insert(
        format!("{layer}.self_attn.out_proj.weight"),
        numbered(5.0, width, width),
    );
    hf.insert(format!("{layer}.self_attn.out_proj.bias"), vector(6.0));
    for norm in ["layer_norm1", "layer_norm2"] {
        hf.insert(format!("{layer}.{norm}.weight"), vector(7.0));
        hf.insert(format!("{layer}.{norm}.bias"), vector(8.0));
    }
    hf.insert(
        format!("{layer}.mlp.fc1.weight"),
        numbered(9.0, 4 * width, width),
    );
    hf.insert(
        format!("{layer}.mlp.fc1.bias"),
        HostTensor::new(vec![4 * width], vec![0.5; 4 * width]),
    );
    hf.insert(
        format!("{layer}.mlp.fc2.weight"),
        numbered(11.0, width, 4 * width),
    );
    hf.insert(format!("{layer}.mlp.fc2.bias"), vector(12.0));

    let (_, openai) = clip_openai_dict(&hf).unwrap();
    let in_proj = &openai["transformer.resblocks.0.attn.in_proj_weight"];
    assert_eq!(in_proj.shape, [3 * width, width]);
    // Rows in q, k, v order.
    for (i, base) in [0.0, 10.0, 20.0].iter().enumerate() {
        assert_eq!(in_proj.data[i * width * width], *base);
    }
    assert_eq!(
        openai["transformer.resblocks.0.attn.in_proj_bias"].data[width],
        100.0
    );
    let projection = &openai["text_projection"];
    assert_eq!(projection.shape, [width, out]);
    assert_eq!(
        projection.data[1],
        4.0 + width as f32,
        "transposed to [width, output]"
    );
    assert!(!openai.keys().any(|k| k.contains("position_ids")));

    let architecture = ClipArchitecture::from_openai(&openai).unwrap();
    let text = architecture.text.clone().unwrap();
    assert_eq!(
        (
            text.width,
            text.layers,
            text.heads,
            text.output_dim,
            text.context_length
        ),
        (width, 1, 1, out, 12)
    );
    let mut tower = text.init::<B>(&Default::default());
    load_clip_text(&mut tower, &openai, "").unwrap();
    let loaded = tower
        .text_projection
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(loaded, projection.data);
    // The Burn Linear is [in, out]: the transpose of PyTorch's in_proj_weight.
    let qkv = tower.blocks[0].attn.qkv.weight.val();
    assert_eq!(qkv.dims(), [width, 3 * width]);
    let first_k_column = qkv.narrow(1, width, 1).into_data().to_vec::<f32>().unwrap();
    assert_eq!(first_k_column[0], 10.0);
    assert_eq!(first_k_column[1], 11.0);

    // A whole CLIP-ReID model from the file: the prompt's fixed tokens are rows of the table.
    let config = ClipReidConfig::new(architecture.vision([64, 64], [16, 16]), 3)
        .with_text(Some(text.clone()));
    let mut model = config.init::<B>(&Default::default());
    load_clip_pretrained(&mut model, ClipLayout::HuggingFace, &openai).unwrap();
    let learner = model.prompt_learner.as_ref().unwrap();
    let first_column = |t: Tensor<B, 2>| {
        t.narrow(1, 0, 1)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| *v as usize / width)
            .collect::<Vec<_>>()
    };
    let ids = PromptObject::Person.token_ids();
    assert_eq!(first_column(learner.token_prefix.val()), ids[..5]);
    assert_eq!(first_column(learner.token_suffix.val()), ids[9..]);
    // Without the text tower, two-stage training is refused; the image-only model loads.
    let (layout, vision_only) = clip_openai_dict(&fixture("clip_hf.safetensors")).unwrap();
    match load_clip_pretrained(&mut model, layout, &vision_only) {
        Err(ImportError::NoTextTower { layout, key }) => {
            assert_eq!(
                (layout, key.as_str()),
                (ClipLayout::HuggingFace, "token_embedding.weight")
            )
        }
        other => panic!("expected no text tower, got {other:?}"),
    }
    let mut baseline = config.with_text(None).init::<B>(&Default::default());
    load_clip_pretrained(&mut baseline, layout, &vision_only).unwrap();

    let mut missing = openai.clone();
    missing.remove("ln_final.bias");
    assert!(matches!(
        load_clip_text(&mut tower, &missing, ""),
        Err(ImportError::MissingKeys(keys)) if keys == ["ln_final.bias"]
    ));
}

#[test]
fn a_torchscript_archive_is_named_with_its_conversion() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchscript.pt");
    let error = read_state_dict(&path).unwrap_err();
    assert!(
        matches!(&error, ImportError::TorchScript { stem, .. } if stem == "torchscript"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("torch.jit.load('torchscript.pt'"),
        "{message}"
    );
    assert!(message.contains("'torchscript.safetensors'"), "{message}");
}
