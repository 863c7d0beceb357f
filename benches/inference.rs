//! Inference throughput of ViT-B/16 TransReID (JPM + camera SIE) at 256x128 on the CPU
//! backends compiled in. Prints one JSON line per case; `scripts/bench-inference.sh` runs it
//! beside PyTorch.
//!
//! Run: `cargo bench --bench inference [--features ndarray] -- [--iters N] [--stride S]
//! [--batch B] [--ablation ROUNDS]`. `--ablation` measures Flex with its kernels switched on one
//! by one (none, + linear, + attention, + GELU = all), the configurations interleaved within each
//! of ROUNDS rounds so that they share the machine's state, and prints each one's median.

use std::time::Instant;

use burn::prelude::*;
use transreid_model::{JpmConfig, SieConfig, SieMode, TransReidConfig, VitPreset};

/// Images per second of `iters` embeddings of a batch, after one warm-up, for each of `runs`.
fn bench<B: Backend>(
    stride: usize,
    batch: usize,
    iters: usize,
    mut runs: Vec<&mut dyn FnMut()>,
) -> Vec<f64> {
    let device = Default::default();
    let config = TransReidConfig::new(
        VitPreset::VitBase16.config([256, 128], [stride, stride]),
        751,
    )
    .with_sie(
        SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(6),
    )
    .with_jpm(Some(JpmConfig::new()));
    let model = config.init::<B>(&device);
    let images = Tensor::<B, 4>::random(
        [batch, 3, 256, 128],
        burn::tensor::Distribution::Default,
        &device,
    );
    let cams = Tensor::<B, 1, Int>::zeros([batch], &device);
    let run = || {
        let out = model.embed(images.clone(), Some(cams.clone()), None);
        let _ = out.into_data();
    };
    runs.iter_mut()
        .map(|setup| {
            setup();
            run(); // warm-up
            let started = Instant::now();
            for _ in 0..iters {
                run();
            }
            (iters * batch) as f64 / started.elapsed().as_secs_f64()
        })
        .collect()
}

fn print(backend: &str, stride: usize, batch: usize, ips: f64) {
    println!(
        "{{\"impl\": \"burn-{backend}\", \"stride\": {stride}, \"batch\": {batch}, \"images_per_second\": {ips:.3}}}"
    );
}

#[cfg(feature = "flex")]
fn ablation(stride: usize, batch: usize, iters: usize, rounds: usize) {
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
    let mut results = vec![Vec::new(); steps.len()];
    for _ in 0..rounds {
        let mut setups: Vec<Box<dyn FnMut()>> = steps
            .iter()
            .map(|&(_, kernels)| Box::new(move || set_flex_kernels(kernels)) as Box<dyn FnMut()>)
            .collect();
        let runs = setups
            .iter_mut()
            .map(|s| s.as_mut() as &mut dyn FnMut())
            .collect();
        for (all, ips) in results
            .iter_mut()
            .zip(bench::<burn::backend::Flex>(stride, batch, iters, runs))
        {
            all.push(ips);
        }
    }
    for ((name, _), mut all) in steps.iter().zip(results) {
        all.sort_by(f64::total_cmp);
        print(name, stride, batch, all[all.len() / 2]);
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
    let iters = arg("--iters").unwrap_or(3);
    let only = |value: usize, name: &str| arg(name).is_none_or(|v| v == value);
    for stride in [16, 12].into_iter().filter(|&s| only(s, "--stride")) {
        for batch in [1, 16].into_iter().filter(|&b| only(b, "--batch")) {
            #[cfg(feature = "flex")]
            match arg("--ablation") {
                Some(rounds) => ablation(stride, batch, iters, rounds.max(1)),
                None => print(
                    "flex",
                    stride,
                    batch,
                    bench::<burn::backend::Flex>(stride, batch, iters, vec![&mut || ()])[0],
                ),
            }
            #[cfg(feature = "ndarray")]
            print(
                "ndarray",
                stride,
                batch,
                bench::<burn::backend::NdArray>(stride, batch, iters, vec![&mut || ()])[0],
            );
        }
    }
}
