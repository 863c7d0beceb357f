//! `transreid data`: dataset statistics and synthetic sets.

use std::path::PathBuf;

use transreid::data::{load_dataset, DatasetKind, LoadOptions, SynthConfig};

use crate::inputs::dataset_kind_parser;

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Prints the statistics of a dataset.
    Stats {
        /// Dataset kind.
        #[arg(long, value_parser = dataset_kind_parser())]
        dataset: DatasetKind,
        /// The dataset folder.
        #[arg(long)]
        root: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Writes a synthetic re-identification set in the Market-1501 layout.
    Synth {
        /// Output folder (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Identities per split (train and test).
        #[arg(long, default_value_t = 32)]
        ids: usize,
        /// Cameras (2 to 6: the evaluation protocol needs two).
        #[arg(long, default_value_t = 4)]
        cameras: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Stats {
            dataset,
            root,
            json,
        } => {
            let data = load_dataset(dataset, &root, &LoadOptions::default())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data.stats())?);
            } else {
                println!("{}", data.stats());
            }
        }
        DataCommand::Synth {
            out,
            ids,
            cameras,
            seed,
        } => {
            // Train and test identities share Market-1501's range 1..=1501.
            anyhow::ensure!(
                (1..=750).contains(&ids),
                "--ids {ids} must be between 1 and 750 (identities per split; train and test \
                 together stay within Market-1501's 1..=1501)"
            );
            let mut config = SynthConfig::new(&out);
            config.train_ids = ids;
            config.test_ids = ids;
            config.cameras = cameras;
            config.seed = seed;
            let s = transreid::data::synth::generate(&config)?;
            println!(
                "wrote a synthetic set to {}: {} train identities ({} images), {} test \
                 identities ({} query and {} gallery images, {} of them distractors and {} \
                 junk), {} cameras",
                s.root.display(),
                s.train_ids,
                s.train_images,
                s.test_ids,
                s.query_images,
                s.gallery_images,
                s.distractor_images,
                s.junk_images,
                s.cameras
            );
        }
    }
    Ok(())
}
