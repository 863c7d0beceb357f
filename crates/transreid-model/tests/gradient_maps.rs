//! Gradient-weighted attention maps against a PyTorch implementation of Chefer et al.'s rule
//! on the reference's own model (`scripts/relevance_fixture.py`), and their properties; the
//! same maps of a CLIP-ReID model.

use std::path::PathBuf;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::prelude::*;
use transreid_model::{
    export_state_dict, gradient_maps, load_clip_reid, load_reference_dict, read_state_dict,
    rollout_maps, ClipReid, ClipReidConfig, ClipVisionConfig, ExplainError, ExplainTarget,
    HeadFusion, HostTensor, ImportOptions, JpmConfig, NeckFeat, SieConfig, SieMode, StateDict,
    TransReid, TransReidConfig, VitConfig,
};

type A = Autodiff<NdArray>;
type B = NdArray;

const GRID: [usize; 2] = [5, 3];

fn fixture() -> StateDict {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/relevance.safetensors");
    read_state_dict(&path).unwrap().0
}

/// The fixture's model (see the script), with the inference feature asked for.
fn model(dict: &StateDict, neck: NeckFeat) -> TransReid<A> {
    let vit = VitConfig::new([48, 32], 32, 3, 2)
        .with_stride([8, 8])
        .with_drop_path_rate(0.0);
    let config = TransReidConfig::new(vit, 4)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(3)
                .with_coefficient(3.0),
        )
        .with_jpm(Some(JpmConfig::new()))
        .with_neck_feat(neck);
    let mut model = config.init::<A>(&Default::default());
    let weights = dict
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("weights.")?.to_string(), v.clone())))
        .collect();
    load_reference_dict(&mut model, weights, ImportOptions::default()).unwrap();
    model
}

/// Images `rows` of the fixture and their cameras.
fn inputs(dict: &StateDict, rows: std::ops::Range<usize>) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let device = Default::default();
    let images = &dict["input.images"];
    let per = images.data.len() / images.shape[0];
    let data = images.data[rows.start * per..rows.end * per].to_vec();
    let mut shape = images.shape.clone();
    shape[0] = rows.len();
    let cams: Vec<i64> = dict["input.cams"].data[rows]
        .iter()
        .map(|&c| c as i64)
        .collect();
    let n = cams.len();
    (
        Tensor::from_data(TensorData::new(data, shape), &device),
        Tensor::from_data(TensorData::new(cams, [n]), &device),
    )
}

fn assert_close(got: &[f32], expected: &HostTensor, tol: f32, what: &str) {
    assert_eq!(got.len(), expected.data.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(&expected.data).enumerate() {
        assert!((g - e).abs() <= tol, "{what}[{i}]: {g} vs {e}");
    }
}

#[test]
fn gradient_maps_equal_the_pytorch_rule_for_every_target() {
    let dict = fixture();
    let cases = [
        (
            "pair_before",
            0..2,
            NeckFeat::Before,
            ExplainTarget::PairCosine,
        ),
        (
            "pair_after",
            0..2,
            NeckFeat::After,
            ExplainTarget::PairCosine,
        ),
        ("norm", 2..4, NeckFeat::Before, ExplainTarget::FeatureNorm),
        ("logit", 4..6, NeckFeat::Before, ExplainTarget::Logit(2)),
    ];
    for (name, rows, neck, target) in cases {
        let model = model(&dict, neck);
        let (images, cams) = inputs(&dict, rows);
        let before = values(
            model
                .valid()
                .embed(images.clone(), Some(cams.clone()), None),
        );
        let explained = gradient_maps(&model, images.clone(), Some(cams.clone()), None, target)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(explained.grid, GRID);
        assert_close(
            &explained.target_values,
            &dict[&format!("{name}.values")],
            1e-4,
            name,
        );
        for (image, map) in explained.maps.iter().enumerate() {
            assert_close(map, &dict[&format!("{name}.map.{image}")], 2e-4, name);
            // Non-negative, normalised to a maximum of 1.
            assert!(
                map.iter().all(|&v| (0.0..=1.0).contains(&v)),
                "{name}: {map:?}"
            );
            assert!(map.iter().any(|&v| v == 1.0), "{name}: {map:?}");
        }
        // Explaining leaves the model as it was: the same embedding, bit for bit.
        let after = values(model.valid().embed(images, Some(cams), None));
        assert_eq!(before, after, "{name}");
    }
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

#[test]
fn the_probed_forward_is_the_embedding() {
    let dict = fixture();
    for neck in [NeckFeat::Before, NeckFeat::After] {
        let model = model(&dict, neck).valid();
        let (images, cams) = inputs(&dict, 0..4);
        let tokens = model
            .base
            .embed_tokens(images.clone(), Some(cams.clone()), None);
        let probed = model.forward_probed(tokens, Vec::new());
        let embedded = model.embed(images, Some(cams), None);
        probed.embedding.into_data().assert_approx_eq::<f32>(
            &embedded.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        assert_eq!(probed.attentions.len(), 3);
        assert_eq!(probed.logits.dims(), [4, 4]);
    }
}

#[test]
fn a_pair_that_differs_in_one_region_is_explained_by_the_rest() {
    // A one-block model whose global feature is the normalised mean of its patches' colours
    // (each token holds its patch's mean red, green and blue; attention is uniform; values
    // and projection pass tokens through), and a pair that shares its top half (red) and
    // differs in the bottom half (green in the query, blue in the gallery image). Attention
    // to the shared patches raises the similarity, to the differing ones lowers it: on both
    // images the map is 1 on the shared half and 0 on the other.
    let device = Default::default();
    let d = 8;
    let config = TransReidConfig::new(VitConfig::new([64, 32], d, 1, 1), 4);
    let mut model = config.init::<A>(&device);
    let mut dict = export_state_dict(&model);
    for (key, tensor) in dict.iter_mut() {
        let is_norm = key.contains("norm") && key.ends_with("weight");
        if !is_norm {
            tensor.data.iter_mut().for_each(|v| *v = 0.0);
        }
        // PyTorch layouts: convolution [out, in, 16, 16], Linear [out, in].
        if key == "base.patch_embed.proj.weight" {
            for c in 0..3 {
                let start = (c * 3 + c) * 256;
                tensor.data[start..start + 256]
                    .iter_mut()
                    .for_each(|v| *v = 1.0 / 256.0);
            }
        }
        if key.ends_with("attn.qkv.weight") {
            (0..d).for_each(|i| tensor.data[(2 * d + i) * d + i] = 1.0);
        }
        if key.ends_with("attn.proj.weight") {
            (0..d).for_each(|i| tensor.data[i * d + i] = 1.0);
        }
    }
    load_reference_dict(&mut model, dict, ImportOptions::default()).unwrap();
    let half = |channel: usize| {
        let mut data = vec![0.0f32; 3 * 32 * 32];
        data[channel * 1024..(channel + 1) * 1024]
            .iter_mut()
            .for_each(|v| *v = 1.0);
        Tensor::<B, 4>::from_data(TensorData::new(data, [1, 3, 32, 32]), &device)
    };
    let query = Tensor::cat(vec![half(0), half(1)], 2);
    let gallery = Tensor::cat(vec![half(0), half(2)], 2);
    let pair = Tensor::cat(vec![query, gallery], 0);
    let explained = gradient_maps(&model, pair, None, None, ExplainTarget::PairCosine).unwrap();
    assert_eq!(explained.grid, [4, 2]);
    for map in &explained.maps {
        assert_eq!(map[..4], [1.0; 4], "shared half: {map:?}");
        assert_eq!(map[4..], [0.0; 4], "differing half: {map:?}");
    }
    // The similarity of the two halves' mean: below 1, above the unrelated halves' alone.
    let cosine = explained.target_values[0];
    assert!(cosine > 0.2 && cosine < 0.9, "{cosine}");
}

#[test]
fn targets_that_do_not_fit_are_errors() {
    let dict = fixture();
    let model = model(&dict, NeckFeat::Before);
    let (images, cams) = inputs(&dict, 0..3);
    let err = gradient_maps(
        &model,
        images.clone(),
        Some(cams.clone()),
        None,
        ExplainTarget::PairCosine,
    );
    assert_eq!(err.unwrap_err(), ExplainError::PairNeedsTwo { images: 3 });
    let err = gradient_maps(
        &model,
        images.clone(),
        Some(cams.clone()),
        None,
        ExplainTarget::Logit(4),
    );
    assert_eq!(
        err.unwrap_err(),
        ExplainError::Class {
            class: 4,
            num_classes: 4
        }
    );
    // Rollout of the same model: one map per image, normalised the same way.
    let rolled = rollout_maps(
        &model.valid(),
        images,
        Some(cams),
        None,
        HeadFusion::Mean,
        0.5,
    )
    .unwrap();
    assert_eq!(rolled.maps.len(), 3);
    for map in &rolled.maps {
        assert_eq!(map.len(), 15);
        assert!(map.iter().all(|&v| (0.0..=1.0).contains(&v)) && map.contains(&1.0));
    }
}

/// The reference CLIP-ReID checkpoint of `tests/clip_reid.rs` (image side) and its inputs.
fn clip_model(
    neck: NeckFeat,
) -> (
    ClipReid<A>,
    Tensor<B, 4>,
    Tensor<B, 1, Int>,
    Tensor<B, 1, Int>,
) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let config = ClipReidConfig::new(ClipVisionConfig::new([64, 40], 32, 12, 2, 16), 5)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::CameraView)
                .with_camera_num(3)
                .with_view_num(2)
                .with_coefficient(1.5),
        )
        .with_neck_feat(neck);
    let mut model = config.init::<A>(&Default::default());
    let checkpoint = read_state_dict(&dir.join("clip_reid.pth")).unwrap().0;
    load_clip_reid(&mut model, &checkpoint).unwrap();
    let golden = read_state_dict(&dir.join("clip_reid.safetensors"))
        .unwrap()
        .0;
    let device = Default::default();
    let t = &golden["input.images"];
    let images = Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), &device);
    let ids = |key: &str| {
        let v: Vec<i64> = golden[key].data.iter().map(|&v| v as i64).collect();
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), &device)
    };
    (model, images, ids("input.cameras"), ids("input.views"))
}

#[test]
fn clip_reid_explains_its_feature() {
    for neck in [NeckFeat::Before, NeckFeat::After] {
        let (model, images, cams, views) = clip_model(neck);
        let inner = model.valid();
        let tokens = inner.embed_tokens(images.clone(), Some(cams.clone()), Some(views.clone()));
        let probed = inner.forward_probed(tokens, Vec::new());
        let embedded = inner.embed(images.clone(), Some(cams.clone()), Some(views.clone()));
        probed.embedding.into_data().assert_approx_eq::<f32>(
            &embedded.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        // The logits are the class-token classifier's after its BNNeck (running statistics).
        let scores = inner.forward_train(images.clone(), Some(cams.clone()), Some(views.clone()));
        probed.logits.into_data().assert_approx_eq::<f32>(
            &scores.scores[0].clone().into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        assert_eq!(probed.attentions.len(), 12);
    }

    let (model, images, cams, views) = clip_model(NeckFeat::Before);
    let pair = |t: Tensor<B, 4>| t.narrow(0, 0, 2);
    let ids = |t: Tensor<B, 1, Int>| Some(t.narrow(0, 0, 2));
    let explained = gradient_maps(
        &model,
        pair(images.clone()),
        ids(cams.clone()),
        ids(views.clone()),
        ExplainTarget::PairCosine,
    )
    .unwrap();
    // The grid of 64x40 at patch 16: 4 x 2; each map peaks at 1.
    assert_eq!(explained.grid, [4, 2]);
    let inner = model.valid();
    let f = values(inner.embed(pair(images.clone()), ids(cams.clone()), ids(views.clone())));
    let (q, g) = f.split_at(f.len() / 2);
    let dot: f32 = q.iter().zip(g).map(|(a, b)| a * b).sum();
    let norm = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>().sqrt();
    let cosine = dot / (norm(q) * norm(g));
    assert!((explained.target_values[0] - cosine).abs() < 1e-5);
    for map in &explained.maps {
        assert_eq!(map.len(), 8);
        let max = map.iter().fold(0.0f32, |m, v| m.max(*v));
        assert_eq!(max, 1.0, "{map:?}");
        assert!(map.iter().all(|v| (0.0..=1.0).contains(v)), "{map:?}");
        assert!(
            map.iter().any(|&v| v < 0.999),
            "the probes reach the blocks: {map:?}"
        );
    }
    assert!(matches!(
        gradient_maps(
            &model,
            images.clone(),
            Some(cams.clone()),
            Some(views.clone()),
            ExplainTarget::Logit(5)
        ),
        Err(ExplainError::Class {
            class: 5,
            num_classes: 5
        })
    ));
    let rolled = rollout_maps(
        &inner,
        images,
        Some(cams),
        Some(views),
        HeadFusion::Mean,
        0.5,
    )
    .unwrap();
    assert_eq!(rolled.maps.len(), 6);
    assert_eq!(rolled.grid, [4, 2]);
}
