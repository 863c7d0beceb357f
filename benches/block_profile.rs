//! Where the time of one ViT-B/16 block goes on the CPU (flex).
use std::time::Instant;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use transreid_model::{gelu_exact, AttentionConfig, BlockConfig};

type B = Flex;

fn time<T>(name: &str, reps: usize, mut f: impl FnMut() -> T) {
    let _ = f();
    let t = Instant::now();
    for _ in 0..reps {
        let _ = f();
    }
    println!(
        "{name:>14}: {:8.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
}

fn main() {
    transreid::allocator::keep_freed_memory();
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let n = 129;
    let d = 768;
    let h = 12;
    let dev = Default::default();
    let block = BlockConfig::new(AttentionConfig::new(d, h)).init::<B>(&dev);
    let x = Tensor::<B, 3>::random([batch, n, d], burn::tensor::Distribution::Default, &dev);
    let sync = |t: Tensor<B, 3>| t.into_data();
    let reps = 5;
    time("block", reps, || sync(block.forward(x.clone())));
    time("ln", reps, || sync(block.norm1.forward(x.clone())));
    let rows: Tensor<B, 2> = x.clone().flatten(0, 1);
    time("qkv", reps, || {
        block.attn.qkv.forward(rows.clone()).into_data()
    });
    time("qkv matmul", reps, || {
        rows.clone().matmul(block.attn.qkv.weight.val()).into_data()
    });
    time("proj", reps, || {
        block.attn.proj.forward(rows.clone()).into_data()
    });
    time("fc1", reps, || {
        block.mlp.fc1.forward(rows.clone()).into_data()
    });
    let hid: Tensor<B, 2> = block.mlp.fc1.forward(rows.clone());
    time("fc2", reps, || {
        block.mlp.fc2.forward(hid.clone()).into_data()
    });
    time("gelu_exact", reps, || gelu_exact(hid.clone()).into_data());
    time("gelu fused", reps, || {
        burn::tensor::activation::gelu(hid.clone()).into_data()
    });
    let qkv = block
        .attn
        .qkv
        .forward(rows.clone())
        .reshape([batch, n, 3, h, d / h]);
    let part = |i: usize| {
        qkv.clone()
            .narrow(2, i, 1)
            .reshape([batch, n, h, d / h])
            .swap_dims(1, 2)
    };
    time("split heads", reps, || {
        let (a, b, c) = (part(0), part(1), part(2));
        (a.into_data(), b.into_data(), c.into_data())
    });
    let qkv2 = block
        .attn
        .qkv
        .forward(rows.clone())
        .reshape([batch, n, 3 * h, d / h])
        .swap_dims(1, 2);
    time("split views", reps, || {
        let (a, b, c) = (
            qkv2.clone().narrow(1, 0, h),
            qkv2.clone().narrow(1, h, h),
            qkv2.clone().narrow(1, 2 * h, h),
        );
        (a.into_data(), b.into_data(), c.into_data())
    });
    let (q2, k2, v2) = (
        qkv2.clone().narrow(1, 0, h),
        qkv2.clone().narrow(1, h, h),
        qkv2.clone().narrow(1, 2 * h, h),
    );
    time("q k^T views", reps, || {
        q2.clone().matmul(k2.clone().swap_dims(2, 3)).into_data()
    });
    let s2 = q2.clone().matmul(k2.clone().swap_dims(2, 3));
    let a2 = softmax(s2.clone(), 3);
    time("attn v views", reps, || {
        a2.clone().matmul(v2.clone()).into_data()
    });
    let (q, k, v) = (part(0), part(1), part(2));
    time("q k^T", reps, || {
        q.clone().matmul(k.clone().swap_dims(2, 3)).into_data()
    });
    let s = q.clone().matmul(k.clone().swap_dims(2, 3));
    time("scale", reps, || s.clone().mul_scalar(0.125).into_data());
    time("softmax", reps, || softmax(s.clone(), 3).into_data());
    let a = softmax(s.clone(), 3);
    time("attn v", reps, || a.clone().matmul(v.clone()).into_data());
    let o = a.matmul(v.clone());
    time("merge heads", reps, || {
        o.clone().swap_dims(1, 2).reshape([batch, n, d]).into_data()
    });
    time("merge cat", reps, || {
        Tensor::cat((0..h).map(|i| o.clone().narrow(1, i, 1)).collect(), 3)
            .reshape([batch, n, d])
            .into_data()
    });
    time("residual", reps, || sync(x.clone() + x.clone()));
    time("copy", reps, || sync(x.clone()));
}
