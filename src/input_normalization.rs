//! The input normalisation to embed a checkpoint's images with, and where it came from, so that
//! nothing is guessed silently.

use std::fmt;
use std::path::{Path, PathBuf};

use transreid_data::Normalization;
use transreid_model::InputSpec;

use crate::config::{ConfigError, RunConfig};

/// The run configuration beside an older checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "the checkpoint records no input normalisation and the run configuration beside it cannot \
     be read (or give --normalization): {source}"
)]
pub struct NormalizationError {
    /// Why the configuration cannot be read.
    #[source]
    pub source: ConfigError,
}

/// The run folder's copy of the configuration a run was started with.
pub const RUN_CONFIG_FILE: &str = "config.toml";

/// Where an input normalisation came from.
#[derive(Debug, Clone, PartialEq)]
pub enum NormalizationSource {
    /// Given by the caller (`--normalization`).
    Given,
    /// The checkpoint's own metadata.
    Checkpoint,
    /// The `config.toml` of the run folder holding a checkpoint written without it.
    RunConfig(PathBuf),
    /// Neither the checkpoint nor its folder says: mean and std 0.5 (every ViT config of the
    /// reference) is used.
    Default,
}

/// An input normalisation and its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedNormalization {
    /// The normalisation.
    pub normalization: Normalization,
    /// Its origin.
    pub source: NormalizationSource,
}

impl ResolvedNormalization {
    /// A warning to show the user when the normalisation was not recorded with the weights.
    pub fn warning(&self, checkpoint: &Path) -> Option<String> {
        match &self.source {
            NormalizationSource::Default => Some(format!(
                "{} does not record its input normalisation (written by an older version): \
                 using {self}; give --normalization imagenet if it was trained with ImageNet \
                 statistics",
                checkpoint.display()
            )),
            NormalizationSource::RunConfig(path) => Some(format!(
                "{} does not record its input normalisation: using {self} from {}",
                checkpoint.display(),
                path.display()
            )),
            NormalizationSource::Given | NormalizationSource::Checkpoint => None,
        }
    }
}

impl fmt::Display for ResolvedNormalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Normalization { mean, std } = self.normalization;
        write!(f, "mean {mean:?} std {std:?}")
    }
}

/// Resolves the normalisation of a checkpoint whose stored spec is `stored`: `given`, else the
/// stored one, else the `config.toml` beside the checkpoint (what `train` writes), else 0.5.
pub fn resolve_normalization(
    checkpoint: &Path,
    stored: Option<&InputSpec>,
    given: Option<Normalization>,
) -> Result<ResolvedNormalization, NormalizationError> {
    let (normalization, source) = if let Some(given) = given {
        (given, NormalizationSource::Given)
    } else if let Some(spec) = stored {
        (
            Normalization {
                mean: spec.mean,
                std: spec.std,
            },
            NormalizationSource::Checkpoint,
        )
    } else {
        let run_config = checkpoint.with_file_name(RUN_CONFIG_FILE);
        if run_config.is_file() {
            let config = RunConfig::from_file(&run_config)
                .map_err(|source| NormalizationError { source })?;
            (
                config.input.normalization,
                NormalizationSource::RunConfig(run_config),
            )
        } else {
            (Normalization::HALF, NormalizationSource::Default)
        }
    };
    Ok(ResolvedNormalization {
        normalization,
        source,
    })
}

/// The [`InputSpec`] a checkpoint of a model with input `size` (height, width) records for
/// `normalization`.
pub fn input_spec(normalization: Normalization, [height, width]: [usize; 2]) -> InputSpec {
    InputSpec {
        mean: normalization.mean,
        std: normalization.std,
        height,
        width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_beats_stored_beats_run_config_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("checkpoint.safetensors");
        let stored = input_spec(Normalization::IMAGENET, [256, 128]);
        let resolve = |stored, given| resolve_normalization(&checkpoint, stored, given).unwrap();

        let given = resolve(Some(&stored), Some(Normalization::HALF));
        assert_eq!(
            (given.normalization, given.source.clone()),
            (Normalization::HALF, NormalizationSource::Given)
        );
        assert_eq!(given.warning(&checkpoint), None);
        let from_file = resolve(Some(&stored), None);
        assert_eq!(from_file.normalization, Normalization::IMAGENET);
        assert_eq!(from_file.source, NormalizationSource::Checkpoint);

        let default = resolve(None, None);
        assert_eq!(default.normalization, Normalization::HALF);
        let warning = default.warning(&checkpoint).unwrap();
        assert!(warning.contains("mean [0.5, 0.5, 0.5]"), "{warning}");

        let run_config = dir.path().join(RUN_CONFIG_FILE);
        std::fs::write(&run_config, "not toml [").unwrap();
        let err = resolve_normalization(&checkpoint, None, None).unwrap_err();
        assert!(err.to_string().contains("or give --normalization"), "{err}");
    }
}
