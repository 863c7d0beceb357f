//! What inference needs of a re-identification model, whichever method trained it.

use std::path::Path;

use burn::prelude::*;

use crate::checkpoint::load_checkpoint_with_input;
use crate::clip_checkpoint::{load_clip_reid_checkpoint, CLIP_REID_CONFIG_METADATA_KEY};
use crate::clip_reid::{ClipReid, ClipReidConfig};
use crate::error::ImportError;
use crate::input_spec::InputSpec;
use crate::sie::SieConfig;
use crate::state_dict::read_safetensors_metadata;
use crate::transreid::{TransReid, TransReidConfig};

/// A model that embeds crops for retrieval: TransReID and CLIP-ReID alike.
pub trait ReidModel<B: Backend> {
    /// Input size `[height, width]`.
    fn input_size(&self) -> [usize; 2];

    /// The side-information table the camera and view ids index.
    fn sie_config(&self) -> &SieConfig;

    /// The retrieval feature of each image.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; `cameras`, `views`: `[batch]` (needed only by SIE)
    /// - output: `[batch, dim]`
    fn embed_images(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 2>;
}

impl<B: Backend> ReidModel<B> for TransReid<B> {
    fn input_size(&self) -> [usize; 2] {
        self.base.patch_embed.img_size()
    }

    fn sie_config(&self) -> &SieConfig {
        self.sie()
    }

    fn embed_images(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 2> {
        self.embed(images, cameras, views)
    }
}

impl<B: Backend> ReidModel<B> for ClipReid<B> {
    fn input_size(&self) -> [usize; 2] {
        self.image_encoder.img_size()
    }

    fn sie_config(&self) -> &SieConfig {
        self.sie()
    }

    fn embed_images(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 2> {
        self.embed(images, cameras, views)
    }
}

/// A checkpoint's model, whichever method trained it.
// One value per loaded checkpoint: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyReidModel<B: Backend> {
    /// A TransReID checkpoint (`transreid.config` in its metadata).
    TransReid(TransReid<B>),
    /// A CLIP-ReID checkpoint (`transreid.clip_reid_config` in its metadata).
    ClipReid(ClipReid<B>),
}

impl<B: Backend> ReidModel<B> for AnyReidModel<B> {
    fn input_size(&self) -> [usize; 2] {
        match self {
            Self::TransReid(m) => m.input_size(),
            Self::ClipReid(m) => m.input_size(),
        }
    }

    fn sie_config(&self) -> &SieConfig {
        match self {
            Self::TransReid(m) => m.sie_config(),
            Self::ClipReid(m) => m.sie_config(),
        }
    }

    fn embed_images(
        &self,
        images: Tensor<B, 4>,
        cameras: Option<Tensor<B, 1, Int>>,
        views: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 2> {
        match self {
            Self::TransReid(m) => m.embed_images(images, cameras, views),
            Self::ClipReid(m) => m.embed_images(images, cameras, views),
        }
    }
}

impl<B: burn::tensor::backend::AutodiffBackend> AnyReidModel<B> {
    /// The inference model (see [`burn::module::AutodiffModule::valid`]).
    pub fn valid(&self) -> AnyReidModel<B::InnerBackend> {
        use burn::module::AutodiffModule;
        match self {
            Self::TransReid(m) => AnyReidModel::TransReid(m.valid()),
            Self::ClipReid(m) => AnyReidModel::ClipReid(m.valid()),
        }
    }
}

/// A checkpoint's configuration, whichever method: serialises as the configuration itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum AnyReidConfig {
    /// See [`TransReidConfig`].
    TransReid(TransReidConfig),
    /// See [`ClipReidConfig`].
    ClipReid(ClipReidConfig),
}

impl AnyReidConfig {
    /// The side-information table.
    pub fn sie(&self) -> &SieConfig {
        match self {
            Self::TransReid(c) => &c.sie,
            Self::ClipReid(c) => &c.sie,
        }
    }

    /// Input size `[height, width]`.
    pub fn input_size(&self) -> [usize; 2] {
        match self {
            Self::TransReid(c) => c.vit.img_size,
            Self::ClipReid(c) => c.vision.img_size,
        }
    }

    /// Dimension of the retrieval feature.
    pub fn embed_dim(&self) -> usize {
        match self {
            Self::TransReid(c) => c.embed_dim(),
            Self::ClipReid(c) => c.vision.width + c.vision.output_dim,
        }
    }
}

/// Loads a checkpoint of either method ([`crate::load_checkpoint_with_input`] or
/// [`crate::load_clip_reid_checkpoint`], told apart by the configuration in the metadata)
/// with the input it records.
///
/// # Errors
/// Those of the two loaders.
pub fn load_any_checkpoint<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(AnyReidModel<B>, AnyReidConfig, Option<InputSpec>), ImportError> {
    let metadata = read_safetensors_metadata(path).unwrap_or_default();
    if metadata.contains_key(CLIP_REID_CONFIG_METADATA_KEY) {
        let (model, config, input) = load_clip_reid_checkpoint(path, device)?;
        return Ok((
            AnyReidModel::ClipReid(model),
            AnyReidConfig::ClipReid(config),
            input,
        ));
    }
    let (model, config, input) = load_checkpoint_with_input(path, device)?;
    Ok((
        AnyReidModel::TransReid(model),
        AnyReidConfig::TransReid(config),
        input,
    ))
}
