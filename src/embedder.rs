//! Embedding crops from other programs: load a checkpoint once, embed images or paths in batches.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::RgbImage;
use transreid_data::{decode_rgb, Normalization, TestTransform};
use transreid_model::{
    load_any_checkpoint, AnyReidConfig, AnyReidModel, ReidModel, TransReid, TransReidConfig,
};

use crate::inference::{embed_batch, model_transforms, InferenceError};
use crate::input_normalization::{
    resolve_normalization, NormalizationError, NormalizationSource, ResolvedNormalization,
};

/// Errors of the [`Embedder`].
#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    /// The checkpoint could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] transreid_model::ImportError),
    /// An image could not be read or transformed, or a label is out of range.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The run configuration beside an older checkpoint could not be read.
    #[error(transparent)]
    Normalization(#[from] NormalizationError),
    /// An image's camera or view id does not fit the model.
    #[error("{path}: {source}")]
    ImageLabel {
        /// The image.
        path: PathBuf,
        /// The id and the model's range.
        source: transreid_model::LabelError,
    },
    /// An image without pixels.
    #[error("image {index} has no pixels")]
    EmptyImage {
        /// Its position in the slice given.
        index: usize,
    },
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

/// What to do with an image file that cannot be read or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Stop with the file's error.
    Fail,
    /// Leave it out and report it in [`EmbeddedFiles::skipped`].
    Skip,
}

/// Features of image files and the files left out.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedFiles {
    /// The embedded files, in input order.
    pub paths: Vec<PathBuf>,
    /// `[paths, dim]` row-major.
    pub features: Vec<f32>,
    /// Unreadable files left out (with [`Unreadable::Skip`]) and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// A loaded model with its test transform (bilinear resize to the model's input, normalise).
pub struct Embedder<B: Backend> {
    model: AnyReidModel<B>,
    config: AnyReidConfig,
    transform: TestTransform,
    device: B::Device,
    batch_size: usize,
    normalization: ResolvedNormalization,
}

impl<B: Backend> Embedder<B> {
    /// Loads `checkpoint` (written by `train`, `demo` or `import`) with the input normalisation
    /// it records. `normalization` overrides it; for older files that record none, the run
    /// folder's `config.toml` beside the checkpoint or else mean and std 0.5 is used, and
    /// [`Embedder::normalization`] says which ([`ResolvedNormalization::warning`]).
    pub fn from_checkpoint(
        checkpoint: &Path,
        normalization: Option<Normalization>,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Self, EmbedderError> {
        let (model, config, input) = load_any_checkpoint::<B>(checkpoint, device)?;
        Self::from_loaded(
            checkpoint,
            model,
            config,
            input.as_ref(),
            normalization,
            batch_size,
            device,
        )
    }

    /// Wraps a TransReID model already in memory (e.g. `model.valid()` right after training).
    pub fn new(
        model: TransReid<B>,
        config: TransReidConfig,
        normalization: Normalization,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Self, EmbedderError> {
        let (model, config) = (
            AnyReidModel::TransReid(model),
            AnyReidConfig::TransReid(config),
        );
        Self::from_any(model, config, normalization, batch_size, device)
    }

    /// Wraps a model of either method already in memory.
    pub fn from_any(
        model: AnyReidModel<B>,
        config: AnyReidConfig,
        normalization: Normalization,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Self, EmbedderError> {
        let transform = TestTransform::new(&model_transforms(config.input_size(), normalization))
            .map_err(InferenceError::from)?;
        Ok(Self {
            model,
            config,
            transform,
            device: device.clone(),
            batch_size: batch_size.max(1),
            normalization: ResolvedNormalization {
                normalization,
                source: NormalizationSource::Given,
            },
        })
    }

    /// [`Self::from_checkpoint`] from a model and configuration already loaded from
    /// `checkpoint` (with the input specification it records).
    pub(crate) fn from_loaded(
        checkpoint: &Path,
        model: AnyReidModel<B>,
        config: AnyReidConfig,
        input: Option<&transreid_model::InputSpec>,
        normalization: Option<Normalization>,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Self, EmbedderError> {
        let resolved = resolve_normalization(checkpoint, input, normalization)?;
        let mut embedder =
            Self::from_any(model, config, resolved.normalization, batch_size, device)?;
        embedder.normalization = resolved;
        Ok(embedder)
    }

    /// The inference model.
    pub fn model(&self) -> &AnyReidModel<B> {
        &self.model
    }

    /// The model's input for decoded images: each resized and normalised by the test
    /// transform.
    ///
    /// # Shapes
    /// - output: `[images, 3, H, W]`
    pub fn input_tensor(&self, images: &[RgbImage]) -> Result<Tensor<B, 4>, EmbedderError> {
        if let Some(index) = images
            .iter()
            .position(|i| i.width() == 0 || i.height() == 0)
        {
            return Err(EmbedderError::EmptyImage { index });
        }
        let [h, w] = self.config.input_size();
        let mut pixels = vec![0.0f32; images.len() * 3 * h * w];
        for (image, slot) in images.iter().zip(pixels.chunks_mut(3 * h * w)) {
            self.transform.apply(image, slot);
        }
        Ok(Tensor::from_data(
            TensorData::new(pixels, [images.len(), 3, h, w]),
            &self.device,
        ))
    }

    /// The input normalisation in use and where it came from.
    pub fn normalization(&self) -> &ResolvedNormalization {
        &self.normalization
    }

    /// The model's configuration.
    pub fn config(&self) -> &AnyReidConfig {
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
        check_label_counts(images.len(), cameras, views)?;
        if let Some(index) = images
            .iter()
            .position(|i| i.width() == 0 || i.height() == 0)
        {
            return Err(EmbedderError::EmptyImage { index });
        }
        let [h, w] = self.config.input_size();
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
            )?;
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
        let embedded = self.embed_files(paths, cameras, views, Unreadable::Fail, &mut |_| {})?;
        Ok(embedded.features)
    }

    /// Decodes and embeds image files a batch at a time (memory stays one batch of images),
    /// checking each image's camera and view ids against the model and naming the file when
    /// one is out of range. `unreadable` decides whether a file that cannot be decoded stops
    /// the work or is left out; `progress` is called with the number of files done after each
    /// batch.
    pub fn embed_files(
        &self,
        paths: &[PathBuf],
        cameras: Option<&[i64]>,
        views: Option<&[i64]>,
        unreadable: Unreadable,
        progress: &mut dyn FnMut(usize),
    ) -> Result<EmbeddedFiles, EmbedderError> {
        check_label_counts(paths.len(), cameras, views)?;
        let id = |ids: Option<&[i64]>, i: usize| ids.map_or(0, |ids| ids[i]);
        for (i, path) in paths.iter().enumerate() {
            let (camera, view) = (id(cameras, i), id(views, i));
            self.model
                .sie_config()
                .check_labels(&[camera], &[view])
                .map_err(|source| EmbedderError::ImageLabel {
                    path: path.clone(),
                    source,
                })?;
        }
        let mut out = EmbeddedFiles {
            paths: Vec::with_capacity(paths.len()),
            features: Vec::with_capacity(paths.len() * self.dim()),
            skipped: Vec::new(),
        };
        let indices: Vec<usize> = (0..paths.len()).collect();
        for chunk in indices.chunks(self.batch_size) {
            let (mut images, mut batch_cameras, mut batch_views) = (vec![], vec![], vec![]);
            for &i in chunk {
                match decode_rgb(&paths[i]) {
                    Ok(image) => {
                        images.push(image);
                        batch_cameras.push(id(cameras, i));
                        batch_views.push(id(views, i));
                        out.paths.push(paths[i].clone());
                    }
                    Err(e) if unreadable == Unreadable::Skip => {
                        out.skipped.push((paths[i].clone(), e.to_string()))
                    }
                    Err(e) => return Err(EmbedderError::Inference(e.into())),
                }
            }
            let features = self.embed_images(&images, Some(&batch_cameras), Some(&batch_views))?;
            out.features.extend(features);
            progress(chunk.len());
        }
        Ok(out)
    }
}

/// Camera and view ids, when given, must be one per image.
fn check_label_counts(
    images: usize,
    cameras: Option<&[i64]>,
    views: Option<&[i64]>,
) -> Result<(), EmbedderError> {
    for (label, ids) in [(SideLabel::Camera, cameras), (SideLabel::View, views)] {
        if let Some(ids) = ids.filter(|ids| ids.len() != images) {
            return Err(EmbedderError::LabelCount {
                label,
                images,
                given: ids.len(),
            });
        }
    }
    Ok(())
}
