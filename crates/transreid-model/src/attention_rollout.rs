//! Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020), as
//! jacobgil/vit-explain computes it: the heads of each block fused, the weakest attentions
//! discarded, `(A + I) / 2` with each row renormalised to sum 1, multiplied through the blocks;
//! the class token's row over the patches is the map. Rollout shows where information flows
//! from; it is not an attribution of the output.

/// How the heads of a block are fused into one attention map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadFusion {
    /// The mean over heads.
    #[default]
    Mean,
    /// The maximum over heads.
    Max,
    /// The minimum over heads.
    Min,
}

/// Attention maps that cannot be rolled out or weighted by their gradients.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttentionMapError {
    /// No block given, or no patch token.
    #[error(
        "an attention map needs at least one block and one patch token ({blocks} blocks, \
         {tokens} tokens)"
    )]
    Empty {
        /// Blocks given.
        blocks: usize,
        /// Tokens per sequence.
        tokens: usize,
    },
    /// A block's map (or its gradient) is not `heads x tokens x tokens`.
    #[error(
        "block {block}'s {what} holds {len} values, not {heads} heads x {tokens} x {tokens} tokens"
    )]
    Size {
        /// `attention` or `gradient`.
        what: &'static str,
        /// The block.
        block: usize,
        /// Values it holds.
        len: usize,
        /// Heads expected.
        heads: usize,
        /// Tokens expected.
        tokens: usize,
    },
    /// A discard ratio outside `[0, 1)`.
    #[error("discard ratio {0} must be in [0, 1)")]
    DiscardRatio(f64),
}

/// The rollout of one image's attention probabilities.
///
/// `attentions` holds, per block in order, the `[heads, tokens, tokens]` probabilities
/// (row-major, token 0 the class token). In each fused map the `floor(tokens² * discard_ratio)`
/// smallest entries are set to 0, except the class token's attention to itself. Returns the
/// class token's row over the `tokens - 1` patches divided by its maximum (vit-explain's
/// normalisation), in token order.
pub fn attention_rollout(
    attentions: &[Vec<f32>],
    heads: usize,
    tokens: usize,
    fusion: HeadFusion,
    discard_ratio: f64,
) -> Result<Vec<f32>, AttentionMapError> {
    if attentions.is_empty() || tokens < 2 || heads == 0 {
        return Err(AttentionMapError::Empty {
            blocks: attentions.len(),
            tokens,
        });
    }
    if !(0.0..1.0).contains(&discard_ratio) {
        return Err(AttentionMapError::DiscardRatio(discard_ratio));
    }
    let t = tokens;
    let area = t * t;
    let mut result: Vec<f64> = (0..area)
        .map(|i| if i / t == i % t { 1.0 } else { 0.0 })
        .collect();
    for (block, attention) in attentions.iter().enumerate() {
        if attention.len() != heads * area {
            return Err(AttentionMapError::Size {
                what: "attention",
                block,
                len: attention.len(),
                heads,
                tokens,
            });
        }
        let mut fused: Vec<f64> = (0..area)
            .map(|i| {
                let values = (0..heads).map(|h| attention[h * area + i] as f64);
                match fusion {
                    HeadFusion::Mean => values.sum::<f64>() / heads as f64,
                    HeadFusion::Max => values.fold(f64::NEG_INFINITY, f64::max),
                    HeadFusion::Min => values.fold(f64::INFINITY, f64::min),
                }
            })
            .collect();
        let discard = (area as f64 * discard_ratio) as usize;
        if discard > 0 {
            let mut order: Vec<usize> = (0..area).collect();
            order.sort_by(|&a, &b| fused[a].total_cmp(&fused[b]).then(a.cmp(&b)));
            for &i in &order[..discard] {
                if i != 0 {
                    fused[i] = 0.0;
                }
            }
        }
        // (A + I) / 2, each row renormalised to sum 1 (vit-explain divides by the row sums
        // broadcast along the rows, i.e. column by column: a slip this does not copy).
        for row in fused.chunks_mut(t).enumerate().map(|(r, row)| {
            row[r] += 1.0;
            row
        }) {
            let sum: f64 = row.iter().map(|v| v / 2.0).sum();
            for v in row.iter_mut() {
                *v = *v / 2.0 / sum;
            }
        }
        result = (0..area)
            .map(|i| {
                let (r, c) = (i / t, i % t);
                (0..t).map(|k| fused[r * t + k] * result[k * t + c]).sum()
            })
            .collect();
    }
    Ok(class_row_over_max(&result, t))
}

/// The class token's row of a `tokens x tokens` matrix over the patches, divided by its
/// maximum; all zeros when no entry is positive.
pub(crate) fn class_row_over_max(matrix: &[f64], tokens: usize) -> Vec<f32> {
    let row = &matrix[1..tokens];
    let max = row.iter().copied().fold(0.0, f64::max);
    if max <= 0.0 {
        return vec![0.0; row.len()];
    }
    row.iter().map(|v| (v / max) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_attention_rolls_out_to_a_flat_map() {
        let (heads, tokens) = (2, 5);
        let uniform = vec![1.0 / tokens as f32; heads * tokens * tokens];
        let map = attention_rollout(
            &[uniform.clone(), uniform],
            heads,
            tokens,
            HeadFusion::Mean,
            0.0,
        )
        .unwrap();
        assert_eq!(map.len(), tokens - 1);
        assert!(map.iter().all(|v| (v - 1.0).abs() < 1e-6), "{map:?}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let one = vec![0.5; 4];
        assert!(matches!(
            attention_rollout(&[], 1, 2, HeadFusion::Mean, 0.0),
            Err(AttentionMapError::Empty { .. })
        ));
        assert!(matches!(
            attention_rollout(&[one.clone()], 2, 2, HeadFusion::Mean, 0.0),
            Err(AttentionMapError::Size { .. })
        ));
        assert_eq!(
            attention_rollout(&[one], 1, 2, HeadFusion::Max, 1.0),
            Err(AttentionMapError::DiscardRatio(1.0))
        );
    }
}
