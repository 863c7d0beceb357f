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

impl CosineWarmup {
    /// CLIP-ReID's first-stage schedule (`create_scheduler(optimizer, epochs, lr_min = 1e-6,
    /// warmup_lr_init = 1e-5, warmup_t = 5)`): from 1e-5 up to `base_lr` over 5 epochs, then
    /// the cosine down to 1e-6 at `max_epochs`.
    pub fn clip_reid_prompts(base_lr: f64, max_epochs: usize) -> Self {
        Self {
            base_lr,
            warmup_epochs: 5,
            max_epochs,
            warmup_factor: 1e-5 / base_lr,
            min_factor: 1e-6 / base_lr,
        }
    }
}

/// The reference's `WarmupMultiStepLR` with linear warmup, stepped once at the start of each
/// epoch (CLIP-ReID's second stage): epoch `e` (1-based; 0 is the value after construction)
/// uses `group_lr * w(e) * gamma^k`, `k` the number of milestones `<= e`, and
/// `w(e) = warmup_factor * (1 - e / warmup_epochs) + e / warmup_epochs` before
/// `warmup_epochs`, else 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupMultiStep {
    /// Epochs at which the lr is multiplied by `gamma` (`STEPS`, [30, 50]).
    pub milestones: Vec<usize>,
    /// `GAMMA` (0.1).
    pub gamma: f64,
    /// `WARMUP_FACTOR` (0.1).
    pub warmup_factor: f64,
    /// `WARMUP_ITERS`, in epochs (10).
    pub warmup_epochs: usize,
}

impl WarmupMultiStep {
    /// CLIP-ReID's ViT second stage: steps at 30 and 50, gamma 0.1, warmup factor 0.1 over 10
    /// epochs.
    pub fn clip_reid() -> Self {
        Self {
            milestones: vec![30, 50],
            gamma: 0.1,
            warmup_factor: 0.1,
            warmup_epochs: 10,
        }
    }

    /// The lr of a group with initial lr `group_lr` during epoch `epoch`.
    pub fn lr(&self, epoch: usize, group_lr: f64) -> f64 {
        let warmup = if epoch < self.warmup_epochs {
            let alpha = epoch as f64 / self.warmup_epochs as f64;
            self.warmup_factor * (1.0 - alpha) + alpha
        } else {
            1.0
        };
        let decays = self.milestones.iter().filter(|&&m| m <= epoch).count();
        group_lr * warmup * self.gamma.powi(decays as i32)
    }
}

/// Which per-epoch schedule a run follows; both warm up over the run's `warmup_epochs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleKind {
    /// TransReID's [`CosineWarmup`] (warmup from 0.01x, cosine down to 0.002x the base lr).
    #[default]
    Cosine,
    /// CLIP-ReID's [`WarmupMultiStep`].
    MultiStep {
        /// Epochs at which the lr is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// The decay at each milestone.
        gamma: f64,
        /// Warmup start over the base lr.
        warmup_factor: f64,
    },
}

impl ScheduleKind {
    /// CLIP-ReID's second stage: steps at 30 and 50 (x0.1), warmup from 0.1x.
    pub fn clip_reid() -> Self {
        let s = WarmupMultiStep::clip_reid();
        Self::MultiStep {
            milestones: s.milestones,
            gamma: s.gamma,
            warmup_factor: s.warmup_factor,
        }
    }

    /// The schedule of a run of `max_epochs` from `base_lr`.
    pub fn build(&self, base_lr: f64, max_epochs: usize, warmup_epochs: usize) -> LrSchedule {
        match self {
            Self::Cosine => LrSchedule::Cosine(CosineWarmup {
                warmup_epochs,
                ..CosineWarmup::new(base_lr, max_epochs)
            }),
            Self::MultiStep {
                milestones,
                gamma,
                warmup_factor,
            } => LrSchedule::MultiStep(WarmupMultiStep {
                milestones: milestones.clone(),
                gamma: *gamma,
                warmup_factor: *warmup_factor,
                warmup_epochs,
            }),
        }
    }
}

/// A built [`ScheduleKind`].
#[derive(Debug, Clone, PartialEq)]
pub enum LrSchedule {
    /// See [`CosineWarmup`].
    Cosine(CosineWarmup),
    /// See [`WarmupMultiStep`].
    MultiStep(WarmupMultiStep),
}

impl LrSchedule {
    /// The lr of a group with initial lr `group_lr` during epoch `epoch`.
    pub fn lr(&self, epoch: usize, group_lr: f64) -> f64 {
        match self {
            Self::Cosine(s) => s.lr(epoch, group_lr),
            Self::MultiStep(s) => s.lr(epoch, group_lr),
        }
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

    #[test]
    fn clip_reid_values() {
        // The reference's person configuration: stage 1 at 3.5e-4 over 120 epochs, stage 2 at
        // 5e-6 (biases 1e-5).
        let s1 = CosineWarmup::clip_reid_prompts(3.5e-4, 120);
        assert!((s1.lr(0, 3.5e-4) - 1e-5).abs() < 1e-15);
        assert!((s1.lr(1, 3.5e-4) - 7.8e-5).abs() < 1e-15);
        assert!((s1.lr(120, 3.5e-4) - 1e-6).abs() < 1e-15);
        let s2 = WarmupMultiStep::clip_reid();
        for (epoch, want) in [
            (1, 9.5e-7),
            (9, 4.55e-6),
            (10, 5e-6),
            (29, 5e-6),
            (30, 5e-7),
            (50, 5e-8),
        ] {
            assert!((s2.lr(epoch, 5e-6) - want).abs() < 1e-18, "epoch {epoch}");
        }
        assert!((s2.lr(10, 1e-5) - 1e-5).abs() < 1e-18);
    }
}
