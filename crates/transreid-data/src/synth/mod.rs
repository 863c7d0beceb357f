//! Synthetic re-identification data: real JPEG files in the Market-1501 layout whose identities
//! a small model can learn on CPU.

pub mod appearance;
pub mod camera_style;
pub mod config;
pub mod generate;
pub(crate) mod render;

pub use config::{SynthConfig, SynthSummary};
pub use generate::generate;
