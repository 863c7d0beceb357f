//! Why two images match: patch and pixel maps of a checkpoint's retrieval feature (TransReID's
//! global feature, CLIP-ReID's feature) for one image or a query / gallery pair (the picture:
//! `explain_picture`).

use std::path::Path;

use burn::backend::Autodiff;
use burn::prelude::*;
use image::RgbImage;
use transreid_data::Normalization;
use transreid_model::{
    gradient_maps, image_map, load_any_checkpoint, rollout_maps, AnyReidConfig, AnyReidModel,
    ExplainError, ExplainMethod, ImageMapError, LabelError, SieMode,
};

use crate::embedder::{Embedder, EmbedderError};

/// Errors of the [`Explainer`].
#[derive(Debug, thiserror::Error)]
pub enum ExplainerError {
    /// The checkpoint could not be loaded, or an image not transformed.
    #[error(transparent)]
    Embedder(#[from] EmbedderError),
    /// The method does not fit the images (e.g. a pair target on one image).
    #[error(transparent)]
    Explain(#[from] ExplainError),
    /// The patch grid cannot be spread over the model's input.
    #[error(transparent)]
    ImageMap(#[from] ImageMapError),
    /// A camera or view id does not fit the model.
    #[error(transparent)]
    Label(#[from] LabelError),
}

/// The maps of a batch of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedImages {
    /// Patch grid `[grid_h, grid_w]`.
    pub grid: [usize; 2],
    /// Per image, the `grid_h * grid_w` map, row-major, in `[0, 1]` (maximum 1).
    pub grid_maps: Vec<Vec<f32>>,
    /// The model's input size `[H, W]`.
    pub input_size: [usize; 2],
    /// Per image, the map spread over the model's input pixels (`H * W`, row-major; each pixel
    /// the mean of the patches covering it, 0 where none does).
    pub pixel_maps: Vec<Vec<f32>>,
    /// Per image, the explained target's value (gradient maps; for a pair, the cosine
    /// similarity of the two eval features).
    pub target_values: Vec<f32>,
}

/// A checkpoint loaded for explanations: its inference model (through an [`Embedder`], for
/// the test transform and rollout) and the same weights on the autodiff backend for gradient
/// maps.
pub struct Explainer<B: Backend> {
    embedder: Embedder<B>,
    autodiff: AnyReidModel<Autodiff<B>>,
}

impl<B: Backend> Explainer<B> {
    /// Loads `checkpoint` once, with the input normalisation it records unless `normalization`
    /// overrides it (see [`Embedder::from_checkpoint`]).
    pub fn from_checkpoint(
        checkpoint: &Path,
        normalization: Option<Normalization>,
        device: &B::Device,
    ) -> Result<Self, EmbedderError> {
        let (autodiff, config, input) = load_any_checkpoint::<Autodiff<B>>(checkpoint, device)?;
        let embedder = Embedder::from_loaded(
            checkpoint,
            autodiff.valid(),
            config,
            input.as_ref(),
            normalization,
            1,
            device,
        )?;
        Ok(Self { embedder, autodiff })
    }

    /// The embedder of the same model (configuration, normalisation, features).
    pub fn embedder(&self) -> &Embedder<B> {
        &self.embedder
    }

    /// Maps of `images` (decoded, any size: each is transformed as for embedding) by `method`.
    /// Camera and view ids are read only by SIE models that use them (`None`: id 0).
    pub fn explain(
        &self,
        images: &[RgbImage],
        cameras: Option<&[i64]>,
        views: Option<&[i64]>,
        method: ExplainMethod,
    ) -> Result<ExplainedImages, ExplainerError> {
        let n = images.len();
        let ids = |ids: Option<&[i64]>| ids.map_or(vec![0; n], <[i64]>::to_vec);
        let (cameras, views) = (ids(cameras), ids(views));
        for (what, ids) in [("cameras", &cameras), ("views", &views)] {
            if ids.len() != n {
                return Err(LabelError::LengthMismatch {
                    what,
                    expected: n,
                    got: ids.len(),
                }
                .into());
            }
        }
        let config = self.embedder.config();
        let sie = config.sie();
        sie.check_labels(&cameras, &views)?;
        let input = self.embedder.input_tensor(images)?;
        let device = input.device();
        let mode = sie.mode;
        let tensor = |v: Vec<i64>| {
            (mode != SieMode::None)
                .then(|| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), &device))
        };
        let (cameras, views) = (tensor(cameras), tensor(views));
        let explained = match (method, self.embedder.model(), &self.autodiff) {
            (
                ExplainMethod::Rollout {
                    fusion,
                    discard_ratio,
                },
                AnyReidModel::TransReid(m),
                _,
            ) => rollout_maps(m, input, cameras, views, fusion, discard_ratio)?,
            (
                ExplainMethod::Rollout {
                    fusion,
                    discard_ratio,
                },
                AnyReidModel::ClipReid(m),
                _,
            ) => rollout_maps(m, input, cameras, views, fusion, discard_ratio)?,
            (ExplainMethod::Gradient(target), _, AnyReidModel::TransReid(m)) => {
                gradient_maps(m, input, cameras, views, target)?
            }
            (ExplainMethod::Gradient(target), _, AnyReidModel::ClipReid(m)) => {
                gradient_maps(m, input, cameras, views, target)?
            }
        };
        let (patch_size, stride, img_size) = match config {
            AnyReidConfig::TransReid(c) => (c.vit.patch_size, c.vit.stride, c.vit.img_size),
            AnyReidConfig::ClipReid(c) => (c.vision.patch_size, c.vision.stride, c.vision.img_size),
        };
        let pixel_maps = explained
            .maps
            .iter()
            .map(|m| image_map(m, explained.grid, patch_size, stride, img_size))
            .collect::<Result<_, _>>()?;
        Ok(ExplainedImages {
            grid: explained.grid,
            grid_maps: explained.maps,
            input_size: img_size,
            pixel_maps,
            target_values: explained.target_values,
        })
    }
}
