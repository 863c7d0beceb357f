//! Train-pipeline throughput on Market-sized crops: 128×64 JPEGs decoded, resized (bicubic) to
//! 256×128, flipped, padded, cropped, normalised and randomly erased, in PK batches of 64.
//!
//! `cargo bench -p transreid-data --bench loader -- [--images N] [--dir PATH] [--workers 1,2]`
//!
//! `--dir` keeps the synthetic set (or reuses one already there), e.g. for
//! `scripts/loader_bench_torch.py`.

use std::path::PathBuf;
use std::time::Instant;

use transreid_data::synth::{generate, SynthConfig};
use transreid_data::{
    decode_rgb, derive_rng, load_dataset, DatasetKind, EvalLoader, LoadOptions, LoaderConfig,
    PkSampler, RngPurpose, TestTransform, TrainLoader, TrainTransform, TransformConfig,
};

struct Args {
    images: usize,
    dir: Option<PathBuf>,
    workers: Vec<usize>,
}

fn parse_args() -> Args {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args {
        images: 3000,
        dir: None,
        workers: if cores > 1 { vec![1, cores] } else { vec![1] },
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--images" => args.images = it.next().and_then(|v| v.parse().ok()).expect("--images N"),
            "--dir" => args.dir = it.next().map(PathBuf::from),
            "--workers" => {
                args.workers = it
                    .next()
                    .expect("--workers 1,2")
                    .split(',')
                    .map(|w| w.parse().expect("worker count"))
                    .collect()
            }
            // cargo bench passes --bench
            _ => {}
        }
    }
    args
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("synth"));
    // ids × 4 cameras × 5 images ≈ the requested number of train images
    let train_ids = args.images.div_ceil(20).clamp(16, 1400);
    if !dir.join("bounding_box_train").is_dir() {
        let start = Instant::now();
        let config = SynthConfig {
            train_ids,
            test_ids: 16,
            cameras: 4,
            images_per_id_per_cam: 5,
            ..SynthConfig::new(&dir)
        };
        let summary = generate(&config)?;
        let n = summary.train_images + summary.query_images + summary.gallery_images;
        println!(
            "synthetic set: {n} JPEGs 128x64 written in {:.2} s ({:.0} images/s)",
            start.elapsed().as_secs_f64(),
            n as f64 / start.elapsed().as_secs_f64()
        );
    }
    let dataset = load_dataset(DatasetKind::Market1501, &dir, &LoadOptions::default())?;
    println!("{}", dataset.stats());

    let config = TransformConfig::person();
    let train = TrainTransform::new(&config)?;

    // single-thread stages
    let sample: Vec<_> = dataset.train.iter().take(500).collect();
    let start = Instant::now();
    let decoded: Vec<_> = sample
        .iter()
        .map(|i| decode_rgb(&i.path))
        .collect::<Result<_, _>>()?;
    let decode_rate = sample.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut out = vec![0.0f32; config.train_size.chw_len()];
    for (i, img) in decoded.iter().enumerate() {
        train.apply(
            img,
            &mut derive_rng(0, RngPurpose::Augmentation, 0, i as u64),
            &mut out,
        );
    }
    let transform_rate = decoded.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "1 thread: decode {decode_rate:.0} images/s, train transform {transform_rate:.0} images/s"
    );

    println!("| loader | workers | images | seconds | images/s |");
    println!("|---|---:|---:|---:|---:|");
    for &workers in &args.workers {
        let loader_config = LoaderConfig {
            workers,
            prefetch: 4,
            seed: 1,
        };
        let sampler = PkSampler::from_items(&dataset.train, 64, 4)?;
        let loader =
            TrainLoader::new(dataset.train.clone(), sampler, train.clone(), loader_config)?;
        // epoch 0 warms the page cache; epoch 1 is timed
        for batch in loader.epoch(0) {
            batch?;
        }
        let start = Instant::now();
        let mut n = 0;
        for batch in loader.epoch(1) {
            n += batch?.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| train 256x128 | {workers} | {n} | {secs:.2} | {:.0} |",
            n as f64 / secs
        );

        // the train images stand in for a gallery of Market-like size
        let eval = EvalLoader::new(
            &dataset.query,
            &dataset.train,
            TestTransform::new(&config)?,
            64,
            loader_config,
        )?;
        let start = Instant::now();
        let mut n = 0;
        for batch in eval.batches() {
            n += batch?.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| eval 256x128 | {workers} | {n} | {secs:.2} | {:.0} |",
            n as f64 / secs
        );
    }
    Ok(())
}
