//! The whole model against the reference implementation (scripts/reference_model_fixture.py):
//! a tiny JPM + camera/view SIE TransReID loaded from a reference-format state dict gives the
//! reference's eval features before and after the neck, every branch's training scores and
//! features, the loss, every parameter's gradient and every parameter after one SGD step.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use transreid::loss::{transreid_loss, ObjectiveConfig};
use transreid::model::{
    export_state_dict, load_reference, read_state_dict, write_safetensors, HostTensor,
    ImportOptions, JpmConfig, NeckFeat, SieConfig, SieMode, StateDict, TransReid, TransReidConfig,
    VitConfig,
};
use transreid::optim::{CosineWarmup, Sgd, SolverConfig};

mod common;
use common::{grads_by_name, B};

fn fixture() -> StateDict {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference_model.safetensors"
    );
    read_state_dict(Path::new(path)).unwrap().0
}

fn with_prefix(dict: &StateDict, prefix: &str) -> StateDict {
    dict.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
        .collect()
}

fn config(neck_feat: NeckFeat) -> TransReidConfig {
    let vit = VitConfig::new([64, 32], 64, 4, 4)
        .with_stride([8, 8])
        .with_drop_path_rate(0.0);
    TransReidConfig::new(vit, 5)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::CameraView)
                .with_camera_num(3)
                .with_view_num(2),
        )
        .with_jpm(Some(JpmConfig::new()))
        .with_neck_feat(neck_feat)
}

fn load(neck_feat: NeckFeat, weights: &StateDict, dir: &Path) -> TransReid<B> {
    let path = dir.join("reference.safetensors");
    write_safetensors(&path, weights, BTreeMap::new()).unwrap();
    let mut model = config(neck_feat).init::<B>(&Default::default());
    load_reference(&mut model, &path, ImportOptions::default()).unwrap();
    model
}

fn flat<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// `max |a - b| <= tol * max(|b|)`, the deviation relative to the tensor's scale. The scale has
/// a floor of 1e-2: the gradients of the JPM branches' final LayerNorm biases are mathematically
/// zero (the BNNeck removes the batch mean and the triplet loss is shift-invariant), and both
/// implementations return f32 noise of ~5e-8 there.
fn assert_close(got: &[f32], want: &HostTensor, tol: f32, what: &str) {
    assert_eq!(got.len(), want.data.len(), "{what}: length");
    let scale = want
        .data
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-2);
    let worst = got
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max |diff| {worst:e} > {tol:e} * {scale:e}"
    );
}

struct Inputs {
    images: Tensor<B, 4>,
    cams: Tensor<B, 1, Int>,
    views: Tensor<B, 1, Int>,
    pids: Vec<i64>,
}

fn inputs(g: &StateDict) -> Inputs {
    let device = Default::default();
    let ints = |key: &str| {
        let v: Vec<i64> = g[key].data.iter().map(|&x| x as i64).collect();
        let n = v.len();
        (
            Tensor::<B, 1, Int>::from_data(TensorData::new(v.clone(), [n]), &device),
            v,
        )
    };
    let img = &g["input.images"];
    Inputs {
        images: Tensor::from_data(
            TensorData::new(img.data.clone(), img.shape.clone()),
            &device,
        ),
        cams: ints("input.cams").0,
        views: ints("input.views").0,
        pids: ints("input.pids").1,
    }
}

#[test]
fn eval_features_before_and_after_the_neck() {
    let g = fixture();
    let weights = with_prefix(&g, "weights.");
    let dir = tempfile::tempdir().unwrap();
    let x = inputs(&g);
    for (neck, key) in [
        (NeckFeat::Before, "eval.feat_before"),
        (NeckFeat::After, "eval.feat_after"),
    ] {
        let model = load(neck, &weights, dir.path()).valid();
        let feat = model.embed(
            x.images.clone().inner(),
            Some(x.cams.clone().inner()),
            Some(x.views.clone().inner()),
        );
        assert_close(&flat(feat), &g[key], 1e-4, key);
    }
}

/// The same features from Flex without autodiff, whose inference runs its own kernels (GELU,
/// attention, Linear): against the reference, and against Flex's generic path.
#[test]
fn eval_features_on_flex_with_its_kernels() {
    use burn::backend::Flex;
    use transreid::model::{set_flex_kernels, FlexKernels};
    let g = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reference.safetensors");
    write_safetensors(&path, &with_prefix(&g, "weights."), BTreeMap::new()).unwrap();
    let device = Default::default();
    let mut model = config(NeckFeat::Before).init::<Flex>(&device);
    load_reference(&mut model, &path, ImportOptions::default()).unwrap();
    let x = inputs(&g);
    let embed = || {
        let images = Tensor::<Flex, 4>::from_data(x.images.clone().into_data(), &device);
        let cams = Tensor::<Flex, 1, Int>::from_data(x.cams.clone().into_data(), &device);
        let views = Tensor::<Flex, 1, Int>::from_data(x.views.clone().into_data(), &device);
        flat(model.embed(images, Some(cams), Some(views)))
    };
    let fast = embed();
    assert_close(&fast, &g["eval.feat_before"], 1e-4, "flex eval.feat_before");
    set_flex_kernels(FlexKernels::NONE);
    let generic = embed();
    set_flex_kernels(FlexKernels::ALL);
    let generic = HostTensor {
        shape: vec![generic.len()],
        data: generic,
    };
    assert_close(
        &fast,
        &generic,
        1e-5,
        "flex kernels against the generic path",
    );
}

#[test]
fn training_forward_loss_gradients_and_sgd_step() {
    let g = fixture();
    let weights = with_prefix(&g, "weights.");
    let dir = tempfile::tempdir().unwrap();
    let mut model = load(NeckFeat::Before, &weights, dir.path());
    let x = inputs(&g);
    let n = x.pids.len();

    let out = model.forward_train(
        x.images.clone(),
        Some(x.cams.clone()),
        Some(x.views.clone()),
    );
    for k in 0..5 {
        assert_close(
            &flat(out.scores[k].clone()),
            &g[&format!("train.scores.{k}")],
            1e-4,
            &format!("scores {k}"),
        );
        assert_close(
            &flat(out.feats[k].clone()),
            &g[&format!("train.feats.{k}")],
            1e-4,
            &format!("feats {k}"),
        );
    }
    let targets =
        Tensor::<B, 1, Int>::from_data(TensorData::new(x.pids.clone(), [n]), &Default::default());
    let loss = transreid_loss(
        &out.scores,
        &out.feats,
        targets,
        &x.pids,
        &ObjectiveConfig::default(),
    )
    .unwrap();
    let value: f32 = loss.total.clone().into_scalar();
    let want = g["train.loss"].data[0];
    assert!(
        (value - want).abs() <= 1e-5 * want.abs(),
        "loss {value} vs {want}"
    );

    let grads = GradientsParams::from_grads(loss.total.backward(), &model);
    let reference_grads = with_prefix(&g, "grad.");
    let mut compared = 0;
    for (name, grad) in &grads_by_name(&model, &grads) {
        let want = reference_grads
            .get(name)
            .unwrap_or_else(|| panic!("the reference has no gradient for {name}"));
        let got = if want.shape.len() == 2 && name.ends_with("weight") {
            HostTensor::new(vec![want.shape[1], want.shape[0]], grad.clone())
                .transposed()
                .data
        } else {
            grad.clone()
        };
        assert_close(&got, want, 1e-5, &format!("grad {name}"));
        compared += 1;
    }
    assert_eq!(
        compared,
        reference_grads.len(),
        "every reference gradient has a counterpart"
    );

    let mut sgd = Sgd::<B>::new(SolverConfig::new(0.008));
    let schedule = CosineWarmup::new(0.008, 120);
    model = sgd.step(model, grads, |group_lr| schedule.lr(1, group_lr));
    let after = export_state_dict(&model.valid());
    let reference_after = with_prefix(&g, "step.");
    for (name, want) in &reference_after {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        if name.starts_with("base.fc.") {
            // The reference's unused ImageNet head: no gradient, so the step leaves it alone.
            assert_eq!(want, &weights[name]);
            continue;
        }
        let got = after
            .get(name)
            .unwrap_or_else(|| panic!("no {name} after the step"));
        assert_close(&got.data, want, 1e-5, &format!("after step {name}"));
    }
}
