//! The reference's test transform: `Resize(size)` (bilinear) → `ToTensor` → `Normalize`.

use image::RgbImage;

use crate::error::Result;
use crate::transform::config::{ImageSize, TransformConfig};
use crate::transform::resize::{resize_rgb, Interpolation};

/// Deterministic evaluation transform producing a normalised `[3, H, W]` image.
#[derive(Debug, Clone)]
pub struct TestTransform {
    size: ImageSize,
    table: [[f32; 256]; 3],
}

impl TestTransform {
    /// Uses `config.test_size` and `config.normalization`.
    ///
    /// # Errors
    /// [`crate::DataError::InvalidConfig`] for an invalid `config`.
    pub fn new(config: &TransformConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            size: config.test_size,
            table: config.normalization.lookup_table(),
        })
    }

    /// Output size `H × W`.
    pub fn size(&self) -> ImageSize {
        self.size
    }

    /// Transforms `image` into `out` (`[3, H, W]`, row-major).
    ///
    /// # Panics
    /// If `out.len() != 3·H·W` or `image` has a zero side.
    pub fn apply(&self, image: &RgbImage, out: &mut [f32]) {
        let plane = self.size.height as usize * self.size.width as usize;
        assert_eq!(
            out.len(),
            3 * plane,
            "output buffer for 3x{}x{}",
            self.size.height,
            self.size.width
        );
        let resized = resize_rgb(image, self.size, Interpolation::Bilinear);
        for (i, px) in resized.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = self.table[c][px[c] as usize];
            }
        }
    }

    /// Allocating form of [`TestTransform::apply`].
    pub fn apply_to_vec(&self, image: &RgbImage) -> Vec<f32> {
        let mut out = vec![0.0; self.size.chw_len()];
        self.apply(image, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::config::Normalization;

    #[test]
    fn constant_image_normalises_to_constant_planes() {
        let config = TransformConfig {
            normalization: Normalization::IMAGENET,
            ..TransformConfig::person()
        };
        let t = TestTransform::new(&config).unwrap();
        let out = t.apply_to_vec(&RgbImage::from_pixel(64, 128, image::Rgb([255, 0, 128])));
        assert_eq!(out.len(), 3 * 256 * 128);
        let plane = 256 * 128;
        let expect = [
            (1.0 - 0.485) / 0.229,
            -0.456 / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
        ];
        for c in 0..3 {
            assert!(
                out[c * plane..(c + 1) * plane]
                    .iter()
                    .all(|v| (v - expect[c]).abs() < 1e-5),
                "channel {c}"
            );
        }
    }

    #[test]
    fn chw_layout_keeps_rows_and_columns() {
        let config = TransformConfig::person().with_size(ImageSize::new(4, 2));
        let t = TestTransform::new(&config).unwrap();
        // already at the test size: the resize is a copy
        let img = RgbImage::from_fn(2, 4, |x, y| {
            image::Rgb([(x * 255) as u8, (y * 85) as u8, 0])
        });
        let out = t.apply_to_vec(&img);
        let table = Normalization::HALF.lookup_table();
        assert_eq!(out[1], table[0][255]); // c0, y0, x1
        assert_eq!(out[8 + 2 * 2], table[1][170]); // c1, y2, x0
        assert_eq!(out[16 + 7], -1.0); // c2, y3, x1
    }

    #[test]
    fn deterministic() {
        let t = TestTransform::new(&TransformConfig::person()).unwrap();
        let img = RgbImage::from_fn(50, 90, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 2) as u8, (x * y % 256) as u8])
        });
        assert_eq!(t.apply_to_vec(&img), t.apply_to_vec(&img));
    }
}
