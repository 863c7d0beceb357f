//! The TransReID network (He et al., ICCV 2021) as generic Burn modules, with weight import
//! from timm / Hugging Face safetensors, original `.pth` files and the reference's trained
//! checkpoints.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use transreid_model::{JpmConfig, SieConfig, SieMode, TransReidConfig, VitPreset};
//!
//! let device = Default::default();
//! let config = TransReidConfig::new(VitPreset::VitBase16.config([256, 128], [16, 16]), 751)
//!     .with_sie(SieConfig::new().with_mode(SieMode::Camera).with_camera_num(6))
//!     .with_jpm(Some(JpmConfig::new()));
//! let model = config.init::<NdArray>(&device);
//! ```

mod attention;
mod attention_relevance;
mod attention_rollout;
mod batch_norm;
mod block;
mod checkpoint;
mod clip_checkpoint;
mod clip_layout;
mod clip_reid;
mod clip_text;
mod clip_vision;
mod clip_weights;
mod drop_path;
mod error;
mod explain;
#[cfg(feature = "flex")]
mod flex_kernels;
mod head;
mod ics_stem;
mod image_map;
mod input_spec;
mod jpm;
mod mlp;
pub mod onnx;
mod patch_embed;
mod pos_embed;
mod precision;
mod presets;
mod pretrained;
mod prompt_learner;
mod reid_model;
mod sie;
mod state_dict;
mod transreid;
mod vit;
mod weight_layout;

pub use attention::{Attention, AttentionConfig};
pub use attention_relevance::attention_relevance;
pub use attention_rollout::{attention_rollout, AttentionMapError, HeadFusion};
pub use batch_norm::BatchNorm2d;
pub use block::{Block, BlockConfig};
pub use checkpoint::{
    export_reference, load_checkpoint, load_checkpoint_with_input, save_checkpoint,
    save_checkpoint_with_input, save_checkpoint_with_metadata, CONFIG_METADATA_KEY,
};
pub use clip_checkpoint::{
    load_clip_reid_checkpoint, save_clip_reid_checkpoint, save_clip_reid_checkpoint_with_metadata,
    CLIP_REID_CONFIG_METADATA_KEY,
};
pub use clip_layout::{clip_openai_dict, ClipArchitecture, ClipLayout};
pub use clip_reid::{ClipReid, ClipReidConfig};
pub use clip_text::{ClipText, ClipTextConfig};
pub use clip_vision::{ClipVision, ClipVisionConfig, ClipVisionOutput};
pub use clip_weights::{
    clip_reid_state_dict, load_clip_pretrained, load_clip_reid, load_clip_text, load_clip_vision,
    prompt_token_embeddings,
};
pub use drop_path::drop_path;
pub use error::{ImportError, LabelError, ModelConfigError};
pub use explain::{
    gradient_maps, rollout_maps, ExplainError, ExplainMethod, ExplainTarget, Explainable,
    Explanation,
};
#[cfg(feature = "flex")]
pub use flex_kernels::{flex_kernels, set_flex_kernels, FlexKernels};
pub use head::BnNeck;
pub use ics_stem::{Ibn, IcsStem, IcsStemConfig};
pub use image_map::{image_map, ImageMapError};
pub use input_spec::{InputSpec, INPUT_METADATA_KEY};
pub use jpm::{shuffle_index, JpmBranch, JpmConfig, JpmError};
pub use mlp::{gelu_exact, quick_gelu, Activation, Mlp, MlpConfig};
pub use patch_embed::{PatchEmbed, PatchEmbedConfig};
pub use pos_embed::{resize_pos_embed, resize_pos_embed_grid};
pub use precision::Precision;
pub use presets::{PixelStats, VitPreset, HALF_STATS, IMAGENET_STATS};
pub use pretrained::{
    export_state_dict, load_backbone_dict, load_imagenet, load_pretrained, load_reference,
    load_reference_dict, model_path, reference_key, ImportOptions, ImportReport,
};
pub use prompt_learner::{
    PromptLearner, PromptLearnerConfig, PromptObject, PROMPT_CONTEXT, PROMPT_EOT, PROMPT_PREFIX,
    PROMPT_TOKENS,
};
pub use reid_model::{load_any_checkpoint, AnyReidConfig, AnyReidModel, ReidModel};
pub use sie::{SieConfig, SieMode};
pub use state_dict::{
    read_safetensors_metadata, read_state_dict, write_safetensors, CheckpointFile, HostTensor,
    StateDict,
};
pub use transreid::{NeckFeat, Probed, TrainOutput, TransReid, TransReidConfig};
pub use vit::{cls_of, VisionTransformer, VitConfig};
pub use weight_layout::{
    detect_layout, read_backbone, DetectedLayout, PretrainGrid, UnsupportedLayout, WeightKind,
    WeightLayout,
};
