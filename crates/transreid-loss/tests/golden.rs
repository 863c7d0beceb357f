//! Parity with the reference losses (fixtures/losses.json describes the tensors).

use std::collections::HashMap;

use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};
use transreid_loss::{
    center_loss, cross_entropy, euclidean_dist, transreid_loss, triplet_loss, LossError,
    ObjectiveConfig, TripletMargin,
};

type B = NdArray;

struct Golden(HashMap<String, (Vec<usize>, Vec<f64>)>);

impl Golden {
    fn load() -> Self {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/losses.safetensors"
        ))
        .unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let map = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let values = match view.dtype() {
                    Dtype::F32 => view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                        .collect(),
                    Dtype::I64 => view
                        .data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                        .collect(),
                    other => panic!("{other:?}"),
                };
                (name, (view.shape().to_vec(), values))
            })
            .collect();
        Golden(map)
    }
    fn scalar(&self, key: &str) -> f32 {
        self.0[key].1[0] as f32
    }
    fn floats<const D: usize>(&self, key: &str) -> Tensor<B, D> {
        let (shape, v) = &self.0[key];
        let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        Tensor::from_data(TensorData::new(v, shape.clone()), &Default::default())
    }
    fn labels(&self, key: &str) -> Vec<i64> {
        self.0[key].1.iter().map(|&x| x as i64).collect()
    }
}

fn targets(labels: &[i64]) -> Tensor<B, 1, Int> {
    Tensor::from_data(
        TensorData::new(labels.to_vec(), [labels.len()]),
        &Default::default(),
    )
}

fn value(t: Tensor<B, 1>) -> f32 {
    t.into_scalar()
}

fn assert_close(got: f32, want: f32, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "{what}: {got} vs {want}"
    );
}

#[test]
fn cross_entropy_plain_and_smoothed() {
    let g = Golden::load();
    let labels = g.labels("labels");
    assert_close(
        value(cross_entropy(g.floats("scores"), targets(&labels), 0.0)),
        g.scalar("ce.plain"),
        "ce",
    );
    let smooth = value(cross_entropy(g.floats("scores"), targets(&labels), 0.1));
    assert_close(smooth, g.scalar("ce.label_smooth_0.1"), "label smooth");
    assert_close(
        smooth,
        g.scalar("ce.LabelSmoothingCrossEntropy_0.1"),
        "timm label smooth",
    );
}

#[test]
fn triplet_grouped_and_shuffled() {
    let g = Golden::load();
    for (prefix, labels_key) in [("", "labels"), ("shuffled.", "labels_shuffled")] {
        let labels = g.labels(labels_key);
        let dist = euclidean_dist(g.floats::<2>("feats"), g.floats("feats"));
        let want: Tensor<B, 2> = g.floats(&format!("{prefix}dist_mat"));
        // The diagonal is sqrt of f32 cancellation noise (1e-6 .. 3e-3 in the reference itself),
        // so only off-diagonal distances are compared.
        let off_diagonal = Tensor::<B, 2>::eye(16, &Default::default())
            .neg()
            .add_scalar(1.0);
        let diff: f32 = ((dist - want) * off_diagonal).abs().max().into_scalar();
        assert!(diff < 1e-5, "{prefix}dist_mat {diff}");
        for (name, margin) in [
            ("soft", TripletMargin::Soft),
            ("margin0.3", TripletMargin::Hard(0.3)),
        ] {
            let out = triplet_loss(g.floats("feats"), &labels, margin).unwrap();
            let key = format!("{prefix}triplet.{name}");
            assert_close(value(out.loss), g.scalar(&format!("{key}.loss")), &key);
            for part in ["dist_ap", "dist_an"] {
                let want: Tensor<B, 1> = g.floats(&format!("{key}.{part}"));
                let got = if part == "dist_ap" {
                    out.dist_ap.clone()
                } else {
                    out.dist_an.clone()
                };
                let diff: f32 = (got - want).abs().max().into_scalar();
                assert!(diff < 1e-5, "{key}.{part} {diff}");
            }
        }
    }
}

#[test]
fn center_loss_matches() {
    let g = Golden::load();
    let labels = g.labels("labels");
    let got = value(center_loss(
        g.floats("feats"),
        g.floats("center.centers"),
        targets(&labels),
    ));
    assert_close(got, g.scalar("center.loss"), "center");
}

#[test]
fn objective_totals_for_the_four_configurations() {
    let g = Golden::load();
    let labels = g.labels("labels");
    let jpm_scores: Vec<Tensor<B, 2>> = (0..5)
        .map(|k| g.floats(&format!("jpm.scores.{k}")))
        .collect();
    let jpm_feats: Vec<Tensor<B, 2>> = (0..5)
        .map(|k| g.floats(&format!("jpm.feats.{k}")))
        .collect();
    for (ls_name, ls) in [("ls_off", 0.0), ("ls_on", 0.1)] {
        for (m_name, margin) in [
            ("soft_margin", TripletMargin::Soft),
            ("margin_0.3", TripletMargin::Hard(0.3)),
        ] {
            let config = ObjectiveConfig {
                label_smoothing: ls,
                margin,
                ..Default::default()
            };
            let jpm = transreid_loss(&jpm_scores, &jpm_feats, targets(&labels), &labels, &config)
                .unwrap();
            assert_close(
                value(jpm.total),
                g.scalar(&format!("jpm.total.{ls_name}.{m_name}")),
                "jpm",
            );
            // The reference's single-branch totals were computed on the global branch's tensors.
            let single = transreid_loss(
                &jpm_scores[..1],
                &jpm_feats[..1],
                targets(&labels),
                &labels,
                &config,
            )
            .unwrap();
            assert_close(
                value(single.total),
                g.scalar(&format!("single.total.{ls_name}.{m_name}")),
                "single",
            );
        }
    }
}

#[test]
fn bad_batches_are_typed_errors() {
    let feats: Tensor<B, 2> = Tensor::ones([4, 3], &Default::default());
    assert_eq!(
        triplet_loss(feats.clone(), &[0, 0, 0, 0], TripletMargin::Soft).unwrap_err(),
        LossError::NoNegative { label: 0 }
    );
    assert_eq!(
        triplet_loss(feats.clone(), &[0, 0, 1, 2], TripletMargin::Soft).unwrap_err(),
        LossError::NoPositive { label: 1 }
    );
    assert!(matches!(
        triplet_loss(feats.clone(), &[0, 0, 0], TripletMargin::Soft),
        Err(LossError::LengthMismatch { .. })
    ));
    let feats6: Tensor<B, 2> = Tensor::ones([6, 3], &Default::default());
    assert!(matches!(
        triplet_loss(feats6, &[0, 0, 0, 0, 1, 1], TripletMargin::Soft),
        Err(LossError::UnbalancedBatch { .. })
    ));
    let empty: Tensor<B, 2> = Tensor::zeros([0, 3], &Default::default());
    assert_eq!(
        triplet_loss(empty, &[], TripletMargin::Soft).unwrap_err(),
        LossError::EmptyBatch
    );
}

/// Analytic gradients against central finite differences (in f64 for precision).
#[test]
fn gradients_match_finite_differences() {
    type AD = Autodiff<NdArray>;
    use burn::tensor::DType;
    let device = Default::default();
    let labels = [0i64, 0, 1, 1, 2, 2];
    let base: Vec<f64> = (0..6 * 4)
        .map(|i| ((i * 37 % 17) as f64 / 7.0) - 1.0)
        .collect();
    let scores_base: Vec<f64> = (0..6 * 3)
        .map(|i| ((i * 13 % 11) as f64 / 5.0) - 1.0)
        .collect();
    let t = Tensor::<AD, 1, Int>::from_data(TensorData::new(labels.to_vec(), [6]), &device);
    let loss_of = |feats: &[f64], scores: &[f64], track: bool| {
        let f = Tensor::<AD, 2>::from_data(
            TensorData::new(feats.to_vec(), [6, 4]),
            (&device, DType::F64),
        );
        let s = Tensor::<AD, 2>::from_data(
            TensorData::new(scores.to_vec(), [6, 3]),
            (&device, DType::F64),
        );
        let (f, s) = if track {
            (f.require_grad(), s.require_grad())
        } else {
            (f, s)
        };
        let config = ObjectiveConfig {
            label_smoothing: 0.1,
            ..Default::default()
        };
        let out = transreid_loss(
            std::slice::from_ref(&s),
            std::slice::from_ref(&f),
            t.clone(),
            &labels,
            &config,
        )
        .unwrap();
        (out.total, f, s)
    };
    let (loss, f, s) = loss_of(&base, &scores_base, true);
    let grads = loss.backward();
    let gf: Vec<f64> = f
        .grad(&grads)
        .unwrap()
        .into_data()
        .convert::<f64>()
        .to_vec()
        .unwrap();
    let gs: Vec<f64> = s
        .grad(&grads)
        .unwrap()
        .into_data()
        .convert::<f64>()
        .to_vec()
        .unwrap();
    let h = 1e-6;
    let numeric = |which: usize, i: usize| {
        let (mut fp, mut sp) = (base.clone(), scores_base.clone());
        let (mut fm, mut sm) = (base.clone(), scores_base.clone());
        if which == 0 {
            fp[i] += h;
            fm[i] -= h;
        } else {
            sp[i] += h;
            sm[i] -= h;
        }
        let lp: f64 = loss_of(&fp, &sp, false)
            .0
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap()[0];
        let lm: f64 = loss_of(&fm, &sm, false)
            .0
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap()[0];
        (lp - lm) / (2.0 * h)
    };
    for (i, g) in gf.iter().enumerate() {
        let want = numeric(0, i);
        assert!((g - want).abs() < 1e-6, "feat grad {i}: {g} vs {want}");
    }
    for (i, g) in gs.iter().enumerate() {
        assert!((g - numeric(1, i)).abs() < 1e-6, "score grad {i}");
    }
}
