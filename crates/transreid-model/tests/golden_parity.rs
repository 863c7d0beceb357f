//! Parity with outputs of the reference implementation and timm (fixtures/*.json describe them).

use std::path::{Path, PathBuf};

use burn::backend::{Flex, NdArray};
use burn::prelude::*;
use transreid_model::{
    load_imagenet, read_state_dict, resize_pos_embed, shuffle_index, HostTensor, ImportOptions,
    JpmConfig, StateDict, TransReidConfig, VitConfig,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn golden(name: &str) -> StateDict {
    read_state_dict(&fixture(name)).unwrap().0
}

fn assert_close(got: &[f32], expected: &HostTensor, tol: f32, what: &str) {
    assert_eq!(got.len(), expected.data.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(&expected.data)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: max deviation {worst} > {tol}");
}

fn to_tensor<B: Backend, const D: usize>(t: &HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// The timm fixture (scripts/timm_fixture.py): vit_tiny's 12 blocks and 3 heads at width 48.
fn timm_vit(img: [usize; 2], stride: usize) -> TransReidConfig {
    TransReidConfig::new(
        VitConfig::new(img, 48, 12, 3).with_stride([stride, stride]),
        10,
    )
}

fn timm_forward_features<B: Backend>() {
    let device = Default::default();
    let g = golden("timm_vit.safetensors");
    let mut model = timm_vit([224, 224], 16).init::<B>(&device);
    let report = load_imagenet(
        &mut model,
        &fixture("timm_vit_w48.safetensors"),
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(report.pos_embed_resized, None);
    let out = model
        .base
        .forward_features(to_tensor(&g["input224"], &device), None, None);
    assert_close(
        &values(out),
        &g["output224.forward_features"],
        1e-4,
        "forward_features",
    );
}

fn reference_backbone<B: Backend>(stride: usize, prefix: &str) {
    let device = Default::default();
    let g = golden("timm_vit.safetensors");
    let mut model = timm_vit([256, 128], stride).init::<B>(&device);
    let report = load_imagenet(
        &mut model,
        &fixture("timm_vit_w48.safetensors"),
        ImportOptions::default(),
    )
    .unwrap();
    let tokens = g[&format!("{prefix}.pos_embed")].shape[1];
    assert_eq!(report.pos_embed_resized, Some((197, tokens)));
    assert_close(
        &values(model.base.pos_embed.val()),
        &g[&format!("{prefix}.pos_embed")],
        1e-5,
        "pos_embed",
    );
    let feat = model
        .base
        .forward_global(to_tensor(&g["input256"], &device), None, None);
    assert_close(
        &values(feat.clone()),
        &g[&format!("{prefix}.global_feat")],
        1e-4,
        "global_feat",
    );
    // Without JPM or a neck, the embedding is the backbone's normalised cls token.
    let embedded = model.embed(to_tensor(&g["input256"], &device), None, None);
    assert_close(
        &values(embedded),
        &g[&format!("{prefix}.global_feat")],
        1e-4,
        "embed",
    );
}

#[test]
fn timm_forward_features_ndarray() {
    timm_forward_features::<NdArray>();
}

#[test]
fn timm_forward_features_flex() {
    timm_forward_features::<Flex>();
}

#[test]
fn reference_backbone_stride16() {
    reference_backbone::<NdArray>(16, "output256");
    reference_backbone::<Flex>(16, "output256");
}

#[test]
fn reference_backbone_stride12() {
    reference_backbone::<NdArray>(12, "output256_s12");
    reference_backbone::<Flex>(12, "output256_s12");
}

#[test]
fn jpm_branches_start_as_copies_of_the_last_block() {
    let device = Default::default();
    let config = timm_vit([256, 128], 16).with_jpm(Some(JpmConfig::new()));
    let mut model = config.init::<NdArray>(&device);
    load_imagenet(
        &mut model,
        &fixture("timm_vit_w48.safetensors"),
        ImportOptions::default(),
    )
    .unwrap();
    let last = values(model.base.blocks[11].attn.qkv.weight.val());
    for branch in [&model.b1, &model.b2] {
        let branch = branch.as_ref().unwrap();
        assert_eq!(values(branch.block.attn.qkv.weight.val()), last);
        assert_eq!(
            values(branch.norm.gamma.val()),
            values(model.base.norm.gamma.val())
        );
    }
}

#[test]
fn pos_embed_resize_every_grid() {
    let g = golden("pos_embed_resize.safetensors");
    let input = &g["input"];
    let dim = 64;
    for (ny, nx) in [
        (16, 8),
        (21, 10),
        (24, 8),
        (31, 10),
        (16, 16),
        (21, 21),
        (22, 11),
        (14, 14),
    ] {
        let out = resize_pos_embed(&input.data, dim, 1, [ny, nx]).unwrap();
        assert_close(
            &out,
            &g[&format!("out_{ny}x{nx}")],
            1e-6,
            &format!("{ny}x{nx}"),
        );
    }
}

#[test]
fn pos_embed_resize_distilled_checkpoint() {
    // A DeiT-distilled checkpoint: dist_token present, pos_embed [1, 2 + 196, D].
    let g = golden("pos_embed_resize.safetensors");
    let dim = 64;
    let mut data = g["distilled.input"].data.clone();
    data.drain(dim..2 * dim);
    let out = resize_pos_embed(&data, dim, 1, [16, 8]).unwrap();
    assert_close(&out, &g["distilled.out_16x8"], 1e-6, "distilled");
}

#[test]
fn jpm_shuffle_every_index_map() {
    let g = golden("jpm_shuffle.safetensors");
    let device = Default::default();
    for (n, d, shift, group) in [
        (210, 16, 5, 2),
        (128, 16, 5, 2),
        (210, 16, 8, 2),
        (128, 16, 8, 2),
        (15, 8, 5, 2),
        (128, 16, 5, 4),
    ] {
        let key = format!("N{n}_D{d}_shift{shift}_group{group}");
        let index = shuffle_index(n, shift, group).unwrap();
        let expected: Vec<usize> = g[&format!("{key}.index")]
            .data
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(index, expected, "{key}");
        // Applying the map reproduces the reference's shuffled tokens.
        let input: Tensor<NdArray, 3> = to_tensor(&g[&format!("{key}.input")], &device);
        let idx: Vec<i64> = index.iter().map(|&i| i as i64).collect();
        let len = idx.len();
        let out = input.select(1, Tensor::from_data(TensorData::new(idx, [len]), &device));
        assert_close(&values(out), &g[&format!("{key}.output")], 0.0, &key);
        let part_len = g[&format!("{key}.patch_length")].data[0] as usize;
        assert_eq!(part_len, n / 4);
    }
    assert!(
        shuffle_index(210, 5, 4).is_err(),
        "the reference raises for N=210, group 4"
    );
}
