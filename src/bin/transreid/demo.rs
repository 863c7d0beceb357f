//! `transreid demo`: a synthetic set, a tiny TransReID trained on it on the CPU, and the
//! metrics before and after, in a normal run folder.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use transreid::backend::{CpuBackend, TrainBackend};
use transreid::config::RunConfig;
use transreid::data::{
    decode_rgb, load_dataset, EvalLoader, LoaderConfig, SynthConfig, TestTransform,
};
use transreid::eval::EvalConfig;
use transreid::inference::{embed_items, evaluate_model};
use transreid::ranked_list::draw_ranked_list;
use transreid::search::search;

use crate::train::{run_on, RunJob};

/// The demo's run: `configs/synthetic/tiny_transreid.toml`.
const DEMO_CONFIG: &str = include_str!("../../../configs/synthetic/tiny_transreid.toml");

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Working folder for the synthetic set (`synthetic/`) and the run (`run/`); both are
    /// replaced.
    #[arg(long, default_value = "demo-run")]
    out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = 120)]
    epochs: usize,
    /// Base learning rate (higher than the reference's 0.008: the demo trains from scratch).
    #[arg(long, default_value_t = 0.03)]
    lr: f64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let DemoArgs { out, epochs, lr } = args;
    let data_root = out.join("synthetic");
    let run_dir = out.join("run");
    // The demo owns its folder: the set and run of a previous demo are regenerated (the set is
    // deterministic).
    for dir in [&data_root, &run_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("removing the previous demo's {}", dir.display()))?;
        }
    }
    let mut config = RunConfig::from_toml(DEMO_CONFIG, Path::new("tiny_transreid.toml"))?;
    config.output_dir = run_dir.clone();
    config.dataset.root = data_root.clone();
    config.solver.max_epochs = epochs;
    config.solver.base_lr = lr;
    config.validate()?;

    let mut synth = SynthConfig::new(&data_root);
    synth.height = config.input.test_size.height;
    synth.width = config.input.test_size.width;
    let summary = transreid::data::synth::generate(&synth)?;
    println!(
        "synthetic set: {} train / {} query / {} gallery images, {} cameras",
        summary.train_images, summary.query_images, summary.gallery_images, summary.cameras
    );

    // The untrained model, initialised as the run initialises it.
    let device = Default::default();
    let dataset = load_dataset(config.dataset.kind, &data_root, &config.dataset.options)?;
    let model_config = config.model_config_for(&dataset);
    let eval_loader = EvalLoader::from_dataset(
        &dataset,
        TestTransform::new(&config.input)?,
        config.test.ims_per_batch,
        LoaderConfig::default(),
    )?;
    CpuBackend::seed(&device, config.seed);
    let untrained = model_config.init::<TrainBackend<CpuBackend>>(&device);
    let before = evaluate_model(
        &untrained.valid(),
        &eval_loader,
        &device,
        &EvalConfig::default(),
    )?;

    let job = RunJob {
        config,
        resume: false,
        stop_after: None,
        cuda: false,
        collective: Box::new(transreid::distributed::SingleProcess),
        parallel: Default::default(),
    };
    let (model, records) = run_on::<CpuBackend>(job, device)?;
    let after = records
        .last()
        .and_then(|r| r.metrics.clone())
        .context("the last epoch was not evaluated")?;
    println!("\n              mAP     mINP   Rank-1  Rank-5");
    for (name, m) in [("untrained", &before), ("trained", &after)] {
        println!(
            "{name:<10} {:>6.1}%  {:>6.1}%  {:>6.1}%  {:>6.1}%",
            m.map * 100.0,
            m.minp * 100.0,
            m.rank1().unwrap_or(0.0) * 100.0,
            m.rank5().unwrap_or(0.0) * 100.0
        );
    }

    // A ranked list for the first query, with the trained model.
    let features = embed_items(&model.valid(), &eval_loader, &device)?;
    let dim = features.len() / eval_loader.items().len();
    let nq = eval_loader.num_query();
    let paths: Vec<PathBuf> = eval_loader.items().iter().map(|i| i.path.clone()).collect();
    let result = search(
        &paths[0],
        &features[..dim],
        &paths[nq..],
        &features[nq * dim..],
        10,
    )?;
    let mut images = vec![decode_rgb(&paths[0])?];
    for hit in &result.hits {
        images.push(decode_rgb(&hit.path)?);
    }
    draw_ranked_list(&run_dir.join("ranked_list.png"), &result, &images)?;
    println!(
        "run folder: {} (config.toml, metrics.csv, training.png, ranked_list.png, \
         checkpoint.safetensors); evaluate it with `transreid eval --checkpoint {} --dataset \
         market1501 --root {}`",
        run_dir.display(),
        run_dir.join("checkpoint.safetensors").display(),
        data_root.display()
    );
    Ok(())
}
