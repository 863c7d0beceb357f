//! Data-parallel training over MPI (`--features mpi`; `mpirun` must be on the PATH): two ranks
//! equal one process that accumulates the two shards' gradients, one rank equals a plain run,
//! a two-rank run learns and resumes exactly, ranks that disagree are refused and a killed rank
//! ends the job; a CLIP-ReID run on two ranks equals one that accumulates, through both stages.
#![cfg(feature = "mpi")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use transreid::model::{read_state_dict, HostTensor};

mod tiny_clip;

const TINY_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/synthetic/tiny_transreid.toml"
);

fn transreid() -> &'static str {
    env!("CARGO_BIN_EXE_transreid")
}

/// `mpirun` with `ranks` processes (as root in CI, more ranks than cores on 2-core machines).
fn mpirun(ranks: usize) -> Command {
    let mut command = Command::new("mpirun");
    command
        .args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string())
        .env("RUST_BACKTRACE", "0");
    command
}

fn succeeded(out: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: {text}");
    text
}

/// `transreid train` arguments for the tiny configuration on `data` into `run`.
fn train_args(config: &str, data: &str, run: &str, epochs: usize, extra: &[&str]) -> Vec<String> {
    let epochs = epochs.to_string();
    [
        "train",
        "--config",
        config,
        "--root",
        data,
        "--output-dir",
        run,
        "--epochs",
        &epochs,
        "--workers",
        "1",
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect()
}

fn state(run: &str) -> BTreeMap<String, HostTensor> {
    read_state_dict(&Path::new(run).join("state.safetensors"))
        .unwrap()
        .0
}

/// `metrics.csv` without its images-per-second column.
fn metrics(run: &str) -> Vec<String> {
    std::fs::read_to_string(Path::new(run).join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut cells: Vec<&str> = line.split(',').collect();
            cells.remove(4);
            cells.join(",")
        })
        .collect()
}

/// Asserts that a two-rank run's state equals an accumulating run's within 1e-6, BatchNorm
/// running statistics aside: each rank keeps its own (rank 0's are saved), while accumulation
/// updates them with every micro-batch. Returns how many tensors were compared.
fn assert_same_state(
    ranks: &BTreeMap<String, HostTensor>,
    accumulation: &BTreeMap<String, HostTensor>,
) -> usize {
    assert_eq!(ranks.len(), accumulation.len());
    let mut compared = 0;
    for (name, tensor) in ranks {
        if name.contains("running_") {
            continue;
        }
        let difference = max_difference(tensor, &accumulation[name]);
        assert!(difference <= 1e-6, "{name}: {difference}");
        compared += 1;
    }
    compared
}

fn max_difference(a: &HostTensor, b: &HostTensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn synthetic(dir: &Path, ids: &str, cameras: &str) -> String {
    let data = dir.join("data").to_str().unwrap().to_string();
    let out = Command::new(transreid())
        .args([
            "data",
            "synth",
            "--out",
            &data,
            "--ids",
            ids,
            "--cameras",
            cameras,
        ])
        .output()
        .unwrap();
    succeeded(out, "data synth");
    data
}

#[test]
fn two_ranks_equal_accumulation_and_one_rank_equals_a_plain_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), "8", "2");
    let run = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let plain = run("plain");
    let out = Command::new(transreid())
        .args(train_args(TINY_CONFIG, &data, &plain, 2, &[]))
        .output()
        .unwrap();
    succeeded(out, "plain run");
    let one_rank = run("one_rank");
    let out = mpirun(1)
        .arg(transreid())
        .args(train_args(TINY_CONFIG, &data, &one_rank, 2, &[]))
        .output()
        .unwrap();
    succeeded(out, "mpirun -np 1");
    assert_eq!(metrics(&one_rank), metrics(&plain));
    assert_eq!(state(&one_rank), state(&plain), "bit for bit");

    let two_ranks = run("two_ranks");
    let out = mpirun(2)
        .arg(transreid())
        .args(train_args(TINY_CONFIG, &data, &two_ranks, 2, &[]))
        .output()
        .unwrap();
    let text = succeeded(out, "mpirun -np 2");
    assert!(
        text.contains("2 rank(s) x 1 micro-batch(es) of 16 images"),
        "{text}"
    );
    let accumulated = run("accumulated");
    let out = Command::new(transreid())
        .args(train_args(
            TINY_CONFIG,
            &data,
            &accumulated,
            2,
            &["--accumulate", "2"],
        ))
        .output()
        .unwrap();
    succeeded(out, "--accumulate 2");
    assert_eq!(metrics(&two_ranks), metrics(&accumulated));
    let ranks = state(&two_ranks);
    let compared = assert_same_state(&ranks, &state(&accumulated));
    assert!(
        compared > 150,
        "parameters and momentum compared: {compared}"
    );
    assert!(
        state(&plain) != ranks,
        "two ranks draw other blocks than one"
    );
}

#[test]
fn a_two_rank_run_learns_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), "32", "4");
    let config = dir.path().join("every_4_epochs.toml");
    let text = std::fs::read_to_string(TINY_CONFIG)
        .unwrap()
        .replace("eval_period = 5", "eval_period = 4");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let run = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let straight = run("straight");
    let out = mpirun(2)
        .arg(transreid())
        .args(train_args(config, &data, &straight, 20, &[]))
        .output()
        .unwrap();
    succeeded(out, "20 epochs on 2 ranks");
    let map: Vec<f64> = metrics(&straight)[1..]
        .iter()
        .filter_map(|line| line.split(',').nth(4)?.parse().ok())
        .collect();
    assert_eq!(map.len(), 5, "evaluated every 4 epochs: {map:?}");
    assert!(map[4] > map[0] + 0.05, "mAP every 4 epochs: {map:?}");

    let resumed = run("resumed");
    let out = mpirun(2)
        .arg(transreid())
        .args(train_args(
            config,
            &data,
            &resumed,
            20,
            &["--stop-after", "10"],
        ))
        .output()
        .unwrap();
    succeeded(out, "stop after 10");
    let out = mpirun(2)
        .arg(transreid())
        .args(["train", "--resume", &resumed, "--workers", "1"])
        .output()
        .unwrap();
    succeeded(out, "resume on 2 ranks");
    assert_eq!(metrics(&resumed), metrics(&straight));
    assert_eq!(state(&resumed), state(&straight));

    // Continuing on one process draws each step as one block instead of two: said, not hidden.
    let out = Command::new(transreid())
        .args([
            "train",
            "--resume",
            &resumed,
            "--epochs",
            "21",
            "--workers",
            "1",
        ])
        .output()
        .unwrap();
    let text = succeeded(out, "resume on 1 process");
    assert!(
        text.contains(
            "trained with 2 rank(s) x 1 micro-batch(es) per step and continues with 1 x 1"
        ),
        "{text}"
    );
}

#[test]
fn ranks_that_disagree_are_refused_and_a_dead_rank_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), "8", "2");
    let other_seed = dir.path().join("seed1.toml");
    let text = std::fs::read_to_string(TINY_CONFIG)
        .unwrap()
        .replace("seed = 0", "seed = 1");
    std::fs::write(&other_seed, text).unwrap();
    let run = dir.path().join("mixed").to_str().unwrap().to_string();
    // MPMD: rank 0 with the preset, rank 1 with another seed.
    let out = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "1",
            transreid(),
        ])
        .args(train_args(TINY_CONFIG, &data, &run, 1, &[]))
        .args([":", "-np", "1", transreid()])
        .args(train_args(
            other_seed.to_str().unwrap(),
            &data,
            &run,
            1,
            &[],
        ))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("the ranks disagree on the run's settings"),
        "{text}"
    );
    // The setting is named, and the refusal comes before the run folder is written.
    assert!(text.contains("differ from rank 0: seed (rank 1)"), "{text}");
    assert!(!Path::new(&run).join("config.toml").exists(), "{text}");

    // One rank killed mid-run: the job ends, non-zero, within the step timeout.
    let run = dir.path().join("killed").to_str().unwrap().to_string();
    let mut job = mpirun(2)
        .arg(transreid())
        .args(train_args(
            TINY_CONFIG,
            &data,
            &run,
            500,
            &["--step-timeout", "20"],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = Path::new(&run).join("metrics.csv");
    let started = Instant::now();
    while !metrics.exists() || std::fs::read_to_string(&metrics).unwrap().lines().count() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no epoch finished"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let children = Command::new("pgrep")
        .args(["-P", &job.id().to_string()])
        .output()
        .unwrap();
    let mut ranks: Vec<u32> = String::from_utf8_lossy(&children.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    ranks.sort();
    assert_eq!(
        ranks.len(),
        2,
        "the two ranks are mpirun's children: {ranks:?}"
    );
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &ranks[1].to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the job outlived a dead rank"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    use std::io::Read;
    job.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("signal 9") || stderr.contains("no training step completed"),
        "{stderr}"
    );
}

#[test]
fn a_clip_reid_run_on_two_ranks_equals_accumulation_and_ranks_agree_on_stage_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), "8", "2");
    let clip = dir.path().join("clip.safetensors");
    tiny_clip::write_tiny_clip(&clip, true);
    let run = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let config = |name: &str, run: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        let text = tiny_clip::config(&data, run, clip.to_str().unwrap(), "", true);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };

    let two_ranks = run("two_ranks");
    let out = mpirun(2)
        .arg(transreid())
        .args(["train", "--config", &config("ranks", &two_ranks)])
        .output()
        .unwrap();
    let text = succeeded(out, "mpirun -np 2");
    assert!(
        text.contains("2 rank(s) x 1 micro-batch(es) of 8 images"),
        "{text}"
    );
    let accumulated = run("accumulated");
    let out = Command::new(transreid())
        .args([
            "train",
            "--config",
            &config("accumulated", &accumulated),
            "--accumulate",
            "2",
        ])
        .output()
        .unwrap();
    succeeded(out, "--accumulate 2");

    // Stage 1 runs whole on every rank: the same prompts as one process.
    let prompts = |run: &str| {
        read_state_dict(&Path::new(run).join("prompt_state.safetensors"))
            .unwrap()
            .0
    };
    assert_eq!(prompts(&two_ranks), prompts(&accumulated));
    let losses = |run: &str| -> Vec<String> {
        std::fs::read_to_string(Path::new(run).join("prompt_metrics.csv"))
            .unwrap()
            .lines()
            .map(|line| line.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(losses(&two_ranks).len(), 3);
    assert_eq!(losses(&two_ranks), losses(&accumulated));
    // Stage 2: the two shards' gradients averaged over ranks equal their accumulation.
    assert_eq!(metrics(&two_ranks), metrics(&accumulated));
    let compared = assert_same_state(&state(&two_ranks), &state(&accumulated));
    assert!(
        compared > 50,
        "parameters and Adam moments compared: {compared}"
    );

    // MPMD: rank 1 learns the prompts at another rate, which is named before anything is written.
    let other = run("other");
    let same = config("other", &other);
    let other_lr = dir.path().join("other_lr.toml");
    let text = std::fs::read_to_string(&same).unwrap();
    std::fs::write(&other_lr, text.replace("base_lr = 0.01", "base_lr = 0.02")).unwrap();
    let out = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "1",
            transreid(),
        ])
        .args(["train", "--config", &same])
        .args([":", "-np", "1", transreid()])
        .args(["train", "--config", other_lr.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("the ranks disagree on the prompt stage's settings"),
        "{text}"
    );
    assert!(
        text.contains("clip_reid.prompts.base_lr (rank 1)"),
        "{text}"
    );
    assert!(!Path::new(&other).join("config.toml").exists(), "{text}");
}
