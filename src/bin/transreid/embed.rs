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
/// Metadata key of what identifies each embedded file when it was embedded (a JSON list of
/// [`FileStamp`], in the order of `paths`), so that a search notices a changed gallery.
pub const FILES_KEY: &str = "transreid.files";
/// Metadata key of what made the features: the model configuration and input normalisation,
/// so that `search --gallery-features` refuses features of another model.
pub const EMBEDDED_BY_KEY: &str = "transreid.embedded_by";

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Image files or folders.
    #[arg(long, num_args = 1.., required = true)]
    images: Vec<PathBuf>,
    /// Output `.safetensors`: `features` [N, dim]; the absolute paths in the metadata key
    /// `paths`, each file's size and modification time in `transreid.files`.
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
        // Absolute, so that `search --gallery-features` works from any folder.
        let absolute = embedded
            .paths
            .iter()
            .map(|p| std::path::absolute(p).with_context(|| format!("resolving {}", p.display())))
            .collect::<anyhow::Result<Vec<PathBuf>>>()?;
        let names = absolute
            .iter()
            .map(|p| {
                p.to_str().map(str::to_string).with_context(|| {
                    format!(
                        "{} is not a UTF-8 path, which the features file cannot store",
                        p.display()
                    )
                })
            })
            .collect::<anyhow::Result<Vec<String>>>()?;
        let stamps = absolute
            .iter()
            .map(|p| FileStamp::of(p))
            .collect::<anyhow::Result<Vec<FileStamp>>>()?;
        let dim = embedder.dim();
        let tensors = StateDict::from([(
            "features".to_string(),
            HostTensor::new(vec![names.len(), dim], embedded.features),
        )]);
        let metadata = BTreeMap::from([
            (PATHS_KEY.to_string(), serde_json::to_string(&names)?),
            (FILES_KEY.to_string(), serde_json::to_string(&stamps)?),
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

/// What identifies a file's content without reading it: its size and modification time (a
/// `stat`, so checking an 80,000-image gallery costs no decoding and no hashing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u128,
}

impl FileStamp {
    /// The stamp of `path` now.
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            size: meta.len(),
            modified_ns: modified,
        })
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
    // Paths are absolute since files record them so; an older file's relative ones are read
    // from the working folder, else from the features file's folder.
    let folder = path.parent().unwrap_or(Path::new(""));
    let paths: Vec<PathBuf> = names
        .into_iter()
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() && !p.exists() && folder.join(&p).exists() {
                folder.join(p)
            } else {
                p
            }
        })
        .collect();
    check_unchanged(path, &paths, metadata.get(FILES_KEY))?;
    Ok((paths, features.data))
}

/// Refuses stored features whose images have changed (size or modification time) or gone
/// since they were embedded, naming them; warns when the file records no stamps.
fn check_unchanged(path: &Path, paths: &[PathBuf], stamps: Option<&String>) -> anyhow::Result<()> {
    let Some(stamps) = stamps else {
        eprintln!(
            "warning: {} records no file sizes or times (an older `transreid embed`): images \
             changed since cannot be noticed; embed the gallery again to be sure",
            path.display()
        );
        return Ok(());
    };
    let stamps: Vec<FileStamp> = serde_json::from_str(stamps)
        .with_context(|| format!("{}: unreadable `{FILES_KEY}` metadata", path.display()))?;
    anyhow::ensure!(
        stamps.len() == paths.len(),
        "{}: {} file stamps for {} paths",
        path.display(),
        stamps.len(),
        paths.len()
    );
    let changed: Vec<String> = paths
        .iter()
        .zip(&stamps)
        .filter(|(p, stamp)| FileStamp::of(p).ok().as_ref() != Some(*stamp))
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !changed.is_empty() {
        let shown = changed
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = changed.len().saturating_sub(5);
        anyhow::bail!(
            "{} image(s) changed or disappeared since `transreid embed` wrote {} (size or \
             modification time differ): {shown}{}; its distances would describe the old images: \
             embed the gallery again",
            changed.len(),
            path.display(),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
