//! The picture of an explanation: each image beside its map laid over it in a perceptual
//! colour map (viridis), a colour bar and the similarity written above.

use std::path::Path;

use image::imageops::FilterType;
use image::RgbImage;
use plotters::prelude::*;

use crate::plot::{Canvas, PlotError, FONT};

const MARGIN: u32 = 16;
const TILE_H: u32 = 256;
const TILE_GAP: u32 = 6;
const PAIR_GAP: u32 = 28;
const HEADER: u32 = 86;
const CAPTION: u32 = 24;
const BAR_W: u32 = 18;
const BAR_LABELS: u32 = 44;
/// Weight of the colour map over the image in an overlay.
const ALPHA: f32 = 0.55;

/// One image of the picture and its map.
pub struct ExplainPanel<'a> {
    /// The image as decoded.
    pub image: &'a RgbImage,
    /// Its map at the model's input size, row-major, in `[0, 1]`.
    pub map: &'a [f32],
    /// The caption under the pair of tiles, e.g. `query: 0001_c1s1_000151_01.jpg`.
    pub caption: String,
}

/// A picture that cannot be drawn from the given panels.
#[derive(Debug, thiserror::Error)]
pub enum ExplainPictureError {
    /// No panel.
    #[error("an explanation picture needs at least one image")]
    NoPanels,
    /// A map that does not hold one value per input pixel.
    #[error("map {index} holds {len} values, not {height} x {width}")]
    MapLen {
        /// The panel.
        index: usize,
        /// Values it holds.
        len: usize,
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
    },
    /// Drawing or writing failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Viridis at `v` in `[0, 1]` (clamped).
fn colour(v: f32) -> [u8; 3] {
    use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
    let RGBColor(r, g, b) = ViridisRGB.get_color(v.clamp(0.0, 1.0));
    [r, g, b]
}

/// The map sampled bilinearly (pixel centres, no corner alignment) at a tile's pixels.
fn resample(map: &[f32], [h, w]: [usize; 2], tile_w: u32, tile_h: u32) -> Vec<f32> {
    let coordinate = |i: u32, tile: u32, size: usize| {
        let c = ((i as f32 + 0.5) * size as f32 / tile as f32 - 0.5).clamp(0.0, (size - 1) as f32);
        let low = c.floor() as usize;
        (low, (low + 1).min(size - 1), c - low as f32)
    };
    let mut out = Vec::with_capacity((tile_w * tile_h) as usize);
    for y in 0..tile_h {
        let (y0, y1, fy) = coordinate(y, tile_h, h);
        for x in 0..tile_w {
            let (x0, x1, fx) = coordinate(x, tile_w, w);
            let at = |yy: usize, xx: usize| map[yy * w + xx];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Draws each panel's image and its overlay side by side, panels left to right, with
/// `header` (up to three lines) above and a colour bar titled `legend` on the right.
pub fn draw_explanation(
    path: &Path,
    panels: &[ExplainPanel<'_>],
    map_size: [usize; 2],
    header: &[String],
    legend: &str,
) -> Result<(), ExplainPictureError> {
    if panels.is_empty() {
        return Err(ExplainPictureError::NoPanels);
    }
    let [h, w] = map_size;
    if let Some((index, panel)) = panels
        .iter()
        .enumerate()
        .find(|(_, p)| p.map.len() != h * w || h == 0 || w == 0)
    {
        return Err(ExplainPictureError::MapLen {
            index,
            len: panel.map.len(),
            height: h,
            width: w,
        });
    }
    // Tiles at the model input's aspect ratio (what the map covers).
    let tile_w = ((TILE_H as f64 * w as f64 / h as f64).round() as u32).clamp(48, 512);
    let panel_w = 2 * tile_w + TILE_GAP;
    let count = panels.len() as u32;
    // Wide enough for the header's lines, whatever the panels need.
    let width = (2 * MARGIN + count * panel_w + count * PAIR_GAP + BAR_W + BAR_LABELS).max(640);
    let height = MARGIN + HEADER + TILE_H + CAPTION + MARGIN;
    let top = MARGIN + HEADER;
    let panel_x = |i: u32| MARGIN + i * (panel_w + PAIR_GAP);
    let mut canvas = Canvas::new(width, height);
    let mut put = |x0: u32, y0: u32, x: u32, y: u32, rgb: [u8; 3]| {
        let at = (((y0 + y) * width + x0 + x) * 3) as usize;
        canvas.pixels[at..at + 3].copy_from_slice(&rgb);
    };
    for (i, panel) in panels.iter().enumerate() {
        let tile = image::imageops::resize(panel.image, tile_w, TILE_H, FilterType::Triangle);
        let map = resample(panel.map, map_size, tile_w, TILE_H);
        let x0 = panel_x(i as u32);
        for (x, y, pixel) in tile.enumerate_pixels() {
            put(x0, top, x, y, pixel.0);
            let heat = colour(map[(y * tile_w + x) as usize]);
            let blend: [u8; 3] = std::array::from_fn(|c| {
                (pixel.0[c] as f32 * (1.0 - ALPHA) + heat[c] as f32 * ALPHA).round() as u8
            });
            put(x0 + tile_w + TILE_GAP, top, x, y, blend);
        }
    }
    let bar_x = MARGIN + count * (panel_w + PAIR_GAP);
    for y in 0..TILE_H {
        let rgb = colour(1.0 - y as f32 / (TILE_H - 1) as f32);
        for x in 0..BAR_W {
            put(bar_x, top, x, y, rgb);
        }
    }
    canvas.draw(path, |root| {
        let text = |s: &str, x: u32, y: u32, size: u32| {
            let style = (FONT, size).into_font().color(&BLACK);
            root.draw(&Text::new(s.to_string(), (x as i32, y as i32), style))
                .map_err(|e| e.to_string())
        };
        for (k, line) in header.iter().take(3).enumerate() {
            let (y, size) = if k == 0 {
                (0, 18)
            } else {
                (6 + 20 * k as u32, 14)
            };
            text(line, MARGIN, MARGIN + y, size)?;
        }
        for (i, panel) in panels.iter().enumerate() {
            text(&panel.caption, panel_x(i as u32), top + TILE_H + 6, 14)?;
        }
        for (label, y) in [("1", 0), ("0.5", TILE_H / 2 - 7), ("0", TILE_H - 14)] {
            text(label, bar_x + BAR_W + 4, top + y, 13)?;
        }
        text(legend, bar_x.saturating_sub(40), top - 18, 13)
    })?;
    Ok(canvas.save(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_shows_the_map_and_the_image_stays_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("explain.png");
        let image = RgbImage::from_pixel(32, 64, image::Rgb([128, 128, 128]));
        // The top half of the map at 1, the bottom half at 0.
        let map: Vec<f32> = (0..64 * 32)
            .map(|i| if i < 32 * 32 { 1.0 } else { 0.0 })
            .collect();
        let panels = [
            ExplainPanel {
                image: &image,
                map: &map,
                caption: "query: a.jpg".into(),
            },
            ExplainPanel {
                image: &image,
                map: &map,
                caption: "gallery: b.jpg".into(),
            },
        ];
        let header = ["cosine similarity 0.50".to_string()];
        draw_explanation(&out, &panels, [64, 32], &header, "relevance").unwrap();
        let picture = image::open(&out).unwrap().to_rgb8();
        let top = MARGIN + HEADER;
        let (tile_w, x_overlay) = (128, MARGIN + 128 + TILE_GAP);
        assert_eq!(picture.height(), top + TILE_H + CAPTION + MARGIN);
        // The plain tile is the image; the overlay is yellow-ish on top, purple at the bottom.
        assert_eq!(picture.get_pixel(MARGIN + 10, top + 10).0, [128, 128, 128]);
        let hot = picture.get_pixel(x_overlay + tile_w / 2, top + 20).0;
        let cold = picture
            .get_pixel(x_overlay + tile_w / 2, top + TILE_H - 20)
            .0;
        assert!(
            hot[1] > cold[1] + 60 && cold[2] > cold[1],
            "{hot:?} vs {cold:?}"
        );
        let wrong = [ExplainPanel {
            image: &image,
            map: &map[1..],
            caption: String::new(),
        }];
        assert!(matches!(
            draw_explanation(&out, &wrong, [64, 32], &header, ""),
            Err(ExplainPictureError::MapLen { index: 0, .. })
        ));
        assert!(matches!(
            draw_explanation(&out, &[], [64, 32], &header, ""),
            Err(ExplainPictureError::NoPanels)
        ));
    }
}
