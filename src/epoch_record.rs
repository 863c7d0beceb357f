//! One epoch of a run as `metrics.csv` and the plots read it.

use serde::{Deserialize, Serialize};
use transreid_eval::ReidMetrics;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean total loss.
    pub loss: f64,
    /// Training accuracy of the global branch.
    pub accuracy: f64,
    /// Weight-group lr of the epoch.
    pub lr: f64,
    /// Images per second.
    pub images_per_second: f64,
    /// Evaluation, when the epoch was evaluated.
    pub metrics: Option<ReidMetrics>,
}

impl EpochRecord {
    /// The header line of `metrics.csv`.
    pub const CSV_HEADER: &str =
        "epoch,loss,accuracy,lr,images_per_second,map,minp,rank1,rank5,rank10";

    /// This record as a line of `metrics.csv`.
    pub fn csv_row(&self) -> String {
        let m = self.metrics.as_ref();
        let metric =
            |f: &dyn Fn(&ReidMetrics) -> f64| m.map_or(String::new(), |m| format!("{:.6}", f(m)));
        format!(
            "{},{:.6},{:.6},{:.8},{:.1},{},{},{},{},{}",
            self.epoch,
            self.loss,
            self.accuracy,
            self.lr,
            self.images_per_second,
            metric(&|m| m.map),
            metric(&|m| m.minp),
            metric(&|m| m.rank1().unwrap_or(0.0)),
            metric(&|m| m.rank5().unwrap_or(0.0)),
            metric(&|m| m.rank10().unwrap_or(0.0)),
        )
    }
}
