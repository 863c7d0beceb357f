use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;

/// Overlapping patch embedding (`PatchEmbed_overlap`): a `patch x patch` convolution with stride
/// `stride <= patch` and no padding, so neighbouring patches share pixels when `stride < patch`.
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

    /// Builds the module.
    ///
    /// # Panics
    /// If a stride is 0 or larger than the patch, or the image is smaller than a patch.
    pub fn init<B: Backend>(&self, device: &B::Device) -> PatchEmbed<B> {
        for axis in 0..2 {
            assert!(
                (1..=self.patch_size).contains(&self.stride[axis]),
                "stride {:?} must be in 1..={}",
                self.stride,
                self.patch_size
            );
            assert!(
                self.img_size[axis] >= self.patch_size,
                "image {:?} smaller than a patch",
                self.img_size
            );
        }
        // The reference draws normal(0, sqrt(2 / (k * k * out_channels))).
        let fan_out = (self.patch_size * self.patch_size * self.embed_dim) as f64;
        let proj = Conv2dConfig::new(
            [self.in_channels, self.embed_dim],
            [self.patch_size, self.patch_size],
        )
        .with_stride(self.stride)
        .with_padding(PaddingConfig2d::Valid)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: (2.0 / fan_out).sqrt(),
        })
        .init(device);
        PatchEmbed {
            proj,
            img_size: self.img_size,
            grid: self.grid(),
        }
    }
}

/// See [`PatchEmbedConfig`].
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// The patch projection, `[embed_dim, in_channels, patch, patch]`.
    pub proj: Conv2d<B>,
    #[module(skip)]
    img_size: [usize; 2],
    #[module(skip)]
    grid: [usize; 2],
}

impl<B: Backend> PatchEmbed<B> {
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
        self.proj.forward(images).flatten::<3>(2, 3).swap_dims(1, 2)
    }
}
