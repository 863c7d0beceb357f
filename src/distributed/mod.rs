//! Data-parallel training: one process per device, gradients averaged over the processes after
//! every step, behind the [`Collective`] trait (MPI with the `mpi` feature; a single process
//! otherwise). Gradient accumulation splits a step into micro-batches on one device with the
//! same arithmetic. See `docs/distributed.md`.

mod collective;
mod fingerprint;
mod gradients;
#[cfg(feature = "mpi")]
mod mpi_collective;
mod watchdog;

pub use collective::{Collective, CollectiveError, SingleProcess};
pub use fingerprint::{
    check_same_everywhere, check_same_fields_everywhere, fingerprint_bytes, weights_fingerprint,
};
pub use gradients::{average_gradients, mean_gradients, DEFAULT_BUCKET_BYTES};
#[cfg(feature = "mpi")]
pub use mpi_collective::{launched_by_mpi, MpiCollective};
pub use watchdog::Watchdog;
