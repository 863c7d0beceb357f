//! Gradient-weighted attention relevance (Chefer, Gur & Wolf, "Generic Attention-model
//! Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021), the
//! self-attention rule: `R = I`, then block by block `R += mean_h((dT/dA ⊙ A)⁺) R`; the class
//! token's row over the patches is the map. Unlike rollout it depends on a target `T`: which
//! patches raise that output.

use crate::attention_rollout::{class_row_over_max, AttentionMapError};

/// The relevance map of one image for the target whose gradients are given.
///
/// `attentions` and `gradients` hold, per block in order, the `[heads, tokens, tokens]`
/// probabilities and the target's gradient with respect to them (row-major, token 0 the
/// class token). Each block contributes the head mean of the positive part of gradient ×
/// attention (the positive part taken per head, as the authors' code does). Returns the class
/// token's row over the `tokens - 1` patches divided by its maximum, or zeros where no patch
/// has positive relevance.
pub fn attention_relevance(
    attentions: &[Vec<f32>],
    gradients: &[Vec<f32>],
    heads: usize,
    tokens: usize,
) -> Result<Vec<f32>, AttentionMapError> {
    if attentions.is_empty() || tokens < 2 || heads == 0 {
        return Err(AttentionMapError::Empty {
            blocks: attentions.len(),
            tokens,
        });
    }
    let t = tokens;
    let area = t * t;
    let size = |what, block, len| AttentionMapError::Size {
        what,
        block,
        len,
        heads,
        tokens,
    };
    if gradients.len() != attentions.len() {
        let block = attentions.len().min(gradients.len());
        return Err(size("gradient", block, 0));
    }
    let mut relevance: Vec<f64> = (0..area)
        .map(|i| if i / t == i % t { 1.0 } else { 0.0 })
        .collect();
    for (block, (attention, gradient)) in attentions.iter().zip(gradients).enumerate() {
        if attention.len() != heads * area {
            return Err(size("attention", block, attention.len()));
        }
        if gradient.len() != heads * area {
            return Err(size("gradient", block, gradient.len()));
        }
        let cam: Vec<f64> = (0..area)
            .map(|i| {
                (0..heads)
                    .map(|h| {
                        (attention[h * area + i] as f64 * gradient[h * area + i] as f64).max(0.0)
                    })
                    .sum::<f64>()
                    / heads as f64
            })
            .collect();
        let added: Vec<f64> = (0..area)
            .map(|i| {
                let (r, c) = (i / t, i % t);
                (0..t).map(|k| cam[r * t + k] * relevance[k * t + c]).sum()
            })
            .collect();
        for (r, a) in relevance.iter_mut().zip(added) {
            *r += a;
        }
    }
    Ok(class_row_over_max(&relevance, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_weights_the_class_row_by_positive_gradient() {
        // One head, 3 tokens: only the class row matters for the map after one block.
        let attention = vec![0.2, 0.5, 0.3, 0.3, 0.3, 0.4, 0.1, 0.1, 0.8];
        let gradient = vec![1.0, 2.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let map = attention_relevance(&[attention], &[gradient], 1, 3).unwrap();
        // R = I + cam: class row over the patches = [1.0, 0] -> normalised [1, 0].
        assert_eq!(map, vec![1.0, 0.0]);
    }

    #[test]
    fn no_positive_relevance_is_a_zero_map_and_bad_sizes_are_errors() {
        let attention = vec![0.5; 4];
        let map = attention_relevance(&[attention.clone()], &[vec![-1.0; 4]], 1, 2).unwrap();
        assert_eq!(map, vec![0.0]);
        assert!(matches!(
            attention_relevance(&[attention.clone()], &[vec![1.0; 3]], 1, 2),
            Err(AttentionMapError::Size {
                what: "gradient",
                ..
            })
        ));
        assert!(matches!(
            attention_relevance(&[attention], &[], 1, 2),
            Err(AttentionMapError::Size { .. })
        ));
    }
}
