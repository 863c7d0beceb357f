//! Parity with a NumPy port of the reference evaluation and re-ranking.
//!
//! `tests/fixtures/reference_small.json` is written by `scripts/reference_golden.py`: 12 queries
//! and 60 gallery items of dimension 16 (three cameras, two query ids absent from the gallery),
//! the reference's squared-Euclidean distance matrix, `eval_func` outputs (plus fast-reid's mINP),
//! and `re_ranking` outputs for (k1, k2, λ) = (20, 6, 0.3), (5, 1, 0.5) and (50, 15, 0.3).

use serde::Deserialize;
use transreid_eval::{
    evaluate, evaluate_distmat, rerank_exact, rerank_sparse, Distance, DistanceRows, EvalConfig,
    FeatureDistances, FeatureNorm, Features, Labels, RerankConfig,
};

#[derive(Deserialize)]
struct Fixture {
    dim: usize,
    query_features: Vec<f32>,
    query_pids: Vec<i64>,
    query_camids: Vec<i64>,
    gallery_features: Vec<f32>,
    gallery_pids: Vec<i64>,
    gallery_camids: Vec<i64>,
    distmat: Vec<f32>,
    eval: Expected,
    rerank: Vec<Reranked>,
}

#[derive(Deserialize)]
struct Expected {
    max_rank: usize,
    cmc: Vec<f64>,
    map: f64,
    minp: f64,
    num_valid: usize,
}

#[derive(Deserialize)]
struct Reranked {
    k1: usize,
    k2: usize,
    lambda: f64,
    distmat: Vec<f32>,
    cmc: Vec<f64>,
    map: f64,
    minp: f64,
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference_small.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

impl Fixture {
    fn query(&self) -> Features<'_> {
        Features::new(&self.query_features, self.dim).unwrap()
    }
    fn gallery(&self) -> Features<'_> {
        Features::new(&self.gallery_features, self.dim).unwrap()
    }
    fn query_labels(&self) -> Labels<'_> {
        Labels::new(&self.query_pids, &self.query_camids).unwrap()
    }
    fn gallery_labels(&self) -> Labels<'_> {
        Labels::new(&self.gallery_pids, &self.gallery_camids).unwrap()
    }
    fn rerank_config(&self, r: &Reranked) -> RerankConfig {
        RerankConfig {
            k1: r.k1,
            k2: r.k2,
            lambda: r.lambda,
            ..Default::default()
        }
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_metrics(got: &transreid_eval::ReidMetrics, cmc: &[f64], map: f64, minp: f64, what: &str) {
    assert_eq!(got.cmc.len(), cmc.len(), "{what}: CMC length");
    for (k, (a, b)) in got.cmc.iter().zip(cmc).enumerate() {
        // The reference sums the CMC in float32.
        assert!((a - b).abs() < 1e-6, "{what}: cmc[{k}] {a} vs {b}");
    }
    assert!(
        (got.map - map).abs() < 1e-12,
        "{what}: mAP {} vs {map}",
        got.map
    );
    assert!(
        (got.minp - minp).abs() < 1e-12,
        "{what}: mINP {} vs {minp}",
        got.minp
    );
}

#[test]
fn distance_matrix_matches_reference() {
    let f = fixture();
    let d = FeatureDistances::new(
        f.query(),
        f.gallery(),
        Distance::SquaredEuclidean,
        FeatureNorm::L2,
    )
    .unwrap()
    .to_dense();
    let diff = max_abs_diff(&d, &f.distmat);
    assert!(diff < 1e-6, "max |d - d_ref| = {diff}");
}

#[test]
fn metrics_match_reference() {
    let f = fixture();
    let cfg = EvalConfig {
        max_rank: f.eval.max_rank,
        ..Default::default()
    };
    let m = evaluate(
        f.query(),
        f.query_labels(),
        f.gallery(),
        f.gallery_labels(),
        &cfg,
    )
    .unwrap();
    assert_metrics(&m, &f.eval.cmc, f.eval.map, f.eval.minp, "features");
    assert_eq!(
        (m.num_valid_queries, m.num_skipped_queries),
        (f.eval.num_valid, 12 - f.eval.num_valid)
    );
    // The reference's own distance matrix gives the same ranking.
    let m = evaluate_distmat(&f.distmat, f.query_labels(), f.gallery_labels(), &cfg).unwrap();
    assert_metrics(&m, &f.eval.cmc, f.eval.map, f.eval.minp, "distmat");
}

#[test]
fn exact_reranking_matches_reference() {
    let f = fixture();
    for r in &f.rerank {
        let got = rerank_exact(f.query(), f.gallery(), &f.rerank_config(r)).unwrap();
        let diff = max_abs_diff(&got, &r.distmat);
        println!(
            "exact k1={} k2={} lambda={}: max |diff| = {diff:e}",
            r.k1, r.k2, r.lambda
        );
        assert!(diff < 1e-6, "k1={} k2={}: max |diff| = {diff}", r.k1, r.k2);
        let m = evaluate_distmat(
            &got,
            f.query_labels(),
            f.gallery_labels(),
            &EvalConfig::default(),
        )
        .unwrap();
        assert_metrics(&m, &r.cmc, r.map, r.minp, "re-ranked");
    }
}

#[test]
fn sparse_reranking_matches_reference_and_exact() {
    let f = fixture();
    for r in &f.rerank {
        let cfg = f.rerank_config(r);
        let sparse = rerank_sparse(f.query(), f.gallery(), &cfg).unwrap();
        assert_eq!((sparse.num_queries(), sparse.num_gallery()), (12, 60));
        let got = sparse.to_dense();
        let exact = rerank_exact(f.query(), f.gallery(), &cfg).unwrap();
        let (to_ref, to_exact) = (max_abs_diff(&got, &r.distmat), max_abs_diff(&got, &exact));
        println!(
            "sparse k1={} k2={}: max |diff| to reference {to_ref:e}, to exact {to_exact:e}",
            r.k1, r.k2
        );
        assert!(
            to_ref < 1e-6 && to_exact < 1e-6,
            "k1={}: {to_ref} / {to_exact}",
            r.k1
        );
        // Evaluated block by block (one query per block) it gives the reference's metrics.
        let eval_cfg = EvalConfig {
            block_bytes: 1,
            ..Default::default()
        };
        let m =
            transreid_eval::evaluate_rows(&sparse, f.query_labels(), f.gallery_labels(), &eval_cfg)
                .unwrap();
        assert_metrics(&m, &r.cmc, r.map, r.minp, "sparse re-ranked");
    }
}
