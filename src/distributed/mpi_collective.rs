//! [`Collective`] over MPI (Open MPI, MPICH; rsmpi): one process per device, started by
//! `mpirun` or `srun`.

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::collective::{Collective, CollectiveError};

/// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun` with PMI).
pub fn launched_by_mpi() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|var| std::env::var_os(var).is_some())
}

/// The MPI world communicator. MPI is finalised when this is dropped.
pub struct MpiCollective {
    world: SimpleCommunicator,
    local_rank: usize,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
}

impl MpiCollective {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<Self, CollectiveError> {
        let universe = mpi::initialize()
            .ok_or_else(|| CollectiveError::Engine("MPI is already initialised".into()))?;
        let world = universe.world();
        // The rank among the processes of this node: which local device to use.
        let local_rank = [
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "MPI_LOCALRANKID",
            "SLURM_LOCALID",
        ]
        .iter()
        .find_map(|var| std::env::var(var).ok()?.parse().ok())
        .unwrap_or(world.rank() as usize);
        Ok(Self {
            world,
            local_rank,
            _universe: universe,
        })
    }

    /// This process's rank among the processes of its node.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), CollectiveError> {
        let send = values.to_vec();
        // MPI's default error handler aborts the whole job on a failure.
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<(), CollectiveError> {
        let send = values.to_vec();
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CollectiveError> {
        let mut all = vec![0u64; self.world()];
        self.world.all_gather_into(&value, &mut all[..]);
        Ok(all)
    }
}
