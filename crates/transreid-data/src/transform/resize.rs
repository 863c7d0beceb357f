//! PIL-compatible resampling (torchvision `Resize` on PIL images) through `fast_image_resize`,
//! whose convolution filters follow Pillow's: support scaled by the downscale factor
//! (antialiasing), bicubic with `a = −0.5`, results rounded to 8 bits.

use std::cell::RefCell;

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::transform::config::ImageSize;

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// PIL `BICUBIC` (`interpolation=3`): the reference's train resize.
    Bicubic,
    /// PIL `BILINEAR`: torchvision's default and so the reference's test resize.
    Bilinear,
}

impl Interpolation {
    fn filter(self) -> FilterType {
        match self {
            Interpolation::Bicubic => FilterType::CatmullRom,
            Interpolation::Bilinear => FilterType::Bilinear,
        }
    }
}

thread_local! {
    // The resizer keeps scratch buffers; one per thread avoids reallocating them per image.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resizes `image` to exactly `size` (aspect ratio not kept), like PIL's
/// `image.resize((W, H), filter)`. The same size returns a copy.
///
/// # Panics
/// If `image` or `size` has a zero side.
pub fn resize_rgb(image: &RgbImage, size: ImageSize, interpolation: Interpolation) -> RgbImage {
    assert!(
        image.width() > 0 && image.height() > 0 && size.width > 0 && size.height > 0,
        "cannot resize {}x{} to {}x{}",
        image.width(),
        image.height(),
        size.width,
        size.height
    );
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(interpolation.filter()));
    // Pillow resamples horizontally first and rounds the intermediate image to 8 bits;
    // fast_image_resize does the vertical pass first for u8 images, so the passes are run
    // one at a time in Pillow's order (overshoot clipped at the same point).
    let (src_w, src_h) = (image.width(), image.height());
    let horizontal = if src_w == size.width {
        None
    } else {
        Some(convolve(
            image.as_raw(),
            src_w,
            src_h,
            size.width,
            src_h,
            &options,
        ))
    };
    let after_horizontal = horizontal.as_deref().unwrap_or(image.as_raw());
    let buffer = if src_h == size.height {
        after_horizontal.to_vec()
    } else {
        convolve(
            after_horizontal,
            size.width,
            src_h,
            size.width,
            size.height,
            &options,
        )
    };
    RgbImage::from_raw(size.width, size.height, buffer).expect("buffer sized for the destination")
}

/// One resampling pass of packed RGB `src` (`src_w × src_h`) to `dst_w × dst_h`.
fn convolve(
    src: &[u8],
    src_w: u32,
    src_h: u32,
    dst_w: u32,
    dst_h: u32,
    options: &ResizeOptions,
) -> Vec<u8> {
    let src = TypedImageRef::<U8x3>::from_buffer(src_w, src_h, src)
        .expect("buffer holds src_w·src_h RGB pixels");
    let mut buffer = vec![0u8; 3 * dst_w as usize * dst_h as usize];
    let mut dst = TypedImage::<U8x3>::from_buffer(dst_w, dst_h, &mut buffer)
        .expect("buffer sized for the destination");
    RESIZER.with_borrow_mut(|resizer| {
        resizer
            .resize_typed(&src, &mut dst, options)
            .expect("same pixel type and non-empty sizes")
    });
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern `scripts/resize_golden.py` resizes with PIL.
    fn pattern() -> RgbImage {
        RgbImage::from_fn(7, 11, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                ((37 * x + 91 * y + 53 * c as u32 + 11 * ((x * y) % 13)) % 256) as u8
            }))
        })
    }

    /// Largest absolute difference to PIL, and how many values differ.
    fn compare(
        interpolation: Interpolation,
        width: u32,
        height: u32,
        expected: &[u8],
    ) -> (u8, usize) {
        let out = resize_rgb(&pattern(), ImageSize::new(height, width), interpolation);
        assert_eq!(out.dimensions(), (width, height));
        let diffs: Vec<u8> = out
            .as_raw()
            .iter()
            .zip(expected)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        (
            *diffs.iter().max().unwrap(),
            diffs.iter().filter(|d| **d > 0).count(),
        )
    }

    /// Bicubic coefficients are rounded to fewer bits than Pillow's, so a few values may be
    /// one level off (here 4 of 600 and 1 of 72).
    #[test]
    fn bicubic_matches_pil_within_one_level() {
        for (w, h, golden) in [(10, 20, &BICUBIC_10X20[..]), (4, 6, &BICUBIC_4X6[..])] {
            let (max, differing) = compare(Interpolation::Bicubic, w, h, golden);
            assert!(max <= 1, "{w}x{h}: max difference {max}");
            assert!(
                differing * 50 <= golden.len(),
                "{w}x{h}: {differing} values differ"
            );
        }
    }

    #[test]
    fn bilinear_matches_pil_exactly() {
        for (w, h, golden) in [(10, 20, &BILINEAR_10X20[..]), (4, 6, &BILINEAR_4X6[..])] {
            assert_eq!(
                compare(Interpolation::Bilinear, w, h, golden),
                (0, 0),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = pattern();
        assert_eq!(
            resize_rgb(&img, ImageSize::new(11, 7), Interpolation::Bicubic),
            img
        );
    }
    #[rustfmt::skip]
    const BICUBIC_10X20: [u8; 600] = [0, 44, 97, 9, 62, 114, 37, 90, 148, 63, 115, 189, 87, 156, 216, 120, 189, 251, 160, 213, 255, 186, 255, 71, 214, 137, 24, 232, 0, 61, 20, 71, 134, 39, 97, 159, 72, 134, 169, 107, 161, 138, 141, 135, 160, 138, 133, 202, 112, 166, 223, 139, 214, 106, 176, 146, 87, 202, 55, 119, 76, 128, 194, 99, 159, 234, 139, 208, 205, 181, 239, 49, 232, 99, 64, 169, 36, 112, 29, 87, 151, 60, 131, 166, 109, 158, 197, 140, 168, 222, 139, 200, 128, 175, 158, 167, 185, 140, 166, 132, 185, 82, 172, 111, 117, 153, 91, 114, 79, 132, 69, 118, 83, 125, 106, 105, 176, 72, 151, 203, 179, 248, 29, 227, 127, 61, 204, 36, 107, 49, 95, 147, 72, 135, 207, 124, 187, 149, 165, 211, 9, 222, 56, 51, 132, 34, 103, 13, 82, 135, 90, 151, 60, 132, 104, 113, 151, 90, 136, 105, 157, 74, 151, 105, 119, 149, 109, 124, 109, 156, 75, 226, 32, 54, 143, 24, 93, 2, 72, 143, 12, 64, 127, 50, 108, 173, 104, 171, 155, 151, 209, 11, 219, 80, 43, 163, 34, 109, 37, 89, 150, 190, 37, 93, 150, 57, 104, 35, 103, 143, 57, 110, 206, 120, 179, 142, 143, 208, 75, 61, 116, 65, 125, 102, 125, 108, 89, 160, 22, 74, 157, 130, 107, 180, 160, 169, 133, 139, 217, 72, 124, 176, 207, 162, 215, 108, 144, 197, 49, 21, 77, 139, 59, 125, 197, 76, 140, 181, 52, 105, 122, 76, 144, 206, 149, 195, 138, 214, 228, 28, 200, 247, 81, 124, 175, 88, 62, 119, 131, 88, 159, 218, 70, 135, 223, 96, 152, 142, 144, 197, 35, 39, 113, 121, 107, 64, 100, 228, 53, 36, 173, 219, 48, 94, 155, 118, 61, 107, 192, 159, 154, 210, 126, 157, 176, 123, 180, 106, 146, 199, 40, 12, 80, 91, 73, 26, 105, 198, 23, 95, 47, 98, 114, 78, 155, 193, 144, 160, 224, 226, 58, 116, 217, 190, 65, 151, 221, 80, 59, 112, 136, 0, 54, 117, 51, 87, 153, 129, 144, 200, 41, 113, 185, 119, 136, 198, 210, 111, 166, 245, 11, 67, 197, 152, 70, 110, 184, 118, 27, 80, 164, 45, 96, 84, 85, 147, 145, 115, 188, 246, 110, 188, 241, 184, 107, 160, 246, 20, 73, 220, 2, 56, 118, 87, 136, 44, 117, 179, 37, 90, 145, 124, 177, 20, 144, 198, 104, 125, 179, 247, 184, 103, 155, 177, 84, 145, 160, 59, 131, 136, 49, 120, 123, 134, 123, 112, 175, 112, 111, 164, 76, 164, 217, 0, 131, 184, 74, 72, 125, 196, 223, 4, 57, 146, 82, 133, 69, 143, 198, 65, 121, 176, 154, 208, 82, 197, 250, 26, 173, 226, 23, 167, 220, 2, 93, 146, 64, 16, 69, 138, 115, 42, 105, 134, 140, 102, 147, 222, 96, 136, 203, 88, 184, 241, 31, 175, 227, 36, 107, 160, 100, 89, 142, 99, 49, 102, 119, 14, 67, 144, 44, 110, 177, 119, 178, 101, 186, 238, 28, 174, 227, 33, 172, 225, 24, 123, 176, 76, 44, 97, 167, 50, 103, 156, 54, 107, 142, 54, 107, 136, 115, 177, 234, 94, 151, 163, 75, 128, 98, 79, 132, 108, 79, 132, 109, 61, 114, 131, 45, 98, 156, 127, 180, 94, 158, 211, 69, 155, 208, 73, 158, 211, 255, 81, 134, 198, 12, 65, 141, 25, 78, 152, 28, 81, 157, 29, 82, 160, 49, 102, 147, 172, 225, 56, 216, 255, 28, 209, 255, 38];
    #[rustfmt::skip]
    const BICUBIC_4X6: [u8; 72] = [69, 120, 161, 132, 147, 144, 123, 146, 165, 153, 135, 127, 140, 138, 117, 140, 127, 109, 141, 106, 94, 109, 73, 125, 113, 175, 124, 92, 137, 135, 89, 115, 140, 140, 127, 105, 116, 140, 158, 179, 110, 137, 79, 144, 106, 92, 105, 138, 159, 92, 136, 149, 133, 103, 128, 184, 69, 89, 147, 109, 102, 151, 152, 102, 163, 87, 84, 136, 120, 118, 171, 92];
    #[rustfmt::skip]
    const BILINEAR_10X20: [u8; 600] = [0, 53, 106, 20, 73, 126, 46, 99, 152, 72, 125, 178, 98, 151, 204, 124, 177, 230, 150, 203, 243, 176, 229, 90, 202, 139, 52, 222, 19, 72, 30, 83, 136, 52, 105, 158, 80, 133, 165, 109, 162, 135, 137, 136, 160, 136, 135, 188, 111, 164, 208, 139, 192, 116, 168, 143, 101, 190, 70, 123, 80, 133, 186, 105, 158, 211, 138, 191, 188, 171, 224, 63, 203, 111, 85, 157, 65, 118, 44, 97, 149, 77, 130, 159, 110, 149, 184, 135, 156, 209, 130, 183, 127, 158, 152, 155, 168, 140, 156, 129, 177, 89, 160, 118, 119, 146, 103, 118, 87, 134, 84, 124, 95, 121, 112, 105, 158, 81, 134, 187, 180, 233, 36, 212, 128, 68, 191, 57, 108, 57, 98, 144, 85, 134, 185, 125, 174, 139, 162, 202, 18, 202, 68, 59, 131, 48, 101, 26, 79, 132, 95, 148, 80, 131, 117, 115, 146, 108, 128, 107, 153, 78, 146, 111, 117, 144, 109, 120, 105, 145, 82, 191, 52, 75, 136, 49, 102, 31, 84, 137, 24, 77, 130, 62, 115, 158, 108, 161, 140, 144, 197, 24, 193, 91, 62, 155, 54, 107, 49, 90, 143, 172, 47, 100, 141, 64, 109, 50, 103, 137, 74, 127, 180, 116, 169, 134, 130, 183, 92, 72, 125, 79, 118, 108, 128, 106, 97, 150, 42, 90, 143, 126, 107, 160, 146, 147, 128, 136, 189, 82, 124, 177, 185, 145, 198, 115, 130, 183, 77, 40, 93, 136, 72, 125, 178, 79, 132, 170, 59, 112, 122, 85, 138, 180, 141, 173, 132, 197, 206, 47, 174, 227, 94, 121, 174, 105, 82, 135, 135, 95, 148, 197, 87, 140, 193, 98, 151, 140, 126, 179, 56, 58, 111, 118, 111, 80, 102, 205, 73, 55, 154, 207, 74, 104, 157, 127, 87, 122, 175, 153, 139, 192, 127, 155, 163, 118, 171, 114, 128, 181, 58, 37, 90, 97, 84, 54, 107, 182, 49, 102, 63, 116, 124, 94, 147, 180, 145, 145, 198, 215, 68, 121, 193, 172, 88, 139, 192, 93, 65, 118, 129, 22, 75, 117, 61, 93, 146, 127, 136, 189, 68, 121, 174, 127, 128, 181, 189, 106, 159, 226, 31, 84, 178, 141, 90, 113, 166, 115, 45, 98, 146, 58, 111, 92, 86, 139, 139, 115, 168, 221, 118, 171, 224, 181, 103, 156, 227, 38, 91, 213, 11, 64, 125, 88, 129, 65, 118, 158, 45, 98, 139, 117, 170, 45, 133, 186, 109, 123, 176, 229, 168, 100, 153, 167, 91, 144, 160, 79, 132, 143, 62, 115, 132, 138, 112, 119, 172, 103, 106, 159, 83, 142, 195, 26, 120, 173, 85, 77, 130, 183, 212, 15, 68, 144, 84, 134, 84, 137, 183, 71, 124, 170, 149, 202, 86, 185, 238, 37, 170, 223, 26, 158, 211, 15, 96, 149, 64, 25, 78, 131, 121, 65, 118, 134, 138, 110, 141, 194, 100, 132, 185, 91, 164, 217, 52, 154, 207, 56, 104, 157, 101, 96, 149, 93, 66, 119, 112, 33, 86, 139, 62, 115, 168, 121, 174, 103, 166, 219, 48, 162, 215, 44, 158, 211, 40, 120, 173, 81, 53, 106, 157, 61, 114, 143, 62, 115, 136, 59, 112, 133, 112, 165, 218, 96, 149, 156, 83, 136, 106, 83, 136, 106, 84, 137, 107, 71, 124, 123, 52, 105, 150, 120, 173, 97, 145, 198, 78, 145, 198, 78, 142, 195, 248, 82, 135, 188, 34, 87, 140, 37, 90, 143, 40, 93, 146, 42, 95, 148, 52, 105, 146, 155, 208, 69, 194, 247, 44, 196, 249, 46];
    #[rustfmt::skip]
    const BILINEAR_4X6: [u8; 72] = [76, 120, 156, 128, 146, 142, 125, 142, 159, 150, 129, 127, 137, 138, 118, 136, 128, 114, 135, 111, 101, 114, 79, 123, 116, 169, 127, 98, 135, 132, 92, 118, 135, 136, 129, 110, 118, 138, 155, 170, 115, 131, 87, 140, 109, 93, 110, 136, 153, 102, 134, 144, 134, 106, 123, 176, 76, 94, 147, 106, 106, 148, 149, 104, 157, 94, 87, 140, 116, 117, 170, 94];
}
