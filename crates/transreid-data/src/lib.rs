//! Data pipeline of TransReID: dataset parsing (Market-1501, DukeMTMC-reID, MSMT17,
//! Occluded-Duke, VeRi-776, VehicleID, custom), the reference's train and test transforms, the
//! PK identity sampler, a multi-threaded loader producing host batches, and synthetic data.
//!
//! Nothing here depends on a tensor library: batches are `Vec<f32>` in NCHW order plus labels.
//!
//! ```
//! use transreid_data::synth::{generate, SynthConfig};
//! use transreid_data::{load_dataset, DatasetKind, LoadOptions, LoaderConfig, TrainLoader};
//! use transreid_data::{TrainTransform, TransformConfig};
//!
//! # fn main() -> Result<(), transreid_data::DataError> {
//! let dir = tempfile::tempdir().unwrap();
//! generate(&SynthConfig { train_ids: 8, test_ids: 4, ..SynthConfig::new(dir.path()) })?;
//! let dataset = load_dataset(DatasetKind::Market1501, dir.path(), &LoadOptions::default())?;
//! println!("{}", dataset.stats());
//!
//! let transform = TrainTransform::new(&TransformConfig::person())?;
//! let loader = TrainLoader::from_dataset(&dataset, 16, 4, transform, LoaderConfig::default())?;
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.shape, [16, 3, 256, 128]);
//!     assert_eq!(batch.images.len(), 16 * 3 * 256 * 128);
//! }
//! # Ok(())
//! # }
//! ```

pub mod dataset;
pub mod datasets;
pub mod decode;
pub mod error;
pub mod item;
pub mod kind;
pub mod load;
pub mod loader;
pub mod options;
pub mod sampler;
pub mod seed;
pub mod stats;
pub mod synth;
#[cfg(test)]
mod test_fixtures;
pub mod transform;

pub use dataset::{LoadReport, ReidDataset, SplitCounts};
pub use datasets::custom::IMAGE_EXTENSIONS;
pub use datasets::name_pattern::{labels_from_name, NameLabels, PidCam};
pub use decode::decode_rgb;
pub use error::{DataError, Result, WriteAction};
pub use item::{ReidItem, Split, NO_VIEW_LABEL};
pub use kind::DatasetKind;
pub use load::load_dataset;
pub use loader::batch_stream::BatchStream;
pub use loader::config::LoaderConfig;
pub use loader::eval_loader::EvalLoader;
pub use loader::host_batch::HostBatch;
pub use loader::train_loader::TrainLoader;
pub use options::{ImageCheck, LoadOptions, VehicleIdTestSize};
pub use sampler::{PkSampler, Shard};
pub use seed::{derive_rng, derive_seed, RngPurpose};
pub use stats::{DatasetStats, SplitStats};
pub use synth::{SynthConfig, SynthSummary};
pub use transform::config::{ImageSize, Normalization, TransformConfig};
pub use transform::random_erasing::{RandomErasing, Rect};
pub use transform::resize::{resize_rgb, Interpolation};
pub use transform::test_transform::TestTransform;
pub use transform::train_transform::{TrainAugmentation, TrainTransform};
