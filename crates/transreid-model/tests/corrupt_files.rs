//! Fuzz-style: truncated and bit-flipped checkpoints (safetensors and PyTorch `.pth`) are errors,
//! never panics, whichever reader meets them.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use transreid_model::{
    load_checkpoint_with_input, load_pretrained, read_safetensors_metadata, save_checkpoint,
    CheckpointFile, ImportOptions, PretrainGrid, WeightKind,
};

mod common;

use common::tiny;

/// `count` corruptions of `bytes`: cut at a random length, or with 1 to 8 random bits flipped.
fn corruptions(bytes: &[u8], count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                bytes[..rng.random_range(0..bytes.len())].to_vec()
            } else {
                let mut flipped = bytes.to_vec();
                for _ in 0..rng.random_range(1..=8) {
                    // Headers and pickles sit at the start: flip there half of the time.
                    let end = if rng.random_bool(0.5) {
                        flipped.len().min(4096)
                    } else {
                        flipped.len()
                    };
                    let at = rng.random_range(0..end);
                    flipped[at] ^= 1 << rng.random_range(0..8);
                }
                flipped
            }
        })
        .collect()
}

/// Every reader on `path`; each may fail, none may panic.
fn read_every_way(path: &Path) {
    let device = Default::default();
    let _ = read_safetensors_metadata(path);
    if let Ok(file) = CheckpointFile::open(path) {
        let _ = file.state_dict();
    }
    let _ = load_checkpoint_with_input::<NdArray>(path, &device);
    let mut model = tiny(true, transreid_model::SieMode::Camera).init::<NdArray>(&device);
    let _ = load_pretrained(
        &mut model,
        path,
        WeightKind::Auto,
        PretrainGrid::HwRatio(1),
        ImportOptions::default(),
    );
}

#[test]
fn corrupt_safetensors_checkpoints_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(true, transreid_model::SieMode::Camera);
    let path = dir.path().join("tiny.safetensors");
    save_checkpoint(&config.init::<NdArray>(&Default::default()), &config, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    for (i, variant) in corruptions(&bytes, 200, 1).into_iter().enumerate() {
        std::fs::write(&corrupt, &variant).unwrap();
        read_every_way(&corrupt);
        if i % 2 == 0 {
            let Err(err) = load_checkpoint_with_input::<NdArray>(&corrupt, &Default::default())
            else {
                panic!(
                    "a checkpoint cut at {} of {} bytes loaded",
                    variant.len(),
                    bytes.len()
                );
            };
            // Words a user can act on, never the parser's variant names.
            let text = err.to_string();
            for parser_word in [
                "HeaderTooSmall",
                "MetadataIncompleteBuffer",
                "InvalidHeader",
            ] {
                assert!(!text.contains(parser_word), "{text}");
            }
            assert!(text.contains("corrupt.safetensors"), "{text}");
        }
    }
    std::fs::write(&corrupt, b"").unwrap();
    let err = load_checkpoint_with_input::<NdArray>(&corrupt, &Default::default()).unwrap_err();
    assert!(
        err.to_string().contains("the file is empty (0 bytes)"),
        "{err}"
    );
    std::fs::write(&corrupt, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_checkpoint_with_input::<NdArray>(&corrupt, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn corrupt_pytorch_files_are_errors() {
    let fixture: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests/fixtures/reference_tiny.pth",
    ]
    .iter()
    .collect();
    let bytes = std::fs::read(fixture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.pth");
    for variant in corruptions(&bytes, 60, 2) {
        std::fs::write(&corrupt, &variant).unwrap();
        read_every_way(&corrupt);
    }
}
