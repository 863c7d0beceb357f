use serde::{Deserialize, Serialize};

/// The reference's per-epoch schedule (timm `CosineLRScheduler` as `create_scheduler` builds it):
///
/// - `e < warmup`: `lr = w0 + e * (b - w0) / warmup` with `w0 = warmup_factor * base_lr`;
/// - otherwise: `lr = lmin + 0.5 * (b - lmin) * (1 + cos(pi * e / max_epochs))` with
///   `lmin = min_factor * base_lr` (the cosine is not shifted by the warmup).
///
/// `b` is a parameter group's own initial lr (`base_lr`, or `2 * base_lr` for biases), while
/// `w0` and `lmin` are scalars shared by every group. Epoch 0 is the value right after
/// construction (`w0`); training epoch `e` (1-based) uses `lr(e)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineWarmup {
    /// `SOLVER.BASE_LR`.
    pub base_lr: f64,
    /// `SOLVER.WARMUP_EPOCHS` (5).
    pub warmup_epochs: usize,
    /// `SOLVER.MAX_EPOCHS` (120).
    pub max_epochs: usize,
    /// Warmup start over `base_lr` (0.01).
    pub warmup_factor: f64,
    /// Cosine floor over `base_lr` (0.002).
    pub min_factor: f64,
}

impl CosineWarmup {
    /// The reference's schedule for `base_lr` over `max_epochs`.
    pub fn new(base_lr: f64, max_epochs: usize) -> Self {
        Self {
            base_lr,
            warmup_epochs: 5,
            max_epochs,
            warmup_factor: 0.01,
            min_factor: 0.002,
        }
    }

    /// The lr of a group with initial lr `group_lr` during epoch `epoch`.
    pub fn lr(&self, epoch: usize, group_lr: f64) -> f64 {
        let w0 = self.warmup_factor * self.base_lr;
        if epoch < self.warmup_epochs {
            return w0 + epoch as f64 * (group_lr - w0) / self.warmup_epochs as f64;
        }
        let lmin = self.min_factor * self.base_lr;
        let t = epoch as f64 / self.max_epochs as f64;
        lmin + 0.5 * (group_lr - lmin) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_values() {
        let s = CosineWarmup::new(0.008, 120);
        assert!((s.lr(0, 0.008) - 8e-5).abs() < 1e-15);
        assert!((s.lr(1, 0.008) - 0.001664).abs() < 1e-12);
        assert!((s.lr(1, 0.016) - 0.003264).abs() < 1e-12);
        assert!((s.lr(120, 0.016) - 1.6e-5).abs() < 1e-15);
    }
}
