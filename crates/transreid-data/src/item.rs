//! One labelled image and the split it belongs to.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One image of a re-identification dataset: the reference's `(img_path, pid, camid, viewid)`.
///
/// * `pid`: in the train split the relabelled class index `0..num_train_pids`; in query and
///   gallery the dataset's own identity number (0 marks Market-style distractors).
/// * `camid`: 0-based camera index (Market `c1` is 0).
/// * `viewid`: the viewpoint label; 1 for every dataset without viewpoint annotations, as in the
///   reference, and the VeRi-776 orientation `0..=7` (or a custom view column) otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReidItem {
    pub path: PathBuf,
    pub pid: usize,
    pub camid: usize,
    pub viewid: usize,
}

impl ReidItem {
    /// An item with the reference's default viewpoint label 1.
    pub fn new(path: impl Into<PathBuf>, pid: usize, camid: usize) -> Self {
        Self {
            path: path.into(),
            pid,
            camid,
            viewid: NO_VIEW_LABEL,
        }
    }
}

/// The view id the reference gives every image of a dataset without viewpoint labels.
pub const NO_VIEW_LABEL: usize = 1;

/// The three splits of a re-identification benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Query,
    Gallery,
}

impl Split {
    /// All splits in the order train, query, gallery.
    pub const ALL: [Split; 3] = [Split::Train, Split::Query, Split::Gallery];

    /// Lower-case name, as used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Query => "query",
            Split::Gallery => "gallery",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
