//! Attention rollout against a NumPy implementation of vit-explain's rule
//! (`scripts/rollout_fixture.py`), and the attention probabilities a model gives.

use burn::backend::NdArray;
use burn::prelude::*;
use transreid_model::{
    attention_rollout, HeadFusion, JpmConfig, SieConfig, SieMode, TransReidConfig, VitConfig,
};

type B = NdArray;

#[test]
fn rollout_equals_the_numpy_rule_for_every_fusion_and_discard_ratio() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/rollout.json")).unwrap();
    let heads = fixture["heads"].as_u64().unwrap() as usize;
    let tokens = fixture["tokens"].as_u64().unwrap() as usize;
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let attentions: Vec<Vec<f32>> = fixture["attentions"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let fusion = match case["fusion"].as_str().unwrap() {
            "mean" => HeadFusion::Mean,
            "max" => HeadFusion::Max,
            _ => HeadFusion::Min,
        };
        let ratio = case["discard_ratio"].as_f64().unwrap();
        let expected = floats(&case["map"]);
        let got = attention_rollout(&attentions, heads, tokens, fusion, ratio).unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                (g - e).abs() <= 1e-5,
                "{fusion:?} {ratio}: {got:?} vs {expected:?}"
            );
        }
        assert!(got.iter().all(|&v| (0.0..=1.0 + 1e-6).contains(&v)));
        assert!(got.iter().any(|&v| v == 1.0), "normalised by the maximum");
    }
}

#[test]
fn a_model_gives_one_attention_map_per_block_the_global_feature_passes() {
    let device = Default::default();
    let config = TransReidConfig::new(
        VitConfig::new([32, 16], 32, 3, 4)
            .with_patch_size(8)
            .with_stride([6, 6]),
        5,
    )
    .with_jpm(Some(JpmConfig::new()))
    .with_sie(
        SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(2),
    );
    let model = config.init::<B>(&device);
    let images =
        Tensor::<B, 4>::random([2, 3, 32, 16], burn::tensor::Distribution::Default, &device);
    let cameras = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
    let before = model.embed(images.clone(), Some(cameras.clone()), None);
    let maps = model.attention_probabilities(images.clone(), Some(cameras.clone()), None);
    let after = model.embed(images, Some(cameras), None);
    assert_eq!(
        before.into_data(),
        after.into_data(),
        "reading the maps changes nothing"
    );

    let tokens = 1 + config.vit.grid()[0] * config.vit.grid()[1];
    assert_eq!(maps.len(), 3);
    for map in &maps {
        assert_eq!(map.dims(), [2, 4, tokens, tokens]);
        let values: Vec<f32> = map.clone().into_data().to_vec().unwrap();
        assert!(values.iter().all(|&v| v >= 0.0));
        for row in values.chunks(tokens) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
        }
    }
    // The rollout of each image of the batch.
    for image in 0..2 {
        let per_block: Vec<Vec<f32>> = maps
            .iter()
            .map(|m| m.clone().narrow(0, image, 1).into_data().to_vec().unwrap())
            .collect();
        let map = attention_rollout(&per_block, 4, tokens, HeadFusion::Mean, 0.9).unwrap();
        assert_eq!(map.len(), tokens - 1);
    }
}

#[test]
fn attention_forced_onto_one_patch_puts_the_maximum_there() {
    use transreid_model::{export_state_dict, load_reference_dict, ImportOptions};
    let device = Default::default();
    let (d, depth) = (32, 2);
    let config = TransReidConfig::new(
        VitConfig::new([32, 16], d, depth, 4)
            .with_patch_size(8)
            .with_stride([8, 8]),
        5,
    );
    let mut model = config.init::<B>(&device);
    let tokens = 1 + config.vit.grid()[0] * config.vit.grid()[1];
    // Token 5: patch 4 (row 2, column 0 of the 4x2 grid).
    let target = 5;
    // Every token is its position embedding alone, and only `target`'s is not zero; the query
    // bias and the key weight make head 0's scores large on `target` for every query, and the
    // projections and MLPs are zero so that every block sees the same tokens.
    let mut dict = export_state_dict(&model);
    for (key, tensor) in dict.iter_mut() {
        let is_norm = key.contains("norm") && key.ends_with("weight");
        if !is_norm {
            tensor.data.iter_mut().for_each(|v| *v = 0.0);
        }
        if key == "base.pos_embed" {
            tensor.data[target * d] = 10.0;
            tensor.data[target * d + 1] = -10.0;
        }
        if key.ends_with("attn.qkv.weight") {
            tensor.data[d * d] = 1.0; // key feature 0 reads input feature 0 ([out, in] layout)
        }
        if key.ends_with("attn.qkv.bias") {
            tensor.data[0] = 20.0; // every query's feature 0
        }
    }
    load_reference_dict(&mut model, dict, ImportOptions::default()).unwrap();
    let images =
        Tensor::<B, 4>::random([1, 3, 32, 16], burn::tensor::Distribution::Default, &device);
    let maps: Vec<Vec<f32>> = model
        .attention_probabilities(images, None, None)
        .into_iter()
        .map(|m| m.into_data().to_vec().unwrap())
        .collect();
    for fusion in [HeadFusion::Mean, HeadFusion::Max] {
        let map = attention_rollout(&maps, 4, tokens, fusion, 0.0).unwrap();
        let best = map
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best + 1, target, "{fusion:?}: {map:?}");
        assert!(
            map.iter()
                .enumerate()
                .all(|(i, &v)| i + 1 == target || v < 0.9),
            "{map:?}"
        );
    }
}
