//! Layouts of three image folders whose file names carry `<pid>_c<cam>` (Market-1501,
//! DukeMTMC-reID, Occluded-Duke, VeRi-776).

use std::path::Path;

use crate::dataset::{LoadReport, SplitSource};
use crate::datasets::layout::{list_images, require_dir};
use crate::datasets::name_pattern::PidCamRules;
use crate::error::{DataError, Result};
use crate::item::{ReidItem, Split};

/// Folder names of the train, query and gallery splits inside the dataset folder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitFolders {
    pub train: &'static str,
    pub query: &'static str,
    pub gallery: &'static str,
}

impl SplitFolders {
    /// `bounding_box_train`, `query`, `bounding_box_test` (Market-1501 and the Duke sets).
    pub const BOUNDING_BOX: SplitFolders = SplitFolders {
        train: "bounding_box_train",
        query: "query",
        gallery: "bounding_box_test",
    };

    fn get(&self, split: Split) -> &'static str {
        match split {
            Split::Train => self.train,
            Split::Query => self.query,
            Split::Gallery => self.gallery,
        }
    }
}

/// Checks that the three folders exist, then parses each (`*.jpg`, sorted). Junk images
/// (pid −1) are skipped and counted in `report.junk`; pids stay as in the file names (train is
/// relabelled later) and cameras become 0-based (`c1` → 0).
pub(crate) fn read_split_folders(
    dataset_dir: &Path,
    folders: SplitFolders,
    rules: &PidCamRules,
    layout: &'static str,
    report: &mut LoadReport,
) -> Result<[SplitSource; 3]> {
    for split in Split::ALL {
        require_dir(&dataset_dir.join(folders.get(split)), layout)?;
    }
    let read = |split: Split, report: &mut LoadReport| -> Result<SplitSource> {
        let dir = dataset_dir.join(folders.get(split));
        let items = parse_folder(&dir, rules, report.junk.get_mut(split))?;
        Ok(SplitSource::new(items, dir))
    };
    Ok([
        read(Split::Train, report)?,
        read(Split::Query, report)?,
        read(Split::Gallery, report)?,
    ])
}

/// Parses the `*.jpg` files of `dir` with `rules`, counting skipped junk images in `junk`.
pub(crate) fn parse_folder(
    dir: &Path,
    rules: &PidCamRules,
    junk: &mut usize,
) -> Result<Vec<ReidItem>> {
    let mut items = Vec::new();
    for path in list_images(dir, &["jpg"])? {
        let parsed = rules.pattern.parse(&path)?;
        if parsed.pid == -1 {
            *junk += 1;
            continue;
        }
        check_range(
            &path,
            "pid",
            parsed.pid,
            rules.pids.start(),
            rules.pids.end(),
        )?;
        check_range(
            &path,
            "camera",
            parsed.camera,
            rules.cameras.start(),
            rules.cameras.end(),
        )?;
        items.push(ReidItem::new(
            path,
            parsed.pid as usize,
            (parsed.camera - 1) as usize,
        ));
    }
    Ok(items)
}

pub(crate) fn check_range(
    path: &Path,
    field: &'static str,
    value: i64,
    min: &i64,
    max: &i64,
) -> Result<()> {
    if (*min..=*max).contains(&value) {
        Ok(())
    } else {
        Err(DataError::OutOfRange {
            path: path.to_path_buf(),
            field,
            value,
            min: *min,
            max: *max,
        })
    }
}
