//! Kernels for the Flex CPU backend where Burn's generic composition is slow: the exact GELU
//! (Flex evaluates `erf` one scalar at a time) and the merge of attention heads (a permuted
//! reshape is a strided gather there). The modules stay generic: each function takes a
//! `Tensor<B, D>`, computes it here when `B` is Flex and the tensor f32, and otherwise hands
//! the tensor back for the generic path. The autodiff backends never match, so training and
//! gradients are untouched.

use std::any::{Any, TypeId};

use burn::prelude::*;
use burn::tensor::{DType, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise scheduling, small enough to share
/// out a `[tokens, 3072]` activation between cores.
const CHUNK: usize = 1 << 14;

/// `x` as `U` when it is one.
fn cast<T: 'static, U: 'static>(x: T) -> Result<U, T> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return Err(x);
    }
    let boxed: Box<dyn Any> = Box::new(x);
    Ok(*boxed.downcast::<U>().expect("same type"))
}

/// The Flex tensor behind `x`, when `B` is Flex and `x` an f32 tensor.
fn into_flex<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    match x.into_primitive() {
        TensorPrimitive::Float(p) => {
            cast(p).map_err(|p| Tensor::from_primitive(TensorPrimitive::Float(p)))
        }
        q => Err(Tensor::from_primitive(q)),
    }
}

fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let p = cast(t).unwrap_or_else(|_| unreachable!("only called with a Flex backend"));
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn from_vec<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    from_flex(FlexTensor::from_data(TensorData::new(values, shape)))
}

/// `x * Φ(x)` on Flex (see [`crate::gelu_exact`]), in place when `x` owns its buffer, or `x`
/// back for another backend.
pub(crate) fn gelu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let mut t = into_flex(x)?;
    if !t.is_contiguous() {
        t = t.to_contiguous();
    }
    let (start, end) = t
        .layout()
        .contiguous_offsets()
        .expect("a contiguous tensor has offsets");
    // Copied first only when another tensor shares the buffer.
    t.storage_mut::<f32>()[start..end]
        .par_chunks_mut(CHUNK)
        .for_each(gelu_in_place);
    Ok(from_flex(t))
}

/// `[batch, heads, tokens, head_dim] -> [batch, tokens, heads * head_dim]` on Flex: one copy
/// of `head_dim`-long rows. Or `x` back for another backend.
pub(crate) fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 3>, Tensor<B, 4>> {
    let [b, h, n, e] = x.dims();
    let t = into_flex(x)?;
    let t = if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    };
    let input = t
        .as_slice::<f32>()
        .expect("a contiguous f32 tensor has a slice");
    let mut out = vec![0.0f32; input.len()];
    // One output row per (batch, token): its heads' rows side by side.
    out.par_chunks_mut(h * e).enumerate().for_each(|(row, o)| {
        let (bi, ti) = (row / n, row % n);
        for (hi, dst) in o.chunks_mut(e).enumerate() {
            let src = ((bi * h + hi) * n + ti) * e;
            dst.copy_from_slice(&input[src..src + e]);
        }
    });
    Ok(from_vec(out, [b, n, h * e]))
}

fn gelu_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { gelu_in_place_avx2(values) };
    }
    gelu_in_place_plain(values);
}

/// The same loop compiled for AVX2 (eight lanes), chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gelu_in_place_avx2(values: &mut [f32]) {
    gelu_in_place_plain(values);
}

#[inline(always)]
fn gelu_in_place_plain(values: &mut [f32]) {
    for x in values {
        *x = gelu_f32(*x);
    }
}

/// `x * Φ(x)` with `Φ(x) = erfc(-x / √2) / 2`, branch-free so that the loop vectorises.
///
/// `erfc` is Chebyshev's fit in Numerical Recipes (`erfcc`, relative error below 1.2e-7 for
/// every argument), so the negative tail keeps its relative accuracy, where `1 + erf` would
/// cancel: within 5e-7 relative of `x Φ(x)` down to `x = -2`, 2.5e-8 absolute below.
#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    // erfc(|x| / √2) / 2
    let half_tail = 0.5 * t * exp_f32(poly - z * z);
    let cdf = if x < 0.0 { half_tail } else { 1.0 - half_tail };
    x * cdf
}

/// `e^x`, branch-free: `2^n · e^r` with `|r| <= ln 2 / 2` and a degree-7 Taylor polynomial
/// (truncation below 4e-9); relative error within 2 ulp on `[-87.3, 88]`, the range it clamps
/// `x` to (`e^-87.3` is the smallest normal float).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to an integer, kept in the low mantissa bits; subtracting it
    // again gives that integer as a float. No float-to-int conversion, which does not vectorise.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n from its exponent bits: n + 127 is in [1, 254] after the clamp.
    let biased = (shifted + 127.0).to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(biased << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Flex, NdArray};

    /// `Φ(x)` in f64 (libm's `erfc`, relative error ~1e-16 in both tails).
    fn cdf_f64(x: f64) -> f64 {
        0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
    }

    #[test]
    fn exp_matches_std_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_3;
        }
        assert!(worst < 2.5e-7, "relative error {worst:e}");
        assert_eq!(exp_f32(-200.0), exp_f32(-87.3));
        assert!(exp_f32(-200.0) < 1e-37);
        assert!(exp_f32(88.0).is_finite() && exp_f32(1e9) == exp_f32(88.0));
        assert!(exp_f32(f32::NAN).is_nan());
    }

    /// Within 5e-7 relative of `x Φ(x)` down to -2 and 2.5e-8 absolute below, where the
    /// values shrink towards 0 (the f32 composition `x (1 + erf(x / √2)) / 2` loses 6e-8 · |x|
    /// to the cancellation in `1 + erf`).
    #[test]
    fn gelu_is_x_times_the_normal_cdf() {
        let (mut relative, mut absolute) = (0.0f64, 0.0f64);
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = x as f64 * cdf_f64(x as f64);
            let error = (gelu_f32(x) as f64 - want).abs();
            if x >= -2.0 {
                relative = relative.max(error / want.abs().max(1e-30));
            } else {
                absolute = absolute.max(error);
            }
            x += 0.000_97;
        }
        assert!(relative < 5e-7, "relative error {relative:e}");
        assert!(absolute < 2.5e-8, "absolute error {absolute:e}");
        assert_eq!(gelu_f32(0.0), 0.0);
        assert!(gelu_f32(f32::NAN).is_nan());
        assert_eq!(gelu_f32(f32::INFINITY), f32::INFINITY);
        assert!(gelu_f32(-100.0).abs() < 1e-37);
    }

    #[test]
    fn flex_kernels_agree_with_the_generic_composition() {
        let device = Default::default();
        let x = Tensor::<Flex, 3>::random(
            [3, 7, 301],
            burn::tensor::Distribution::Normal(0.0, 3.0),
            &device,
        );
        let fast = gelu(x.clone()).unwrap_or_else(|_| panic!("Flex takes the fast path"));
        let slow = crate::mlp::gelu_composed(x.clone());
        let (fast, slow): (Vec<f32>, Vec<f32>) = (
            fast.into_data().to_vec().unwrap(),
            slow.into_data().to_vec().unwrap(),
        );
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
        // A strided input is made contiguous first.
        let strided = x.clone().swap_dims(1, 2);
        let fast = gelu(strided.clone()).unwrap_or_else(|_| panic!("fast path"));
        let slow = crate::mlp::gelu_composed(strided);
        assert_eq!(fast.dims(), slow.dims());
        fast.into_data().assert_approx_eq::<f32>(
            &slow.into_data(),
            burn::tensor::Tolerance::rel_abs(1e-6, 1e-6),
        );

        let heads =
            Tensor::<Flex, 4>::random([2, 3, 5, 4], burn::tensor::Distribution::Default, &device);
        let want = heads.clone().swap_dims(1, 2).reshape([2, 5, 12]);
        let got = merge_heads(heads.clone()).unwrap_or_else(|_| panic!("fast path"));
        assert_eq!(got.into_data(), want.into_data());
        // From a strided view too.
        let view = heads.swap_dims(2, 3);
        let want = view.clone().swap_dims(1, 2).reshape([2, 4, 15]);
        let got = merge_heads(view).unwrap_or_else(|_| panic!("fast path"));
        assert_eq!(got.into_data(), want.into_data());
    }

    #[test]
    fn other_backends_get_their_tensor_back() {
        let x = Tensor::<NdArray, 2>::ones([2, 2], &Default::default());
        assert!(gelu(x.clone()).is_err());
        assert!(merge_heads(x.reshape([1, 1, 2, 2])).is_err());
        let ad = Tensor::<burn::backend::Autodiff<Flex>, 2>::ones([2, 2], &Default::default());
        assert!(gelu(ad).is_err());
    }
}
