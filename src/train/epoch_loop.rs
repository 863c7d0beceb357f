//! The epoch loop shared by every method: PK batches, the model's objective, the optimiser
//! step under the per-epoch schedule, data parallelism, periodic evaluation, metrics CSV,
//! plots, atomic checkpoints and an exact resume.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use transreid_data::{
    derive_seed, EvalLoader, LoaderConfig, RngPurpose, TestTransform, TrainLoader, TrainTransform,
};
use transreid_eval::EvalConfig;

use super::error::TrainError;
use super::job::{check_job, check_ranks_agree, no_steps};
use super::settings::{ModelSettings, ParallelOptions, TrainJob};
use super::state::{load_state, save_state, Progress};
use super::trainee::{TrainBatch, Trainee};
#[cfg(feature = "plots")]
use super::PLOT_FILE;
use super::{CHECKPOINT_FILE, METRICS_FILE, STATE_FILE};
use crate::distributed::{
    average_gradients, check_same_everywhere, mean_gradients, weights_fingerprint, Collective,
    SingleProcess, Watchdog,
};
use crate::epoch_record::EpochRecord;
use crate::inference::evaluate_model;
use crate::input_normalization::input_spec;
use crate::optim::{LossScaler, Optimizer};
#[cfg(feature = "plots")]
use crate::plot::plot_training;
use crate::progress::Bar;

/// How long the ranks wait for rank 0's evaluation and files at the end of an epoch.
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A step's loss and number of correct global-branch predictions, still on the device.
struct StepValues<B: Backend> {
    loss: Tensor<B, 1>,
    hits: Tensor<B, 1, Int>,
    images: usize,
}

/// Running sums of an epoch's steps.
#[derive(Default)]
struct EpochTally {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    iterations: usize,
}

impl EpochTally {
    /// Reads a step's values (waiting for the device); a non-finite loss is an error naming
    /// the step.
    fn add<B: Backend>(&mut self, step: StepValues<B>, epoch: usize) -> Result<(), TrainError> {
        let loss: f32 = step.loss.into_scalar().elem();
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                epoch,
                iteration: self.iterations,
                loss,
            });
        }
        self.loss_sum += loss as f64;
        self.correct += step.hits.into_scalar().elem::<i64>() as usize;
        self.seen += step.images;
        self.iterations += 1;
        Ok(())
    }

    /// Mean loss per step.
    fn loss(&self) -> f64 {
        self.loss_sum / self.iterations.max(1) as f64
    }

    /// Training accuracy of the global branch.
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// Trains `model` on `job.dataset.train`, evaluating on query / gallery, and writes to the run
/// folder: [`METRICS_FILE`], [`PLOT_FILE`] (with the `plots` feature), [`CHECKPOINT_FILE`]
/// (every `checkpoint_period` epochs, after the last and at a `stop_after` stop) and [`STATE_FILE`] (every epoch), all
/// atomically.
///
/// Epoch `e` draws its batches, augmentations and drop-path masks from `(seed, e)` alone (the
/// drop-path generator is re-seeded for every block of images from its number in the epoch), so
/// a run resumed from its state ends with the same weights as an uninterrupted one.
pub fn train<B: AutodiffBackend, M: Trainee<B>>(
    model: M,
    job: &TrainJob<'_, M::Config, M::Objective>,
    device: &B::Device,
) -> Result<(M, Vec<EpochRecord>), TrainError> {
    train_parallel(
        model,
        job,
        device,
        &SingleProcess,
        &ParallelOptions::default(),
    )
}

/// [`train`] as one of the `collective.world()` ranks of a data-parallel run: every rank runs
/// this with the same job. `settings.batch_size` stays the global batch: each step, every rank
/// takes its blocks of `batch_size / (world · accumulate)` images (the reference's DDP sampler),
/// computes the mean gradient of its `settings.accumulate` micro-batches, and the ranks average
/// theirs ([`crate::distributed::average_gradients`]) before the same SGD step, so the replicas stay identical.
/// BatchNorm statistics and triplet mining are per micro-batch. Rank 0 alone evaluates and
/// writes the run folder (metrics summed over the ranks); before the first epoch the ranks
/// compare a fingerprint of their settings and weights.
pub fn train_parallel<B: AutodiffBackend, M: Trainee<B>>(
    mut model: M,
    job: &TrainJob<'_, M::Config, M::Objective>,
    device: &B::Device,
    collective: &dyn Collective,
    options: &ParallelOptions,
) -> Result<(M, Vec<EpochRecord>), TrainError> {
    let (rank, world) = (collective.rank(), collective.world());
    check_job(job, world)?;
    let (settings, run_dir) = (job.settings, job.run_dir);
    let micro_batches = settings.accumulate.max(1);
    let shards = world * micro_batches;
    let writer = rank == 0;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let loader_config = LoaderConfig {
        workers: settings.workers,
        prefetch: 4,
        seed: settings.seed,
    };
    let train_loader = TrainLoader::from_dataset(
        job.dataset,
        settings.batch_size / shards,
        settings.instances,
        TrainTransform::new(job.transforms)?,
        loader_config,
    )?
    .sharded(rank, world, micro_batches)?;
    let eval_loader = EvalLoader::from_dataset(
        job.dataset,
        TestTransform::new(job.transforms)?,
        settings.eval_batch_size,
        loader_config,
    )?;
    // Epochs draw slightly different numbers of blocks: a later one can still fall short.
    let steps = |epoch: usize| match train_loader.batches_in_epoch(epoch as u64) / micro_batches {
        0 => Err(no_steps(job, epoch, shards)),
        steps => Ok(steps),
    };
    if writer {
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    }
    let schedule = settings.schedule.build(
        settings.solver.base_lr,
        settings.epochs,
        settings.warmup_epochs,
    );
    let mut optimizer = Optimizer::<B>::new(settings.optimizer, settings.solver);
    let scaling = settings.precision.needs_loss_scaling();
    optimizer.set_loss_scaler(scaling.then(LossScaler::default));
    let state_path = run_dir.join(STATE_FILE);
    // Checkpoints record the test input, so they embed correctly away from the run folder.
    let input = input_spec(job.transforms.normalization, job.model_config.input_size());
    let mut records = Vec::new();
    if job.resume {
        let progress = load_state(
            &state_path,
            &mut model,
            job.model_config,
            settings,
            &mut optimizer,
            device,
        )?;
        let before = progress.world * progress.settings.accumulate.max(1);
        if writer && before != shards {
            eprintln!(
                "warning: the run was trained with {} rank(s) x {} micro-batch(es) per step and \
                 continues with {world} x {micro_batches}: each step is now drawn as {shards} \
                 blocks instead of {before}, so the result is not what an uninterrupted run gives",
                progress.world,
                progress.settings.accumulate.max(1)
            );
        }
        records = progress.records;
        if scaling && progress.loss_scaler.is_some() {
            optimizer.set_loss_scaler(progress.loss_scaler);
        }
    }
    if world > 1 {
        check_ranks_agree(job, collective)?;
        check_same_everywhere(
            collective,
            "the initial weights",
            weights_fingerprint(&model),
        )?;
    }
    model.set_precision(settings.precision);
    // After a resume's load: CLIP-ReID's text features come from the learned prompts.
    let fixed = model.fixed(settings.batch_size);
    let first_epoch = records.len() + 1;
    let csv_path = run_dir.join(METRICS_FILE);
    let mut csv = None;
    if writer {
        let mut file = std::fs::File::create(&csv_path).map_err(io(&csv_path))?;
        writeln!(file, "{}", EpochRecord::CSV_HEADER).map_err(io(&csv_path))?;
        for record in &records {
            writeln!(file, "{}", record.csv_row()).map_err(io(&csv_path))?;
        }
        csv = Some(file);
    }
    let last_epoch = job
        .stop_after
        .unwrap_or(settings.epochs)
        .min(settings.epochs);
    let watchdog = (world > 1)
        .then(|| Watchdog::start(options.step_timeout, format!("rank {rank} of {world}")));

    for epoch in first_epoch..=last_epoch {
        let bar = Bar::new(
            (steps(epoch)? * micro_batches) as u64,
            "epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}",
            epoch.to_string(),
        );
        let started = Instant::now();
        let mut tally = EpochTally::default();
        let lr = schedule.lr(epoch, settings.solver.base_lr);
        let read = |tally: &mut EpochTally, step: StepValues<B::InnerBackend>| {
            tally.add(step, epoch).inspect_err(|_| bar.abandon())?;
            bar.advance(1, || {
                format!(
                    "loss {:.4}  acc {:.3}  lr {lr:.2e}  {:.0} img/s",
                    tally.loss(),
                    tally.accuracy(),
                    tally.seen as f64 / started.elapsed().as_secs_f64()
                )
            });
            Ok::<_, TrainError>(())
        };
        let mut pending = None;
        let mut micro_grads = Vec::with_capacity(micro_batches);
        for (micro, batch) in train_loader.epoch(epoch as u64).enumerate() {
            let batch = batch?;
            // Drop-path masks come from the block's own generator, so they do not depend on
            // which rank or micro-batch computes the block.
            let (step, m) = (micro / micro_batches, micro % micro_batches);
            let block = step * shards + m * world + rank;
            B::seed(
                device,
                derive_seed(settings.seed, RngPurpose::Model, epoch as u64, block as u64),
            );
            let [n, c, h, w] = batch.shape;
            let labels: Vec<i64> = batch.pids.iter().map(|&p| p as i64).collect();
            let ints =
                |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device);
            let images =
                Tensor::<B, 4>::from_data(TensorData::new(batch.images, [n, c, h, w]), device);
            let cams = ints(batch.camids.iter().map(|&c| c as i64).collect());
            let views = ints(batch.viewids.iter().map(|&v| v as i64).collect());
            let targets = ints(labels.clone());
            let loss = model.loss(
                TrainBatch {
                    images,
                    cameras: cams,
                    views,
                    targets: targets.clone(),
                    labels,
                },
                &settings.objective,
                &fixed,
            )?;
            let values = StepValues {
                loss: loss.total.clone().inner(),
                hits: loss
                    .scores
                    .inner()
                    .argmax(1)
                    .reshape([n])
                    .equal(targets.inner())
                    .int()
                    .sum(),
                images: n,
            };
            micro_grads.push(optimizer.gradients(loss.total, &model));
            if micro_grads.len() == micro_batches {
                let grads = mean_gradients(std::mem::take(&mut micro_grads), &model);
                let grads = average_gradients(grads, &model, collective, options.bucket_bytes)?;
                model = optimizer.step(model, grads, |group_lr| schedule.lr(epoch, group_lr));
                if let Some(watchdog) = &watchdog {
                    watchdog.feed();
                }
            }
            // The previous micro-batch's values are read only now, with this one queued, so
            // the host never waits for the device in the middle of a step. A non-finite loss
            // is caught one micro-batch late, before anything is written.
            if let Some(previous) = pending.replace(values) {
                read(&mut tally, previous)?;
            }
        }
        if let Some(last) = pending {
            read(&mut tally, last)?;
        }
        bar.finish();
        // The epoch's sums over every rank.
        let mut sums = [
            tally.loss_sum,
            tally.correct as f64,
            tally.seen as f64,
            tally.iterations as f64,
        ];
        collective.all_reduce_sum_f64(&mut sums)?;
        let tally = EpochTally {
            loss_sum: sums[0],
            correct: sums[1] as usize,
            seen: sums[2] as usize,
            iterations: sums[3] as usize,
        };
        let seconds = started.elapsed().as_secs_f64();
        if world > 1 {
            // Identical gradients and steps keep the replicas identical; a difference is a bug
            // or a faulty device, not something to train on.
            let what = format!("the weights after epoch {epoch}");
            check_same_everywhere(collective, &what, weights_fingerprint(&model))?;
        }
        // Rank 0 evaluates and writes while the others wait at their next collective.
        if let Some(watchdog) = &watchdog {
            watchdog.set_timeout(EVALUATION_TIMEOUT);
        }
        if writer {
            if let Some(scaler) = optimizer.loss_scaler() {
                println!(
                    "epoch {epoch:>3}  loss scale {}  {} steps skipped so far",
                    scaler.scale, scaler.skipped_steps
                );
            }
        }
        let evaluate = epoch % settings.eval_period.max(1) == 0 || epoch == settings.epochs;
        let metrics = if evaluate && writer {
            Some(evaluate_model(
                &model.eval_model(),
                &eval_loader,
                device,
                &EvalConfig::default(),
            )?)
        } else {
            None
        };
        let record = EpochRecord {
            epoch,
            loss: tally.loss(),
            accuracy: tally.accuracy(),
            lr,
            images_per_second: tally.seen as f64 / seconds,
            metrics,
        };
        records.push(record.clone());
        if let Some(csv) = csv.as_mut() {
            writeln!(csv, "{}", record.csv_row()).map_err(io(&csv_path))?;
            println!(
                "epoch {epoch:>3}  loss {:.4}  acc {:.3}  lr {:.2e}  {:.0} img/s{}",
                record.loss,
                record.accuracy,
                record.lr,
                record.images_per_second,
                record.metrics.as_ref().map_or(String::new(), |m| format!(
                    "  mAP {:.1}%  Rank-1 {:.1}%",
                    m.map * 100.0,
                    m.rank1().unwrap_or(0.0) * 100.0
                ))
            );
            #[cfg(feature = "plots")]
            plot_training(&run_dir.join(PLOT_FILE), &records)?;
            if epoch % settings.checkpoint_period.max(1) == 0 || epoch == last_epoch {
                M::save_checkpoint(
                    &model.valid(),
                    job.model_config,
                    &input,
                    &run_dir.join(CHECKPOINT_FILE),
                )?;
            }
            let progress = Progress {
                settings: settings.clone(),
                records: records.clone(),
                loss_scaler: optimizer.loss_scaler().copied(),
                world,
            };
            save_state(&state_path, &model, job.model_config, &optimizer, &progress)?;
        }
        if world > 1 {
            // The others wait here, under the long limit, until rank 0 has evaluated and
            // written; then every rank's next step runs under the step limit again.
            collective.all_reduce_sum_f64(&mut [0.0])?;
        }
        if let Some(watchdog) = &watchdog {
            watchdog.set_timeout(options.step_timeout);
        }
    }
    Ok((model, records))
}
