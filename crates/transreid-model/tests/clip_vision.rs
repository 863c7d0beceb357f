//! CLIP-ReID's image encoder against the reference (`scripts/clip_vision_fixture.py`): the
//! position-grid resize, and the three outputs at stride 16 and 12 with and without side
//! information; strict loading of the OpenAI layout.

use std::path::PathBuf;

use burn::backend::NdArray;
use burn::prelude::*;
use transreid_model::{
    load_clip_vision, read_state_dict, ClipVision, ClipVisionConfig, HostTensor, ImportError,
    StateDict,
};

type B = NdArray;

fn fixture() -> StateDict {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_vision.safetensors");
    read_state_dict(&path).unwrap().0
}

fn model(stride: usize) -> ClipVision<B> {
    ClipVisionConfig::new([64, 40], 32, 12, 2, 16)
        .with_stride([stride, stride])
        .init(&Default::default())
}

fn tensor<const D: usize>(t: &HostTensor) -> Tensor<B, D> {
    Tensor::from_data(
        TensorData::new(t.data.clone(), t.shape.clone()),
        &Default::default(),
    )
}

fn assert_close<const D: usize>(got: Tensor<B, D>, expected: &HostTensor, tol: f32, what: &str) {
    assert_eq!(got.dims().to_vec(), expected.shape, "{what}: shape");
    let got = got.into_data().to_vec::<f32>().unwrap();
    let worst = got
        .iter()
        .zip(&expected.data)
        .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: worst difference {worst}");
}

#[test]
fn the_encoder_equals_the_reference_at_both_strides_with_and_without_side_information() {
    let dict = fixture();
    let images = tensor::<4>(&dict["input.images"]);
    let side = tensor::<2>(&dict["input.side"]);
    for stride in [16, 12] {
        let mut model = model(stride);
        load_clip_vision(&mut model, &dict, "visual.").unwrap();
        let grid = model.grid();
        assert_eq!(grid, if stride == 16 { [4, 2] } else { [5, 3] });
        assert_close(
            model.positional_embedding.val(),
            &dict[&format!("s{stride}.positional_embedding")],
            1e-6,
            &format!("stride {stride}: resized position embedding"),
        );
        for (case, side) in [("plain", None), ("side", Some(side.clone()))] {
            let out = model.forward(images.clone(), side);
            let key = |what: &str| format!("s{stride}.{case}.{what}");
            assert_close(
                out.before_last,
                &dict[&key("before_last")],
                1e-4,
                &key("before_last"),
            );
            assert_close(out.last, &dict[&key("last")], 1e-4, &key("last"));
            assert_close(
                out.projected,
                &dict[&key("projected")],
                1e-4,
                &key("projected"),
            );
        }
    }
}

#[test]
fn missing_unexpected_and_mis_shaped_keys_are_refused() {
    let dict = fixture();
    let mut without = dict.clone();
    without.remove("visual.transformer.resblocks.3.attn.in_proj_bias");
    match load_clip_vision(&mut model(16), &without, "visual.") {
        Err(ImportError::MissingKeys(keys)) => {
            assert_eq!(keys, ["visual.transformer.resblocks.3.attn.in_proj_bias"])
        }
        other => panic!("{other:?}"),
    }

    let mut extra = dict.clone();
    extra.insert(
        "visual.transformer.resblocks.12.ln_1.weight".into(),
        HostTensor::new(vec![32], vec![1.0; 32]),
    );
    match load_clip_vision(&mut model(16), &extra, "visual.") {
        Err(ImportError::UnexpectedKeys(keys)) => {
            assert_eq!(keys, ["visual.transformer.resblocks.12.ln_1.weight"])
        }
        other => panic!("{other:?}"),
    }

    let mut wrong = dict.clone();
    wrong.insert(
        "visual.transformer.resblocks.0.mlp.c_fc.weight".into(),
        HostTensor::new(vec![64, 32], vec![0.0; 64 * 32]),
    );
    match load_clip_vision(&mut model(16), &wrong, "visual.") {
        Err(ImportError::ShapeMismatch { key, expected, got }) => {
            assert_eq!(key, "visual.transformer.resblocks.0.mlp.c_fc.weight");
            assert_eq!((expected, got), (vec![128, 32], vec![64, 32]));
        }
        other => panic!("{other:?}"),
    }

    // Another prefix finds no tower at all.
    assert!(matches!(
        load_clip_vision(&mut model(16), &dict, "image_encoder."),
        Err(ImportError::MissingKeys(keys)) if keys.len() == 8 + 12 * 12
    ));
}
