//! CLIP-ReID's two stages through the training loop on a synthetic set: stage 1's loss falls
//! and stage 2's mAP rises; a run stopped in either stage and resumed ends with the same
//! weights as an uninterrupted one; the run folder's checkpoint serves evaluation.
//!
//! The backend's random generator is process-wide, so the tests here take turns.

use std::path::Path;
use std::sync::Mutex;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::Backend;
use transreid::data::{
    load_dataset, synth, DatasetKind, EvalLoader, ImageSize, LoadOptions, LoaderConfig,
    ReidDataset, SynthConfig, TestTransform, TransformConfig,
};
use transreid::distributed::SingleProcess;
use transreid::eval::EvalConfig;
use transreid::inference::evaluate_model;
use transreid::loss::ClipReidObjectiveConfig;
use transreid::model::{
    clip_reid_state_dict, load_clip_reid_checkpoint, ClipReid, ClipReidConfig, ClipTextConfig,
    ClipVisionConfig, Precision, SieConfig, SieMode,
};
use transreid::optim::{OptimizerKind, ScheduleKind, SolverConfig};
use transreid::train::{
    train_clip_reid, ClipReidJob, ParallelOptions, PromptSettings, TrainError, TrainJob,
    TrainSettings, CHECKPOINT_FILE, PROMPT_METRICS_FILE, PROMPT_STATE_FILE,
};

type A = Autodiff<Flex>;

static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// A small synthetic set and a tiny CLIP-ReID (camera SIE, text side) at 64x32.
fn small_run(root: &Path) -> (ReidDataset, ClipReidConfig, TransformConfig) {
    let mut config = SynthConfig::new(root);
    config.train_ids = 8;
    config.test_ids = 6;
    config.cameras = 2;
    config.height = 64;
    config.width = 32;
    synth::generate(&config).unwrap();
    let dataset = load_dataset(DatasetKind::Market1501, root, &LoadOptions::default()).unwrap();
    let model_config = ClipReidConfig::new(
        ClipVisionConfig::new([64, 32], 32, 2, 2, 16),
        dataset.num_train_pids,
    )
    .with_sie(
        SieConfig::new()
            .with_mode(SieMode::Camera)
            .with_camera_num(dataset.num_train_cams)
            .with_coefficient(1.0),
    )
    .with_text(Some(ClipTextConfig::new(32, 1, 2, 16)));
    let transforms = TransformConfig::person().with_size(ImageSize {
        height: 64,
        width: 32,
    });
    (dataset, model_config, transforms)
}

/// Stage 2 as the reference's (Adam, biases at twice the lr, warmup multi-step), at a learning
/// rate a model without pre-training learns with in a few epochs.
fn stage2_settings(epochs: usize, base_lr: f64) -> TrainSettings<ClipReidObjectiveConfig> {
    TrainSettings {
        epochs,
        batch_size: 16,
        instances: 4,
        solver: SolverConfig {
            weight_decay: 1e-4,
            weight_decay_bias: 1e-4,
            bias_lr_factor: 2.0,
            ..SolverConfig::new(base_lr)
        },
        optimizer: OptimizerKind::Adam,
        schedule: ScheduleKind::MultiStep {
            milestones: vec![epochs + 1],
            gamma: 0.1,
            warmup_factor: 0.1,
        },
        warmup_epochs: 2,
        objective: ClipReidObjectiveConfig::default(),
        eval_period: epochs,
        checkpoint_period: epochs,
        eval_batch_size: 32,
        seed: 5,
        workers: 1,
        precision: Precision::F32,
        accumulate: 1,
    }
}

fn job<'a>(
    model_config: &'a ClipReidConfig,
    dataset: &'a ReidDataset,
    transforms: &'a TransformConfig,
    settings: &'a TrainSettings<ClipReidObjectiveConfig>,
    prompts: &'a PromptSettings,
    run_dir: &'a Path,
) -> ClipReidJob<'a> {
    ClipReidJob {
        stage2: TrainJob {
            model_config,
            dataset,
            transforms,
            settings,
            run_dir,
            resume: false,
            stop_after: None,
        },
        prompts: Some(prompts),
        prompt_stop_after: None,
    }
}

fn run(model: ClipReid<A>, job: &ClipReidJob<'_>) -> Result<ClipReid<A>, TrainError> {
    let device = Default::default();
    let options = ParallelOptions::default();
    train_clip_reid(model, job, &device, &SingleProcess, &options).map(|(model, _)| model)
}

fn fresh(config: &ClipReidConfig, seed: u64) -> ClipReid<A> {
    let device = Default::default();
    Flex::seed(&device, seed);
    config.init(&device)
}

/// Column `column` of a CSV file's rows.
fn column(path: &Path, column: usize) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(column).unwrap().parse().unwrap())
        .collect()
}

/// The fraction of training images whose own identity's text feature scores highest.
fn text_accuracy(model: &ClipReid<A>, dataset: &ReidDataset, transforms: &TransformConfig) -> f64 {
    let model = model.valid();
    let device = Default::default();
    let loader = EvalLoader::new(
        &dataset.train,
        &[],
        TestTransform::new(transforms).unwrap(),
        64,
        LoaderConfig::default(),
    )
    .unwrap();
    let ids = Tensor::arange(0..dataset.num_train_pids as i64, &device);
    let text = model.text_features(ids).unwrap();
    let (mut hits, mut seen) = (0, 0);
    for batch in loader.batches() {
        let batch = batch.unwrap();
        let images = Tensor::from_data(TensorData::new(batch.images, batch.shape), &device);
        let best = model
            .image_features(images)
            .matmul(text.clone().transpose())
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        hits += best
            .iter()
            .zip(&batch.pids)
            .filter(|(b, &p)| **b == p as i64)
            .count();
        seen += batch.pids.len();
    }
    hits as f64 / seen as f64
}

#[test]
fn the_baseline_and_both_stages_learn_and_the_checkpoint_evaluates_alike() {
    let _turn = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model_config, transforms) = small_run(&dir.path().join("synthetic"));
    let device = Default::default();
    let loader = EvalLoader::from_dataset(
        &dataset,
        TestTransform::new(&transforms).unwrap(),
        32,
        LoaderConfig::default(),
    )
    .unwrap();
    let evaluate = |model: &ClipReid<Flex>| {
        evaluate_model(model, &loader, &device, &EvalConfig::default()).unwrap()
    };

    // The baseline (no text side, stage 2 alone, ID weight 1) learns from scratch; its image
    // encoder then stands in for a pre-trained CLIP's, whose features tell identities apart.
    let baseline_config = model_config.clone().with_text(None);
    let baseline = fresh(&baseline_config, 1);
    let random = evaluate(&baseline.valid());
    let settings = TrainSettings {
        objective: ClipReidObjectiveConfig {
            id_weight: 1.0,
            ..Default::default()
        },
        ..stage2_settings(10, 1e-3)
    };
    let baseline_dir = dir.path().join("baseline");
    let unused = PromptSettings::new(1, 1);
    let baseline_job = ClipReidJob {
        prompts: None,
        ..job(
            &baseline_config,
            &dataset,
            &transforms,
            &settings,
            &unused,
            &baseline_dir,
        )
    };
    let baseline = run(baseline, &baseline_job).unwrap();
    let pretrained = evaluate(&baseline.valid());
    assert!(
        pretrained.map > random.map + 0.1,
        "baseline mAP {} -> {}",
        random.map,
        pretrained.map
    );
    assert!(!baseline_dir.join(PROMPT_STATE_FILE).exists());

    let mut model = fresh(&model_config, 2);
    model.image_encoder = baseline.image_encoder;
    model.cv_embed = baseline.cv_embed;
    let untrained_prompts = text_accuracy(&model, &dataset, &transforms);
    let mut learn_prompts_only = model.clone();
    let settings = stage2_settings(10, 1e-3);
    let prompts = PromptSettings {
        base_lr: 5e-2,
        warmup_epochs: 1,
        ..PromptSettings::new(20, 8)
    };
    let run_dir = dir.path().join("run");
    let job = job(
        &model_config,
        &dataset,
        &transforms,
        &settings,
        &prompts,
        &run_dir,
    );
    let (trained, records) = train_clip_reid(
        model,
        &job,
        &Default::default(),
        &SingleProcess,
        &Default::default(),
    )
    .unwrap();

    let prompt_losses = column(&run_dir.join(PROMPT_METRICS_FILE), 1);
    // (Stage 2 leaves the prompts alone.)
    learn_prompts_only.prompt_learner = trained.prompt_learner.clone();
    // Stage 1 taught the prompts the identities: the image features of the training set now
    // find their own identity's text feature well above chance.
    let learned_prompts = text_accuracy(&learn_prompts_only, &dataset, &transforms);
    let chance = 1.0 / dataset.num_train_pids as f64;
    assert!(
        untrained_prompts < 2.0 * chance && learned_prompts > 2.0 * chance,
        "image-to-text accuracy {untrained_prompts} -> {learned_prompts} (chance {chance})"
    );
    assert_eq!(prompt_losses.len(), 20);
    assert!(
        prompt_losses[19] < 0.9 * prompt_losses[0],
        "stage 1 loss {prompt_losses:?}"
    );
    let after = records.last().unwrap().metrics.clone().unwrap();
    assert!(
        after.map > pretrained.map + 0.05,
        "stage 2 mAP {} -> {}",
        pretrained.map,
        after.map
    );
    let (loaded, stored, input) =
        load_clip_reid_checkpoint::<Flex>(&run_dir.join(CHECKPOINT_FILE), &device).unwrap();
    assert_eq!(stored, model_config);
    assert_eq!(input.unwrap().mean, transforms.normalization.mean);
    assert_eq!(evaluate(&loaded).map, after.map);
    let a = clip_reid_state_dict(&trained.valid());
    let b = clip_reid_state_dict(&loaded);
    for (key, tensor) in &a {
        assert_eq!(tensor.data, b[key].data, "{key}");
    }
}

#[test]
fn a_run_stopped_in_either_stage_resumes_exactly() {
    let _turn = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model_config, transforms) = small_run(&dir.path().join("synthetic"));
    let settings = stage2_settings(3, 1e-4);
    let prompts = PromptSettings::new(3, 16);
    let make = |run_dir| {
        job(
            &model_config,
            &dataset,
            &transforms,
            &settings,
            &prompts,
            run_dir,
        )
    };

    let straight_dir = dir.path().join("straight");
    let straight = run(fresh(&model_config, 3), &make(&straight_dir)).unwrap();

    let split_dir = dir.path().join("split");
    let stop_in_stage1 = ClipReidJob {
        prompt_stop_after: Some(2),
        ..make(&split_dir)
    };
    run(fresh(&model_config, 3), &stop_in_stage1).unwrap();
    assert!(split_dir.join(PROMPT_STATE_FILE).exists());
    assert!(!split_dir.join(CHECKPOINT_FILE).exists());
    // A fresh run into the folder is refused.
    assert!(matches!(
        run(fresh(&model_config, 3), &make(&split_dir)),
        Err(TrainError::RunExists { .. })
    ));
    // Resume stage 1's last epoch and stop after stage 2's first.
    let mut resume = make(&split_dir);
    resume.stage2.resume = true;
    resume.stage2.stop_after = Some(1);
    run(fresh(&model_config, 3), &resume).unwrap();
    // The rest of stage 2, from other initial weights: the states replace them.
    resume.stage2.stop_after = None;
    let resumed = run(fresh(&model_config, 99), &resume).unwrap();

    let a = clip_reid_state_dict(&straight.valid());
    let b = clip_reid_state_dict(&resumed.valid());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, tensor) in &a {
        assert_eq!(tensor.data, b[key].data, "{key} differs after resume");
    }
    assert_eq!(
        column(&straight_dir.join(PROMPT_METRICS_FILE), 1),
        column(&split_dir.join(PROMPT_METRICS_FILE), 1)
    );
}

#[test]
fn the_stages_must_fit_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model_config, transforms) = small_run(&dir.path().join("synthetic"));
    let settings = stage2_settings(1, 1e-4);
    let prompts = PromptSettings::new(1, 16);
    let run_dir = dir.path().join("run");
    let without_prompts = ClipReidJob {
        prompts: None,
        ..job(
            &model_config,
            &dataset,
            &transforms,
            &settings,
            &prompts,
            &run_dir,
        )
    };
    assert!(matches!(
        transreid::train::check_clip_reid_job(&without_prompts, 1),
        Err(TrainError::ClipReidStages { has_text: true })
    ));
    let f16 = TrainSettings {
        precision: Precision::F16,
        ..settings.clone()
    };
    let job = job(
        &model_config,
        &dataset,
        &transforms,
        &f16,
        &prompts,
        &run_dir,
    );
    assert!(matches!(
        transreid::train::check_clip_reid_job(&job, 1),
        Err(TrainError::Precision { .. })
    ));
    assert!(!run_dir.exists(), "nothing written");
}
