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
    /// Working folder for the synthetic set (`synthetic/`) and the run (`run/`). A folder of an
    /// earlier demo (marked by its `.transreid-demo` file) has both replaced; a folder whose
    /// `run/` or `synthetic/` the demo did not write is refused, and so is a folder another
    /// demo is using.
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
    anyhow::ensure!(epochs > 0, "--epochs must be at least 1");
    anyhow::ensure!(lr.is_finite() && lr > 0.0, "--lr must be a positive number");
    let data_root = out.join("synthetic");
    let run_dir = out.join("run");
    // Held until the demo ends: a second demo on the same folder is refused.
    let _claim = claim_demo_folder(&out)?;
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
        prompt_stop_after: None,
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

/// The file that marks a folder as the demo's own.
const DEMO_MARKER: &str = ".transreid-demo";

/// Makes `out` the demo's folder for this process: creates it with its marker, refuses a
/// folder whose `run/` or `synthetic/` an earlier demo did not write (no marker), takes an
/// exclusive lock on the marker (released when the returned file is dropped or the process
/// ends) and only then removes the earlier demo's `run/` and `synthetic/`.
fn claim_demo_folder(out: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the demo folder {} (--out)", out.display()))?;
    let marker = out.join(DEMO_MARKER);
    let earlier_demo = marker.is_file();
    let ours = [out.join("synthetic"), out.join("run")];
    let existing: Vec<&PathBuf> = ours.iter().filter(|p| p.exists()).collect();
    if !earlier_demo && !existing.is_empty() {
        let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!(
            "{} already holds {}, which `transreid demo` did not write (the folder has no {DEMO_MARKER} \
             file): the demo would replace it; choose another --out or move it away",
            out.display(),
            names.join(" and ")
        );
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&marker)
        .with_context(|| format!("cannot write {}", marker.display()))?;
    lock_exclusive(&file).with_context(|| {
        format!(
            "another `transreid demo` is using {}: wait for it to end or choose another --out",
            out.display()
        )
    })?;
    for dir in existing {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove the earlier demo's {}", dir.display()))?;
    }
    Ok(file)
}

/// An exclusive, non-blocking lock on `file` (no lock where the platform has no `flock`).
fn lock_exclusive(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function borrows; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_folder_of_an_earlier_demo_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("project");
        // A user's `run/` folder is never removed.
        std::fs::create_dir_all(out.join("run")).unwrap();
        std::fs::write(out.join("run/notes.txt"), "mine").unwrap();
        let err = claim_demo_folder(&out).unwrap_err().to_string();
        assert!(
            err.contains("did not write") && err.contains("run"),
            "{err}"
        );
        assert!(out.join("run/notes.txt").exists());
        assert!(!out.join(DEMO_MARKER).exists());

        // A fresh folder becomes the demo's; a second claim while the first holds it fails.
        let fresh = dir.path().join("fresh");
        let held = claim_demo_folder(&fresh).unwrap();
        std::fs::create_dir_all(fresh.join("run")).unwrap();
        std::fs::write(fresh.join("run/metrics.csv"), "epoch").unwrap();
        let err = format!("{:#}", claim_demo_folder(&fresh).unwrap_err());
        assert!(err.contains("another `transreid demo`"), "{err}");
        assert!(fresh.join("run/metrics.csv").exists());
        // Once released, the earlier demo's folders are replaced.
        drop(held);
        let _again = claim_demo_folder(&fresh).unwrap();
        assert!(!fresh.join("run").exists());
    }
}
