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

mod clip_reid {
    //! CLIP-ReID's optimisers and schedules against the reference
    //! (`scripts/clip_reid_fixture.py`, on the model of the model crate's `clip_reid.pth`).

    use std::path::{Path, PathBuf};

    use burn::module::ParamId;
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use burn::tensor::backend::AutodiffBackend;
    use transreid::optim::{Adam, CosineWarmup, SolverConfig, WarmupMultiStep};
    use transreid_loss::{clip_reid_loss, supcon_loss, ClipReidObjectiveConfig};
    use transreid_model::{
        load_clip_reid, read_state_dict, ClipReid, ClipReidConfig, ClipTextConfig,
        ClipVisionConfig, HostTensor, SieConfig, SieMode, StateDict,
    };

    use super::B;

    fn read(path: &str) -> StateDict {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        read_state_dict(&root.join(Path::new(path))).unwrap().0
    }

    fn loaded_model() -> ClipReid<B> {
        let config = ClipReidConfig::new(ClipVisionConfig::new([64, 40], 32, 12, 2, 16), 5)
            .with_sie(
                SieConfig::new()
                    .with_mode(SieMode::CameraView)
                    .with_camera_num(3)
                    .with_view_num(2)
                    .with_coefficient(1.5),
            )
            .with_text(Some(ClipTextConfig::new(64, 2, 2, 16)));
        let mut model = config.init(&Default::default());
        let checkpoint = read("crates/transreid-model/tests/fixtures/clip_reid.pth");
        load_clip_reid(&mut model, &checkpoint).unwrap();
        model
    }

    fn tensor<const D: usize>(t: &HostTensor) -> Tensor<B, D> {
        Tensor::from_data(
            TensorData::new(t.data.clone(), t.shape.clone()),
            &Default::default(),
        )
    }

    fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// Within `tolerance` of the largest change: each step moves a parameter by about the lr.
    fn assert_delta(
        before: &[f32],
        after: &[f32],
        expected: &HostTensor,
        tolerance: f32,
        what: &str,
    ) {
        let scale = expected.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{what}: the reference did not move it");
        let worst = before
            .iter()
            .zip(after)
            .zip(&expected.data)
            .map(|((b, a), e)| ((a - b) - e).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= tolerance * scale, "{what}: {worst} of {scale}");
    }

    type Inner = <B as AutodiffBackend>::InnerBackend;

    /// The compared parameters of stage 2 by reference name, in Burn's layout.
    fn stage2_params(m: &ClipReid<B>) -> Vec<(&'static str, Vec<f32>)> {
        let e = &m.image_encoder;
        vec![
            ("image_encoder.conv1.weight", values(e.conv1.weight.val())),
            (
                "image_encoder.class_embedding",
                values(e.class_embedding.val()),
            ),
            (
                "image_encoder.ln_pre.bias",
                values(e.ln_pre.beta.as_ref().unwrap().val()),
            ),
            (
                "image_encoder.transformer.resblocks.11.attn.in_proj_bias",
                values(e.blocks[11].attn.qkv.bias.as_ref().unwrap().val()),
            ),
            (
                "image_encoder.transformer.resblocks.3.mlp.c_fc.weight",
                values(e.blocks[3].mlp.fc1.weight.val().transpose()),
            ),
            ("image_encoder.proj", values(e.proj.val())),
            ("cv_embed", values(m.cv_embed.as_ref().unwrap().val())),
            ("bottleneck.weight", values(m.bottleneck.weight.val())),
            (
                "classifier.weight",
                values(m.classifier.weight.val().transpose()),
            ),
        ]
    }

    /// Name, id, Burn shape, and whether PyTorch stores the transpose, of the same parameters.
    fn stage2_ids(m: &ClipReid<B>) -> Vec<(&'static str, ParamId, Vec<usize>, bool)> {
        let e = &m.image_encoder;
        let linear = |w: &burn::module::Param<Tensor<B, 2>>| (w.id, w.dims().to_vec(), true);
        let [fc, cls] = [
            linear(&e.blocks[3].mlp.fc1.weight),
            linear(&m.classifier.weight),
        ];
        vec![
            (
                "image_encoder.conv1.weight",
                e.conv1.weight.id,
                e.conv1.weight.dims().to_vec(),
                false,
            ),
            (
                "image_encoder.class_embedding",
                e.class_embedding.id,
                e.class_embedding.dims().to_vec(),
                false,
            ),
            {
                let b = e.ln_pre.beta.as_ref().unwrap();
                ("image_encoder.ln_pre.bias", b.id, b.dims().to_vec(), false)
            },
            {
                let b = e.blocks[11].attn.qkv.bias.as_ref().unwrap();
                (
                    "image_encoder.transformer.resblocks.11.attn.in_proj_bias",
                    b.id,
                    b.dims().to_vec(),
                    false,
                )
            },
            (
                "image_encoder.transformer.resblocks.3.mlp.c_fc.weight",
                fc.0,
                fc.1,
                fc.2,
            ),
            (
                "image_encoder.proj",
                e.proj.id,
                e.proj.dims().to_vec(),
                false,
            ),
            {
                let c = m.cv_embed.as_ref().unwrap();
                ("cv_embed", c.id, c.dims().to_vec(), false)
            },
            (
                "bottleneck.weight",
                m.bottleneck.weight.id,
                m.bottleneck.weight.dims().to_vec(),
                false,
            ),
            ("classifier.weight", cls.0, cls.1, cls.2),
        ]
    }

    /// Registers a flat gradient under `id` with the parameter's rank.
    fn register(grads: &mut GradientsParams, id: ParamId, g: Tensor<Inner, 1>, shape: &[usize]) {
        match shape.len() {
            1 => grads.register(id, g),
            2 => grads.register(id, g.reshape([shape[0], shape[1]])),
            3 => grads.register(id, g.reshape([shape[0], shape[1], shape[2]])),
            4 => grads.register(id, g.reshape([shape[0], shape[1], shape[2], shape[3]])),
            rank => panic!("no parameter of rank {rank} here"),
        }
    }

    fn solver() -> SolverConfig {
        SolverConfig {
            weight_decay: 1e-4,
            weight_decay_bias: 1e-4,
            bias_lr_factor: 2.0,
            ..SolverConfig::new(1e-3)
        }
    }

    #[test]
    fn schedules_match_the_reference_for_every_epoch() {
        let golden = read("tests/fixtures/clip_reid_optim.safetensors");
        let close = |got: f64, want: f32, what: &str| {
            assert!(
                (got as f32 - want).abs() <= 1e-6 * want.abs(),
                "{what}: {got} against {want}"
            )
        };
        let prompts = CosineWarmup::clip_reid_prompts(3.5e-4, 120);
        let stage1 = &golden["schedule.stage1"].data;
        assert_eq!(stage1.len(), 121);
        for (epoch, &want) in stage1.iter().enumerate() {
            close(
                prompts.lr(epoch, 3.5e-4),
                want,
                &format!("stage 1, epoch {epoch}"),
            );
        }
        let images = WarmupMultiStep::clip_reid();
        let stage2 = &golden["schedule.stage2"].data;
        assert_eq!(stage2.len(), 61 * 2);
        for (epoch, pair) in stage2.chunks(2).enumerate() {
            close(
                images.lr(epoch, 5e-6),
                pair[0],
                &format!("stage 2, epoch {epoch}"),
            );
            close(
                images.lr(epoch, 1e-5),
                pair[1],
                &format!("stage 2 bias, epoch {epoch}"),
            );
        }
    }

    #[test]
    fn adam_steps_of_both_stages_match_the_reference() {
        let golden = read("tests/fixtures/clip_reid_optim.safetensors");
        let inputs = read("crates/transreid-model/tests/fixtures/clip_reid.safetensors");
        let labels: Vec<i64> = inputs["input.labels"]
            .data
            .iter()
            .map(|&v| v as i64)
            .collect();
        let targets = || Tensor::<B, 1, Int>::from_data(labels.as_slice(), &Default::default());

        // Stage 1: the prompt vectors learn against fixed image features, the text encoder is
        // frozen.
        let mut model = loaded_model();
        model.text_encoder = model.text_encoder.map(|t| t.no_grad());
        let text_before = values(model.text_encoder.as_ref().unwrap().ln_final.gamma.val());
        let prompts = |m: &ClipReid<B>| values(m.prompt_learner.as_ref().unwrap().cls_ctx.val());
        let before = prompts(&model);
        let image_features = tensor::<2>(&inputs["stage1.image_features"]);
        let mut adam = Adam::<B>::new(solver());
        for _ in 0..2 {
            let text = model.text_features(targets()).unwrap();
            let loss = supcon_loss(image_features.clone(), text.clone(), &labels, &labels).unwrap()
                + supcon_loss(text, image_features.clone(), &labels, &labels).unwrap();
            let grads = adam.gradients(loss, &model);
            model = adam.step(model, grads, |lr| lr);
        }
        assert_delta(
            &before,
            &prompts(&model),
            &golden["stage1.delta.prompt_learner.cls_ctx"],
            1e-3,
            "stage 1: prompt vectors",
        );
        let text_after = values(model.text_encoder.as_ref().unwrap().ln_final.gamma.val());
        assert_eq!(
            text_before, text_after,
            "stage 1 leaves the text encoder alone"
        );

        // Stage 2: the image side learns against fixed text features. Adam's second step
        // divides by gradients that can nearly cancel (and the key bias's gradient is zero up
        // to rounding), so its arithmetic is checked on the reference's own gradients, and the
        // real run for which parameters move.
        let text_all = tensor::<2>(&inputs["text.all"]);
        let cams = tensor::<1>(&inputs["input.cameras"]).int();
        let views = tensor::<1>(&inputs["input.views"]).int();
        let images = tensor::<4>(&inputs["input.images"]);
        let mut model = loaded_model();
        let before = stage2_params(&model);
        let mut adam = Adam::<B>::new(solver());
        for step in 0..2 {
            let mut grads = GradientsParams::new();
            for (name, id, shape, torch_layout) in stage2_ids(&model) {
                let g = &golden[&format!("stage2.grad{step}.{name}")];
                let mut g = Tensor::<Inner, 1>::from_data(g.data.as_slice(), &Default::default());
                if torch_layout {
                    g = g.reshape([shape[1], shape[0]]).transpose().reshape([-1]);
                }
                register(&mut grads, id, g, &shape);
            }
            model = adam.step(model, grads, |lr| lr);
        }
        for ((name, b), (_, a)) in before.iter().zip(stage2_params(&model)) {
            let expected = &golden[&format!("stage2.delta.{name}")];
            assert_delta(b, &a, expected, 1e-4, name);
        }

        let mut model = loaded_model();
        let frozen_bias = values(model.bottleneck.bias.val());
        let prompts_before = prompts(&model);
        let mut adam = Adam::<B>::new(solver());
        for _ in 0..2 {
            let out = model.forward_train(images.clone(), Some(cams.clone()), Some(views.clone()));
            let logits = out.feats[2].clone().matmul(text_all.clone().transpose());
            let loss = clip_reid_loss(
                &out.scores,
                &out.feats,
                Some(logits),
                targets(),
                &labels,
                &ClipReidObjectiveConfig::default(),
            )
            .unwrap();
            let grads = adam.gradients(loss.total, &model);
            model = adam.step(model, grads, |lr| lr);
        }
        for ((name, b), (_, a)) in before.iter().zip(stage2_params(&model)) {
            assert!(b.iter().zip(&a).any(|(b, a)| b != a), "{name} did not move");
        }
        assert_eq!(
            prompts_before,
            prompts(&model),
            "stage 2 leaves the prompts"
        );
        assert_eq!(frozen_bias, values(model.bottleneck.bias.val()));
        // Moments are kept per reference name, for checkpoints.
        let state = adam.state();
        assert_eq!(state["image_encoder.proj.step"].data, [2.0]);
        let mut restored = Adam::<B>::new(solver());
        assert!(restored.load_state(&state, &Default::default()).is_empty());
        assert_eq!(restored.state(), state);
    }
}
