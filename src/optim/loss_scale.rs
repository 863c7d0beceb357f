use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// Dynamic loss scaling for f16 products, with PyTorch `GradScaler`'s defaults: the loss is
/// multiplied by `scale` before the backward pass so that small gradients survive f16, and the
/// optimiser divides it out again. A step whose gradients hold an inf or NaN is skipped and the
/// scale halved; after `growth_interval` good steps in a row the scale doubles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current scale.
    pub scale: f64,
    /// Multiplier after `growth_interval` good steps (2).
    pub growth_factor: f64,
    /// Multiplier after an overflow (0.5).
    pub backoff_factor: f64,
    /// Good steps before the scale grows (2000).
    pub growth_interval: usize,
    /// Good steps since the scale last changed.
    pub good_steps: usize,
    /// Steps skipped for overflowing gradients, over the whole run.
    pub skipped_steps: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            good_steps: 0,
            skipped_steps: 0,
        }
    }
}

impl LossScaler {
    /// Records whether a step's scaled gradients were all finite, adjusts the scale, and
    /// returns whether the step may be applied.
    pub fn update(&mut self, finite: bool) -> bool {
        if !finite {
            self.scale *= self.backoff_factor;
            self.good_steps = 0;
            self.skipped_steps += 1;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps == self.growth_interval {
            self.scale *= self.growth_factor;
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_and_skips_good_steps_grow() {
        let mut scaler = LossScaler {
            growth_interval: 3,
            ..LossScaler::default()
        };
        assert!(scaler.update(true));
        assert!(scaler.update(true));
        assert!(!scaler.update(false));
        assert_eq!(
            (scaler.scale, scaler.good_steps, scaler.skipped_steps),
            (32768.0, 0, 1)
        );
        for _ in 0..2 {
            assert!(scaler.update(true));
        }
        assert_eq!(scaler.scale, 32768.0, "two good steps are not enough");
        assert!(scaler.update(true));
        assert_eq!((scaler.scale, scaler.good_steps), (65536.0, 0));
    }
}

/// Gradients of `loss`, scaled by `scaler`'s scale when loss scaling is on.
pub(crate) fn scaled_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    loss: Tensor<B, 1>,
    model: &M,
    scaler: Option<&LossScaler>,
) -> GradientsParams {
    let loss = match scaler {
        Some(scaler) => loss.mul_scalar(scaler.scale),
        None => loss,
    };
    GradientsParams::from_grads(loss.backward(), model)
}
