//! `transreid embed`: features of image files into a safetensors file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use transreid::embedder::Embedder;
use transreid::model::{read_state_dict, write_safetensors, HostTensor, StateDict};
use transreid::output_path::check_output;

use crate::backend::BackendJob;
use crate::inputs::{EmbedModelArgs, FolderArgs};

/// Metadata key of the embedded files' paths (a JSON list).
pub const PATHS_KEY: &str = "paths";
/// Metadata key of what made the features: the model configuration and input normalisation,
/// so that `search --gallery-features` refuses features of another model.
pub const EMBEDDED_BY_KEY: &str = "transreid.embedded_by";

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Image files or folders.
    #[arg(long, num_args = 1.., required = true)]
    images: Vec<PathBuf>,
    /// Output `.safetensors`: `features` [N, dim]; the paths in the metadata key `paths`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    folders: FolderArgs,
    #[command(flatten)]
    pub model: EmbedModelArgs,
}

impl BackendJob for EmbedArgs {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let EmbedArgs {
            images,
            out,
            folders,
            model,
        } = self;
        let paths = folders.list(&images)?;
        let inputs: Vec<&Path> = std::iter::once(model.checkpoint.as_path())
            .chain(paths.iter().map(PathBuf::as_path))
            .collect();
        check_output(&out, "safetensors", &inputs)?;
        let embedder = model.embedder::<B>(&device)?;
        let embedded = model.embed_files(&embedder, &paths, folders.unreadable(), "embed")?;
        anyhow::ensure!(
            !embedded.paths.is_empty(),
            "none of the {} files could be read; nothing was written",
            paths.len()
        );
        let names: Vec<String> = embedded
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let dim = embedder.dim();
        let tensors = StateDict::from([(
            "features".to_string(),
            HostTensor::new(vec![names.len(), dim], embedded.features),
        )]);
        let metadata = BTreeMap::from([
            (PATHS_KEY.to_string(), serde_json::to_string(&names)?),
            (
                EMBEDDED_BY_KEY.to_string(),
                embedded_by(&embedder, &model.checkpoint)?,
            ),
        ]);
        write_safetensors(&out, &tensors, metadata)?;
        println!(
            "{} features of dimension {dim} -> {}",
            names.len(),
            out.display()
        );
        Ok(())
    }
}

/// What makes features comparable: the checkpoint's content (its weights), the model
/// configuration and the input normalisation.
pub fn embedded_by<B: Backend>(
    embedder: &Embedder<B>,
    checkpoint: &Path,
) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&serde_json::json!({
        "checkpoint": content_hash(checkpoint)?,
        "config": embedder.config(),
        "normalization": embedder.normalization().normalization,
    }))?)
}

/// A 64-bit hash of a file's bytes (SipHash with fixed keys), read in 1 MiB blocks.
fn content_hash(path: &Path) -> anyhow::Result<String> {
    use std::hash::Hasher;
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = std::hash::DefaultHasher::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut block)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.write(&block[..n]);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// Features written by `embed`: the paths and `[paths, dim]` rows, checked to come from the
/// same checkpoint and normalisation as `embedder` (loaded from `checkpoint`).
pub fn read_features<B: Backend>(
    path: &Path,
    embedder: &Embedder<B>,
    checkpoint: &Path,
) -> anyhow::Result<(Vec<PathBuf>, Vec<f32>)> {
    let (mut tensors, metadata) =
        read_state_dict(path).with_context(|| format!("reading {}", path.display()))?;
    let not_embed = || {
        format!(
            "{} is not a file written by `transreid embed`",
            path.display()
        )
    };
    let features = tensors.remove("features").with_context(not_embed)?;
    let names: Vec<String> = serde_json::from_str(metadata.get(PATHS_KEY).with_context(not_embed)?)
        .with_context(not_embed)?;
    let dim = embedder.dim();
    anyhow::ensure!(
        features.shape == [names.len(), dim],
        "{}: features of shape {:?} for {} paths; the model's features have dimension {dim}",
        path.display(),
        features.shape,
        names.len()
    );
    match metadata.get(EMBEDDED_BY_KEY) {
        Some(by) if *by == embedded_by(embedder, checkpoint)? => {}
        Some(_) => anyhow::bail!(
            "{} was embedded with another model or input normalisation than {}: its distances \
             would mean nothing; embed the gallery again with this checkpoint",
            path.display(),
            checkpoint.display()
        ),
        None => anyhow::bail!(
            "{} does not record which model made it (written by an older version): embed the \
             gallery again",
            path.display()
        ),
    }
    Ok((
        names.into_iter().map(PathBuf::from).collect(),
        features.data,
    ))
}
