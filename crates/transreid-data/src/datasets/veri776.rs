//! VeRi-776 (Liu et al., "A Deep Learning-Based Approach to Progressive Vehicle
//! Re-identification for Urban Surveillance", ECCV 2016) with viewpoint labels.
//!
//! | subset  | ids | images | cameras | views |
//! |---------|----:|-------:|--------:|------:|
//! | train   | 576 | 37,778 | 20 | 8 |
//! | query   | 200 |  1,678 | 19 | 8 |
//! | gallery | 200 | 11,579 | 19 | 8 |
//!
//! (image counts before dropping images that have no keypoint line). Names:
//! `0002_c002_00030600_0.jpg` = vehicle 2, camera 2. The viewpoint (orientation `0..=7`) is the
//! last field of the image's line in `keypoint_train.txt`, else in `keypoint_test.txt`, looked up
//! by file name; as in the reference, images found in neither are dropped and counted in
//! [`crate::LoadReport::without_viewpoint`]. The keypoint files (lines: `<path> <40 keypoint
//! coordinates> <orientation>`) are not part of the VeRi download; their folder is
//! [`crate::LoadOptions::veri_keypoint_dir`], by default the dataset folder.
//!
//! ```text
//! VeRi/
//!   image_train/  0001_c001_00016450_0.jpg …
//!   image_query/  0002_c002_00030600_0.jpg …
//!   image_test/   0002_c002_00030600_0.jpg …
//!   keypoint_train.txt  keypoint_test.txt   (or in veri_keypoint_dir)
//! ```
//!
//! Reference: `datasets/veri.py` (regex `([-\d]+)_c(\d+)`, pid in 0..=776, camera in 1..=20).

use std::collections::HashMap;
use std::path::Path;

use crate::dataset::{assemble, LoadReport, ReidDataset};
use crate::datasets::layout::{read_lines, require_file, resolve_dataset_dir};
use crate::datasets::name_pattern::{PidCamPattern, PidCamRules};
use crate::datasets::pid_cam_folders::{check_range, read_split_folders, SplitFolders};
use crate::error::{DataError, Result};
use crate::item::Split;
use crate::kind::DatasetKind;
use crate::options::LoadOptions;

/// Folder names looked for under the given root.
pub const FOLDER_NAMES: &[&str] = &["VeRi", "VeRi-776", "VeRi776"];

/// VeRi's split folders.
const FOLDERS: SplitFolders = SplitFolders {
    train: "image_train",
    query: "image_query",
    gallery: "image_test",
};

const LAYOUT: &str = "VeRi-776";

/// Loads VeRi-776 from `root` (the dataset folder or its parent).
pub fn load(root: &Path, options: &LoadOptions) -> Result<ReidDataset> {
    let dir = resolve_dataset_dir(root, FOLDER_NAMES, FOLDERS.train);
    let keypoint_dir = options
        .veri_keypoint_dir
        .clone()
        .unwrap_or_else(|| dir.clone());
    let train_keypoints = keypoint_dir.join("keypoint_train.txt");
    let test_keypoints = keypoint_dir.join("keypoint_test.txt");
    require_file(&train_keypoints, LAYOUT)?;
    require_file(&test_keypoints, LAYOUT)?;
    let rules = PidCamRules {
        pattern: PidCamPattern::vehicle(),
        pids: 0..=776,
        cameras: 1..=20,
    };
    let mut report = LoadReport::default();
    let mut splits = read_split_folders(&dir, FOLDERS, &rules, LAYOUT, &mut report)?;
    let train_views = read_views(&train_keypoints)?;
    let test_views = read_views(&test_keypoints)?;
    for (split, source) in Split::ALL.into_iter().zip(splits.iter_mut()) {
        let dropped = report.without_viewpoint.get_mut(split);
        source.items.retain_mut(|item| {
            let name = item
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            match train_views.get(name).or_else(|| test_views.get(name)) {
                Some(&view) => {
                    item.viewid = view;
                    true
                }
                None => {
                    *dropped += 1;
                    false
                }
            }
        });
    }
    assemble(DatasetKind::Veri776, &dir, splits, report, options)
}

/// Maps image file names to the orientation (last field) of their keypoint line.
fn read_views(path: &Path) -> Result<HashMap<String, usize>> {
    let mut views = HashMap::new();
    for (line, content) in read_lines(path)? {
        let unparsable = || DataError::UnparsableLine {
            path: path.to_path_buf(),
            line,
            content: content.clone(),
            expected: "`<image path> <keypoints…> <orientation>`",
        };
        let fields: Vec<&str> = content.split_whitespace().collect();
        if fields.len() < 2 {
            return Err(unparsable());
        }
        let view: i64 = fields[fields.len() - 1].parse().map_err(|_| unparsable())?;
        check_range(path, "orientation", view, &0, &7)?;
        let name = Path::new(fields[0])
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(unparsable)?;
        views.insert(name.to_string(), view as usize);
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitStats;
    use crate::test_fixtures::{keypoint_line, write_text, write_tree};

    fn fixture(root: &Path, keypoints: &Path) {
        write_tree(
            root,
            &[
                "image_train/0001_c001_00016450_0.jpg",
                "image_train/0001_c002_00016455_0.jpg",
                "image_train/0003_c020_00020000_1.jpg",
                "image_train/0003_c005_00020010_0.jpg",
                "image_query/0002_c003_00030600_0.jpg",
                "image_test/0002_c004_00030700_0.jpg",
                "image_test/0002_c003_00030600_0.jpg",
                "image_test/0004_c004_00031000_0.jpg",
                "image_test/-1_c001_00000001_0.jpg",
            ],
        );
        let train: String = [
            keypoint_line("image_train/0001_c001_00016450_0.jpg", 3),
            keypoint_line("image_train/0001_c002_00016455_0.jpg", 0),
            keypoint_line("image_train/0003_c020_00020000_1.jpg", 7),
        ]
        .concat();
        let test: String = [
            keypoint_line("image_test/0002_c004_00030700_0.jpg", 5),
            keypoint_line("image_test/0002_c003_00030600_0.jpg", 2),
        ]
        .concat();
        write_text(&keypoints.join("keypoint_train.txt"), &train);
        write_text(&keypoints.join("keypoint_test.txt"), &test);
    }

    #[test]
    fn views_come_from_keypoints_and_unlabelled_images_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("VeRi");
        fixture(&root, &root);
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(
            d.stats().train,
            SplitStats {
                ids: 2,
                images: 3,
                cameras: 3,
                views: 3
            }
        );
        // the query image is found in keypoint_test.txt by its file name
        assert_eq!(
            d.stats().query,
            SplitStats {
                ids: 1,
                images: 1,
                cameras: 1,
                views: 1
            }
        );
        assert_eq!(
            d.stats().gallery,
            SplitStats {
                ids: 1,
                images: 2,
                cameras: 2,
                views: 2
            }
        );
        let train: Vec<(usize, usize, usize)> =
            d.train.iter().map(|i| (i.pid, i.camid, i.viewid)).collect();
        assert_eq!(train, [(0, 0, 3), (0, 1, 0), (1, 19, 7)]);
        assert_eq!(d.query[0].viewid, 2);
        assert_eq!(
            d.report.without_viewpoint,
            crate::SplitCounts {
                train: 1,
                query: 0,
                gallery: 1
            }
        );
        assert_eq!(d.report.junk.gallery, 1);
        assert!(d
            .report
            .to_string()
            .contains("images without viewpoint label dropped: 2 (train 1, query 0, gallery 1)"));
        assert_eq!(
            (d.num_train_pids, d.num_train_cams, d.num_train_views),
            (2, 3, 3)
        );
    }

    #[test]
    fn keypoint_folder_is_an_option() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, kp) = (
            tmp.path().join("VeRi"),
            tmp.path().join("reference/datasets"),
        );
        fixture(&root, &kp);
        match load(&root, &LoadOptions::default()) {
            Err(DataError::MissingFile { path, .. }) => {
                assert_eq!(path, root.join("keypoint_train.txt"))
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }
        let options = LoadOptions {
            veri_keypoint_dir: Some(kp),
            ..LoadOptions::default()
        };
        assert_eq!(load(&root, &options).unwrap().train.len(), 3);
    }

    #[test]
    fn bad_keypoint_lines_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path(), tmp.path());
        let kp = tmp.path().join("keypoint_test.txt");
        write_text(&kp, "image_test/0002_c004_00030700_0.jpg 1 2 north\n");
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::UnparsableLine { path, line, .. }) => {
                assert_eq!((path, line), (kp.clone(), 1))
            }
            other => panic!("expected UnparsableLine, got {other:?}"),
        }
        write_text(
            &kp,
            &keypoint_line("image_test/0002_c004_00030700_0.jpg", 9),
        );
        assert!(matches!(
            load(tmp.path(), &LoadOptions::default()),
            Err(DataError::OutOfRange {
                field: "orientation",
                value: 9,
                ..
            })
        ));
    }
}
