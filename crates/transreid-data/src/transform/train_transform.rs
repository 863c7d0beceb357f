//! The reference's train transform, producing a normalised CHW image.

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::transform::config::{ImageSize, TransformConfig};
use crate::transform::random_erasing::{RandomErasing, Rect};
use crate::transform::resize::{resize_rgb, Interpolation};

/// `Resize(size, bicubic)` → `RandomHorizontalFlip(p)` → `Pad(padding, fill=0)` →
/// `RandomCrop(size)` → `ToTensor` → `Normalize(mean, std)` → `RandomErasing(pixel mode)`.
///
/// Random draws, in the reference's order, from the one generator passed to
/// [`TrainTransform::apply`]: flip (`u < p`), crop top then left (each uniform in
/// `0..=2·padding`), then erasing. Padding pixels are black (`v = 0`) before normalisation, so
/// they hold `−mean_c / std_c` afterwards (−1 with mean/std 0.5).
#[derive(Debug, Clone)]
pub struct TrainTransform {
    size: ImageSize,
    flip_prob: f64,
    padding: u32,
    erasing: RandomErasing,
    table: [[f32; 256]; 3],
}

/// The random choices one [`TrainTransform::apply`] call made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainAugmentation {
    pub flipped: bool,
    /// Crop offset into the padded image, in `0..=2·padding`.
    pub crop_top: u32,
    pub crop_left: u32,
    /// The erased rectangle, if any.
    pub erased: Option<Rect>,
}

impl TrainTransform {
    /// # Errors
    /// [`crate::DataError::InvalidConfig`] for zero sizes, probabilities outside `[0, 1]` or a
    /// non-positive std.
    pub fn new(config: &TransformConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            size: config.train_size,
            flip_prob: config.flip_prob,
            padding: config.padding,
            erasing: RandomErasing::new(config.erasing_prob),
            table: config.normalization.lookup_table(),
        })
    }

    /// Output size `H × W`.
    pub fn size(&self) -> ImageSize {
        self.size
    }

    /// Transforms `image` into `out` (`[3, H, W]`, row-major) and reports the random choices.
    ///
    /// # Panics
    /// If `out.len() != 3·H·W` or `image` has a zero side.
    pub fn apply<R: Rng + ?Sized>(
        &self,
        image: &RgbImage,
        rng: &mut R,
        out: &mut [f32],
    ) -> TrainAugmentation {
        let (h, w) = (self.size.height as usize, self.size.width as usize);
        assert_eq!(out.len(), 3 * h * w, "output buffer for 3x{h}x{w}");
        let resized = resize_rgb(image, self.size, Interpolation::Bicubic);
        // torchvision: `torch.rand(1) < p` flips; `randint(0, H + 2·pad − H + 1)` per crop axis
        let flipped = rng.random::<f64>() < self.flip_prob;
        let span = 2 * self.padding;
        let crop_top = rng.random_range(0..=span);
        let crop_left = rng.random_range(0..=span);
        self.write_padded_crop(&resized, flipped, crop_top, crop_left, out);
        let erased = self.erasing.apply(out, 3, h, w, rng);
        TrainAugmentation {
            flipped,
            crop_top,
            crop_left,
            erased,
        }
    }

    /// Allocating form of [`TrainTransform::apply`].
    pub fn apply_to_vec<R: Rng + ?Sized>(
        &self,
        image: &RgbImage,
        rng: &mut R,
    ) -> (Vec<f32>, TrainAugmentation) {
        let mut out = vec![0.0; self.size.chw_len()];
        let aug = self.apply(image, rng, &mut out);
        (out, aug)
    }

    /// Flip, pad and crop in one pass: output `(y, x)` reads the (flipped) resized image at
    /// `(y + top − pad, x + left − pad)`, or black outside it.
    fn write_padded_crop(
        &self,
        resized: &RgbImage,
        flipped: bool,
        top: u32,
        left: u32,
        out: &mut [f32],
    ) {
        let (h, w) = (self.size.height as i64, self.size.width as i64);
        let pad = self.padding as i64;
        let raw = resized.as_raw();
        let plane = (h * w) as usize;
        for y in 0..h {
            let sy = y + top as i64 - pad;
            for x in 0..w {
                let sx = x + left as i64 - pad;
                let o = (y * w + x) as usize;
                if sy < 0 || sy >= h || sx < 0 || sx >= w {
                    for c in 0..3 {
                        out[c * plane + o] = self.table[c][0];
                    }
                    continue;
                }
                let sx = if flipped { w - 1 - sx } else { sx };
                let p = ((sy * w + sx) * 3) as usize;
                for c in 0..3 {
                    out[c * plane + o] = self.table[c][raw[p + c] as usize];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{derive_rng, RngPurpose};
    use crate::transform::config::Normalization;

    fn config(erasing_prob: f64, flip_prob: f64) -> TransformConfig {
        TransformConfig {
            erasing_prob,
            flip_prob,
            ..TransformConfig::person().with_size(ImageSize::new(32, 16))
        }
    }

    /// A 16x32 image whose pixel (x, y) is (8x, 4y, 100): already the output size, so the
    /// resize is the identity and positions can be checked exactly.
    fn ramp() -> RgbImage {
        RgbImage::from_fn(16, 32, |x, y| {
            image::Rgb([(8 * x) as u8, (4 * y) as u8, 100])
        })
    }

    fn at(out: &[f32], c: usize, y: usize, x: usize) -> f32 {
        out[(c * 32 + y) * 16 + x]
    }

    #[test]
    fn crop_and_flip_geometry_is_exact() {
        let t = TrainTransform::new(&config(0.0, 0.5)).unwrap();
        let table = Normalization::HALF.lookup_table();
        let (mut seen_flip, mut seen_plain) = (false, false);
        for i in 0..64 {
            let mut rng = derive_rng(11, RngPurpose::Augmentation, 0, i);
            let (out, aug) = t.apply_to_vec(&ramp(), &mut rng);
            assert_eq!(out.len(), 3 * 32 * 16);
            assert!(aug.crop_top <= 20 && aug.crop_left <= 20 && aug.erased.is_none());
            seen_flip |= aug.flipped;
            seen_plain |= !aug.flipped;
            for y in 0..32i64 {
                for x in 0..16i64 {
                    let (sy, sx) = (y + aug.crop_top as i64 - 10, x + aug.crop_left as i64 - 10);
                    let expected = if (0..32).contains(&sy) && (0..16).contains(&sx) {
                        let sx = if aug.flipped { 15 - sx } else { sx };
                        [
                            table[0][8 * sx as usize],
                            table[1][4 * sy as usize],
                            table[2][100],
                        ]
                    } else {
                        [-1.0; 3]
                    };
                    for (c, value) in expected.into_iter().enumerate() {
                        assert_eq!(
                            at(&out, c, y as usize, x as usize),
                            value,
                            "{aug:?} ({c},{y},{x})"
                        );
                    }
                }
            }
        }
        assert!(seen_flip && seen_plain);
    }

    #[test]
    fn crop_offsets_cover_zero_to_twenty() {
        let t = TrainTransform::new(&config(0.0, 0.0)).unwrap();
        let mut tops = [false; 21];
        for i in 0..1000 {
            let aug = t
                .apply_to_vec(&ramp(), &mut derive_rng(2, RngPurpose::Augmentation, 0, i))
                .1;
            tops[aug.crop_top as usize] = true;
            assert!(!aug.flipped);
        }
        assert!(tops.iter().all(|t| *t));
    }

    #[test]
    fn output_has_train_size_and_value_range() {
        let t = TrainTransform::new(&TransformConfig::person()).unwrap();
        let img = RgbImage::from_fn(64, 128, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
        });
        for i in 0..8 {
            let (out, aug) =
                t.apply_to_vec(&img, &mut derive_rng(5, RngPurpose::Augmentation, 0, i));
            assert_eq!(out.len(), 3 * 256 * 128);
            let erased = aug.erased.map(|r| r.height * r.width * 3).unwrap_or(0);
            let outside = out.iter().filter(|v| !(-1.0..=1.0).contains(*v)).count();
            // only N(0,1) erasing values may leave [-1, 1]
            assert!(
                outside <= erased,
                "{outside} values outside [-1, 1], {erased} erased"
            );
        }
    }

    #[test]
    fn same_rng_same_output_and_different_rng_differs() {
        let t = TrainTransform::new(&TransformConfig::person()).unwrap();
        let img = ramp();
        let a = t.apply_to_vec(&img, &mut derive_rng(1, RngPurpose::Augmentation, 0, 0));
        let b = t.apply_to_vec(&img, &mut derive_rng(1, RngPurpose::Augmentation, 0, 0));
        let c = t.apply_to_vec(&img, &mut derive_rng(1, RngPurpose::Augmentation, 0, 1));
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
    }

    #[test]
    #[should_panic(expected = "output buffer")]
    fn wrong_buffer_size_panics() {
        let t = TrainTransform::new(&config(0.0, 0.0)).unwrap();
        t.apply(
            &ramp(),
            &mut derive_rng(0, RngPurpose::Augmentation, 0, 0),
            &mut [0.0; 10],
        );
    }
}
