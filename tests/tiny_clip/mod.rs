//! A tiny CLIP file and a CLIP-ReID configuration for the command-line tests.

use std::collections::BTreeMap;
use std::path::Path;

use transreid::model::{write_safetensors, HostTensor, StateDict};

/// A tiny CLIP in OpenAI's layout: both towers of width 64 (one head), one block each, patch
/// 16 on a 2 x 2 pre-training grid, projections to 32, CLIP's vocabulary of 49408 tokens.
pub fn write_tiny_clip(path: &Path, text: bool) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        HostTensor::new(shape.to_vec(), data)
    };
    let w = 64;
    let mut dict = StateDict::new();
    let tower = |dict: &mut StateDict,
                 prefix: &str,
                 random: &mut dyn FnMut(&[usize], f32) -> HostTensor| {
        let p = format!("{prefix}transformer.resblocks.0.");
        for (name, shape, scale) in [
            ("ln_1.weight", vec![w], 0.0),
            ("ln_1.bias", vec![w], 0.0),
            ("attn.in_proj_weight", vec![3 * w, w], 0.1),
            ("attn.in_proj_bias", vec![3 * w], 0.01),
            ("attn.out_proj.weight", vec![w, w], 0.1),
            ("attn.out_proj.bias", vec![w], 0.01),
            ("ln_2.weight", vec![w], 0.0),
            ("ln_2.bias", vec![w], 0.0),
            ("mlp.c_fc.weight", vec![4 * w, w], 0.1),
            ("mlp.c_fc.bias", vec![4 * w], 0.01),
            ("mlp.c_proj.weight", vec![w, 4 * w], 0.05),
            ("mlp.c_proj.bias", vec![w], 0.01),
        ] {
            let mut t = random(&shape, scale);
            if name.ends_with("_1.weight") || name.ends_with("_2.weight") {
                t.data.iter_mut().for_each(|v| *v = 1.0);
            }
            dict.insert(format!("{p}{name}"), t);
        }
    };
    tower(&mut dict, "visual.", &mut random);
    for (name, shape, scale) in [
        ("visual.conv1.weight", vec![w, 3, 16, 16], 0.05),
        ("visual.class_embedding", vec![w], 0.1),
        ("visual.positional_embedding", vec![5, w], 0.1),
        ("visual.ln_pre.bias", vec![w], 0.0),
        ("visual.ln_post.bias", vec![w], 0.0),
        ("visual.proj", vec![w, 32], 0.2),
    ] {
        dict.insert(name.to_string(), random(&shape, scale));
    }
    for name in ["visual.ln_pre.weight", "visual.ln_post.weight"] {
        dict.insert(name.to_string(), HostTensor::new(vec![w], vec![1.0; w]));
    }
    if text {
        tower(&mut dict, "", &mut random);
        for (name, shape, scale) in [
            ("token_embedding.weight", vec![49408, w], 0.02),
            ("positional_embedding", vec![77, w], 0.01),
            ("ln_final.bias", vec![w], 0.0),
            ("text_projection", vec![w, 32], 0.2),
            ("logit_scale", vec![], 0.0),
        ] {
            dict.insert(name.to_string(), random(&shape, scale));
        }
        dict.insert(
            "ln_final.weight".to_string(),
            HostTensor::new(vec![w], vec![1.0; w]),
        );
    }
    write_safetensors(path, &dict, BTreeMap::new()).unwrap();
}

pub fn config(data: &str, run: &str, clip: &str, extra_model: &str, prompts: bool) -> String {
    let prompts = if prompts {
        "[clip_reid.prompts]\nepochs = 2\nbatch_size = 16\nbase_lr = 0.01\n"
    } else {
        ""
    };
    format!(
        r#"
output_dir = {run:?}
seed = 0

[dataset]
kind = "market1501"
root = {data:?}

[model]
pretrained = {{ kind = "clip", path = {clip:?} }}
stride = [16, 16]
sie_camera = true
sie_view = false
sie_coefficient = 1.0
neck_feat = "before"
{extra_model}

[input]
train_size = {{ height = 64, width = 32 }}
test_size = {{ height = 64, width = 32 }}
flip_prob = 0.5
padding = 10
erasing_prob = 0.5
normalization = {{ mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}

[solver]
optimizer = "adam"
schedule = {{ kind = "multi_step", milestones = [30, 50], gamma = 0.1, warmup_factor = 0.1 }}
max_epochs = 2
ims_per_batch = 16
num_instance = 4
base_lr = 0.0001
weight_decay = 0.0001
weight_decay_bias = 0.0001
bias_lr_factor = 2.0
warmup_epochs = 1
checkpoint_period = 2
eval_period = 2
workers = 1

[clip_reid]
object = "person"

{prompts}
[test]
ims_per_batch = 32
"#
    )
}
