//! The `transreid` binary on a tiny checkpoint and synthetic data: files produced, clear errors.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::Path;
use std::process::{Command, Output};

use burn::backend::NdArray;
use transreid::model::{
    save_checkpoint, JpmConfig, SieConfig, SieMode, TransReidConfig, VitPreset,
};

mod cli_support;
use cli_support::{fails, ok, transreid};

/// The demo's configuration.
const TINY_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/synthetic/tiny_transreid.toml"
);

/// `transreid embed` of `images` with `checkpoint` into `out`, then `extra`.
fn embed_args(checkpoint: &str, images: &str, out: &str, extra: &[&str]) -> Vec<String> {
    let args = [
        "embed",
        "--checkpoint",
        checkpoint,
        "--images",
        images,
        "--out",
        out,
    ];
    args.iter().chain(extra).map(|a| a.to_string()).collect()
}

/// The `features` of an `embed` output file.
fn read_features(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensor("features")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
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

    let cmc = p("cmc.png");
    let table = ok(&[
        "eval",
        "--checkpoint",
        &checkpoint,
        "--dataset",
        "market1501",
        "--root",
        &data,
        "--cmc-plot",
        &cmc,
    ]);
    assert!(table.contains("| mAP | mINP | Rank-1"), "{table}");
    assert!(image::open(&cmc).unwrap().width() > 0);
    let reranked = ok(&[
        "eval",
        "--checkpoint",
        &checkpoint,
        "--dataset",
        "market1501",
        "--root",
        &data,
        "--rerank",
        "--cmc-plot",
        &p("cmc_reranked.png"),
    ]);
    assert!(reranked.contains("valid queries"));
    assert!(image::open(p("cmc_reranked.png")).unwrap().width() > 0);

    let features = p("features.safetensors");
    let query = format!("{data}/query");
    ok(&embed_args(
        &checkpoint,
        &query,
        &features,
        &["--camera", "1"],
    ));
    let bytes = std::fs::read(&features).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let queries = std::fs::read_dir(&query).unwrap().count();
    assert_eq!(file.tensor("features").unwrap().shape(), &[queries, 5 * 64]);
    // Embeds the queries with `checkpoint` into `out` and reads the features back.
    let embedded = |checkpoint: &str, out: &str, extra: &[&str]| {
        ok(&embed_args(checkpoint, &query, out, extra));
        read_features(out)
    };
    // The same features on another backend.
    let on_device = |device| ["--camera", "1", "--device", device];
    if cfg!(feature = "wgpu") {
        let on_wgpu = p("features_wgpu.safetensors");
        let wgpu = embedded(&checkpoint, &on_wgpu, &on_device("wgpu"));
        let flex = read_features(&features);
        assert_eq!(flex.len(), wgpu.len());
        for (i, (a, b)) in flex.iter().zip(&wgpu).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "feature {i}: {a} vs {b}"
            );
        }
    }
    // Cameras read from the file names: `_c1` embeds as camera 0, `_c2` as camera 1.
    let by_name = embedded(
        &checkpoint,
        &p("features_by_name.safetensors"),
        &["--camera", "name"],
    );
    let camera0 = embedded(
        &checkpoint,
        &p("features_camera0.safetensors"),
        &["--camera", "0"],
    );
    let camera1 = read_features(&features);
    let mut names: Vec<String> = std::fs::read_dir(&query)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let dim = 5 * 64;
    let rows = |f: &[f32], i: usize| f[i * dim..(i + 1) * dim].to_vec();
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5);
    let mut seen = [false; 2];
    for (i, name) in names.iter().enumerate() {
        let camera = usize::from(name.contains("_c2"));
        assert!(name.contains(["_c1", "_c2"][camera]), "{name}");
        seen[camera] = true;
        let (same, other) = [(&camera0, &camera1), (&camera1, &camera0)][camera];
        assert!(close(&rows(&by_name, i), &rows(same, i)), "{name}");
        assert!(!close(&rows(&by_name, i), &rows(other, i)), "{name}");
    }
    assert_eq!(seen, [true, true], "queries from both cameras");
    let unnamed = p("crop.jpg");
    std::fs::copy(Path::new(&query).join(&names[0]), &unnamed).unwrap();
    let never = p("never.safetensors");
    fails(
        &embed_args(&checkpoint, &unnamed, &never, &["--camera", "name"]),
        "crop.jpg: no camera in the file name",
    );
    fails(
        &embed_args(&checkpoint, &query, &never, &["--camera", "first"]),
        "neither a 0-based id nor `name`",
    );

    // The input normalisation: --normalization, else the run's config.toml beside the
    // checkpoint.
    let run = p("run");
    std::fs::create_dir(&run).unwrap();
    let run_checkpoint = format!("{run}/checkpoint.safetensors");
    std::fs::copy(&checkpoint, &run_checkpoint).unwrap();
    let preset = std::fs::read_to_string(TINY_CONFIG).unwrap();
    let half = "normalization = { mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }";
    assert!(preset.contains(half));
    let imagenet = "normalization = { mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] }";
    std::fs::write(format!("{run}/config.toml"), preset.replace(half, imagenet)).unwrap();
    let normalized = |choice: &[&str], out: &str| {
        embedded(
            &run_checkpoint,
            out,
            &[&["--camera", "name"], choice].concat(),
        )
    };
    let from_config = normalized(&[], &p("features_from_config.safetensors"));
    let as_imagenet = normalized(
        &["--normalization", "imagenet"],
        &p("features_imagenet.safetensors"),
    );
    let as_half = normalized(
        &["--normalization", "half"],
        &p("features_half.safetensors"),
    );
    assert_eq!(from_config, as_imagenet);
    assert_eq!(as_half, by_name);
    assert!(!close(&from_config, &as_half));
    std::fs::write(format!("{run}/config.toml"), "output_dir = 3").unwrap();
    fails(
        &embed_args(&run_checkpoint, &query, &never, &[]),
        "or give --normalization",
    );

    if !cfg!(feature = "cuda") {
        fails(
            &embed_args(&checkpoint, &query, &never, &on_device("cuda")),
            "without the `cuda` feature",
        );
    }

    // Search: the picture and the JSON, nearest first, identities read from the names.
    let mut queries: Vec<_> = std::fs::read_dir(&query)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    queries.sort();
    let ranked = p("ranked.png");
    ok(&[
        "search",
        "--checkpoint",
        &checkpoint,
        "--query",
        queries[0].to_str().unwrap(),
        "--gallery",
        &format!("{data}/bounding_box_test"),
        "--top-k",
        "5",
        "--out",
        &ranked,
        "--camera",
        "name",
    ]);
    let picture = image::open(&ranked).unwrap();
    assert!(picture.width() > 6 * 64, "query and five tiles");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("ranked.json")).unwrap()).unwrap();
    let hits = json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    let distances: Vec<f64> = hits
        .iter()
        .map(|h| h["distance"].as_f64().unwrap())
        .collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");
    assert!(json["query_pid"].is_i64());
    assert!(hits.iter().all(|h| h["is_match"].is_boolean()));
    fails(
        &[
            "search",
            "--checkpoint",
            &checkpoint,
            "--query",
            &p("nope.jpg"),
            "--gallery",
            &query,
            "--out",
            &ranked,
        ],
        "nope.jpg",
    );

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
        "nowhere does not exist",
    );
    fails(
        &embed_args(&checkpoint, &query, &features, &["--camera", "7"]),
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

#[test]
fn train_runs_from_a_configuration_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = p("data");
    ok(&[
        "data",
        "synth",
        "--out",
        &data,
        "--ids",
        "8",
        "--cameras",
        "2",
    ]);
    let config = TINY_CONFIG;
    let run = p("run");
    let common = [
        "--root",
        &data,
        "--output-dir",
        &run,
        "--epochs",
        "2",
        "--workers",
        "1",
    ];
    let first = [
        &["train", "--config", config, "--stop-after", "1"][..],
        &common,
        &["--precision", "bf16"],
    ]
    .concat();
    let out = ok(&first);
    assert!(out.contains("precision: bf16"), "{out}");
    let run_dir = Path::new(&run);
    for file in [
        "config.toml",
        "state.safetensors",
        "metrics.csv",
        "training.png",
    ] {
        assert!(run_dir.join(file).exists(), "{file} missing after epoch 1");
    }
    assert_eq!(
        std::fs::read_to_string(run_dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // The resolved configuration holds the overrides.
    let resolved = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(resolved.contains("max_epochs = 2"), "{resolved}");
    assert!(resolved.contains("precision = \"bf16\""), "{resolved}");

    // A fresh run into the same folder is refused; --resume continues it.
    fails(&first, "already holds a run");
    let out = ok(&["train", "--resume", &run, "--workers", "1"]);
    assert!(out.contains("epoch   2"), "{out}");
    assert!(out.contains("precision: bf16"), "{out}");
    assert!(out.contains("last evaluation: mAP"), "{out}");
    assert!(run_dir.join("checkpoint.safetensors").exists());
    assert_eq!(
        std::fs::read_to_string(run_dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    fails(
        &["train", "--resume", &p("nowhere")],
        "no such run folder (give the output_dir of a training run)",
    );
    fails(
        &[
            "train",
            "--resume",
            &run_dir.join("metrics.csv").display().to_string(),
        ],
        "--resume takes a run folder",
    );
    let typo = p("typo.toml");
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("sie_view", "sie_veiw");
    std::fs::write(&typo, text).unwrap();
    fails(&["train", "--config", &typo], "sie_veiw");
    // View SIE on a set without view labels is refused before the output folder is made.
    let views = p("views.toml");
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("sie_view = false", "sie_view = true");
    std::fs::write(&views, text).unwrap();
    let fresh = p("fresh");
    fails(
        &[
            &["train", "--config", &views][..],
            &common[..2],
            &["--output-dir", &fresh],
        ]
        .concat(),
        "train split: view id 1 out of range",
    );
    assert!(!Path::new(&fresh).exists());
    // So is a batch of 32 identities from a set of 8, in 4 micro-batches of all 8: each
    // identity's 8 images make 2 blocks an epoch, short of a step.
    let big = p("big.toml");
    let text = std::fs::read_to_string(config).unwrap().replacen(
        "ims_per_batch = 32",
        "ims_per_batch = 128",
        1,
    );
    std::fs::write(&big, text).unwrap();
    fails(
        &[
            &["train", "--config", &big, "--accumulate", "4"][..],
            &common[..2],
            &["--output-dir", &fresh],
        ]
        .concat(),
        "no complete step",
    );
    assert!(!Path::new(&fresh).exists());
    fails(&["train"], "--config");
    fails(
        &["train", "--config", config, "--precision", "fp8"],
        "possible values",
    );
    if !cfg!(feature = "cuda") {
        let cuda = [
            &["train", "--config", config, "--device", "cuda"][..],
            &common,
        ]
        .concat();
        fails(&cuda, "without the `cuda` feature");
    }
}

/// The first percentage after `marker` in a command's output.
fn percent_after(out: &str, marker: &str) -> f64 {
    let rest = &out[out
        .find(marker)
        .unwrap_or_else(|| panic!("{marker}: {out}"))
        + marker.len()..];
    let start = rest.find(|c: char| c.is_ascii_digit()).unwrap();
    let end = start + rest[start..].find('%').unwrap();
    rest[start..end].parse().unwrap()
}

#[test]
fn fine_tunes_from_a_personvit_training_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = p("data");
    ok(&[
        "data",
        "synth",
        "--out",
        &data,
        "--ids",
        "16",
        "--cameras",
        "4",
    ]);
    // A PersonViT-layout iBOT training checkpoint of the tiny preset, pretrained at 256x128.
    let weights = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/personvit_tiny.pth"
    );

    // Imported as it is, the backbone is the untrained baseline.
    let init = p("init.safetensors");
    let import = [
        "import",
        "--source",
        weights,
        "--preset",
        "tiny",
        "--size",
        "128",
        "64",
        "--pretrain-hw-ratio",
        "2",
        "--num-classes",
        "16",
        "--out",
        &init,
    ];
    let out = ok(&import);
    assert!(out.contains("DINO / iBOT training checkpoint"), "{out}");
    assert!(out.contains("resized from 129 to 33 tokens"), "{out}");
    // `embed` names the file as `import` does.
    fails(
        &[
            "embed",
            "--checkpoint",
            weights,
            "--images",
            &format!("{data}/query"),
            "--out",
            &p("f.safetensors"),
        ],
        "DINO / iBOT training checkpoint",
    );
    // Names and folders as a user types them.
    let stats = ok(&["data", "stats", "--dataset", "Market_1501", "--root", &data]);
    assert!(stats.contains("train"), "{stats}");
    fails(
        &[
            "data",
            "stats",
            "--dataset",
            "market1501",
            "--root",
            &p("nonexistent"),
        ],
        "nonexistent does not exist",
    );
    fails(
        &["data", "synth", "--out", &format!("{weights}/set")],
        "cannot create the folder",
    );
    fails(
        &["data", "synth", "--out", &p("big"), "--ids", "800"],
        "--ids 800",
    );
    fails(
        &[
            "search",
            "--checkpoint",
            &init,
            "--query",
            weights,
            "--out",
            &p("r.png"),
        ],
        "--gallery-features",
    );
    let wrong_kind = [&import[..], &["--kind", "imagenet"]].concat();
    // Hints spell what the command line takes.
    fails(
        &wrong_kind,
        "use kind `self-supervised` (`--kind self-supervised`",
    );
    let square = [&import[..8], &import[10..]].concat();
    fails(&square, "`--pretrain-hw-ratio 2`");
    // A grid no ratio describes is given as HxW; the same grid as a ratio gives the same file.
    let by_grid = p("by_grid.safetensors");
    let grid = [
        &import[..8],
        &["--pretrain-grid", "16x8", "--out", by_grid.as_str()],
        &import[10..12],
    ]
    .concat();
    let out = ok(&grid);
    assert!(out.contains("resized from 129 to 33 tokens"), "{out}");
    fails(
        &[&import[..8], &["--pretrain-grid", "7y3"], &import[10..]].concat(),
        "expected HxW",
    );
    // The same import twice gives the same file (seeded), recorded in it.
    let again = p("again.safetensors");
    let twice = [&import[..import.len() - 1], &[again.as_str()]].concat();
    ok(&twice);
    assert_eq!(
        std::fs::read(&init).unwrap(),
        std::fs::read(&again).unwrap()
    );
    let (_, metadata) = transreid::model::read_state_dict(Path::new(&again)).unwrap();
    assert_eq!(metadata["transreid.import_seed"], "0");
    let out = ok(&[
        "eval",
        "--checkpoint",
        &init,
        "--dataset",
        "market1501",
        "--root",
        &data,
    ]);
    let before = percent_after(&out, "|---|---|---|---|---|");

    // The PersonViT recipe (no SIE, no JPM, soft triplet) on the tiny preset, through the
    // configuration's `pretrained = { kind = "self_supervised" }`; the synthetic set's lr.
    let preset = std::fs::read_to_string(TINY_CONFIG).unwrap();
    let config = preset
        .replace(
            "pretrained = { kind = \"none\" }",
            &format!(
                "pretrained = {{ kind = \"self_supervised\", path = {weights:?} }}\npretrain_hw_ratio = 2"
            ),
        )
        .replace("sie_camera = true", "sie_camera = false")
        .replace(
            "jpm = { shift_num = 5, shuffle_groups = 2, num_parts = 4, rearrange = true }\n",
            "",
        );
    assert_ne!(config, preset);
    let config_path = p("personvit_tiny.toml");
    std::fs::write(&config_path, config).unwrap();
    let run = p("run");
    let out = ok(&[
        "train",
        "--config",
        &config_path,
        "--root",
        &data,
        "--output-dir",
        &run,
        "--epochs",
        "20",
        "--workers",
        "1",
    ]);
    assert!(out.contains("DINO / iBOT training checkpoint"), "{out}");
    let after = percent_after(&out, "last evaluation: mAP");
    assert!(after > before + 10.0, "mAP {before}% -> {after}%");
}

#[test]
fn gpu_check_dry_run_records_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-check.sh"))
        .arg("dry-run")
        .arg(dir.path())
        .env("TRANSREID_BIN", env!("CARGO_BIN_EXE_transreid"))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("log.txt")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter().all(|r| r.get("error").is_none()),
        "{text}\n{log}"
    );
    let stage = |name: &str| -> Vec<&serde_json::Value> {
        rows.iter().filter(|r| r["stage"] == name).collect()
    };
    // The tree a GPU command would send fits its budget (scripts/payload.py).
    assert_eq!(stage("payload")[0]["within_budget"], true, "{text}");
    assert!(
        stage("payload")[0]["tracked_mib"].as_f64().unwrap() <= 40.0,
        "{text}"
    );
    assert_eq!(stage("env")[0]["device"], "flex", "{text}");
    // The reference's numbers are met in f32 and bf16 (src/device_check.rs::tolerances).
    let checks = stage("check");
    assert_eq!(checks.len(), 2, "{text}");
    for (row, precision) in checks.iter().zip(["f32", "bf16"]) {
        assert_eq!(row["precision"], precision, "{text}");
        assert_eq!(row["passed"], true, "{text}");
        assert_eq!(row["gradients"], 79, "{text}");
    }
    // CLIP-ReID's features, losses and gradients against the reference's, in f32.
    let clip_check = stage("check-clip-reid");
    assert_eq!(clip_check.len(), 1, "{text}");
    assert_eq!(clip_check[0]["passed"], true, "{text}");
    assert_eq!(clip_check[0]["precision"], "f32", "{text}");
    let train = stage("train");
    assert_eq!(train[0]["epochs"], 2, "{text}");
    assert!(
        train[0]["last_loss"].as_f64().unwrap().is_finite(),
        "{text}"
    );
    // Timed cases carry their throughput; PyTorch is skipped without a reference checkout.
    let timed = |name: &str| {
        stage(name)
            .into_iter()
            .filter(|r| r["images_per_second"].as_f64().is_some_and(|v| v > 0.0))
            .count()
    };
    assert_eq!(timed("bench-train"), 3, "{text}");
    assert_eq!(timed("infer"), 4, "{text}");
    assert!(stage("pytorch-train")[0]["skipped"].is_string(), "{text}");
    // CLIP-ReID's two stages, one timed line each.
    let clip = stage("bench-clip-reid");
    let stages: Vec<&str> = clip
        .iter()
        .filter_map(|r| r["training_stage"].as_str())
        .collect();
    assert_eq!(stages, ["prompts", "images"], "{text}");
    assert!(
        clip.iter()
            .all(|r| r["seconds_per_step"].as_f64().is_some_and(|v| v > 0.0)),
        "{text}"
    );
}

#[test]
fn outputs_never_replace_inputs_or_special_files() {
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
    let config = TransReidConfig::new(VitPreset::Tiny.config([128, 64], [16, 16]), 4);
    let checkpoint = p("tiny.safetensors");
    let model = config.init::<NdArray>(&Default::default());
    save_checkpoint(&model, &config, Path::new(&checkpoint)).unwrap();
    let query = format!("{data}/query");
    let first_image = std::fs::read_dir(&query)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let first_image = first_image.to_str().unwrap().to_string();
    let before = |path: &str| std::fs::read(path).unwrap();
    let (checkpoint_bytes, image_bytes) = (before(&checkpoint), before(&first_image));

    // An output that is an input is refused before any work, and the input is left alone.
    fails(
        &embed_args(&checkpoint, &query, &checkpoint, &[]),
        "is an input",
    );
    let renamed = p("data/query/../query/x.safetensors");
    std::fs::copy(&checkpoint, &renamed).unwrap();
    fails(&embed_args(&renamed, &query, &renamed, &[]), "is an input");
    // A gallery with a PNG image, which the picture must not replace.
    let png_gallery = p("png_gallery");
    std::fs::create_dir(&png_gallery).unwrap();
    let gallery_png = format!("{png_gallery}/0001_c1s1_000001_00.png");
    std::fs::copy(&first_image, &gallery_png).unwrap();
    let gallery_png_bytes = before(&gallery_png);
    let search = |out: &str| {
        vec![
            "search".to_string(),
            "--checkpoint".into(),
            checkpoint.clone(),
            "--query".into(),
            first_image.clone(),
            "--gallery".into(),
            png_gallery.clone(),
            "--out".into(),
            out.to_string(),
        ]
    };
    fails(&search(&gallery_png), "is an input");
    assert_eq!(before(&gallery_png), gallery_png_bytes);
    assert_eq!(before(&checkpoint), checkpoint_bytes);
    assert_eq!(before(&first_image), image_bytes);

    // Checked up front: a missing folder, a JSON name for the picture, a corrupt checkpoint
    // never reached because the output is checked first.
    fails(&search(&p("nowhere/ranked.png")), "does not exist");
    fails(&search(&p("ranked.json")), "must end in .png");
    let corrupt = p("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a checkpoint").unwrap();
    fails(
        &embed_args(&corrupt, &query, &p("nowhere/f.safetensors"), &[]),
        "does not exist",
    );

    // A pipe (as /dev/null would be) is not replaced by the atomic write.
    let fifo = p("pipe.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let eval = |plot: &str| {
        vec![
            "eval".to_string(),
            "--checkpoint".into(),
            checkpoint.clone(),
            "--dataset".into(),
            "market1501".into(),
            "--root".into(),
            data.clone(),
            "--cmc-plot".into(),
            plot.to_string(),
        ]
    };
    fails(&eval(&fifo), "not a regular file");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // eval writes a CMC picture only when asked.
    let out = Command::new(env!("CARGO_BIN_EXE_transreid"))
        .args(&eval(&p("cmc.png"))[..7])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("cmc.png").exists());

    // A checkpoint with NaN weights gives NaN features: refused, nothing written.
    let (mut tensors, metadata) =
        transreid::model::read_state_dict(Path::new(&checkpoint)).unwrap();
    for tensor in tensors.values_mut() {
        tensor.data.iter_mut().for_each(|v| *v = f32::NAN);
    }
    let nan = p("nan.safetensors");
    transreid::model::write_safetensors(Path::new(&nan), &tensors, metadata).unwrap();
    let features = p("nan_features.safetensors");
    fails(&embed_args(&nan, &query, &features, &[]), "not finite");
    assert!(!Path::new(&features).exists());
}

/// `transreid` with `args` run from `cwd`.
fn transreid_in<S: AsRef<OsStr>>(cwd: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_transreid"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Standard error of a successful run.
fn ok_stderr<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let out = transreid(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr
}

#[test]
fn runs_and_checkpoints_describe_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let p = |name: &str| root.join(name).to_str().unwrap().to_string();
    ok(&[
        "data",
        "synth",
        "--out",
        &p("data"),
        "--ids",
        "8",
        "--cameras",
        "2",
    ]);
    // An ImageNet-normalised run, started with a dataset root relative to its folder.
    let half = "normalization = { mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }";
    let imagenet = "normalization = { mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] }";
    let preset = std::fs::read_to_string(TINY_CONFIG).unwrap();
    std::fs::write(p("imagenet.toml"), preset.replace(half, imagenet)).unwrap();
    let train = |cwd: &Path, args: &[&str]| {
        let out = transreid_in(cwd, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok1, text) = train(
        root,
        &[
            "train",
            "--config",
            "imagenet.toml",
            "--root",
            "data",
            "--output-dir",
            "run",
            "--epochs",
            "1",
            "--workers",
            "1",
        ],
    );
    assert!(ok1, "{text}");
    let run = p("run");
    let resolved = std::fs::read_to_string(format!("{run}/config.toml")).unwrap();
    let data_line = format!("root = \"{}\"", p("data"));
    assert!(resolved.contains(&data_line), "absolute root: {resolved}");
    assert!(
        Path::new(&run).join("training.png").exists(),
        "a one-epoch plot"
    );

    // The checkpoint records its normalisation: a copy away from its run folder embeds the same.
    let away = p("away");
    std::fs::create_dir(&away).unwrap();
    let copied = format!("{away}/copied.safetensors");
    std::fs::copy(format!("{run}/checkpoint.safetensors"), &copied).unwrap();
    let query = p("data/query");
    let embed_with = |checkpoint: &str, out: &str, extra: &[&str]| {
        let args = embed_args(
            checkpoint,
            &query,
            out,
            &[&["--camera", "name"], extra].concat(),
        );
        let stderr = ok_stderr(&args);
        (read_features(out), stderr)
    };
    let (in_run, _) = embed_with(
        &format!("{run}/checkpoint.safetensors"),
        &p("a.safetensors"),
        &[],
    );
    let (copy, stderr) = embed_with(&copied, &p("b.safetensors"), &[]);
    let (explicit, _) = embed_with(
        &copied,
        &p("c.safetensors"),
        &["--normalization", "imagenet"],
    );
    let (half_features, _) = embed_with(&copied, &p("d.safetensors"), &["--normalization", "half"]);
    assert_eq!(copy, in_run);
    assert_eq!(copy, explicit);
    assert_ne!(copy, half_features);
    assert!(!stderr.contains("warning"), "{stderr}");
    // No progress bar off a terminal.
    assert!(
        !stderr.contains("images,") && !stderr.contains("eta"),
        "{stderr}"
    );

    // Resume from another working directory; extend the finished run; refusals name the cause.
    let elsewhere = p("away");
    let (finished, text) = train(Path::new(&elsewhere), &["train", "--resume", &run]);
    assert!(
        !finished && text.contains("finished all 1 epochs"),
        "{text}"
    );
    let (extended, text) = train(
        Path::new(&elsewhere),
        &["train", "--resume", &run, "--epochs", "2"],
    );
    assert!(extended, "{text}");
    assert!(text.contains("epoch   2"), "{text}");
    let resolved = std::fs::read_to_string(format!("{run}/config.toml")).unwrap();
    assert!(resolved.contains("max_epochs = 2"), "{resolved}");
    let (passed, text) = train(
        root,
        &[
            "train",
            "--resume",
            &run,
            "--epochs",
            "3",
            "--stop-after",
            "2",
        ],
    );
    assert!(!passed && text.contains("already done 2 epochs"), "{text}");
    let changed = std::fs::read_to_string(format!("{run}/config.toml"))
        .unwrap()
        .replace("base_lr = 0.03", "base_lr = 0.05");
    std::fs::write(p("changed.toml"), changed).unwrap();
    let (mismatch, text) = train(
        root,
        &[
            "train",
            "--resume",
            &run,
            "--config",
            "changed.toml",
            "--epochs",
            "3",
        ],
    );
    assert!(!mismatch, "{text}");
    assert!(
        text.contains("solver.base_lr: run 0.03, now 0.05"),
        "{text}"
    );
    let resolved = std::fs::read_to_string(format!("{run}/config.toml")).unwrap();
    assert!(
        resolved.contains("max_epochs = 2"),
        "a refused resume changes nothing"
    );
}

#[test]
fn folders_names_and_bad_inputs_get_clear_answers() {
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
    fails(
        &["data", "synth", "--out", &p("one"), "--cameras", "1"],
        "cannot be evaluated",
    );

    // A custom set of Market-named images: the cameras come from the names, as `--camera name`
    // reads them.
    let custom = p("custom");
    for (split, from) in [
        ("train", "bounding_box_train"),
        ("query", "query"),
        ("gallery", "bounding_box_test"),
    ] {
        std::fs::create_dir_all(format!("{custom}/{split}")).unwrap();
        for entry in std::fs::read_dir(format!("{data}/{from}")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            std::fs::copy(&path, format!("{custom}/{split}/{name}")).unwrap();
        }
    }
    let stats = |root: &str| -> serde_json::Value {
        let args = [
            "data",
            "stats",
            "--dataset",
            "custom",
            "--root",
            root,
            "--json",
        ];
        serde_json::from_str(&ok(&args)).unwrap()
    };
    assert_eq!(stats(&custom)["train"]["cameras"], 2);
    std::fs::write(format!("{custom}/gallery/0001_c0_000001_00.jpg"), b"x").unwrap();
    fails(
        &["data", "stats", "--dataset", "custom", "--root", &custom],
        "cameras in file names are 1-based",
    );

    // Checkpoint without view SIE; folders with hidden, nested, corrupt and huge files.
    let config = TransReidConfig::new(VitPreset::Tiny.config([128, 64], [16, 16]), 4).with_sie(
        SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(2),
    );
    let checkpoint = p("tiny.safetensors");
    save_checkpoint(
        &config.init::<NdArray>(&Default::default()),
        &config,
        Path::new(&checkpoint),
    )
    .unwrap();
    let gallery = p("gallery");
    std::fs::create_dir_all(format!("{gallery}/nested")).unwrap();
    let mut images: Vec<_> = std::fs::read_dir(format!("{data}/bounding_box_test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('-'))
        .collect();
    images.sort();
    for image in &images[..6] {
        let name = image.file_name().unwrap().to_str().unwrap();
        std::fs::copy(image, format!("{gallery}/{name}")).unwrap();
    }
    std::fs::copy(
        &images[6],
        format!("{gallery}/nested/0009_c2s1_000009_00.jpg"),
    )
    .unwrap();
    std::fs::write(
        format!("{gallery}/._0001_c1s1_000001_00.jpg"),
        b"resource fork",
    )
    .unwrap();
    std::fs::write(format!("{gallery}/0002_c1s1_broken_00.jpg"), b"not a jpeg").unwrap();
    let mut bmp = b"BM".to_vec();
    for v in [70u32, 0, 54, 40, 60_000, 50_000] {
        bmp.extend(v.to_le_bytes());
    }
    bmp.extend([1, 0, 24, 0]);
    bmp.extend([0u8; 40]);
    std::fs::write(format!("{gallery}/0003_c1s1_huge_00.bmp"), &bmp).unwrap();
    let features = p("gallery.safetensors");
    let embed = |extra: &[&str]| embed_args(&checkpoint, &gallery, &features, extra);
    fails(&embed(&[]), "0002_c1s1_broken_00.jpg");
    let stderr = ok_stderr(&embed(&[
        "--skip-unreadable",
        "--view",
        "1",
        "--camera",
        "name",
    ]));
    assert!(stderr.contains("--view is ignored"), "{stderr}");
    assert!(stderr.contains("subfolder(s) not searched"), "{stderr}");
    assert!(stderr.contains("60000x50000 pixels, too large"), "{stderr}");
    assert!(stderr.contains("2 of 8 files skipped"), "{stderr}");
    assert_eq!(read_features(&features).len(), 6 * 64);
    ok_stderr(&embed(&["--skip-unreadable", "--recursive"]));
    assert_eq!(read_features(&features).len(), 7 * 64);
    fails(
        &embed_args(
            &checkpoint,
            &images[0].display().to_string(),
            &p("x.safetensors"),
            &["--camera", "5"],
        ),
        &format!("{}: camera id 5 out of range", images[0].display()),
    );

    // Search reuses the embedded gallery; the query is not its own hit; --top-k beyond the
    // gallery is said.
    let query = format!(
        "{gallery}/{}",
        images[0].file_name().unwrap().to_str().unwrap()
    );
    let search = |extra: &[&str], out: &str| {
        let args = [
            &[
                "search",
                "--checkpoint",
                &checkpoint,
                "--query",
                &query,
                "--top-k",
                "20",
                "--out",
                out,
            ][..],
            extra,
        ]
        .concat();
        let stderr = ok_stderr(&args);
        let json = std::fs::read_to_string(Path::new(out).with_extension("json")).unwrap();
        (
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            stderr,
        )
    };
    let (reused, stderr) = search(&["--gallery-features", &features], &p("reused.png"));
    assert!(
        stderr.contains("--top-k 20 but the gallery has 7 images"),
        "{stderr}"
    );
    let (embedded, _) = search(
        &["--gallery", &gallery, "--recursive", "--skip-unreadable"],
        &p("embedded.png"),
    );
    assert_eq!(reused["hits"], embedded["hits"]);
    let hits = reused["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 6, "the query itself left out");
    assert!(hits.iter().all(|h| h["distance"].as_f64().unwrap() >= 0.0));
    // The same configuration with other weights (a later epoch, say) is another model.
    let other_checkpoint = p("other.safetensors");
    save_checkpoint(
        &config.init::<NdArray>(&Default::default()),
        &config,
        Path::new(&other_checkpoint),
    )
    .unwrap();
    fails(
        &[
            "search",
            "--checkpoint",
            &other_checkpoint,
            "--query",
            &query,
            "--gallery-features",
            &features,
            "--out",
            &p("bad.png"),
        ],
        "embedded with another model",
    );
    // A picture named like a PNG image whose features are stored is refused before it is
    // replaced.
    let png_gallery = p("png_gallery");
    std::fs::create_dir(&png_gallery).unwrap();
    let png = format!("{png_gallery}/0001_c1s1_000151_01.png");
    image::open(&images[0]).unwrap().save(&png).unwrap();
    let png_features = p("png_gallery.safetensors");
    ok_stderr(&embed_args(&checkpoint, &png_gallery, &png_features, &[]));
    let before = std::fs::read(&png).unwrap();
    fails(
        &[
            "search",
            "--checkpoint",
            &checkpoint,
            "--query",
            &query,
            "--gallery-features",
            &png_features,
            "--out",
            &png,
        ],
        "is an input of this command",
    );
    assert_eq!(std::fs::read(&png).unwrap(), before);
    // A picture written into the gallery folder would be ranked by the next search.
    fails(
        &[
            "search",
            "--checkpoint",
            &checkpoint,
            "--query",
            &query,
            "--gallery",
            &png_gallery,
            "--out",
            &format!("{png_gallery}/ranked.png"),
        ],
        "inside the input folder",
    );

    // Embedded with a relative folder, the features are found from another working folder.
    let relative = transreid_in(
        dir.path(),
        &embed_args(&checkpoint, "png_gallery", "relative.safetensors", &[]),
    );
    assert!(relative.status.success(), "{relative:?}");
    let elsewhere = p("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let found = transreid_in(
        Path::new(&elsewhere),
        &[
            "search",
            "--checkpoint",
            &checkpoint,
            "--query",
            &query,
            "--gallery-features",
            &p("relative.safetensors"),
            "--out",
            "ranked.png",
        ],
    );
    assert!(found.status.success(), "{found:?}");
    // A gallery image changed after `embed` is named, not shown with its old distance.
    image::open(&images[1]).unwrap().save(&png).unwrap();
    fails(
        &[
            "search",
            "--checkpoint",
            &checkpoint,
            "--query",
            &query,
            "--gallery-features",
            &png_features,
            "--out",
            &p("changed.png"),
        ],
        "changed or disappeared since `transreid embed` wrote",
    );

    // Re-ranking says so and takes its parameters; --help lists the dataset kinds.
    let eval = |extra: &[&str]| -> Vec<String> {
        [
            "eval",
            "--checkpoint",
            &checkpoint,
            "--dataset",
            "market1501",
            "--root",
            &data,
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
    };
    let out = ok(&eval(&["--rerank", "--k1", "30"]));
    assert!(
        out.contains("re-ranked (k-reciprocal, k1 30, k2 6, lambda 0.3)"),
        "{out}"
    );
    fails(&eval(&["--k1", "30"]), "--rerank");
    let help = ok(&["eval", "--help"]);
    assert!(
        help.contains("market1501") && help.contains("vehicleid"),
        "{help}"
    );

    // A closed pipe ends the output quietly.
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' data stats --dataset market1501 --root '{data}' --json | true",
            env!("CARGO_BIN_EXE_transreid")
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}

#[test]
fn settings_that_cannot_work_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let preset = std::fs::read_to_string(TINY_CONFIG).unwrap();
    let config = |from: &str, to: &str| {
        assert!(preset.contains(from), "{from}");
        let path = p(&format!("c{}.toml", to.len()));
        std::fs::write(&path, preset.replace(from, to)).unwrap();
        path
    };
    let no_panic = |args: &[&str], message: &str| {
        let out = transreid(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: `{stderr}` lacks `{message}`"
        );
    };
    no_panic(
        &[
            "train",
            "--config",
            &config("stride = [16, 16]", "stride = [0, 0]"),
        ],
        "stride",
    );
    no_panic(
        &[
            "train",
            "--config",
            &config("stride = [16, 16]", "stride = [17, 17]"),
        ],
        "stride",
    );
    no_panic(
        &[
            "train",
            "--config",
            &config("num_parts = 4", "num_parts = 0"),
        ],
        "part",
    );
    no_panic(
        &[
            "train",
            "--config",
            &config("shuffle_groups = 2", "shuffle_groups = 1000"),
        ],
        "group",
    );
    let bench = ["bench", "train", "--backbone", "tiny", "--size", "64", "32"];
    no_panic(&[&bench[..], &["--steps", "0"]].concat(), "--steps");
    no_panic(&[&bench[..], &["--stride", "0"]].concat(), "stride");
    no_panic(
        &[
            "import",
            "--source",
            &p("x.pth"),
            "--out",
            &p("y.safetensors"),
            "--num-classes",
            "4",
            "--stride",
            "0",
        ],
        "stride",
    );
}

#[test]
fn vehicleid_eval_averages_random_galleries() {
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
    // A VehicleID layout from the synthetic images: 4 train and 5 test vehicles.
    let root = p("VehicleID_V1.0");
    std::fs::create_dir_all(format!("{root}/image")).unwrap();
    std::fs::create_dir_all(format!("{root}/train_test_split")).unwrap();
    let mut images: Vec<_> = std::fs::read_dir(format!("{data}/bounding_box_train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    let (mut train, mut test) = (String::new(), String::new());
    for (i, image) in images.iter().take(30).enumerate() {
        let name = format!("{:07}", i + 1);
        std::fs::copy(image, format!("{root}/image/{name}.jpg")).unwrap();
        if i < 10 {
            train.push_str(&format!("{name} {}\n", 1 + i % 4));
        } else {
            test.push_str(&format!("{name} {}\n", 100 + i % 5));
        }
    }
    std::fs::write(format!("{root}/train_test_split/train_list.txt"), train).unwrap();
    std::fs::write(format!("{root}/train_test_split/test_list_800.txt"), test).unwrap();
    let config = TransReidConfig::new(VitPreset::Tiny.config([128, 64], [16, 16]), 4);
    let checkpoint = p("tiny.safetensors");
    save_checkpoint(
        &config.init::<NdArray>(&Default::default()),
        &config,
        Path::new(&checkpoint),
    )
    .unwrap();
    let eval = |trials: &str| {
        ok(&[
            "eval",
            "--checkpoint",
            &checkpoint,
            "--dataset",
            "vehicleid",
            "--root",
            &root,
            "--trials",
            trials,
        ])
    };
    let out = eval("10");
    assert!(
        out.contains("10 random one-image-per-id galleries"),
        "{out}"
    );
    assert!(
        out.contains("| mAP | Rank-1 | Rank-5 |") && out.contains(" ± "),
        "{out}"
    );
    let out = eval("1");
    assert!(out.contains("a single random gallery draw"), "{out}");
}

#[test]
fn unreadable_images_interrupts_and_failed_runs_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = p("data");
    ok(&[
        "data",
        "synth",
        "--out",
        &data,
        "--ids",
        "8",
        "--cameras",
        "2",
    ]);
    let common = |run: &str, epochs: &str| -> Vec<String> {
        [
            "train",
            "--config",
            TINY_CONFIG,
            "--root",
            &data,
            "--output-dir",
            run,
            "--epochs",
            epochs,
            "--workers",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };

    // A finished one-epoch run gives the checkpoint evaluated below.
    let finished = p("finished");
    ok(&common(&finished, "1"));

    // Ctrl-C: where the run stopped and how to continue it.
    let run = p("interrupted");
    let child = Command::new(env!("CARGO_BIN_EXE_transreid"))
        .args(common(&run, "500"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = Path::new(&run).join("metrics.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 2 {
        assert!(started.elapsed().as_secs() < 300, "no epoch ended");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("epoch(s) are saved in"), "{stderr}");
    assert!(
        stderr.contains(&format!("transreid train --resume {run}")),
        "{stderr}"
    );
    assert!(Path::new(&run).join("state.safetensors").exists());

    // A truncated training image: the error names it and the setting that skips such images;
    // the run that finished no epoch leaves nothing behind.
    let train_dir = Path::new(&data).join("bounding_box_train");
    let first = std::fs::read_dir(&train_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let bytes = std::fs::read(&first).unwrap();
    std::fs::write(&first, &bytes[..bytes.len() / 2]).unwrap();
    let run = p("failed");
    let out = transreid(&common(&run, "1"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("image_check = \"skip-unreadable\""),
        "{stderr}"
    );
    assert!(stderr.contains(first.to_str().unwrap()), "{stderr}");
    assert!(!Path::new(&run).exists(), "the failed run's folder stayed");
    std::fs::write(&first, &bytes).unwrap();

    // `eval --skip-unreadable` leaves a bad gallery image out and names it.
    let checkpoint = Path::new(&finished).join("checkpoint.safetensors");
    let gallery_dir = Path::new(&data).join("bounding_box_test");
    // The last name: an identity's image (the first ones are junk, `-1_*`, which are not read).
    let bad = std::fs::read_dir(&gallery_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    std::fs::write(&bad, b"").unwrap();
    let eval = [
        "eval",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--dataset",
        "market1501",
        "--root",
        &data,
    ];
    fails(&eval, "is an empty file (0 bytes)");
    let out = transreid(&[&eval[..], &["--skip-unreadable"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("left out 1 unreadable image(s)"),
        "{stderr}"
    );

    // `bench check` outside the repository: its fixture is found above the binary when the
    // binary is built inside the repository, else the error says to give --fixture.
    let check = transreid_in(
        dir.path(),
        &["bench", "check", "--device", "flex", "--precision", "f32"],
    );
    let stderr = String::from_utf8_lossy(&check.stderr);
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_transreid"))
        .canonicalize()
        .unwrap();
    if binary.starts_with(&repository) {
        assert!(check.status.success(), "{stderr}");
    } else {
        assert!(!check.status.success());
        assert!(stderr.contains("give --fixture PATH"), "{stderr}");
    }
}

/// Runs an exported graph in tract (a pure-Rust ONNX runtime) on `[n, 3, H, W]` float images.
fn run_onnx(path: &str, images: Vec<f32>, shape: [usize; 4]) -> Vec<f32> {
    use tract_onnx::prelude::{Framework, InferenceModelExt, IntoRunnable, IntoTValue, Tensor};
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = Tensor::from_shape(&shape, &images).unwrap().into_tvalue();
    let out = model.run(vec![input].into()).unwrap();
    out[0]
        .try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

#[test]
fn export_gives_what_embed_gives_and_refuses_what_it_cannot_export() {
    use transreid::data::{decode_rgb, Normalization, TestTransform};
    use transreid::inference::model_transforms;
    use transreid::model::{save_checkpoint_with_input, write_safetensors, CONFIG_METADATA_KEY};

    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = p("data");
    ok(&[
        "data",
        "synth",
        "--out",
        &data,
        "--ids",
        "2",
        "--cameras",
        "2",
    ]);
    let images: Vec<String> = {
        let mut files: Vec<_> = std::fs::read_dir(Path::new(&data).join("query"))
            .unwrap()
            .map(|e| e.unwrap().path().to_str().unwrap().to_string())
            .collect();
        files.sort();
        files.truncate(3);
        files
    };
    let config = TransReidConfig::new(VitPreset::Tiny.config([64, 32], [12, 12]), 4)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(2),
        )
        .with_jpm(Some(JpmConfig::new()));
    let normalization = Normalization::IMAGENET;
    let checkpoint = p("tiny.safetensors");
    save_checkpoint_with_input(
        &config.init::<NdArray>(&Default::default()),
        &config,
        &transreid::input_normalization::input_spec(normalization, [64, 32]),
        Path::new(&checkpoint),
    )
    .unwrap();

    // embed with camera 1, and the same model exported with camera 1 baked in.
    let features = p("features.safetensors");
    let mut args = vec![
        "embed".to_string(),
        "--checkpoint".into(),
        checkpoint.clone(),
        "--images".into(),
    ];
    args.extend(images.iter().cloned());
    args.extend([
        "--out".into(),
        features.clone(),
        "--camera".into(),
        "1".into(),
    ]);
    ok(&args);
    let embedded = read_features(&features);
    let onnx = p("tiny.onnx");
    let printed = ok(&[
        "export",
        "--checkpoint",
        &checkpoint,
        "--out",
        &onnx,
        "--camera",
        "1",
        "--input",
        "normalized",
    ]);
    assert!(printed.contains("baked camera 1"), "{printed}");
    assert!(printed.contains("trtexec --onnx="), "{printed}");
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{onnx}.json")).unwrap()).unwrap();
    assert_eq!(sidecar["transreid.mean"], "0.485,0.456,0.406");
    assert_eq!(sidecar["transreid.normalization_source"], "the checkpoint");
    assert_eq!(sidecar["transreid.feature_dim"], "320");
    assert_eq!(
        sidecar["transreid.checkpoint_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    let transform =
        TestTransform::new(&model_transforms(config.vit.img_size, normalization)).unwrap();
    let pixels: Vec<f32> = images
        .iter()
        .flat_map(|path| transform.apply_to_vec(&decode_rgb(Path::new(path)).unwrap()))
        .collect();
    let got = run_onnx(&onnx, pixels, [images.len(), 3, 64, 32]);
    let scale = embedded.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(&embedded)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert_eq!(got.len(), embedded.len());
    assert!(diff <= 1e-4 * scale, "{diff} of {scale}");

    // The default contract takes a camera input; the camera SIE model has no view to bake.
    let printed = ok(&["export", "--checkpoint", &checkpoint, "--out", &onnx]);
    assert!(
        printed.contains("input `camera`, int64 [batch], 0..1"),
        "{printed}"
    );
    fails(
        &[
            "export",
            "--checkpoint",
            &checkpoint,
            "--out",
            &onnx,
            "--camera",
            "2",
        ],
        "camera id 2",
    );
    fails(
        &[
            "export",
            "--checkpoint",
            &checkpoint,
            "--out",
            &onnx,
            "--view",
            "0",
        ],
        "no view embedding",
    );
    fails(
        &[
            "export",
            "--checkpoint",
            &checkpoint,
            "--out",
            &onnx,
            "--format",
            "tflite",
        ],
        "possible values: onnx",
    );
    fails(
        &[
            "export",
            "--checkpoint",
            &checkpoint,
            "--out",
            &onnx,
            "--precision",
            "int8",
        ],
        "possible values: fp32, fp16",
    );
    fails(
        &[
            "export",
            "--checkpoint",
            &checkpoint,
            "--out",
            &p("model.pt"),
        ],
        ".onnx",
    );
    // A training state and a foreign weight file say what they are; nothing is written.
    let state = p("state.safetensors");
    let tensor = transreid::model::HostTensor::new(vec![1], vec![0.0]);
    write_safetensors(
        Path::new(&state),
        &[("optimizer.x".to_string(), tensor)].into_iter().collect(),
        [(CONFIG_METADATA_KEY.to_string(), "{}".to_string())].into(),
    )
    .unwrap();
    let fresh = p("fresh.onnx");
    fails(
        &["export", "--checkpoint", &state, "--out", &fresh],
        "a training state",
    );
    let personvit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/personvit_tiny.pth"
    );
    fails(
        &["export", "--checkpoint", personvit, "--out", &fresh],
        "transreid import --source",
    );
    assert!(!Path::new(&fresh).exists());
    let fifo = p("pipe.onnx");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    fails(
        &["export", "--checkpoint", &checkpoint, "--out", &fifo],
        "not a regular file",
    );
}

#[test]
fn explain_draws_both_images_writes_their_maps_and_refuses_what_it_cannot_explain() {
    use transreid::model::read_state_dict;

    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = p("data");
    ok(&[
        "data",
        "synth",
        "--out",
        &data,
        "--ids",
        "2",
        "--cameras",
        "2",
    ]);
    let query_dir = Path::new(&data).join("query");
    let mut queries: Vec<String> = std::fs::read_dir(&query_dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    queries.sort();
    let (query, gallery) = (queries[0].clone(), queries[queries.len() - 1].clone());
    let config = TransReidConfig::new(VitPreset::Tiny.config([64, 32], [12, 12]), 4)
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
    let explain = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["explain", "--checkpoint", &checkpoint, "--query", &query];
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    };

    // A pair, gradient method: the picture, and the maps of both images over the 5x2 grid.
    let out = p("pair.png");
    let stdout = ok(&explain(&[
        "--gallery",
        &gallery,
        "--camera",
        "name",
        "--out",
        &out,
    ]));
    assert!(stdout.contains("cosine similarity"), "{stdout}");
    let picture = image::open(&out).unwrap().to_rgb8();
    assert!(
        picture.width() >= 640 && picture.height() > 256,
        "{:?}",
        picture.dimensions()
    );
    let (maps, metadata) = read_state_dict(&dir.path().join("pair.safetensors")).unwrap();
    assert_eq!(maps.keys().collect::<Vec<_>>(), ["gallery", "query"]);
    for map in maps.values() {
        assert_eq!(map.shape, [5, 2]);
        assert!(
            map.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "{:?}",
            map.data
        );
        assert_eq!(map.data.iter().copied().fold(0.0, f32::max), 1.0);
    }
    assert!(metadata["method"].contains("cosine"), "{metadata:?}");
    let similarity: f32 = metadata["target_value"].parse().unwrap();
    assert!((-1.0..=1.0).contains(&similarity));

    // One image by rollout, with its settings; by an identity's logit.
    let out = p("rollout.png");
    let stderr = ok_stderr(&explain(&[
        "--method",
        "rollout",
        "--head-fusion",
        "max",
        "--out",
        &out,
    ]));
    assert!(
        stderr.contains("discard ratio 0.9 (the default)"),
        "{stderr}"
    );
    let (maps, metadata) = read_state_dict(&dir.path().join("rollout.safetensors")).unwrap();
    assert_eq!(maps.keys().collect::<Vec<_>>(), ["query"]);
    assert!(
        metadata["method"].contains("head fusion max"),
        "{metadata:?}"
    );
    ok(&explain(&["--identity", "3", "--out", &p("logit.png")]));

    // Settings that do not fit the method or the model, and outputs that would replace inputs.
    let png = p("x.png");
    fails(
        &explain(&["--discard-ratio", "0.5", "--out", &png]),
        "settings of --method rollout",
    );
    fails(
        &explain(&["--gallery", &gallery, "--identity", "1", "--out", &png]),
        "--identity explains one image's logit",
    );
    fails(
        &explain(&["--identity", "4", "--out", &png]),
        "not one of the model's 4 training identities",
    );
    fails(
        &explain(&["--method", "rollout", "--discard-ratio", "1", "--out", &png]),
        "must be in [0, 1)",
    );
    fails(&explain(&["--camera", "2", "--out", &png]), "camera");
    fails(&explain(&["--out", &p("x.jpg")]), ".png");
    let clash = query.replace(".jpg", ".png");
    std::fs::copy(&query, &clash).unwrap();
    fails(
        &[
            "explain",
            "--checkpoint",
            &checkpoint,
            "--query",
            &clash,
            "--out",
            &clash,
        ],
        "input",
    );
    fails(
        &explain(&["--gallery", &p("missing.jpg"), "--out", &png]),
        "missing.jpg",
    );
    assert!(!Path::new(&png).exists());

    // search --explain 2: the top two hits get their pictures, named in the JSON.
    let ranked = p("ranked.png");
    let stdout = ok(&[
        "search",
        "--checkpoint",
        &checkpoint,
        "--query",
        &query,
        "--gallery",
        Path::new(&data).join("bounding_box_test").to_str().unwrap(),
        "--camera",
        "name",
        "--top-k",
        "4",
        "--explain",
        "2",
        "--out",
        &ranked,
    ]);
    assert!(stdout.contains("explanation of #2"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("ranked.json")).unwrap()).unwrap();
    let hits = json["hits"].as_array().unwrap();
    for (i, hit) in hits.iter().enumerate() {
        let explanation = hit.get("explanation").and_then(|e| e.as_str());
        if i < 2 {
            let picture = explanation.unwrap();
            assert!(
                Path::new(picture).is_file()
                    && picture.ends_with(&format!("explain-{}.png", i + 1))
            );
            assert!(Path::new(picture).with_extension("safetensors").is_file());
        } else {
            assert_eq!(explanation, None);
        }
    }
    fails(
        &[
            "search",
            "--checkpoint",
            &checkpoint,
            "--query",
            &query,
            "--gallery",
            &gallery,
            "--method",
            "rollout",
            "--out",
            &ranked,
        ],
        "settings of --explain N",
    );
}
