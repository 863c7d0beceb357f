//! The library embedder: batches give the features of single images, every image keeps its own
//! camera and view, and bad labels or files are typed errors.

use std::path::PathBuf;

use burn::backend::Flex;
use image::RgbImage;
use transreid::data::Normalization;
use transreid::embedder::{Embedder, EmbedderError, SideLabel};
use transreid::model::{JpmConfig, SieConfig, SieMode, TransReidConfig, VitPreset};

fn embedder(batch_size: usize) -> Embedder<Flex> {
    let config = TransReidConfig::new(VitPreset::Tiny.config([64, 32], [16, 16]), 4)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::CameraView)
                .with_camera_num(2)
                .with_view_num(3),
        )
        .with_jpm(Some(JpmConfig::new()));
    let device = Default::default();
    let model = config.init::<Flex>(&device);
    Embedder::new(model, config, Normalization::HALF, batch_size, &device).unwrap()
}

fn images() -> Vec<RgbImage> {
    (0..3u32)
        .map(|k| {
            RgbImage::from_fn(40, 20, |x, y| {
                image::Rgb([
                    (x * 6 + k * 70) as u8,
                    (y * 5) as u8,
                    (k * 90 + x * y) as u8,
                ])
            })
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn each_image_keeps_its_camera_and_view_across_batches() {
    let images = images();
    let (cameras, views) = ([0, 1, 1], [2, 0, 1]);
    // Batches of two: the third image starts the second batch.
    let batched = embedder(2);
    let dim = batched.dim();
    let all = batched
        .embed_images(&images, Some(&cameras), Some(&views))
        .unwrap();
    assert_eq!(all.len(), 3 * dim);
    for i in 0..3 {
        let single = batched
            .embed_images(&images[i..=i], Some(&cameras[i..=i]), Some(&views[i..=i]))
            .unwrap();
        let diff = max_diff(&all[i * dim..(i + 1) * dim], &single);
        assert!(diff < 1e-5, "image {i}: {diff}");
    }
    // The labels reach the model: another view gives another feature.
    let other_view = batched
        .embed_images(&images[..1], Some(&[0]), Some(&[1]))
        .unwrap();
    assert!(max_diff(&all[..dim], &other_view) > 1e-3);
    // No labels: every image as camera 0, view 0.
    let unlabelled = batched.embed_images(&images, None, None).unwrap();
    let zeros = batched
        .embed_images(&images, Some(&[0; 3]), Some(&[0; 3]))
        .unwrap();
    assert_eq!(unlabelled, zeros);
}

#[test]
fn wrong_label_counts_ranges_and_files_are_typed_errors() {
    let images = images();
    let embedder = embedder(4);
    let err = embedder
        .embed_images(&images, Some(&[0, 1, 1]), Some(&[0, 1]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            EmbedderError::LabelCount {
                label: SideLabel::View,
                images: 3,
                given: 2
            }
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "3 images but 2 view ids");
    let err = embedder
        .embed_images(&images, Some(&[0]), None)
        .unwrap_err();
    assert_eq!(err.to_string(), "3 images but 1 camera ids");
    let err = embedder
        .embed_images(&images, Some(&[0, 0, 0]), Some(&[0, 3, 0]))
        .unwrap_err();
    assert!(err.to_string().contains("view id 3 out of range"), "{err}");
    let err = embedder
        .embed_images(&images, Some(&[0, 2, 0]), None)
        .unwrap_err();
    assert!(
        err.to_string().contains("camera id 2 out of range"),
        "{err}"
    );

    let mut with_empty = images.clone();
    with_empty.insert(1, RgbImage::new(0, 0));
    let err = embedder.embed_images(&with_empty, None, None).unwrap_err();
    assert!(
        matches!(err, EmbedderError::EmptyImage { index: 1 }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jpg");
    let err = embedder.embed_paths(&[missing], None, None).unwrap_err();
    assert!(err.to_string().contains("missing.jpg"), "{err}");
    let corrupt: PathBuf = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"not a jpeg").unwrap();
    let err = embedder.embed_paths(&[corrupt], None, None).unwrap_err();
    assert!(err.to_string().contains("corrupt.jpg"), "{err}");
}

#[test]
fn batches_and_feature_layouts_that_do_not_fit_are_typed_errors() {
    use transreid::data::ReidItem;
    use transreid::eval::EvalConfig;
    use transreid::inference::{embed_batch, evaluate_features, InferenceError};
    use transreid::model::LabelError;
    let device = Default::default();
    let plain = TransReidConfig::new(VitPreset::Tiny.config([64, 32], [16, 16]), 4);
    let model = plain.init::<Flex>(&device);
    let pixels = |n: usize| vec![0.5f32; n * 3 * 64 * 32];
    // Without SIE the labels are not used: none at all is fine.
    let features = embed_batch(&model, pixels(2), [2, 3, 64, 32], &[], &[], &device).unwrap();
    assert_eq!(features.len(), 2 * plain.embed_dim());
    for (values, shape) in [
        (pixels(2), [2, 3, 32, 64]),
        (pixels(2), [2, 1, 64, 32]),
        (pixels(1), [2, 3, 64, 32]),
    ] {
        let err = embed_batch(&model, values, shape, &[], &[], &device).unwrap_err();
        assert!(
            matches!(
                err,
                InferenceError::BatchShape {
                    input: [64, 32],
                    ..
                }
            ),
            "{err}"
        );
    }
    // With camera SIE, one camera per image.
    let sie = plain.clone().with_sie(
        SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(2),
    );
    let model = sie.init::<Flex>(&device);
    let err = embed_batch(&model, pixels(2), [2, 3, 64, 32], &[0], &[0], &device).unwrap_err();
    assert!(
        matches!(
            err,
            InferenceError::Label(LabelError::LengthMismatch {
                what: "cameras",
                expected: 2,
                got: 1
            })
        ),
        "{err}"
    );

    // A view-only table takes the views alone, and names them when they are missing.
    let views = plain
        .clone()
        .with_sie(SieConfig::new().with_mode(SieMode::View).with_view_num(3));
    let model = views.init::<Flex>(&device);
    embed_batch(&model, pixels(2), [2, 3, 64, 32], &[], &[2, 1], &device).unwrap();
    let err = embed_batch(&model, pixels(2), [2, 3, 64, 32], &[0, 0], &[], &device).unwrap_err();
    assert!(
        matches!(
            err,
            InferenceError::Label(LabelError::LengthMismatch { what: "views", .. })
        ),
        "{err}"
    );

    let items: Vec<ReidItem> = (0..4).map(|i| ReidItem::new("x.jpg", i % 2, i)).collect();
    let config = EvalConfig::default();
    for (values, num_query) in [(8, 5), (7, 2)] {
        let err =
            evaluate_features(&vec![0.0; values], &items, num_query, None, &config).unwrap_err();
        assert!(
            matches!(err, InferenceError::FeatureLayout { items: 4, .. }),
            "{err}"
        );
    }
}
