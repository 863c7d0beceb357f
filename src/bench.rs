//! Throughput of TransReID (ViT-B/16 by default) for `transreid bench train|infer`: the
//! training step of [`crate::train::train`] (forward, the TransReID objective, backward,
//! grouped SGD) on random images with PK labels, and batched embedding.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use transreid_loss::{transreid_loss, ObjectiveConfig};
use transreid_model::{
    JpmConfig, Precision, SieConfig, SieMode, TransReid, TransReidConfig, VitPreset,
};

use crate::optim::{LossScaler, Sgd, SolverConfig};

/// The benchmarked network: TransReID (JPM + camera SIE) with 751 identities and 6 cameras
/// (Market-1501's training split).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BenchModel {
    /// Backbone.
    pub backbone: VitPreset,
    /// Input `[height, width]`.
    pub size: [usize; 2],
    /// Patch stride.
    pub stride: usize,
}

impl BenchModel {
    /// ViT-B/16 at 256x128, the paper's person model.
    pub fn vit_base(stride: usize) -> Self {
        Self {
            backbone: VitPreset::VitBase16,
            size: [256, 128],
            stride,
        }
    }

    /// The model's configuration.
    pub fn config(&self) -> TransReidConfig {
        TransReidConfig::new(
            self.backbone.config(self.size, [self.stride, self.stride]),
            751,
        )
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(6),
        )
        .with_jpm(Some(JpmConfig::new()))
    }
}

/// One measured training case.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// The network.
    #[serde(flatten)]
    pub model: BenchModel,
    /// Images per step.
    pub batch: usize,
    /// Timed steps (after one warm-up step).
    pub steps: usize,
    /// Dtype of the products.
    pub precision: Precision,
    /// Training images per second.
    pub images_per_second: f64,
    /// Peak resident memory of the process so far, in MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
}

/// One measured inference case.
#[derive(Debug, Clone, Serialize)]
pub struct InferenceBench {
    /// The network.
    #[serde(flatten)]
    pub model: BenchModel,
    /// Images per forward.
    pub batch: usize,
    /// Timed forwards (after one warm-up forward).
    pub iters: usize,
    /// Dtype of the products.
    pub precision: Precision,
    /// Embedded images per second.
    pub images_per_second: f64,
    /// Peak resident memory of the process so far, in MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
}

/// Times `steps` training steps of batch `batch` (PK: 4 images per identity) after one
/// warm-up step, with the products in `precision` (f16 with loss scaling).
pub fn bench_train_step<B: AutodiffBackend>(
    network: BenchModel,
    batch: usize,
    steps: usize,
    precision: Precision,
    device: &B::Device,
) -> TrainBench {
    let [height, width] = network.size;
    let mut model = network.config().init::<B>(device).with_precision(precision);
    let mut sgd = Sgd::<B>::new(SolverConfig::new(0.008));
    sgd.set_loss_scaler(precision.needs_loss_scaling().then(LossScaler::default));
    let labels: Vec<i64> = (0..batch as i64).map(|i| i / 4).collect();
    let cams: Vec<i64> = (0..batch as i64).map(|i| i % 6).collect();
    let ints =
        |v: &[i64]| Tensor::<B, 1, Int>::from_data(TensorData::new(v.to_vec(), [batch]), device);
    let mut step = |model: TransReid<B>| {
        let images = Tensor::<B, 4>::random(
            [batch, 3, height, width],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        );
        let out = model.forward_train(images, Some(ints(&cams)), None);
        let loss = transreid_loss(
            &out.scores,
            &out.feats,
            ints(&labels),
            &labels,
            &ObjectiveConfig::default(),
        )
        .expect("PK batch");
        let grads = sgd.gradients(loss.total, &model);
        let model = sgd.step(model, grads, |lr| lr);
        // Reading one value waits for the device to finish the step.
        let _ = model.base.cls_token.val().into_data();
        model
    };
    model = step(model);
    let started = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    let seconds = started.elapsed().as_secs_f64();
    TrainBench {
        model: network,
        batch,
        steps,
        precision,
        images_per_second: (steps * batch) as f64 / seconds,
        peak_rss_mib: peak_rss_mib(),
    }
}

/// Times `iters` embeddings (JPM features before the BNNeck, as evaluation) of a batch of
/// `batch` random images after one warm-up forward, with the products in `precision`.
pub fn bench_inference<B: Backend>(
    network: BenchModel,
    batch: usize,
    iters: usize,
    precision: Precision,
    device: &B::Device,
) -> InferenceBench {
    let [height, width] = network.size;
    let model = network.config().init::<B>(device).with_precision(precision);
    let images = Tensor::<B, 4>::random(
        [batch, 3, height, width],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let cams = Tensor::<B, 1, Int>::zeros([batch], device);
    // Reading the features waits for the device.
    let run = || {
        let _ = model
            .embed(images.clone(), Some(cams.clone()), None)
            .into_data();
    };
    run();
    let started = Instant::now();
    for _ in 0..iters {
        run();
    }
    let seconds = started.elapsed().as_secs_f64();
    InferenceBench {
        model: network,
        batch,
        iters,
        precision,
        images_per_second: (iters * batch) as f64 / seconds,
        peak_rss_mib: peak_rss_mib(),
    }
}

/// `VmHWM` of `/proc/self/status`.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One measured gradient all-reduce case.
#[derive(Debug, Clone, Serialize)]
pub struct AllReduceBench {
    /// The network whose gradients are averaged.
    #[serde(flatten)]
    pub model: BenchModel,
    /// Ranks.
    pub world: usize,
    /// Trainable parameters (gradient values per step).
    pub parameters: usize,
    /// Gradient bytes each rank sends into the all-reduce per step (f32).
    pub bytes_per_step: usize,
    /// Bytes per all-reduce call.
    pub bucket_bytes: usize,
    /// Timed averages (after one warm-up).
    pub iters: usize,
    /// Seconds per averaging of one step's gradients: device to host, all-reduce, host to
    /// device.
    pub seconds_per_step: f64,
}

/// Times [`crate::distributed::average_gradients`] of a full set of `model` gradients (the
/// parameters' own values stand in for them) over the ranks of `collective`.
pub fn bench_allreduce<B: AutodiffBackend>(
    model: BenchModel,
    bucket_bytes: usize,
    iters: usize,
    collective: &dyn crate::distributed::Collective,
    device: &B::Device,
) -> Result<AllReduceBench, crate::distributed::CollectiveError> {
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    struct Values<B: AutodiffBackend> {
        grads: GradientsParams,
        count: usize,
        backend: std::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Values<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.count += value.shape().num_elements();
                self.grads.register(param.id, value.inner());
            }
        }
    }
    let network = model.config().init::<B>(device);
    let mut values = Values::<B> {
        grads: GradientsParams::new(),
        count: 0,
        backend: std::marker::PhantomData,
    };
    network.visit(&mut values);
    let mut grads = values.grads;
    grads = crate::distributed::average_gradients(grads, &network, collective, bucket_bytes)?;
    let started = Instant::now();
    for _ in 0..iters {
        grads = crate::distributed::average_gradients(grads, &network, collective, bucket_bytes)?;
    }
    let seconds_per_step = started.elapsed().as_secs_f64() / iters.max(1) as f64;
    Ok(AllReduceBench {
        model,
        world: collective.world(),
        parameters: values.count,
        bytes_per_step: 4 * values.count,
        bucket_bytes,
        iters,
        seconds_per_step,
    })
}
