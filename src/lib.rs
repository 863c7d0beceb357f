//! TransReID object re-identification: the model, data, losses and evaluation crates wired
//! together. See `docs/api.md`.

pub mod allocator;
pub mod backend;
pub mod bench;
pub mod bench_clip_reid;
pub mod clip_device_check;
pub mod config;
pub mod device_check;
pub mod distributed;
pub mod embedder;
pub mod epoch_record;
#[cfg(feature = "plots")]
pub mod explain_picture;
pub mod explainer;
pub mod file_name;
pub mod image_files;
pub mod inference;
pub mod input_normalization;
pub mod onnx_export;
pub mod optim;
pub mod output_path;
#[cfg(feature = "plots")]
pub mod plot;
pub mod progress;
#[cfg(feature = "plots")]
pub mod ranked_list;
pub mod search;
pub mod train;

pub use transreid_data as data;
pub use transreid_eval as eval;
pub use transreid_loss as loss;
pub use transreid_model as model;
