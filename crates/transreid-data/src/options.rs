//! Options of [`crate::load_dataset`] that some layouts need.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How image files are checked while a dataset is loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageCheck {
    /// Trust the listing; a bad image surfaces as an error when a loader decodes it.
    #[default]
    None,
    /// Decode every image now; the first unreadable one is an error naming it.
    Verify,
    /// Decode every image now; drop unreadable ones and count them in [`crate::LoadReport`].
    SkipUnreadable,
}

/// Which VehicleID test list to read (`test_list_{800,1600,2400}.txt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VehicleIdTestSize {
    /// 800 test identities (the reference default).
    #[default]
    Small,
    /// 1600 test identities.
    Medium,
    /// 2400 test identities.
    Large,
}

impl VehicleIdTestSize {
    /// Number of test identities the list holds.
    pub fn identities(self) -> usize {
        match self {
            VehicleIdTestSize::Small => 800,
            VehicleIdTestSize::Medium => 1600,
            VehicleIdTestSize::Large => 2400,
        }
    }
}

/// Options for [`crate::load_dataset`]; the defaults follow the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadOptions {
    /// Image checking while loading. Default: [`ImageCheck::None`].
    pub image_check: ImageCheck,
    /// Folder holding VeRi-776's `keypoint_train.txt` and `keypoint_test.txt`. Default: `None`,
    /// meaning the dataset folder itself (the files are not part of the VeRi download).
    pub veri_keypoint_dir: Option<PathBuf>,
    /// VehicleID test list. Default: [`VehicleIdTestSize::Small`] (800 ids).
    pub vehicleid_test_size: VehicleIdTestSize,
    /// Seed of VehicleID's query/gallery draw (one gallery image per test id). Default: 1234,
    /// the reference's `SOLVER.SEED`.
    pub vehicleid_split_seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            image_check: ImageCheck::None,
            veri_keypoint_dir: None,
            vehicleid_test_size: VehicleIdTestSize::Small,
            vehicleid_split_seed: 1234,
        }
    }
}
