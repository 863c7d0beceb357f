//! Every shipped configuration parses, validates and carries the reference's values.

use std::path::{Path, PathBuf};

use transreid::config::{PatchStem, Pretrained, RunConfig};
use transreid::data::{DatasetKind, ImageSize, Normalization};
use transreid::model::VitPreset;

fn configs() -> Vec<(PathBuf, RunConfig)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut found = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config = RunConfig::from_file(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                found.push((path, config));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn get<'a>(all: &'a [(PathBuf, RunConfig)], name: &str) -> &'a RunConfig {
    &all.iter()
        .find(|(p, _)| p.ends_with(name))
        .unwrap_or_else(|| panic!("{name} missing"))
        .1
}

/// Presets of the self-supervised LUPerson fine-tunes (PersonViT, TransReID-SSL).
fn is_self_supervised(path: &std::path::Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.starts_with("personvit") || name.starts_with("transreid_ssl")
}

/// CLIP-ReID's presets.
fn is_clip_reid(path: &std::path::Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.starts_with("clipreid")
}

#[test]
fn every_reference_configuration_is_shipped_and_valid() {
    let (ssl, all): (Vec<_>, Vec<_>) = configs()
        .into_iter()
        .filter(|(p, _)| !is_clip_reid(p))
        .partition(|(p, _)| is_self_supervised(p));
    // 42 reference configurations plus the synthetic one, and 16 self-supervised fine-tunes.
    assert_eq!(all.len(), 43);
    assert_eq!(ssl.len(), 16);
    for (path, config) in all.iter().chain(&ssl) {
        // The resolved form written into run folders reads back identically.
        let again: RunConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(&again, config, "{}", path.display());
    }
    for (path, config) in &all {
        if !path.to_string_lossy().contains("synthetic") {
            assert_eq!(config.solver.max_epochs, 120);
            assert_eq!(config.solver.num_instance, 4);
            assert_eq!(config.solver.weight_decay, 1e-4);
            assert_eq!(config.solver.weight_decay_bias, 1e-4);
            assert_eq!(config.solver.bias_lr_factor, 2.0);
            assert_eq!(config.loss.unwrap().label_smoothing, 0.0);
            assert_eq!(
                config.loss.unwrap().margin,
                transreid::loss::TripletMargin::Soft
            );
            assert_eq!(config.model.drop_path, 0.1);
            assert_eq!(config.test.ims_per_batch, 256);
            assert!(matches!(
                config.model.pretrained,
                Pretrained::Imagenet { .. }
            ));
        }
    }
}

#[test]
fn configurations_carry_the_table_of_the_reference() {
    let all = configs();
    let occ = get(&all, "occluded_duke/vit_transreid_stride.toml");
    assert_eq!(occ.dataset.kind, DatasetKind::OccludedDuke);
    assert_eq!(occ.model.stride, [11, 11]);
    assert!(occ.model.sie_camera && !occ.model.sie_view);
    assert_eq!(occ.model.jpm.as_ref().unwrap().shift_num, 5);

    let market384 = get(&all, "market/vit_transreid_stride_384.toml");
    assert_eq!(market384.input.train_size, ImageSize::new(384, 128));
    assert_eq!(market384.model.stride, [12, 12]);
    assert_eq!(market384.solver.base_lr, 0.008);

    let base = get(&all, "market/vit_base.toml");
    assert!(base.model.jpm.is_none() && !base.model.sie_camera);

    let msmt_deit = get(&all, "msmt17/deit_transreid_stride.toml");
    assert_eq!(msmt_deit.model.backbone, Some(VitPreset::DeitBase16));
    assert_eq!(msmt_deit.solver.base_lr, 0.005);
    assert_eq!(msmt_deit.input.erasing_prob, 0.8);
    assert_eq!(msmt_deit.input.normalization, Normalization::HALF);
    assert_eq!(
        get(&all, "msmt17/vit_small.toml").model.backbone,
        Some(VitPreset::VitSmallLegacy)
    );
    assert_eq!(
        get(&all, "msmt17/deit_small.toml").model.backbone,
        Some(VitPreset::DeitSmall16)
    );

    let veri = get(&all, "veri776/deit_transreid_stride.toml");
    assert!(veri.model.sie_camera && veri.model.sie_view);
    assert_eq!(veri.model.jpm.as_ref().unwrap().shift_num, 8);
    assert_eq!(veri.input.train_size, ImageSize::new(256, 256));
    assert_eq!(veri.input.normalization, Normalization::IMAGENET);
    assert_eq!(veri.solver.base_lr, 0.01);

    let vid = get(&all, "vehicleid/vit_transreid_stride.toml");
    assert_eq!(vid.solver.ims_per_batch, 256);
    assert_eq!(vid.solver.base_lr, 0.045);
    assert!(!vid.model.sie_camera);
    assert_eq!(
        get(&all, "vehicleid/vit_transreid.toml")
            .solver
            .ims_per_batch,
        224
    );
    assert_eq!(get(&all, "vehicleid/vit_base.toml").solver.base_lr, 0.04);
    assert_eq!(
        get(&all, "vehicleid/deit_transreid.toml").solver.base_lr,
        0.03
    );

    // VeRi sizes its SIE table from the training split: 20 cameras x 8 views.
    let model = veri.model_config(576, 20, 8);
    assert_eq!(model.sie.table_len(), Some(160));
    assert_eq!(model.vit.grid(), [21, 21]);
}

#[test]
fn self_supervised_presets_carry_the_published_recipes() {
    let all = configs();
    for (path, config) in all.iter().filter(|(p, _)| is_self_supervised(p)) {
        let name = path.display().to_string();
        let (m, s) = (&config.model, &config.solver);
        assert!(
            matches!(m.pretrained, Pretrained::SelfSupervised { .. }),
            "{name}"
        );
        assert_eq!(m.pretrain_hw_ratio, 2, "{name}");
        assert_eq!(m.stride, [16, 16], "{name}");
        assert_eq!(
            (s.base_lr, s.max_epochs, s.ims_per_batch),
            (4e-4, 120, 64),
            "{name}"
        );
        assert_eq!(config.loss.unwrap().label_smoothing, 0.0, "{name}");
        assert_eq!(
            config.loss.unwrap().margin,
            transreid::loss::TripletMargin::Soft,
            "{name}"
        );
        assert_eq!(m.neck_feat, transreid::model::NeckFeat::Before, "{name}");
        assert_eq!(config.input.normalization.mean, [0.5; 3], "{name}");
        // Only the marked combination adds TransReID's modules.
        let combined = name.contains("personvit_transreid");
        assert_eq!(m.jpm.is_some(), combined, "{name}");
        assert_eq!(m.sie_camera, combined, "{name}");
        assert!(!m.sie_view, "{name}");
        let ics = name.contains("_ics");
        assert_eq!(m.stem == PatchStem::Ics, ics, "{name}");
        let size = config.input.train_size;
        let tall = name.contains("_384");
        assert_eq!(
            (size.height, size.width),
            (if tall { 384 } else { 256 }, 128),
            "{name}"
        );
        let small = name.contains("vit_small");
        let backbone = if small {
            VitPreset::VitSmall16
        } else {
            VitPreset::VitBase16
        };
        assert_eq!(m.backbone, Some(backbone), "{name}");
        // PersonViT's market/vit_base.yml leaves the warmup at its default of 5.
        let warmup = if name.ends_with("market/personvit_vit_base.toml") {
            5
        } else {
            20
        };
        assert_eq!(s.warmup_epochs, warmup, "{name}");
        // The model builds: the ICS stem at stride 16, JPM on the 16x8 grid.
        config.model_config(751, 6, 1).validate().unwrap();
    }
}

#[test]
fn clip_reid_presets_carry_the_references_recipes() {
    let all: Vec<_> = configs()
        .into_iter()
        .filter(|(p, _)| is_clip_reid(p))
        .collect();
    // Three per dataset: CLIP-ReID, with SIE and overlapping patches, and the baseline.
    assert_eq!(all.len(), 18);
    for (path, config) in &all {
        let name = path.display().to_string();
        let again: RunConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(&again, config, "{name}");
        let (m, s) = (&config.model, &config.solver);
        let clip = config.clip_reid.as_ref().unwrap();
        let vehicle = name.contains("veri776") || name.contains("vehicleid");
        let vehicleid = name.contains("vehicleid");
        assert!(matches!(m.pretrained, Pretrained::Clip { .. }), "{name}");
        assert!(config.loss.is_none() && m.backbone.is_none(), "{name}");
        assert_eq!(
            clip.object,
            if vehicle {
                transreid::model::PromptObject::Vehicle
            } else {
                transreid::model::PromptObject::Person
            },
            "{name}"
        );
        let size = config.input.train_size;
        assert_eq!(
            (size.height, size.width),
            (256, if vehicle { 256 } else { 128 }),
            "{name}"
        );
        assert_eq!(config.input.normalization.mean, [0.5; 3], "{name}");
        assert_eq!(config.input.normalization.std, [0.5; 3], "{name}");
        // Stage 2 (or the baseline's only stage).
        assert_eq!(s.optimizer, transreid::optim::OptimizerKind::Adam, "{name}");
        assert_eq!(
            s.schedule,
            transreid::optim::ScheduleKind::clip_reid(),
            "{name}"
        );
        assert_eq!(
            (
                s.max_epochs,
                s.ims_per_batch,
                s.num_instance,
                s.warmup_epochs
            ),
            (60, 64, 4, 10),
            "{name}"
        );
        assert_eq!(s.base_lr, if vehicleid { 5e-5 } else { 5e-6 }, "{name}");
        assert_eq!(
            (s.weight_decay, s.weight_decay_bias),
            (1e-4, 1e-4),
            "{name}"
        );
        assert_eq!(s.bias_lr_factor, 2.0, "{name}");
        assert_eq!(clip.loss.margin, transreid::loss::TripletMargin::Hard(0.3));
        let olp = name.contains("_olp_");
        assert_eq!(m.stride, if olp { [12, 12] } else { [16, 16] }, "{name}");
        assert_eq!(m.sie_camera, olp && !vehicleid, "{name}");
        assert!(!m.sie_view, "{name}");
        if olp {
            assert_eq!(m.sie_coefficient, 1.0, "{name}");
        }
        if name.contains("baseline") {
            assert!(clip.prompts.is_none(), "{name}");
            assert_eq!(clip.loss.id_weight, 1.0, "{name}");
            let smoothing = if vehicleid { 0.0 } else { 0.1 };
            assert_eq!(clip.loss.label_smoothing, smoothing, "{name}");
        } else {
            let p = clip.prompts.as_ref().unwrap();
            assert_eq!(clip.loss.id_weight, 0.25, "{name}");
            assert_eq!(
                (clip.loss.i2t_weight, clip.loss.label_smoothing),
                (1.0, 0.1)
            );
            assert_eq!(p.epochs, if vehicle { 60 } else { 120 }, "{name}");
            assert_eq!(p.batch_size, if vehicleid { 256 } else { 64 }, "{name}");
            assert_eq!(
                (
                    p.base_lr,
                    p.weight_decay,
                    p.warmup_epochs,
                    p.warmup_lr,
                    p.min_lr
                ),
                (3.5e-4, 1e-4, 5, 1e-5, 1e-6),
                "{name}"
            );
        }
    }
    // One per dataset kind and variant.
    for folder in [
        "market",
        "msmt17",
        "dukemtmc",
        "occluded_duke",
        "veri776",
        "vehicleid",
    ] {
        let olp = if folder == "vehicleid" {
            "clipreid_olp_vit_base"
        } else {
            "clipreid_sie_olp_vit_base"
        };
        for name in ["clipreid_vit_base", olp, "clipreid_baseline_vit_base"] {
            get(&all, &format!("{folder}/{name}.toml"));
        }
    }
}
