//! The reference's `RandomIdentitySampler`: batches of P identities × K images.

use std::collections::{HashMap, VecDeque};

use rand::seq::SliceRandom;
use rand::Rng;

use crate::error::{DataError, Result};
use crate::item::ReidItem;
use crate::seed::{derive_rng, RngPurpose};

/// PK identity sampler (`RandomIdentitySampler(data_source, batch_size, num_instances)`).
///
/// Per epoch, with a generator derived from `(seed, epoch)` (so any epoch can be replayed or
/// resumed without running the ones before it):
/// 1. for each identity (first-appearance order) take its dataset indices; with fewer than K,
///    draw K with replacement; shuffle; cut into chunks of K, dropping an incomplete tail chunk;
/// 2. while at least P identities have chunks left: pick P of them at random and append the next
///    chunk of each.
///
/// Every batch is therefore P distinct identities × K images, grouped by identity; the epoch
/// holds `Σ chunks` chunks minus those left over when fewer than P identities remain.
#[derive(Debug, Clone)]
pub struct PkSampler {
    ids_per_batch: usize,
    instances: usize,
    /// Dataset indices of each identity, in first-appearance order.
    groups: Vec<Vec<usize>>,
    num_samples: usize,
}

impl PkSampler {
    /// Groups `pids` (one per dataset index) for batches of `batch_size = P·K` with
    /// `instances = K` images per identity.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] if `K == 0`, `batch_size` is not a positive multiple of K,
    /// or there are fewer than P identities (no batch could be formed).
    pub fn new(pids: &[usize], batch_size: usize, instances: usize) -> Result<Self> {
        if instances == 0 {
            return Err(DataError::invalid("instances", "K must be at least 1"));
        }
        if batch_size == 0 || !batch_size.is_multiple_of(instances) {
            return Err(DataError::invalid(
                "batch_size",
                format!("{batch_size} is not a positive multiple of K = {instances}"),
            ));
        }
        let ids_per_batch = batch_size / instances;
        let mut group_of: HashMap<usize, usize> = HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (index, pid) in pids.iter().enumerate() {
            let g = *group_of.entry(*pid).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(index);
        }
        if groups.len() < ids_per_batch {
            return Err(DataError::invalid(
                "batch_size",
                format!(
                    "{ids_per_batch} identities per batch but the data has {}",
                    groups.len()
                ),
            ));
        }
        Ok(Self {
            ids_per_batch,
            instances,
            groups,
            num_samples: pids.len(),
        })
    }

    /// Sampler over the pids of `items`.
    pub fn from_items(items: &[ReidItem], batch_size: usize, instances: usize) -> Result<Self> {
        let pids: Vec<usize> = items.iter().map(|i| i.pid).collect();
        Self::new(&pids, batch_size, instances)
    }

    /// P, identities per batch.
    pub fn ids_per_batch(&self) -> usize {
        self.ids_per_batch
    }

    /// K, images per identity.
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// P·K.
    pub fn batch_size(&self) -> usize {
        self.ids_per_batch * self.instances
    }

    /// Length of the dataset the sampler indexes.
    pub fn num_samples(&self) -> usize {
        self.num_samples
    }

    /// The reference's `__len__`: `Σ_id (max(n, K) − max(n, K) mod K)`, an upper bound of the
    /// epoch length.
    pub fn len_estimate(&self) -> usize {
        let k = self.instances;
        self.groups
            .iter()
            .map(|g| g.len().max(k) - g.len().max(k) % k)
            .sum()
    }

    /// The epoch's dataset indices, `batch_size` per batch, in order.
    pub fn epoch_indices(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut rng = derive_rng(seed, RngPurpose::Sampler, epoch, 0);
        let k = self.instances;
        let mut chunks: Vec<VecDeque<Vec<usize>>> = self
            .groups
            .iter()
            .map(|group| {
                let mut idxs: Vec<usize> = if group.len() < k {
                    (0..k)
                        .map(|_| group[rng.random_range(0..group.len())])
                        .collect()
                } else {
                    group.clone()
                };
                idxs.shuffle(&mut rng);
                idxs.chunks_exact(k).map(<[usize]>::to_vec).collect()
            })
            .collect();
        let mut available: Vec<usize> = (0..chunks.len())
            .filter(|&g| !chunks[g].is_empty())
            .collect();
        let mut out = Vec::with_capacity(self.len_estimate());
        while available.len() >= self.ids_per_batch {
            // partial Fisher–Yates: the first P entries become a uniform random P-subset, in
            // random order, like `random.sample(avai_pids, P)`
            for i in 0..self.ids_per_batch {
                let j = rng.random_range(i..available.len());
                available.swap(i, j);
            }
            for &g in &available[..self.ids_per_batch] {
                out.extend(
                    chunks[g]
                        .pop_front()
                        .expect("available identities have chunks"),
                );
            }
            available.retain(|&g| !chunks[g].is_empty());
        }
        out
    }

    /// The epoch as batches of `batch_size` dataset indices.
    pub fn epoch_batches(&self, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        self.epoch_indices(seed, epoch)
            .chunks_exact(self.batch_size())
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The blocks of `epoch` that one shard of a data-parallel step takes, with the block
    /// numbers (a block's images sit at positions `block · batch_size ..` of the epoch).
    ///
    /// The sampler is built for one shard's batch (the global batch over `shards`). A step is
    /// `shards` consecutive blocks; shard `k` of step `s` takes block `s · shards + k`, and an
    /// incomplete last step is dropped, so every shard has the same number of blocks. This is
    /// the reference's `RandomIdentitySampler_DDP` (rank `r` of `W` takes blocks `r, r + W, …`);
    /// with one shard it is [`Self::epoch_batches`].
    pub fn shard_blocks(&self, seed: u64, epoch: u64, shard: Shard) -> Vec<(usize, Vec<usize>)> {
        let batches = self.epoch_batches(seed, epoch);
        let steps = batches.len() / shard.count;
        batches
            .into_iter()
            .enumerate()
            .take(steps * shard.count)
            .filter(|(block, _)| block % shard.count == shard.index)
            .collect()
    }
}

/// One of `count` equal parts of every step: a rank of a data-parallel run, or a micro-batch of
/// gradient accumulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, `0..count`.
    pub index: usize,
    /// How many parts.
    pub count: usize,
}

impl Shard {
    /// The whole step.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// 10 identities with 1..=10 images each, interleaved.
    fn pids() -> Vec<usize> {
        let mut pids = Vec::new();
        for round in 0..10 {
            for id in 0..10 {
                if round <= id {
                    pids.push(100 + id);
                }
            }
        }
        pids
    }

    #[test]
    fn batches_are_p_distinct_ids_times_k_grouped() {
        let pids = pids();
        let sampler = PkSampler::new(&pids, 12, 4).unwrap();
        assert_eq!(
            (
                sampler.ids_per_batch(),
                sampler.instances(),
                sampler.batch_size()
            ),
            (3, 4, 12)
        );
        for epoch in 0..5 {
            let batches = sampler.epoch_batches(42, epoch);
            assert!(!batches.is_empty());
            let flat = sampler.epoch_indices(42, epoch);
            assert_eq!(flat.len(), batches.len() * 12);
            for batch in &batches {
                let ids: Vec<usize> = batch
                    .chunks(4)
                    .map(|chunk| {
                        let id = pids[chunk[0]];
                        assert!(
                            chunk.iter().all(|&i| pids[i] == id),
                            "chunk {chunk:?} mixes ids"
                        );
                        id
                    })
                    .collect();
                let distinct: HashSet<_> = ids.iter().collect();
                assert_eq!(distinct.len(), 3, "ids {ids:?}");
            }
        }
    }

    #[test]
    fn ids_with_k_or_more_images_use_each_image_at_most_once() {
        let pids = pids();
        let sampler = PkSampler::new(&pids, 8, 4).unwrap();
        let flat = sampler.epoch_indices(1, 0);
        let mut seen = HashSet::new();
        for &i in &flat {
            if pids.iter().filter(|p| **p == pids[i]).count() >= 4 {
                assert!(seen.insert(i), "index {i} used twice");
            }
        }
        // chunks: ids with n < 4 give one chunk (resampled), others floor(n/4): 3·1 + (1+1+1+1+2+2+2) = 13,
        // taken two at a time until fewer than two ids remain
        assert_eq!(sampler.len_estimate(), 13 * 4);
        assert!(
            flat.len() <= sampler.len_estimate() && flat.len() >= 10 * 4,
            "{}",
            flat.len()
        );
    }

    #[test]
    fn ids_with_fewer_than_k_images_are_resampled_with_replacement() {
        // id 7 has a single image: its chunk repeats it K times
        let pids = [7, 8, 8, 8, 8, 9, 9, 9, 9];
        let sampler = PkSampler::new(&pids, 4, 4).unwrap();
        let batches = sampler.epoch_batches(0, 0);
        assert_eq!(batches.len(), 3);
        assert!(batches.contains(&vec![0, 0, 0, 0]));
    }

    #[test]
    fn same_seed_and_epoch_reproduce_and_others_differ() {
        let pids = pids();
        let sampler = PkSampler::new(&pids, 12, 4).unwrap();
        assert_eq!(sampler.epoch_indices(5, 3), sampler.epoch_indices(5, 3));
        assert_ne!(sampler.epoch_indices(5, 3), sampler.epoch_indices(5, 4));
        assert_ne!(sampler.epoch_indices(5, 3), sampler.epoch_indices(6, 3));
        // resuming: a fresh sampler replays epoch 3 without running 0..3
        let again = PkSampler::new(&pids, 12, 4).unwrap();
        assert_eq!(again.epoch_indices(5, 3), sampler.epoch_indices(5, 3));
    }

    #[test]
    fn shards_split_every_step_into_equal_blocks() {
        let pids = pids();
        for count in [1, 2, 3] {
            // The global batch of 6 ids x 2 is split over the shards: 12 / count images each.
            let sampler = PkSampler::new(&pids, 12 / count, 2).unwrap();
            let all = sampler.epoch_batches(5, 2);
            let shards: Vec<Vec<(usize, Vec<usize>)>> = (0..count)
                .map(|index| sampler.shard_blocks(5, 2, Shard { index, count }))
                .collect();
            let steps = all.len() / count;
            for (index, blocks) in shards.iter().enumerate() {
                assert_eq!(blocks.len(), steps, "every shard runs the same steps");
                for (step, (block, indices)) in blocks.iter().enumerate() {
                    assert_eq!(*block, step * count + index);
                    assert_eq!(indices, &all[*block]);
                    let ids: HashSet<usize> = indices.iter().map(|&i| pids[i]).collect();
                    assert_eq!(ids.len(), 6 / count, "P / W identities");
                    assert_eq!(indices.len(), 12 / count);
                }
            }
            let mut taken: Vec<usize> = shards.iter().flatten().map(|(b, _)| *b).collect();
            taken.sort();
            assert_eq!(taken, (0..steps * count).collect::<Vec<_>>());
        }
        let sampler = PkSampler::new(&pids, 12, 2).unwrap();
        let whole: Vec<Vec<usize>> = sampler
            .shard_blocks(5, 2, Shard::WHOLE)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert_eq!(
            whole,
            sampler.epoch_batches(5, 2),
            "one shard is today's batches"
        );
    }

    #[test]
    fn rejects_impossible_settings() {
        let pids = pids();
        for (batch, k) in [(12, 0), (10, 4), (0, 4), (44, 4)] {
            assert!(
                matches!(
                    PkSampler::new(&pids, batch, k),
                    Err(DataError::InvalidConfig { .. })
                ),
                "batch {batch} K {k}"
            );
        }
    }
}
