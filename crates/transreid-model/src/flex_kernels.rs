//! Kernels for the Flex CPU backend where Burn's generic composition is slow: the exact GELU
//! (Flex evaluates `erf` one scalar at a time), self-attention (the generic path copies the
//! heads out of a permuted layout with a strided gather and runs the softmax with a scalar
//! `exp`) and the Linear layers (Flex zeroes the output, multiplies, then adds the bias in
//! another pass). The modules stay generic:
//! each function takes a `Tensor<B, D>`, computes it here when `B` is Flex and the tensor f32,
//! and otherwise hands the tensor back for the generic path. The autodiff backends never
//! match, so training and gradients are untouched.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicU8, Ordering};

use burn::prelude::*;
use burn::tensor::{DType, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise scheduling, small enough to share
/// out a `[tokens, 3072]` activation between cores.
const CHUNK: usize = 1 << 14;

/// Which Flex kernels run (all by default); the others take the generic path. For measuring
/// what each kernel brings (`benches/inference.rs --ablation`) and for comparing results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlexKernels {
    /// The exact GELU of the MLP.
    pub gelu: bool,
    /// Self-attention between the two projections.
    pub attention: bool,
    /// The Linear layers of the blocks, bias included.
    pub linear: bool,
}

impl FlexKernels {
    /// Every kernel.
    pub const ALL: Self = Self {
        gelu: true,
        attention: true,
        linear: true,
    };
    /// None: Flex runs the generic modules.
    pub const NONE: Self = Self {
        gelu: false,
        attention: false,
        linear: false,
    };

    fn bits(self) -> u8 {
        self.gelu as u8 | (self.attention as u8) << 1 | (self.linear as u8) << 2
    }
}

static ENABLED: AtomicU8 = AtomicU8::new(0b111);

/// Chooses the Flex kernels for the whole process (see [`FlexKernels`]).
pub fn set_flex_kernels(kernels: FlexKernels) {
    ENABLED.store(kernels.bits(), Ordering::Relaxed);
}

/// The Flex kernels in use.
pub fn flex_kernels() -> FlexKernels {
    let bits = ENABLED.load(Ordering::Relaxed);
    FlexKernels {
        gelu: bits & 1 != 0,
        attention: bits & 2 != 0,
        linear: bits & 4 != 0,
    }
}

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
    if !flex_kernels().gelu {
        return Err(x);
    }
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

/// `x W + b` on Flex as one GEMM that starts from the bias rows (Flex's linear zeroes its output,
/// multiplies, then adds the bias in another pass); or `x` back for another backend or dtype.
/// The same arithmetic: each output is its dot product plus the bias, added once.
///
/// # Shapes
/// - `x`: `[rows, d_in]`, `weight`: `[d_in, d_out]` (Burn's layout), `bias`: `[d_out]`
/// - output: `[rows, d_out]`
pub(crate) fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    if !flex_kernels().linear {
        return Err(x);
    }
    let ([m, k], [_, n]) = (x.dims(), weight.dims());
    let x = contiguous(into_flex(x)?);
    // Rows of the weight may be apart (a column slice of a wider one) but not its columns.
    let Ok(w) = into_flex(weight).map(|w| match w.layout().strides() {
        [_, 1] => w,
        _ => w.to_contiguous(),
    }) else {
        return Err(from_flex(x));
    };
    let w_row = w.layout().strides()[0];
    let bias = match bias.map(into_flex).transpose() {
        Ok(bias) => bias.map(contiguous),
        Err(_) => return Err(from_flex(x)),
    };
    let (x_values, w_values) = (slice(&x), &w.storage::<f32>()[w.layout().start_offset()..]);
    let mut out = Vec::with_capacity(m * n);
    match &bias {
        Some(bias) => (0..m).for_each(|_| out.extend_from_slice(slice(bias))),
        None => out.resize(m * n, 0.0),
    }
    let parallelism = if m * n * k >= PARALLEL_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: x is m x k row-major, out m x n row-major, w a valid k x n view with unit
    // column stride and `w_row` between rows.
    unsafe {
        product(
            [m, n, k],
            (out.as_mut_ptr(), n as isize),
            true,
            (x_values.as_ptr(), k as isize, 1),
            (w_values.as_ptr(), w_row, 1),
            parallelism,
        );
    }
    Ok(from_vec(out, [m, n]))
}

/// Multiply-adds below which one thread is faster (Flex's own threshold, 192^3).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// `dst = lhs rhs` (`dst += lhs rhs` when `accumulate`) for `[m, n, k]`: `dst` an m x n
/// matrix given as (pointer, row stride) with unit column stride, `lhs` m x k and `rhs` k x n
/// as (pointer, row stride, column stride).
///
/// # Safety
/// Every element those pointers and strides address must be inside its allocation, and `dst`
/// writable with no other access meanwhile.
unsafe fn product(
    [m, n, k]: [usize; 3],
    (dst, dst_row): (*mut f32, isize),
    accumulate: bool,
    (lhs, lhs_row, lhs_col): (*const f32, isize, isize),
    (rhs, rhs_row, rhs_col): (*const f32, isize, isize),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller's.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row,
            accumulate,
            lhs,
            lhs_col,
            lhs_row,
            rhs,
            rhs_col,
            rhs_row,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor has a slice")
}

/// `softmax(q k^T * scale) v` for every head, the heads side by side, on Flex; or `qkv` back
/// for another backend. The same arithmetic as the generic path: one f32 product per score,
/// the scale applied to it, a max-shifted softmax.
///
/// # Shapes
/// - `qkv`: `[batch, tokens, 3 * dim]`, the fused projection (rows `[q | k | v]`, head-major)
/// - output: `[batch, tokens, dim]`
pub(crate) fn attention<B: Backend>(
    qkv: Tensor<B, 3>,
    heads: usize,
    scale: f32,
) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    if !flex_kernels().attention {
        return Err(qkv);
    }
    let [b, n, three_d] = qkv.dims();
    let t = contiguous(into_flex(qkv)?);
    let input = slice(&t);
    let (d, row) = (three_d / 3, three_d as isize);
    let e = d / heads;
    let mut out = vec![0.0f32; b * n * d];
    // Each (batch, head) task writes its own `head_dim` columns of the output rows: disjoint
    // memory, shared through the address because `&mut` cannot split by columns.
    let out_addr = out.as_mut_ptr() as usize;
    let serial = gemm::Parallelism::None;
    (0..b * heads).into_par_iter().for_each_init(
        || vec![0.0f32; n * n],
        |scores, task| {
            let (bi, hi) = (task / heads, task % heads);
            let q = &input[bi * n * three_d + hi * e..];
            let (k, v) = (&q[d..], &q[2 * d..]);
            // SAFETY: q, k and v rows are `row` apart with `e` readable values each, inside
            // `input`; `scores` holds n x n values; the output block is this task's own, inside
            // `out`, which outlives the loop.
            unsafe {
                // scores = q k^T: k read transposed through its strides.
                let (q, k) = ((q.as_ptr(), row, 1), (k.as_ptr(), 1, row));
                product(
                    [n, n, e],
                    (scores.as_mut_ptr(), n as isize),
                    false,
                    q,
                    k,
                    serial,
                );
                softmax_rows(scores, n, scale);
                let dst = (out_addr as *mut f32).add(bi * n * d + hi * e);
                let (p, v) = ((scores.as_ptr(), n as isize, 1), (v.as_ptr(), row, 1));
                product([n, e, n], (dst, d as isize), false, p, v, serial);
            }
        },
    );
    Ok(from_vec(out, [b, n, d]))
}

/// Each `len`-long row of `scores` becomes `softmax(row * scale)`.
fn softmax_rows(scores: &mut [f32], len: usize, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { softmax_rows_avx2(scores, len, scale) };
    }
    softmax_rows_plain(scores, len, scale);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_rows_avx2(scores: &mut [f32], len: usize, scale: f32) {
    softmax_rows_plain(scores, len, scale);
}

/// Simple passes over a row that sits in L1: each loop vectorises on its own, the max and the
/// sum in eight independent lanes so that no float reduction is reassociated.
#[inline(always)]
fn softmax_rows_plain(scores: &mut [f32], len: usize, scale: f32) {
    const LANES: usize = 8;
    for row in scores.chunks_exact_mut(len) {
        for x in row.iter_mut() {
            *x *= scale;
        }
        let (body, tail) = row.as_chunks::<LANES>();
        let mut lanes = [f32::NEG_INFINITY; LANES];
        for chunk in body {
            for i in 0..LANES {
                lanes[i] = lanes[i].max(chunk[i]);
            }
        }
        let max = tail
            .iter()
            .chain(&lanes)
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        for x in row.iter_mut() {
            *x = exp_f32(*x - max);
        }
        let (body, tail) = row.as_chunks::<LANES>();
        let mut sums = [0.0f32; LANES];
        for chunk in body {
            for i in 0..LANES {
                sums[i] += chunk[i];
            }
        }
        let inv = 1.0 / (sums.iter().sum::<f32>() + tail.iter().sum::<f32>());
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
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
#[allow(clippy::excessive_precision)] // the coefficients as published
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
/// (truncation below 1e-8); relative error within 2 ulp on `[-87.3, 88]`, 0 below (where
/// `e^x` is no longer a normal float), `e^88` above.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to an integer, kept in the low mantissa bits; subtracting it
    // again gives that integer as a float. No float-to-int conversion, which does not vectorise.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.0);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n from its exponent bits: n + 127 is in [1, 254] after the clamp.
    let biased = (shifted + 127.0).to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(biased << 23);
    if x < -87.3 {
        0.0
    } else {
        p * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Flex, NdArray};
    use burn::tensor::activation::softmax;
    use burn::tensor::Tolerance;
    use std::sync::RwLock;

    /// Read by the tests that need the kernels on, written by the one that turns them off.
    static SWITCH: RwLock<()> = RwLock::new(());

    fn kernels_stay_on() -> std::sync::RwLockReadGuard<'static, ()> {
        SWITCH
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

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
        assert_eq!(exp_f32(-87.4), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
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
        assert_eq!(gelu_f32(-100.0), 0.0);
    }

    #[test]
    fn flex_kernels_agree_with_the_generic_composition() {
        let _on = kernels_stay_on();
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
        fast.into_data()
            .assert_approx_eq::<f32>(&slow.into_data(), Tolerance::rel_abs(1e-6, 1e-6));
    }

    /// The generic path of `Attention::forward` between the two projections.
    fn attention_composed(qkv: Tensor<Flex, 3>, h: usize, scale: f32) -> Tensor<Flex, 3> {
        let [b, n, three_d] = qkv.dims();
        let qkv = qkv.reshape([b, n, 3 * h, three_d / 3 / h]).swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.clone().narrow(1, h, h);
        let v = qkv.narrow(1, 2 * h, h);
        let attn = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3);
        attn.matmul(v).swap_dims(1, 2).reshape([b, n, three_d / 3])
    }

    #[test]
    fn attention_matches_the_generic_path() {
        let _on = kernels_stay_on();
        let device = Default::default();
        // Token counts below, at and between multiples of the 8 lanes.
        for (b, n, h, e) in [
            (2, 7, 3, 8),
            (1, 129, 2, 64),
            (3, 33, 4, 5),
            (1, 1, 1, 3),
            (2, 16, 2, 4),
        ] {
            let qkv = Tensor::<Flex, 3>::random(
                [b, n, 3 * h * e],
                burn::tensor::Distribution::Normal(0.0, 2.0),
                &device,
            );
            let scale = (e as f32).powf(-0.5);
            let want = attention_composed(qkv.clone(), h, scale).into_data();
            let got = attention(qkv.clone(), h, scale).unwrap_or_else(|_| panic!("fast path"));
            assert_eq!(got.dims(), [b, n, h * e]);
            got.into_data()
                .assert_approx_eq::<f32>(&want, Tolerance::rel_abs(1e-5, 1e-6));
            // A strided view (every other column of a wider tensor) is made contiguous first.
            let wide =
                Tensor::stack::<4>(vec![qkv.clone(), qkv.clone()], 3).reshape([b, n, 6 * h * e]);
            let strided =
                wide.reshape([b, n, 3 * h * e, 2])
                    .narrow(3, 0, 1)
                    .reshape([b, n, 3 * h * e]);
            let got = attention(strided, h, scale).unwrap_or_else(|_| panic!("fast path"));
            got.into_data()
                .assert_approx_eq::<f32>(&want, Tolerance::rel_abs(1e-5, 1e-6));
        }
    }

    #[test]
    fn linear_matches_burns_linear() {
        let _on = kernels_stay_on();
        let device = Default::default();
        // Below and above the threshold for threads; with and without bias.
        for (m, k, n) in [(3, 5, 7), (300, 200, 250)] {
            for bias in [true, false] {
                let layer = burn::nn::LinearConfig::new(k, n)
                    .with_bias(bias)
                    .init::<Flex>(&device);
                let x =
                    Tensor::<Flex, 2>::random([m, k], burn::tensor::Distribution::Default, &device);
                let want = layer.forward(x.clone()).into_data();
                let got = linear(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
                    .unwrap_or_else(|_| panic!("fast path"));
                got.into_data()
                    .assert_approx_eq::<f32>(&want, Tolerance::rel_abs(1e-6, 1e-6));
            }
        }
        // A weight that is a column slice of a wider one.
        let wide = Tensor::<Flex, 2>::random([5, 9], burn::tensor::Distribution::Default, &device);
        let x = Tensor::<Flex, 2>::random([4, 5], burn::tensor::Distribution::Default, &device);
        let w = wide.narrow(1, 3, 4);
        let want = x.clone().matmul(w.clone()).into_data();
        let got = linear(x, w, None).unwrap_or_else(|_| panic!("fast path"));
        got.into_data()
            .assert_approx_eq::<f32>(&want, Tolerance::rel_abs(1e-6, 1e-6));
        // A transposed (strided) input.
        let layer = burn::nn::LinearConfig::new(4, 3).init::<Flex>(&device);
        let x = Tensor::<Flex, 2>::random([4, 6], burn::tensor::Distribution::Default, &device)
            .transpose();
        let want = layer.forward(x.clone()).into_data();
        let got = linear(x, layer.weight.val(), layer.bias.map(|b| b.val()))
            .unwrap_or_else(|_| panic!("fast path"));
        got.into_data()
            .assert_approx_eq::<f32>(&want, Tolerance::rel_abs(1e-6, 1e-6));
    }

    #[test]
    fn softmax_rows_are_distributions_and_keep_nan() {
        let mut rows = vec![1.0f32, 2.0, 3.0, 1000.0, -1000.0, 0.0, f32::NAN, 1.0, 0.5];
        softmax_rows(&mut rows, 3, 2.0);
        let want = [(-4.0f32).exp(), (-2.0f32).exp(), 1.0];
        let total: f32 = want.iter().sum();
        for (got, want) in rows[..3].iter().zip(want) {
            assert!((got - want / total).abs() < 1e-7);
        }
        assert_eq!(&rows[3..6], &[1.0, 0.0, 0.0]);
        assert!(rows[6..].iter().all(|x| x.is_nan()));
    }

    #[test]
    fn other_backends_get_their_tensor_back() {
        let x = Tensor::<NdArray, 2>::ones([2, 2], &Default::default());
        assert!(gelu(x.clone()).is_err());
        assert!(attention(x.clone().reshape([1, 1, 4]), 1, 1.0).is_err());
        assert!(linear(x.clone(), x.clone(), None).is_err());
        let ad = Tensor::<burn::backend::Autodiff<Flex>, 2>::ones([2, 2], &Default::default());
        assert!(gelu(ad).is_err());
    }

    #[test]
    fn kernels_can_be_switched_off() {
        let _only = SWITCH
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        assert_eq!(flex_kernels(), FlexKernels::ALL);
        let x = Tensor::<Flex, 2>::ones([2, 3], &Default::default());
        set_flex_kernels(FlexKernels {
            gelu: false,
            ..FlexKernels::ALL
        });
        assert!(gelu(x.clone()).is_err());
        assert!(linear(x.clone(), x.clone().reshape([3, 2]), None).is_ok());
        set_flex_kernels(FlexKernels::NONE);
        assert!(linear(x.clone(), x.clone().reshape([3, 2]), None).is_err());
        assert!(attention(x.reshape([1, 2, 3]), 1, 1.0).is_err());
        set_flex_kernels(FlexKernels::ALL);
        assert_eq!(flex_kernels(), FlexKernels::ALL);
    }
}
