//! A user's own data: three image folders or three CSV lists.
//!
//! **Folders**: `train/`, `query/`, `gallery/` holding `.jpg`, `.jpeg`, `.png`, `.bmp` or `.webp`
//! files (hidden files such as `._x.jpg` are skipped; subfolders are not searched) named
//! `<pid>_c<camera><anything>` (e.g. `0042_c3_0001.jpg`, Market-1501's `0001_c1s1_000151_01.jpg`)
//! or, without cameras, `<pid>_<anything>` / `<pid>` (e.g. `0042_0001.jpg`), read by
//! [`crate::labels_from_name`], the parser `transreid embed --camera name` uses too. pid −1 marks
//! junk and is skipped; pid 0 is an ordinary id (use it for distractors in the gallery).
//!
//! **CSV**: `train.csv`, `query.csv`, `gallery.csv` with rows `path,pid[,camid[,viewid]]`; paths
//! are relative to the dataset folder unless absolute; a first row whose pid is not a number is a
//! header; `camid` and `viewid` may be empty or left out.
//!
//! If `train.csv` exists the CSV form is used, else the folder form.
//!
//! Cameras: in file names they are 1-based, as in every public dataset: `c<k>` is camera id
//! `k − 1` (so `embed --camera name` gives a model the ids it was trained with) and the model gets
//! as many cameras as the largest number; `c0` is an error that says so. In CSV lists the raw
//! camera ids of any base are mapped to `0..n` in ascending order over all three splits. Without
//! camera ids (none given anywhere) the set is treated as single-camera: train and query get
//! camid 0 and gallery camid 1, as VehicleID does, so that the evaluation's
//! same-id-same-camera filter keeps every gallery match. Giving a camera for some images but not
//! others is an error. Views: a view column is mapped to `0..v` the same way; without one every
//! item has the reference's view label 1.
//!
//! ```text
//! my_set/                       my_set/
//!   train/   0001_c1_0001.jpg …   train.csv     images/a.jpg,1,1
//!   query/   0100_c2_0001.jpg …   query.csv     images/q.jpg,100,2,0
//!   gallery/ 0100_c1_0007.jpg …   gallery.csv   …
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::dataset::{assemble, LoadReport, ReidDataset, SplitSource};
use crate::datasets::layout::{list_images, require_dir, require_file};
use crate::datasets::name_pattern::labels_from_name;
use crate::error::{DataError, Result};
use crate::item::{ReidItem, Split, NO_VIEW_LABEL};
use crate::kind::DatasetKind;
use crate::options::{ImageCheck, LoadOptions};

const LAYOUT: &str = "custom";

/// Image extensions read in the folder form: the formats this build decodes.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp"];

/// The two custom layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomFormat {
    /// `train/`, `query/`, `gallery/` image folders.
    Folders,
    /// `train.csv`, `query.csv`, `gallery.csv`.
    Csv,
}

impl CustomFormat {
    /// CSV when `root/train.csv` exists, folders otherwise.
    pub fn detect(root: &Path) -> Self {
        if root.join("train.csv").is_file() {
            CustomFormat::Csv
        } else {
            CustomFormat::Folders
        }
    }
}

/// An item before cameras and views are mapped to indices.
struct RawItem {
    path: PathBuf,
    pid: usize,
    camera: Option<i64>,
    view: Option<i64>,
}

/// Loads a custom dataset from the folder `root`.
pub fn load(root: &Path, options: &LoadOptions) -> Result<ReidDataset> {
    let format = CustomFormat::detect(root);
    let origin = |split: Split| match format {
        CustomFormat::Folders => root.join(split.as_str()),
        CustomFormat::Csv => root.join(format!("{split}.csv")),
    };
    for split in Split::ALL {
        match format {
            CustomFormat::Folders => require_dir(&origin(split), LAYOUT)?,
            CustomFormat::Csv => require_file(&origin(split), LAYOUT)?,
        }
    }
    let mut report = LoadReport::default();
    let mut raw: Vec<Vec<RawItem>> = Vec::with_capacity(3);
    for split in Split::ALL {
        let junk = report.junk.get_mut(split);
        raw.push(match format {
            CustomFormat::Folders => read_folder(&origin(split), junk)?,
            CustomFormat::Csv => read_csv(
                &origin(split),
                root,
                options.image_check == ImageCheck::None,
                junk,
            )?,
        });
    }
    let all = || raw.iter().flatten();
    let cameras = match format {
        // 1-based names: `c<k>` is id k − 1, the same as `--camera name` reads.
        CustomFormat::Folders => index_labels(all().map(|r| (&r.path, r.camera)), "camera")?
            .map(|map| map.keys().map(|&c| (c, (c - 1) as usize)).collect()),
        CustomFormat::Csv => index_labels(all().map(|r| (&r.path, r.camera)), "camera")?,
    };
    let views = index_labels(all().map(|r| (&r.path, r.view)), "view")?;
    let mut splits = Vec::with_capacity(3);
    for (split, items) in Split::ALL.into_iter().zip(raw) {
        let items = items
            .into_iter()
            .map(|r| ReidItem {
                camid: match (&cameras, r.camera) {
                    (Some(map), Some(c)) => map[&c],
                    _ if split == Split::Gallery => 1,
                    _ => 0,
                },
                viewid: match (&views, r.view) {
                    (Some(map), Some(v)) => map[&v],
                    _ => NO_VIEW_LABEL,
                },
                path: r.path,
                pid: r.pid,
            })
            .collect();
        splits.push(SplitSource::new(items, origin(split)));
    }
    let splits: [SplitSource; 3] = splits.try_into().expect("three splits");
    let mut dataset = assemble(DatasetKind::Custom, root, splits, report, options)?;
    if let (CustomFormat::Folders, Some(map)) = (format, &cameras) {
        // Numbered cameras: the SIE table covers the largest number, used or not in train.
        dataset.num_train_cams = map.values().max().map_or(1, |&id| id + 1);
    }
    Ok(dataset)
}

/// `None` when no item has a label; otherwise the ascending map raw label → index, or
/// [`DataError::MixedLabels`] naming the first item whose presence differs from the first item's.
fn index_labels<'a>(
    labels: impl Iterator<Item = (&'a PathBuf, Option<i64>)>,
    field: &'static str,
) -> Result<Option<BTreeMap<i64, usize>>> {
    let mut present: Option<bool> = None;
    let mut values = BTreeSet::new();
    for (path, label) in labels {
        let has = label.is_some();
        if *present.get_or_insert(has) != has {
            return Err(DataError::MixedLabels {
                path: path.clone(),
                field,
            });
        }
        values.extend(label);
    }
    Ok((present == Some(true)).then(|| {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v, i))
            .collect()
    }))
}

fn read_folder(dir: &Path, junk: &mut usize) -> Result<Vec<RawItem>> {
    let mut items = Vec::new();
    for path in list_images(dir, IMAGE_EXTENSIONS)? {
        let labels = labels_from_name(&path).ok_or_else(|| DataError::UnparsableName {
            path: path.clone(),
            expected: "<pid>_c<camera>_<anything> or <pid>_<anything> (e.g. 0042_c3_0001.jpg)",
        })?;
        if labels.camera == Some(0) && labels.pid != -1 {
            return Err(DataError::ZeroCamera { path });
        }
        if let Some(item) = raw_item(path.clone(), labels.pid, labels.camera, None, junk)? {
            items.push(item);
        }
    }
    Ok(items)
}

fn read_csv(
    list: &Path,
    root: &Path,
    check_exists: bool,
    junk: &mut usize,
) -> Result<Vec<RawItem>> {
    let csv_error = |source| DataError::Csv {
        path: list.to_path_buf(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(list)
        .map_err(csv_error)?;
    let mut items = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(row + 1, |p| p.line() as usize);
        let unparsable = || DataError::UnparsableLine {
            path: list.to_path_buf(),
            line,
            content: record.iter().collect::<Vec<_>>().join(","),
            expected: "`path,pid[,camid[,viewid]]` with integer ids",
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        if !(2..=4).contains(&record.len()) || record[0].is_empty() {
            return Err(unparsable());
        }
        let Ok(pid) = record[1].parse::<i64>() else {
            if row == 0 {
                continue; // header row
            }
            return Err(unparsable());
        };
        let optional = |i: usize| -> Result<Option<i64>> {
            match record.get(i).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s.parse().map(Some).map_err(|_| unparsable()),
            }
        };
        let (camera, view) = (optional(2)?, optional(3)?);
        let path = root.join(&record[0]);
        if check_exists && !path.is_file() {
            return Err(DataError::MissingFile {
                path,
                layout: LAYOUT,
            });
        }
        if let Some(item) = raw_item(path, pid, camera, view, junk)? {
            items.push(item);
        }
    }
    Ok(items)
}

/// Skips junk (pid −1), rejects other negative ids.
fn raw_item(
    path: PathBuf,
    pid: i64,
    camera: Option<i64>,
    view: Option<i64>,
    junk: &mut usize,
) -> Result<Option<RawItem>> {
    if pid == -1 {
        *junk += 1;
        return Ok(None);
    }
    for (field, value) in [("pid", Some(pid)), ("camera", camera), ("view", view)] {
        if let Some(value) = value.filter(|v| *v < 0) {
            return Err(DataError::OutOfRange {
                path,
                field,
                value,
                min: 0,
                max: i64::MAX,
            });
        }
    }
    Ok(Some(RawItem {
        path,
        pid: pid as usize,
        camera,
        view,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitStats;
    use crate::test_fixtures::{write_png, write_text, write_tree};

    #[test]
    fn folders_with_cameras_map_them_to_indices() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(
            tmp.path(),
            &[
                "train/0010_c1_a.jpg",
                "train/0010_c5_b.jpeg",
                "train/0042_c3_a.jpg",
                "train/-1_c3_junk.jpg",
                "train/._0042_c3_a.jpg",
                "query/0100_c3_q.jpg",
                "gallery/0100_c1_g.jpg",
                "gallery/0000_c6_distractor.jpg",
            ],
        );
        write_png(
            &tmp.path().join("train/0042_c5_c.png"),
            &image::RgbImage::new(4, 8),
        );
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        // 1-based names: c<k> is camera k − 1; the table covers the largest camera (c6).
        let train: Vec<(usize, usize)> = d.train.iter().map(|i| (i.pid, i.camid)).collect();
        assert_eq!(train, [(0, 0), (0, 4), (1, 2), (1, 4)]);
        assert_eq!(d.num_train_cams, 6);
        assert_eq!(d.query[0].camid, 2);
        assert_eq!(
            d.stats().gallery,
            SplitStats {
                ids: 2,
                images: 2,
                cameras: 2,
                views: 1
            }
        );
        assert_eq!(d.report.junk.train, 1);
    }

    #[test]
    fn market_names_load_their_cameras_and_camera_zero_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(
            tmp.path(),
            &[
                "train/0001_c1s1_000151_01.jpg",
                "train/0002_c2s1_000301_02.jpg",
                "query/0003_c1s2_000001_01.jpg",
                "gallery/0003_c2s2_000002_01.jpg",
            ],
        );
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        let train: Vec<(usize, usize)> = d.train.iter().map(|i| (i.pid, i.camid)).collect();
        assert_eq!(train, [(0, 0), (1, 1)]);
        assert_eq!(
            (d.num_train_cams, d.query[0].camid, d.gallery[0].camid),
            (2, 0, 1)
        );

        write_tree(tmp.path(), &["gallery/0004_c0_01.jpg"]);
        match load(tmp.path(), &LoadOptions::default()) {
            Err(e @ DataError::ZeroCamera { .. }) => {
                assert!(e.to_string().contains("1-based"), "{e}")
            }
            other => panic!("expected ZeroCamera, got {other:?}"),
        }
    }

    #[test]
    fn folders_without_cameras_are_single_camera() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(
            tmp.path(),
            &[
                "train/0001_x.jpg",
                "train/0002.jpg",
                "query/0005_0001.jpg",
                "gallery/0005_0002.jpg",
                "gallery/0006_cat.jpg",
            ],
        );
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(
            (d.num_train_pids, d.num_train_cams, d.num_train_views),
            (2, 1, 1)
        );
        assert!(d.train.iter().chain(&d.query).all(|i| i.camid == 0));
        // gallery on its own camera so that same-id matches survive the evaluation filter
        assert!(d.gallery.iter().all(|i| i.camid == 1));
        assert_eq!(d.gallery[1].pid, 6);
    }

    #[test]
    fn csv_lists_with_header_views_and_optional_cameras() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(
            tmp.path(),
            &[
                "img/a.jpg",
                "img/b.jpg",
                "img/c.jpg",
                "img/d.jpg",
                "img/e.jpg",
            ],
        );
        write_text(
            &tmp.path().join("train.csv"),
            "path,pid,camid,viewid\nimg/a.jpg,7,1,5\nimg/b.jpg,3,2,9\n",
        );
        write_text(&tmp.path().join("query.csv"), "img/c.jpg,100,2,5\n");
        write_text(
            &tmp.path().join("gallery.csv"),
            "img/d.jpg, 100, 1, 9\nimg/e.jpg,-1,1,5\n",
        );
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(CustomFormat::detect(tmp.path()), CustomFormat::Csv);
        let train: Vec<(usize, usize, usize)> =
            d.train.iter().map(|i| (i.pid, i.camid, i.viewid)).collect();
        assert_eq!(train, [(1, 0, 0), (0, 1, 1)]);
        assert_eq!((d.gallery.len(), d.report.junk.gallery), (1, 1));
        assert_eq!(d.gallery[0].path, tmp.path().join("img/d.jpg"));
        assert_eq!((d.num_train_cams, d.num_train_views), (2, 2));

        write_text(&tmp.path().join("train.csv"), "img/a.jpg,7\nimg/b.jpg,3,\n");
        write_text(&tmp.path().join("query.csv"), "img/c.jpg,100\n");
        write_text(&tmp.path().join("gallery.csv"), "img/d.jpg,100\n");
        let d = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(
            (d.query[0].camid, d.gallery[0].camid, d.train[0].viewid),
            (0, 1, 1)
        );
    }

    #[test]
    fn bad_custom_inputs_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(tmp.path(), &["img/a.jpg"]);
        write_text(
            &tmp.path().join("train.csv"),
            "img/a.jpg,1,1\nimg/a.jpg,2\n",
        );
        write_text(&tmp.path().join("query.csv"), "img/a.jpg,1,1\n");
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::MissingFile { path, .. }) => {
                assert_eq!(path, tmp.path().join("gallery.csv"))
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }
        write_text(&tmp.path().join("gallery.csv"), "img/a.jpg,1,2\n");
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::MixedLabels { field, .. }) => assert_eq!(field, "camera"),
            other => panic!("expected MixedLabels, got {other:?}"),
        }
        write_text(
            &tmp.path().join("train.csv"),
            "img/a.jpg,1,1\nimg/a.jpg,x,1\n",
        );
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::UnparsableLine { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected UnparsableLine, got {other:?}"),
        }
        write_text(&tmp.path().join("train.csv"), "img/missing.jpg,1,1\n");
        match load(tmp.path(), &LoadOptions::default()) {
            Err(DataError::MissingFile { path, .. }) => {
                assert_eq!(path, tmp.path().join("img/missing.jpg"))
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }

        let folders = tempfile::tempdir().unwrap();
        write_tree(
            folders.path(),
            &["train/abc.jpg", "query/0001.jpg", "gallery/0001.jpg"],
        );
        match load(folders.path(), &LoadOptions::default()) {
            Err(DataError::UnparsableName { path, .. }) => {
                assert_eq!(path, folders.path().join("train/abc.jpg"))
            }
            other => panic!("expected UnparsableName, got {other:?}"),
        }
        std::fs::remove_dir_all(folders.path().join("gallery")).unwrap();
        match load(folders.path(), &LoadOptions::default()) {
            Err(DataError::MissingDir { path, .. }) => {
                assert_eq!(path, folders.path().join("gallery"))
            }
            other => panic!("expected MissingDir, got {other:?}"),
        }
    }
}
