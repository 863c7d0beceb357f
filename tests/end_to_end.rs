//! A short training run on synthetic data learns: mAP rises well above the untrained model's.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use transreid::data::{
    load_dataset, synth, DatasetKind, EvalLoader, ImageSize, LoadOptions, LoaderConfig,
    SynthConfig, TestTransform, TransformConfig,
};
use transreid::eval::EvalConfig;
use transreid::inference::evaluate_model;
use transreid::loss::ObjectiveConfig;
use transreid::model::{
    load_checkpoint, JpmConfig, Precision, SieConfig, SieMode, TransReidConfig, VitPreset,
};
use transreid::optim::{OptimizerKind, ScheduleKind, SolverConfig};
use transreid::train::{train, TrainJob, TrainSettings, PLOT_FILE};

#[test]
fn short_training_run_learns_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synthetic");
    let mut config = SynthConfig::new(&root);
    config.train_ids = 16;
    config.test_ids = 16;
    config.cameras = 4;
    config.height = 128;
    config.width = 64;
    synth::generate(&config).unwrap();
    let dataset = load_dataset(DatasetKind::Market1501, &root, &LoadOptions::default()).unwrap();
    let transforms = TransformConfig::person().with_size(ImageSize {
        height: 128,
        width: 64,
    });

    let model_config = TransReidConfig::new(
        VitPreset::Tiny.config([128, 64], [16, 16]),
        dataset.num_train_pids,
    )
    .with_sie(
        SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(dataset.num_train_cams),
    )
    .with_jpm(Some(JpmConfig::new()));
    let device = Default::default();
    Flex::seed(&device, 1);
    let model = model_config.init::<Autodiff<Flex>>(&device);
    let eval_loader = EvalLoader::from_dataset(
        &dataset,
        TestTransform::new(&transforms).unwrap(),
        64,
        LoaderConfig::default(),
    )
    .unwrap();
    let before = evaluate_model(
        &model.valid(),
        &eval_loader,
        &device,
        &EvalConfig::default(),
    )
    .unwrap();

    let settings = TrainSettings {
        epochs: 20,
        batch_size: 32,
        instances: 4,
        solver: SolverConfig::new(0.03),
        optimizer: OptimizerKind::Sgd,
        schedule: ScheduleKind::Cosine,
        warmup_epochs: 2,
        objective: ObjectiveConfig::default(),
        eval_period: 10,
        checkpoint_period: 5,
        eval_batch_size: 64,
        seed: 0,
        workers: 2,
        precision: Precision::F32,
        accumulate: 1,
    };
    let run = dir.path().join("run");
    let job = TrainJob {
        model_config: &model_config,
        dataset: &dataset,
        transforms: &transforms,
        settings: &settings,
        run_dir: &run,
        resume: false,
        stop_after: None,
    };
    let (_, records) = train(model, &job, &device).unwrap();
    let after = records.last().unwrap().metrics.clone().unwrap();
    assert!(
        after.map > before.map + 0.10,
        "mAP before {:.3}, after {:.3}",
        before.map,
        after.map
    );
    assert!(records.first().unwrap().loss > records.last().unwrap().loss);

    // metrics.csv has a header and one row per epoch; the checkpoint loads back.
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + settings.epochs);
    let (reloaded, config) =
        load_checkpoint::<Flex>(&run.join("checkpoint.safetensors"), &device).unwrap();
    assert_eq!(config, model_config);
    let again = evaluate_model(&reloaded, &eval_loader, &device, &EvalConfig::default()).unwrap();
    assert!((again.map - after.map).abs() < 1e-6);
    let figure = image::open(run.join(PLOT_FILE)).unwrap();
    assert_eq!((figure.width(), figure.height()), (1280, 960));
}
