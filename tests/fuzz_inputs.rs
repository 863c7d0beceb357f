//! Fuzz-style: random and mutated file names and run configurations are parsed or refused with a
//! typed error, never a panic, and what parses builds a model configuration that validates or
//! says why not.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use transreid::config::RunConfig;
use transreid::data::{labels_from_name, DatasetKind};
use transreid::file_name::{pid_from_name, CameraSource};

const TINY_CONFIG: &str = include_str!("../configs/synthetic/tiny_transreid.toml");

#[test]
fn file_names_parse_or_are_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let alphabet: Vec<char> = "0123456789_-cs.jpgnamé/ \u{0}9".chars().collect();
    for _ in 0..20_000 {
        let len = rng.random_range(0..24);
        let name: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let path = PathBuf::from(&name);
        if let Some(labels) = labels_from_name(&path) {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            let pid_text = stem.split('_').next().unwrap();
            assert_eq!(pid_text.parse::<i64>(), Ok(labels.pid), "{name:?}");
        }
        let _ = pid_from_name(&path);
        let _ = CameraSource::FileName.camera_ids(&[path]);
        let _ = name.parse::<CameraSource>();
        let _ = name.parse::<DatasetKind>();
    }
    // Ids beyond i64 are no labels, not a panic.
    assert_eq!(
        labels_from_name(Path::new("99999999999999999999_c1.jpg")),
        None
    );
    assert_eq!(
        labels_from_name(Path::new("1_c99999999999999999999.jpg")),
        None
    );
}

/// A number, string or value a user might type by mistake.
fn odd_value(rng: &mut ChaCha8Rng) -> String {
    let values = [
        "0",
        "-1",
        "1",
        "2",
        "3",
        "1000000",
        "18446744073709551615",
        "0.0",
        "-0.5",
        "1e308",
        "nan",
        "inf",
        "\"\"",
        "\"x\"",
        "[]",
        "[0, 0]",
        "[1]",
        "true",
        "{}",
    ];
    values[rng.random_range(0..values.len())].to_string()
}

#[test]
fn mutated_run_configurations_parse_or_are_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let lines: Vec<&str> = TINY_CONFIG.lines().collect();
    let origin = Path::new("mutated.toml");
    let mut parsed = 0;
    for round in 0..3_000 {
        let text = match round % 3 {
            // A value replaced.
            0 => {
                let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                let i = rng.random_range(0..lines.len());
                if let Some(eq) = lines[i].find(" = ") {
                    lines[i] = format!("{} = {}", &lines[i][..eq], odd_value(&mut rng));
                }
                lines.join("\n")
            }
            // A line dropped.
            1 => {
                let i = rng.random_range(0..lines.len());
                let kept: Vec<&str> = [&lines[..i], &lines[i + 1..]].concat();
                kept.join("\n")
            }
            // Bytes cut or flipped.
            _ => {
                let mut bytes = TINY_CONFIG.as_bytes().to_vec();
                if rng.random_bool(0.5) {
                    bytes.truncate(rng.random_range(0..bytes.len()));
                } else {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] ^= 1 << rng.random_range(0..7);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        let Ok(config) = RunConfig::from_toml(&text, origin) else {
            continue;
        };
        parsed += 1;
        // A configuration that passes validation builds a model configuration that validates.
        for (classes, cameras, views) in [(1, 1, 1), (4, 2, 1), (751, 6, 8)] {
            config
                .model_config(classes, cameras, views)
                .validate()
                .unwrap_or_else(|e| {
                    panic!("validated configuration gives an invalid model ({e}):\n{text}")
                });
        }
        let _ = config.train_settings(false);
        let _ = config.to_toml();
    }
    assert!(
        parsed > 100,
        "only {parsed} mutations parsed: the test exercises little"
    );
}
