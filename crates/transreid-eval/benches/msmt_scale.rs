//! MSMT17-scale evaluation benchmark (not a test: it only reports).
//!
//! Generates seeded random features shaped like the MSMT17 test set (11,659 queries, 82,161
//! gallery images, 3,840-d, 3,060 ids, 15 cameras; ids scale with `--scale`), times the evaluation and reports the peak
//! resident memory (`VmHWM`). Options:
//!
//! ```text
//! --scale F        multiply the query and gallery counts by F (default 1)
//! --dim D          feature dimension (default 3840)
//! --seed S         data seed (default 0)
//! --mode M         eval (default) | distances (only the blocked distance product, to split
//!                  the evaluation time) | rerank (sparse re-ranking + evaluation)
//!                  | rerank-compare (exact vs sparse re-ranking on the same data)
//! --dump DIR       also write the data as .npy for scripts/eval_bench_numpy.py
//! ```
//!
//! `cargo bench -p transreid-eval --bench msmt_scale -- --scale 0.5 --dump /var/tmp/msmt_half`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use transreid_eval::{
    evaluate, evaluate_distmat, evaluate_rows, rerank_exact, rerank_sparse, DistanceRows,
    EvalConfig, FeatureDistances, Features, Labels, ReidMetrics, RerankConfig,
};

const MSMT_QUERY: usize = 11_659;
const MSMT_GALLERY: usize = 82_161;
const MSMT_IDS: usize = 3_060;
const MSMT_CAMERAS: u64 = 15;
/// Noise amplitude around each identity centre; chosen so that the ranking is neither trivial
/// nor random (mAP about 0.5, Rank-1 about 0.95 at scale 0.1).
const NOISE: f32 = 4.5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Eval,
    Distances,
    Rerank,
    RerankCompare,
}

struct Args {
    scale: f64,
    dim: usize,
    seed: u64,
    mode: Mode,
    dump: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        scale: 1.0,
        dim: 3840,
        seed: 0,
        mode: Mode::Eval,
        dump: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--scale" => args.scale = value().parse().expect("--scale takes a number"),
            "--dim" => args.dim = value().parse().expect("--dim takes an integer"),
            "--seed" => args.seed = value().parse().expect("--seed takes an integer"),
            "--dump" => args.dump = Some(PathBuf::from(value())),
            "--mode" => {
                args.mode = match value().as_str() {
                    "eval" => Mode::Eval,
                    "distances" => Mode::Distances,
                    "rerank" => Mode::Rerank,
                    "rerank-compare" => Mode::RerankCompare,
                    other => panic!("unknown mode {other}"),
                }
            }
            // cargo bench passes --bench to harness-less benches.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Peak resident set size so far, in MiB (`VmHWM` of /proc/self/status).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets `VmHWM` to the current resident size (Linux `clear_refs` value 5), so that the next
/// reading is the peak of the phase that follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Set {
    features: Vec<f32>,
    pids: Vec<i64>,
    camids: Vec<i64>,
}

/// `n` rows: identity centre (uniform in [-0.5, 0.5)) plus uniform noise of amplitude `NOISE`.
/// Each row has its own ChaCha8 stream, so generation is parallel and reproducible.
fn generate(n: usize, dim: usize, seed: u64, centres: &[f32]) -> Set {
    let ids = (centres.len() / dim) as u64;
    let mut labels = ChaCha8Rng::seed_from_u64(seed);
    let pids: Vec<i64> = (0..n).map(|_| labels.random_range(0..ids) as i64).collect();
    let camids: Vec<i64> = (0..n)
        .map(|_| labels.random_range(0..MSMT_CAMERAS) as i64)
        .collect();
    let mut features = vec![0.0f32; n * dim];
    features
        .par_chunks_mut(dim)
        .enumerate()
        .for_each(|(i, row)| {
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 + 1),
            );
            let centre = &centres[pids[i] as usize * dim..(pids[i] as usize + 1) * dim];
            for (x, &c) in row.iter_mut().zip(centre) {
                *x = c + NOISE * (rng.random::<f32>() - 0.5);
            }
        });
    Set {
        features,
        pids,
        camids,
    }
}

/// Writes a little-endian `.npy` (format 1.0) file.
fn write_npy<T: Copy>(path: &Path, descr: &str, shape: &[usize], data: &[T]) {
    let shape_text = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut w = BufWriter::new(File::create(path).expect("create .npy"));
    w.write_all(b"\x93NUMPY\x01\x00").unwrap();
    w.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    w.write_all(header.as_bytes()).unwrap();
    // SAFETY: T is f32 or i64 (plain old data); the bytes are written as they lie in memory
    // (little-endian on the supported targets).
    let bytes = unsafe {
        std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data))
    };
    w.write_all(bytes).unwrap();
}

fn summary(m: &ReidMetrics) -> String {
    format!(
        "mAP {:.6} mINP {:.6} R1 {:.6} R5 {:.6} R10 {:.6} valid {} skipped {}",
        m.map,
        m.minp,
        m.rank1().unwrap_or(f64::NAN),
        m.rank5().unwrap_or(f64::NAN),
        m.rank10().unwrap_or(f64::NAN),
        m.num_valid_queries,
        m.num_skipped_queries
    )
}

fn main() {
    let args = parse_args();
    let nq = ((MSMT_QUERY as f64 * args.scale).round() as usize).max(1);
    let ng = ((MSMT_GALLERY as f64 * args.scale).round() as usize).max(1);
    let dim = args.dim;
    // Identities scale with the sets so that each keeps about 27 gallery images.
    let ids = ((MSMT_IDS as f64 * args.scale).round() as usize).max(1);
    println!(
        "msmt_scale: {nq} queries x {ng} gallery x {dim} dims, {ids} ids (scale {}), seed {}, {} threads, mode {:?}",
        args.scale,
        args.seed,
        rayon::current_num_threads(),
        args.mode
    );

    let t = Instant::now();
    let mut centre_rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xC3A7);
    let centres: Vec<f32> = (0..ids * dim)
        .map(|_| centre_rng.random::<f32>() - 0.5)
        .collect();
    let query = generate(nq, dim, args.seed.wrapping_add(1), &centres);
    let gallery = generate(ng, dim, args.seed.wrapping_add(2), &centres);
    drop(centres);
    println!(
        "generated in {:.1} s, resident peak {:.0} MiB",
        t.elapsed().as_secs_f64(),
        peak_mib()
    );

    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir).expect("create dump directory");
        write_npy(&dir.join("query.npy"), "<f4", &[nq, dim], &query.features);
        write_npy(
            &dir.join("gallery.npy"),
            "<f4",
            &[ng, dim],
            &gallery.features,
        );
        write_npy(&dir.join("q_pids.npy"), "<i8", &[nq], &query.pids);
        write_npy(&dir.join("q_camids.npy"), "<i8", &[nq], &query.camids);
        write_npy(&dir.join("g_pids.npy"), "<i8", &[ng], &gallery.pids);
        write_npy(&dir.join("g_camids.npy"), "<i8", &[ng], &gallery.camids);
        println!("wrote {}", dir.display());
    }

    let qf = Features::new(&query.features, dim).unwrap();
    let gf = Features::new(&gallery.features, dim).unwrap();
    let ql = Labels::new(&query.pids, &query.camids).unwrap();
    let gl = Labels::new(&gallery.pids, &gallery.camids).unwrap();
    let data_mib = (query.features.len() + gallery.features.len()) as f64 * 4.0 / (1 << 20) as f64;
    let config = EvalConfig::default();

    match args.mode {
        Mode::Eval => {
            reset_peak();
            let t = Instant::now();
            let m = evaluate(qf, ql, gf, gl, &config).unwrap();
            let seconds = t.elapsed().as_secs_f64();
            let peak = peak_mib();
            println!("evaluate: {seconds:.2} s, peak {peak:.0} MiB (features {data_mib:.0} MiB)");
            println!("  {}", summary(&m));
            println!(
                "RESULT {{\"mode\": \"eval\", \"nq\": {nq}, \"ng\": {ng}, \"dim\": {dim}, \"seconds\": {seconds:.3}, \"peak_mib\": {peak:.0}, \"features_mib\": {data_mib:.0}, \"map\": {:.8}, \"rank1\": {:.8}, \"minp\": {:.8}}}",
                m.map,
                m.rank1().unwrap_or(f64::NAN),
                m.minp
            );
        }
        Mode::Distances => {
            reset_peak();
            let t = Instant::now();
            let source =
                FeatureDistances::new(qf, gf, config.distance, config.feature_norm).unwrap();
            let block_rows = (config.block_bytes / (ng * 4)).clamp(1, nq);
            let mut block = vec![0.0f32; block_rows * ng];
            let mut checksum = 0.0f64;
            for first in (0..nq).step_by(block_rows) {
                let rows = block_rows.min(nq - first);
                source.fill_rows(first, &mut block[..rows * ng]);
                checksum += f64::from(block[0]);
            }
            let seconds = t.elapsed().as_secs_f64();
            println!(
                "distances only: {seconds:.2} s, {:.1} GFLOP/s, peak {:.0} MiB (checksum {checksum:.3})",
                2.0 * (nq * ng * dim) as f64 / seconds / 1e9,
                peak_mib()
            );
        }
        Mode::Rerank => {
            let rcfg = RerankConfig::default();
            reset_peak();
            let t = Instant::now();
            let reranked = rerank_sparse(qf, gf, &rcfg).unwrap();
            let t_rerank = t.elapsed().as_secs_f64();
            let m = evaluate_rows(&reranked, ql, gl, &config).unwrap();
            let seconds = t.elapsed().as_secs_f64();
            let peak = peak_mib();
            println!(
                "rerank_sparse (k1 {} k2 {} lambda {}): {t_rerank:.2} s, + evaluation {:.2} s, peak {peak:.0} MiB (features {data_mib:.0} MiB), {} stored overlaps",
                rcfg.k1,
                rcfg.k2,
                rcfg.lambda,
                seconds - t_rerank,
                reranked.num_overlaps()
            );
            println!("  {}", summary(&m));
        }
        Mode::RerankCompare => {
            let rcfg = RerankConfig::default();
            let plain = evaluate(qf, ql, gf, gl, &config).unwrap();
            println!("no re-ranking:  {}", summary(&plain));

            reset_peak();
            let t = Instant::now();
            let exact = rerank_exact(qf, gf, &rcfg).unwrap();
            let t_exact = t.elapsed().as_secs_f64();
            let peak_exact = peak_mib();
            let m_exact = evaluate_distmat(&exact, ql, gl, &config).unwrap();

            reset_peak();
            let t = Instant::now();
            let sparse = rerank_sparse(qf, gf, &rcfg).unwrap();
            let dense = sparse.to_dense();
            let t_sparse = t.elapsed().as_secs_f64();
            let peak_sparse = peak_mib();
            let m_sparse = evaluate_distmat(&dense, ql, gl, &config).unwrap();

            let (mut max_diff, mut sum_diff, mut differing) = (0.0f32, 0.0f64, 0usize);
            for (a, b) in exact.iter().zip(&dense) {
                let d = (a - b).abs();
                max_diff = max_diff.max(d);
                sum_diff += f64::from(d);
                differing += usize::from(d > 0.0);
            }
            println!(
                "exact:  {t_exact:.2} s, peak {peak_exact:.0} MiB; {}",
                summary(&m_exact)
            );
            println!(
                "sparse: {t_sparse:.2} s (incl. expanding to dense), peak {peak_sparse:.0} MiB; {}",
                summary(&m_sparse)
            );
            println!(
                "sparse vs exact: max |diff| {max_diff:e}, mean |diff| {:e}, {differing} of {} entries differ; |dmAP| {:e}",
                sum_diff / exact.len() as f64,
                exact.len(),
                (m_exact.map - m_sparse.map).abs()
            );
        }
    }
}
