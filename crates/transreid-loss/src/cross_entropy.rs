use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Cross-entropy with optional label smoothing (`CrossEntropyLabelSmooth` of the reference).
///
/// With `epsilon = 0` this is `mean_i(-log_softmax(s)_i[y_i])` (`F.cross_entropy`); otherwise the
/// targets are `q = (1 - epsilon) * onehot(y) + epsilon / C` and the loss is
/// `sum_c mean_i(-q_ic * log_softmax(s)_ic)`.
///
/// # Shapes
/// - `scores`: `[batch, classes]`; `targets`: `[batch]` -> scalar `[1]`
pub fn cross_entropy<B: Backend>(
    scores: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    epsilon: f64,
) -> Tensor<B, 1> {
    let [batch, classes] = scores.dims();
    let log_probs = log_softmax(scores, 1);
    let onehot = targets
        .one_hot::<2>(classes)
        .float()
        .cast(log_probs.dtype());
    let q = onehot
        .mul_scalar(1.0 - epsilon)
        .add_scalar(epsilon / classes as f64);
    (q * log_probs).sum().neg().div_scalar(batch as f64)
}
