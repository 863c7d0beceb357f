//! What inference needs of a re-identification model, whichever method trained it.

use burn::prelude::*;

use crate::clip_reid::ClipReid;
use crate::sie::SieConfig;
use crate::transreid::TransReid;

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
