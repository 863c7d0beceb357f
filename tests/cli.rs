//! The `transreid` binary on a tiny checkpoint and synthetic data: files produced, clear errors.

use std::path::Path;
use std::process::{Command, Output};

use burn::backend::NdArray;
use transreid::model::{
    save_checkpoint, JpmConfig, SieConfig, SieMode, TransReidConfig, VitPreset,
};

fn transreid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_transreid"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = transreid(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str], message: &str) {
    let out = transreid(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(message),
        "{args:?}: `{stderr}` lacks `{message}`"
    );
}

#[test]
fn commands_produce_their_files_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = p("data");
    ok(&[
        "data",
        "synth",
        "--out",
        &data,
        "--ids",
        "4",
        "--cameras",
        "2",
    ]);
    assert!(Path::new(&data).join("bounding_box_train").is_dir());
    let stats: serde_json::Value = serde_json::from_str(&ok(&[
        "data",
        "stats",
        "--dataset",
        "market1501",
        "--root",
        &data,
        "--json",
    ]))
    .unwrap();
    assert_eq!(stats["train"]["ids"], 4);
    assert_eq!(stats["train"]["cameras"], 2);

    let config = TransReidConfig::new(VitPreset::Tiny.config([128, 64], [16, 16]), 4)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(2),
        )
        .with_jpm(Some(JpmConfig::new()));
    let checkpoint = p("tiny.safetensors");
    save_checkpoint(
        &config.init::<NdArray>(&Default::default()),
        &config,
        Path::new(&checkpoint),
    )
    .unwrap();

    let table = ok(&[
        "eval",
        "--checkpoint",
        &checkpoint,
        "--dataset",
        "market1501",
        "--root",
        &data,
    ]);
    assert!(table.contains("| mAP | mINP | Rank-1"), "{table}");
    let reranked = ok(&[
        "eval",
        "--checkpoint",
        &checkpoint,
        "--dataset",
        "market1501",
        "--root",
        &data,
        "--rerank",
    ]);
    assert!(reranked.contains("valid queries"));

    let features = p("features.safetensors");
    let query = format!("{data}/query");
    ok(&[
        "embed",
        "--checkpoint",
        &checkpoint,
        "--images",
        &query,
        "--out",
        &features,
        "--camera",
        "1",
    ]);
    let bytes = std::fs::read(&features).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let queries = std::fs::read_dir(&query).unwrap().count();
    assert_eq!(file.tensor("features").unwrap().shape(), &[queries, 5 * 64]);

    fails(
        &[
            "eval",
            "--checkpoint",
            &p("missing.safetensors"),
            "--dataset",
            "market1501",
            "--root",
            &data,
        ],
        "missing.safetensors",
    );
    fails(
        &[
            "eval",
            "--checkpoint",
            &checkpoint,
            "--dataset",
            "market1501",
            "--root",
            &p("nowhere"),
        ],
        "missing directory",
    );
    fails(
        &[
            "embed",
            "--checkpoint",
            &checkpoint,
            "--images",
            &query,
            "--out",
            &features,
            "--camera",
            "7",
        ],
        "camera id 7 out of range",
    );
    fails(
        &[
            "eval",
            "--checkpoint",
            &checkpoint,
            "--dataset",
            "no-such-set",
            "--root",
            &data,
        ],
        "no-such-set",
    );
}
