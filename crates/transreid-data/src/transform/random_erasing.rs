//! timm 0.3.2 `RandomErasing(probability, mode='pixel', max_count=1, device='cpu')`, the
//! reference's last train transform, applied to a normalised CHW image.

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// A rectangle `[top, top + height) × [left, left + width)` of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Random erasing with timm 0.3.2's parameters.
///
/// With probability `probability`, up to 10 attempts draw
/// `area = U(min_area, max_area)·H·W`, `aspect = exp(U(ln min_aspect, ln 1/min_aspect))`,
/// `h = round(√(area·aspect))`, `w = round(√(area/aspect))` (round half to even, as Python's
/// `round`); the first with `h < H` and `w < W` fills `[:, top:top+h, left:left+w]`, where
/// `top ~ U{0..=H−h}` and `left ~ U{0..=W−w}`, with i.i.d. N(0, 1) values per pixel and channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomErasing {
    /// Probability of erasing an image. Reference: `INPUT.RE_PROB` (0.5 or 0.8).
    pub probability: f64,
    /// Smallest erased fraction of the image. timm: 0.02.
    pub min_area: f64,
    /// Largest erased fraction of the image. timm: 1/3.
    pub max_area: f64,
    /// Smallest aspect ratio; the largest is its inverse. timm: 0.3.
    pub min_aspect: f64,
}

/// Attempts per image before giving up, as in timm.
const ATTEMPTS: usize = 10;

impl RandomErasing {
    /// timm 0.3.2's defaults with the given probability.
    pub fn new(probability: f64) -> Self {
        Self {
            probability,
            min_area: 0.02,
            max_area: 1.0 / 3.0,
            min_aspect: 0.3,
        }
    }

    /// Erases at most one rectangle of the `channels × height × width` image `chw` in place and
    /// returns it.
    ///
    /// # Panics
    /// If `chw.len() != channels·height·width`.
    pub fn apply<R: Rng + ?Sized>(
        &self,
        chw: &mut [f32],
        channels: usize,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> Option<Rect> {
        assert_eq!(
            chw.len(),
            channels * height * width,
            "CHW buffer of {channels}x{height}x{width}"
        );
        // timm: `if random.random() > self.probability: return`
        if rng.random::<f64>() > self.probability {
            return None;
        }
        let area = (height * width) as f64;
        let (log_min, log_max) = (self.min_aspect.ln(), (1.0 / self.min_aspect).ln());
        for _ in 0..ATTEMPTS {
            let target_area = uniform(rng, self.min_area, self.max_area) * area;
            let aspect = uniform(rng, log_min, log_max).exp();
            let h = (target_area * aspect).sqrt().round_ties_even() as usize;
            let w = (target_area / aspect).sqrt().round_ties_even() as usize;
            if w < width && h < height {
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                for c in 0..channels {
                    for y in top..top + h {
                        let row = (c * height + y) * width;
                        for v in &mut chw[row + left..row + left + w] {
                            *v = rng.sample(StandardNormal);
                        }
                    }
                }
                return Some(Rect {
                    top,
                    left,
                    height: h,
                    width: w,
                });
            }
        }
        None
    }
}

/// Python's `random.uniform(a, b) = a + (b − a)·random()`.
fn uniform<R: Rng + ?Sized>(rng: &mut R, a: f64, b: f64) -> f64 {
    a + (b - a) * rng.random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{derive_rng, RngPurpose};

    const C: usize = 3;
    const H: usize = 256;
    const W: usize = 128;

    #[test]
    fn erased_rectangles_respect_timm_bounds_and_only_touch_the_rectangle() {
        let erasing = RandomErasing::new(1.0);
        let mut erased = 0;
        for i in 0..300 {
            let mut rng = derive_rng(7, RngPurpose::Augmentation, 0, i);
            let mut img = vec![5.0f32; C * H * W];
            let Some(r) = erasing.apply(&mut img, C, H, W, &mut rng) else {
                continue;
            };
            erased += 1;
            assert!(
                r.height < H && r.width < W && r.top + r.height <= H && r.left + r.width <= W,
                "{r:?}"
            );
            // rounding of sqrt(area·aspect) can move the area slightly out of [0.02, 1/3]·H·W
            let frac = (r.height * r.width) as f64 / (H * W) as f64;
            assert!(
                (0.015..=0.36).contains(&frac),
                "{r:?}: area fraction {frac}"
            );
            let aspect = r.height as f64 / r.width as f64;
            assert!((0.25..=4.0).contains(&aspect), "{r:?}: aspect {aspect}");
            for c in 0..C {
                for y in 0..H {
                    for x in 0..W {
                        let inside = (r.top..r.top + r.height).contains(&y)
                            && (r.left..r.left + r.width).contains(&x);
                        let v = img[(c * H + y) * W + x];
                        assert_eq!(v == 5.0, !inside, "({c},{y},{x}) in {r:?}");
                    }
                }
            }
        }
        // with H, W this large an attempt fails only for extreme draws
        assert!(erased >= 295, "{erased}");
    }

    #[test]
    fn fill_is_standard_normal() {
        let erasing = RandomErasing::new(1.0);
        let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0usize);
        for i in 0..50 {
            let mut rng = derive_rng(1, RngPurpose::Augmentation, 0, i);
            let mut img = vec![f32::NAN; C * H * W];
            if erasing.apply(&mut img, C, H, W, &mut rng).is_some() {
                for v in img.iter().filter(|v| !v.is_nan()) {
                    sum += *v as f64;
                    sum_sq += (*v as f64).powi(2);
                    n += 1;
                }
            }
        }
        let mean = sum / n as f64;
        let var = sum_sq / n as f64 - mean * mean;
        assert!(
            n > 100_000 && mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "n {n} mean {mean} var {var}"
        );
    }

    #[test]
    fn probability_controls_how_often_images_are_erased() {
        let never = RandomErasing::new(0.0);
        let half = RandomErasing::new(0.5);
        let mut count = 0;
        for i in 0..2000 {
            let mut img = vec![0.0f32; 3 * 16 * 8];
            let mut rng = derive_rng(3, RngPurpose::Augmentation, 0, i);
            assert_eq!(never.apply(&mut img, 3, 16, 8, &mut rng), None);
            let mut rng = derive_rng(3, RngPurpose::Augmentation, 1, i);
            count += half.apply(&mut img, 3, 16, 8, &mut rng).is_some() as usize;
        }
        // P(erase) = 0.5 · P(some attempt fits in 16x8), the latter close to 1
        assert!((850..=1100).contains(&count), "{count}");
    }

    #[test]
    fn same_rng_same_erasure() {
        let erasing = RandomErasing::new(0.5);
        let run = |i| {
            let mut img = vec![0.0f32; 3 * 32 * 16];
            let r = erasing.apply(
                &mut img,
                3,
                32,
                16,
                &mut derive_rng(9, RngPurpose::Augmentation, 0, i),
            );
            (r, img)
        };
        for i in 0..20 {
            assert_eq!(run(i), run(i));
        }
    }
}
