//! The checks a job passes before anything is loaded or written.

use transreid_data::{PkSampler, Shard, Split};
use transreid_model::read_safetensors_metadata;

use super::error::TrainError;
use super::settings::{ModelSettings, Setting, TrainJob};
use super::state::{check_state, config_key};
use super::STATE_FILE;
use crate::distributed::{check_same_fields_everywhere, fingerprint_bytes, Collective};
use crate::inference::check_item_labels;

/// Checks, without loading any weights, that `job` can run on `world` ranks: the batch splits
/// into whole identities per rank and micro-batch; every camera and view id of the dataset
/// fits the model's SIE table; a fresh run's folder holds no state; a resumed run's state
/// matches the job's model and settings and has epochs left before `epochs` and `stop_after`;
/// the next epoch draws at least one whole step. Returns the number of epochs already done.
/// [`super::train`] checks the same; callers use this to refuse before they change anything.
pub fn check_job<C: ModelSettings, O: Setting>(
    job: &TrainJob<'_, C, O>,
    world: usize,
) -> Result<usize, TrainError> {
    let settings = job.settings;
    if !job.model_config.trains_in(settings.precision) {
        return Err(TrainError::Precision {
            precision: settings.precision,
        });
    }
    let shards = world * settings.accumulate.max(1);
    if !settings
        .batch_size
        .is_multiple_of(shards * settings.instances)
    {
        return Err(TrainError::BatchSplit {
            batch_size: settings.batch_size,
            shards,
            instances: settings.instances,
        });
    }
    let splits = [&job.dataset.train, &job.dataset.query, &job.dataset.gallery];
    for (split, items) in Split::ALL.into_iter().zip(splits) {
        check_item_labels(job.model_config.sie(), items)
            .map_err(|source| TrainError::Labels { split, source })?;
    }
    let state_path = job.run_dir.join(STATE_FILE);
    let done = match (job.resume, state_path.exists()) {
        (true, true) => {
            let metadata = read_safetensors_metadata(&state_path)?;
            check_state(&state_path, &metadata, job.model_config, job.settings)?
                .records
                .len()
        }
        (true, false) => return Err(TrainError::NothingToResume { path: state_path }),
        (false, true) => return Err(TrainError::RunExists { path: state_path }),
        (false, false) => 0,
    };
    let run_dir = job.run_dir.to_path_buf();
    let epochs = job.settings.epochs;
    if job.resume && done == epochs {
        return Err(TrainError::RunFinished { run_dir, epochs });
    }
    if done > epochs {
        return Err(TrainError::EpochsBelowDone {
            run_dir,
            epochs,
            done,
        });
    }
    if let Some(stop_after) = job.stop_after.filter(|&s| s <= done) {
        return Err(TrainError::StopAfterPassed {
            run_dir,
            stop_after,
            done,
        });
    }
    let ids_per_block = settings.batch_size / shards / settings.instances.max(1);
    if job.dataset.num_train_pids < ids_per_block {
        return Err(TrainError::TooFewIdentities {
            identities: job.dataset.num_train_pids,
            ids_per_block,
            batch_size: settings.batch_size,
            instances: settings.instances,
            shards,
        });
    }
    // The loader draws the same blocks (one rank's share of a step each, incomplete steps
    // dropped).
    let sampler = PkSampler::from_items(
        &job.dataset.train,
        settings.batch_size / shards,
        settings.instances,
    )?;
    let epoch = done + 1;
    let shard = Shard {
        index: 0,
        count: shards,
    };
    if sampler
        .shard_blocks(settings.seed, epoch as u64, shard)
        .is_empty()
    {
        return Err(no_steps(job, epoch, shards));
    }
    Ok(done)
}

/// Fails unless every rank runs the same model configuration and training settings (the
/// loader's worker count aside), naming the settings that differ by their configuration keys.
/// Every rank of the job must call it.
pub fn check_ranks_agree<C: ModelSettings, O: Setting>(
    job: &TrainJob<'_, C, O>,
    collective: &dyn Collective,
) -> Result<(), TrainError> {
    let hash = |value: &serde_json::Value| fingerprint_bytes(value.to_string().as_bytes());
    let object = |value: serde_json::Value| match value {
        serde_json::Value::Object(map) => map,
        _ => Default::default(),
    };
    let model = object(serde_json::to_value(job.model_config).expect("config serialises"));
    let settings = job.settings.without_workers();
    let settings = object(serde_json::to_value(&settings).expect("settings serialise"));
    let fields: Vec<(String, u64)> = model
        .iter()
        .map(|(key, value)| (format!("model.{key}"), hash(value)))
        .chain(
            settings
                .iter()
                .map(|(key, value)| (config_key(key), hash(value))),
        )
        .collect();
    check_same_fields_everywhere(collective, "the run's settings", &fields)?;
    Ok(())
}

pub(super) fn no_steps<C, O>(job: &TrainJob<'_, C, O>, epoch: usize, shards: usize) -> TrainError {
    TrainError::NoSteps {
        epoch,
        identities: job.dataset.num_train_pids,
        batch_size: job.settings.batch_size,
        shards,
    }
}
