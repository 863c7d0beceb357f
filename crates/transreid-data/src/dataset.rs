//! A loaded dataset: three lists of items plus the train-split counts the model is sized by.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::datasets::image_check::check_images;
use crate::error::{DataError, Result};
use crate::item::{ReidItem, Split};
use crate::kind::DatasetKind;
use crate::options::LoadOptions;
use crate::stats::DatasetStats;

/// A dataset as the reference's `BaseImageDataset` exposes it.
///
/// `num_train_pids`, `num_train_cams` and `num_train_views` are the distinct counts of the train
/// split (`len(set(...))`), which size the classifier and the SIE table (`cams × views` rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReidDataset {
    pub kind: DatasetKind,
    /// The dataset folder the items were read from.
    pub root: PathBuf,
    pub train: Vec<ReidItem>,
    pub query: Vec<ReidItem>,
    pub gallery: Vec<ReidItem>,
    pub num_train_pids: usize,
    pub num_train_cams: usize,
    pub num_train_views: usize,
    /// What was dropped while loading.
    pub report: LoadReport,
}

impl ReidDataset {
    /// Per-split statistics.
    pub fn stats(&self) -> DatasetStats {
        DatasetStats::of(&self.train, &self.query, &self.gallery)
    }

    /// The items of one split.
    pub fn split(&self, split: Split) -> &[ReidItem] {
        match split {
            Split::Train => &self.train,
            Split::Query => &self.query,
            Split::Gallery => &self.gallery,
        }
    }
}

/// Counts per split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: usize,
    pub query: usize,
    pub gallery: usize,
}

impl SplitCounts {
    /// Sum over the three splits.
    pub fn total(&self) -> usize {
        self.train + self.query + self.gallery
    }

    pub(crate) fn get_mut(&mut self, split: Split) -> &mut usize {
        match split {
            Split::Train => &mut self.train,
            Split::Query => &mut self.query,
            Split::Gallery => &mut self.gallery,
        }
    }
}

/// Images left out while loading, so that nothing is dropped silently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Junk images (pid −1) skipped, as the reference does.
    pub junk: SplitCounts,
    /// VeRi-776 images found in neither keypoint file, dropped as in the reference.
    pub without_viewpoint: SplitCounts,
    /// Images that failed to decode, dropped under [`crate::ImageCheck::SkipUnreadable`].
    pub unreadable: Vec<PathBuf>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = |c: &SplitCounts| {
            format!(
                "{} (train {}, query {}, gallery {})",
                c.total(),
                c.train,
                c.query,
                c.gallery
            )
        };
        writeln!(f, "junk images skipped: {}", counts(&self.junk))?;
        writeln!(
            f,
            "images without viewpoint label dropped: {}",
            counts(&self.without_viewpoint)
        )?;
        write!(f, "unreadable images dropped: {}", self.unreadable.len())
    }
}

/// The items of one split as parsed, with the folder (or list file) they came from.
#[derive(Debug, Clone)]
pub(crate) struct SplitSource {
    pub items: Vec<ReidItem>,
    pub origin: PathBuf,
}

impl SplitSource {
    pub fn new(items: Vec<ReidItem>, origin: impl Into<PathBuf>) -> Self {
        Self {
            items,
            origin: origin.into(),
        }
    }
}

/// Finishes loading: checks images as asked, rejects empty splits, relabels the train ids to
/// `0..num_train_pids` in ascending order of the original id (the reference's
/// `{pid: i for i, pid in enumerate(set(pids))}`, which is ascending for these ints) and counts.
pub(crate) fn assemble(
    kind: DatasetKind,
    root: &Path,
    splits: [SplitSource; 3],
    mut report: LoadReport,
    options: &LoadOptions,
) -> Result<ReidDataset> {
    let [mut train, mut query, mut gallery] = splits;
    for source in [&mut train, &mut query, &mut gallery] {
        check_images(
            &mut source.items,
            options.image_check,
            &mut report.unreadable,
        )?;
    }
    for (split, source) in Split::ALL.into_iter().zip([&train, &query, &gallery]) {
        if source.items.is_empty() {
            return Err(DataError::EmptySplit {
                split,
                path: source.origin.clone(),
            });
        }
    }
    let mut train = train.items;
    relabel_ascending(&mut train);
    let distinct = |f: fn(&ReidItem) -> usize| train.iter().map(f).collect::<BTreeSet<_>>().len();
    Ok(ReidDataset {
        kind,
        root: root.to_path_buf(),
        num_train_pids: distinct(|i| i.pid),
        num_train_cams: distinct(|i| i.camid),
        num_train_views: distinct(|i| i.viewid),
        train,
        query: query.items,
        gallery: gallery.items,
        report,
    })
}

/// Maps the distinct pids of `items` to `0..n` in ascending order.
pub(crate) fn relabel_ascending(items: &mut [ReidItem]) {
    let labels: BTreeMap<usize, usize> = items
        .iter()
        .map(|i| i.pid)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(label, pid)| (pid, label))
        .collect();
    for item in items {
        item.pid = labels[&item.pid];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relabels_in_ascending_order() {
        let mut items: Vec<ReidItem> = [42, 7, 42, 1501, 7]
            .into_iter()
            .map(|pid| ReidItem::new("x.jpg", pid, 0))
            .collect();
        relabel_ascending(&mut items);
        let pids: Vec<usize> = items.iter().map(|i| i.pid).collect();
        assert_eq!(pids, [1, 0, 1, 2, 0]);
    }

    #[test]
    fn empty_split_names_its_origin() {
        let splits = [
            SplitSource::new(vec![ReidItem::new("a.jpg", 3, 0)], "/d/train"),
            SplitSource::new(vec![], "/d/query"),
            SplitSource::new(vec![ReidItem::new("b.jpg", 3, 1)], "/d/gallery"),
        ];
        let err = assemble(
            DatasetKind::Custom,
            Path::new("/d"),
            splits,
            LoadReport::default(),
            &LoadOptions::default(),
        )
        .unwrap_err();
        match err {
            DataError::EmptySplit { split, path } => {
                assert_eq!(split, Split::Query);
                assert_eq!(path, Path::new("/d/query"));
            }
            other => panic!("unexpected error {other:?}"),
        }
    }
}
