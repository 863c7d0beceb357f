//! The optimiser of a run: the reference's SGD (TransReID) or Adam (CLIP-ReID).

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use serde::{Deserialize, Serialize};
use transreid_model::StateDict;

use super::{Adam, LossScaler, Sgd, SolverConfig};

/// Which optimiser a run steps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with momentum (TransReID's `SOLVER.OPTIMIZER_NAME: SGD`).
    #[default]
    Sgd,
    /// `torch.optim.Adam` with coupled weight decay (CLIP-ReID).
    Adam,
}

/// [`Sgd`] or [`Adam`], with their parameter groups from one [`SolverConfig`].
pub enum Optimizer<B: AutodiffBackend> {
    /// See [`Sgd`].
    Sgd(Sgd<B>),
    /// See [`Adam`].
    Adam(Adam<B>),
}

impl<B: AutodiffBackend> Optimizer<B> {
    /// A fresh optimiser of `kind`.
    pub fn new(kind: OptimizerKind, config: SolverConfig) -> Self {
        match kind {
            OptimizerKind::Sgd => Self::Sgd(Sgd::new(config)),
            OptimizerKind::Adam => Self::Adam(Adam::new(config)),
        }
    }

    /// Turns dynamic loss scaling on (or off with `None`).
    pub fn set_loss_scaler(&mut self, scaler: Option<LossScaler>) {
        match self {
            Self::Sgd(o) => o.set_loss_scaler(scaler),
            Self::Adam(o) => o.set_loss_scaler(scaler),
        }
    }

    /// The loss scaler, when scaling is on.
    pub fn loss_scaler(&self) -> Option<&LossScaler> {
        match self {
            Self::Sgd(o) => o.loss_scaler(),
            Self::Adam(o) => o.loss_scaler(),
        }
    }

    /// Gradients of `loss`, scaled by the loss scaler's scale when scaling is on.
    pub fn gradients<M: AutodiffModule<B>>(
        &self,
        loss: Tensor<B, 1>,
        model: &M,
    ) -> GradientsParams {
        match self {
            Self::Sgd(o) => o.gradients(loss, model),
            Self::Adam(o) => o.gradients(loss, model),
        }
    }

    /// One step; `group_lr` maps a group's initial lr to its lr in this epoch.
    pub fn step<M: AutodiffModule<B> + ModuleSnapshot<B>>(
        &mut self,
        model: M,
        grads: GradientsParams,
        group_lr: impl Fn(f64) -> f64,
    ) -> M {
        match self {
            Self::Sgd(o) => o.step(model, grads, group_lr),
            Self::Adam(o) => o.step(model, grads, group_lr),
        }
    }

    /// The buffers, by reference parameter name (see [`Sgd::state`], [`Adam::state`]).
    pub fn state(&self) -> StateDict {
        match self {
            Self::Sgd(o) => o.state(),
            Self::Adam(o) => o.state(),
        }
    }

    /// Restores buffers saved by [`Self::state`]; returns the names of incomplete entries.
    pub fn load_state(
        &mut self,
        state: &StateDict,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> Vec<String> {
        match self {
            Self::Sgd(o) => {
                o.load_state(state, device);
                Vec::new()
            }
            Self::Adam(o) => o.load_state(state, device),
        }
    }
}
