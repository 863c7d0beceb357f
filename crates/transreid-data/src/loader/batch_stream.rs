//! Background production of batches with bounded prefetch.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use image::RgbImage;
use rayon::prelude::*;

use crate::decode::decode_rgb;
use crate::error::{DataError, Result};
use crate::item::ReidItem;
use crate::loader::host_batch::HostBatch;
use crate::transform::config::ImageSize;

/// Iterator over the batches of one pass, built ahead by a producer thread.
///
/// The producer builds batch `b` on the loader's worker pool (one task per image, results in
/// item order), then blocks while `prefetch` finished batches wait to be taken. Dropping the
/// stream stops the producer after the batch in progress. The first error ends the stream.
pub struct BatchStream {
    receiver: Option<Receiver<Result<HostBatch>>>,
    producer: Option<JoinHandle<()>>,
    remaining: usize,
}

/// Writes the `[3, H, W]` image of one item: `(position in the pass, item, decoded image, out)`.
pub(crate) type SampleWriter = dyn Fn(usize, &ReidItem, &RgbImage, &mut [f32]) + Send + Sync;

impl BatchStream {
    /// Starts producing `batches` (each a list of item indices) from `items`; the items of a
    /// batch are numbered from the batch's first position, consecutively over the batches.
    pub(crate) fn spawn(
        items: Arc<[ReidItem]>,
        batches: Vec<Vec<usize>>,
        size: ImageSize,
        pool: Arc<rayon::ThreadPool>,
        prefetch: usize,
        write: Arc<SampleWriter>,
    ) -> Self {
        let starts = batches
            .iter()
            .scan(0, |position, batch| {
                let start = *position;
                *position += batch.len();
                Some(start)
            })
            .collect();
        Self::spawn_at(items, batches, starts, size, pool, prefetch, write)
    }

    /// [`Self::spawn`] with each batch's first position given (a shard of a pass keeps the
    /// positions its images have in the whole pass).
    pub(crate) fn spawn_at(
        items: Arc<[ReidItem]>,
        batches: Vec<Vec<usize>>,
        starts: Vec<usize>,
        size: ImageSize,
        pool: Arc<rayon::ThreadPool>,
        prefetch: usize,
        write: Arc<SampleWriter>,
    ) -> Self {
        let remaining = batches.len();
        let (sender, receiver) = sync_channel(prefetch);
        let producer = std::thread::Builder::new()
            .name("reid-loader-producer".into())
            .spawn(move || {
                for (b, (batch, position)) in batches.iter().zip(starts).enumerate() {
                    let built =
                        pool.install(|| build_batch(&items, batch, position, size, &*write));
                    let built =
                        built.unwrap_or_else(|| Err(DataError::WorkerPanicked { batch: b }));
                    let failed = built.is_err();
                    if sender.send(built).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning the loader producer thread");
        Self {
            receiver: Some(receiver),
            producer: Some(producer),
            remaining,
        }
    }
}

/// Decodes and transforms one batch in parallel; `None` if a worker panicked.
fn build_batch(
    items: &[ReidItem],
    batch: &[usize],
    first_position: usize,
    size: ImageSize,
    write: &SampleWriter,
) -> Option<Result<HostBatch>> {
    let len = size.chw_len();
    let mut images = vec![0.0f32; batch.len() * len];
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        images
            .par_chunks_mut(len)
            .zip(batch.par_iter())
            .enumerate()
            .map(|(i, (out, &index))| {
                let item = &items[index];
                let image = decode_rgb(&item.path)?;
                write(first_position + i, item, &image, out);
                Ok(())
            })
            .collect::<Result<()>>()
    }));
    let outcome = match outcome {
        Ok(result) => result,
        Err(_) => return None,
    };
    Some(outcome.map(|()| {
        let pick =
            |f: fn(&ReidItem) -> usize| batch.iter().map(|&i| f(&items[i])).collect::<Vec<_>>();
        HostBatch {
            images,
            shape: [batch.len(), 3, size.height as usize, size.width as usize],
            pids: pick(|i| i.pid),
            camids: pick(|i| i.camid),
            viewids: pick(|i| i.viewid),
            indices: batch.to_vec(),
            paths: batch
                .iter()
                .map(|&i| items[i].path.clone())
                .collect::<Vec<PathBuf>>(),
        }
    }))
}

impl Iterator for BatchStream {
    type Item = Result<HostBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let received = self.receiver.as_ref()?.recv().ok();
        match &received {
            Some(Ok(_)) => self.remaining -= 1,
            // an error or a closed channel ends the stream
            _ => {
                self.remaining = 0;
                self.receiver = None;
            }
        }
        received
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // closing the channel makes the producer's next send fail, so it stops
        self.receiver = None;
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
    }
}
