//! Settings shared by the train and test transforms (the reference's `INPUT.*`).

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// An image size in pixels, height first as in the reference's `SIZE_TRAIN = [H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageSize {
    pub height: u32,
    pub width: u32,
}

impl ImageSize {
    /// `height × width`.
    pub const fn new(height: u32, width: u32) -> Self {
        Self { height, width }
    }

    /// Number of values of one CHW RGB image: `3·H·W`.
    pub fn chw_len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    fn validate(&self, field: &'static str) -> Result<()> {
        if self.height == 0 || self.width == 0 {
            return Err(DataError::invalid(
                field,
                format!("{}x{} has a zero side", self.height, self.width),
            ));
        }
        Ok(())
    }
}

/// Per-channel `Normalize(mean, std)` applied after `ToTensor`: `x = (v/255 − mean_c) / std_c`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// `0.5 / 0.5`: every ViT config of the reference. Maps `[0, 255]` to `[−1, 1]`.
    pub const HALF: Normalization = Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    };

    /// ImageNet statistics, the reference default used by the VeRi/VehicleID `deit_*` configs.
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// The normalised value of every 8-bit level per channel, computed with the same f32
    /// operations as torchvision (`v / 255`, then `(x − mean) / std`).
    pub fn lookup_table(&self) -> [[f32; 256]; 3] {
        let mut table = [[0.0; 256]; 3];
        for (c, row) in table.iter_mut().enumerate() {
            for (v, out) in row.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        table
    }

    fn validate(&self) -> Result<()> {
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(DataError::invalid(
                "normalization",
                format!("{self:?} needs finite means and positive stds"),
            ));
        }
        Ok(())
    }
}

/// Train and test transform settings.
///
/// Train: `Resize(train_size, bicubic)` → `RandomHorizontalFlip(flip_prob)` →
/// `Pad(padding)` → `RandomCrop(train_size)` → `ToTensor` → `Normalize` →
/// `RandomErasing(erasing_prob)`. Test: `Resize(test_size, bilinear)` → `ToTensor` → `Normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransformConfig {
    /// `INPUT.SIZE_TRAIN`. Default: 256×128.
    pub train_size: ImageSize,
    /// `INPUT.SIZE_TEST`. Default: 256×128.
    pub test_size: ImageSize,
    /// `INPUT.PROB`, probability of a horizontal flip. Default: 0.5.
    pub flip_prob: f64,
    /// `INPUT.PADDING`, zero padding before the random crop. Default: 10.
    pub padding: u32,
    /// `INPUT.RE_PROB`, probability of random erasing. Default: 0.5 (0.8 in the `deit_*` configs).
    pub erasing_prob: f64,
    /// `INPUT.PIXEL_MEAN` / `PIXEL_STD`. Default: [`Normalization::HALF`].
    pub normalization: Normalization,
}

impl TransformConfig {
    /// Person settings of the ViT configs: 256×128, mean/std 0.5.
    pub fn person() -> Self {
        Self {
            train_size: ImageSize::new(256, 128),
            test_size: ImageSize::new(256, 128),
            flip_prob: 0.5,
            padding: 10,
            erasing_prob: 0.5,
            normalization: Normalization::HALF,
        }
    }

    /// Vehicle settings of the ViT configs (VeRi-776, VehicleID): 256×256, mean/std 0.5.
    pub fn vehicle() -> Self {
        Self {
            train_size: ImageSize::new(256, 256),
            test_size: ImageSize::new(256, 256),
            ..Self::person()
        }
    }

    /// Same settings at another train and test size.
    pub fn with_size(self, size: ImageSize) -> Self {
        Self {
            train_size: size,
            test_size: size,
            ..self
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.train_size.validate("train_size")?;
        self.test_size.validate("test_size")?;
        self.normalization.validate()?;
        for (field, p) in [
            ("flip_prob", self.flip_prob),
            ("erasing_prob", self.erasing_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(DataError::invalid(
                    field,
                    format!("{p} is not a probability"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self::person()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_normalisation_maps_to_minus_one_one() {
        let t = Normalization::HALF.lookup_table();
        assert_eq!(t[0][0], -1.0);
        assert_eq!(t[1][255], 1.0);
        assert!((t[2][128] - 0.003_921_628).abs() < 1e-7);
    }

    #[test]
    fn imagenet_normalisation_values() {
        let t = Normalization::IMAGENET.lookup_table();
        assert!((t[0][0] - (-0.485 / 0.229)).abs() < 1e-6);
        assert!((t[2][255] - ((1.0 - 0.406) / 0.225)).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = [
            TransformConfig {
                flip_prob: 1.5,
                ..TransformConfig::person()
            },
            TransformConfig {
                erasing_prob: -0.1,
                ..TransformConfig::person()
            },
            TransformConfig::person().with_size(ImageSize::new(0, 128)),
            TransformConfig {
                normalization: Normalization {
                    mean: [0.5; 3],
                    std: [0.5, 0.0, 0.5],
                },
                ..TransformConfig::person()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(DataError::InvalidConfig { .. })),
                "{config:?}"
            );
        }
        assert!(TransformConfig::vehicle().validate().is_ok());
    }
}
