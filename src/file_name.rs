//! Identity and camera read from `<pid>_c<camera>…` file names (parsed as the datasets parse
//! them, [`transreid_data::pid_cam_from_name`]), and where the camera ids of images to embed
//! come from.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use transreid_data::pid_cam_from_name;

/// The identity of a `<pid>_c<camera>…` file name.
pub fn pid_from_name(path: &Path) -> Option<i64> {
    pid_cam_from_name(path).map(|l| l.pid)
}

/// Where the camera ids of images to embed come from (camera SIE models need them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraSource {
    /// The same 0-based id for every image.
    Fixed(i64),
    /// Each image's `<pid>_c<camera>…` file name (1-based there, as the datasets number them).
    FileName,
}

/// A camera the file name does not tell.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CameraSourceError {
    /// `--camera` was neither an integer nor `name`.
    #[error("camera `{given}` is neither a 0-based id nor `name`")]
    Unparsable {
        /// The text given.
        given: String,
    },
    /// The file name does not follow `<pid>_c<camera>…` with a camera of at least 1.
    #[error(
        "{path}: no camera in the file name (expected <pid>_c<camera>…, e.g. 0002_c1s1_000451_03.jpg)"
    )]
    NoCameraInName {
        /// The image.
        path: PathBuf,
    },
}

impl FromStr for CameraSource {
    type Err = CameraSourceError;

    /// An integer (`0`, `3`) or `name`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "name" {
            return Ok(Self::FileName);
        }
        s.parse()
            .map(Self::Fixed)
            .map_err(|_| CameraSourceError::Unparsable { given: s.into() })
    }
}

impl CameraSource {
    /// The 0-based camera id of every path.
    pub fn camera_ids(self, paths: &[PathBuf]) -> Result<Vec<i64>, CameraSourceError> {
        match self {
            Self::Fixed(id) => Ok(vec![id; paths.len()]),
            Self::FileName => paths
                .iter()
                .map(|path| match pid_cam_from_name(path) {
                    Some(labels) if labels.camera >= 1 => Ok(labels.camera - 1),
                    _ => Err(CameraSourceError::NoCameraInName { path: path.clone() }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transreid_data::PidCam;

    #[test]
    fn labels_come_from_market_duke_and_veri_names() {
        let labels = |name: &str| pid_cam_from_name(Path::new(name));
        assert_eq!(
            labels("q/0002_c1s1_000451_03.jpg"),
            Some(PidCam { pid: 2, camera: 1 })
        );
        assert_eq!(
            labels("-1_c3s2_0001.jpg"),
            Some(PidCam { pid: -1, camera: 3 })
        );
        assert_eq!(
            labels("0776_c012_00001.jpg"),
            Some(PidCam {
                pid: 776,
                camera: 12
            })
        );
        assert_eq!(
            labels("0005_c8_f0051234.jpg"),
            Some(PidCam { pid: 5, camera: 8 })
        );
        assert_eq!(labels("photo_cat.jpg"), None);
        assert_eq!(labels("crop.png"), None);
        assert_eq!(pid_from_name(Path::new("0002_c1s1_000451_03.jpg")), Some(2));
        assert_eq!(pid_from_name(Path::new("photo_cat.jpg")), None);
    }

    #[test]
    fn camera_ids_are_fixed_or_read_zero_based_from_names() {
        let paths: Vec<PathBuf> = ["0002_c1s1_000451_03.jpg", "0003_c006_0001.jpg"]
            .map(PathBuf::from)
            .into();
        assert_eq!(
            "name".parse::<CameraSource>().unwrap().camera_ids(&paths),
            Ok(vec![0, 5])
        );
        assert_eq!(
            "4".parse::<CameraSource>().unwrap().camera_ids(&paths),
            Ok(vec![4, 4])
        );
        assert_eq!(
            "names".parse::<CameraSource>(),
            Err(CameraSourceError::Unparsable {
                given: "names".into()
            })
        );
        for bad in ["crop.png", "0002_c0s1_01.jpg"] {
            let err = CameraSource::FileName
                .camera_ids(&[PathBuf::from(bad)])
                .unwrap_err();
            assert!(err.to_string().starts_with(bad), "{err}");
        }
    }
}
