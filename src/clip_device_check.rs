//! A backend's CLIP-ReID numbers against the reference implementation's: the tiny trained
//! CLIP-ReID of `crates/transreid-model/tests/fixtures/clip_reid.pth` and the outputs the
//! reference computes from it (`clip_reid.safetensors` beside it, written by
//! scripts/clip_reid_fixture.py): eval features, the text features of every identity (causal
//! text attention), both stages' losses and their gradients, in f32 (CLIP-ReID trains in f32).
//! `transreid bench check --model clip-reid` runs it.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use transreid_loss::{clip_reid_loss, supcon_loss, ClipReidObjectiveConfig};
use transreid_model::{
    load_clip_reid, read_state_dict, ClipReidConfig, ClipTextConfig, ClipVisionConfig, ImportError,
    Precision, SieConfig, SieMode,
};

use crate::device_check::{
    fixture_ids, fixture_images, fixture_tensor, grads_by_name, relative_error, tolerances, values,
    DeviceCheck, DeviceCheckError, WorstGradient,
};

/// The checkpoint beside the fixture.
pub const CLIP_REID_CHECKPOINT: &str = "clip_reid.pth";

/// The fixture's model: image tower 64x40, width 32, 12 blocks, 2 heads, patch and stride 16,
/// projection 16; camera + view SIE (3 x 2, coefficient 1.5); text tower width 64, 2 blocks;
/// 5 identities.
fn fixture_config() -> ClipReidConfig {
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

/// Runs the fixture's model on `device` in f32 and compares with the reference: the eval
/// features and the text features of every identity (`feature_error`), the stage-1 and
/// stage-2 losses (`loss_error`), the prompt vectors' stage-1 gradient and every stage-2
/// gradient the fixture holds (`gradient_error`). `fixture` is `clip_reid.safetensors`;
/// [`CLIP_REID_CHECKPOINT`] must be beside it.
pub fn check_clip_reid_device<B: AutodiffBackend>(
    fixture: &Path,
    device: &B::Device,
) -> Result<DeviceCheck, DeviceCheckError> {
    let (golden, _) = read_state_dict(fixture)?;
    let (weights, _) = read_state_dict(&fixture.with_file_name(CLIP_REID_CHECKPOINT))?;
    let get = |key: &str| fixture_tensor(&golden, key);
    let mut model = fixture_config().init::<B>(device);
    let skipped = load_clip_reid(&mut model, &weights)?;
    if !skipped.is_empty() {
        return Err(ImportError::UnexpectedKeys(skipped).into());
    }
    let float = |key: &str| -> Result<Tensor<B, 2>, DeviceCheckError> {
        let t = get(key)?;
        let [rows, cols] = t.shape[..] else {
            return Err(DeviceCheckError::Missing(format!("{key} as a matrix")));
        };
        Ok(Tensor::from_data(
            TensorData::new(t.data.clone(), [rows, cols]),
            device,
        ))
    };
    let ints = |key: &str| fixture_ids::<B>(&golden, key, device);
    let images = fixture_images::<B>(&golden, device)?;
    let (cams, _) = ints("input.cameras")?;
    let (views, _) = ints("input.views")?;
    let (targets, labels) = ints("input.labels")?;
    let classes = fixture_config().num_classes as i64;
    let every_identity = || Tensor::<B, 1, Int>::arange(0..classes, device);

    let inner = model.valid();
    let features = inner.embed(
        images.clone().inner(),
        Some(cams.clone().inner()),
        Some(views.clone().inner()),
    );
    let text = inner
        .text_features(every_identity().inner())
        .expect("the fixture's model has the text side");
    let feature_error = relative_error(&values(features), &get("eval.before")?.data)
        .max(relative_error(&values(text), &get("text.all")?.data));

    // Stage 1: the prompt vectors against the reference's image features.
    let image_features = float("stage1.image_features")?;
    let text = model
        .text_features(targets.clone())
        .expect("the fixture's model has the text side");
    let i2t = supcon_loss(image_features.clone(), text.clone(), &labels, &labels)?;
    let t2i = supcon_loss(text, image_features, &labels, &labels)?;
    let stage1 = i2t + t2i;
    let want1 = get("stage1.i2t")?.data[0] + get("stage1.t2i")?.data[0];
    let got1 = values(stage1.clone())[0];
    let grads = stage1.backward();
    let mut worst = WorstGradient::default();
    let learner = model
        .prompt_learner
        .as_ref()
        .expect("the fixture's model has the text side");
    let cls_ctx = learner.cls_ctx.grad(&grads).map_or_else(Vec::new, values);
    worst.compare(
        "prompt_learner.cls_ctx".into(),
        cls_ctx,
        get("stage1.grad.cls_ctx")?,
    );

    // Stage 2: the image side in training mode against the text features of every identity.
    let text_all = model
        .text_features(every_identity())
        .expect("the fixture's model has the text side")
        .detach();
    let out = model.forward_train(images, Some(cams), Some(views));
    let logits = out.feats[2].clone().matmul(text_all.transpose());
    let loss = clip_reid_loss(
        &out.scores,
        &out.feats,
        Some(logits),
        targets,
        &labels,
        &ClipReidObjectiveConfig::default(),
    )?;
    let want2 = get("stage2.loss")?.data[0];
    let got2 = values(loss.total.clone())[0];
    let loss_error =
        f64::from(((got1 - want1) / want1).abs()).max(f64::from(((got2 - want2) / want2).abs()));
    let grads = GradientsParams::from_grads(loss.total.backward(), &model);
    for (name, grad) in grads_by_name(&model, &grads) {
        if let Some(want) = golden.get(&format!("stage2.grad.{name}")) {
            worst.compare(name, grad, want);
        }
    }
    let reference_gradients = 1 + golden
        .keys()
        .filter(|k| k.starts_with("stage2.grad."))
        .count();
    let precision = Precision::F32;
    let (tolerance, gradient_tolerance) = tolerances(precision);
    let passed = worst.compared == reference_gradients
        && feature_error <= tolerance
        && loss_error <= tolerance
        && worst.error <= gradient_tolerance;
    Ok(DeviceCheck {
        precision,
        feature_error,
        loss_error,
        gradient_error: worst.error,
        worst_gradient: worst.name,
        gradients: worst.compared,
        tolerance,
        gradient_tolerance,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_matches_the_reference() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/transreid-model/tests/fixtures/clip_reid.safetensors");
        let check = check_clip_reid_device::<B>(&fixture, &Default::default()).unwrap();
        assert!(check.passed, "{check:?}");
        assert!(check.gradients >= 10, "{check:?}");
    }
}
