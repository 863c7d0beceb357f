//! TransReID losses: (label-smoothed) cross-entropy, batch-hard triplet, center loss, and the
//! objective combining the global and JPM branches as the reference does.

mod center;
mod cross_entropy;
mod error;
mod objective;
mod triplet;

pub use center::center_loss;
pub use cross_entropy::cross_entropy;
pub use error::LossError;
pub use objective::{transreid_loss, ObjectiveConfig, ObjectiveOutput};
pub use triplet::{euclidean_dist, triplet_loss, TripletMargin, TripletOutput};
