//! Loading any [`DatasetKind`] from a folder.

use std::path::Path;

use crate::dataset::ReidDataset;
use crate::datasets::{custom, dukemtmc, market1501, msmt17, occluded_duke, vehicleid, veri776};
use crate::error::{DataError, Result};
use crate::kind::DatasetKind;
use crate::options::LoadOptions;

/// Loads the dataset of `kind` from `root`: the dataset folder itself or, for the benchmarks, a
/// parent holding it under its usual name (e.g. `root/market1501`). The layout is checked before
/// anything is parsed; see `docs/datasets.md` for every expected tree.
///
/// # Errors
/// [`DataError::MissingRoot`] when `root` is not a folder; a [`DataError`] naming the missing
/// folder or file, the unparsable name or line, the
/// empty split or (with [`crate::ImageCheck::Verify`]) the unreadable image.
pub fn load_dataset(kind: DatasetKind, root: &Path, options: &LoadOptions) -> Result<ReidDataset> {
    if !root.is_dir() {
        return Err(DataError::MissingRoot {
            path: root.to_path_buf(),
            exists: root.exists(),
        });
    }
    match kind {
        DatasetKind::Market1501 => market1501::load(root, options),
        DatasetKind::DukeMtmc => dukemtmc::load(root, options),
        DatasetKind::Msmt17 => msmt17::load(root, options),
        DatasetKind::OccludedDuke => occluded_duke::load(root, options),
        DatasetKind::Veri776 => veri776::load(root, options),
        DatasetKind::VehicleId => vehicleid::load(root, options),
        DatasetKind::Custom => custom::load(root, options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_root_is_named_before_any_layout() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nonexistent");
        let err =
            load_dataset(DatasetKind::Market1501, &missing, &LoadOptions::default()).unwrap_err();
        assert!(
            err.to_string().ends_with("nonexistent does not exist"),
            "{err}"
        );
        let file = dir.path().join("file.txt");
        std::fs::write(&file, "").unwrap();
        let err = load_dataset(DatasetKind::Custom, &file, &LoadOptions::default()).unwrap_err();
        assert!(err.to_string().ends_with("is not a folder"), "{err}");
    }
}
