//! `transreid train` on a CLIP-ReID configuration: a CLIP file in OpenAI's layout (a tiny one,
//! written here) trains through both stages into one run folder, stops in either stage and
//! resumes; configurations that cannot work are refused before anything is written; CLIP
//! files and trained CLIP-ReID models import into checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use transreid::model::{read_state_dict, write_safetensors, HostTensor, StateDict};

mod cli_support;
mod tiny_clip;
use cli_support::{fails, ok};
use tiny_clip::{config, write_tiny_clip};

fn rows(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count() - 1
}

#[test]
fn clip_reid_trains_through_both_stages_and_resumes_in_either() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = p("data");
    ok(&[
        "data",
        "synth",
        "--out",
        &data,
        "--ids",
        "6",
        "--cameras",
        "2",
    ]);
    let clip = p("clip.safetensors");
    write_tiny_clip(Path::new(&clip), true);
    let run = p("run");
    let cfg = p("clip.toml");
    std::fs::write(&cfg, config(&data, &run, &clip, "", true)).unwrap();
    let run_dir = Path::new(&run);

    let out = ok(&["train", "--config", &cfg, "--stop-after-prompts", "1"]);
    assert!(out.contains("OpenAi layout"), "{out}");
    assert!(out.contains("text tower loaded"), "{out}");
    assert!(out.contains("prompts   1"), "{out}");
    assert!(run_dir.join("prompt_state.safetensors").is_file());
    assert!(!run_dir.join("state.safetensors").exists());
    assert_eq!(rows(&run_dir.join("prompt_metrics.csv")), 1);
    assert!(run_dir.join("prompt_training.png").is_file());
    fails(
        &["train", "--config", &cfg],
        "already holds a run: resume it",
    );

    let out = ok(&["train", "--resume", &run, "--stop-after", "1"]);
    assert!(
        out.contains("prompts   2") && out.contains("epoch   1"),
        "{out}"
    );
    assert_eq!(rows(&run_dir.join("prompt_metrics.csv")), 2);
    assert_eq!(rows(&run_dir.join("metrics.csv")), 1);

    let out = ok(&["train", "--resume", &run]);
    assert!(!out.contains("prompts "), "stage 1 is done: {out}");
    assert!(out.contains("last evaluation: mAP"), "{out}");
    assert_eq!(rows(&run_dir.join("metrics.csv")), 2);
    let checkpoint = run_dir.join("checkpoint.safetensors");
    // `eval` reads the CLIP-ReID checkpoint and its input normalisation: the run's numbers.
    let trained_map = percent_after(&out, "last evaluation: mAP ");
    let eval = ok(&[
        "eval",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--dataset",
        "market1501",
        "--root",
        &data,
    ]);
    let table_row = eval.lines().nth(2).unwrap();
    let eval_map = percent_after(table_row, "| ");
    assert_eq!(eval_map, trained_map, "{eval}");

    // `embed` and `search` serve it like a TransReID checkpoint: 32 + 32 features per image
    // (class token after ln_post, projected class token).
    let features = p("features.safetensors");
    let query = format!("{data}/query");
    let ckpt = checkpoint.to_str().unwrap();
    ok(&[
        "embed",
        "--checkpoint",
        ckpt,
        "--images",
        &query,
        "--out",
        &features,
        "--camera",
        "name",
    ]);
    let bytes = std::fs::read(&features).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let queries = std::fs::read_dir(&query).unwrap().count();
    assert_eq!(
        file.tensor("features").unwrap().shape(),
        &[queries, 64 + 32]
    );
    let mut first: Vec<_> = std::fs::read_dir(&query)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    first.sort();
    let ranked = p("ranked.png");
    ok(&[
        "search",
        "--checkpoint",
        ckpt,
        "--query",
        first[0].to_str().unwrap(),
        "--gallery",
        &format!("{data}/bounding_box_test"),
        "--top-k",
        "3",
        "--out",
        &ranked,
        "--camera",
        "name",
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("ranked.json")).unwrap()).unwrap();
    assert_eq!(json["hits"].as_array().unwrap().len(), 3);
    // `export` writes its ONNX graph (crates/transreid-model/tests/onnx_export.rs runs such
    // graphs against `embed`).
    let onnx = p("model.onnx");
    let out = ok(&[
        "export",
        "--checkpoint",
        ckpt,
        "--out",
        &onnx,
        "--camera",
        "1",
    ]);
    assert!(
        out.contains("output `features`: float32 [batch, 96] (class token 64,projection 32)"),
        "{out}"
    );
    let sidecar: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(format!("{onnx}.json")).unwrap()).unwrap();
    assert_eq!(sidecar["transreid.method"], "clip_reid");
    assert_eq!(sidecar["transreid.sie.camera"], "baked camera 1");
    assert!(std::fs::metadata(&onnx).unwrap().len() > 100_000);
    // `explain` draws why a query and a gallery image match (gradient maps of the pair's
    // cosine similarity) and writes the maps: a 4 x 2 patch grid.
    let why = p("why.png");
    let out = ok(&[
        "explain",
        "--checkpoint",
        ckpt,
        "--query",
        first[0].to_str().unwrap(),
        "--gallery",
        first[1].to_str().unwrap(),
        "--out",
        &why,
        "--camera",
        "name",
    ]);
    assert!(out.contains("cosine similarity"), "{out}");
    assert!(std::fs::metadata(&why).unwrap().len() > 1000);
    let (maps, _) = read_state_dict(Path::new(&p("why.safetensors"))).unwrap();
    for role in ["query", "gallery"] {
        assert_eq!(maps[role].shape, [4, 2], "{role}");
    }
}

/// The number before the `%` that follows `marker`.
fn percent_after(text: &str, marker: &str) -> f64 {
    let rest = &text[text.find(marker).unwrap() + marker.len()..];
    rest[..rest.find('%').unwrap()].trim().parse().unwrap()
}

#[test]
fn clip_reid_configurations_that_cannot_work_are_refused() {
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
    let image_only = p("image_only.safetensors");
    write_tiny_clip(Path::new(&image_only), false);
    let cfg = p("clip.toml");
    let run = p("run");
    let write = |text: String| std::fs::write(&cfg, text).unwrap();

    // Two stages need the text tower; the baseline does not.
    write(config(&data, &run, &image_only, "", true));
    fails(&["train", "--config", &cfg], "lacks (missing `");
    assert!(!Path::new(&run).exists(), "nothing written");
    write(config(&data, &run, &image_only, "", false));
    let out = ok(&["train", "--config", &cfg, "--epochs", "1"]);
    assert!(out.contains("image tower only"), "{out}");
    assert!(Path::new(&run).join("checkpoint.safetensors").is_file());
    assert!(!Path::new(&run).join("prompt_state.safetensors").exists());

    let run2 = p("run2");
    write(config(
        &data,
        &run2,
        &image_only,
        "backbone = \"vit_base16\"",
        false,
    ));
    fails(&["train", "--config", &cfg], "takes no model.backbone");
    write(config(&data, &run2, &image_only, "drop_path = 0.2", false));
    fails(&["train", "--config", &cfg], "has no drop path");
    write(config(&data, &run2, &image_only, "", false).replace(
        "[clip_reid]\nobject = \"person\"\n",
        "[loss]\nid_weight = 1.0\ntriplet_weight = 1.0\nlabel_smoothing = 0.0\nmargin = \"soft\"\n",
    ));
    fails(&["train", "--config", &cfg], "add a [clip_reid] section");
    write(config(&data, &run2, &image_only, "", false));
    fails(
        &["train", "--config", &cfg, "--precision", "f16"],
        "trains in f32 only",
    );
    fails(
        &["train", "--config", &cfg, "--stop-after-prompts", "1"],
        "with a prompt stage",
    );
    assert!(!Path::new(&run2).exists(), "nothing written");
}

#[test]
fn clip_files_and_trained_clip_reid_models_import_into_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let clip = p("clip.safetensors");
    write_tiny_clip(Path::new(&clip), true);
    let imported = p("imported.safetensors");
    let base = [
        "import",
        "--source",
        &clip,
        "--size",
        "64",
        "32",
        "--cameras",
        "2",
    ];
    let args = |base: &[&str], extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let with = |extra: &[&str]| args(&base, extra);

    // CLIP weights: the towers from the file, new heads, the CLIP-ReID normalisation.
    fails(&with(&["--out", &imported]), "--num-classes is needed");
    fails(
        &with(&["--out", &imported, "--num-classes", "6"]),
        "--sie-coefficient is needed",
    );
    let out = ok(&with(&[
        "--out",
        &imported,
        "--num-classes",
        "6",
        "--sie-coefficient",
        "1.0",
    ]));
    for line in [
        "detected CLIP in OpenAI / open_clip layout: width 64, 1 blocks, patch 16, projection 32; \
         text tower imported with the prompts",
        "position embedding resized from 4 to 4x2 patches",
        "prompts end in \"person.\"",
        "input normalisation: mean 0.5 std 0.5",
        "coefficient 1",
    ] {
        assert!(out.contains(line), "`{line}` not in {out}");
    }
    let (tensors, metadata) = read_state_dict(Path::new(&imported)).unwrap();
    assert_eq!(tensors["classifier.weight"].shape, [6, 64]);
    assert_eq!(tensors["cv_embed"].shape, [2, 64]);
    assert!(tensors.contains_key("prompt_learner.cls_ctx"));
    assert!(metadata["transreid.input"].contains("\"mean\":[0.5,0.5,0.5]"));
    let imagenet = p("imagenet.safetensors");
    let out = ok(&[
        "import",
        "--source",
        &clip,
        "--size",
        "64",
        "32",
        "--num-classes",
        "6",
        "--normalization",
        "imagenet",
        "--image-only",
        "--out",
        &imagenet,
    ]);
    assert!(!out.contains("input normalisation"), "{out}");
    assert!(out.contains("text tower left out (--image-only)"), "{out}");
    let (tensors, metadata) = read_state_dict(Path::new(&imagenet)).unwrap();
    assert!(!tensors.keys().any(|k| k.starts_with("text_encoder.")));
    assert!(
        metadata["transreid.input"].contains("0.485"),
        "{metadata:?}"
    );

    // A trained CLIP-ReID model in the reference's layout (a `module.` wrapper, `[1, T, D]`
    // prompt buffers, the suffix with its 68 rows up to 77 tokens, BatchNorm counters) imports
    // tensor for tensor.
    let (ours, _) = read_state_dict(Path::new(&imported)).unwrap();
    let mut reference = StateDict::new();
    for (key, tensor) in &ours {
        let mut tensor = tensor.clone();
        if key.starts_with("prompt_learner.token_") {
            let width = tensor.shape[1];
            let rows = if key.ends_with("suffix") {
                68
            } else {
                tensor.shape[0]
            };
            tensor.data.resize(rows * width, 0.5);
            tensor.shape = vec![1, rows, width];
        }
        reference.insert(format!("module.{key}"), tensor);
    }
    for bn in ["bottleneck", "bottleneck_proj"] {
        reference.insert(
            format!("module.{bn}.num_batches_tracked"),
            HostTensor::new(vec![], vec![7.0]),
        );
    }
    let trained = p("reference_layout.safetensors");
    write_safetensors(Path::new(&trained), &reference, BTreeMap::new()).unwrap();
    let reimported = p("reimported.safetensors");
    let again = |extra: &[&str]| {
        args(
            &["import", "--source", &trained, "--out", &reimported],
            extra,
        )
    };
    fails(&again(&[]), "has an SIE table of 2 rows: give --cameras");
    fails(
        &again(&["--cameras", "3", "--sie-coefficient", "1"]),
        "SIE table has 2 rows",
    );
    fails(
        &again(&["--cameras", "2", "--sie-coefficient", "1"]),
        "trained at a grid of 8 patches, but --size 256 128 --stride 16 make 16x8",
    );
    let trained_args = [
        "--cameras",
        "2",
        "--sie-coefficient",
        "1",
        "--size",
        "64",
        "32",
    ];
    fails(
        &again(&[&trained_args[..], &["--num-classes", "5"]].concat()),
        "the file's classifier has 6 classes",
    );
    fails(
        &again(&[&trained_args[..], &["--jpm"]].concat()),
        "--jpm is for TransReID backbones",
    );
    fails(
        &again(&[&trained_args[..], &["--image-only", "--object", "vehicle"]].concat()),
        "this import has no prompts",
    );
    assert!(!Path::new(&reimported).exists(), "nothing written");
    let out = ok(&again(
        &[&trained_args[..], &["--object", "person"]].concat(),
    ));
    assert!(out.contains("detected a trained CLIP-ReID model"), "{out}");
    assert!(out.contains("every tensor from the file"), "{out}");
    let (back, _) = read_state_dict(Path::new(&reimported)).unwrap();
    assert_eq!(back.len(), ours.len());
    for (key, tensor) in &ours {
        assert_eq!(
            (&back[key].shape, &back[key].data),
            (&tensor.shape, &tensor.data),
            "{key}"
        );
    }
    // A TransReID import names what the file is for.
    fails(
        &[
            "import",
            "--source",
            &clip,
            "--kind",
            "imagenet",
            "--num-classes",
            "6",
            "--out",
            &p("vit.safetensors"),
        ],
        "it is for CLIP-ReID: `transreid import --kind clip`",
    );

    // The imported model embeds, and starts a CLIP-ReID run with its encoders.
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
    let features = p("features.safetensors");
    ok(&[
        "embed",
        "--checkpoint",
        &imported,
        "--images",
        &format!("{data}/query"),
        "--out",
        &features,
        "--camera",
        "name",
    ]);
    let cfg = p("clip.toml");
    std::fs::write(&cfg, config(&data, &p("run"), &imported, "", true)).unwrap();
    let out = ok(&["train", "--config", &cfg, "--stop-after-prompts", "1"]);
    assert!(
        out.contains("a trained CLIP-ReID model: its encoders and fixed prompt tokens are loaded"),
        "{out}"
    );
}
