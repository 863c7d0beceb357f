//! Training runs on `TrainBackend` (autodiff that recomputes memory-bound operations in the
//! backward pass instead of keeping their outputs): its loss and gradients must be those of
//! plain autodiff, with drop path on (its masks are drawn once, in the forward pass).

use burn::backend::{Autodiff, Flex};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use transreid::backend::TrainBackend;
use transreid_model::{load_checkpoint, save_checkpoint};

mod common;
use common::{batch_loss, batch_model_config, grads_by_name};

/// Loss and every parameter's gradient of one training step's forward and backward.
fn loss_and_grads<A: AutodiffBackend>(
    checkpoint: &std::path::Path,
) -> (f32, std::collections::HashMap<String, Vec<f32>>) {
    let device = Default::default();
    let (model, _) = load_checkpoint::<A>(checkpoint, &device).unwrap();
    // The same generator state before each forward: the same drop-path masks.
    A::seed(&device, 7);
    let loss = batch_loss(&model, 0);
    let value = loss.clone().into_scalar().elem::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (value, grads_by_name(&model, &grads))
}

#[test]
fn recomputing_memory_bound_operations_keeps_loss_and_gradients() {
    let config = batch_model_config(0.3, true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_checkpoint(&config.init::<Flex>(&Default::default()), &config, &path).unwrap();

    let (want_loss, want) = loss_and_grads::<Autodiff<Flex>>(&path);
    let (loss, got) = loss_and_grads::<TrainBackend<Flex>>(&path);
    assert_eq!(loss, want_loss);
    // Every trainable parameter but the unused last backbone block (JPM) has a gradient.
    assert!(want.len() > 50, "{} gradients", want.len());
    assert_eq!(
        got.keys().collect::<std::collections::BTreeSet<_>>(),
        want.keys().collect()
    );
    for (name, w) in &want {
        assert_eq!(&got[name], w, "{name}");
    }
    // Drop path was active: another seed gives another loss.
    let device = Default::default();
    let (model, _) = load_checkpoint::<TrainBackend<Flex>>(&path, &device).unwrap();
    let images = Tensor::<TrainBackend<Flex>, 4>::ones([8, 3, 64, 32], &device);
    let cams = Tensor::<TrainBackend<Flex>, 1, Int>::zeros([8], &device);
    let feats = |seed| {
        TrainBackend::<Flex>::seed(&device, seed);
        let out = model.forward_train(images.clone(), Some(cams.clone()), None);
        out.feats[0].clone().into_data().to_vec::<f32>().unwrap()
    };
    assert_ne!(feats(1), feats(2), "drop path draws per seed");
}
