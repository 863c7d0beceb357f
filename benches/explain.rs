//! Time of one explanation of a query / gallery pair for ViT-B/16 TransReID (JPM + camera
//! SIE) at 256x128 on Flex: the pair's embedding (for scale), attention rollout of both
//! images, and gradient-weighted attention for the pair's cosine similarity (forward and
//! backward on the autodiff backend). Prints one JSON line per mode; peak memory is measured
//! per mode by `scripts/bench-explain.sh` (one process per mode).
//!
//! Run: `cargo bench --bench explain -- [--mode embed|rollout|gradient] [--iters N]`.

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::*;
use transreid_model::{
    gradient_maps, rollout_maps, ExplainTarget, HeadFusion, JpmConfig, SieConfig, SieMode,
    TransReidConfig, VitPreset,
};

type B = Flex;

fn main() {
    let arg = |name: &str| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let iters: usize = arg("--iters")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let modes = match arg("--mode") {
        Some(mode) => vec![mode],
        None => vec!["embed".into(), "rollout".into(), "gradient".into()],
    };
    let config = TransReidConfig::new(VitPreset::VitBase16.config([256, 128], [16, 16]), 751)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(6),
        )
        .with_jpm(Some(JpmConfig::new()));
    let device = Default::default();
    let model = config.init::<Autodiff<B>>(&device);
    let inference = model.valid();
    let images = Tensor::<B, 4>::random(
        [2, 3, 256, 128],
        burn::tensor::Distribution::Default,
        &device,
    );
    let cams = || {
        Some(Tensor::<B, 1, Int>::from_data(
            TensorData::new(vec![0i64, 3], [2]),
            &device,
        ))
    };
    for mode in modes {
        let run = || match mode.as_str() {
            "embed" => {
                let _ = inference.embed(images.clone(), cams(), None).into_data();
            }
            "rollout" => {
                rollout_maps(
                    &inference,
                    images.clone(),
                    cams(),
                    None,
                    HeadFusion::Mean,
                    0.9,
                )
                .expect("rollout");
            }
            "gradient" => {
                gradient_maps(
                    &model,
                    images.clone(),
                    cams(),
                    None,
                    ExplainTarget::PairCosine,
                )
                .expect("gradient maps");
            }
            other => panic!("unknown mode {other}: embed, rollout or gradient"),
        };
        run();
        let mut times: Vec<f64> = (0..iters)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{{\"mode\": \"{mode}\", \"images\": 2, \"iters\": {iters}, \"median_s\": {:.4}, \"best_s\": {:.4}}}",
            times[times.len() / 2],
            times[0]
        );
    }
}
