//! The training loop: PK batches, the TransReID objective, SGD with the reference's groups and
//! the per-epoch schedule, periodic evaluation, metrics CSV and atomic checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use transreid_data::{
    EvalLoader, LoaderConfig, ReidDataset, TestTransform, TrainLoader, TrainTransform,
    TransformConfig,
};
use transreid_eval::{EvalConfig, ReidMetrics};
use transreid_loss::{transreid_loss, ObjectiveConfig};
use transreid_model::{save_checkpoint, TransReid, TransReidConfig};

use crate::inference::{evaluate_model, InferenceError};
use crate::optim::{CosineWarmup, Sgd, SolverConfig};

/// Settings of a training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Epochs (`SOLVER.MAX_EPOCHS`).
    pub epochs: usize,
    /// Images per batch (`SOLVER.IMS_PER_BATCH`).
    pub batch_size: usize,
    /// Images per identity in a batch (`DATALOADER.NUM_INSTANCE`).
    pub instances: usize,
    /// Optimiser.
    pub solver: SolverConfig,
    /// Warmup epochs of the schedule.
    pub warmup_epochs: usize,
    /// Loss settings.
    pub objective: ObjectiveConfig,
    /// Evaluate every this many epochs (and after the last).
    pub eval_period: usize,
    /// Seed of sampling and augmentation.
    pub seed: u64,
    /// Loader worker threads.
    pub workers: usize,
}

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading data or evaluating failed.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// A data error.
    #[error(transparent)]
    Data(#[from] transreid_data::DataError),
    /// A batch the losses cannot use.
    #[error(transparent)]
    Loss(#[from] transreid_loss::LossError),
    /// Writing the run folder failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint could not be written.
    #[error(transparent)]
    Checkpoint(#[from] transreid_model::ImportError),
    /// The loss became NaN or infinite; the last checkpoint is kept.
    #[error("non-finite loss {loss} at epoch {epoch}, iteration {iteration}: stopped, last good checkpoint kept")]
    NonFiniteLoss {
        /// Epoch (1-based).
        epoch: usize,
        /// Iteration in the epoch.
        iteration: usize,
        /// The loss value.
        loss: f32,
    },
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean total loss.
    pub loss: f64,
    /// Training accuracy of the global branch.
    pub accuracy: f64,
    /// Weight-group lr of the epoch.
    pub lr: f64,
    /// Images per second.
    pub images_per_second: f64,
    /// Evaluation, when the epoch was evaluated.
    pub metrics: Option<ReidMetrics>,
}

/// Trains `model` on `dataset.train`, evaluating on query / gallery; writes `metrics.csv` and
/// `checkpoint.safetensors` (atomically) to `run_dir`.
pub fn train<B: AutodiffBackend>(
    mut model: TransReid<B>,
    model_config: &TransReidConfig,
    dataset: &ReidDataset,
    transforms: &TransformConfig,
    settings: &TrainSettings,
    run_dir: &Path,
    device: &B::Device,
) -> Result<(TransReid<B>, Vec<EpochRecord>), TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let loader_config = LoaderConfig {
        workers: settings.workers,
        prefetch: 4,
        seed: settings.seed,
    };
    let train_loader = TrainLoader::from_dataset(
        dataset,
        settings.batch_size,
        settings.instances,
        TrainTransform::new(transforms)?,
        loader_config.clone(),
    )?;
    let eval_loader =
        EvalLoader::from_dataset(dataset, TestTransform::new(transforms)?, 64, loader_config)?;
    let schedule = CosineWarmup {
        warmup_epochs: settings.warmup_epochs,
        ..CosineWarmup::new(settings.solver.base_lr, settings.epochs)
    };
    let mut sgd = Sgd::<B>::new(settings.solver);
    let csv_path = run_dir.join("metrics.csv");
    let mut csv = std::fs::File::create(&csv_path).map_err(io(&csv_path))?;
    writeln!(
        csv,
        "epoch,loss,accuracy,lr,images_per_second,map,minp,rank1,rank5,rank10"
    )
    .map_err(io(&csv_path))?;
    let checkpoint = run_dir.join("checkpoint.safetensors");
    let mut records = Vec::new();

    for epoch in 1..=settings.epochs {
        let bar = ProgressBar::new(train_loader.batches_in_epoch(epoch as u64) as u64).with_style(
            ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut iterations) =
            (0.0f64, 0usize, 0usize, 0usize);
        for batch in train_loader.epoch(epoch as u64) {
            let batch = batch?;
            let [n, c, h, w] = batch.shape;
            let labels: Vec<i64> = batch.pids.iter().map(|&p| p as i64).collect();
            let ints =
                |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device);
            let images =
                Tensor::<B, 4>::from_data(TensorData::new(batch.images, [n, c, h, w]), device);
            let cams = ints(batch.camids.iter().map(|&c| c as i64).collect());
            let views = ints(batch.viewids.iter().map(|&v| v as i64).collect());
            let targets = ints(labels.clone());
            let out = model.forward_train(images, Some(cams), Some(views));
            let loss = transreid_loss(
                &out.scores,
                &out.feats,
                targets.clone(),
                &labels,
                &settings.objective,
            )?;
            let value: f32 = loss.total.clone().into_scalar().elem();
            if !value.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    epoch,
                    iteration: iterations,
                    loss: value,
                });
            }
            let hits: i64 = out.scores[0]
                .clone()
                .argmax(1)
                .reshape([n])
                .equal(targets)
                .int()
                .sum()
                .into_scalar()
                .elem();
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            model = sgd.step(model, grads, |group_lr| schedule.lr(epoch, group_lr));
            loss_sum += value as f64;
            correct += hits as usize;
            seen += n;
            iterations += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4}  acc {:.3}  lr {:.2e}  {:.0} img/s",
                loss_sum / iterations as f64,
                correct as f64 / seen as f64,
                schedule.lr(epoch, settings.solver.base_lr),
                seen as f64 / started.elapsed().as_secs_f64()
            ));
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let metrics = if epoch % settings.eval_period.max(1) == 0 || epoch == settings.epochs {
            Some(evaluate_model(
                &model.valid(),
                &eval_loader,
                device,
                &EvalConfig::default(),
            )?)
        } else {
            None
        };
        let record = EpochRecord {
            epoch,
            loss: loss_sum / iterations.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            lr: schedule.lr(epoch, settings.solver.base_lr),
            images_per_second: seen as f64 / seconds,
            metrics,
        };
        let m = record.metrics.as_ref();
        let metric =
            |f: &dyn Fn(&ReidMetrics) -> f64| m.map_or(String::new(), |m| format!("{:.6}", f(m)));
        writeln!(
            csv,
            "{},{:.6},{:.6},{:.8},{:.1},{},{},{},{},{}",
            record.epoch,
            record.loss,
            record.accuracy,
            record.lr,
            record.images_per_second,
            metric(&|m| m.map),
            metric(&|m| m.minp),
            metric(&|m| m.rank1().unwrap_or(0.0)),
            metric(&|m| m.rank5().unwrap_or(0.0)),
            metric(&|m| m.rank10().unwrap_or(0.0)),
        )
        .map_err(io(&csv_path))?;
        println!(
            "epoch {epoch:>3}  loss {:.4}  acc {:.3}  lr {:.2e}  {:.0} img/s{}",
            record.loss,
            record.accuracy,
            record.lr,
            record.images_per_second,
            m.map_or(String::new(), |m| format!(
                "  mAP {:.1}%  Rank-1 {:.1}%",
                m.map * 100.0,
                m.rank1().unwrap_or(0.0) * 100.0
            ))
        );
        records.push(record);
        save_checkpoint(&model.valid(), model_config, &checkpoint)?;
    }
    Ok((model, records))
}
