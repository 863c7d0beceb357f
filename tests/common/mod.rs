//! Helpers shared by the integration tests.

use std::collections::HashMap;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use transreid_model::{reference_key, TransReid};

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
