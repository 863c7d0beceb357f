//! Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015).
//!
//! | subset  | ids | images | cameras |
//! |---------|----:|-------:|--------:|
//! | train   | 751 | 12,936 | 6 |
//! | query   | 750 |  3,368 | 6 |
//! | gallery | 751 | 15,913 | 6 |
//!
//! Gallery ids include the distractor id 0 (2,793 images); the 3,819 junk images (pid −1) of
//! `bounding_box_test` are skipped. Names: `0002_c1s1_000451_03.jpg` = pid 2, camera 1,
//! sequence 1, frame 451, box 3. Layout (the folder itself or a parent holding it under one of
//! [`FOLDER_NAMES`]):
//!
//! ```text
//! market1501/
//!   bounding_box_train/  0002_c1s1_000451_03.jpg …
//!   query/               0001_c1s1_001051_00.jpg …
//!   bounding_box_test/   -1_c1s1_000401_03.jpg  0000_c1s1_000151_01.jpg …
//! ```
//!
//! Reference: `datasets/market1501.py` (regex `([-\d]+)_c(\d)`, pid in 0..=1501, camera in 1..=6).

use std::path::Path;

use crate::dataset::{assemble, LoadReport, ReidDataset};
use crate::datasets::layout::resolve_dataset_dir;
use crate::datasets::name_pattern::{PidCamPattern, PidCamRules};
use crate::datasets::pid_cam_folders::{read_split_folders, SplitFolders};
use crate::error::Result;
use crate::kind::DatasetKind;
use crate::options::LoadOptions;

/// Folder names looked for under the given root.
pub const FOLDER_NAMES: &[&str] = &["market1501", "Market-1501-v15.09.15", "Market-1501"];

/// Loads Market-1501 from `root` (the dataset folder or its parent).
pub fn load(root: &Path, options: &LoadOptions) -> Result<ReidDataset> {
    let dir = resolve_dataset_dir(root, FOLDER_NAMES, SplitFolders::BOUNDING_BOX.train);
    let rules = PidCamRules {
        pattern: PidCamPattern::person(),
        pids: 0..=1501,
        cameras: 1..=6,
    };
    let mut report = LoadReport::default();
    let splits = read_split_folders(
        &dir,
        SplitFolders::BOUNDING_BOX,
        &rules,
        "Market-1501",
        &mut report,
    )?;
    assemble(DatasetKind::Market1501, &dir, splits, report, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DataError;
    use crate::item::Split;
    use crate::options::ImageCheck;
    use crate::stats::SplitStats;
    use crate::test_fixtures::{jpeg_bytes, write_bytes, write_text, write_tree};

    /// Market names with junk (−1) and distractors (0).
    fn fixture(root: &Path) {
        write_tree(
            root,
            &[
                "bounding_box_train/0002_c1s1_000451_03.jpg",
                "bounding_box_train/0002_c1s1_000551_01.jpg",
                "bounding_box_train/0002_c3s1_000076_01.jpg",
                "bounding_box_train/0007_c2s3_070952_01.jpg",
                "bounding_box_train/0007_c6s1_087331_03.jpg",
                "bounding_box_train/1501_c4s6_019646_04.jpg",
                "bounding_box_train/-1_c1s1_000401_03.jpg",
                "query/0003_c1s1_001051_00.jpg",
                "query/0005_c2s1_000301_00.jpg",
                "query/0005_c5s1_000401_00.jpg",
                "bounding_box_test/0003_c2s1_000676_01.jpg",
                "bounding_box_test/0003_c4s1_000176_03.jpg",
                "bounding_box_test/0005_c1s1_001251_02.jpg",
                "bounding_box_test/0000_c3s1_000151_01.jpg",
                "bounding_box_test/0000_c6s1_000551_02.jpg",
                "bounding_box_test/-1_c1s1_000401_03.jpg",
                "bounding_box_test/-1_c2s1_000201_01.jpg",
            ],
        );
        write_text(&root.join("bounding_box_train/Thumbs.db"), "not an image");
    }

    #[test]
    fn parses_counts_relabels_and_skips_junk() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        let stats = d.stats();
        assert_eq!(
            stats.train,
            SplitStats {
                ids: 3,
                images: 6,
                cameras: 5,
                views: 1
            }
        );
        assert_eq!(
            stats.query,
            SplitStats {
                ids: 2,
                images: 3,
                cameras: 3,
                views: 1
            }
        );
        assert_eq!(
            stats.gallery,
            SplitStats {
                ids: 3,
                images: 5,
                cameras: 5,
                views: 1
            }
        );
        assert_eq!(
            (d.num_train_pids, d.num_train_cams, d.num_train_views),
            (3, 5, 1)
        );
        assert_eq!(
            (
                d.report.junk.train,
                d.report.junk.query,
                d.report.junk.gallery
            ),
            (1, 0, 2)
        );
        // sorted paths; pids 2, 7, 1501 → 0, 1, 2; c3 → camid 2
        let train: Vec<(usize, usize)> = d.train.iter().map(|i| (i.pid, i.camid)).collect();
        assert_eq!(train, [(0, 0), (0, 0), (0, 2), (1, 1), (1, 5), (2, 3)]);
        // query and gallery keep raw ids; distractors keep pid 0
        let gallery: Vec<(usize, usize)> = d.gallery.iter().map(|i| (i.pid, i.camid)).collect();
        assert_eq!(gallery, [(0, 2), (0, 5), (3, 1), (3, 3), (5, 0)]);
        assert_eq!(d.root, tmp.path());
    }

    #[test]
    fn finds_the_dataset_under_its_usual_name() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(&tmp.path().join("Market-1501-v15.09.15"));
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(d.root, tmp.path().join("Market-1501-v15.09.15"));
        assert_eq!(d.train.len(), 6);
    }

    #[test]
    fn missing_folder_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        std::fs::remove_dir_all(tmp.path().join("query")).unwrap();
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::MissingDir { path, .. }) => assert_eq!(path, tmp.path().join("query")),
            other => panic!("expected MissingDir, got {other:?}"),
        }
    }

    #[test]
    fn unparsable_name_and_out_of_range_camera_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let bad = tmp.path().join("query/person.jpg");
        write_tree(tmp.path(), &["query/person.jpg"]);
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::UnparsableName { path, .. }) => assert_eq!(path, bad),
            other => panic!("expected UnparsableName, got {other:?}"),
        }
        std::fs::remove_file(&bad).unwrap();
        write_tree(tmp.path(), &["query/0005_c7s1_000401_00.jpg"]);
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::OutOfRange { field, value, .. }) => {
                assert_eq!((field, value), ("camera", 7))
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn split_of_only_junk_is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        for entry in std::fs::read_dir(tmp.path().join("query")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        write_tree(tmp.path(), &["query/-1_c1s1_000001_00.jpg"]);
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::EmptySplit { split, path }) => {
                assert_eq!(split, Split::Query);
                assert_eq!(path, tmp.path().join("query"));
            }
            other => panic!("expected EmptySplit, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_and_truncated_images_fail_or_are_skipped_on_request() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let corrupt = tmp.path().join("bounding_box_test/0003_c5s1_000001_01.jpg");
        write_bytes(&corrupt, b"\xFF\xD8garbage");
        let full = jpeg_bytes(16, 32, [1, 2, 3]);
        let truncated = tmp.path().join("query/0003_c6s1_000001_00.jpg");
        write_bytes(&truncated, &full[..full.len() / 2]);

        // unchecked loading only lists files
        assert_eq!(
            load(tmp.path(), &LoadOptions::default())
                .unwrap()
                .gallery
                .len(),
            6
        );
        let verify = LoadOptions {
            image_check: ImageCheck::Verify,
            ..LoadOptions::default()
        };
        match load(tmp.path(), &verify) {
            Err(DataError::Truncated { path }) => assert_eq!(path, truncated),
            other => panic!("expected Truncated, got {other:?}"),
        }
        let skip = LoadOptions {
            image_check: ImageCheck::SkipUnreadable,
            ..LoadOptions::default()
        };
        let d = load(tmp.path(), &skip).unwrap();
        assert_eq!((d.query.len(), d.gallery.len()), (3, 5));
        assert_eq!(d.report.unreadable, vec![truncated, corrupt]);
    }
}
