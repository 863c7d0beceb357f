//! Inference throughput of ViT-B/16 TransReID (JPM + camera SIE) at 256x128 on the CPU
//! backends compiled in. Run: `cargo bench --bench inference --features ndarray [-- --iters N]
//! [--stride S] [--batch B]`.
//! Prints one JSON line per case; `scripts/bench-inference.sh` runs it beside PyTorch.

use std::time::Instant;

use burn::prelude::*;
use transreid_model::{JpmConfig, SieConfig, SieMode, TransReidConfig, VitPreset};

fn bench<B: Backend>(backend: &str, stride: usize, batch: usize, iters: usize) {
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
    run(); // warm-up
    let started = Instant::now();
    for _ in 0..iters {
        run();
    }
    let seconds = started.elapsed().as_secs_f64();
    let ips = (iters * batch) as f64 / seconds;
    println!(
        "{{\"impl\": \"burn-{backend}\", \"stride\": {stride}, \"batch\": {batch}, \"images_per_second\": {ips:.3}}}"
    );
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
            bench::<burn::backend::Flex>("flex", stride, batch, iters);
            #[cfg(feature = "ndarray")]
            bench::<burn::backend::NdArray>("ndarray", stride, batch, iters);
        }
    }
}
