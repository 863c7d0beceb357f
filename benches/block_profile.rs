//! Where the time of one ViT-B/16 block goes on the CPU (flex).
use std::time::Instant;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use transreid_model::{AttentionConfig, BlockConfig};

type B = Flex;

fn time<T>(name: &str, reps: usize, mut f: impl FnMut() -> T) {
    let _ = f();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let _ = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{name:>14}: {:8.2} ms", best * 1e3);
}

fn main() {
    transreid::allocator::keep_freed_memory();
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(129);
    let d = 768;
    let h = 12;
    let dev = Default::default();
    let block = BlockConfig::new(AttentionConfig::new(d, h)).init::<B>(&dev);
    let x = Tensor::<B, 3>::random([batch, n, d], burn::tensor::Distribution::Default, &dev);
    let reps = 5;
    time("block", reps, || block.forward(x.clone()).into_data());
    time("attn", reps, || block.attn.forward(x.clone()).into_data());
    let rows: Tensor<B, 2> = x.clone().flatten(0, 1);
    let qkv = block
        .attn
        .qkv
        .forward(rows.clone())
        .reshape([batch, n, 3 * d]);
    time("qkv", reps, || {
        block.attn.qkv.forward(rows.clone()).into_data()
    });
    time("attn core", reps, || {
        let qkv = qkv
            .clone()
            .reshape([batch, n, 3 * h, d / h])
            .swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.clone().narrow(1, h, h);
        let v = qkv.narrow(1, 2 * h, h);
        let attn = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(0.125), 3);
        attn.matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, n, d])
            .into_data()
    });
    let generic = || {
        let qkv = block
            .attn
            .qkv
            .forward(rows.clone())
            .reshape([batch, n, 3 * h, d / h])
            .swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.clone().narrow(1, h, h);
        let v = qkv.narrow(1, 2 * h, h);
        let attn = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(0.125), 3);
        let out: Tensor<B, 2> = attn.matmul(v).swap_dims(1, 2).reshape([batch * n, d]);
        block.attn.proj.forward(out).into_data()
    };
    for _ in 0..3 {
        time("attn kernel", reps, || {
            block.attn.forward(x.clone()).into_data()
        });
        time("attn generic", reps, generic);
    }
    time("proj", reps, || {
        block.attn.proj.forward(rows.clone()).into_data()
    });
    time("mlp", reps, || block.mlp.forward(x.clone()).into_data());
    time("fc1", reps, || {
        block.mlp.fc1.forward(rows.clone()).into_data()
    });
    let hid: Tensor<B, 2> = block.mlp.fc1.forward(rows.clone());
    time("fc2", reps, || {
        block.mlp.fc2.forward(hid.clone()).into_data()
    });
    time("ln", reps, || block.norm1.forward(x.clone()).into_data());
}
