//! Embeds image files with a TransReID checkpoint and prints each file's nearest neighbour.
//!
//! `cargo run --release --example embed -- <checkpoint.safetensors> <image>...`

use std::path::PathBuf;

use transreid::backend::CpuBackend;
use transreid::embedder::Embedder;
use transreid::file_name::CameraSource;

fn main() -> anyhow::Result<()> {
    transreid::allocator::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let checkpoint = PathBuf::from(args.next().expect("usage: embed <checkpoint> <image>..."));
    let paths: Vec<PathBuf> = args.map(PathBuf::from).collect();
    let device = Default::default();
    // The checkpoint records the normalisation it was trained with; `Some(..)` would override it.
    let embedder = Embedder::<CpuBackend>::from_checkpoint(&checkpoint, None, 32, &device)?;
    if let Some(warning) = embedder.normalization().warning(&checkpoint) {
        eprintln!("warning: {warning}");
    }
    let dim = embedder.dim();
    // Camera SIE models embed each image with its camera: read it from `<pid>_c<camera>` names
    // when they carry one.
    let cameras = CameraSource::FileName.camera_ids(&paths).ok();
    let feats = embedder.embed_paths(&paths, cameras.as_deref(), None)?;
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for (i, a) in feats.chunks(dim).enumerate() {
        let best = feats
            .chunks(dim)
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, b)| {
                (
                    j,
                    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b)),
                )
            })
            .max_by(|x, y| x.1.total_cmp(&y.1));
        if let Some((j, cos)) = best {
            println!(
                "{} -> {} (cosine {cos:.3})",
                paths[i].display(),
                paths[j].display()
            );
        }
    }
    Ok(())
}
