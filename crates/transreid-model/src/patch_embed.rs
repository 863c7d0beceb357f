use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;

use crate::error::ModelConfigError;
use crate::ics_stem::{IcsStem, IcsStemConfig};

/// Overlapping patch embedding (`PatchEmbed_overlap`): a `patch x patch` convolution with stride
/// `stride <= patch` and no padding, so neighbouring patches share pixels when `stride < patch`.
///
/// With the ICS stem (TransReID-SSL's `stem_conv=True`) the convolution stem runs first and the
/// projection is `patch / 2` square with the same stride on the half-resolution map, so the grid
/// is still that of `patch x patch` patches at stride `patch`; other strides are refused.
#[derive(Config, Debug)]
pub struct PatchEmbedConfig {
    /// Input image size `[height, width]`.
    pub img_size: [usize; 2],
    /// Patch stride `[y, x]`. Default: `[16, 16]`.
    #[config(default = "[16, 16]")]
    pub stride: [usize; 2],
    /// Patch size. Default: 16.
    #[config(default = 16)]
    pub patch_size: usize,
    /// Input channels. Default: 3.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Embedding dimension.
    pub embed_dim: usize,
    /// The ICS convolution stem before the projection; `None`: the projection alone.
    /// Default: None.
    #[config(default = "None")]
    pub stem: Option<IcsStemConfig>,
}

impl PatchEmbedConfig {
    /// Patch grid `[num_y, num_x]`: `(size - patch) / stride + 1` per axis.
    pub fn grid(&self) -> [usize; 2] {
        [
            (self.img_size[0] - self.patch_size) / self.stride[0] + 1,
            (self.img_size[1] - self.patch_size) / self.stride[1] + 1,
        ]
    }

    /// Number of patch tokens.
    pub fn num_patches(&self) -> usize {
        let [y, x] = self.grid();
        y * x
    }

    /// Checks the sizes: strides in `1..=patch`, an image at least one patch large, and with
    /// the ICS stem a stride equal to the patch (a multiple of the stem's stride).
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        let patch = self.patch_size;
        if patch == 0 || self.stride.iter().any(|s| !(1..=patch).contains(s)) {
            return Err(ModelConfigError::Stride {
                stride: self.stride,
                patch,
            });
        }
        if self.img_size.iter().any(|&s| s < patch) {
            return Err(ModelConfigError::ImageTooSmall {
                size: self.img_size,
                patch,
            });
        }
        if let Some(stem) = &self.stem {
            if self.stride != [patch; 2] || stem.stride == 0 || !patch.is_multiple_of(stem.stride) {
                return Err(ModelConfigError::IcsStride {
                    stride: self.stride,
                    patch,
                });
            }
        }
        Ok(())
    }

    /// Builds the module.
    ///
    /// # Panics
    /// If the sizes are invalid (see [`Self::validate`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> PatchEmbed<B> {
        if let Err(e) = self.validate() {
            panic!("invalid patch embedding: {e}");
        }
        // With the stem, the projection covers `patch / stem stride` pixels of the smaller map.
        let (in_channels, kernel, stride) = match &self.stem {
            Some(stem) => {
                let k = self.patch_size / stem.stride;
                (stem.hidden_dim, k, [k, k])
            }
            None => (self.in_channels, self.patch_size, self.stride),
        };
        // The reference draws normal(0, sqrt(2 / (k * k * out_channels))).
        let fan_out = (kernel * kernel * self.embed_dim) as f64;
        let proj = Conv2dConfig::new([in_channels, self.embed_dim], [kernel, kernel])
            .with_stride(stride)
            .with_padding(PaddingConfig2d::Valid)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: (2.0 / fan_out).sqrt(),
            })
            .init(device);
        PatchEmbed {
            stem: self
                .stem
                .as_ref()
                .map(|stem| stem.init(self.in_channels, device)),
            proj,
            img_size: self.img_size,
            grid: self.grid(),
        }
    }
}

/// See [`PatchEmbedConfig`].
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// The ICS convolution stem, if configured.
    pub stem: Option<IcsStem<B>>,
    /// The patch projection, `[embed_dim, in_channels, patch, patch]` (with the stem:
    /// `[embed_dim, hidden, patch / 2, patch / 2]`).
    pub proj: Conv2d<B>,
    #[module(skip)]
    img_size: [usize; 2],
    #[module(skip)]
    grid: [usize; 2],
}

impl<B: Backend> PatchEmbed<B> {
    /// The input image size `[height, width]`.
    pub fn img_size(&self) -> [usize; 2] {
        self.img_size
    }

    /// Patch grid `[num_y, num_x]`.
    pub fn grid(&self) -> [usize; 2] {
        self.grid
    }

    /// Embeds the patches, row-major (`token = y * num_x + x`).
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, num_y * num_x, embed_dim]`
    ///
    /// # Panics
    /// If the image size differs from the configured one (as the reference asserts).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let [_, _, h, w] = images.dims();
        assert_eq!(
            [h, w],
            self.img_size,
            "input image size {h}x{w} differs from the model's {:?}",
            self.img_size
        );
        let x = match &self.stem {
            Some(stem) => stem.forward(images),
            None => images,
        };
        self.proj.forward(x).flatten::<3>(2, 3).swap_dims(1, 2)
    }
}
