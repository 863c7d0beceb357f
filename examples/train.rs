//! Trains a TransReID from a program: a run configuration from `configs/`, a dataset, the
//! training loop, and the trained model used for retrieval right after.
//!
//! `cargo run --release --example train -- [config.toml] [epochs]`
//!
//! Without arguments it writes a small synthetic set to `example-run/data` and trains the demo's
//! tiny model (`configs/synthetic/tiny_transreid.toml`) on it for 10 epochs on the CPU.

use std::path::PathBuf;

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use transreid::backend::{CpuBackend, TrainBackend};
use transreid::config::RunConfig;
use transreid::data::{load_dataset, SynthConfig};
use transreid::embedder::Embedder;
use transreid::train::{train, TrainJob};

fn main() -> anyhow::Result<()> {
    transreid::allocator::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let path = args.next().map_or_else(
        || PathBuf::from("configs/synthetic/tiny_transreid.toml"),
        PathBuf::from,
    );
    let epochs: usize = args.next().map_or(Ok(10), |e| e.parse())?;

    let mut config = RunConfig::from_file(&path)?;
    config.solver.max_epochs = epochs;
    config.solver.eval_period = epochs.min(5);
    config.output_dir = PathBuf::from("example-run/run");
    if config.model.backbone == Some(transreid::model::VitPreset::Tiny) {
        // The tiny preset trains from scratch on synthetic identities.
        let root = PathBuf::from("example-run/data");
        if !root.exists() {
            let mut synth = SynthConfig::new(&root);
            synth.height = 128;
            synth.width = 64;
            transreid::data::synth::generate(&synth)?;
        }
        config.dataset.root = root;
    }
    // A fresh run each time: `train` refuses to overwrite another run's state.
    if config.output_dir.exists() {
        std::fs::remove_dir_all(&config.output_dir)?;
    }

    let dataset = load_dataset(
        config.dataset.kind,
        &config.dataset.root,
        &config.dataset.options,
    )
    .with_context(|| format!("loading {}", config.dataset.root.display()))?;
    println!("{}", dataset.stats());
    // Classes, cameras and views come from the training split, as in the reference.
    let model_config = config.model_config_for(&dataset);
    let device = Default::default();
    // The initial weights from the run's seed, as `transreid train` draws them.
    CpuBackend::seed(&device, config.seed);
    let mut model = model_config.init::<TrainBackend<CpuBackend>>(&device);
    // `[model] pretrained` (ImageNet, PersonViT / TransReID-SSL or a trained TransReID).
    if let Some(report) = config.load_pretrained(&mut model)? {
        println!("pretrained: {} tensors loaded", report.loaded.len());
    }
    let settings = config.train_settings(false);
    let job = TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &config.input,
        settings: &settings,
        run_dir: &config.output_dir,
        resume: false,
        stop_after: None,
    };
    let (model, records) = train(model, &job, &device)?;
    if let Some(metrics) = records.last().and_then(|r| r.metrics.as_ref()) {
        println!(
            "after {epochs} epochs: mAP {:.1}%, Rank-1 {:.1}%",
            metrics.map * 100.0,
            metrics.rank1().unwrap_or(0.0) * 100.0
        );
    }

    // The trained model embeds images straight away (or later, from the run's checkpoint).
    let embedder = Embedder::new(
        model.valid(),
        model_config,
        config.input.normalization,
        32,
        &device,
    )?;
    let items = &dataset.query[..2];
    let query: Vec<PathBuf> = items.iter().map(|i| i.path.clone()).collect();
    // Each image with its camera and view, as evaluation embeds it.
    let cameras: Vec<i64> = items.iter().map(|i| i.camid as i64).collect();
    let views: Vec<i64> = items.iter().map(|i| i.viewid as i64).collect();
    let feats = embedder.embed_paths(&query, Some(&cameras), Some(&views))?;
    println!(
        "embedded {} query images into {}-d features; the run folder is {}",
        query.len(),
        feats.len() / query.len(),
        config.output_dir.display()
    );
    Ok(())
}
