//! `transreid import` of CLIP files: CLIP weights of any layout, or a trained CLIP-ReID model
//! (the reference's `.pth`), into a CLIP-ReID checkpoint.

use std::collections::BTreeMap;

use anyhow::Context;
use burn::tensor::backend::Backend;
use transreid::backend::CpuBackend;
use transreid::config::PatchStem;
use transreid::data::Normalization;
use transreid::input_normalization::input_spec;
use transreid::model::{
    clip_openai_dict, load_clip_pretrained, load_clip_reid, read_state_dict,
    save_clip_reid_checkpoint_with_metadata, ClipArchitecture, ClipLayout, ClipReidConfig,
    PromptObject, SieMode,
};

use crate::import::{ImportArgs, IMPORT_SEED_KEY};

/// Imports the CLIP file of `layout` that `args.source` holds.
pub fn run(args: &ImportArgs, layout: ClipLayout) -> anyhow::Result<()> {
    let source = args.source.display();
    let transreid_only = [
        (args.preset.is_some(), "--preset"),
        (args.jpm, "--jpm"),
        (args.stem != PatchStem::Conv, "--stem"),
        (args.pretrain_grid.is_some(), "--pretrain-grid"),
        (args.pretrain_hw_ratio != 1, "--pretrain-hw-ratio"),
        (args.allow_partial, "--allow-partial"),
    ];
    if let Some((_, flag)) = transreid_only.iter().find(|(given, _)| *given) {
        anyhow::bail!(
            "{flag} is for TransReID backbones; {source} is {layout}, whose architecture the \
             file gives (CLIP imports are strict)"
        );
    }
    let loading = || format!("importing {source}");
    let (dict, _) = read_state_dict(&args.source).with_context(loading)?;
    let (_, openai) = clip_openai_dict(&dict).with_context(loading)?;
    let architecture = ClipArchitecture::from_openai(&openai).with_context(loading)?;
    let trained = layout == ClipLayout::ClipReid;

    let num_classes = if trained {
        let rows = dict
            .get("classifier.weight")
            .and_then(|t| t.shape.first().copied())
            .with_context(|| {
                format!("{source} is a CLIP-ReID model without `classifier.weight`")
            })?;
        if let Some(given) = args.num_classes.filter(|&n| n != rows) {
            anyhow::bail!("--num-classes {given}, but the file's classifier has {rows} classes");
        }
        rows
    } else {
        args.num_classes.context(
            "--num-classes is needed: the identities of the training set the new heads are for",
        )?
    };
    anyhow::ensure!(num_classes > 0, "--num-classes must be at least 1");

    let sie = args.sie(3.0);
    if sie.mode != SieMode::None && args.sie_coefficient.is_none() {
        anyhow::bail!(
            "--sie-coefficient is needed for a CLIP-ReID model with SIE: the reference's default \
             is 3.0, its published SIE runs use 1.0"
        );
    }
    if trained {
        let file_rows = dict.get("cv_embed").map(|t| t.shape[0]);
        match (file_rows, sie.table_len()) {
            (Some(rows), None) => anyhow::bail!(
                "the file has an SIE table of {rows} rows: give --cameras (and --views) and \
                 --sie-coefficient of its training run"
            ),
            (None, Some(_)) => {
                anyhow::bail!(
                    "the file has no SIE table (`cv_embed`): leave out --cameras / --views"
                )
            }
            (Some(file), Some(rows)) if file != rows => anyhow::bail!(
                "the file's SIE table has {file} rows, {} makes {rows}",
                sie.describe()
            ),
            _ => {}
        }
    }

    let size = [args.size[0], args.size[1]];
    let vision = architecture.vision(size, [args.stride; 2]);
    vision.validate()?;
    let [h, w] = vision.grid();
    if trained && architecture.pretrain_tokens != h * w {
        anyhow::bail!(
            "the model was trained at a grid of {} patches, but --size {} {} --stride {} make \
             {h}x{w}: give its training run's size and stride",
            architecture.pretrain_tokens,
            size[0],
            size[1],
            args.stride
        );
    }
    let (text, text_note) = match (&architecture.text, args.image_only) {
        (Some(_), true) => (None, "left out (--image-only)"),
        (Some(text), false) => (Some(text.clone()), "imported with the prompts"),
        (None, _) => (None, "not in the file"),
    };
    let object = match (&text, args.object) {
        (None, Some(_)) => anyhow::bail!(
            "--object names the prompts' noun, and this import has no prompts (text tower {text_note})"
        ),
        (None, None) => PromptObject::default(),
        (Some(_), Some(object)) => object,
        (Some(_), None) => {
            println!("prompts end in \"person.\" (--object vehicle for VeRi-776 / VehicleID)");
            PromptObject::Person
        }
    };
    let config = ClipReidConfig::new(vision, num_classes)
        .with_sie(sie)
        .with_neck_feat(args.neck_feat)
        .with_text(text)
        .with_object(object);
    config.validate()?;

    let device = Default::default();
    CpuBackend::seed(&device, args.seed);
    let mut model = config.init::<CpuBackend>(&device);
    if trained {
        let skipped = load_clip_reid(&mut model, &dict).with_context(loading)?;
        if !skipped.is_empty() {
            println!(
                "{} tensors of the text side left out (--image-only)",
                skipped.len()
            );
        }
    } else {
        load_clip_pretrained(&mut model, layout, &openai).with_context(loading)?;
    }
    println!(
        "detected {layout}: width {}, {} blocks, patch {}, projection {}; text tower {text_note}",
        architecture.width, architecture.layers, architecture.patch_size, architecture.output_dim,
    );
    if architecture.pretrain_tokens != h * w {
        println!(
            "position embedding resized from {} to {h}x{w} patches",
            architecture.pretrain_tokens
        );
    }
    args.print_sie(&config.sie);
    let normalization = match args.normalization {
        Some(choice) => Normalization::from(choice),
        None => {
            println!(
                "input normalisation: mean 0.5 std 0.5 (CLIP-ReID's for ViT models; \
                 --normalization overrides)"
            );
            Normalization::HALF
        }
    };
    let input = input_spec(normalization, config.vision.img_size);
    let extra = BTreeMap::from([(IMPORT_SEED_KEY.to_string(), args.seed.to_string())]);
    save_clip_reid_checkpoint_with_metadata(&model, &config, &input, extra, &args.out)?;
    if trained {
        println!("wrote {} (every tensor from the file)", args.out.display());
    } else {
        println!(
            "wrote {} (heads, SIE table and prompt vectors initialised with --seed {})",
            args.out.display(),
            args.seed
        );
    }
    Ok(())
}
