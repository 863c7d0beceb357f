//! Searching a gallery with a query image (the picture: [`crate::ranked_list`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use transreid_data::labels_from_name;
use transreid_eval::{rank_gallery, Distance, FeatureDistances, FeatureNorm, Features};

/// One gallery image of a ranked list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// 1-based rank.
    pub rank: usize,
    /// The gallery image.
    pub path: PathBuf,
    /// Squared Euclidean distance between the L2-normalised features (0 to 4; rounding below 0
    /// is clamped to 0).
    pub distance: f32,
    /// Identity read from the file name, when it follows the `<pid>_c<camera>` convention.
    pub pid: Option<i64>,
    /// Camera number as the file name writes it (1-based: `c1` is 1), not the model's 0-based
    /// camera id (which is one less).
    #[serde(default, alias = "camera")]
    pub camera_in_name: Option<i64>,
    /// Whether the identity equals the query's, when both are known.
    pub is_match: Option<bool>,
    /// Same identity and same camera as the query: the evaluation protocol leaves such gallery
    /// images out when it scores the query.
    #[serde(default)]
    pub excluded_by_protocol: bool,
    /// The picture explaining why this hit matches the query (`search --explain`), with its
    /// raw maps beside it (`.safetensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<PathBuf>,
}

/// A query and its top-ranked gallery images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The query image.
    pub query: PathBuf,
    /// Its identity, when its file name tells it.
    pub query_pid: Option<i64>,
    /// Its camera number as the file name writes it (1-based), when it tells it.
    #[serde(default, alias = "query_camera")]
    pub query_camera_in_name: Option<i64>,
    /// The best `top_k` gallery images, nearest first (ties by gallery order).
    pub hits: Vec<SearchHit>,
    /// Gallery entries left out because they are the query file itself.
    #[serde(default)]
    pub excluded_query_files: usize,
}

/// Whether two paths name the same file (by their canonical form when both exist).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Ranks `gallery` (`[n, dim]` row-major, paths in `gallery_paths`) by distance to one query
/// feature, as evaluation does (L2-normalised, squared Euclidean), and keeps the best `top_k`.
/// The query file itself is left out of its own gallery.
pub fn search(
    query_path: &Path,
    query_feature: &[f32],
    gallery_paths: &[PathBuf],
    gallery_features: &[f32],
    top_k: usize,
) -> Result<SearchResult, transreid_eval::EvalError> {
    let dim = query_feature.len();
    let gallery = Features::new(gallery_features, dim)?;
    if gallery.len() != gallery_paths.len() {
        return Err(transreid_eval::EvalError::RowCount {
            set: transreid_eval::FeatureSet::Gallery,
            rows: gallery.len(),
            labels: gallery_paths.len(),
        });
    }
    let distances = FeatureDistances::new(
        Features::new(query_feature, dim)?,
        gallery,
        Distance::SquaredEuclidean,
        FeatureNorm::L2,
    )?
    .to_dense();
    let query_labels = labels_from_name(query_path);
    let query_pid = query_labels.map(|l| l.pid);
    let query_camera = query_labels.and_then(|l| l.camera);
    let is_query: Vec<bool> = gallery_paths
        .iter()
        .map(|p| same_file(p, query_path))
        .collect();
    let hits = rank_gallery(&distances)
        .into_iter()
        .filter(|&j| !is_query[j])
        .take(top_k)
        .enumerate()
        .map(|(i, j)| {
            let labels = labels_from_name(&gallery_paths[j]);
            let (pid, camera) = (labels.map(|l| l.pid), labels.and_then(|l| l.camera));
            let is_match = query_pid.zip(pid).map(|(q, g)| q == g);
            SearchHit {
                rank: i + 1,
                path: gallery_paths[j].clone(),
                distance: distances[j].max(0.0),
                pid,
                camera_in_name: camera,
                is_match,
                excluded_by_protocol: is_match == Some(true)
                    && query_camera.is_some()
                    && camera == query_camera,
                explanation: None,
            }
        })
        .collect();
    Ok(SearchResult {
        query: query_path.to_path_buf(),
        query_pid,
        query_camera_in_name: query_camera,
        hits,
        excluded_query_files: is_query.iter().filter(|&&q| q).count(),
    })
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
    fn features_and_paths_must_agree() {
        let paths = vec![PathBuf::from("0001_c1_a.jpg")];
        let err = search(
            Path::new("q.jpg"),
            &[1.0, 0.0],
            &paths,
            &[1.0, 0.0, 0.0, 1.0],
            1,
        );
        assert!(matches!(
            err,
            Err(transreid_eval::EvalError::RowCount {
                rows: 2,
                labels: 1,
                ..
            })
        ));
    }

    #[test]
    fn the_query_is_not_in_its_own_gallery_and_distances_are_not_negative() {
        let dir = tempfile::tempdir().unwrap();
        let query = dir.path().join("0001_c1_q.jpg");
        std::fs::write(&query, b"x").unwrap();
        let gallery = vec![query.clone(), PathBuf::from("0001_c2_g.jpg")];
        let result = search(&query, &[1.0, 0.0], &gallery, &[1.0, 0.0, 1.0, 1e-4], 5).unwrap();
        assert_eq!(result.hits.len(), 1);
        assert_eq!(result.excluded_query_files, 1);
        assert_eq!(result.hits[0].path, gallery[1]);
        assert!(result.hits[0].distance >= 0.0);
    }
}
