//! Options shared by the commands that embed images (`embed`, `search`, `eval`): the model,
//! its side information, the image inputs, progress and output files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use clap::builder::{PossibleValue, TypedValueParser};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use transreid::data::{DatasetKind, Normalization};
use transreid::embedder::{EmbeddedFiles, Embedder, Unreadable};
use transreid::file_name::CameraSource;
use transreid::image_files::{list_image_files, ImageFiles};
use transreid::output_path::refuse_special_file;

use crate::backend::Device;

/// `--dataset`: the names `DatasetKind` reads (case-insensitive, `-` and `_` ignored), every
/// kind listed in `--help` and in the error.
pub fn dataset_kind_parser() -> DatasetKindParser {
    DatasetKindParser
}

#[derive(Clone)]
pub struct DatasetKindParser;

impl TypedValueParser for DatasetKindParser {
    type Value = DatasetKind;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DatasetKind, clap::Error> {
        let fail = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, message + "\n").with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail("--dataset is not valid UTF-8".into()))?;
        text.parse().map_err(|e| fail(format!("--dataset: {e}")))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            DatasetKind::ALL
                .into_iter()
                .map(|kind| PossibleValue::new(kind.as_str())),
        ))
    }
}

/// The input normalisation a model was trained with.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum NormalizationChoice {
    /// Mean and std 0.5 (the ViT configs).
    Half,
    /// ImageNet mean and std (the DeiT configs of VeRi-776 / VehicleID).
    Imagenet,
}

impl From<NormalizationChoice> for Normalization {
    fn from(choice: NormalizationChoice) -> Self {
        match choice {
            NormalizationChoice::Half => Normalization::HALF,
            NormalizationChoice::Imagenet => Normalization::IMAGENET,
        }
    }
}

/// The model of `embed` and `search` and the camera / view ids its images get.
#[derive(clap::Args)]
pub struct EmbedModelArgs {
    /// Checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Camera of every image, for camera SIE models: a 0-based id, or `name` to read each from
    /// its `<pid>_c<camera>…` file name (1-based there: c1 is id 0; default: 0).
    #[arg(long)]
    pub camera: Option<CameraSource>,
    /// View id of every image, for view SIE models (VeRi-776 TransReID; default 0).
    #[arg(long)]
    pub view: Option<i64>,
    /// Input normalisation. Default: the one the checkpoint records (older checkpoints: the
    /// run's `config.toml` beside it, else `half`, with a warning).
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationChoice>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: Device,
}

impl EmbedModelArgs {
    /// Loads the checkpoint and says what it will use that the user did not give.
    pub fn embedder<B: Backend>(&self, device: &B::Device) -> anyhow::Result<Embedder<B>> {
        let embedder = Embedder::from_checkpoint(
            &self.checkpoint,
            self.normalization.map(Normalization::from),
            32,
            device,
        )
        .with_context(|| format!("loading {}", self.checkpoint.display()))?;
        self.notes(&embedder);
        Ok(embedder)
    }

    /// Says what the loaded model will use that the user did not give, and which options it
    /// does not read.
    pub fn notes<B: Backend>(&self, embedder: &Embedder<B>) {
        if let Some(warning) = embedder.normalization().warning(&self.checkpoint) {
            eprintln!("warning: {warning}");
        }
        let mode = embedder.config().sie().mode;
        let (has_camera, has_view) = (mode.uses_cameras(), mode.uses_views());
        if self.camera.is_some() && !has_camera {
            eprintln!("warning: the model has no camera embedding (SIE): --camera is ignored");
        }
        if self.view.is_some() && !has_view {
            eprintln!("warning: the model has no view embedding (SIE): --view is ignored");
        }
        if has_camera && self.camera.is_none() {
            eprintln!(
                "note: the model embeds cameras; every image gets camera 0 (give --camera N or \
                 --camera name)"
            );
        }
        if has_view && self.view.is_none() {
            eprintln!("note: the model embeds views; every image gets view 0 (give --view N)");
        }
    }

    /// The camera and view ids of `paths` the model reads (`None` for a kind it does not).
    pub fn side_ids<B: Backend>(
        &self,
        embedder: &Embedder<B>,
        paths: &[PathBuf],
    ) -> anyhow::Result<(Option<Vec<i64>>, Option<Vec<i64>>)> {
        let mode = embedder.config().sie().mode;
        let cameras = match self.camera.filter(|_| mode.uses_cameras()) {
            Some(source) => Some(source.camera_ids(paths)?),
            None => None,
        };
        let views = self
            .view
            .filter(|_| mode.uses_views())
            .map(|v| vec![v; paths.len()]);
        Ok((cameras, views))
    }

    /// Embeds image files with their camera and view ids, with a progress bar.
    pub fn embed_files<B: Backend>(
        &self,
        embedder: &Embedder<B>,
        paths: &[PathBuf],
        unreadable: Unreadable,
        what: &str,
    ) -> anyhow::Result<EmbeddedFiles> {
        // Ids the model does not use (warned about when it was loaded) are not read.
        let (cameras, views) = self.side_ids(embedder, paths)?;
        let bar = images_bar(paths.len(), what);
        let embedded = embedder.embed_files(
            paths,
            cameras.as_deref(),
            views.as_deref(),
            unreadable,
            &mut |n| bar.inc(n as u64),
        );
        bar.finish_and_clear();
        let embedded = embedded?;
        if let Some(row) = embedded
            .features
            .chunks(embedder.dim().max(1))
            .position(|f| f.iter().any(|v| !v.is_finite()))
        {
            anyhow::bail!(
                "the features of {} are not finite (NaN or infinite): the checkpoint's weights \
                 are probably corrupt; nothing was written",
                embedded.paths[row].display()
            );
        }
        for (path, error) in &embedded.skipped {
            eprintln!("skipped {}: {error}", path.display());
        }
        if !embedded.skipped.is_empty() {
            eprintln!(
                "{} of {} files skipped as unreadable",
                embedded.skipped.len(),
                paths.len()
            );
        }
        Ok(embedded)
    }
}

/// Image files or folders, and how folders are read.
#[derive(clap::Args)]
pub struct FolderArgs {
    /// Search folders' subfolders too (default: only the images directly in each folder).
    #[arg(long)]
    pub recursive: bool,
    /// Leave out files that cannot be read or decoded and report them (default: stop at the
    /// first one).
    #[arg(long)]
    pub skip_unreadable: bool,
}

impl FolderArgs {
    /// The images of `inputs`, saying what was not searched.
    pub fn list(&self, inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
        let ImageFiles {
            paths,
            skipped_folders,
        } = list_image_files(inputs, self.recursive)?;
        if !skipped_folders.is_empty() {
            eprintln!(
                "note: {} subfolder(s) not searched (e.g. {}); give --recursive to include them",
                skipped_folders.len(),
                skipped_folders[0].display()
            );
        }
        Ok(paths)
    }

    pub fn unreadable(&self) -> Unreadable {
        if self.skip_unreadable {
            Unreadable::Skip
        } else {
            Unreadable::Fail
        }
    }
}

/// A progress bar over images with their rate, drawn on a terminal only.
pub fn images_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images, {rate}, eta {eta}")
            .expect("valid template")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&rate_text(state.per_sec()));
                },
            )
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// A throughput for the progress bars, rounded to what a person reads: `970 img/s`, `3.4 img/s`.
fn rate_text(per_second: f64) -> String {
    if per_second >= 10.0 || per_second == 0.0 {
        format!("{per_second:.0} img/s")
    } else {
        format!("{per_second:.1} img/s")
    }
}

/// Writes a file through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    refuse_special_file(path)?;
    transreid::output_path::write_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::rate_text;

    #[test]
    fn rates_are_rounded_for_reading() {
        assert_eq!(rate_text(970.5862), "971 img/s");
        assert_eq!(rate_text(3.4567), "3.5 img/s");
        assert_eq!(rate_text(0.0), "0 img/s");
    }
}
