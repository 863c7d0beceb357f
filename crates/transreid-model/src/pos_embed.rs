//! Position-embedding resize for loading ImageNet weights at re-identification resolutions.

use crate::error::ImportError;

/// Resizes a ViT position embedding to a `[new_y, new_x]` patch grid as the reference does.
///
/// `posemb` is `[1, prefix + gs * gs, dim]` flattened row-major. The `prefix` tokens (the cls
/// token) are copied unchanged; the old grid is assumed square (`gs = sqrt(len)`) and resampled
/// bilinearly with `align_corners = false` and no antialiasing, which is PyTorch's
/// `F.interpolate(mode='bilinear')`: for an output index `o`,
/// `src = max((o + 0.5) * in / out - 0.5, 0)`, `i0 = floor(src)`, `i1 = min(i0 + 1, in - 1)`,
/// `w = src - i0`. Returns `[1, prefix + new_y * new_x, dim]` flattened.
///
/// Computed on the host in f64 (it runs once at load time), so every backend gets the same weights.
pub fn resize_pos_embed(
    posemb: &[f32],
    dim: usize,
    prefix: usize,
    new_grid: [usize; 2],
) -> Result<Vec<f32>, ImportError> {
    let tokens = posemb.len() / dim - prefix;
    let gs = (tokens as f64).sqrt().round() as usize;
    if gs * gs != tokens {
        return Err(ImportError::NonSquarePosEmbed { tokens });
    }
    Ok(resize_pos_embed_grid(
        posemb,
        dim,
        prefix,
        [gs, gs],
        new_grid,
    ))
}

/// [`resize_pos_embed`] from an `old_grid = [h, w]` that need not be square (LUPerson weights
/// are trained at 256x128: a 16x8 grid).
///
/// # Panics
/// If `posemb` does not hold `prefix + h * w` tokens of `dim` values.
pub fn resize_pos_embed_grid(
    posemb: &[f32],
    dim: usize,
    prefix: usize,
    old_grid: [usize; 2],
    new_grid: [usize; 2],
) -> Vec<f32> {
    let [gh, gw] = old_grid;
    assert_eq!(
        posemb.len(),
        (prefix + gh * gw) * dim,
        "position embedding does not hold a {gh}x{gw} grid"
    );
    let [ny, nx] = new_grid;
    let ys = source_taps(gh, ny);
    let xs = source_taps(gw, nx);
    let grid = &posemb[prefix * dim..];
    let mut out = Vec::with_capacity((prefix + ny * nx) * dim);
    out.extend_from_slice(&posemb[..prefix * dim]);
    for &(y0, y1, wy) in &ys {
        for &(x0, x1, wx) in &xs {
            for d in 0..dim {
                let at = |y: usize, x: usize| grid[(y * gw + x) * dim + d] as f64;
                let top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx;
                let bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx;
                out.push((top * (1.0 - wy) + bottom * wy) as f32);
            }
        }
    }
    out
}

/// `(i0, i1, weight of i1)` for each output index of a 1-D bilinear resize, align_corners false.
fn source_taps(input: usize, output: usize) -> Vec<(usize, usize, f64)> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let dim = 3;
        let posemb: Vec<f32> = (0..(1 + 16) * dim).map(|v| v as f32 * 0.1).collect();
        let out = resize_pos_embed(&posemb, dim, 1, [4, 4]).unwrap();
        assert_eq!(out, posemb);
    }

    #[test]
    fn upsampling_interpolates_between_neighbours() {
        // 2x2 grid [[0, 1], [2, 3]] to 1x4 row: y maps to src 0.5 -> average of both rows.
        let posemb = vec![9.0, 0.0, 1.0, 2.0, 3.0];
        let out = resize_pos_embed(&posemb, 1, 1, [1, 4]).unwrap();
        // x taps for 2 -> 4: src = 0, 0.25, 0.75, 1.0(clamped i1) -> weights as below.
        let expected = [9.0, 1.0, 1.25, 1.75, 2.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn non_square_grid_is_an_error() {
        let posemb = vec![0.0; 1 + 6];
        assert!(matches!(
            resize_pos_embed(&posemb, 1, 1, [2, 2]),
            Err(ImportError::NonSquarePosEmbed { tokens: 6 })
        ));
    }
}
