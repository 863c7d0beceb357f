//! Identity and camera read from `<pid>_c<camera>…` file names (with the custom dataset
//! loader's parser, [`transreid_data::labels_from_name`]), and where the camera ids of images to
//! embed come from.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use transreid_data::labels_from_name;

/// The identity of a `<pid>_c<camera>…` file name.
pub fn pid_from_name(path: &Path) -> Option<i64> {
    labels_from_name(path).map(|l| l.pid)
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
    /// The file name does not follow `<pid>_c<camera>…`.
    #[error(
        "{path}: no camera in the file name (expected <pid>_c<camera>…, e.g. 0002_c1s1_000451_03.jpg)"
    )]
    NoCameraInName {
        /// The image.
        path: PathBuf,
    },
    /// Camera 0 in a file name, where cameras are 1-based.
    #[error(
        "{path}: camera 0 in the file name, but cameras in file names are 1-based (c1 is the \
         first camera, id 0)"
    )]
    ZeroCamera {
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
                .map(|path| match labels_from_name(path).and_then(|l| l.camera) {
                    Some(0) => Err(CameraSourceError::ZeroCamera { path: path.clone() }),
                    Some(camera) => Ok(camera - 1),
                    None => Err(CameraSourceError::NoCameraInName { path: path.clone() }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_come_from_the_custom_loaders_parser() {
        assert_eq!(pid_from_name(Path::new("0002_c1s1_000451_03.jpg")), Some(2));
        assert_eq!(pid_from_name(Path::new("0042_0001.jpg")), Some(42));
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
        for bad in ["crop.png", "0002_0001.jpg", "0002_c0s1_01.jpg"] {
            let err = CameraSource::FileName
                .camera_ids(&[PathBuf::from(bad)])
                .unwrap_err();
            assert!(err.to_string().starts_with(bad), "{err}");
        }
        let err = CameraSource::FileName
            .camera_ids(&[PathBuf::from("0002_c0s1_01.jpg")])
            .unwrap_err();
        assert!(err.to_string().contains("1-based"), "{err}");
    }
}
