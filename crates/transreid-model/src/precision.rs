use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::module::linear;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// The dtype of the matrix products: every Linear layer of the transformer blocks and the two
/// attention products. Parameters, gradients and everything else (patch embedding, LayerNorm,
/// softmax, GELU, residual adds, BNNeck, classifiers, losses) stay f32, so the reduced dtype only
/// touches the products, whose inputs are cast on the way in and whose outputs are cast back.
///
/// Burn 0.21 has no autocast, so the policy lives in the modules ([`crate::TransReid::set_precision`]);
/// the casts are differentiable, so weight gradients arrive in f32 for the f32 master weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the default, and the only choice on the CPU backends).
    #[default]
    F32,
    /// bfloat16 products: f32's range, so no loss scaling is needed.
    Bf16,
    /// float16 products, as the reference's `torch.cuda.amp`: gradients can underflow, so
    /// training scales the loss (see `transreid::optim::LossScaler`).
    F16,
}

impl Precision {
    /// `f32`, `bf16` or `f16`, as in configurations.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// The reduced dtype, `None` for f32.
    pub fn compute_dtype(self) -> Option<FloatDType> {
        match self {
            Self::F32 => None,
            Self::Bf16 => Some(FloatDType::BF16),
            Self::F16 => Some(FloatDType::F16),
        }
    }

    /// Whether training needs a loss scale against gradient underflow.
    pub fn needs_loss_scaling(self) -> bool {
        self == Self::F16
    }

    /// `x` in the compute dtype (unchanged for f32).
    pub(crate) fn cast_in<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self.compute_dtype() {
            Some(dtype) => x.cast(dtype),
            None => x,
        }
    }

    /// `x` back in f32 (unchanged for f32).
    pub(crate) fn cast_out<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::F32 => x,
            _ => x.cast(FloatDType::F32),
        }
    }

    /// `layer(x)` with the product in the compute dtype; `x` and the result are in the compute
    /// dtype, the layer's parameters are cast per call.
    ///
    /// The leading dimensions are flattened into one, so that the product is a single GEMM
    /// over every token: Burn's linear on a `[batch, tokens, dim]` input runs one GEMM per
    /// batch entry, and its weight gradient builds a `[batch, d_in, d_out]` tensor before
    /// summing it.
    pub(crate) fn linear<B: Backend, const D: usize>(
        self,
        layer: &Linear<B>,
        x: Tensor<B, D>,
    ) -> Tensor<B, D> {
        self.linear_with(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
    }

    /// [`Self::linear`] with the weight `[d_in, d_out]` and bias given as tensors (slices of a
    /// layer's parameters, say).
    pub(crate) fn linear_with<B: Backend, const D: usize>(
        self,
        x: Tensor<B, D>,
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    ) -> Tensor<B, D> {
        let mut dims = x.dims();
        let rows: Tensor<B, 2> = x.flatten(0, D - 2);
        let y = match self.compute_dtype() {
            #[cfg(feature = "flex")]
            None => crate::flex_kernels::linear(rows, weight.clone(), bias.clone())
                .unwrap_or_else(|rows| linear(rows, weight, bias)),
            #[cfg(not(feature = "flex"))]
            None => linear(rows, weight, bias),
            Some(dtype) => linear(rows, weight.cast(dtype), bias.map(|b| b.cast(dtype))),
        };
        dims[D - 1] = y.dims()[1];
        y.reshape(dims)
    }
}
