//! TransReID losses: (label-smoothed) cross-entropy, batch-hard triplet, center loss, and the
//! objective combining the global and JPM branches as the reference does; CLIP-ReID's
//! supervised contrastive loss and its second-stage objective.

mod center;
mod clip_reid_objective;
mod cross_entropy;
mod error;
mod objective;
mod supcon;
mod triplet;

pub use center::center_loss;
pub use clip_reid_objective::{clip_reid_loss, ClipReidObjectiveConfig, ClipReidObjectiveOutput};
pub use cross_entropy::cross_entropy;
pub use error::LossError;
pub use objective::{transreid_loss, ObjectiveConfig, ObjectiveOutput};
pub use supcon::supcon_loss;
pub use triplet::{euclidean_dist, triplet_loss, TripletMargin, TripletOutput};
