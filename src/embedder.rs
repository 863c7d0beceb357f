//! Embedding crops from other programs: load a checkpoint once, embed images or paths in batches.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::RgbImage;
use transreid_data::{decode_rgb, Normalization, TestTransform};
use transreid_model::{load_checkpoint, TransReid, TransReidConfig};

use crate::inference::{embed_batch, model_transforms, InferenceError};

/// Errors of the [`Embedder`].
#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    /// The checkpoint could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] transreid_model::ImportError),
    /// An image could not be read or transformed, or a label is out of range.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// Camera or view ids given, but not one per image.
    #[error("{images} images but {given} {label} ids")]
    LabelCount {
        /// Which ids.
        label: SideLabel,
        /// Images to embed.
        images: usize,
        /// Ids given.
        given: usize,
    },
}

/// The side information an SIE model embeds with each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideLabel {
    /// Camera ids (0-based).
    Camera,
    /// Viewpoint ids (as the dataset stores them, e.g. VeRi-776's 0..7).
    View,
}

impl std::fmt::Display for SideLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Camera => "camera",
            Self::View => "view",
        })
    }
}

/// A loaded model with its test transform (bilinear resize to the model's input, normalise).
pub struct Embedder<B: Backend> {
    model: TransReid<B>,
    config: TransReidConfig,
    transform: TestTransform,
    device: B::Device,
    batch_size: usize,
}

impl<B: Backend> Embedder<B> {
    /// Loads `checkpoint` (written by `save_checkpoint`). `normalization` must be the one the
    /// model was trained with (`Normalization::HALF` for the ViT configs).
    pub fn from_checkpoint(
        checkpoint: &Path,
        normalization: Normalization,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Self, EmbedderError> {
        let (model, config) = load_checkpoint::<B>(checkpoint, device)?;
        Self::new(model, config, normalization, batch_size, device)
    }

    /// Wraps a model already in memory (e.g. `model.valid()` right after training).
    pub fn new(
        model: TransReid<B>,
        config: TransReidConfig,
        normalization: Normalization,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Self, EmbedderError> {
        let transform = TestTransform::new(&model_transforms(&config, normalization))
            .map_err(InferenceError::from)?;
        Ok(Self {
            model,
            config,
            transform,
            device: device.clone(),
            batch_size: batch_size.max(1),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &TransReidConfig {
        &self.config
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.config.embed_dim()
    }

    /// Embeds decoded images. Models with camera or view SIE need `cameras` (0-based) or
    /// `views`, one per image; `None` embeds every image with id 0. Returns `[images, dim]`
    /// row-major.
    pub fn embed_images(
        &self,
        images: &[RgbImage],
        cameras: Option<&[i64]>,
        views: Option<&[i64]>,
    ) -> Result<Vec<f32>, EmbedderError> {
        for (label, ids) in [(SideLabel::Camera, cameras), (SideLabel::View, views)] {
            if let Some(ids) = ids.filter(|ids| ids.len() != images.len()) {
                return Err(EmbedderError::LabelCount {
                    label,
                    images: images.len(),
                    given: ids.len(),
                });
            }
        }
        let [h, w] = self.config.vit.img_size;
        let mut out = Vec::with_capacity(images.len() * self.dim());
        for (chunk_index, chunk) in images.chunks(self.batch_size).enumerate() {
            let n = chunk.len();
            let mut pixels = vec![0.0f32; n * 3 * h * w];
            for (image, slot) in chunk.iter().zip(pixels.chunks_mut(3 * h * w)) {
                self.transform.apply(image, slot);
            }
            let first = chunk_index * self.batch_size;
            let ids =
                |ids: Option<&[i64]>| ids.map_or(vec![0; n], |c| c[first..first + n].to_vec());
            let feats = embed_batch(
                &self.model,
                pixels,
                [n, 3, h, w],
                &ids(cameras),
                &ids(views),
                &self.device,
            )
            .map_err(InferenceError::from)?;
            out.extend(feats);
        }
        Ok(out)
    }

    /// Decodes and embeds image files, as [`Embedder::embed_images`]. Returns `[paths, dim]`
    /// row-major.
    pub fn embed_paths(
        &self,
        paths: &[PathBuf],
        cameras: Option<&[i64]>,
        views: Option<&[i64]>,
    ) -> Result<Vec<f32>, EmbedderError> {
        let images = paths
            .iter()
            .map(|p| decode_rgb(p).map_err(|e| EmbedderError::Inference(e.into())))
            .collect::<Result<Vec<_>, _>>()?;
        self.embed_images(&images, cameras, views)
    }
}
