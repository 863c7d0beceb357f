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
use crate::explain::{explain_files, load_explainer, maps_path, MethodArgs};
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
    /// Also explain the top N hits: for each, a picture of why it matches the query
    /// (`<out>.explain-<rank>.png`, as `transreid explain` draws it) and its maps
    /// (`.safetensors`), named in the JSON.
    #[arg(long, value_name = "N")]
    explain: Option<usize>,
    #[command(flatten)]
    method: MethodArgs,
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
        let explain_method = match self.explain {
            Some(0) => anyhow::bail!("--explain 0 explains nothing: give N >= 1 or leave it out"),
            Some(_) => Some(self.method.resolve(true, None)?),
            None => {
                anyhow::ensure!(
                    self.method.is_empty(),
                    "--method, --head-fusion and --discard-ratio are settings of --explain N"
                );
                None
            }
        };
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
        // The explanations of ranks 1..=N, picture and maps, checked like the ranked list.
        let explained_paths: Vec<PathBuf> = (1..=self.explain.unwrap_or(0).min(self.top_k))
            .map(|rank| explanation_path(&self.out, rank))
            .collect();
        for picture in &explained_paths {
            check_output(picture, "png", &inputs)?;
            check_output(&maps_path(picture), "safetensors", &inputs)?;
        }
        let mut outputs = vec![self.out.clone(), json_path.clone()];
        outputs.extend(explained_paths.iter().cloned());
        outputs.extend(explained_paths.iter().map(|p| maps_path(p)));
        for path in &outputs {
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
        let mut result = result;
        if let Some(method) = explain_method {
            let explainer = load_explainer::<B>(&self.model, &device)?;
            let count = explained_paths.len().min(result.hits.len());
            for (i, picture) in explained_paths.iter().take(count).enumerate() {
                let hit = &result.hits[i];
                let paths = [self.query.clone(), hit.path.clone()];
                let pair = [images[0].clone(), images[i + 1].clone()];
                let (rank, distance) = (hit.rank, hit.distance);
                explain_files(
                    &explainer,
                    &self.model,
                    &paths,
                    &pair,
                    method,
                    picture,
                    |e| match e.target_values.first() {
                        Some(v) => format!(
                            "rank {rank} of the gallery: cosine similarity {v:.4}, distance \
                             {distance:.4}"
                        ),
                        None => format!("rank {rank} of the gallery: distance {distance:.4}"),
                    },
                )?;
                result.hits[i].explanation = Some(picture.clone());
            }
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
        for hit in result.hits.iter().filter(|h| h.explanation.is_some()) {
            if let Some(picture) = &hit.explanation {
                println!("explanation of #{} -> {}", hit.rank, picture.display());
            }
        }
        Ok(())
    }
}

/// The picture explaining hit `rank` of the ranked list `out`: `<stem>.explain-<rank>.png`.
fn explanation_path(out: &Path, rank: usize) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "ranked".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.explain-{rank}.png"))
}
