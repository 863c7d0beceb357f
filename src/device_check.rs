//! A backend's numbers against the reference implementation's: the tiny JPM + camera/view SIE
//! TransReID of `tests/fixtures/reference_model.safetensors` (written by
//! scripts/reference_model_fixture.py from the reference code), its eval features, its training
//! loss and every parameter's gradient, computed on any device and precision.
//! `transreid bench check` runs it; the GPU check (scripts/gpu-check.sh) uses it to validate a
//! device before anything is timed.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use serde::Serialize;
use transreid_loss::{transreid_loss, LossError, ObjectiveConfig};
use transreid_model::{
    load_reference_dict, read_state_dict, reference_key, HostTensor, ImportError, ImportOptions,
    JpmConfig, Precision, SieConfig, SieMode, StateDict, TransReidConfig, VitConfig,
};

/// What [`check_device`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceCheck {
    /// Dtype of the products.
    pub precision: Precision,
    /// Largest deviation of the eval features from the reference's, relative to their scale.
    pub feature_error: f64,
    /// Deviation of the training loss, relative to it.
    pub loss_error: f64,
    /// Largest deviation of a parameter's gradient, relative to that gradient's scale.
    pub gradient_error: f64,
    /// The parameter of [`Self::gradient_error`].
    pub worst_gradient: String,
    /// Gradients compared (every one the fixture holds).
    pub gradients: usize,
    /// The bound on the feature and loss errors ([`tolerances`]).
    pub tolerance: f64,
    /// The bound on the gradient error ([`tolerances`]).
    pub gradient_tolerance: f64,
    /// Whether every error is within the tolerance.
    pub passed: bool,
}

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum DeviceCheckError {
    /// The fixture cannot be read or loaded.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The fixture lacks a tensor.
    #[error("the fixture has no `{0}`")]
    Missing(String),
    /// The loss cannot be computed on the fixture's batch.
    #[error(transparent)]
    Loss(#[from] LossError),
}

/// The bounds on relative errors, `(features and loss, gradients)`: 1e-4 for both in f32
/// (summation order differs between devices). In bf16 / f16 the products round their inputs to
/// 8 / 11 significant bits (relative 2^-8 = 3.9e-3 for bf16): features and loss stay within
/// 3e-2, but the attention's q / k gradients cancel through the softmax and reach 0.115 of
/// their scale in bf16 on the CPU (flex, the JPM branch's `qkv.weight`), so gradients get 0.25:
/// still far below the O(1) error of a wrong kernel.
pub fn tolerances(precision: Precision) -> (f64, f64) {
    match precision {
        Precision::F32 => (1e-4, 1e-4),
        Precision::Bf16 | Precision::F16 => (3e-2, 0.25),
    }
}

/// The fixture's model: ViT 64x32, D 64, 4 blocks, 4 heads, stride 8, camera + view SIE (3 x 2),
/// JPM, 5 identities, no drop path.
fn fixture_config() -> TransReidConfig {
    let vit = VitConfig::new([64, 32], 64, 4, 4)
        .with_stride([8, 8])
        .with_drop_path_rate(0.0);
    TransReidConfig::new(vit, 5)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::CameraView)
                .with_camera_num(3)
                .with_view_num(2),
        )
        .with_jpm(Some(JpmConfig::new()))
}

/// `max |got - want| / max(max |want|, 1e-2)`: the scale has a floor because two gradients
/// (the JPM branches' final LayerNorm biases) are mathematically zero.
pub(crate) fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-2);
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    f64::from(worst / scale)
}

/// Runs the fixture's model on `device` in `precision`: eval features (before the neck), the
/// TransReID loss of one training forward and every parameter's gradient, each compared with
/// the reference's.
pub fn check_device<B: AutodiffBackend>(
    fixture: &Path,
    precision: Precision,
    device: &B::Device,
) -> Result<DeviceCheck, DeviceCheckError> {
    let (tensors, _) = read_state_dict(fixture)?;
    let get = |key: &str| fixture_tensor(&tensors, key);
    let weights: StateDict = tensors
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("weights.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let mut model = fixture_config().init::<B>(device);
    load_reference_dict(&mut model, weights, ImportOptions::default())?;
    let model = model.with_precision(precision);

    let images = fixture_images::<B>(&tensors, device)?;
    let ints = |key: &str| fixture_ids::<B>(&tensors, key, device);
    let (cams, _) = ints("input.cams")?;
    let (views, _) = ints("input.views")?;
    let (targets, pids) = ints("input.pids")?;

    let features = model.valid().embed(
        images.clone().inner(),
        Some(cams.clone().inner()),
        Some(views.clone().inner()),
    );
    let feature_error = relative_error(&values(features), &get("eval.feat_before")?.data);

    let out = model.forward_train(images, Some(cams), Some(views));
    let loss = transreid_loss(
        &out.scores,
        &out.feats,
        targets,
        &pids,
        &ObjectiveConfig::default(),
    )?;
    let want = f64::from(get("train.loss")?.data[0]);
    let got = f64::from(values(loss.total.clone())[0]);
    let loss_error = ((got - want) / want).abs();

    let grads = GradientsParams::from_grads(loss.total.backward(), &model);
    let mut worst = WorstGradient::default();
    for (name, grad) in grads_by_name(&model, &grads) {
        let want = get(&format!("grad.{name}"))?;
        worst.compare(name, grad, want);
    }
    let WorstGradient {
        error: gradient_error,
        name: worst_gradient,
        compared: gradients,
    } = worst;
    let reference_gradients = tensors.keys().filter(|k| k.starts_with("grad.")).count();
    let (tolerance, gradient_tolerance) = tolerances(precision);
    let passed = gradients == reference_gradients
        && feature_error <= tolerance
        && loss_error <= tolerance
        && gradient_error <= gradient_tolerance;
    Ok(DeviceCheck {
        precision,
        feature_error,
        loss_error,
        gradient_error,
        worst_gradient,
        gradients,
        tolerance,
        gradient_tolerance,
        passed,
    })
}

/// The fixture's tensor `key`.
pub(crate) fn fixture_tensor<'a>(
    tensors: &'a StateDict,
    key: &str,
) -> Result<&'a HostTensor, DeviceCheckError> {
    tensors
        .get(key)
        .ok_or_else(|| DeviceCheckError::Missing(key.to_string()))
}

/// The fixture's `input.images` on `device`.
pub(crate) fn fixture_images<B: Backend>(
    tensors: &StateDict,
    device: &B::Device,
) -> Result<Tensor<B, 4>, DeviceCheckError> {
    let images = fixture_tensor(tensors, "input.images")?;
    Ok(Tensor::from_data(
        TensorData::new(images.data.clone(), images.shape.clone()),
        device,
    ))
}

/// The fixture's ids `key` on `device`, and on the host.
pub(crate) fn fixture_ids<B: Backend>(
    tensors: &StateDict,
    key: &str,
    device: &B::Device,
) -> Result<(Tensor<B, 1, Int>, Vec<i64>), DeviceCheckError> {
    let values: Vec<i64> = fixture_tensor(tensors, key)?
        .data
        .iter()
        .map(|&v| v as i64)
        .collect();
    let n = values.len();
    Ok((
        Tensor::from_data(TensorData::new(values.clone(), [n]), device),
        values,
    ))
}

/// The largest relative gradient error seen, and where.
#[derive(Default)]
pub(crate) struct WorstGradient {
    pub error: f64,
    pub name: String,
    pub compared: usize,
}

impl WorstGradient {
    /// Compares Burn's gradient of the parameter `name` (flattened in Burn's layout) with the
    /// reference's; PyTorch stores Linear weights `[out, in]`, Burn `[in, out]`.
    pub fn compare(&mut self, name: String, grad: Vec<f32>, want: &HostTensor) {
        let got = if want.shape.len() == 2 && name.ends_with("weight") {
            HostTensor::new(vec![want.shape[1], want.shape[0]], grad)
                .transposed()
                .data
        } else {
            grad
        };
        let error = relative_error(&got, &want.data);
        if error >= self.error {
            self.error = error;
            self.name = name;
        }
        self.compared += 1;
    }
}

pub(crate) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 data")
}

/// Every parameter's gradient by its reference name, flattened in Burn's layout.
pub(crate) fn grads_by_name<A: AutodiffBackend, M: Module<A> + ModuleSnapshot<A>>(
    model: &M,
    grads: &GradientsParams,
) -> Vec<(String, Vec<f32>)> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        names: HashMap<ParamId, String>,
        out: Vec<(String, Vec<f32>)>,
    }
    impl<A: AutodiffBackend> ModuleVisitor<A> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(g) = self.grads.get::<A::InnerBackend, D>(param.id) {
                self.out.push((self.names[&param.id].clone(), values(g)));
            }
        }
    }
    let names = model
        .collect(None, None, false)
        .into_iter()
        .filter_map(|s| Some((s.tensor_id?, reference_key(&s.full_path()))))
        .collect();
    let mut visitor = Collect {
        grads,
        names,
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_matches_the_reference_in_f32_and_bf16() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/reference_model.safetensors");
        let f32 = check_device::<B>(&fixture, Precision::F32, &Default::default()).unwrap();
        assert!(f32.passed, "{f32:?}");
        assert_eq!(f32.gradients, 79, "{f32:?}");
        let bf16 = check_device::<B>(&fixture, Precision::Bf16, &Default::default()).unwrap();
        assert!(bf16.passed, "{bf16:?}");
        // bf16 is measurably coarser than f32: the check can tell them apart.
        assert!(bf16.gradient_error > f32.gradient_error, "{bf16:?}");
    }

    #[test]
    fn a_wrong_fixture_is_an_error_and_errors_fail() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.safetensors");
        transreid_model::write_safetensors(&path, &StateDict::new(), Default::default()).unwrap();
        assert!(matches!(
            check_device::<B>(&path, Precision::F32, &Default::default()),
            Err(DeviceCheckError::Import(_))
        ));
        assert_eq!(relative_error(&[1.0, f32::NAN], &[1.0, 1.0]), f64::INFINITY);
        assert!((relative_error(&[1.0, 2.5], &[1.0, 2.0]) - 0.25).abs() < 1e-12);
    }
}
