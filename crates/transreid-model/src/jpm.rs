//! Jigsaw Patch Module: shift and shuffle the patch tokens, then split them into parts that
//! share the cls token and one transformer branch.

use burn::config::Config;
use burn::module::Module;
use burn::nn::LayerNorm;
use burn::prelude::*;

use crate::block::Block;
use crate::vit::cls_of;

/// JPM settings (`MODEL.SHIFT_NUM`, `SHUFFLE_GROUP`, `DEVIDE_LENGTH`, `RE_ARRANGE`).
#[derive(Config, Debug, PartialEq)]
pub struct JpmConfig {
    /// Shift number; the patch tokens are rotated left by `shift_num - 1`. Default: 5.
    #[config(default = 5)]
    pub shift_num: usize,
    /// Number of interleaved groups of the patch shuffle. Default: 2.
    #[config(default = 2)]
    pub shuffle_groups: usize,
    /// Number of local parts. Default: 4.
    #[config(default = 4)]
    pub num_parts: usize,
    /// Shift and shuffle before splitting; `false` splits the patches in order. Default: true.
    #[config(default = true)]
    pub rearrange: bool,
}

/// A JPM setting that cannot be applied to a token sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpmError {
    /// `shift_num` must be in `1..=num_patches`.
    #[error("shift {shift} must be in 1..={num_patches}")]
    Shift {
        /// The shift asked for.
        shift: usize,
        /// Patch tokens.
        num_patches: usize,
    },
    /// The (padded) sequence length is not divisible by the number of groups.
    #[error("{num_patches} patches (padded to {padded}) cannot be shuffled in {groups} groups")]
    Groups {
        /// Patch tokens.
        num_patches: usize,
        /// Length after the one-token padding.
        padded: usize,
        /// Groups asked for.
        groups: usize,
    },
    /// One patch cannot be padded (with the second-to-last) to shuffle in several groups.
    #[error("one patch cannot be padded to shuffle in {groups} groups")]
    CannotPad {
        /// Groups asked for.
        groups: usize,
    },
    /// Fewer patches than parts.
    #[error("{num_patches} patches cannot be split into {num_parts} parts")]
    Parts {
        /// Patch tokens.
        num_patches: usize,
        /// Parts asked for.
        num_parts: usize,
    },
}

/// The reference's `shuffle_unit` as an index map into the token sequence (0 = cls,
/// `1..=n` = patches): output position `p` holds sequence token `map[p]`.
///
/// 1. Shift: `x[i] = patch[(i + shift - 1) mod n]` (cls dropped).
/// 2. If `n % groups != 0`, append one copy of the second-to-last shifted token.
/// 3. Shuffle: with padded length `L`, `out[i * groups + j] = x[j * (L / groups) + i]`.
pub fn shuffle_index(
    num_patches: usize,
    shift: usize,
    groups: usize,
) -> Result<Vec<usize>, JpmError> {
    let n = num_patches;
    if shift == 0 || shift > n {
        return Err(JpmError::Shift {
            shift,
            num_patches: n,
        });
    }
    let padded = if groups > 0 && !n.is_multiple_of(groups) {
        n + 1
    } else {
        n
    };
    // The padding copies the second-to-last token, which one patch does not have.
    if padded > n && n < 2 {
        return Err(JpmError::CannotPad { groups });
    }
    if groups == 0 || !padded.is_multiple_of(groups) {
        return Err(JpmError::Groups {
            num_patches: n,
            padded,
            groups,
        });
    }
    let mut x: Vec<usize> = (0..n).map(|i| 1 + (i + shift - 1) % n).collect();
    if padded > n {
        x.push(x[n - 2]);
    }
    let len = x.len();
    let chunk = len / groups;
    Ok((0..len)
        .map(|p| x[(p % groups) * chunk + p / groups])
        .collect())
}

impl JpmConfig {
    /// Sequence indices of every part, each `[0 (cls), part tokens...]`, concatenated:
    /// `num_parts * (1 + n / num_parts)` entries. Trailing tokens beyond
    /// `num_parts * (n / num_parts)` are dropped, as in the reference.
    pub fn part_index(&self, num_patches: usize) -> Result<Vec<usize>, JpmError> {
        let order = if self.rearrange {
            shuffle_index(num_patches, self.shift_num, self.shuffle_groups)?
        } else {
            (1..=num_patches).collect()
        };
        let part_len = num_patches / self.num_parts.max(1);
        if self.num_parts == 0 || part_len == 0 {
            return Err(JpmError::Parts {
                num_patches,
                num_parts: self.num_parts,
            });
        }
        Ok((0..self.num_parts)
            .flat_map(|k| {
                std::iter::once(0).chain(order[k * part_len..(k + 1) * part_len].iter().copied())
            })
            .collect())
    }
}

/// A JPM branch: a copy of the backbone's last block followed by a copy of its final norm
/// (`b1` / `b2` in the reference, `Sequential(block, norm)`).
#[derive(Module, Debug)]
pub struct JpmBranch<B: Backend> {
    /// The transformer block (`b*.0`).
    pub block: Block<B>,
    /// The LayerNorm (`b*.1`).
    pub norm: LayerNorm<B>,
}

impl<B: Backend> JpmBranch<B> {
    /// # Shapes
    /// - `x`: `[batch, tokens, D]` -> `[batch, tokens, D]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.norm.forward(self.block.forward(x))
    }

    /// The normalised class token of [`Self::forward`] ([`Block::forward_token0`]).
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, D]` -> `[batch, D]`
    pub fn cls(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        cls_of(self.norm.forward(self.block.forward_token0(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_rotates_by_shift_minus_one() {
        // groups 1 leaves the rotation alone.
        assert_eq!(shuffle_index(6, 5, 1).unwrap(), vec![5, 6, 1, 2, 3, 4]);
        assert_eq!(shuffle_index(6, 1, 1).unwrap(), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn shuffle_interleaves_groups() {
        // rotated [2,3,4,5,6,1] -> chunks [2,3,4] [5,6,1] -> 2,5,3,6,4,1
        assert_eq!(shuffle_index(6, 2, 2).unwrap(), vec![2, 5, 3, 6, 4, 1]);
    }

    #[test]
    fn odd_length_pads_with_second_to_last() {
        // rotated [1..=5] + [4] -> chunks [1,2,3] [4,5,4]
        assert_eq!(shuffle_index(5, 1, 2).unwrap(), vec![1, 4, 2, 5, 3, 4]);
        assert!(matches!(
            shuffle_index(210, 5, 4),
            Err(JpmError::Groups { .. })
        ));
        assert!(matches!(
            shuffle_index(10, 0, 2),
            Err(JpmError::Shift { .. })
        ));
        // One patch has no second-to-last token to pad with; no groups cannot shuffle.
        assert_eq!(shuffle_index(1, 1, 1).unwrap(), vec![1]);
        assert_eq!(
            shuffle_index(1, 1, 2),
            Err(JpmError::CannotPad { groups: 2 })
        );
        assert!(matches!(
            shuffle_index(1, 1, 0),
            Err(JpmError::Groups { .. })
        ));
    }

    #[test]
    fn parts_share_cls_and_drop_the_tail() {
        let cfg = JpmConfig::new().with_rearrange(false).with_num_parts(4);
        assert_eq!(
            cfg.part_index(9).unwrap(),
            vec![0, 1, 2, 0, 3, 4, 0, 5, 6, 0, 7, 8]
        );
        for parts in [0, 10] {
            assert!(matches!(
                cfg.clone().with_num_parts(parts).part_index(9),
                Err(JpmError::Parts { .. })
            ));
        }
    }
}
