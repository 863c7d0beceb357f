//! Helpers shared by the integration tests.

use std::collections::HashMap;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use transreid_loss::{transreid_loss, ObjectiveConfig};
use transreid_model::{
    reference_key, JpmConfig, SieConfig, SieMode, TransReid, TransReidConfig, VitPreset,
};

/// The training backend of the tests.
#[allow(dead_code)] // not every test binary uses it
pub type B = Autodiff<NdArray>;

/// Every parameter's gradient by its reference state-dict name, flattened in Burn's layout.
pub fn grads_by_name<A: AutodiffBackend>(
    model: &TransReid<A>,
    grads: &GradientsParams,
) -> HashMap<String, Vec<f32>> {
    let names: HashMap<ParamId, String> = model
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.tensor_id.unwrap(), reference_key(&s.full_path())))
        .collect();
    let mut visitor = CollectGrads {
        grads,
        names: &names,
        out: HashMap::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

struct CollectGrads<'a> {
    grads: &'a GradientsParams,
    names: &'a HashMap<ParamId, String>,
    out: HashMap<String, Vec<f32>>,
}

impl<A: AutodiffBackend> ModuleVisitor<A> for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        if let Some(g) = self.grads.get::<A::InnerBackend, D>(param.id) {
            let values = g.into_data().convert::<f32>().to_vec().unwrap();
            self.out.insert(self.names[&param.id].clone(), values);
        }
    }
}

/// The tiny model [`batch_loss`] runs on: 64x32 input, patch stride 16, 4 identities, camera
/// SIE over 3 cameras, JPM when `jpm`.
#[allow(dead_code)] // not every test binary uses it
pub fn batch_model_config(drop_path: f64, jpm: bool) -> TransReidConfig {
    let vit = VitPreset::Tiny
        .config([64, 32], [16, 16])
        .with_drop_path_rate(drop_path);
    TransReidConfig::new(vit, 4)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(3),
        )
        .with_jpm(jpm.then(JpmConfig::new))
}

/// The TransReID loss of a fixed PK batch (8 images of 64x32, 4 identities x 2, cameras 0..3)
/// on a model with camera SIE; `step` varies the pixels.
#[allow(dead_code)] // not every test binary uses it
pub fn batch_loss<A: AutodiffBackend>(model: &TransReid<A>, step: usize) -> Tensor<A, 1> {
    let device = model.base.cls_token.val().device();
    let n = 8;
    let pixels: Vec<f32> = (0..n * 3 * 64 * 32)
        .map(|i| ((i * 31 + step * 7) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let images = Tensor::<A, 4>::from_data(TensorData::new(pixels, [n, 3, 64, 32]), &device);
    let labels = vec![0i64, 0, 1, 1, 2, 2, 3, 3];
    let ints = |v: Vec<i64>| Tensor::<A, 1, Int>::from_data(TensorData::new(v, [n]), &device);
    let out = model.forward_train(images, Some(ints(vec![0, 1, 2, 0, 1, 2, 0, 1])), None);
    transreid_loss(
        &out.scores,
        &out.feats,
        ints(labels.clone()),
        &labels,
        &ObjectiveConfig::default(),
    )
    .unwrap()
    .total
}
