//! VehicleID (Liu et al., "Deep Relative Distance Learning: Tell the Difference Between
//! Similar Vehicles", CVPR 2016).
//!
//! | subset               |    ids |  images | cameras |
//! |----------------------|-------:|--------:|--------:|
//! | train                | 13,164 | 113,346 | 1 |
//! | test 800 (q + g)     |    800 |   7,332 | 2 |
//! | test 1600 (q + g)    |  1,600 |  12,995 | 2 |
//! | test 2400 (q + g)    |  2,400 |  20,038 | 2 |
//!
//! List lines are `<image name without .jpg> <vehicle id>`. Train ids are relabelled in
//! ascending order, camid 0. For each test id (in list order) one image, drawn with
//! [`crate::LoadOptions::vehicleid_split_seed`], goes to the gallery with camid **1** and the
//! others go to the query with camid **0**, so the evaluation's same-camera filter never removes
//! a match. The reference draws unseeded and averages 10 draws; vary the seed to do the same.
//! The test list is chosen by [`crate::LoadOptions::vehicleid_test_size`].
//!
//! ```text
//! VehicleID_V1.0/
//!   image/            0000001.jpg …
//!   train_test_split/
//!     train_list.txt  test_list_800.txt  test_list_1600.txt  test_list_2400.txt
//! ```
//!
//! Reference: `datasets/vehicleid.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::dataset::{assemble, LoadReport, ReidDataset, SplitSource};
use crate::datasets::layout::{read_lines, require_dir, require_file, resolve_dataset_dir};
use crate::error::{DataError, Result};
use crate::item::ReidItem;
use crate::kind::DatasetKind;
use crate::options::{ImageCheck, LoadOptions};
use crate::seed::{derive_rng, RngPurpose};

/// Folder names looked for under the given root.
pub const FOLDER_NAMES: &[&str] = &["VehicleID_V1.0", "VehicleID"];

const LAYOUT: &str = "VehicleID";

/// Camera id of query images; gallery images get 1.
const QUERY_CAMERA: usize = 0;
const GALLERY_CAMERA: usize = 1;

/// Loads VehicleID from `root` (the dataset folder or its parent).
pub fn load(root: &Path, options: &LoadOptions) -> Result<ReidDataset> {
    let dir = resolve_dataset_dir(root, FOLDER_NAMES, "train_test_split");
    let image_dir = dir.join("image");
    let split_dir = dir.join("train_test_split");
    let train_list = split_dir.join("train_list.txt");
    let size = options.vehicleid_test_size.identities();
    let test_list = split_dir.join(format!("test_list_{size}.txt"));
    require_dir(&image_dir, LAYOUT)?;
    require_file(&train_list, LAYOUT)?;
    require_file(&test_list, LAYOUT)?;

    let check_exists = options.image_check == ImageCheck::None;
    let train: Vec<ReidItem> = read_grouped(&train_list, &image_dir, check_exists)?
        .into_iter()
        .flatten()
        .collect();
    let mut rng = derive_rng(
        options.vehicleid_split_seed,
        RngPurpose::VehicleIdSplit,
        size as u64,
        0,
    );
    let (mut query, mut gallery) = (Vec::new(), Vec::new());
    for mut group in read_grouped(&test_list, &image_dir, check_exists)? {
        let mut chosen = group.remove(rng.random_range(0..group.len()));
        chosen.camid = GALLERY_CAMERA;
        gallery.push(chosen);
        query.extend(group.into_iter().map(|item| ReidItem {
            camid: QUERY_CAMERA,
            ..item
        }));
    }
    let splits = [
        SplitSource::new(train, &train_list),
        SplitSource::new(query, &test_list),
        SplitSource::new(gallery, &test_list),
    ];
    assemble(
        DatasetKind::VehicleId,
        &dir,
        splits,
        LoadReport::default(),
        options,
    )
}

/// Reads a list into one group of items per vehicle id, in order of first appearance (the
/// reference's `defaultdict(list)` keyed by pid); camid 0, viewid 1.
fn read_grouped(list: &Path, image_dir: &Path, check_exists: bool) -> Result<Vec<Vec<ReidItem>>> {
    let mut groups: Vec<Vec<ReidItem>> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for (line, content) in read_lines(list)? {
        let unparsable = || DataError::UnparsableLine {
            path: list.to_path_buf(),
            line,
            content: content.clone(),
            expected: "`<image name> <vehicle id>`",
        };
        let mut fields = content.split_whitespace();
        let (Some(name), Some(pid), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(unparsable());
        };
        let pid: usize = pid.parse().map_err(|_| unparsable())?;
        let path: PathBuf = image_dir.join(format!("{name}.jpg"));
        if check_exists && !path.is_file() {
            return Err(DataError::MissingFile {
                path,
                layout: LAYOUT,
            });
        }
        let index = *group_of.entry(pid).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[index].push(ReidItem::new(path, pid, QUERY_CAMERA));
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::VehicleIdTestSize;
    use crate::test_fixtures::{write_text, write_tree};

    fn fixture(root: &Path) {
        let names: Vec<String> = (1..=10).map(|i| format!("image/{i:07}.jpg")).collect();
        write_tree(root, &names.iter().map(String::as_str).collect::<Vec<_>>());
        write_text(
            &root.join("train_test_split/train_list.txt"),
            "0000001 10\n0000002 4\n0000003 10\n0000004 7\n",
        );
        write_text(
            &root.join("train_test_split/test_list_800.txt"),
            "0000005 300\n0000006 100\n0000007 300\n0000008 100\n0000009 250\n0000010 100\n",
        );
    }

    #[test]
    fn train_is_grouped_and_relabelled_and_test_is_split_per_id() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(&tmp.path().join("VehicleID_V1.0"));
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        // groups in first-appearance order (10, 4, 7); labels ascending (4→0, 7→1, 10→2)
        let train: Vec<(usize, usize)> = d.train.iter().map(|i| (i.pid, i.camid)).collect();
        assert_eq!(train, [(2, 0), (2, 0), (0, 0), (1, 0)]);
        assert!(d.train[1].path.ends_with("image/0000003.jpg"));
        // one gallery image per test id (order 300, 100, 250), the rest in the query
        let gallery: Vec<(usize, usize)> = d.gallery.iter().map(|i| (i.pid, i.camid)).collect();
        assert_eq!(gallery, [(300, 1), (100, 1), (250, 1)]);
        assert_eq!(d.query.len(), 3);
        assert!(d.query.iter().all(|i| i.camid == 0 && i.pid != 250));
        let mut all: Vec<_> = d
            .query
            .iter()
            .chain(&d.gallery)
            .map(|i| i.path.clone())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6);
        assert_eq!(
            (d.num_train_pids, d.num_train_cams, d.num_train_views),
            (3, 1, 1)
        );
    }

    #[test]
    fn split_draw_is_seeded() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let gallery = |seed| {
            let options = LoadOptions {
                vehicleid_split_seed: seed,
                ..LoadOptions::default()
            };
            load(tmp.path(), &options)
                .unwrap()
                .gallery
                .into_iter()
                .map(|i| i.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(gallery(3), gallery(3));
        assert!((0..20).any(|s| gallery(s) != gallery(3)));
    }

    #[test]
    fn missing_test_list_and_bad_lines_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let options = LoadOptions {
            vehicleid_test_size: VehicleIdTestSize::Medium,
            ..LoadOptions::default()
        };
        match load(tmp.path(), &options) {
            Err(DataError::MissingFile { path, .. }) => {
                assert_eq!(path, tmp.path().join("train_test_split/test_list_1600.txt"))
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }
        let list = tmp.path().join("train_test_split/train_list.txt");
        write_text(&list, "0000001 10\n0000002\n");
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::UnparsableLine { path, line, .. }) => {
                assert_eq!((path, line), (list, 2))
            }
            other => panic!("expected UnparsableLine, got {other:?}"),
        }
    }
}
