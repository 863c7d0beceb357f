//! Fixture builders for tests: tiny real image files and dataset trees.

use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

/// A `width × height` JPEG of one colour, encoded at quality 95.
pub fn jpeg_bytes(width: u32, height: u32, colour: [u8; 3]) -> Vec<u8> {
    let img = RgbImage::from_pixel(width, height, Rgb(colour));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(&img)
        .unwrap();
    out
}

/// Writes a small valid JPEG at `path`, creating parent folders.
pub fn write_jpeg(path: &Path) {
    write_bytes(path, &jpeg_bytes(8, 16, [90, 140, 200]));
}

/// Writes `bytes` at `path`, creating parent folders.
pub fn write_bytes(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes text at `path`, creating parent folders.
pub fn write_text(path: &Path, text: &str) {
    write_bytes(path, text.as_bytes());
}

/// Writes `img` as PNG at `path`.
pub fn write_png(path: &Path, img: &RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save_with_format(path, ImageFormat::Png).unwrap();
}

/// Writes a small JPEG at each `root/relative` path.
pub fn write_tree(root: &Path, relatives: &[&str]) {
    for relative in relatives {
        write_jpeg(&root.join(relative));
    }
}

/// A VeRi keypoint line: path, 40 coordinates, orientation.
pub fn keypoint_line(path: &str, view: usize) -> String {
    let coords: Vec<String> = (0..40).map(|i| (i * 3 % 97).to_string()).collect();
    format!("{path} {} {view}\n", coords.join(" "))
}
