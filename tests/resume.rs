//! Resume and failure: a run interrupted and resumed ends with the same weights as an
//! uninterrupted one; a non-finite loss stops the run and writes nothing.
//!
//! The backend's random generator is process-wide, so the tests here take turns: two trainings
//! drawing from it at once would not be reproducible.

use std::sync::Mutex;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use transreid::data::{
    load_dataset, synth, DatasetKind, ImageSize, LoadOptions, Split, SynthConfig, TransformConfig,
};
use transreid::loss::ObjectiveConfig;
use transreid::model::{
    export_state_dict, read_state_dict, write_safetensors, JpmConfig, LabelError, Precision,
    SieConfig, SieMode, TransReidConfig, VitPreset,
};
use transreid::optim::{OptimizerKind, ScheduleKind, SolverConfig};
use transreid::train::{train, TrainError, TrainJob, TrainSettings, STATE_FILE};

static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// A small synthetic set, a tiny JPM + camera-SIE model (drop path on, so the backend's random
/// stream matters too) and the transforms at its 64x32 input size.
fn small_run(
    root: &std::path::Path,
) -> (
    transreid::data::ReidDataset,
    TransReidConfig,
    TransformConfig,
) {
    let mut config = SynthConfig::new(root);
    config.train_ids = 8;
    config.test_ids = 4;
    config.cameras = 2;
    config.height = 64;
    config.width = 32;
    synth::generate(&config).unwrap();
    let dataset = load_dataset(DatasetKind::Market1501, root, &LoadOptions::default()).unwrap();
    let vit = VitPreset::Tiny
        .config([64, 32], [16, 16])
        .with_drop_path_rate(0.3);
    let model_config = TransReidConfig::new(vit, dataset.num_train_pids)
        .with_sie(
            SieConfig::new()
                .with_mode(SieMode::Camera)
                .with_camera_num(dataset.num_train_cams),
        )
        .with_jpm(Some(JpmConfig::new().with_shift_num(2)));
    let transforms = TransformConfig::person().with_size(ImageSize {
        height: 64,
        width: 32,
    });
    (dataset, model_config, transforms)
}

/// Settings of the short runs here: batches of 4 identities x 4 images, evaluation and a
/// checkpoint every epoch.
fn small_settings(epochs: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        batch_size: 16,
        instances: 4,
        solver: SolverConfig::new(0.01),
        optimizer: OptimizerKind::Sgd,
        schedule: ScheduleKind::Cosine,
        warmup_epochs: 1,
        objective: ObjectiveConfig::default(),
        eval_period: 1,
        checkpoint_period: 1,
        eval_batch_size: 32,
        seed: 0,
        workers: 1,
        precision: Precision::F32,
        accumulate: 1,
    }
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run() {
    let f32_losses = assert_resume_is_exact(Precision::F32);
    // f16 products with loss scaling (the scaler's state resumes too). The first steps
    // overflow at the initial scale of 2^16 and are skipped, as with PyTorch's GradScaler, so
    // the run lags behind the f32 one at first and then catches up.
    let f16_losses = assert_resume_is_exact(Precision::F16);
    for (a, b) in f16_losses.iter().zip(&f32_losses) {
        assert!(a != b && a.is_finite(), "f16 {a} vs f32 {b}");
    }
    let (a, b) = (f16_losses[2], f32_losses[2]);
    assert!((a - b).abs() < 0.1 * b, "last epoch: f16 {a} vs f32 {b}");
}

/// Trains 3 epochs straight and 2 + resume + 1, checks both end equal, and returns the
/// per-epoch losses.
fn assert_resume_is_exact(precision: Precision) -> Vec<f64> {
    let _turn = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model_config, transforms) = small_run(&dir.path().join("synthetic"));
    let settings = TrainSettings {
        eval_period: 2,
        seed: 7,
        workers: 2,
        precision,
        ..small_settings(3)
    };
    let device = Default::default();
    let fresh = |seed| {
        Flex::seed(&device, seed);
        model_config.init::<Autodiff<Flex>>(&device)
    };
    let job = |run_dir, resume, stop_after| TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &transforms,
        settings: &settings,
        run_dir,
        resume,
        stop_after,
    };

    let straight_dir = dir.path().join("straight");
    let (straight, straight_records) =
        train(fresh(3), &job(&straight_dir, false, None), &device).unwrap();

    let split_dir = dir.path().join("split");
    let (_, first) = train(fresh(3), &job(&split_dir, false, Some(2)), &device).unwrap();
    assert_eq!(first.len(), 2);
    // A fresh run into the same folder is refused; resuming starts from other weights, which
    // the state replaces.
    assert!(matches!(
        train(fresh(3), &job(&split_dir, false, None), &device),
        Err(TrainError::RunExists { .. })
    ));
    let (resumed, resumed_records) =
        train(fresh(99), &job(&split_dir, true, None), &device).unwrap();

    let a = export_state_dict(&straight.valid());
    let b = export_state_dict(&resumed.valid());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, tensor) in &a {
        assert_eq!(tensor.data, b[key].data, "{key} differs after resume");
    }
    // The metrics of the resumed run continue the first part's.
    assert_eq!(resumed_records.len(), 3);
    for (x, y) in straight_records.iter().zip(&resumed_records) {
        assert_eq!(x.loss, y.loss, "epoch {}", x.epoch);
        assert_eq!(x.metrics, y.metrics, "epoch {}", x.epoch);
    }
    let csv = std::fs::read_to_string(split_dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);

    // Resuming with other settings, or without a state, is refused.
    let other = TrainSettings {
        seed: 8,
        ..settings.clone()
    };
    let mismatched = TrainJob {
        settings: &other,
        ..job(&split_dir, true, None)
    };
    assert!(matches!(
        train(fresh(3), &mismatched, &device),
        Err(TrainError::ResumeMismatch { .. })
    ));
    let empty = dir.path().join("empty");
    assert!(matches!(
        train(fresh(3), &job(&empty, true, None), &device),
        Err(TrainError::NothingToResume { .. })
    ));
    assert!(split_dir.join(STATE_FILE).exists());
    straight_records.iter().map(|r| r.loss).collect()
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_files() {
    let _turn = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model_config, transforms) = small_run(&dir.path().join("synthetic"));
    let good = small_settings(2);
    // An infinite ID weight makes the very first loss non-finite.
    let infinite = TrainSettings {
        objective: ObjectiveConfig {
            id_weight: f64::INFINITY,
            ..ObjectiveConfig::default()
        },
        ..good.clone()
    };
    let device = Default::default();
    let run = dir.path().join("run");
    let job = |settings, resume, stop_after| TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &transforms,
        settings,
        run_dir: &run,
        resume,
        stop_after,
    };
    let fresh = || model_config.init::<Autodiff<Flex>>(&device);
    let stopped_at = |err: TrainError| match err {
        TrainError::NonFiniteLoss {
            epoch, iteration, ..
        } => (epoch, iteration),
        other => panic!("{other}"),
    };
    let err = train(fresh(), &job(&infinite, false, None), &device).unwrap_err();
    assert!(err.to_string().contains("non-finite loss"), "{err}");
    assert_eq!(stopped_at(err), (1, 0));
    // Nothing half-trained was written.
    assert!(!run.join(STATE_FILE).exists());
    assert!(!run.join("checkpoint.safetensors").exists());

    // A good first epoch, then a state whose weights hold a NaN: the resumed epoch 2 stops at
    // its first step and leaves the files of epoch 1 as they were.
    std::fs::remove_dir_all(&run).unwrap();
    train(fresh(), &job(&good, false, Some(1)), &device).unwrap();
    let state = run.join(STATE_FILE);
    let (mut dict, metadata) = read_state_dict(&state).unwrap();
    dict.get_mut("base.cls_token").unwrap().data[0] = f32::NAN;
    write_safetensors(&state, &dict, metadata).unwrap();
    let files =
        || [STATE_FILE, "checkpoint.safetensors"].map(|f| std::fs::read(run.join(f)).unwrap());
    let before = files();
    let err = train(fresh(), &job(&good, true, None), &device).unwrap_err();
    assert_eq!(stopped_at(err), (2, 0));
    assert!(files() == before, "state and checkpoint untouched");
}

#[test]
fn ids_outside_the_sie_table_and_epochs_without_steps_are_refused_before_any_work() {
    // Building models draws from the backend's generator too.
    let _turn = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model_config, transforms) = small_run(&dir.path().join("synthetic"));
    let settings = small_settings(1);
    let device = Default::default();
    let run = dir.path().join("run");
    let attempt = |model_config: &TransReidConfig, settings: &TrainSettings| {
        let job = TrainJob {
            model_config,
            dataset: &dataset,
            transforms: &transforms,
            settings,
            run_dir: &run,
            resume: false,
            stop_after: None,
        };
        train(model_config.init::<Autodiff<Flex>>(&device), &job, &device).unwrap_err()
    };
    let labels = |err: TrainError| match err {
        TrainError::Labels { split, source } => (split, source),
        other => panic!("{other}"),
    };

    // A camera table with one row for a two-camera training split.
    let one_camera = TransReidConfig {
        sie: model_config.sie.clone().with_camera_num(1),
        ..model_config.clone()
    };
    let (split, source) = labels(attempt(&one_camera, &settings));
    assert_eq!(split, Split::Train);
    assert_eq!(source, LabelError::CameraOutOfRange { id: 1, count: 1 });
    // View SIE on a dataset without view labels: every image has the reference's view 1.
    let views = TransReidConfig {
        sie: SieConfig::new().with_mode(SieMode::View).with_view_num(1),
        ..model_config.clone()
    };
    let (_, source) = labels(attempt(&views, &settings));
    assert_eq!(source, LabelError::ViewOutOfRange { id: 1, count: 1 });

    // Micro-batches of all 8 identities x 4 images: their 8 images each make 2 blocks an
    // epoch, short of one step of 4 micro-batches.
    let accumulated = TrainSettings {
        batch_size: 128,
        accumulate: 4,
        ..settings.clone()
    };
    let err = attempt(&model_config, &accumulated);
    assert!(
        matches!(
            err,
            TrainError::NoSteps {
                epoch: 1,
                identities: 8,
                batch_size: 128,
                shards: 4
            }
        ),
        "{err}"
    );
    assert!(!run.exists(), "nothing was written");
}

#[test]
fn a_run_stopped_between_checkpoint_periods_leaves_a_checkpoint() {
    let _turn = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model_config, transforms) = small_run(&dir.path().join("synthetic"));
    let settings = TrainSettings {
        checkpoint_period: 3,
        eval_period: 3,
        ..small_settings(3)
    };
    let device = Default::default();
    Flex::seed(&device, 0);
    let run_dir = dir.path().join("run");
    let job = TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &transforms,
        settings: &settings,
        run_dir: &run_dir,
        resume: false,
        stop_after: Some(1),
    };
    let (_, records) = train(model_config.init::<Autodiff<Flex>>(&device), &job, &device).unwrap();
    assert_eq!(records.len(), 1);
    // Epoch 1 is not a checkpoint epoch (period 3), but the stopped run can be evaluated.
    let checkpoint = run_dir.join(transreid::train::CHECKPOINT_FILE);
    assert!(checkpoint.exists(), "no {}", checkpoint.display());
    transreid::model::load_checkpoint::<Flex>(&checkpoint, &device).unwrap();
}
