//! The reference's NumPy arithmetic, reproduced operation by operation.
//!
//! `re_ranking` stores `V` and the Jaccard distance as `float16` and sums weights with NumPy's
//! pairwise summation. Every `float16` operation in NumPy converts both operands to `float32`,
//! operates, and rounds back to `float16` (round to nearest even); since `float32` carries more
//! than twice `float16`'s precision plus two bits, this equals correctly rounded `float16`
//! arithmetic, and doing the same here gives the reference's bits.

use half::f16;

/// NumPy's `np.sum` of a contiguous `float32` array (`pairwise_sum` in `loops_utils.h.src`):
/// below 8 elements a plain loop, up to 128 eight interleaved accumulators combined as
/// `((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))` then the remainder, above that a split at
/// `n/2` rounded down to a multiple of 8.
pub(crate) fn numpy_sum_f32(x: &[f32]) -> f32 {
    let n = x.len();
    if n < 8 {
        let mut res = 0.0f32;
        for &v in x {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f32; 8];
        r.copy_from_slice(&x[..8]);
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (acc, &v) in r.iter_mut().zip(&x[i..i + 8]) {
                *acc += v;
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &x[whole..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum_f32(&x[..n2]) + numpy_sum_f32(&x[n2..])
    }
}

/// `a + b` on `float16` arrays.
#[inline]
pub(crate) fn add_f16(a: f16, b: f16) -> f16 {
    f16::from_f32(a.to_f32() + b.to_f32())
}

/// `np.minimum` of two `float16` values (neither is NaN here).
#[inline]
pub(crate) fn min_f16(a: f16, b: f16) -> f16 {
    if b.to_f32() < a.to_f32() {
        b
    } else {
        a
    }
}

/// `np.mean(rows, axis=0)` of `float16` rows at one column: NumPy sums `float16` in `float32`,
/// divides by the count in `float32`, and casts the result back to `float16`.
#[inline]
pub(crate) fn mean_f16(sum_f32: f32, count: usize) -> f16 {
    f16::from_f32(sum_f32 / count as f32)
}

/// `1 - t / (2 - t)` on a `float16` overlap `t` (`jaccard_dist[i] = 1 - temp_min / (2 - temp_min)`),
/// every intermediate rounded to `float16`.
#[inline]
pub(crate) fn jaccard_distance(overlap: f16) -> f16 {
    let t = overlap.to_f32();
    let denominator = f16::from_f32(2.0 - t);
    let ratio = f16::from_f32(t / denominator.to_f32());
    f16::from_f32(1.0 - ratio.to_f32())
}

/// `final = jaccard * (1 - lambda) + original * lambda` with the reference's dtypes:
/// `jaccard` is a `float16` array, so the Python float `1 - lambda` is cast to `float16` and
/// the product rounded to `float16`; `original` is `float32`, so `lambda` is cast to `float32`;
/// the sum is taken in `float32`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Blend {
    jaccard_weight: f16,
    original_weight: f32,
}

impl Blend {
    pub(crate) fn new(lambda: f64) -> Self {
        Self {
            jaccard_weight: f16::from_f64(1.0 - lambda),
            original_weight: lambda as f32,
        }
    }

    /// Final distance from a Jaccard distance and a row-normalised original distance.
    #[inline]
    pub(crate) fn apply(&self, jaccard: f16, original: f32) -> f32 {
        let j = f16::from_f32(jaccard.to_f32() * self.jaccard_weight.to_f32());
        j.to_f32() + original * self.original_weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_follows_numpy_order() {
        // Below 8: sequential. 1e8 + 1 - 1e8 loses the 1 in f32 sequentially.
        assert_eq!(numpy_sum_f32(&[1e8, 1.0, -1e8]), 0.0);
        // 2^24 followed by seven ones and a zero: a plain loop rounds every 2^24 + 1 back to 2^24,
        // the eight accumulators add the ones among themselves first:
        // ((2^24 + 1) + (1 + 1)) + ((1 + 1) + (1 + 1)) = 2^24 + 6. NumPy prints 16777222 too.
        let mut x = vec![16_777_216.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        x.push(0.0);
        let seq: f32 = x.iter().fold(0.0, |a, &b| a + b);
        assert_eq!(numpy_sum_f32(&x), 16_777_222.0);
        assert_eq!(seq, 16_777_216.0);
        // Exact on integers of any length (exercise the recursive split).
        let big: Vec<f32> = (0..1000).map(|i| (i % 7) as f32).collect();
        assert_eq!(
            numpy_sum_f32(&big),
            big.iter().map(|&v| f64::from(v)).sum::<f64>() as f32
        );
        assert_eq!(numpy_sum_f32(&[]), 0.0);
    }

    #[test]
    fn float16_operations_round_each_step() {
        // 2048 + 1 is not representable in f16 (spacing 2 above 2048): ties to even -> 2048.
        assert_eq!(add_f16(f16::from_f32(2048.0), f16::ONE).to_f32(), 2048.0);
        assert_eq!(
            min_f16(f16::from_f32(0.25), f16::from_f32(0.5)).to_f32(),
            0.25
        );
        // mean of [1, 2, 2] = 5/3 -> f32 1.6666666 -> f16 1707 / 1024 (NumPy: 1.6669921875).
        assert_eq!(mean_f16(5.0, 3).to_f32(), 1707.0 / 1024.0);
        // t = 0: distance 1. t = 1: 1 - 1/1 = 0. t = 0.5: 0.5 / 1.5 -> f16 1365 / 4096, and
        // 1 - that = 1365.5 / 2048 ties to even 1366 / 2048 (NumPy: 0.6669921875).
        assert_eq!(jaccard_distance(f16::ZERO).to_f32(), 1.0);
        assert_eq!(jaccard_distance(f16::ONE).to_f32(), 0.0);
        assert_eq!(
            jaccard_distance(f16::from_f32(0.5)).to_f32(),
            1366.0 / 2048.0
        );
    }

    #[test]
    fn blend_uses_float16_weight_for_jaccard() {
        // 1 - 0.3 = 0.7 becomes f16 1434 / 2048 = 0.7001953125; 0.3 stays f32.
        let b = Blend::new(0.3);
        assert_eq!(b.apply(f16::ONE, 0.0), 1434.0 / 2048.0);
        assert_eq!(b.apply(f16::ZERO, 0.5), 0.5 * 0.3f32);
        // lambda = 1 returns the original distance exactly.
        let one = Blend::new(1.0);
        for d in [0.0f32, 0.123_456_79, 1.0] {
            assert_eq!(one.apply(f16::from_f32(0.77), d), d);
        }
    }
}
