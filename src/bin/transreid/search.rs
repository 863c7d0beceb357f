//! `transreid search`: a gallery ranked against a query image, as a picture and JSON.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use transreid::data::decode_rgb;
use transreid::embedder::Unreadable;
use transreid::output_path::{check_output, check_outside_folders};
use transreid::ranked_list::{draw_ranked_list, MAX_HITS};
use transreid::search::search;

use crate::backend::BackendJob;
use crate::embed::read_features;
use crate::inputs::{write_atomic, EmbedModelArgs, FolderArgs};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("gallery_source").args(["gallery", "gallery_features"]).required(true)))]
pub struct SearchArgs {
    /// The query image.
    #[arg(long)]
    query: PathBuf,
    /// Gallery image files or folders.
    #[arg(long, num_args = 1..)]
    gallery: Vec<PathBuf>,
    /// The gallery's features, written by `transreid embed` with the same checkpoint: no
    /// re-embedding of the gallery for every query.
    #[arg(long, conflicts_with = "gallery")]
    gallery_features: Option<PathBuf>,
    /// How many gallery images to keep, at most 500 (the hits a picture shows).
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// The ranked-list picture (`.png`); the JSON goes beside it (`.json`).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    folders: FolderArgs,
    #[command(flatten)]
    pub model: EmbedModelArgs,
}

impl BackendJob for SearchArgs {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_HITS).contains(&self.top_k),
            "--top-k {} must be between 1 and {MAX_HITS}, the hits a picture can show",
            self.top_k
        );
        let gallery = match &self.gallery_features {
            Some(_) => Vec::new(),
            None => self.folders.list(&self.gallery)?,
        };
        // The picture and, beside it, the same name in .json.
        let json_path = self.out.with_extension("json");
        let mut inputs: Vec<&Path> = vec![self.model.checkpoint.as_path(), self.query.as_path()];
        inputs.extend(gallery.iter().map(PathBuf::as_path));
        inputs.extend(self.gallery_features.as_deref());
        check_output(&self.out, "png", &inputs)?;
        check_output(&json_path, "json", &inputs)?;
        // A picture written into a gallery folder would be ranked by the next search of it.
        let folders: Vec<&Path> = self.gallery.iter().map(PathBuf::as_path).collect();
        for path in [&self.out, &json_path] {
            check_outside_folders(path, &folders, self.folders.recursive)?;
        }
        let query_image = decode_rgb(&self.query)?;
        let embedder = self.model.embedder::<B>(&device)?;
        let stored = match &self.gallery_features {
            Some(file) => {
                let stored = read_features(file, &embedder, &self.model.checkpoint)?;
                // The images the features name are inputs too.
                let named: Vec<&Path> = stored.0.iter().map(PathBuf::as_path).collect();
                check_output(&self.out, "png", &named)?;
                check_output(&json_path, "json", &named)?;
                Some(stored)
            }
            None => None,
        };
        let query = self.model.embed_files(
            &embedder,
            std::slice::from_ref(&self.query),
            Unreadable::Fail,
            "query",
        )?;
        let (gallery, gallery_features) = match stored {
            Some(stored) => stored,
            None => {
                let embedded = self.model.embed_files(
                    &embedder,
                    &gallery,
                    self.folders.unreadable(),
                    "gallery",
                )?;
                (embedded.paths, embedded.features)
            }
        };
        anyhow::ensure!(!gallery.is_empty(), "the gallery holds no readable image");
        if self.top_k > gallery.len() {
            eprintln!(
                "note: --top-k {} but the gallery has {} images: all are ranked",
                self.top_k,
                gallery.len()
            );
        }
        let result = search(
            &self.query,
            &query.features,
            &gallery,
            &gallery_features,
            self.top_k,
        )?;
        if result.excluded_query_files > 0 {
            eprintln!("note: the query file itself was left out of the gallery");
        }
        let mut images = vec![query_image];
        for hit in &result.hits {
            images.push(decode_rgb(&hit.path)?);
        }
        draw_ranked_list(&self.out, &result, &images)?;
        write_atomic(
            &json_path,
            serde_json::to_string_pretty(&result)?.as_bytes(),
        )?;
        for hit in &result.hits {
            let mark = match (hit.excluded_by_protocol, hit.is_match) {
                (true, _) => " match, same camera (left out by the evaluation protocol)",
                (false, Some(true)) => " match",
                (false, Some(false)) => " -",
                (false, None) => "",
            };
            println!(
                "{:>3}  {:.4}  {}{mark}",
                hit.rank,
                hit.distance,
                hit.path.display()
            );
        }
        println!(
            "ranked list -> {}, {}",
            self.out.display(),
            json_path.display()
        );
        Ok(())
    }
}
