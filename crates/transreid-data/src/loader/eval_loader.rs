//! Evaluation batches: query then gallery, in order, through the test transform.

use std::sync::Arc;

use crate::dataset::ReidDataset;
use crate::error::{DataError, Result};
use crate::item::ReidItem;
use crate::loader::batch_stream::BatchStream;
use crate::loader::config::LoaderConfig;
use crate::transform::test_transform::TestTransform;

/// Yields `query ++ gallery` in order, `batch_size` images per batch (the last may be smaller),
/// as the reference's `val_loader` over `dataset.query + dataset.gallery`; items `0..num_query`
/// are the queries.
pub struct EvalLoader {
    items: Arc<[ReidItem]>,
    num_query: usize,
    batch_size: usize,
    transform: Arc<TestTransform>,
    config: LoaderConfig,
    pool: Arc<rayon::ThreadPool>,
}

impl EvalLoader {
    /// A loader over `query` followed by `gallery`.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] for `batch_size == 0` or an invalid `config`.
    pub fn new(
        query: &[ReidItem],
        gallery: &[ReidItem],
        transform: TestTransform,
        batch_size: usize,
        config: LoaderConfig,
    ) -> Result<Self> {
        config.validate()?;
        if batch_size == 0 {
            return Err(DataError::invalid("batch_size", "must be at least 1"));
        }
        let items: Vec<ReidItem> = query.iter().chain(gallery).cloned().collect();
        Ok(Self {
            items: items.into(),
            num_query: query.len(),
            batch_size,
            transform: Arc::new(transform),
            pool: Arc::new(config.thread_pool()?),
            config,
        })
    }

    /// A loader over `dataset.query` and `dataset.gallery`.
    pub fn from_dataset(
        dataset: &ReidDataset,
        transform: TestTransform,
        batch_size: usize,
        config: LoaderConfig,
    ) -> Result<Self> {
        Self::new(
            &dataset.query,
            &dataset.gallery,
            transform,
            batch_size,
            config,
        )
    }

    /// Number of query items (they come first).
    pub fn num_query(&self) -> usize {
        self.num_query
    }

    /// All items, queries first.
    pub fn items(&self) -> &[ReidItem] {
        &self.items
    }

    /// Number of batches: `⌈(query + gallery) / batch_size⌉`.
    pub fn num_batches(&self) -> usize {
        self.items.len().div_ceil(self.batch_size)
    }

    /// Starts producing all batches.
    pub fn batches(&self) -> BatchStream {
        let indices: Vec<usize> = (0..self.items.len()).collect();
        let transform = Arc::clone(&self.transform);
        BatchStream::spawn(
            Arc::clone(&self.items),
            indices
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect(),
            self.transform.size(),
            Arc::clone(&self.pool),
            self.config.prefetch,
            Arc::new(move |_, _, image, out| transform.apply(image, out)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_rgb;
    use crate::item::ReidItem;
    use crate::kind::DatasetKind;
    use crate::load::load_dataset;
    use crate::options::LoadOptions;
    use crate::synth::{generate, SynthConfig};
    use crate::transform::config::{ImageSize, TransformConfig};

    #[test]
    fn yields_query_then_gallery_in_order_with_a_partial_last_batch() {
        let tmp = tempfile::tempdir().unwrap();
        let config = SynthConfig {
            train_ids: 2,
            test_ids: 3,
            cameras: 2,
            images_per_id_per_cam: 2,
            distractors: 1,
            junk: 1,
            height: 32,
            width: 16,
            ..SynthConfig::new(tmp.path())
        };
        generate(&config).unwrap();
        let d = load_dataset(DatasetKind::Market1501, tmp.path(), &LoadOptions::default()).unwrap();
        let tconf = TransformConfig::person().with_size(ImageSize::new(20, 10));
        let make = |workers| {
            let t = TestTransform::new(&tconf).unwrap();
            EvalLoader::from_dataset(
                &d,
                t,
                4,
                LoaderConfig {
                    workers,
                    prefetch: 1,
                    seed: 0,
                },
            )
            .unwrap()
        };
        let loader = make(2);
        assert_eq!(loader.num_query(), 6);
        // 6 query + 7 gallery = 13 → batches of 4, 4, 4, 1
        assert_eq!(loader.num_batches(), 4);
        let batches: Vec<_> = loader.batches().collect::<crate::Result<_>>().unwrap();
        assert_eq!(
            batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [4, 4, 4, 1]
        );
        let order: Vec<&ReidItem> = d.query.iter().chain(&d.gallery).collect();
        let flat: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(flat, (0..13).collect::<Vec<_>>());
        for b in &batches {
            for (i, &index) in b.indices.iter().enumerate() {
                assert_eq!(b.paths[i], order[index].path);
                assert_eq!(b.pids[i], order[index].pid);
            }
        }
        // each image equals the test transform applied directly
        let direct = TestTransform::new(&tconf)
            .unwrap()
            .apply_to_vec(&decode_rgb(&order[5].path).unwrap());
        assert_eq!(batches[1].image(1), &direct[..]);
        let single: Vec<_> = make(1).batches().collect::<crate::Result<_>>().unwrap();
        assert_eq!(single, batches);
    }

    #[test]
    fn zero_batch_size_is_rejected() {
        let t = TestTransform::new(&TransformConfig::person()).unwrap();
        assert!(matches!(
            EvalLoader::new(&[], &[], t, 0, LoaderConfig::default()),
            Err(DataError::InvalidConfig {
                field: "batch_size",
                ..
            })
        ));
    }
}
