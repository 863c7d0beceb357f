//! The optimiser step and the schedule against the reference's formulas and outputs.

use std::collections::HashMap;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use transreid::optim::{CosineWarmup, LossScaler, Sgd, SolverConfig};
use transreid_model::{
    export_state_dict, read_state_dict, JpmConfig, StateDict, TransReid, TransReidConfig, VitPreset,
};

mod common;
use common::{batch_loss, batch_model_config, grads_by_name, B};

#[test]
fn schedule_matches_the_reference_for_every_epoch() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lr_schedule.safetensors"
    );
    let (golden, _) = read_state_dict(std::path::Path::new(path)).unwrap();
    for base in [0.008, 0.01] {
        let schedule = CosineWarmup::new(base, 120);
        for (group, factor) in [("weight", 1.0), ("bias", 2.0)] {
            let want = &golden[&format!("base_lr_{base}.{group}")].data;
            assert_eq!(want.len(), 121);
            for (epoch, w) in want.iter().enumerate() {
                let got = schedule.lr(epoch, base * factor) as f32;
                assert!(
                    (got - w).abs() <= 1e-7 * w.abs().max(1e-3),
                    "{base} {group} epoch {epoch}: {got} vs {w}"
                );
            }
        }
    }
}

/// Gradients of the TransReID loss times `scale` on a fixed batch.
fn scaled_grads_of(model: &TransReid<B>, step: usize, scale: f64) -> GradientsParams {
    GradientsParams::from_grads(batch_loss(model, step).mul_scalar(scale).backward(), model)
}

fn grads_of(model: &TransReid<B>, step: usize) -> GradientsParams {
    scaled_grads_of(model, step, 1.0)
}

#[test]
fn sgd_steps_move_every_parameter_by_the_formula() {
    let device = Default::default();
    let config = batch_model_config(0.0, true);
    let mut model = config.init::<B>(&device);
    let solver = SolverConfig::new(0.008);
    let schedule = CosineWarmup::new(0.008, 120);
    let mut sgd = Sgd::<B>::new(solver);
    let mut buffers: HashMap<String, Vec<f32>> = HashMap::new();

    for step in 0..2 {
        let before: StateDict = export_state_dict(&model.valid());
        let grads = grads_of(&model, step);
        let by_name = grads_by_name(&model, &grads);
        model = sgd.step(model, grads, |group_lr| schedule.lr(1, group_lr));
        let after = export_state_dict(&model.valid());

        for (name, old) in &before {
            let new = &after[name];
            let Some(grad) = by_name.get(name) else {
                if !name.contains("running") {
                    assert_eq!(old, new, "{name} has no gradient and must not move");
                }
                continue;
            };
            let group = solver.group(name);
            let lr = schedule.lr(1, group.lr) as f32;
            // Linear weights are exported transposed; the gradient is in Burn's layout.
            let transposed = name.ends_with("weight") && old.shape.len() == 2;
            let (old_v, new_v) = if transposed {
                (old.transposed().data, new.transposed().data)
            } else {
                (old.data.clone(), new.data.clone())
            };
            let buf: Vec<f32> = grad
                .iter()
                .zip(&old_v)
                .enumerate()
                .map(|(i, (g, p))| {
                    let d = g + group.weight_decay as f32 * p;
                    buffers.get(name).map_or(d, |b| 0.9 * b[i] + d)
                })
                .collect();
            for i in 0..old_v.len() {
                let want = old_v[i] - lr * buf[i];
                assert!(
                    (new_v[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name}[{i}] step {step}: {} vs {want}",
                    new_v[i]
                );
            }
            buffers.insert(name.clone(), buf);
        }
        for frozen in [
            "bottleneck.bias",
            "bottleneck_2.bias",
            "base.blocks.3.attn.qkv.weight",
            "base.norm.weight",
        ] {
            assert_eq!(before[frozen], after[frozen], "{frozen}");
            assert!(!by_name.contains_key(frozen));
        }
        assert!(by_name.contains_key("base.blocks.0.attn.qkv.bias"));
        assert_ne!(before["classifier_3.weight"], after["classifier_3.weight"]);
    }
}

#[test]
fn parameter_groups_follow_the_names() {
    let solver = SolverConfig::new(0.008);
    assert_eq!(solver.group("base.blocks.0.attn.qkv.bias").lr, 0.016);
    assert_eq!(solver.group("b1.1.bias").lr, 0.016);
    assert_eq!(solver.group("base.pos_embed").lr, 0.008);
    assert_eq!(solver.group("classifier_1.weight").lr, 0.008);
    let large = SolverConfig {
        large_fc_lr: true,
        ..solver
    };
    assert_eq!(large.group("classifier_1.weight").lr, 0.016);
}

#[test]
fn gradient_clipping_scales_to_the_global_norm() {
    let device = Default::default();
    let vit = VitPreset::Tiny
        .config([64, 32], [16, 16])
        .with_drop_path_rate(0.0);
    let config = TransReidConfig::new(vit, 4).with_jpm(Some(JpmConfig::new()));
    let model = config.init::<B>(&device);
    let grads = grads_of(&model, 0);
    let collected = grads_by_name(&model, &grads);
    let norm: f64 = collected
        .values()
        .flatten()
        .map(|g| (*g as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let max_norm = norm / 4.0;
    let before = export_state_dict(&model.valid());
    // Without momentum history or weight decay, the step is -lr * g * max_norm / norm.
    let solver = SolverConfig {
        grad_clip_norm: Some(max_norm),
        weight_decay: 0.0,
        weight_decay_bias: 0.0,
        ..SolverConfig::new(0.1)
    };
    let mut sgd = Sgd::<B>::new(solver);
    let model = sgd.step(model, grads, |lr| lr);
    let after = export_state_dict(&model.valid());
    let name = "base.pos_embed";
    let grad = &collected[name];
    for (i, &g) in grad.iter().enumerate() {
        let want = before[name].data[i] - (0.1 * g as f64 * max_norm / norm) as f32;
        assert!((after[name].data[i] - want).abs() < 1e-6, "{i}");
    }
}

#[test]
fn momentum_state_round_trips() {
    let device = Default::default();
    let vit = VitPreset::Tiny
        .config([64, 32], [16, 16])
        .with_drop_path_rate(0.0);
    let model = TransReidConfig::new(vit, 4)
        .with_jpm(Some(JpmConfig::new()))
        .init::<B>(&device);
    let mut sgd = Sgd::<B>::new(SolverConfig::new(0.008));
    let grads = grads_of(&model, 0);
    let _ = sgd.step(model, grads, |lr| lr);
    let state = sgd.state();
    assert!(state.contains_key("base.pos_embed") && !state.contains_key("bottleneck.bias"));
    let mut restored = Sgd::<B>::new(SolverConfig::new(0.008));
    restored.load_state(&state, &device);
    assert_eq!(restored.state(), state);
}

fn small_model() -> TransReid<B> {
    batch_model_config(0.0, false).init::<B>(&Default::default())
}

#[test]
fn a_scaled_loss_steps_exactly_like_the_unscaled_one() {
    let model = small_model();
    let solver = SolverConfig {
        grad_clip_norm: Some(0.5),
        ..SolverConfig::new(0.008)
    };
    let mut plain = Sgd::<B>::new(solver);
    let want = plain.step(model.clone(), grads_of(&model, 0), |lr| lr);
    let mut scaled = Sgd::<B>::new(solver);
    scaled.set_loss_scaler(Some(LossScaler {
        scale: 1024.0,
        ..LossScaler::default()
    }));
    let grads = scaled_grads_of(&model, 0, scaled.loss_scale());
    let got = scaled.step(model, grads, |lr| lr);
    // A power-of-two scale is exact in floating point, so the two steps agree to rounding.
    let (want, got) = (
        export_state_dict(&want.valid()),
        export_state_dict(&got.valid()),
    );
    for (name, w) in &want {
        for (i, (a, b)) in got[name].data.iter().zip(&w.data).enumerate() {
            assert!(
                (a - b).abs() <= 1e-7 * (1.0 + b.abs()),
                "{name}[{i}]: {a} vs {b}"
            );
        }
    }
    assert_eq!(plain.state(), scaled.state(), "same momentum");
    assert_eq!(scaled.loss_scaler().unwrap().good_steps, 1);
}

#[test]
fn overflowing_gradients_skip_the_step_and_halve_the_scale() {
    let model = small_model();
    let learnable = |model: &TransReid<B>| -> StateDict {
        let mut dict = export_state_dict(&model.valid());
        dict.retain(|name, _| !name.contains("running"));
        dict
    };
    let before = learnable(&model);
    let mut sgd = Sgd::<B>::new(SolverConfig::new(0.008));
    // Beyond f32's range: the scaled loss and its gradients are infinite.
    sgd.set_loss_scaler(Some(LossScaler {
        scale: 1e39,
        ..LossScaler::default()
    }));
    let grads = scaled_grads_of(&model, 0, sgd.loss_scale());
    let model = sgd.step(model, grads, |lr| lr);
    // (The forward pass itself moves the BNNeck running statistics.)
    assert!(learnable(&model) == before, "weights untouched");
    assert!(sgd.state().is_empty(), "no momentum from a skipped step");
    let scaler = sgd.loss_scaler().unwrap();
    assert_eq!((scaler.scale, scaler.skipped_steps), (5e38, 1));
}
