//! Side Information Embedding (SIE): a learnable vector per camera and/or view, scaled by
//! `lambda` and added to every token (the cls token included).

use burn::config::Config;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::LabelError;

/// Which side information the model embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SieMode {
    /// No side information.
    #[default]
    None,
    /// One embedding per camera (`sie_embed[cam]`).
    Camera,
    /// One embedding per viewpoint (`sie_embed[view]`).
    View,
    /// One embedding per (camera, view) pair, joint index `cam * num_views + view`.
    CameraView,
}

impl SieMode {
    /// The mode that embeds cameras, views, both or neither.
    pub fn from_flags(cameras: bool, views: bool) -> Self {
        match (cameras, views) {
            (true, true) => Self::CameraView,
            (true, false) => Self::Camera,
            (false, true) => Self::View,
            (false, false) => Self::None,
        }
    }

    /// Whether the table is indexed by camera ids.
    pub fn uses_cameras(self) -> bool {
        matches!(self, SieMode::Camera | SieMode::CameraView)
    }

    /// Whether the table is indexed by view ids.
    pub fn uses_views(self) -> bool {
        matches!(self, SieMode::View | SieMode::CameraView)
    }
}

/// Side information embedding settings.
#[derive(Config, Debug, PartialEq)]
pub struct SieConfig {
    /// What is embedded. Default: none.
    #[config(default = "SieMode::None")]
    pub mode: SieMode,
    /// Number of cameras of the training split. Default: 1.
    #[config(default = 1)]
    pub camera_num: usize,
    /// Number of views of the training split. Default: 1.
    #[config(default = 1)]
    pub view_num: usize,
    /// The coefficient lambda (`MODEL.SIE_COE`). Default: 3.0.
    #[config(default = 3.0)]
    pub coefficient: f64,
}

impl SieConfig {
    /// Rows of the `sie_embed` table, or `None` when SIE is off.
    pub fn table_len(&self) -> Option<usize> {
        match self.mode {
            SieMode::None => None,
            SieMode::Camera => Some(self.camera_num),
            SieMode::View => Some(self.view_num),
            SieMode::CameraView => Some(self.camera_num * self.view_num),
        }
    }

    /// How the table's rows are read, e.g. `rows = cameras x views = 3 x 2, row = camera x 2 + view`.
    pub fn describe(&self) -> String {
        let (cameras, views) = (self.camera_num, self.view_num);
        match self.mode {
            SieMode::None => "no SIE".into(),
            SieMode::Camera => format!("one row per camera, {cameras} cameras"),
            SieMode::View => format!("one row per view, {views} views"),
            SieMode::CameraView => {
                format!(
                    "rows = cameras x views = {cameras} x {views}, row = camera x {views} + view"
                )
            }
        }
    }

    /// The table row for one sample, checking the ranges.
    pub fn index(&self, camera: i64, view: i64) -> Result<Option<i64>, LabelError> {
        let check_cam = || {
            if camera < 0 || camera as usize >= self.camera_num {
                Err(LabelError::CameraOutOfRange {
                    id: camera,
                    count: self.camera_num,
                })
            } else {
                Ok(camera)
            }
        };
        let check_view = || {
            if view < 0 || view as usize >= self.view_num {
                Err(LabelError::ViewOutOfRange {
                    id: view,
                    count: self.view_num,
                })
            } else {
                Ok(view)
            }
        };
        Ok(match self.mode {
            SieMode::None => None,
            SieMode::Camera => Some(check_cam()?),
            SieMode::View => Some(check_view()?),
            SieMode::CameraView => Some(check_cam()? * self.view_num as i64 + check_view()?),
        })
    }

    /// Checks a batch of labels against the table (what a caller should do before `forward`).
    pub fn check_labels(&self, cameras: &[i64], views: &[i64]) -> Result<(), LabelError> {
        if cameras.len() != views.len() {
            return Err(LabelError::LengthMismatch {
                what: "views",
                expected: cameras.len(),
                got: views.len(),
            });
        }
        for (&c, &v) in cameras.iter().zip(views) {
            self.index(c, v)?;
        }
        Ok(())
    }

    /// Joint table indices on the device.
    ///
    /// # Panics
    /// If the mode needs cameras or views and they are `None`.
    pub fn table_indices<B: Backend>(
        &self,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Option<Tensor<B, 1, Int>> {
        let need_cam = || cameras.clone().expect("SIE needs camera ids");
        let need_view = || views.clone().expect("SIE needs view ids");
        match self.mode {
            SieMode::None => None,
            SieMode::Camera => Some(need_cam()),
            SieMode::View => Some(need_view()),
            SieMode::CameraView => {
                Some(need_cam().mul_scalar(self.view_num as i64).add(need_view()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joint_index_is_cam_times_views_plus_view() {
        let sie = SieConfig::new()
            .with_mode(SieMode::CameraView)
            .with_camera_num(20)
            .with_view_num(8);
        assert_eq!(sie.table_len(), Some(160));
        assert_eq!(sie.index(3, 5), Ok(Some(29)));
        assert_eq!(sie.index(19, 7), Ok(Some(159)));
        assert_eq!(
            sie.index(20, 0),
            Err(LabelError::CameraOutOfRange { id: 20, count: 20 })
        );
        assert_eq!(
            sie.index(0, 8),
            Err(LabelError::ViewOutOfRange { id: 8, count: 8 })
        );
    }

    #[test]
    fn camera_mode_ignores_views() {
        let sie = SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(6);
        assert_eq!(sie.table_len(), Some(6));
        assert_eq!(sie.index(5, 123), Ok(Some(5)));
        assert!(sie.check_labels(&[0, 6], &[0, 0]).is_err());
        assert!(sie.check_labels(&[0, 5], &[0]).is_err());
        assert_eq!(SieConfig::new().index(99, 99), Ok(None));
    }
}
