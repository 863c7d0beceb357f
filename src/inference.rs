//! Embedding a re-identification set with a model and evaluating it.

use burn::prelude::*;
use transreid_data::{EvalLoader, ImageSize, Normalization, ReidItem, TransformConfig};
use transreid_eval::{
    evaluate, evaluate_rows, rerank_sparse, EvalConfig, Features, Labels, ReidMetrics, RerankConfig,
};
use transreid_model::{LabelError, ReidModel, SieConfig, SieMode};

/// Errors of the inference pipeline.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// Reading or transforming images failed.
    #[error(transparent)]
    Data(#[from] transreid_data::DataError),
    /// The metrics could not be computed.
    #[error(transparent)]
    Eval(#[from] transreid_eval::EvalError),
    /// A camera or view id does not fit the model.
    #[error(transparent)]
    Label(#[from] transreid_model::LabelError),
    /// Pixels that are not a batch of the model's input.
    #[error(
        "a batch of shape {shape:?} with {pixels} values: the model takes [n, 3, {}, {}]",
        input[0], input[1]
    )]
    BatchShape {
        /// The shape given.
        shape: [usize; 4],
        /// Values given.
        pixels: usize,
        /// The model's input size `[height, width]`.
        input: [usize; 2],
    },
    /// Features, items and the query count that do not fit together.
    #[error("{features} feature values for {items} items, {num_query} of them queries")]
    FeatureLayout {
        /// Feature values given.
        features: usize,
        /// Items given.
        items: usize,
        /// Queries among them.
        num_query: usize,
    },
}

/// Embeds every item of the loader (query then gallery), `[items, dim]` row-major.
pub fn embed_items<B: Backend, M: ReidModel<B>>(
    model: &M,
    loader: &EvalLoader,
    device: &B::Device,
) -> Result<Vec<f32>, InferenceError> {
    embed_items_with_progress(model, loader, device, &mut |_| {})
}

/// [`embed_items`], calling `progress` with the number of items of each batch done.
pub fn embed_items_with_progress<B: Backend, M: ReidModel<B>>(
    model: &M,
    loader: &EvalLoader,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f32>, InferenceError> {
    let mut features = Vec::new();
    for batch in loader.batches() {
        let batch = batch?;
        let cams: Vec<i64> = batch.camids.iter().map(|&c| c as i64).collect();
        let views: Vec<i64> = batch.viewids.iter().map(|&v| v as i64).collect();
        features.extend(embed_batch(
            model,
            batch.images,
            batch.shape,
            &cams,
            &views,
            device,
        )?);
        progress(cams.len());
    }
    Ok(features)
}

/// Checks the camera and view ids of `items` against the model's SIE table (what a caller
/// does before a long embedding, rather than failing at the batch of a bad id).
pub fn check_item_labels(sie: &SieConfig, items: &[ReidItem]) -> Result<(), LabelError> {
    let cameras: Vec<i64> = items.iter().map(|i| i.camid as i64).collect();
    let views: Vec<i64> = items.iter().map(|i| i.viewid as i64).collect();
    sie.check_labels(&cameras, &views)
}

/// Embeds one batch of transformed images (`[n, 3, H, W]` row-major) after checking the
/// camera / view labels against the model's SIE table: one id per image of each kind the table
/// uses (the other may be empty). Returns `[n, dim]` row-major.
pub fn embed_batch<B: Backend, M: ReidModel<B>>(
    model: &M,
    pixels: Vec<f32>,
    shape: [usize; 4],
    cameras: &[i64],
    views: &[i64],
    device: &B::Device,
) -> Result<Vec<f32>, InferenceError> {
    let n = shape[0];
    let input = model.input_size();
    if shape != [n, 3, input[0], input[1]] || pixels.len() != shape.iter().product::<usize>() {
        return Err(InferenceError::BatchShape {
            shape,
            pixels: pixels.len(),
            input,
        });
    }
    let mode = model.sie_config().mode;
    // The ids the table reads, one per image; the others are not used.
    let needed = |used: bool, ids: &[i64], what: &'static str| match (used, ids.len() == n) {
        (false, _) => Ok(vec![0; n]),
        (true, true) => Ok(ids.to_vec()),
        (true, false) => Err(LabelError::LengthMismatch {
            what,
            expected: n,
            got: ids.len(),
        }),
    };
    let cameras = needed(mode.uses_cameras(), cameras, "cameras")?;
    let views = needed(mode.uses_views(), views, "views")?;
    model.sie_config().check_labels(&cameras, &views)?;
    let ids = |v: Vec<i64>| {
        (mode != SieMode::None)
            .then(|| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device))
    };
    let images = Tensor::<B, 4>::from_data(TensorData::new(pixels, shape), device);
    let out = model.embed_images(images, ids(cameras), ids(views));
    Ok(out
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 features"))
}

/// The reference's test transforms at a model's input size `[height, width]` with the given
/// normalisation.
pub fn model_transforms([h, w]: [usize; 2], normalization: Normalization) -> TransformConfig {
    let size = ImageSize {
        height: h as u32,
        width: w as u32,
    };
    TransformConfig {
        normalization,
        ..TransformConfig::person().with_size(size)
    }
}

/// Embeds query and gallery and computes CMC / mAP / mINP as the reference does.
pub fn evaluate_model<B: Backend, M: ReidModel<B>>(
    model: &M,
    loader: &EvalLoader,
    device: &B::Device,
    config: &EvalConfig,
) -> Result<ReidMetrics, InferenceError> {
    let features = embed_items(model, loader, device)?;
    evaluate_features(&features, loader.items(), loader.num_query(), None, config)
}

/// Metrics of features `[items, dim]` of `items` (the first `num_query` are the queries),
/// optionally after k-reciprocal re-ranking (the sparse variant, exact as the reference's).
pub fn evaluate_features(
    features: &[f32],
    items: &[ReidItem],
    num_query: usize,
    rerank: Option<&RerankConfig>,
    config: &EvalConfig,
) -> Result<ReidMetrics, InferenceError> {
    if num_query > items.len() || !features.len().is_multiple_of(items.len().max(1)) {
        return Err(InferenceError::FeatureLayout {
            features: features.len(),
            items: items.len(),
            num_query,
        });
    }
    let dim = features.len() / items.len().max(1);
    let pids: Vec<i64> = items.iter().map(|i| i.pid as i64).collect();
    let cams: Vec<i64> = items.iter().map(|i| i.camid as i64).collect();
    let (qf, gf) = features.split_at(num_query * dim);
    let (query, gallery) = (Features::new(qf, dim)?, Features::new(gf, dim)?);
    let query_labels = Labels::new(&pids[..num_query], &cams[..num_query])?;
    let gallery_labels = Labels::new(&pids[num_query..], &cams[num_query..])?;
    Ok(match rerank {
        Some(rerank) => {
            let distances = rerank_sparse(query, gallery, rerank)?;
            evaluate_rows(&distances, query_labels, gallery_labels, config)?
        }
        None => evaluate(query, query_labels, gallery, gallery_labels, config)?,
    })
}
