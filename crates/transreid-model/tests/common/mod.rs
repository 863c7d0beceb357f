//! Helpers shared by the model crate's integration tests.
#![allow(dead_code)] // not every test binary uses every helper

use burn::prelude::*;
use transreid_model::{JpmConfig, SieConfig, SieMode, TrainOutput, TransReidConfig, VitPreset};

/// A tiny TransReID (64x32 input, stride 12, 7 classes, no drop path).
pub fn tiny(jpm: bool, sie: SieMode) -> TransReidConfig {
    let vit = VitPreset::Tiny
        .config([64, 32], [12, 12])
        .with_drop_path_rate(0.0);
    TransReidConfig::new(vit, 7)
        .with_sie(
            SieConfig::new()
                .with_mode(sie)
                .with_camera_num(3)
                .with_view_num(2),
        )
        .with_jpm(jpm.then(JpmConfig::new))
}

pub fn images<B: Backend>(batch: usize, h: usize, w: usize, device: &B::Device) -> Tensor<B, 4> {
    let n = batch * 3 * h * w;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(data, [batch, 3, h, w]), device)
}

pub fn labels<B: Backend>(values: &[i64], device: &B::Device) -> Option<Tensor<B, 1, Int>> {
    Some(Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        device,
    ))
}

/// A loss touching every training output: the sum of their squares.
pub fn squared_sum<B: Backend>(out: TrainOutput<B>) -> Tensor<B, 1> {
    out.scores
        .into_iter()
        .chain(out.feats)
        .map(|t| t.powf_scalar(2.0).sum())
        .reduce(|a, b| a + b)
        .unwrap()
}

pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}
