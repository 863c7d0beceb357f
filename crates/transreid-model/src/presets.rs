//! The backbones of the paper and the reference configurations.

use serde::{Deserialize, Serialize};

use crate::vit::VitConfig;

/// A ViT architecture preset (the reference's `TRANSFORMER_TYPE` factories).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitPreset {
    /// ViT-B/16: D 768, 12 blocks, 12 heads (`vit_base_patch16_224_TransReID`).
    VitBase16,
    /// DeiT-B/16: the ViT-B/16 architecture with DeiT weights and ImageNet normalisation.
    DeitBase16,
    /// DeiT-S/16: D 384, 12 blocks, 6 heads.
    DeitSmall16,
    /// ViT-S/16: the DeiT-S/16 architecture with 0.5 normalisation, as the self-supervised
    /// LUPerson weights (PersonViT, TransReID-SSL) are fine-tuned.
    VitSmall16,
    /// The legacy ViT-S of the reference: D 768, 8 blocks, 8 heads, MLP ratio 3, no qkv bias,
    /// attention scale `768^-0.5`.
    VitSmallLegacy,
    /// A tiny model for tests and demos: D 64, 4 blocks, 4 heads.
    Tiny,
}

/// Image normalisation `(mean, std)` per channel.
pub type PixelStats = ([f32; 3], [f32; 3]);

/// `0.5 / 0.5`, the normalisation of the ViT configs.
pub const HALF_STATS: PixelStats = ([0.5; 3], [0.5; 3]);
/// ImageNet statistics, used by the DeiT configs of VeRi and VehicleID.
pub const IMAGENET_STATS: PixelStats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

impl VitPreset {
    /// Every preset.
    pub const ALL: [VitPreset; 6] = [
        VitPreset::VitBase16,
        VitPreset::DeitBase16,
        VitPreset::DeitSmall16,
        VitPreset::VitSmall16,
        VitPreset::VitSmallLegacy,
        VitPreset::Tiny,
    ];

    /// The backbone at image size `[H, W]` and patch stride `[sy, sx]`, with the reference's
    /// drop path 0.1.
    pub fn config(self, img_size: [usize; 2], stride: [usize; 2]) -> VitConfig {
        let (dim, depth, heads) = match self {
            VitPreset::VitBase16 | VitPreset::DeitBase16 => (768, 12, 12),
            VitPreset::DeitSmall16 | VitPreset::VitSmall16 => (384, 12, 6),
            VitPreset::VitSmallLegacy => (768, 8, 8),
            VitPreset::Tiny => (64, 4, 4),
        };
        let config = VitConfig::new(img_size, dim, depth, heads).with_stride(stride);
        match self {
            VitPreset::VitSmallLegacy => config
                .with_mlp_ratio(3.0)
                .with_qkv_bias(false)
                .with_qk_scale(Some(768f64.powf(-0.5))),
            _ => config,
        }
    }

    /// The normalisation the reference configs use with this preset's weights.
    pub fn pixel_stats(self) -> PixelStats {
        match self {
            VitPreset::DeitBase16 | VitPreset::DeitSmall16 => IMAGENET_STATS,
            _ => HALF_STATS,
        }
    }
}

impl std::str::FromStr for VitPreset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vit_base16" | "vit_base_patch16_224" => Ok(Self::VitBase16),
            "deit_base16" | "deit_base_patch16_224" => Ok(Self::DeitBase16),
            "deit_small16" | "deit_small_patch16_224" => Ok(Self::DeitSmall16),
            "vit_small16" => Ok(Self::VitSmall16),
            "vit_small_legacy" | "vit_small_patch16_224" => Ok(Self::VitSmallLegacy),
            "tiny" => Ok(Self::Tiny),
            other => Err(format!(
                "unknown preset `{other}` (vit_base16, deit_base16, deit_small16, vit_small16, vit_small_legacy, tiny)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_match_the_reference() {
        let grid = |img, s| VitPreset::VitBase16.config(img, [s, s]).grid();
        assert_eq!(grid([256, 128], 16), [16, 8]);
        assert_eq!(grid([256, 128], 12), [21, 10]);
        assert_eq!(grid([256, 128], 11), [22, 11]);
        assert_eq!(grid([384, 128], 16), [24, 8]);
        assert_eq!(grid([384, 128], 12), [31, 10]);
        assert_eq!(grid([256, 256], 16), [16, 16]);
        assert_eq!(grid([256, 256], 12), [21, 21]);
    }

    #[test]
    fn legacy_small_has_its_quirks() {
        let c = VitPreset::VitSmallLegacy.config([256, 128], [16, 16]);
        assert_eq!(
            (c.embed_dim, c.depth, c.num_heads, c.qkv_bias),
            (768, 8, 8, false)
        );
        assert_eq!(c.mlp_ratio, 3.0);
        assert!((c.qk_scale.unwrap() - 0.036084391824351615).abs() < 1e-12);
        assert_eq!(c.block_drop_path(7), 0.1);
        assert_eq!(c.block_drop_path(0), 0.0);
    }
}
