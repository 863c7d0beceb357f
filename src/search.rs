//! Searching a gallery with a query image and drawing the ranked list.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::RgbImage;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use transreid_eval::{rank_gallery, Distance, FeatureDistances, FeatureNorm, Features};

use crate::file_name::pid_from_name;
use crate::plot::{Canvas, PlotError, FONT};

/// One gallery image of a ranked list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// 1-based rank.
    pub rank: usize,
    /// The gallery image.
    pub path: PathBuf,
    /// Squared Euclidean distance between the L2-normalised features (0 to 4).
    pub distance: f32,
    /// Identity read from the file name, when it follows the `<pid>_c<camera>` convention.
    pub pid: Option<i64>,
    /// Whether the identity equals the query's, when both are known.
    pub is_match: Option<bool>,
}

/// A query and its top-ranked gallery images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The query image.
    pub query: PathBuf,
    /// Its identity, when its file name tells it.
    pub query_pid: Option<i64>,
    /// The best `top_k` gallery images, nearest first (ties by gallery order).
    pub hits: Vec<SearchHit>,
}

/// Ranks `gallery` (`[n, dim]` row-major, paths in `gallery_paths`) by distance to one query
/// feature, as evaluation does (L2-normalised, squared Euclidean), and keeps the best `top_k`.
pub fn search(
    query_path: &Path,
    query_feature: &[f32],
    gallery_paths: &[PathBuf],
    gallery_features: &[f32],
    top_k: usize,
) -> Result<SearchResult, transreid_eval::EvalError> {
    let dim = query_feature.len();
    let distances = FeatureDistances::new(
        Features::new(query_feature, dim)?,
        Features::new(gallery_features, dim)?,
        Distance::SquaredEuclidean,
        FeatureNorm::L2,
    )?
    .to_dense();
    let query_pid = pid_from_name(query_path);
    let hits = rank_gallery(&distances)
        .into_iter()
        .take(top_k)
        .enumerate()
        .map(|(i, j)| {
            let pid = pid_from_name(&gallery_paths[j]);
            SearchHit {
                rank: i + 1,
                path: gallery_paths[j].clone(),
                distance: distances[j],
                pid,
                is_match: query_pid.zip(pid).map(|(q, g)| q == g),
            }
        })
        .collect();
    Ok(SearchResult {
        query: query_path.to_path_buf(),
        query_pid,
        hits,
    })
}

const MARGIN: u32 = 12;
const FRAME: u32 = 4;
const CAPTION: u32 = 26;
const QUERY_GAP: u32 = 24;

/// Draws the query and its hits in a row: the query framed blue, matches green, non-matches
/// red, unknown identities grey; each tile captioned with its rank and distance.
pub fn draw_ranked_list(
    path: &Path,
    result: &SearchResult,
    images: &[RgbImage],
) -> Result<(), PlotError> {
    assert_eq!(
        images.len(),
        result.hits.len() + 1,
        "query image then one per hit"
    );
    // Tiles keep the query's aspect ratio at a height of 192 pixels.
    let tile_h = 192u32;
    let aspect = images[0].width() as f64 / images[0].height().max(1) as f64;
    let tile_w = ((tile_h as f64 * aspect).round() as u32).clamp(64, 256);
    let tiles = images.len() as u32;
    let width = 2 * MARGIN + tiles * (tile_w + 2 * FRAME) + (tiles - 1) * MARGIN + QUERY_GAP;
    let height = 2 * MARGIN + tile_h + 2 * FRAME + CAPTION;
    let mut canvas = Canvas::new(width, height);
    let x_of =
        |i: u32| MARGIN + i * (tile_w + 2 * FRAME + MARGIN) + if i > 0 { QUERY_GAP } else { 0 };
    for (i, image) in images.iter().enumerate() {
        let tile = image::imageops::resize(image, tile_w, tile_h, FilterType::Triangle);
        let (x0, y0) = (x_of(i as u32) + FRAME, MARGIN + FRAME);
        for (x, y, pixel) in tile.enumerate_pixels() {
            let at = (((y0 + y) * width + x0 + x) * 3) as usize;
            canvas.pixels[at..at + 3].copy_from_slice(&pixel.0);
        }
    }
    canvas.draw(path, |root| {
        // Each frame is four bars around its tile, then the caption below.
        let draw = |i: u32, color: RGBColor, text: String| -> Result<(), String> {
            let (x0, y0) = (x_of(i) as i32, MARGIN as i32);
            let x1 = x0 + (tile_w + 2 * FRAME) as i32 - 1;
            let y1 = y0 + (tile_h + 2 * FRAME) as i32 - 1;
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
            let style = (FONT, 15).into_font().color(&BLACK);
            root.draw(&Text::new(text, (x0 + 2, y1 + 7), style))
                .map_err(|e| e.to_string())
        };
        draw(0, RGBColor(31, 119, 180), "query".to_string())?;
        for (i, hit) in result.hits.iter().enumerate() {
            let color = match hit.is_match {
                Some(true) => RGBColor(44, 160, 44),
                Some(false) => RGBColor(214, 39, 40),
                None => RGBColor(150, 150, 150),
            };
            let distance = if hit.distance < 0.01 {
                format!("{:.1e}", hit.distance)
            } else {
                format!("{:.3}", hit.distance)
            };
            draw(i as u32 + 1, color, format!("#{} {distance}", hit.rank))?;
        }
        Ok(())
    })?;
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_ranks_by_distance_and_marks_matches() {
        let gallery_paths: Vec<PathBuf> = ["0001_c2_a.jpg", "0002_c2_b.jpg", "0001_c3_c.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        // Query along x; gallery 0 at 90 degrees, 1 at 180, 2 close to x.
        let gallery = [0.0, 1.0, -1.0, 0.0, 0.9, 0.1];
        let result = search(
            Path::new("0001_c1_q.jpg"),
            &[2.0, 0.0],
            &gallery_paths,
            &gallery,
            2,
        )
        .unwrap();
        assert_eq!(result.query_pid, Some(1));
        assert_eq!(result.hits.len(), 2);
        assert_eq!(result.hits[0].path, gallery_paths[2]);
        assert_eq!(result.hits[0].is_match, Some(true));
        let expected = 2.0 - 2.0 * 0.9 / (0.9f32 * 0.9 + 0.1 * 0.1).sqrt();
        assert!((result.hits[0].distance - expected).abs() < 1e-6);
        assert_eq!(result.hits[1].path, gallery_paths[0]);
        assert!((result.hits[1].distance - 2.0).abs() < 1e-6);
        assert_eq!(result.hits[1].rank, 2);
    }

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
                    is_match: Some(true),
                },
                SearchHit {
                    rank: 2,
                    path: "0002_c2.jpg".into(),
                    distance: 0.5,
                    pid: Some(2),
                    is_match: Some(false),
                },
            ],
        };
        let gray = RgbImage::from_pixel(64, 128, image::Rgb([128, 128, 128]));
        draw_ranked_list(&out, &result, &[gray.clone(), gray.clone(), gray]).unwrap();
        let picture = image::open(&out).unwrap().to_rgb8();
        let count = |rgb: [u8; 3]| picture.pixels().filter(|p| p.0 == rgb).count();
        assert!(count([31, 119, 180]) > 500, "query frame");
        assert!(count([44, 160, 44]) > 500, "match frame");
        assert!(count([214, 39, 40]) > 500, "non-match frame");
        assert!(count([128, 128, 128]) > 3 * 90 * 190, "three tiles");
    }
}
