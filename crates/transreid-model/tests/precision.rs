//! Mixed precision: bf16 / f16 products against f32 on the same weights. Its own test binary,
//! so that nothing else draws from the seeded backend generator while the model initialises.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use common::{images, labels, squared_sum, tiny, values};
use transreid_model::{Precision, SieMode};

/// `‖a − b‖ / ‖b‖` (Euclidean norms over all elements).
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

#[test]
fn reduced_precision_products_track_f32_and_keep_f32_parameters() {
    type Mixed = Autodiff<Flex>;
    let device = Default::default();
    // Fixed weights: how far bf16 strays depends on them (q / k gradients cancel through the
    // softmax), and this binary's single test makes the seeded initialisation reproducible.
    Mixed::seed(&device, 0);
    let model = tiny(true, SieMode::Camera).init::<Mixed>(&device);
    // Everything the loss sees, and one weight gradient in every kind of layer.
    let run = |model: &transreid_model::TransReid<Mixed>| {
        let out = model.forward_train(
            images(4, 64, 32, &device),
            labels(&[0, 1, 2, 0], &device),
            None,
        );
        for t in out.scores.iter().chain(&out.feats) {
            assert_eq!(t.dtype(), burn::tensor::DType::F32, "outputs leave in f32");
        }
        let outputs: Vec<f32> = out
            .scores
            .iter()
            .chain(&out.feats)
            .flat_map(|t| values(t.clone()))
            .collect();
        let loss = squared_sum(out);
        let grads = loss.backward();
        let block = &model.base.blocks[1];
        let b2 = &model.b2.as_ref().unwrap().block;
        let grads: Vec<Vec<f32>> = [
            block.attn.qkv.weight.grad(&grads).unwrap(),
            block.attn.proj.weight.grad(&grads).unwrap(),
            block.mlp.fc2.weight.grad(&grads).unwrap(),
            b2.mlp.fc1.weight.grad(&grads).unwrap(),
        ]
        .into_iter()
        .map(|g| {
            assert_eq!(g.dtype(), burn::tensor::DType::F32, "f32 master gradients");
            values(g)
        })
        .collect();
        (outputs, grads)
    };
    let (want_out, want_grads) = run(&model);
    // bf16 keeps 8 significant bits, f16 11: errors of a few ulp through four blocks.
    for (precision, tolerance) in [(Precision::Bf16, 1.5e-2), (Precision::F16, 2e-3)] {
        let mixed = model.clone().with_precision(precision);
        assert_eq!(
            mixed.base.blocks[0].attn.qkv.weight.val().dtype(),
            burn::tensor::DType::F32
        );
        let (out, grads) = run(&mixed);
        let error = relative_error(&out, &want_out);
        assert!(
            error > 0.0 && error < tolerance,
            "{precision:?} outputs: relative error {error}"
        );
        for (i, (g, want)) in grads.iter().zip(&want_grads).enumerate() {
            let error = relative_error(g, want);
            assert!(
                error > 0.0 && error < 2.0 * tolerance,
                "{precision:?} gradient {i}: relative error {error}"
            );
        }
    }
}
