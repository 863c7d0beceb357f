//! MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person
//! Re-Identification", CVPR 2018), V1 and V2 layouts.
//!
//! | subset            |   ids | images | cameras |
//! |-------------------|------:|-------:|--------:|
//! | train (train+val) | 1,041 | 32,621 | 15 |
//! | query             | 3,060 | 11,659 | 15 |
//! | gallery           | 3,060 | 82,161 | 15 |
//!
//! Splits come from list files whose lines are `<relative path> <pid>`, e.g.
//! `0000/0000_000_01_0303morning_0015_0.jpg 0`; the camera is the third `_`-separated field of
//! the path (`01` → camid 0). Ids are used as listed and must be exactly `0..n` in each list.
//! As in the reference, the train split is `list_train.txt` followed by `list_val.txt`.
//!
//! ```text
//! MSMT17_V1/                      MSMT17_V2/
//!   train/0000/0000_000_01_….jpg    mask_train_v2/0000/….jpg
//!   test/0000/0000_000_01_….jpg     mask_test_v2/0000/….jpg
//!   list_train.txt  list_val.txt    list_train.txt  list_val.txt
//!   list_query.txt  list_gallery.txt list_query.txt list_gallery.txt
//! ```
//!
//! Reference: `datasets/msmt17.py` (written for V1's `train`/`test` folders).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::dataset::{assemble, LoadReport, ReidDataset, SplitSource};
use crate::datasets::layout::{read_lines, require_dir, require_file, resolve_dataset_dir};
use crate::datasets::pid_cam_folders::check_range;
use crate::error::{DataError, Result};
use crate::item::ReidItem;
use crate::kind::DatasetKind;
use crate::options::{ImageCheck, LoadOptions};

/// Folder names looked for under the given root.
pub const FOLDER_NAMES: &[&str] = &["MSMT17", "MSMT17_V1", "MSMT17_V2"];

const LAYOUT: &str = "MSMT17";
const LINE_FORMAT: &str =
    "`<relative path> <pid>` with a path like 0000/0000_000_01_0303morning_0015_0.jpg";

/// The two published layouts, told apart by their image folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msmt17Version {
    /// `train/` and `test/`.
    V1,
    /// `mask_train_v2/` and `mask_test_v2/`.
    V2,
}

impl Msmt17Version {
    fn folders(self) -> (&'static str, &'static str) {
        match self {
            Msmt17Version::V1 => ("train", "test"),
            Msmt17Version::V2 => ("mask_train_v2", "mask_test_v2"),
        }
    }

    /// The version whose train folder exists in `dir` (V1 when neither does, so that the error
    /// names V1's folder).
    pub fn detect(dir: &Path) -> Self {
        if !dir.join("train").is_dir() && dir.join("mask_train_v2").is_dir() {
            Msmt17Version::V2
        } else {
            Msmt17Version::V1
        }
    }
}

/// Loads MSMT17 (V1 or V2) from `root` (the dataset folder or its parent).
pub fn load(root: &Path, options: &LoadOptions) -> Result<ReidDataset> {
    let dir = resolve_dataset_dir(root, FOLDER_NAMES, "list_train.txt");
    let (train_folder, test_folder) = Msmt17Version::detect(&dir).folders();
    let (train_dir, test_dir) = (dir.join(train_folder), dir.join(test_folder));
    require_dir(&train_dir, LAYOUT)?;
    require_dir(&test_dir, LAYOUT)?;
    let list = |name: &str| dir.join(name);
    for name in [
        "list_train.txt",
        "list_val.txt",
        "list_query.txt",
        "list_gallery.txt",
    ] {
        require_file(&list(name), LAYOUT)?;
    }
    let check_exists = options.image_check == ImageCheck::None;
    let mut train = read_list(&list("list_train.txt"), &train_dir, check_exists)?;
    train.extend(read_list(&list("list_val.txt"), &train_dir, check_exists)?);
    let query = read_list(&list("list_query.txt"), &test_dir, check_exists)?;
    let gallery = read_list(&list("list_gallery.txt"), &test_dir, check_exists)?;
    let splits = [
        SplitSource::new(train, list("list_train.txt")),
        SplitSource::new(query, list("list_query.txt")),
        SplitSource::new(gallery, list("list_gallery.txt")),
    ];
    assemble(
        DatasetKind::Msmt17,
        &dir,
        splits,
        LoadReport::default(),
        options,
    )
}

/// Reads one list file; images are resolved against `image_dir`.
fn read_list(list: &Path, image_dir: &Path, check_exists: bool) -> Result<Vec<ReidItem>> {
    let mut items = Vec::new();
    for (line, content) in read_lines(list)? {
        let unparsable = || DataError::UnparsableLine {
            path: list.to_path_buf(),
            line,
            content: content.clone(),
            expected: LINE_FORMAT,
        };
        let mut fields = content.split_whitespace();
        let (Some(rel), Some(pid), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(unparsable());
        };
        let pid: usize = pid.parse().map_err(|_| unparsable())?;
        let camera: i64 = rel
            .split('_')
            .nth(2)
            .and_then(|c| c.parse().ok())
            .ok_or_else(unparsable)?;
        let path: PathBuf = image_dir.join(rel);
        check_range(&path, "camera", camera, &1, &15)?;
        if check_exists && !path.is_file() {
            return Err(DataError::MissingFile {
                path,
                layout: LAYOUT,
            });
        }
        items.push(ReidItem::new(path, pid, (camera - 1) as usize));
    }
    check_contiguous(list, &items)?;
    Ok(items)
}

/// The reference asserts `enumerate(set(pids))` yields `(i, i)`: the ids are exactly `0..n`.
fn check_contiguous(list: &Path, items: &[ReidItem]) -> Result<()> {
    let pids: BTreeSet<usize> = items.iter().map(|i| i.pid).collect();
    match pids.iter().enumerate().find(|(i, pid)| i != *pid) {
        None => Ok(()),
        Some((missing, _)) => Err(DataError::NonContiguousPids {
            path: list.to_path_buf(),
            count: pids.len(),
            missing,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitStats;
    use crate::test_fixtures::{write_text, write_tree};

    /// V1 or V2 tree with the real list format.
    fn fixture(root: &Path, version: Msmt17Version) {
        let (train, test) = version.folders();
        let train_files = [
            "0000/0000_000_01_0303morning_0015_0.jpg",
            "0000/0000_001_03_0303morning_0016_0.jpg",
            "0001/0001_000_15_0303afternoon_0003_0.jpg",
            "0000/0000_002_02_0303noon_0001_1.jpg",
        ];
        let test_files = [
            "0000/0000_000_04_0303morning_0008_0.jpg",
            "0001/0001_000_07_0303noon_0010_0.jpg",
            "0000/0000_001_05_0303noon_0005_0.jpg",
            "0001/0001_001_07_0303noon_0011_0.jpg",
            "0002/0002_000_12_0303noon_0012_0.jpg",
        ];
        for f in train_files {
            write_tree(root, &[&format!("{train}/{f}")]);
        }
        for f in test_files {
            write_tree(root, &[&format!("{test}/{f}")]);
        }
        write_text(
            &root.join("list_train.txt"),
            &format!(
                "{} 0\n{} 0\n{} 1\n",
                train_files[0], train_files[1], train_files[2]
            ),
        );
        write_text(
            &root.join("list_val.txt"),
            &format!("{} 0\n", train_files[3]),
        );
        write_text(
            &root.join("list_query.txt"),
            &format!("{} 0\n{} 1\n", test_files[0], test_files[1]),
        );
        write_text(
            &root.join("list_gallery.txt"),
            &format!(
                "{} 0\n{} 1\n{} 2\n",
                test_files[2], test_files[3], test_files[4]
            ),
        );
    }

    #[test]
    fn v1_train_is_train_plus_val_with_cameras_from_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(&tmp.path().join("MSMT17_V1"), Msmt17Version::V1);
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(
            d.stats().train,
            SplitStats {
                ids: 2,
                images: 4,
                cameras: 4,
                views: 1
            }
        );
        assert_eq!(
            d.stats().query,
            SplitStats {
                ids: 2,
                images: 2,
                cameras: 2,
                views: 1
            }
        );
        assert_eq!(
            d.stats().gallery,
            SplitStats {
                ids: 3,
                images: 3,
                cameras: 3,
                views: 1
            }
        );
        let train: Vec<(usize, usize)> = d.train.iter().map(|i| (i.pid, i.camid)).collect();
        assert_eq!(train, [(0, 0), (0, 2), (1, 14), (0, 1)]);
        assert!(d.train[3]
            .path
            .ends_with("train/0000/0000_002_02_0303noon_0001_1.jpg"));
        assert_eq!((d.num_train_pids, d.num_train_cams), (2, 4));
    }

    #[test]
    fn v2_folders_are_detected() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path(), Msmt17Version::V2);
        assert_eq!(Msmt17Version::detect(tmp.path()), Msmt17Version::V2);
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert!(d.gallery[0]
            .path
            .starts_with(tmp.path().join("mask_test_v2")));
        assert_eq!(d.gallery.len(), 3);
    }

    #[test]
    fn missing_list_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path(), Msmt17Version::V1);
        std::fs::remove_file(tmp.path().join("list_val.txt")).unwrap();
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::MissingFile { path, .. }) => {
                assert_eq!(path, tmp.path().join("list_val.txt"))
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }
    }

    #[test]
    fn gaps_in_ids_bad_lines_and_missing_images_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path(), Msmt17Version::V1);
        let query = tmp.path().join("list_query.txt");
        write_text(
            &query,
            "0000/0000_000_04_0303morning_0008_0.jpg 0\n0001/0001_000_07_0303noon_0010_0.jpg 2\n",
        );
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::NonContiguousPids {
                path,
                count,
                missing,
            }) => {
                assert_eq!((path, count, missing), (query.clone(), 2, 1));
            }
            other => panic!("expected NonContiguousPids, got {other:?}"),
        }
        write_text(
            &query,
            "0000/0000_000_04_0303morning_0008_0.jpg 0\n\n0001/0001_x.jpg 1\n",
        );
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::UnparsableLine { path, line, .. }) => {
                assert_eq!((path, line), (query.clone(), 3))
            }
            other => panic!("expected UnparsableLine, got {other:?}"),
        }
        write_text(&query, "0000/0000_000_04_0303morning_0009_0.jpg 0\n");
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::MissingFile { path, .. }) => {
                assert_eq!(
                    path,
                    tmp.path()
                        .join("test/0000/0000_000_04_0303morning_0009_0.jpg")
                )
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }
    }
}
