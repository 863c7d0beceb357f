use std::collections::HashMap;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use transreid_model::{HostTensor, StateDict};

use super::loss_scale::scaled_gradients;
use super::sgd::{decayed, step_with};
use super::{LossScaler, SolverConfig};

/// `torch.optim.Adam` with its defaults (betas 0.9 / 0.999, eps 1e-8) and one group per
/// parameter, as CLIP-ReID builds its optimisers: each group's lr and weight decay come from
/// [`SolverConfig::group`] (biases at `bias_lr_factor` times the lr), the decay is coupled
/// (added to the gradient, not AdamW's), and the moments are bias-corrected by each
/// parameter's own step count. `momentum` of the configuration is not used. Parameters without
/// a gradient (frozen ones, the text side in the second stage) are skipped entirely.
///
/// With a [`LossScaler`], gradients are divided by the scale first, and a step whose gradients
/// are not all finite is skipped.
pub struct Adam<B: AutodiffBackend> {
    config: SolverConfig,
    moments: HashMap<String, Moments<B::InnerBackend>>,
    scaler: Option<LossScaler>,
}

/// The moment estimates of one parameter, flattened.
struct Moments<B: Backend> {
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
    step: u32,
}

/// Decay of the first moment.
pub const ADAM_BETA1: f64 = 0.9;
/// Decay of the second moment.
pub const ADAM_BETA2: f64 = 0.999;
/// Added to the denominator.
pub const ADAM_EPS: f64 = 1e-8;

impl<B: AutodiffBackend> Adam<B> {
    /// A fresh optimiser.
    pub fn new(config: SolverConfig) -> Self {
        Self {
            config,
            moments: HashMap::new(),
            scaler: None,
        }
    }

    /// Turns dynamic loss scaling on (or off with `None`).
    pub fn set_loss_scaler(&mut self, scaler: Option<LossScaler>) {
        self.scaler = scaler;
    }

    /// The loss scaler, when scaling is on.
    pub fn loss_scaler(&self) -> Option<&LossScaler> {
        self.scaler.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &SolverConfig {
        &self.config
    }

    /// Gradients of `loss`, scaled by the loss scaler's scale when scaling is on.
    pub fn gradients<M: AutodiffModule<B>>(
        &self,
        loss: Tensor<B, 1>,
        model: &M,
    ) -> GradientsParams {
        scaled_gradients(loss, model, self.scaler.as_ref())
    }

    /// One step; `group_lr` maps a group's initial lr to its lr in this epoch (the schedule).
    /// Returns the model unchanged when the loss scaler rejects the gradients.
    pub fn step<M: AutodiffModule<B> + ModuleSnapshot<B>>(
        &mut self,
        model: M,
        grads: GradientsParams,
        group_lr: impl Fn(f64) -> f64,
    ) -> M {
        let config = self.config;
        let moments = &mut self.moments;
        let update = |name: &str, value: Tensor<B::InnerBackend, 1>, g| {
            let group = config.group(name);
            let g: Tensor<B::InnerBackend, 1> = decayed(g, &value, group.weight_decay);
            let m = match moments.remove(name) {
                Some(m) => Moments {
                    exp_avg: m.exp_avg.mul_scalar(ADAM_BETA1)
                        + g.clone().mul_scalar(1.0 - ADAM_BETA1),
                    exp_avg_sq: m.exp_avg_sq.mul_scalar(ADAM_BETA2)
                        + g.square().mul_scalar(1.0 - ADAM_BETA2),
                    step: m.step + 1,
                },
                None => Moments {
                    exp_avg: g.clone().mul_scalar(1.0 - ADAM_BETA1),
                    exp_avg_sq: g.square().mul_scalar(1.0 - ADAM_BETA2),
                    step: 1,
                },
            };
            let correction1 = 1.0 - ADAM_BETA1.powi(m.step as i32);
            let correction2 = 1.0 - ADAM_BETA2.powi(m.step as i32);
            let denom = m
                .exp_avg_sq
                .clone()
                .sqrt()
                .div_scalar(correction2.sqrt())
                .add_scalar(ADAM_EPS);
            let step_size = group_lr(group.lr) / correction1;
            let updated = value - m.exp_avg.clone().div(denom).mul_scalar(step_size);
            moments.insert(name.to_string(), m);
            updated
        };
        step_with(&mut self.scaler, &config, model, grads, update)
    }

    /// The moments, for checkpoints: `{name}.exp_avg`, `{name}.exp_avg_sq` (flattened) and
    /// `{name}.step` (one value) by reference parameter name.
    pub fn state(&self) -> StateDict {
        let host = |t: &Tensor<B::InnerBackend, 1>| {
            let data: Vec<f32> = t.clone().into_data().convert::<f32>().to_vec().unwrap();
            HostTensor::new(vec![data.len()], data)
        };
        let mut state = StateDict::new();
        for (name, m) in &self.moments {
            state.insert(format!("{name}.exp_avg"), host(&m.exp_avg));
            state.insert(format!("{name}.exp_avg_sq"), host(&m.exp_avg_sq));
            state.insert(
                format!("{name}.step"),
                HostTensor::new(vec![1], vec![m.step as f32]),
            );
        }
        state
    }

    /// Restores moments saved by [`Self::state`]; entries without all three parts are ignored
    /// and named in the returned list.
    pub fn load_state(
        &mut self,
        state: &StateDict,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> Vec<String> {
        let tensor = |t: &HostTensor| {
            Tensor::from_data(TensorData::new(t.data.clone(), [t.data.len()]), device)
        };
        let mut incomplete = Vec::new();
        self.moments.clear();
        for key in state.keys() {
            let Some(name) = key.strip_suffix(".step") else {
                continue;
            };
            let part = |p: &str| state.get(&format!("{name}.{p}"));
            match (part("exp_avg"), part("exp_avg_sq"), state[key].data.first()) {
                (Some(m), Some(v), Some(&step)) => {
                    let moments = Moments {
                        exp_avg: tensor(m),
                        exp_avg_sq: tensor(v),
                        step: step as u32,
                    };
                    self.moments.insert(name.to_string(), moments);
                }
                _ => incomplete.push(name.to_string()),
            }
        }
        incomplete
    }
}
