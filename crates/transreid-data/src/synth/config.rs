//! Settings and summary of a synthetic re-identification set.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// What [`crate::synth::generate`] writes.
///
/// Train identities are numbered `1..=train_ids`, test identities follow, as Market-1501 keeps
/// the two disjoint. Every identity is seen by every camera `images_per_id_per_cam` times; for
/// test identities the first image per camera goes to `query/`, the rest to
/// `bounding_box_test/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Output folder; receives `bounding_box_train/`, `query/`, `bounding_box_test/`.
    pub out: PathBuf,
    /// Identities of the train split. Default: 32.
    pub train_ids: usize,
    /// Identities of query and gallery. Default: 32.
    pub test_ids: usize,
    /// Cameras `c1..=cN`, at most 6 (Market-1501's range). Default: 4.
    pub cameras: usize,
    /// Images of each identity per camera, at least 2. Default: 4.
    pub images_per_id_per_cam: usize,
    /// Gallery distractor images (pid 0). Default: 16.
    pub distractors: usize,
    /// Gallery junk images (pid −1, skipped by the loader). Default: 8.
    pub junk: usize,
    /// Seed of appearances, cameras and per-image variation. Default: 0.
    pub seed: u64,
    /// Image height in pixels. Default: 128 (Market-1501's crop size).
    pub height: u32,
    /// Image width in pixels. Default: 64.
    pub width: u32,
    /// JPEG quality 1..=100. Default: 90.
    pub jpeg_quality: u8,
}

impl SynthConfig {
    /// The default small set written to `out`: 32 + 32 identities, 4 cameras, 4 images per
    /// identity and camera, 128×64 pixels (512 train, 128 query, 384 + 16 gallery images).
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            train_ids: 32,
            test_ids: 32,
            cameras: 4,
            images_per_id_per_cam: 4,
            distractors: 16,
            junk: 8,
            seed: 0,
            height: 128,
            width: 64,
            jpeg_quality: 90,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |field, reason: String| Err(DataError::invalid(field, reason));
        if self.train_ids == 0 || self.test_ids == 0 {
            return fail(
                "train_ids",
                "train and test identities must both be at least 1".into(),
            );
        }
        if self.train_ids + self.test_ids > 1501 {
            return fail(
                "train_ids",
                format!(
                    "{} identities exceed Market-1501's id range 1..=1501",
                    self.train_ids + self.test_ids
                ),
            );
        }
        if self.cameras == 1 {
            return fail(
                "cameras",
                "a set with one camera cannot be evaluated: the protocol leaves out gallery \
                 images of the query's identity from the query's camera, so every query would \
                 be skipped; use 2 to 6 cameras"
                    .into(),
            );
        }
        if !(2..=6).contains(&self.cameras) {
            return fail(
                "cameras",
                format!(
                    "{} is outside Market-1501's camera range 1..=6",
                    self.cameras
                ),
            );
        }
        if self.images_per_id_per_cam < 2 {
            return fail(
                "images_per_id_per_cam",
                "at least 2 are needed (one query, one gallery)".into(),
            );
        }
        if self.height < 16 || self.width < 8 {
            return fail(
                "height",
                format!(
                    "{}x{} is too small to draw a person (min 16x8)",
                    self.height, self.width
                ),
            );
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return fail(
                "jpeg_quality",
                format!("{} is outside 1..=100", self.jpeg_quality),
            );
        }
        Ok(())
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthSummary {
    pub root: PathBuf,
    pub train_ids: usize,
    pub test_ids: usize,
    pub cameras: usize,
    pub train_images: usize,
    /// Query images (one per test identity and camera).
    pub query_images: usize,
    /// Gallery images, distractors and junk included.
    pub gallery_images: usize,
    pub distractor_images: usize,
    pub junk_images: usize,
}
