use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use serde::{Deserialize, Serialize};
use transreid_model::{reference_key, HostTensor, StateDict};

use super::loss_scale::scaled_gradients;
use super::LossScaler;

/// `SOLVER.*` settings of the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SolverConfig {
    /// `BASE_LR`.
    pub base_lr: f64,
    /// `MOMENTUM` (0.9), PyTorch semantics: dampening 0, no Nesterov.
    pub momentum: f64,
    /// `WEIGHT_DECAY` (1e-4).
    pub weight_decay: f64,
    /// `WEIGHT_DECAY_BIAS` (1e-4).
    pub weight_decay_bias: f64,
    /// `BIAS_LR_FACTOR` (2).
    pub bias_lr_factor: f64,
    /// `LARGE_FC_LR`: classifiers at `2 * base_lr` (off in every config).
    pub large_fc_lr: bool,
    /// Clip the global gradient norm to this positive value (not in the reference). Default:
    /// off.
    pub grad_clip_norm: Option<f64>,
}

impl SolverConfig {
    /// The reference's values for `base_lr`.
    pub fn new(base_lr: f64) -> Self {
        Self {
            base_lr,
            momentum: 0.9,
            weight_decay: 1e-4,
            weight_decay_bias: 1e-4,
            bias_lr_factor: 2.0,
            large_fc_lr: false,
            grad_clip_norm: None,
        }
    }

    /// The group of a parameter by its reference state-dict name (`make_optimizer`): a name
    /// containing `bias` gets `base_lr * bias_lr_factor` and `weight_decay_bias`; with
    /// `large_fc_lr`, `classifier*` gets `2 * base_lr`.
    pub fn group(&self, name: &str) -> ParamGroup {
        let mut group = ParamGroup {
            lr: self.base_lr,
            weight_decay: self.weight_decay,
        };
        if name.contains("bias") {
            group = ParamGroup {
                lr: self.base_lr * self.bias_lr_factor,
                weight_decay: self.weight_decay_bias,
            };
        }
        if self.large_fc_lr && name.contains("classifier") {
            group.lr = 2.0 * self.base_lr;
        }
        group
    }
}

/// One parameter's initial lr (what the schedule scales) and weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamGroup {
    /// Initial lr of the group.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
}

/// PyTorch's SGD with one group per parameter, as the reference builds it:
/// `g' = g + wd * p`; `buf = g'` on the first step, else `momentum * buf + g'`; `p -= lr * buf`.
/// Parameters without a gradient (frozen BNNeck biases, the unused last backbone block with JPM)
/// are skipped entirely: no decay, no momentum update.
///
/// With a [`LossScaler`] (f16 products), gradients are divided by the scale before anything
/// else, and a step whose gradients are not all finite is skipped.
pub struct Sgd<B: AutodiffBackend> {
    config: SolverConfig,
    /// Momentum buffers by reference parameter name, flattened.
    momentum: HashMap<String, Tensor<B::InnerBackend, 1>>,
    scaler: Option<LossScaler>,
}

impl<B: AutodiffBackend> Sgd<B> {
    /// A fresh optimiser.
    pub fn new(config: SolverConfig) -> Self {
        Self {
            config,
            momentum: HashMap::new(),
            scaler: None,
        }
    }

    /// Turns dynamic loss scaling on (or off with `None`), e.g. with a scaler restored from a
    /// saved state.
    pub fn set_loss_scaler(&mut self, scaler: Option<LossScaler>) {
        self.scaler = scaler;
    }

    /// The loss scaler, if scaling is on.
    pub fn loss_scaler(&self) -> Option<&LossScaler> {
        self.scaler.as_ref()
    }

    /// What to multiply the loss by before the backward pass: the scaler's scale, else 1.
    pub fn loss_scale(&self) -> f64 {
        self.scaler.map_or(1.0, |s| s.scale)
    }

    /// The settings.
    pub fn config(&self) -> &SolverConfig {
        &self.config
    }

    /// Gradients of `loss`, scaled by [`Self::loss_scale`] when loss scaling is on.
    pub fn gradients<M: AutodiffModule<B>>(
        &self,
        loss: Tensor<B, 1>,
        model: &M,
    ) -> GradientsParams {
        scaled_gradients(loss, model, self.scaler.as_ref())
    }

    /// One step. `group_lr` maps a group's initial lr to its lr in this epoch (the schedule).
    /// `grads` are of the loss times [`Self::loss_scale`]. Returns the model unchanged when the
    /// loss scaler rejects the gradients.
    pub fn step<M: AutodiffModule<B> + ModuleSnapshot<B>>(
        &mut self,
        model: M,
        grads: GradientsParams,
        group_lr: impl Fn(f64) -> f64,
    ) -> M {
        let config = self.config;
        let momentum = &mut self.momentum;
        let update = |name: &str, value: Tensor<B::InnerBackend, 1>, g| {
            let group = config.group(name);
            let g = decayed(g, &value, group.weight_decay);
            let buf = match momentum.remove(name) {
                Some(buf) => buf.mul_scalar(config.momentum) + g,
                None => g,
            };
            momentum.insert(name.to_string(), buf.clone());
            value - buf.mul_scalar(group_lr(group.lr))
        };
        step_with(&mut self.scaler, &config, model, grads, update)
    }

    /// The momentum buffers, for checkpoints (reference names, flattened).
    pub fn state(&self) -> StateDict {
        self.momentum
            .iter()
            .map(|(k, t)| {
                let data: Vec<f32> = t.clone().into_data().convert::<f32>().to_vec().unwrap();
                (k.clone(), HostTensor::new(vec![data.len()], data))
            })
            .collect()
    }

    /// Restores buffers saved by [`Self::state`].
    pub fn load_state(
        &mut self,
        state: &StateDict,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) {
        self.momentum = state
            .iter()
            .map(|(k, t)| {
                let len = t.data.len();
                (
                    k.clone(),
                    Tensor::from_data(TensorData::new(t.data.clone(), [len]), device),
                )
            })
            .collect();
    }
}

/// Each parameter's reference state-dict name (the same in every process, unlike its
/// `ParamId`).
pub fn param_names<B: Backend, M: ModuleSnapshot<B>>(model: &M) -> HashMap<ParamId, String> {
    model
        .collect(None, None, false)
        .into_iter()
        .filter_map(|s| s.tensor_id.map(|id| (id, reference_key(&s.full_path()))))
        .collect()
}

struct GradNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    squared: f64,
    backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.squared += g.square().sum().into_scalar().elem::<f64>();
        }
    }
}

/// Counts non-finite gradient elements on the device: one read-back per step.
struct NonFinite<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    count: Option<Tensor<B::InnerBackend, 1, Int>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NonFinite<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let bad = g.is_finite().bool_not().int().sum();
            self.count = Some(match self.count.take() {
                Some(count) => count + bad,
                None => bad,
            });
        }
    }
}

/// `g + weight_decay * value`: PyTorch's coupled weight decay.
pub(super) fn decayed<B: Backend>(
    g: Tensor<B, 1>,
    value: &Tensor<B, 1>,
    weight_decay: f64,
) -> Tensor<B, 1> {
    if weight_decay == 0.0 {
        g
    } else {
        g + value.clone().mul_scalar(weight_decay)
    }
}

/// One optimiser step: replaces every parameter that has a gradient with `update(reference
/// name, value, gradient)`, both flattened, the gradient divided by the loss scale and clipped.
/// The model comes back unchanged when the loss scaler rejects the gradients.
pub(super) fn step_with<B, M, U>(
    scaler: &mut Option<LossScaler>,
    config: &SolverConfig,
    model: M,
    grads: GradientsParams,
    update: U,
) -> M
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
    U: FnMut(
        &str,
        Tensor<B::InnerBackend, 1>,
        Tensor<B::InnerBackend, 1>,
    ) -> Tensor<B::InnerBackend, 1>,
{
    let Some(grad_scale) = prepare_step(scaler, config, &model, &grads) else {
        return model;
    };
    let names = param_names(&model);
    model.map(&mut UpdateMapper {
        grads,
        names,
        grad_scale,
        update,
    })
}

/// What every optimiser does before updating: the loss scaler's verdict on the gradients and
/// the global norm clipping. Returns what the gradients are multiplied by (clipping over loss
/// scale), or `None` when the scaler rejects the step.
fn prepare_step<B: AutodiffBackend, M: AutodiffModule<B>>(
    scaler: &mut Option<LossScaler>,
    config: &SolverConfig,
    model: &M,
    grads: &GradientsParams,
) -> Option<f64> {
    let loss_scale = scaler.map_or(1.0, |s| s.scale);
    if let Some(scaler) = scaler {
        let mut check = NonFinite::<B> { grads, count: None };
        model.visit(&mut check);
        let finite = check
            .count
            .is_none_or(|count| count.into_scalar().elem::<i64>() == 0);
        if !scaler.update(finite) {
            return None;
        }
    }
    let clip_scale = config.grad_clip_norm.map(|max_norm| {
        let mut norm = GradNorm::<B> {
            grads,
            squared: 0.0,
            backend: std::marker::PhantomData,
        };
        model.visit(&mut norm);
        let norm = norm.squared.sqrt() / loss_scale;
        if norm > max_norm {
            max_norm / (norm + 1e-6)
        } else {
            1.0
        }
    });
    Some(clip_scale.unwrap_or(1.0) / loss_scale)
}

/// See [`step_with`]; parameters without a gradient (frozen ones) are left as they are.
struct UpdateMapper<U> {
    grads: GradientsParams,
    names: HashMap<ParamId, String>,
    grad_scale: f64,
    update: U,
}

impl<B, U> ModuleMapper<B> for UpdateMapper<U>
where
    B: AutodiffBackend,
    U: FnMut(
        &str,
        Tensor<B::InnerBackend, 1>,
        Tensor<B::InnerBackend, 1>,
    ) -> Tensor<B::InnerBackend, 1>,
{
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let (Some(grad), Some(name)) = (
            self.grads.remove::<B::InnerBackend, D>(id),
            self.names.get(&id),
        ) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let is_require_grad = tensor.is_require_grad();
        let value = tensor.inner();
        let shape = value.shape();
        let n = shape.num_elements();
        let g = grad.mul_scalar(self.grad_scale).reshape([n]);
        let updated = (self.update)(name, value.reshape([n]), g).reshape(shape);
        let mut tensor = Tensor::from_inner(updated);
        if is_require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}
