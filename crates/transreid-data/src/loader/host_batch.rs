//! A batch in host memory, ready to become tensors.

use std::path::PathBuf;

/// `images` is `[N, 3, H, W]` row-major (`shape`); the label vectors have length N.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    pub images: Vec<f32>,
    /// `[N, 3, H, W]`.
    pub shape: [usize; 4],
    pub pids: Vec<usize>,
    pub camids: Vec<usize>,
    pub viewids: Vec<usize>,
    /// Index of each image in the loader's item list.
    pub indices: Vec<usize>,
    pub paths: Vec<PathBuf>,
}

impl HostBatch {
    /// Number of images N.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// True for a batch without images.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// The `[3, H, W]` values of image `i`.
    ///
    /// # Panics
    /// If `i >= N`.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.shape[1] * self.shape[2] * self.shape[3];
        &self.images[i * len..(i + 1) * len]
    }
}
