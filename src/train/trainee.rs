//! What the training loop needs of a model and its objective, so that one loop trains
//! TransReID and CLIP-ReID's second stage (and its image-only baseline).

use std::path::Path;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use transreid_loss::{
    clip_reid_loss, transreid_loss, ClipReidObjectiveConfig, LossError, ObjectiveConfig,
};
use transreid_model::{
    clip_reid_state_dict, export_state_dict, load_clip_reid, load_reference_dict,
    save_checkpoint_with_input, save_clip_reid_checkpoint, ClipReid, ClipReidConfig, ImportError,
    ImportOptions, InputSpec, Precision, ReidModel, StateDict, TransReid, TransReidConfig,
};

use super::settings::{ModelSettings, Setting};

/// One micro-batch of the training split on the device.
pub struct TrainBatch<B: Backend> {
    /// `[n, 3, H, W]`.
    pub images: Tensor<B, 4>,
    /// `[n]`.
    pub cameras: Tensor<B, 1, Int>,
    /// `[n]`.
    pub views: Tensor<B, 1, Int>,
    /// The identities `[n]`.
    pub targets: Tensor<B, 1, Int>,
    /// The same identities on the host (triplet mining).
    pub labels: Vec<i64>,
}

/// A micro-batch's loss and the logits whose accuracy the run reports.
pub struct StepLoss<B: Backend> {
    /// The objective, `[1]`.
    pub total: Tensor<B, 1>,
    /// The first classifier's logits `[n, classes]`.
    pub scores: Tensor<B, 2>,
}

/// A model the training loop can train, with its objective, checkpoint format and state.
pub trait Trainee<B: AutodiffBackend>:
    AutodiffModule<B, InnerModule: ReidModel<B::InnerBackend>> + ModuleSnapshot<B> + Clone
{
    /// The configuration stored in checkpoints and state files.
    type Config: ModelSettings;
    /// The objective's settings.
    type Objective: Setting;
    /// What the objective reads besides the batch, fixed for a whole run and computed from the
    /// model when the run (re)starts: CLIP-ReID's text features of every identity.
    type Fixed;

    /// Computes [`Self::Fixed`] from the model as it starts (after a resume's load).
    fn fixed(&self, batch_size: usize) -> Self::Fixed;

    /// Sets the dtype of the products (see [`ModelSettings::trains_in`]).
    fn set_precision(&mut self, precision: Precision);

    /// The model that evaluation embeds with (always in f32, as the reference's).
    fn eval_model(&self) -> Self::InnerModule;

    /// The objective on one micro-batch.
    fn loss(
        &self,
        batch: TrainBatch<B>,
        objective: &Self::Objective,
        fixed: &Self::Fixed,
    ) -> Result<StepLoss<B>, LossError>;

    /// Every tensor in the reference's names (state files).
    fn export(&self) -> StateDict;

    /// Loads what [`Self::export`] wrote, strictly.
    fn load(&mut self, dict: StateDict) -> Result<(), ImportError>;

    /// Writes the inference checkpoint atomically.
    fn save_checkpoint(
        model: &Self::InnerModule,
        config: &Self::Config,
        input: &InputSpec,
        path: &Path,
    ) -> Result<(), ImportError>;
}

impl<B: AutodiffBackend> Trainee<B> for TransReid<B> {
    type Config = TransReidConfig;
    type Objective = ObjectiveConfig;
    type Fixed = ();

    fn fixed(&self, _: usize) {}

    fn set_precision(&mut self, precision: Precision) {
        TransReid::set_precision(self, precision);
    }

    fn eval_model(&self) -> TransReid<B::InnerBackend> {
        self.valid().with_precision(Precision::F32)
    }

    fn loss(
        &self,
        batch: TrainBatch<B>,
        objective: &ObjectiveConfig,
        _: &(),
    ) -> Result<StepLoss<B>, LossError> {
        let out = self.forward_train(batch.images, Some(batch.cameras), Some(batch.views));
        let loss = transreid_loss(
            &out.scores,
            &out.feats,
            batch.targets,
            &batch.labels,
            objective,
        )?;
        Ok(StepLoss {
            total: loss.total,
            scores: out.scores[0].clone(),
        })
    }

    fn export(&self) -> StateDict {
        export_state_dict(self)
    }

    fn load(&mut self, dict: StateDict) -> Result<(), ImportError> {
        load_reference_dict(self, dict, ImportOptions::default()).map(|_| ())
    }

    fn save_checkpoint(
        model: &TransReid<B::InnerBackend>,
        config: &TransReidConfig,
        input: &InputSpec,
        path: &Path,
    ) -> Result<(), ImportError> {
        save_checkpoint_with_input(model, config, input, path)
    }
}

impl<B: AutodiffBackend> Trainee<B> for ClipReid<B> {
    type Config = ClipReidConfig;
    type Objective = ClipReidObjectiveConfig;
    /// The text feature of every identity `[classes, output_dim]`, or `None` without the text
    /// side (the baseline, no image-to-text term).
    type Fixed = Option<Tensor<B, 2>>;

    fn fixed(&self, batch_size: usize) -> Option<Tensor<B, 2>> {
        let model = self.valid();
        let classes = model.prompt_learner.as_ref()?.num_classes();
        let device = model.image_encoder.class_embedding.device();
        // In chunks of the batch size, as the reference computes them.
        let chunks: Vec<_> = (0..classes)
            .step_by(batch_size.max(1))
            .map(|start| {
                let end = (start + batch_size.max(1)).min(classes);
                let ids = Tensor::arange(start as i64..end as i64, &device);
                model.text_features(ids)
            })
            .collect::<Option<_>>()?;
        Some(Tensor::from_inner(Tensor::cat(chunks, 0)))
    }

    fn set_precision(&mut self, _: Precision) {}

    fn eval_model(&self) -> ClipReid<B::InnerBackend> {
        self.valid()
    }

    fn loss(
        &self,
        batch: TrainBatch<B>,
        objective: &ClipReidObjectiveConfig,
        text: &Option<Tensor<B, 2>>,
    ) -> Result<StepLoss<B>, LossError> {
        let out = self.forward_train(batch.images, Some(batch.cameras), Some(batch.views));
        let logits = text
            .as_ref()
            .map(|text| out.feats[2].clone().matmul(text.clone().transpose()));
        let loss = clip_reid_loss(
            &out.scores,
            &out.feats,
            logits,
            batch.targets,
            &batch.labels,
            objective,
        )?;
        Ok(StepLoss {
            total: loss.total,
            scores: out.scores[0].clone(),
        })
    }

    fn export(&self) -> StateDict {
        clip_reid_state_dict(self)
    }

    fn load(&mut self, dict: StateDict) -> Result<(), ImportError> {
        let skipped = load_clip_reid(self, &dict)?;
        match skipped.is_empty() {
            true => Ok(()),
            false => Err(ImportError::UnexpectedKeys(skipped)),
        }
    }

    fn save_checkpoint(
        model: &ClipReid<B::InnerBackend>,
        config: &ClipReidConfig,
        input: &InputSpec,
        path: &Path,
    ) -> Result<(), ImportError> {
        save_clip_reid_checkpoint(model, config, input, path)
    }
}
