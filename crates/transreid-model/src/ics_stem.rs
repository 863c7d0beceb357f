//! The IBN-based convolution stem (ICS) of TransReID-SSL (`PatchEmbed(stem_conv=True)` in its
//! `vit_pytorch.py`): a small CNN that halves the resolution before an 8x8 / stride-8 patch
//! projection, so the patch grid is that of a 16x16 / stride-16 ViT.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{InstanceNorm, InstanceNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::batch_norm::BatchNorm2d;

/// The ICS stem: `conv 7x7 s2 p3 -> IBN -> ReLU -> conv 3x3 -> IBN -> ReLU -> conv 3x3 -> BN ->
/// ReLU`, convolutions without bias. The reference fixes the width at 64 and the stride at 2.
#[derive(Config, Debug, PartialEq)]
pub struct IcsStemConfig {
    /// Channels of the stem. Default: 64.
    #[config(default = 64)]
    pub hidden_dim: usize,
    /// Stride of the first convolution. Default: 2.
    #[config(default = 2)]
    pub stride: usize,
}

impl IcsStemConfig {
    /// Builds the stem for `in_channels` input channels (PyTorch's default initialisation of the
    /// convolutions: Kaiming uniform with `a = sqrt(5)`; norms start at 1 / 0).
    pub fn init<B: Backend>(&self, in_channels: usize, device: &B::Device) -> IcsStem<B> {
        let h = self.hidden_dim;
        let conv = |input: usize, kernel: usize, stride: usize| {
            Conv2dConfig::new([input, h], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                ))
                .with_bias(false)
                .init(device)
        };
        IcsStem {
            conv1: conv(in_channels, 7, self.stride),
            ibn1: Ibn::new(h, device),
            conv2: conv(h, 3, 1),
            ibn2: Ibn::new(h, device),
            conv3: conv(h, 3, 1),
            bn: BatchNorm2d::new(h, device),
        }
    }
}

/// See [`IcsStemConfig`]. The reference's `conv.{0,1,3,4,6,7}` are `conv1`, `ibn1`, `conv2`,
/// `ibn2`, `conv3`, `bn`.
#[derive(Module, Debug)]
pub struct IcsStem<B: Backend> {
    /// 7x7 convolution, stride 2, padding 3.
    pub conv1: Conv2d<B>,
    /// First IBN.
    pub ibn1: Ibn<B>,
    /// 3x3 convolution, padding 1.
    pub conv2: Conv2d<B>,
    /// Second IBN.
    pub ibn2: Ibn<B>,
    /// 3x3 convolution, padding 1.
    pub conv3: Conv2d<B>,
    /// BatchNorm over every channel.
    pub bn: BatchNorm2d<B>,
}

impl<B: Backend> IcsStem<B> {
    /// # Shapes
    /// - `images`: `[batch, in_channels, H, W]`
    /// - output: `[batch, hidden_dim, ceil(H / 2), ceil(W / 2)]`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = relu(self.ibn1.forward(self.conv1.forward(images)));
        let x = relu(self.ibn2.forward(self.conv2.forward(x)));
        relu(self.bn.forward(self.conv3.forward(x)))
    }
}

/// IBN: InstanceNorm (affine, eps 1e-5, no running statistics) on the first `channels / 2`
/// channels and BatchNorm on the rest, concatenated in that order.
#[derive(Module, Debug)]
pub struct Ibn<B: Backend> {
    /// The reference's `IN`.
    pub instance: InstanceNorm<B>,
    /// The reference's `BN`.
    pub batch: BatchNorm2d<B>,
}

impl<B: Backend> Ibn<B> {
    /// An IBN over `channels` channels.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        let half = channels / 2;
        Self {
            instance: InstanceNormConfig::new(half).init(device),
            batch: BatchNorm2d::new(channels - half, device),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, channels, H, W]` -> same
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let channels = x.dims()[1];
        let half = self.instance.num_channels;
        let first = self.instance.forward(x.clone().narrow(1, 0, half));
        let second = self.batch.forward(x.narrow(1, half, channels - half));
        Tensor::cat(vec![first, second], 1)
    }
}
