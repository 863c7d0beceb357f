//! A patch-grid map spread over the image's pixels.

/// A grid map and the patch layout it cannot be spread over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageMapError {
    /// The map does not hold one value per grid cell.
    #[error("a {grid_h}x{grid_w} grid needs {} values, got {len}", grid_h * grid_w)]
    Len {
        /// Grid rows.
        grid_h: usize,
        /// Grid columns.
        grid_w: usize,
        /// Values given.
        len: usize,
    },
    /// The patches of the grid do not fit in the image, or a stride is 0.
    #[error(
        "a {grid_h}x{grid_w} grid of {patch}-pixel patches at stride {stride:?} does not fit \
         a {height}x{width} image"
    )]
    Layout {
        /// Grid rows.
        grid_h: usize,
        /// Grid columns.
        grid_w: usize,
        /// Patch size.
        patch: usize,
        /// Stride `[y, x]`.
        stride: [usize; 2],
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
    },
}

/// Spreads a row-major `[grid_h, grid_w]` map over a `[height, width]` image: patch `(r, c)`
/// covers rows `r * stride_y .. r * stride_y + patch` and columns likewise, and each pixel
/// gets the mean of the patches covering it (with overlapping patches, stride < patch, several
/// do). Pixels no patch covers (the remainder a convolution without padding skips at the
/// bottom and right) get 0. Returns `height * width` values, row-major.
pub fn image_map(
    map: &[f32],
    grid: [usize; 2],
    patch: usize,
    stride: [usize; 2],
    image: [usize; 2],
) -> Result<Vec<f32>, ImageMapError> {
    let ([gh, gw], [height, width]) = (grid, image);
    if map.len() != gh * gw {
        return Err(ImageMapError::Len {
            grid_h: gh,
            grid_w: gw,
            len: map.len(),
        });
    }
    let extent = |cells: usize, s: usize| cells.saturating_sub(1) * s + patch;
    if stride.contains(&0)
        || patch == 0
        || (gh > 0 && extent(gh, stride[0]) > height)
        || (gw > 0 && extent(gw, stride[1]) > width)
    {
        return Err(ImageMapError::Layout {
            grid_h: gh,
            grid_w: gw,
            patch,
            stride,
            height,
            width,
        });
    }
    let mut sum = vec![0.0f64; height * width];
    let mut count = vec![0u32; height * width];
    for r in 0..gh {
        for c in 0..gw {
            let value = map[r * gw + c] as f64;
            for y in r * stride[0]..r * stride[0] + patch {
                for x in c * stride[1]..c * stride[1] + patch {
                    sum[y * width + x] += value;
                    count[y * width + x] += 1;
                }
            }
        }
    }
    Ok(sum
        .iter()
        .zip(&count)
        .map(|(&s, &n)| if n == 0 { 0.0 } else { (s / n as f64) as f32 })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pixel_is_the_mean_of_its_covering_patches() {
        // 22x12 image, 8-pixel patches at stride [6, 4]: grid 3x2, rows 20-21 uncovered.
        let map = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let pixels = image_map(&map, [3, 2], 8, [6, 4], [22, 12]).unwrap();
        assert_eq!(pixels.len(), 264);
        let at = |y: usize, x: usize| pixels[y * 12 + x];
        assert_eq!(at(0, 0), 1.0);
        // Column 5 is covered by both grid columns, row 7 by grid rows 0 and 1.
        assert_eq!(at(0, 5), 1.5);
        assert_eq!(at(7, 5), 2.5);
        assert_eq!(at(7, 11), 3.0);
        assert_eq!(at(17, 11), 6.0);
        assert_eq!(at(19, 0), 5.0);
        assert_eq!(at(20, 0), 0.0);
        // A constant map is constant wherever a patch reaches.
        let flat = image_map(&[0.5; 6], [3, 2], 8, [6, 4], [22, 12]).unwrap();
        assert!(flat[..20 * 12].iter().all(|&v| v == 0.5));
        assert!(flat[20 * 12..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_layout_that_does_not_fit_is_an_error() {
        assert!(matches!(
            image_map(&[1.0; 6], [3, 2], 8, [6, 4], [19, 12]),
            Err(ImageMapError::Layout { .. })
        ));
        assert!(matches!(
            image_map(&[1.0; 5], [3, 2], 8, [6, 4], [22, 12]),
            Err(ImageMapError::Len { len: 5, .. })
        ));
        assert!(matches!(
            image_map(&[1.0; 6], [3, 2], 8, [0, 4], [22, 12]),
            Err(ImageMapError::Layout { .. })
        ));
    }
}
