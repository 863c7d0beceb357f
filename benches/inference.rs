//! Inference throughput of ViT-B/16 TransReID (JPM + camera SIE) at 256x128 on the CPU
//! backends compiled in. Prints one JSON line per case; `scripts/bench-inference.sh` runs it
//! beside PyTorch.
//!
//! Run: `cargo bench --bench inference [--features ndarray] -- [--iters N] [--stride S]
//! [--batch B] [--ablation ROUNDS]`: the median and the best of N timed embeddings per case.
//! `--ablation` measures Flex with its kernels switched on one by one (none, then linear,
//! attention and GELU added in turn), one embedding of each per round, interleaved. `--serve`
//! (Flex, the first stride and batch selected) times one embedding per line of stdin, for
//! `scripts/bench_inference_paired.py`. `--write-checkpoint PATH` (first stride selected) saves
//! the benchmarked model as a checkpoint instead, for `transreid export`.

use std::time::Instant;

use burn::prelude::*;
use transreid_model::{JpmConfig, SieConfig, SieMode, TransReidConfig, VitPreset};

/// The benchmarked ViT-B/16 TransReID (JPM + camera SIE) at 256x128.
fn config(stride: usize) -> TransReidConfig {
    TransReidConfig::new(
        VitPreset::VitBase16.config([256, 128], [stride, stride]),
        751,
    )
    .with_sie(
        SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(6),
    )
    .with_jpm(Some(JpmConfig::new()))
}

/// A ready model of [`config`] (random weights) and a random batch; the closure runs one
/// embedding of the batch to the end.
fn embedder<B: Backend>(stride: usize, batch: usize) -> impl Fn() {
    let device = Default::default();
    let model = config(stride).init::<B>(&device);
    let images = Tensor::<B, 4>::random(
        [batch, 3, 256, 128],
        burn::tensor::Distribution::Default,
        &device,
    );
    let cams = Tensor::<B, 1, Int>::zeros([batch], &device);
    move || {
        let out = model.embed(images.clone(), Some(cams.clone()), None);
        let _ = out.into_data();
    }
}

/// Images per second of each embedding of a batch: `rounds` rounds, each of which runs every
/// setup then one timed embedding, after one warm-up per setup. Interleaved, so that every
/// setup sees the same periods of a machine whose speed drifts.
fn bench<B: Backend>(
    stride: usize,
    batch: usize,
    rounds: usize,
    setups: &mut [&mut dyn FnMut()],
) -> Vec<Vec<f64>> {
    let run = embedder::<B>(stride, batch);
    for setup in setups.iter_mut() {
        setup();
        run(); // warm-up
    }
    let mut results = vec![Vec::new(); setups.len()];
    for _ in 0..rounds {
        for (setup, times) in setups.iter_mut().zip(&mut results) {
            setup();
            let started = Instant::now();
            run();
            times.push(batch as f64 / started.elapsed().as_secs_f64());
        }
    }
    results
}

/// Paired runs (`scripts/bench_inference_paired.py`): after a warm-up prints `ready`, then one
/// timed embedding per line read from stdin, printing its seconds, until stdin closes.
fn serve<B: Backend>(stride: usize, batch: usize) {
    use std::io::{BufRead, Write};
    let run = embedder::<B>(stride, batch);
    run();
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "ready");
    let _ = stdout.flush();
    for _ in std::io::stdin().lock().lines().map_while(Result::ok) {
        let started = Instant::now();
        run();
        let _ = writeln!(stdout, "{}", started.elapsed().as_secs_f64());
        let _ = stdout.flush();
    }
}

/// Saves a random model of [`config`] with the reference's ViT input (mean and std 0.5).
fn write_checkpoint(stride: usize, path: &std::path::Path) {
    let config = config(stride);
    let model = config.init::<burn::backend::NdArray>(&Default::default());
    let input = transreid::input_normalization::input_spec(
        transreid::data::Normalization::HALF,
        config.vit.img_size,
    );
    transreid_model::save_checkpoint_with_input(&model, &config, &input, path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// One JSON line: the overall rate (images over the total time, as the PyTorch side reports
/// it), the median and the best of the measurements (images per second each).
fn print(backend: &str, stride: usize, batch: usize, mut values: Vec<f64>) {
    let overall = values.len() as f64 / values.iter().map(|v| 1.0 / v).sum::<f64>();
    values.sort_by(f64::total_cmp);
    let (median, best) = (values[values.len() / 2], values[values.len() - 1]);
    println!(
        "{{\"impl\": \"burn-{backend}\", \"stride\": {stride}, \"batch\": {batch}, \"images_per_second\": {overall:.3}, \"median\": {median:.3}, \"best\": {best:.3}}}"
    );
}

#[cfg(feature = "flex")]
fn ablation(stride: usize, batch: usize, rounds: usize) {
    use transreid_model::{set_flex_kernels, FlexKernels};
    let steps = [
        ("flex-generic", FlexKernels::NONE),
        (
            "flex+linear",
            FlexKernels {
                linear: true,
                ..FlexKernels::NONE
            },
        ),
        (
            "flex+linear+attention",
            FlexKernels {
                gelu: false,
                ..FlexKernels::ALL
            },
        ),
        ("flex", FlexKernels::ALL),
    ];
    let mut setups: Vec<Box<dyn FnMut()>> = steps
        .iter()
        .map(|&(_, kernels)| Box::new(move || set_flex_kernels(kernels)) as Box<dyn FnMut()>)
        .collect();
    let mut setups: Vec<&mut dyn FnMut()> = setups.iter_mut().map(|s| s.as_mut() as _).collect();
    let results = bench::<burn::backend::Flex>(stride, batch, rounds, &mut setups);
    for ((name, _), values) in steps.iter().zip(results) {
        print(name, stride, batch, values);
    }
    set_flex_kernels(FlexKernels::ALL);
}

fn main() {
    transreid::allocator::keep_freed_memory();
    let arg = |name: &str| {
        std::env::args()
            .skip_while(|a| a != name)
            .nth(1)
            .and_then(|v| v.parse::<usize>().ok())
    };
    let iters = arg("--iters").unwrap_or(3).max(1);
    let only = |value: usize, name: &str| arg(name).is_none_or(|v| v == value);
    for stride in [16, 12].into_iter().filter(|&s| only(s, "--stride")) {
        if let Some(path) = std::env::args()
            .skip_while(|a| a != "--write-checkpoint")
            .nth(1)
        {
            return write_checkpoint(stride, std::path::Path::new(&path));
        }
        for batch in [1, 16].into_iter().filter(|&b| only(b, "--batch")) {
            #[cfg(feature = "flex")]
            if std::env::args().any(|a| a == "--serve") {
                return serve::<burn::backend::Flex>(stride, batch);
            }
            #[cfg(feature = "flex")]
            match arg("--ablation") {
                Some(rounds) => ablation(stride, batch, rounds.max(1)),
                None => {
                    let mut runs =
                        bench::<burn::backend::Flex>(stride, batch, iters, &mut [&mut || ()]);
                    print("flex", stride, batch, runs.remove(0));
                }
            }
            #[cfg(feature = "ndarray")]
            {
                let mut runs =
                    bench::<burn::backend::NdArray>(stride, batch, iters, &mut [&mut || ()]);
                print("ndarray", stride, batch, runs.remove(0));
            }
        }
    }
}
