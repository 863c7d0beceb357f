//! Image transforms of the reference (`datasets/make_dataloader.py`).

pub mod config;
pub mod random_erasing;
pub mod resize;
pub mod test_transform;
pub mod train_transform;
