//! Averaging gradients: over micro-batches on one device ([`mean_gradients`]) and over ranks
//! through a [`Collective`] ([`average_gradients`]), with the same arithmetic: the sum of the
//! shards' gradients divided by their number.

use std::collections::{BTreeMap, HashMap};

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;

use super::collective::{Collective, CollectiveError};
use crate::optim::param_names;

/// Gradient bytes sent per all-reduce call: 25 MiB, as PyTorch DDP's default bucket.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// The mean of the gradients of `shards` micro-batches of `model`: their sum divided by their
/// number, parameter by parameter on the device.
pub fn mean_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    shards: Vec<GradientsParams>,
    model: &M,
) -> GradientsParams {
    if shards.len() == 1 {
        return shards.into_iter().next().expect("one shard");
    }
    struct Mean<B: AutodiffBackend> {
        shards: Vec<GradientsParams>,
        out: GradientsParams,
        backend: std::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Mean<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let count = self.shards.len() as f64;
            let sum = self
                .shards
                .iter_mut()
                .filter_map(|g| g.remove::<B::InnerBackend, D>(param.id))
                .reduce(|a, b| a + b);
            if let Some(sum) = sum {
                self.out.register(param.id, sum.div_scalar(count));
            }
        }
    }
    let mut mean = Mean::<B> {
        shards,
        out: GradientsParams::new(),
        backend: std::marker::PhantomData,
    };
    model.visit(&mut mean);
    mean.out
}

/// One parameter's gradient on the host.
struct HostGrad {
    id: ParamId,
    len: usize,
    values: Option<Vec<f32>>,
}

/// Averages `grads` of `model` over the ranks of `collective`. The gradients are ordered by
/// the parameters' reference names (the same on every rank, unlike `ParamId`s), copied to the
/// host, packed into buckets of at most `bucket_bytes`, summed over the ranks bucket by bucket
/// and divided by the number of ranks, then put back on the device. A parameter without a
/// gradient on some rank counts as zero there, and gets the average if any rank had one. With
/// one rank the gradients are returned untouched.
pub fn average_gradients<B: AutodiffBackend, M: AutodiffModule<B> + ModuleSnapshot<B>>(
    mut grads: GradientsParams,
    model: &M,
    collective: &dyn Collective,
    bucket_bytes: usize,
) -> Result<GradientsParams, CollectiveError> {
    let world = collective.world();
    if world == 1 {
        return Ok(grads);
    }
    let names = param_names(model);
    // Every float parameter, by name: its own gradient on the host, if it has one.
    struct Take<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        names: &'a HashMap<ParamId, String>,
        out: BTreeMap<String, HostGrad>,
        backend: std::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let Some(name) = self.names.get(&param.id) else {
                return;
            };
            let values = self.grads.remove::<B::InnerBackend, D>(param.id).map(|g| {
                g.into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .expect("f32 gradient")
            });
            let len = param.val().shape().num_elements();
            self.out.insert(
                name.clone(),
                HostGrad {
                    id: param.id,
                    len,
                    values,
                },
            );
        }
    }
    let mut take = Take::<B> {
        grads: &mut grads,
        names: &names,
        out: BTreeMap::new(),
        backend: std::marker::PhantomData,
    };
    model.visit(&mut take);
    let mut host = take.out;

    // Which parameters have a gradient on some rank.
    let mut present: Vec<f64> = host
        .values()
        .map(|g| f64::from(u8::from(g.values.is_some())))
        .collect();
    collective.all_reduce_sum_f64(&mut present)?;
    let kept: Vec<String> = host
        .keys()
        .zip(&present)
        .filter(|(_, &count)| count > 0.0)
        .map(|(name, _)| name.clone())
        .collect();

    // Buckets of consecutive parameters in name order.
    let capacity = (bucket_bytes / 4).max(1);
    let mut start = 0;
    while start < kept.len() {
        let mut end = start;
        let mut floats = 0;
        while end < kept.len() && (end == start || floats + host[&kept[end]].len <= capacity) {
            floats += host[&kept[end]].len;
            end += 1;
        }
        let mut bucket = Vec::with_capacity(floats);
        for name in &kept[start..end] {
            let grad = &host[name];
            match &grad.values {
                Some(values) => bucket.extend_from_slice(values),
                None => bucket.resize(bucket.len() + grad.len, 0.0),
            }
        }
        collective.all_reduce_sum(&mut bucket)?;
        let mut offset = 0;
        for name in &kept[start..end] {
            let grad = host.get_mut(name).expect("a kept name");
            let summed = &bucket[offset..offset + grad.len];
            grad.values = Some(summed.iter().map(|v| v / world as f32).collect());
            offset += grad.len;
        }
        start = end;
    }

    // Back onto the device, as the parameters' shapes.
    let averaged: HashMap<ParamId, Vec<f32>> = kept
        .iter()
        .filter_map(|name| {
            let grad = host.remove(name)?;
            Some((grad.id, grad.values?))
        })
        .collect();
    struct Put<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        averaged: HashMap<ParamId, Vec<f32>>,
        backend: std::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Put<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(values) = self.averaged.remove(&param.id) {
                let value = param.val();
                let tensor = Tensor::<B::InnerBackend, D>::from_data(
                    TensorData::new(values, value.shape()),
                    &value.device(),
                );
                self.grads.register(param.id, tensor);
            }
        }
    }
    let mut put = Put::<B> {
        grads: &mut grads,
        averaged,
        backend: std::marker::PhantomData,
    };
    model.visit(&mut put);
    Ok(grads)
}
