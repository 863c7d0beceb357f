//! Train batches: PK-sampled items through the train transform.

use std::sync::Arc;

use crate::dataset::ReidDataset;
use crate::error::{DataError, Result};
use crate::item::ReidItem;
use crate::loader::batch_stream::BatchStream;
use crate::loader::config::LoaderConfig;
use crate::sampler::{PkSampler, Shard};
use crate::seed::{derive_rng, RngPurpose};
use crate::transform::train_transform::TrainTransform;

/// Yields the batches of one epoch: the sampler's order for `(seed, epoch)`, each image
/// augmented with its own generator `derive_rng(seed, Augmentation, epoch, position)`, where
/// `position` is the image's place in the epoch. The output therefore depends only on the seed
/// and the epoch number, not on the number of workers, and an interrupted run resumes at any
/// epoch.
pub struct TrainLoader {
    items: Arc<[ReidItem]>,
    sampler: PkSampler,
    /// The blocks this loader yields: its rank's, micro-batch after micro-batch.
    shards: Vec<Shard>,
    transform: Arc<TrainTransform>,
    config: LoaderConfig,
    pool: Arc<rayon::ThreadPool>,
}

impl TrainLoader {
    /// A loader over `items` (the train split, pids relabelled) batched by `sampler`.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] if `sampler` was built for a different number of items or
    /// `config` is invalid.
    pub fn new(
        items: Vec<ReidItem>,
        sampler: PkSampler,
        transform: TrainTransform,
        config: LoaderConfig,
    ) -> Result<Self> {
        config.validate()?;
        if sampler.num_samples() != items.len() {
            return Err(DataError::invalid(
                "sampler",
                format!(
                    "built for {} items, loader has {}",
                    sampler.num_samples(),
                    items.len()
                ),
            ));
        }
        Ok(Self {
            items: items.into(),
            sampler,
            shards: vec![Shard::WHOLE],
            transform: Arc::new(transform),
            pool: Arc::new(config.thread_pool()?),
            config,
        })
    }

    /// A loader over `dataset.train` with a [`PkSampler`] of `batch_size = P·K` and
    /// `instances = K`.
    ///
    /// # Errors
    /// As [`PkSampler::new`] and [`TrainLoader::new`].
    pub fn from_dataset(
        dataset: &ReidDataset,
        batch_size: usize,
        instances: usize,
        transform: TrainTransform,
        config: LoaderConfig,
    ) -> Result<Self> {
        let sampler = PkSampler::from_items(&dataset.train, batch_size, instances)?;
        Self::new(dataset.train.clone(), sampler, transform, config)
    }

    /// A loader of one rank's part of each step, in micro-batches: the sampler must be built
    /// for a micro-batch (`batch_size / (world · micro_batches)`); each step is `world ·
    /// micro_batches` blocks, and this loader yields, per step, the `micro_batches` blocks of
    /// `rank` (micro-batch `m` of rank `r` is block `m · world + r` of the step, so the ranks
    /// of one micro-step take consecutive blocks, as the reference's DDP sampler does). Images
    /// keep their augmentation of the whole epoch (keyed by their position in it).
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] if `rank >= world` or a count is 0.
    pub fn sharded(mut self, rank: usize, world: usize, micro_batches: usize) -> Result<Self> {
        if world == 0 || micro_batches == 0 || rank >= world {
            return Err(DataError::invalid(
                "shard",
                format!("rank {rank} of {world} ranks with {micro_batches} micro-batches"),
            ));
        }
        let count = world * micro_batches;
        self.shards = (0..micro_batches)
            .map(|m| Shard {
                index: m * world + rank,
                count,
            })
            .collect();
        Ok(self)
    }

    /// This loader's blocks of `epoch` in order, with their block numbers.
    fn blocks(&self, epoch: u64) -> Vec<(usize, Vec<usize>)> {
        let seed = self.config.seed;
        let per_shard: Vec<Vec<(usize, Vec<usize>)>> = self
            .shards
            .iter()
            .map(|&shard| self.sampler.shard_blocks(seed, epoch, shard))
            .collect();
        let steps = per_shard.first().map_or(0, Vec::len);
        (0..steps)
            .flat_map(|step| per_shard.iter().map(move |blocks| blocks[step].clone()))
            .collect()
    }

    /// The sampler.
    pub fn sampler(&self) -> &PkSampler {
        &self.sampler
    }

    /// The items indexed by [`crate::HostBatch::indices`].
    pub fn items(&self) -> &[ReidItem] {
        &self.items
    }

    /// Number of batches (micro-batches when sharded) this loader yields in `epoch`.
    pub fn batches_in_epoch(&self, epoch: u64) -> usize {
        self.blocks(epoch).len()
    }

    /// Starts producing the batches of `epoch`.
    pub fn epoch(&self, epoch: u64) -> BatchStream {
        let seed = self.config.seed;
        let transform = Arc::clone(&self.transform);
        let block_len = self.sampler.batch_size();
        let (starts, batches) = self
            .blocks(epoch)
            .into_iter()
            .map(|(block, batch)| (block * block_len, batch))
            .unzip();
        BatchStream::spawn_at(
            Arc::clone(&self.items),
            batches,
            starts,
            self.transform.size(),
            Arc::clone(&self.pool),
            self.config.prefetch,
            Arc::new(move |position, _item, image, out| {
                let mut rng = derive_rng(seed, RngPurpose::Augmentation, epoch, position as u64);
                transform.apply(image, &mut rng, out);
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::DatasetKind;
    use crate::load::load_dataset;
    use crate::loader::host_batch::HostBatch;
    use crate::options::LoadOptions;
    use crate::synth::{generate, SynthConfig};
    use crate::test_fixtures::write_bytes;
    use crate::transform::config::{ImageSize, TransformConfig};

    fn dataset(dir: &std::path::Path) -> crate::ReidDataset {
        let config = SynthConfig {
            train_ids: 6,
            test_ids: 2,
            cameras: 2,
            images_per_id_per_cam: 3,
            distractors: 0,
            junk: 0,
            height: 32,
            width: 16,
            ..SynthConfig::new(dir)
        };
        generate(&config).unwrap();
        load_dataset(DatasetKind::Market1501, dir, &LoadOptions::default()).unwrap()
    }

    fn loader(items: Vec<ReidItem>, workers: usize, seed: u64) -> TrainLoader {
        loader_of_batch(items, 8, workers, seed)
    }

    /// A loader of `batch`-image PK batches (K = 4) at 24x12.
    fn loader_of_batch(
        items: Vec<ReidItem>,
        batch: usize,
        workers: usize,
        seed: u64,
    ) -> TrainLoader {
        let sampler = PkSampler::from_items(&items, batch, 4).unwrap();
        let transform =
            TrainTransform::new(&TransformConfig::person().with_size(ImageSize::new(24, 12)))
                .unwrap();
        TrainLoader::new(
            items,
            sampler,
            transform,
            LoaderConfig {
                workers,
                prefetch: 2,
                seed,
            },
        )
        .unwrap()
    }

    #[test]
    fn batches_are_pk_grouped_with_matching_labels() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dataset(tmp.path());
        let loader = loader(d.train.clone(), 2, 7);
        let batches: Vec<_> = loader.epoch(0).collect::<crate::Result<_>>().unwrap();
        // 6 ids × 6 images → 6 chunks of 4 each... one chunk per id, taken 2 ids at a time
        assert_eq!(batches.len(), loader.batches_in_epoch(0));
        assert_eq!(batches.len(), 3);
        for b in &batches {
            assert_eq!(b.shape, [8, 3, 24, 12]);
            assert_eq!(b.images.len(), 8 * 3 * 24 * 12);
            assert_eq!(b.pids[0..4], [b.pids[0]; 4]);
            assert_eq!(b.pids[4..8], [b.pids[4]; 4]);
            assert_ne!(b.pids[0], b.pids[4]);
            for (i, &index) in b.indices.iter().enumerate() {
                let item = &d.train[index];
                assert_eq!(
                    (b.pids[i], b.camids[i], b.viewids[i]),
                    (item.pid, item.camid, item.viewid)
                );
                assert_eq!(b.paths[i], item.path);
            }
            assert!(b.images.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn output_depends_on_seed_and_epoch_not_on_workers() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dataset(tmp.path());
        let run = |workers, seed, epoch| -> Vec<HostBatch> {
            loader(d.train.clone(), workers, seed)
                .epoch(epoch)
                .collect::<crate::Result<_>>()
                .unwrap()
        };
        let one = run(1, 3, 2);
        assert_eq!(one, run(3, 3, 2));
        assert_ne!(one, run(1, 3, 1));
        assert_ne!(one, run(1, 4, 2));
    }

    #[test]
    fn shards_yield_their_blocks_with_the_whole_epochs_augmentation() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dataset(tmp.path());
        // 6 ids x 6 images, blocks of 1 id x 4: 6 ... 9 blocks; 2 ranks x 2 micro-batches.
        let micro = |rank: usize| -> Vec<HostBatch> {
            loader_of_batch(d.train.clone(), 4, 1, 3)
                .sharded(rank, 2, 2)
                .unwrap()
                .epoch(1)
                .collect::<crate::Result<_>>()
                .unwrap()
        };
        let whole: Vec<HostBatch> = loader_of_batch(d.train.clone(), 4, 1, 3)
            .epoch(1)
            .collect::<crate::Result<_>>()
            .unwrap();
        let (r0, r1) = (micro(0), micro(1));
        assert_eq!(r0.len(), r1.len());
        let steps = whole.len() / 4;
        assert_eq!(r0.len(), 2 * steps);
        for step in 0..steps {
            for m in 0..2 {
                // micro-batch m of rank r is block 4 * step + 2 * m + r of the epoch
                assert_eq!(r0[2 * step + m], whole[4 * step + 2 * m]);
                assert_eq!(r1[2 * step + m], whole[4 * step + 2 * m + 1]);
            }
        }
        let err = loader(d.train.clone(), 1, 3)
            .sharded(2, 2, 1)
            .err()
            .unwrap();
        assert!(matches!(err, DataError::InvalidConfig { .. }));
    }

    #[test]
    fn a_corrupt_image_ends_the_epoch_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dataset(tmp.path());
        let bad = d.train[0].path.clone();
        write_bytes(&bad, b"broken");
        let results: Vec<_> = loader(d.train.clone(), 2, 1).epoch(0).collect();
        let err = results.last().unwrap().as_ref().unwrap_err();
        assert!(
            matches!(err, DataError::Decode { path, .. } if *path == bad),
            "{err:?}"
        );
        assert!(results[..results.len() - 1].iter().all(Result::is_ok));
    }

    #[test]
    fn dropping_a_stream_early_stops_it() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dataset(tmp.path());
        let transform =
            TrainTransform::new(&TransformConfig::person().with_size(ImageSize::new(24, 12)))
                .unwrap();
        let config = LoaderConfig {
            workers: 1,
            prefetch: 1,
            seed: 1,
        };
        let loader = TrainLoader::from_dataset(&d, 8, 4, transform, config).unwrap();
        let mut stream = loader.epoch(0);
        assert!(stream.next().unwrap().is_ok());
        drop(stream);
        assert_eq!(loader.epoch(0).count(), 3);
    }

    #[test]
    fn sampler_must_match_items() {
        let items: Vec<ReidItem> = (0..8).map(|i| ReidItem::new("x.jpg", i % 2, 0)).collect();
        let sampler = PkSampler::from_items(&items[..4], 4, 2).unwrap();
        let transform = TrainTransform::new(&TransformConfig::person()).unwrap();
        assert!(matches!(
            TrainLoader::new(items, sampler, transform, LoaderConfig::default()),
            Err(DataError::InvalidConfig {
                field: "sampler",
                ..
            })
        ));
    }
}
