//! The ranked-list picture of a search: the query, then its hits in rows.

use std::path::Path;

use image::imageops::FilterType;
use image::RgbImage;
use plotters::prelude::*;

use crate::plot::{Canvas, PlotError, FONT};
use crate::search::SearchResult;

const MARGIN: u32 = 12;
const FRAME: u32 = 4;
const CAPTION: u32 = 44;
const QUERY_GAP: u32 = 24;
/// Hits per row of the picture.
pub const TILES_PER_ROW: usize = 10;
const TILE_H: u32 = 192;
/// The most hits a picture shows: 50 rows, a picture of about 3,000 x 12,600 pixels.
pub const MAX_HITS: usize = 500;

/// The frame colours of the ranked-list picture.
const QUERY_BLUE: RGBColor = RGBColor(31, 119, 180);
const MATCH_GREEN: RGBColor = RGBColor(44, 160, 44);
const OTHER_RED: RGBColor = RGBColor(214, 39, 40);
const UNKNOWN_GREY: RGBColor = RGBColor(150, 150, 150);
const EXCLUDED_AMBER: RGBColor = RGBColor(255, 170, 0);

/// A picture that cannot be drawn from the given images.
#[derive(Debug, thiserror::Error)]
pub enum RankedListError {
    /// Not one image for the query and one per hit.
    #[error("a ranked list of {hits} hits needs {} images (query first), got {images}", hits + 1)]
    ImageCount {
        /// Hits of the result.
        hits: usize,
        /// Images given.
        images: usize,
    },
    /// More hits than a picture shows.
    #[error("a ranked list of {hits} hits is more than the {MAX_HITS} a picture shows")]
    TooManyHits {
        /// Hits of the result.
        hits: usize,
    },
    /// Drawing or writing failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// A tile caption: the file name, shortened to fit.
fn short_name(path: &Path, chars: usize) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    if name.chars().count() <= chars {
        return name;
    }
    let tail: String = name.chars().rev().take(chars.saturating_sub(1)).collect();
    format!("…{}", tail.chars().rev().collect::<String>())
}

/// Draws the query and its hits, [`TILES_PER_ROW`] hits per row: the query framed blue,
/// matches green, other identities red, unknown identities grey, and same-identity
/// same-camera hits (which the evaluation protocol leaves out) amber; each tile is captioned
/// with its rank and distance, then its identity and camera or its file name.
pub fn draw_ranked_list(
    path: &Path,
    result: &SearchResult,
    images: &[RgbImage],
) -> Result<(), RankedListError> {
    if result.hits.len() > MAX_HITS {
        return Err(RankedListError::TooManyHits {
            hits: result.hits.len(),
        });
    }
    if images.len() != result.hits.len() + 1 {
        return Err(RankedListError::ImageCount {
            hits: result.hits.len(),
            images: images.len(),
        });
    }
    // Tiles keep the query's aspect ratio at a height of 192 pixels.
    let aspect = images[0].width() as f64 / images[0].height().max(1) as f64;
    let tile_w = ((TILE_H as f64 * aspect).round() as u32).clamp(64, 256);
    let columns = result.hits.len().clamp(1, TILES_PER_ROW) as u32;
    let rows = result.hits.len().div_ceil(TILES_PER_ROW).max(1) as u32;
    let (cell_w, cell_h) = (tile_w + 2 * FRAME + MARGIN, TILE_H + 2 * FRAME + CAPTION);
    let width = 2 * MARGIN + (columns + 1) * cell_w + QUERY_GAP - MARGIN;
    let height = 2 * MARGIN + rows * cell_h + (rows - 1) * MARGIN;
    // Tile 0 is the query, left of the first row; hit i sits at row i / 10, column i % 10.
    let origin = |tile: usize| -> (u32, u32) {
        if tile == 0 {
            return (MARGIN, MARGIN);
        }
        let (row, column) = (
            ((tile - 1) / TILES_PER_ROW) as u32,
            ((tile - 1) % TILES_PER_ROW) as u32,
        );
        (
            MARGIN + (column + 1) * cell_w + QUERY_GAP,
            MARGIN + row * (cell_h + MARGIN),
        )
    };
    let mut canvas = Canvas::new(width, height);
    for (i, image) in images.iter().enumerate() {
        let tile = image::imageops::resize(image, tile_w, TILE_H, FilterType::Triangle);
        let (x0, y0) = origin(i);
        let (x0, y0) = (x0 + FRAME, y0 + FRAME);
        for (x, y, pixel) in tile.enumerate_pixels() {
            let at = (((y0 + y) * width + x0 + x) * 3) as usize;
            canvas.pixels[at..at + 3].copy_from_slice(&pixel.0);
        }
    }
    let name_chars = (tile_w as usize / 8).max(6);
    canvas.draw(path, |root| {
        // Each frame is four bars around its tile, then two caption lines below.
        let draw = |tile: usize, color: RGBColor, lines: [String; 2]| -> Result<(), String> {
            let (x0, y0) = origin(tile);
            let (x0, y0) = (x0 as i32, y0 as i32);
            let x1 = x0 + (tile_w + 2 * FRAME) as i32 - 1;
            let y1 = y0 + (TILE_H + 2 * FRAME) as i32 - 1;
            let f = FRAME as i32;
            for bar in [
                [(x0, y0), (x1, y0 + f - 1)],
                [(x0, y1 - f + 1), (x1, y1)],
                [(x0, y0), (x0 + f - 1, y1)],
                [(x1 - f + 1, y0), (x1, y1)],
            ] {
                root.draw(&Rectangle::new(bar, color.filled()))
                    .map_err(|e| e.to_string())?;
            }
            for (k, line) in lines.into_iter().enumerate() {
                let style = (FONT, 14).into_font().color(&BLACK);
                root.draw(&Text::new(line, (x0 + 2, y1 + 5 + 18 * k as i32), style))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let identity = |path: &Path, pid: Option<i64>, camera: Option<i64>| match (pid, camera) {
            // The camera as file names write it (`c1` is the first).
            (Some(pid), Some(camera)) => format!("id {pid} c{camera}"),
            (Some(pid), None) => format!("id {pid}"),
            _ => short_name(path, name_chars),
        };
        draw(
            0,
            QUERY_BLUE,
            [
                "query".to_string(),
                identity(&result.query, result.query_pid, result.query_camera_in_name),
            ],
        )?;
        for (i, hit) in result.hits.iter().enumerate() {
            let color = match (hit.excluded_by_protocol, hit.is_match) {
                (true, _) => EXCLUDED_AMBER,
                (false, Some(true)) => MATCH_GREEN,
                (false, Some(false)) => OTHER_RED,
                (false, None) => UNKNOWN_GREY,
            };
            let distance = if hit.distance < 0.01 {
                format!("{:.1e}", hit.distance)
            } else {
                format!("{:.3}", hit.distance)
            };
            let second = if hit.excluded_by_protocol {
                "same camera".to_string()
            } else {
                identity(&hit.path, hit.pid, hit.camera_in_name)
            };
            draw(i + 1, color, [format!("#{} {distance}", hit.rank), second])?;
        }
        Ok(())
    })?;
    Ok(canvas.save(path)?)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::search::{search, SearchHit};

    #[test]
    fn ranked_list_picture_has_framed_tiles() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ranked.png");
        let result = SearchResult {
            query: "0001_c1.jpg".into(),
            query_pid: Some(1),
            hits: vec![
                SearchHit {
                    rank: 1,
                    path: "0001_c2.jpg".into(),
                    distance: 0.1,
                    pid: Some(1),
                    camera_in_name: Some(2),
                    is_match: Some(true),
                    excluded_by_protocol: false,
                    explanation: None,
                },
                SearchHit {
                    rank: 2,
                    path: "0002_c2.jpg".into(),
                    distance: 0.5,
                    pid: Some(2),
                    camera_in_name: Some(2),
                    is_match: Some(false),
                    excluded_by_protocol: false,
                    explanation: None,
                },
            ],
            query_camera_in_name: Some(1),
            excluded_query_files: 0,
        };
        let gray = RgbImage::from_pixel(64, 128, image::Rgb([128, 128, 128]));
        draw_ranked_list(&out, &result, &[gray.clone(), gray.clone(), gray.clone()]).unwrap();
        let picture = image::open(&out).unwrap().to_rgb8();
        let count = |rgb: [u8; 3]| picture.pixels().filter(|p| p.0 == rgb).count();
        assert!(count([31, 119, 180]) > 500, "query frame");
        assert!(count([44, 160, 44]) > 500, "match frame");
        assert!(count([214, 39, 40]) > 500, "non-match frame");
        assert!(count([128, 128, 128]) > 3 * 90 * 190, "three tiles");
        let wrong = draw_ranked_list(&out, &result, std::slice::from_ref(&gray)).unwrap_err();
        assert!(matches!(
            wrong,
            RankedListError::ImageCount { hits: 2, images: 1 }
        ));
    }

    #[test]
    fn long_lists_wrap_into_rows_and_same_camera_hits_are_marked() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ranked.png");
        let n = 32;
        let paths: Vec<PathBuf> = (0..n)
            .map(|i| PathBuf::from(format!("{:04}_c{}_x.jpg", i % 3, 1 + i % 2)))
            .collect();
        let features: Vec<f32> = (0..n).flat_map(|i| [1.0, i as f32 * 0.01]).collect();
        let result = search(
            Path::new("0000_c1_q.jpg"),
            &[1.0, 0.0],
            &paths,
            &features,
            n,
        )
        .unwrap();
        let excluded = result
            .hits
            .iter()
            .filter(|h| h.excluded_by_protocol)
            .count();
        // ids 0 on camera 1: i % 3 == 0 and i % 2 == 0, i.e. i = 0, 6, 12, 18, 24, 30.
        assert_eq!(excluded, 6);
        let gray = RgbImage::from_pixel(64, 128, image::Rgb([128, 128, 128]));
        draw_ranked_list(&out, &result, &vec![gray; n + 1]).unwrap();
        let picture = image::open(&out).unwrap().to_rgb8();
        // 10 hits per row: 4 rows, 11 columns (the query's and ten).
        assert!(
            picture.width() < 11 * 200 && picture.height() > 4 * 192,
            "{:?}",
            picture.dimensions()
        );
        let amber = picture.pixels().filter(|p| p.0 == [255, 170, 0]).count();
        assert!(amber > 6 * 500, "same-camera frames");
    }

    #[test]
    fn more_hits_than_a_picture_shows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ranked.png");
        let n = MAX_HITS + 1;
        let paths: Vec<PathBuf> = (0..n).map(|i| format!("{i:05}_c1.jpg").into()).collect();
        let features = vec![1.0f32; n];
        let result = search(Path::new("q.jpg"), &[1.0], &paths, &features, n).unwrap();
        let pixel = RgbImage::new(1, 1);
        let err = draw_ranked_list(&out, &result, &vec![pixel; n + 1]).unwrap_err();
        assert!(matches!(err, RankedListError::TooManyHits { hits } if hits == n));
        assert!(!out.exists());
    }
}
