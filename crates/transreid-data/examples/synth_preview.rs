//! Writes the default synthetic set to `<out>` and a contact sheet `<out>/preview.png`
//! (rows: identities, columns: cameras × images).
//!
//! `cargo run -p transreid-data --release --example synth_preview -- /tmp/synth`

use std::path::PathBuf;

use image::RgbImage;
use transreid_data::synth::{generate, SynthConfig};
use transreid_data::{decode_rgb, load_dataset, DatasetKind, LoadOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: synth_preview <out dir>")?,
    );
    let config = SynthConfig::new(&out);
    let summary = generate(&config)?;
    println!("{summary:#?}");
    let dataset = load_dataset(DatasetKind::Market1501, &out, &LoadOptions::default())?;
    println!("{}", dataset.stats());

    let (w, h) = (config.width, config.height);
    let rows = 8usize;
    let cols = config.cameras * config.images_per_id_per_cam;
    let mut sheet = RgbImage::new(w * cols as u32, h * rows as u32);
    for (r, pid) in (0..rows).enumerate() {
        let items: Vec<_> = dataset
            .train
            .iter()
            .filter(|i| i.pid == pid)
            .take(cols)
            .collect();
        for (c, item) in items.iter().enumerate() {
            let img = decode_rgb(&item.path)?;
            image::imageops::replace(
                &mut sheet,
                &img,
                (c as u32 * w) as i64,
                (r as u32 * h) as i64,
            );
        }
    }
    sheet.save(out.join("preview.png"))?;
    Ok(())
}
