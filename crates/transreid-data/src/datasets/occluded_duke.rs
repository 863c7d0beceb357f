//! Occluded-Duke (Miao et al., "Pose-Guided Feature Alignment for Occluded Person
//! Re-Identification", ICCV 2019), a re-split of DukeMTMC-reID with occluded queries.
//!
//! | subset  |   ids | images | cameras |
//! |---------|------:|-------:|--------:|
//! | train   |   702 | 15,618 | 8 |
//! | query   |   519 |  2,210 | 8 |
//! | gallery | 1,110 | 17,661 | 8 |
//!
//! Same names and parsing as DukeMTMC-reID. Layout:
//!
//! ```text
//! Occluded_Duke/
//!   bounding_box_train/  query/  bounding_box_test/
//! ```
//!
//! Reference: `datasets/occ_duke.py`.

use std::path::Path;

use crate::dataset::{assemble, LoadReport, ReidDataset};
use crate::datasets::dukemtmc::duke_rules;
use crate::datasets::layout::resolve_dataset_dir;
use crate::datasets::pid_cam_folders::{read_split_folders, SplitFolders};
use crate::error::Result;
use crate::kind::DatasetKind;
use crate::options::LoadOptions;

/// Folder names looked for under the given root.
pub const FOLDER_NAMES: &[&str] = &["Occluded_Duke", "Occluded-Duke", "occluded_duke"];

/// Loads Occluded-Duke from `root` (the dataset folder or its parent).
pub fn load(root: &Path, options: &LoadOptions) -> Result<ReidDataset> {
    let dir = resolve_dataset_dir(root, FOLDER_NAMES, SplitFolders::BOUNDING_BOX.train);
    let mut report = LoadReport::default();
    let splits = read_split_folders(
        &dir,
        SplitFolders::BOUNDING_BOX,
        &duke_rules(),
        "Occluded-Duke",
        &mut report,
    )?;
    assemble(DatasetKind::OccludedDuke, &dir, splits, report, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DataError;
    use crate::test_fixtures::write_tree;

    #[test]
    fn reads_the_occluded_duke_folder() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(
            &tmp.path().join("Occluded_Duke"),
            &[
                "bounding_box_train/0001_c2_f0046182.jpg",
                "bounding_box_train/0003_c1_f0044158.jpg",
                "query/0007_c3_f0046985.jpg",
                "bounding_box_test/0007_c4_f0044158.jpg",
                "bounding_box_test/0009_c8_f0044159.jpg",
            ],
        );
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(d.kind, DatasetKind::OccludedDuke);
        assert_eq!((d.train.len(), d.query.len(), d.gallery.len()), (2, 1, 2));
        assert_eq!((d.num_train_pids, d.num_train_cams), (2, 2));
        assert_eq!(d.gallery[1].camid, 7);
    }

    #[test]
    fn empty_root_reports_the_train_folder() {
        let tmp = tempfile::tempdir().unwrap();
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::MissingDir { path, .. }) => {
                assert_eq!(path, tmp.path().join("bounding_box_train"))
            }
            other => panic!("expected MissingDir, got {other:?}"),
        }
    }
}
