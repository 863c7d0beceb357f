//! Fingerprints that ranks compare before training, so that a different seed, pretrained file
//! or configuration on one node is an error instead of a silent divergence.

use std::hash::Hasher;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

use super::collective::{Collective, CollectiveError};

/// A 64-bit hash of bytes (SipHash with fixed keys: the same on every machine running this
/// build).
pub fn fingerprint_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// A hash of the values of every trainable parameter (one that requires gradients), in module
/// order, with one read-back per parameter. BatchNorm running statistics, which each rank keeps
/// for itself, are not included.
pub fn weights_fingerprint<B: Backend, M: Module<B>>(model: &M) -> u64 {
    struct Hash(std::hash::DefaultHasher);
    impl<B: Backend> ModuleVisitor<B> for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            if !value.is_require_grad() {
                return;
            }
            let values = value.into_data().convert::<f32>();
            for v in values.as_slice::<f32>().unwrap_or_default() {
                self.0.write_u32(v.to_bits());
            }
        }
    }
    let mut hash = Hash(std::hash::DefaultHasher::new());
    model.visit(&mut hash);
    hash.0.finish()
}

/// Fails unless every rank holds the same `value`, naming the ranks that differ from rank 0.
pub fn check_same_everywhere(
    collective: &dyn Collective,
    what: &str,
    value: u64,
) -> Result<(), CollectiveError> {
    let all = collective.all_gather_u64(value)?;
    let differing: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != all[0])
        .map(|(rank, v)| format!("rank {rank} has {v:016x}"))
        .collect();
    if differing.is_empty() {
        return Ok(());
    }
    Err(CollectiveError::Mismatch {
        what: what.to_string(),
        detail: format!("rank 0 has {:016x}, {}", all[0], differing.join(", ")),
    })
}

/// Fails unless every rank holds the same value in each named field (`(name, hash)`, the same
/// names in the same order on every rank), naming the fields and ranks that differ from rank 0.
/// One gather when all agree; one per field otherwise, on every rank alike.
pub fn check_same_fields_everywhere(
    collective: &dyn Collective,
    what: &str,
    fields: &[(String, u64)],
) -> Result<(), CollectiveError> {
    let whole = fingerprint_bytes(
        &fields
            .iter()
            .flat_map(|(_, hash)| hash.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let all = collective.all_gather_u64(whole)?;
    if all.iter().all(|v| *v == all[0]) {
        return Ok(());
    }
    let mut differing = Vec::new();
    for (name, hash) in fields {
        let all = collective.all_gather_u64(*hash)?;
        let ranks: Vec<String> = (0..all.len())
            .filter(|&r| all[r] != all[0])
            .map(|r| r.to_string())
            .collect();
        if !ranks.is_empty() {
            differing.push(format!("{name} (rank {})", ranks.join(", ")));
        }
    }
    Err(CollectiveError::Mismatch {
        what: what.to_string(),
        detail: format!(
            "these differ from rank 0: {}; every rank must be started with the same \
             configuration and options",
            differing.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::SingleProcess;

    /// Ranks whose gathered values are given.
    struct Gathered(Vec<u64>);

    impl Collective for Gathered {
        fn rank(&self) -> usize {
            0
        }
        fn world(&self) -> usize {
            self.0.len()
        }
        fn all_reduce_sum(&self, _: &mut [f32]) -> Result<(), CollectiveError> {
            Ok(())
        }
        fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<(), CollectiveError> {
            Ok(())
        }
        fn all_gather_u64(&self, _: u64) -> Result<Vec<u64>, CollectiveError> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn a_rank_that_differs_is_named() {
        check_same_everywhere(&SingleProcess, "config", 7).unwrap();
        check_same_everywhere(&Gathered(vec![7, 7, 7]), "config", 7).unwrap();
        let err = check_same_everywhere(&Gathered(vec![7, 7, 9]), "the initial weights", 7)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the initial weights"), "{err}");
        assert!(err.contains("rank 2 has 0000000000000009"), "{err}");
        assert_ne!(
            fingerprint_bytes(b"seed = 0"),
            fingerprint_bytes(b"seed = 1")
        );
    }
}
