//! Per-split statistics in the style of fast-reid's dataset table.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::item::ReidItem;

/// Counts of one split: distinct identities, images, distinct cameras and distinct views.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitStats {
    pub ids: usize,
    pub images: usize,
    pub cameras: usize,
    pub views: usize,
}

impl SplitStats {
    /// Counts `items` as the reference's `get_imagedata_info` does: `len(set(pids))`, `len(items)`,
    /// `len(set(camids))`, `len(set(viewids))`. Distractors (pid 0) count as one identity.
    pub fn of(items: &[ReidItem]) -> Self {
        let ids: HashSet<usize> = items.iter().map(|i| i.pid).collect();
        let cameras: HashSet<usize> = items.iter().map(|i| i.camid).collect();
        let views: HashSet<usize> = items.iter().map(|i| i.viewid).collect();
        Self {
            ids: ids.len(),
            images: items.len(),
            cameras: cameras.len(),
            views: views.len(),
        }
    }
}

/// Statistics of a whole dataset. Its JSON form is
/// `{"train": {"ids", "images", "cameras", "views"}, "query": {…}, "gallery": {…}}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetStats {
    pub train: SplitStats,
    pub query: SplitStats,
    pub gallery: SplitStats,
}

impl DatasetStats {
    /// Counts the three splits.
    pub fn of(train: &[ReidItem], query: &[ReidItem], gallery: &[ReidItem]) -> Self {
        Self {
            train: SplitStats::of(train),
            query: SplitStats::of(query),
            gallery: SplitStats::of(gallery),
        }
    }
}

/// A plain-text table:
///
/// ```text
///   subset  |  # ids | # images | # cameras | # views
///   --------+--------+----------+-----------+--------
///   train   |    751 |    12936 |         6 |       1
/// ```
impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "  --------+--------+----------+-----------+--------";
        writeln!(f, "  subset  |  # ids | # images | # cameras | # views")?;
        writeln!(f, "{RULE}")?;
        for (name, s) in [
            ("train", &self.train),
            ("query", &self.query),
            ("gallery", &self.gallery),
        ] {
            writeln!(
                f,
                "  {name:<7} | {:>6} | {:>8} | {:>9} | {:>7}",
                s.ids, s.images, s.cameras, s.views
            )?;
        }
        write!(f, "{RULE}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pid: usize, camid: usize, viewid: usize) -> ReidItem {
        ReidItem {
            path: format!("{pid}_{camid}.jpg").into(),
            pid,
            camid,
            viewid,
        }
    }

    #[test]
    fn counts_distinct_ids_cameras_and_views() {
        let items = [item(0, 0, 1), item(0, 1, 1), item(3, 1, 2), item(5, 4, 1)];
        let s = SplitStats::of(&items);
        assert_eq!(
            s,
            SplitStats {
                ids: 3,
                images: 4,
                cameras: 3,
                views: 2
            }
        );
        assert_eq!(SplitStats::of(&[]), SplitStats::default());
    }

    #[test]
    fn json_has_the_documented_keys() {
        let stats = DatasetStats::of(
            &[item(0, 0, 1)],
            &[item(7, 1, 1)],
            &[item(7, 2, 1), item(0, 2, 1)],
        );
        let value = serde_json::to_value(stats).unwrap();
        let expected = serde_json::json!({
            "train": {"ids": 1, "images": 1, "cameras": 1, "views": 1},
            "query": {"ids": 1, "images": 1, "cameras": 1, "views": 1},
            "gallery": {"ids": 2, "images": 2, "cameras": 1, "views": 1},
        });
        assert_eq!(value, expected);
        let back: DatasetStats = serde_json::from_value(value).unwrap();
        assert_eq!(back, stats);
    }

    #[test]
    fn table_lists_each_split_in_order() {
        let stats = DatasetStats {
            train: SplitStats {
                ids: 751,
                images: 12936,
                cameras: 6,
                views: 1,
            },
            query: SplitStats {
                ids: 750,
                images: 3368,
                cameras: 6,
                views: 1,
            },
            gallery: SplitStats {
                ids: 751,
                images: 15913,
                cameras: 6,
                views: 1,
            },
        };
        let text = stats.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[2],
            "  train   |    751 |    12936 |         6 |       1"
        );
        assert_eq!(
            lines[3],
            "  query   |    750 |     3368 |         6 |       1"
        );
        assert_eq!(
            lines[4],
            "  gallery |    751 |    15913 |         6 |       1"
        );
    }
}
