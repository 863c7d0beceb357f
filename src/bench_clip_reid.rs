//! Throughput of CLIP-ReID's two stages (ViT-B/16, `transreid bench clip-reid`): a stage-1 step
//! (the text features of a batch's prompts, SupCon both ways, Adam on the prompt vectors) and
//! a stage-2 step (forward, the stage-2 objective against fixed text features, backward, Adam
//! with the reference's groups) on random inputs.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use serde::Serialize;
use transreid_loss::{supcon_loss, ClipReidObjectiveConfig};
use transreid_model::{
    ClipReid, ClipReidConfig, ClipTextConfig, ClipVisionConfig, SieConfig, SieMode,
};

use crate::bench::peak_rss_mib;
use crate::optim::{Adam, SolverConfig};
use crate::train::{TrainBatch, Trainee};

/// The benchmarked CLIP-ReID: ViT-B/16 image and text towers, camera SIE, Market-1501's 751
/// identities and 6 cameras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClipReidBenchModel {
    /// Image `[height, width]`.
    pub size: [usize; 2],
    /// Patch stride.
    pub stride: usize,
    /// Identities.
    pub classes: usize,
}

impl ClipReidBenchModel {
    /// The network.
    pub fn config(&self) -> ClipReidConfig {
        let stride = [self.stride; 2];
        ClipReidConfig::new(
            ClipVisionConfig::vit_base16(self.size, stride),
            self.classes,
        )
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(6)
                .with_coefficient(1.0),
        )
        .with_text(Some(ClipTextConfig::vit_base16()))
    }
}

/// One measured stage.
#[derive(Debug, Clone, Serialize)]
pub struct ClipReidBench {
    /// The network.
    #[serde(flatten)]
    pub model: ClipReidBenchModel,
    /// `prompts` (stage 1) or `images` (stage 2).
    #[serde(rename = "training_stage")]
    pub stage: &'static str,
    /// Samples per step (image features in stage 1, images in stage 2).
    pub batch: usize,
    /// Timed steps (after one warm-up step).
    pub steps: usize,
    /// Seconds per step.
    pub seconds_per_step: f64,
    /// Peak resident memory of the process so far, in MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
}

/// Times `steps` stage-1 steps of `batch` image features (random identities) after a warm-up.
pub fn bench_clip_reid_prompts<B: AutodiffBackend>(
    network: ClipReidBenchModel,
    batch: usize,
    steps: usize,
    device: &B::Device,
) -> ClipReidBench {
    let mut model = network.config().init::<B>(device);
    model.text_encoder = model.text_encoder.map(|t| t.no_grad());
    let out = network.config().vision.output_dim;
    let mut adam = Adam::<B>::new(SolverConfig {
        weight_decay: 1e-4,
        weight_decay_bias: 1e-4,
        ..SolverConfig::new(3.5e-4)
    });
    let labels: Vec<i64> = (0..batch as i64)
        .map(|i| (i * 37) % network.classes as i64)
        .collect();
    let step = |model: ClipReid<B>| {
        let images = Tensor::<B, 2>::random([batch, out], Distribution::Normal(0.0, 1.0), device);
        let targets = Tensor::from_data(TensorData::new(labels.clone(), [batch]), device);
        let text = model.text_features(targets).expect("the text side");
        let loss = supcon_loss(images.clone(), text.clone(), &labels, &labels).expect("batch")
            + supcon_loss(text, images, &labels, &labels).expect("batch");
        let grads = adam.gradients(loss, &model);
        let model = adam.step(model, grads, |lr| lr);
        let learner = model.prompt_learner.as_ref().expect("the text side");
        let _ = learner.cls_ctx.val().slice([0..1, 0..1, 0..1]).into_data();
        model
    };
    time_steps(network, "prompts", batch, steps, model, step)
}

/// Times `steps` stage-2 steps of `batch` random images (PK: 4 per identity) after a warm-up.
pub fn bench_clip_reid_images<B: AutodiffBackend>(
    network: ClipReidBenchModel,
    batch: usize,
    steps: usize,
    device: &B::Device,
) -> ClipReidBench {
    let model = network.config().init::<B>(device);
    let [height, width] = network.size;
    let text = model.fixed(64);
    let mut adam = Adam::<B>::new(SolverConfig {
        weight_decay: 1e-4,
        weight_decay_bias: 1e-4,
        bias_lr_factor: 2.0,
        ..SolverConfig::new(5e-6)
    });
    let labels: Vec<i64> = (0..batch as i64).map(|i| i / 4).collect();
    let cams: Vec<i64> = (0..batch as i64).map(|i| i % 6).collect();
    let ints =
        |v: &[i64]| Tensor::<B, 1, Int>::from_data(TensorData::new(v.to_vec(), [batch]), device);
    let objective = ClipReidObjectiveConfig::default();
    let step = |model: ClipReid<B>| {
        let images = Tensor::<B, 4>::random(
            [batch, 3, height, width],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let batch = TrainBatch {
            images,
            cameras: ints(&cams),
            views: ints(&cams),
            targets: ints(&labels),
            labels: labels.clone(),
        };
        let loss = model.loss(batch, &objective, &text).expect("PK batch");
        let grads = adam.gradients(loss.total, &model);
        let model = adam.step(model, grads, |lr| lr);
        let _ = model.image_encoder.class_embedding.val().into_data();
        model
    };
    time_steps(network, "images", batch, steps, model, step)
}

fn time_steps<B: AutodiffBackend>(
    network: ClipReidBenchModel,
    stage: &'static str,
    batch: usize,
    steps: usize,
    model: ClipReid<B>,
    mut step: impl FnMut(ClipReid<B>) -> ClipReid<B>,
) -> ClipReidBench {
    let mut model = step(model);
    let started = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    let seconds = started.elapsed().as_secs_f64();
    ClipReidBench {
        model: network,
        stage,
        batch,
        steps,
        seconds_per_step: seconds / steps.max(1) as f64,
        peak_rss_mib: peak_rss_mib(),
    }
}
