//! `transreid eval`: a checkpoint's metrics on a dataset's query / gallery split.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use transreid::data::{
    load_dataset, DatasetKind, EvalLoader, ImageCheck, LoadOptions, LoaderConfig, ReidItem,
    TestTransform,
};
use transreid::eval::{EvalConfig, Features, ReidMetrics, RerankConfig, VehicleIdProtocol};
use transreid::inference::{
    check_item_labels, embed_items_with_progress, evaluate_features, model_transforms,
};
use transreid::input_normalization::resolve_normalization;
use transreid::model::{load_any_checkpoint, ReidModel};
use transreid::output_path::check_output;
use transreid::plot::plot_cmc;

use crate::backend::{BackendJob, Device};
use crate::inputs::{dataset_kind_parser, images_bar, NormalizationChoice};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Checkpoint written by `train`, `demo` or `import`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset kind.
    #[arg(long, value_parser = dataset_kind_parser())]
    dataset: DatasetKind,
    /// Dataset folder.
    #[arg(long)]
    root: PathBuf,
    /// k-reciprocal re-ranking (Zhong et al. 2017), with --k1 / --k2 / --lambda.
    #[arg(long)]
    rerank: bool,
    /// Re-ranking: size of the k-reciprocal neighbourhoods. 20 is the paper's; the reference's
    /// evaluator uses 50.
    #[arg(long, default_value_t = 20, requires = "rerank")]
    k1: usize,
    /// Re-ranking: neighbours averaged by local query expansion (1: none). 6 is the paper's;
    /// the reference's evaluator uses 15.
    #[arg(long, default_value_t = 6, requires = "rerank")]
    k2: usize,
    /// Re-ranking: weight of the original distance against the Jaccard distance (the paper's
    /// and the reference's 0.3).
    #[arg(long, default_value_t = 0.3, requires = "rerank")]
    lambda: f64,
    /// VehicleID: random one-image-per-id galleries, evaluated and averaged. Default: 10, as
    /// the reference's protocol draws.
    #[arg(long)]
    trials: Option<usize>,
    /// Leave out images that cannot be decoded (truncated, corrupt, empty), decoding every
    /// image first and listing those left out; without it the first one stops the evaluation.
    #[arg(long)]
    skip_unreadable: bool,
    /// Input normalisation. Default: the one the checkpoint records (older checkpoints: the
    /// run's `config.toml` beside it, else `half`, with a warning).
    #[arg(long, value_enum)]
    normalization: Option<NormalizationChoice>,
    /// Also draw the CMC curve into this PNG file.
    #[arg(long)]
    cmc_plot: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: Device,
}

impl BackendJob for EvalArgs {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        if let Some(plot) = &self.cmc_plot {
            check_output(plot, "png", &[&self.checkpoint])?;
        }
        let vehicle_id = self.dataset == DatasetKind::VehicleId;
        if !vehicle_id && self.trials.is_some() {
            eprintln!("warning: --trials applies to VehicleID only: ignored");
        }
        let trials = self.trials.unwrap_or(10);
        anyhow::ensure!(!vehicle_id || trials > 0, "--trials must be at least 1");
        anyhow::ensure!(
            self.k1 > 0 && self.k2 > 0 && (0.0..=1.0).contains(&self.lambda),
            "--k1 and --k2 must be at least 1 and --lambda within 0..=1"
        );
        let (model, _, input) = load_any_checkpoint::<B>(&self.checkpoint, &device)
            .with_context(|| format!("loading {}", self.checkpoint.display()))?;
        let normalization = resolve_normalization(
            &self.checkpoint,
            input.as_ref(),
            self.normalization.map(Into::into),
        )?;
        if let Some(warning) = normalization.warning(&self.checkpoint) {
            eprintln!("warning: {warning}");
        }
        let kind = self.dataset;
        let options = LoadOptions {
            image_check: if self.skip_unreadable {
                ImageCheck::SkipUnreadable
            } else {
                ImageCheck::None
            },
            ..LoadOptions::default()
        };
        let dataset = load_dataset(kind, &self.root, &options)?;
        if !dataset.report.unreadable.is_empty() {
            let names: Vec<String> = dataset
                .report
                .unreadable
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            eprintln!(
                "left out {} unreadable image(s) (--skip-unreadable): {}",
                names.len(),
                names.join(", ")
            );
        }
        if let Some(plot) = &self.cmc_plot {
            // The dataset's images are inputs too.
            let splits = [&dataset.train, &dataset.query, &dataset.gallery];
            let images: Vec<&Path> = splits
                .into_iter()
                .flatten()
                .map(|item| item.path.as_path())
                .collect();
            check_output(plot, "png", &images)?;
        }
        if !vehicle_id {
            check_scorable(&dataset.query, &dataset.gallery)?;
        }
        // Every id is checked before the embedding starts rather than at its batch.
        for (split, items) in [("query", &dataset.query), ("gallery", &dataset.gallery)] {
            check_item_labels(model.sie_config(), items)
                .with_context(|| format!("the {split} split does not fit the model"))?;
        }
        let transforms = model_transforms(model.input_size(), normalization.normalization);
        let loader = EvalLoader::from_dataset(
            &dataset,
            TestTransform::new(&transforms)?,
            64,
            LoaderConfig::default(),
        )?;
        let bar = images_bar(loader.items().len(), "eval");
        let features =
            embed_items_with_progress(&model, &loader, &device, &mut |n| bar.inc(n as u64));
        bar.finish_and_clear();
        let features = features?;
        let rerank = self.rerank.then(|| RerankConfig {
            k1: self.k1,
            k2: self.k2,
            lambda: self.lambda,
            ..RerankConfig::default()
        });
        if let Some(r) = &rerank {
            println!(
                "re-ranked (k-reciprocal, k1 {}, k2 {}, lambda {})",
                r.k1, r.k2, r.lambda
            );
        }
        let metrics = if vehicle_id {
            anyhow::ensure!(
                rerank.is_none(),
                "--rerank is not part of the VehicleID protocol here"
            );
            vehicle_id_trials(&features, loader.items(), trials)?
        } else {
            let metrics = evaluate_features(
                &features,
                loader.items(),
                loader.num_query(),
                rerank.as_ref(),
                &EvalConfig::default(),
            )?;
            print_metrics(&metrics);
            metrics
        };
        if let Some(plot) = &self.cmc_plot {
            plot_cmc(plot, &metrics.cmc, &format!("CMC, {}", kind.title()))?;
            println!("CMC curve -> {}", plot.display());
        }
        Ok(())
    }
}

/// Fails before any embedding when no query can be scored: the protocol leaves out gallery
/// images of the query's identity seen by the query's camera, so each query needs one from
/// another camera.
fn check_scorable(query: &[ReidItem], gallery: &[ReidItem]) -> anyhow::Result<()> {
    let gallery_views: HashSet<(usize, usize)> = gallery.iter().map(|g| (g.pid, g.camid)).collect();
    let cameras: HashSet<usize> = gallery.iter().map(|g| g.camid).collect();
    let scorable = query.iter().any(|q| {
        cameras
            .iter()
            .any(|&c| c != q.camid && gallery_views.contains(&(q.pid, c)))
    });
    anyhow::ensure!(
        scorable,
        "none of the {} queries has a gallery image of its identity from another camera, so \
         the evaluation protocol (which leaves out same-identity same-camera images) cannot \
         score any: a set needs at least two cameras",
        query.len()
    );
    Ok(())
}

fn print_metrics(metrics: &ReidMetrics) {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    println!("| mAP | mINP | Rank-1 | Rank-5 | Rank-10 |\n|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} |",
        pct(Some(metrics.map)),
        pct(Some(metrics.minp)),
        pct(metrics.rank1()),
        pct(metrics.rank5()),
        pct(metrics.rank10())
    );
    println!(
        "{} valid queries, {} skipped",
        metrics.num_valid_queries, metrics.num_skipped_queries
    );
}

/// The VehicleID protocol over every test image: `trials` seeded one-image-per-id galleries,
/// printed as mean and spread; returns the first trial's metrics for the CMC plot.
fn vehicle_id_trials(
    features: &[f32],
    items: &[ReidItem],
    trials: usize,
) -> anyhow::Result<ReidMetrics> {
    let dim = features.len() / items.len().max(1);
    let pids: Vec<i64> = items.iter().map(|i| i.pid as i64).collect();
    let protocol = VehicleIdProtocol {
        trials,
        ..VehicleIdProtocol::default()
    };
    let report = protocol.evaluate(Features::new(features, dim)?, &pids)?;
    let spread = |f: fn(&ReidMetrics) -> f64| {
        let values: Vec<f64> = report.trials.iter().map(f).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        format!("{:.1}% ± {:.1}", mean * 100.0, var.sqrt() * 100.0)
    };
    if trials == 1 {
        println!("VehicleID: a single random gallery draw (seed 0); the protocol averages 10");
    } else {
        println!(
            "VehicleID: {trials} random one-image-per-id galleries (seed 0), mean ± standard \
             deviation"
        );
    }
    println!("| mAP | Rank-1 | Rank-5 |\n|---|---|---|");
    println!(
        "| {} | {} | {} |",
        spread(|m| m.map),
        spread(|m| m.rank1().unwrap_or(0.0)),
        spread(|m| m.rank5().unwrap_or(0.0))
    );
    Ok(report.trials[0].clone())
}
