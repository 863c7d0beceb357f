//! Original PyTorch `.pth` files (zip format, written by torch.save; see scripts/pth_fixtures.py).

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use transreid_model::{
    export_state_dict, load_imagenet, load_reference, read_state_dict, resize_pos_embed,
    ImportOptions, JpmConfig, SieConfig, SieMode, TransReidConfig, VitConfig,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn deit_distilled_pth_drops_the_distillation_token() {
    let device = Default::default();
    let config = TransReidConfig::new(VitConfig::new([256, 128], 48, 2, 3), 10)
        .with_jpm(Some(JpmConfig::new()));
    let mut model = config.init::<NdArray>(&device);
    let report = load_imagenet(
        &mut model,
        &fixture("deit_distilled_tiny.pth"),
        ImportOptions::default(),
    )
    .unwrap();
    assert!(report.dropped_dist_token);
    assert_eq!(report.pos_embed_resized, Some((198, 129)));

    // Same as resizing the checkpoint's pos_embed without token 1.
    let (timm, _) = read_state_dict(&fixture("timm_vit_w48.safetensors")).unwrap();
    let expected = resize_pos_embed(&timm["pos_embed"].data, 48, 1, [16, 8]).unwrap();
    let got: Vec<f32> = model.base.pos_embed.val().into_data().to_vec().unwrap();
    assert!(got.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6));

    let exported = export_state_dict(&model);
    assert_eq!(
        exported["base.blocks.1.attn.qkv.weight"],
        timm["blocks.1.attn.qkv.weight"]
    );
    assert_eq!(exported["base.norm.weight"], timm["norm.weight"]);
    // The JPM branches start from the last block.
    assert_eq!(
        exported["b1.0.mlp.fc2.weight"],
        timm["blocks.1.mlp.fc2.weight"]
    );
    assert_eq!(exported["b2.1.bias"], timm["norm.bias"]);
}

#[test]
fn reference_pth_with_wrapper_and_module_prefix() {
    let device = Default::default();
    let vit = VitConfig::new([64, 32], 64, 4, 4).with_stride([8, 8]);
    let config = TransReidConfig::new(vit, 5)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::CameraView)
                .with_camera_num(3)
                .with_view_num(2),
        )
        .with_jpm(Some(JpmConfig::new()));
    let mut model = config.init::<NdArray>(&device);
    let path = fixture("reference_tiny.pth");
    load_reference(&mut model, &path, ImportOptions::default()).unwrap();
    let (saved, _) = read_state_dict(&path).unwrap();
    let exported = export_state_dict(&model);
    let mut compared = 0;
    for (key, tensor) in &saved {
        if key.ends_with("num_batches_tracked") || key.starts_with("base.fc.") {
            continue;
        }
        assert_eq!(&exported[key], tensor, "{key}");
        compared += 1;
    }
    assert_eq!(compared, exported.len());

    // A wrong model for the file is a typed error naming the key.
    let mut other = config.clone().with_jpm(None).init::<NdArray>(&device);
    let err = load_reference(&mut other, &path, ImportOptions::default()).unwrap_err();
    assert!(err.to_string().contains("unexpected"), "{err}");
}
