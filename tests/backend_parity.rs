//! The same weights and inputs give the same embedding, training outputs and parameter
//! gradients on every backend compiled in (ndarray and flex always; wgpu with `--features wgpu`).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use transreid_model::{
    load_checkpoint, save_checkpoint, JpmConfig, NeckFeat, SieConfig, SieMode, TransReid,
    TransReidConfig, VitPreset,
};

const BATCH: usize = 4;

fn config() -> TransReidConfig {
    // drop path off: stochastic depth draws differ between backends by design.
    let vit = VitPreset::Tiny
        .config([64, 32], [12, 12])
        .with_drop_path_rate(0.0);
    TransReidConfig::new(vit, 5)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::CameraView)
                .with_camera_num(3)
                .with_view_num(2),
        )
        .with_jpm(Some(JpmConfig::new()))
        .with_neck_feat(NeckFeat::After)
}

/// Everything compared between backends, flattened.
struct Outputs {
    embedding: Vec<f32>,
    scores: Vec<f32>,
    feats: Vec<f32>,
    grads: Vec<(&'static str, Vec<f32>)>,
}

fn flat<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn run<B: AutodiffBackend>(checkpoint: &std::path::Path, device: &B::Device) -> Outputs {
    let (model, _) = load_checkpoint::<B>(checkpoint, device).unwrap();
    let n = BATCH * 3 * 64 * 32;
    let pixels: Vec<f32> = (0..n)
        .map(|i| ((i * 2654435761usize) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let images = Tensor::<B, 4>::from_data(TensorData::new(pixels, [BATCH, 3, 64, 32]), device);
    let ids = |v: Vec<i64>| {
        Some(Tensor::<B, 1, Int>::from_data(
            TensorData::new(v, [BATCH]),
            device,
        ))
    };
    let (cams, views) = (ids(vec![0, 2, 1, 2]), ids(vec![1, 0, 1, 1]));

    let out = model.forward_train(images.clone(), cams.clone(), views.clone());
    // A loss touching every output, so every branch receives a gradient.
    let loss = out
        .scores
        .iter()
        .chain(&out.feats)
        .enumerate()
        .map(|(i, t)| t.clone().mul_scalar(0.1 * (i + 1) as f64).tanh().sum())
        .reduce(|a, b| a + b)
        .unwrap();
    let grads = loss.backward();
    let grad = |name: &'static str, g: Option<Vec<f32>>| {
        (name, g.unwrap_or_else(|| panic!("no gradient for {name}")))
    };
    let m: &TransReid<B> = &model;
    let b1 = m.b1.as_ref().unwrap();
    let b2 = m.b2.as_ref().unwrap();
    let grads = vec![
        grad(
            "patch_embed",
            m.base.patch_embed.proj.weight.grad(&grads).map(flat),
        ),
        grad("cls_token", m.base.cls_token.grad(&grads).map(flat)),
        grad("pos_embed", m.base.pos_embed.grad(&grads).map(flat)),
        grad(
            "sie_embed",
            m.base.sie_embed.as_ref().unwrap().grad(&grads).map(flat),
        ),
        grad(
            "blocks.0.qkv",
            m.base.blocks[0].attn.qkv.weight.grad(&grads).map(flat),
        ),
        grad(
            "blocks.0.qkv.bias",
            m.base.blocks[0]
                .attn
                .qkv
                .bias
                .as_ref()
                .unwrap()
                .grad(&grads)
                .map(flat),
        ),
        grad(
            "blocks.2.fc2",
            m.base.blocks[2].mlp.fc2.weight.grad(&grads).map(flat),
        ),
        grad("b1.proj", b1.block.attn.proj.weight.grad(&grads).map(flat)),
        grad("b1.norm", b1.norm.gamma.grad(&grads).map(flat)),
        grad("b2.fc1", b2.block.mlp.fc1.weight.grad(&grads).map(flat)),
        grad(
            "b2.norm",
            b2.norm.beta.as_ref().unwrap().grad(&grads).map(flat),
        ),
        grad(
            "bottleneck_3",
            m.bottlenecks[3].weight.grad(&grads).map(flat),
        ),
        grad("classifier", m.classifiers[0].weight.grad(&grads).map(flat)),
        grad(
            "classifier_4",
            m.classifiers[4].weight.grad(&grads).map(flat),
        ),
    ];
    let scores = out
        .scores
        .into_iter()
        .flat_map(|t| flat(t.inner()))
        .collect();
    let feats = out
        .feats
        .into_iter()
        .flat_map(|t| flat(t.inner()))
        .collect();

    // Inference uses the BNNeck running statistics the training forward has just updated.
    let inner = model.valid();
    let embedding = flat(inner.embed(
        images.inner(),
        cams.map(|c| c.inner()),
        views.map(|v| v.inner()),
    ));
    Outputs {
        embedding,
        scores,
        feats,
        grads,
    }
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale.max(1.0),
        "{what}: max |diff| {worst} (scale {scale})"
    );
}

fn compare(a: &Outputs, b: &Outputs, backend: &str) {
    assert_close(&a.embedding, &b.embedding, &format!("{backend} embedding"));
    assert_close(&a.scores, &b.scores, &format!("{backend} scores"));
    assert_close(&a.feats, &b.feats, &format!("{backend} feats"));
    for ((name, x), (_, y)) in a.grads.iter().zip(&b.grads) {
        assert!(x.iter().any(|v| *v != 0.0), "{name}: zero gradient");
        assert_close(x, y, &format!("{backend} grad {name}"));
    }
}

fn reference_outputs() -> (tempfile::TempDir, std::path::PathBuf, Outputs) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    let device = Default::default();
    NdArray::<f32>::seed(&device, 7);
    let model = config().init::<NdArray>(&device);
    save_checkpoint(&model, &config(), &path).unwrap();
    let outputs = run::<Autodiff<NdArray>>(&path, &device);
    (dir, path, outputs)
}

/// One test for all backends: run side by side in one process, flex's gradients were seen to
/// drift by ~2e-4 of their scale, so the backends run one after the other.
#[test]
fn backends_match_ndarray() {
    let (_dir, path, reference) = reference_outputs();
    let flex = run::<Autodiff<Flex>>(&path, &Default::default());
    compare(&reference, &flex, "flex");
    #[cfg(feature = "wgpu")]
    {
        use burn::backend::wgpu::{Wgpu, WgpuDevice};
        let wgpu = run::<Autodiff<Wgpu>>(&path, &WgpuDevice::default());
        compare(&reference, &wgpu, "wgpu");
    }
}
