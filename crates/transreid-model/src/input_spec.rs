//! What inference needs besides the weights: the input normalisation and size a model was
//! trained with, stored in its checkpoint so that a file copied out of its run folder embeds
//! exactly as in training.

use serde::{Deserialize, Serialize};

use crate::presets::PixelStats;
use crate::transreid::TransReidConfig;

/// Metadata key of the [`InputSpec`] JSON in a checkpoint.
pub const INPUT_METADATA_KEY: &str = "transreid.input";

/// The test-time input of a model: images are resized (bilinear) to `height` x `width`, scaled to
/// `[0, 1]` and normalised per channel with `(x - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Per-channel mean (RGB).
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
    /// Input height in pixels.
    pub height: usize,
    /// Input width in pixels.
    pub width: usize,
}

impl InputSpec {
    /// The spec of a model of `config` normalised with `stats`.
    pub fn new(config: &TransReidConfig, (mean, std): PixelStats) -> Self {
        let [height, width] = config.vit.img_size;
        Self {
            mean,
            std,
            height,
            width,
        }
    }

    /// The reason this spec cannot go with a model of `config`, if any.
    pub fn mismatch(&self, config: &TransReidConfig) -> Option<String> {
        let finite = self.mean.iter().chain(&self.std).all(|v| v.is_finite());
        if !finite || self.std.iter().any(|&s| s <= 0.0) {
            return Some(format!(
                "input normalisation mean {:?} std {:?} is not usable (std must be positive)",
                self.mean, self.std
            ));
        }
        let size = [self.height, self.width];
        (size != config.vit.img_size).then(|| {
            format!(
                "input size {}x{} differs from the model's {}x{}",
                size[0], size[1], config.vit.img_size[0], config.vit.img_size[1]
            )
        })
    }
}
