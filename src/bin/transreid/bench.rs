//! `transreid bench`: training and inference throughput, and the device check.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use transreid::backend::TrainBackend;
use transreid::bench::{bench_inference, bench_train_step, BenchModel};
use transreid::bench_clip_reid::{
    bench_clip_reid_images, bench_clip_reid_prompts, ClipReidBenchModel,
};
use transreid::clip_device_check::check_clip_reid_device;
use transreid::config::PrecisionSetting;
use transreid::device_check::check_device;
use transreid::model::{Precision, VitPreset};

use crate::backend::{on_backend, BackendJob, Device};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Training steps (forward, loss, backward, SGD) on random PK batches; prints a JSON line.
    Train {
        #[command(flatten)]
        model: BenchModelArgs,
        /// Images per step (a multiple of 4, at least 8).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed steps, after one warm-up step.
        #[arg(long, default_value_t = 3)]
        steps: usize,
    },
    /// CLIP-ReID ViT-B/16 (751 identities, camera SIE, f32; 256x128 by default): stage-1 steps
    /// (prompts) and stage-2 steps (image side) on random inputs; prints a JSON line per stage.
    ClipReid {
        /// Compute backend.
        #[arg(long, value_enum, default_value = "flex")]
        device: Device,
        /// Patch stride (1 to 16).
        #[arg(long, default_value_t = 16)]
        stride: usize,
        /// Image height and width.
        #[arg(long, num_args = 2, default_values_t = [256, 128])]
        size: Vec<usize>,
        /// Images per stage-2 step (a multiple of 4, at least 8).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Image features per stage-1 step.
        #[arg(long, default_value_t = 64)]
        prompt_batch: usize,
        /// Timed steps of each stage, after one warm-up step.
        #[arg(long, default_value_t = 2)]
        steps: usize,
    },
    /// Batched embedding of random images; prints a JSON line.
    Infer {
        #[command(flatten)]
        model: BenchModelArgs,
        /// Images per forward.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed forwards, after one warm-up forward.
        #[arg(long, default_value_t = 3)]
        iters: usize,
    },
    /// Averages a full set of the model's gradients over the ranks (run under `mpirun`); prints
    /// a JSON line from rank 0: seconds per step, bytes moved.
    Allreduce {
        #[command(flatten)]
        model: BenchModelArgs,
        /// Megabytes per all-reduce call.
        #[arg(long, default_value_t = 25)]
        bucket_mb: usize,
        /// Timed averages, after one warm-up.
        #[arg(long, default_value_t = 5)]
        iters: usize,
    },
    /// Compares a device's eval features, loss and gradients with the reference
    /// implementation's on its tiny-model fixture; prints a JSON line, exits 1 if they differ.
    Check {
        /// Compute backend.
        #[arg(long, value_enum, default_value = "flex")]
        device: Device,
        /// The method: `transreid` (tests/fixtures/reference_model.safetensors) or `clip-reid`
        /// (crates/transreid-model/tests/fixtures/clip_reid.safetensors with clip_reid.pth
        /// beside it; f32 only).
        #[arg(long, value_enum, default_value = "transreid")]
        model: CheckedModel,
        /// Dtype of the products (`auto`: bf16 on CUDA, f32 elsewhere).
        #[arg(long, value_enum, default_value = "f32")]
        precision: PrecisionSetting,
        /// The fixture written by scripts/reference_model_fixture.py (TransReID) or
        /// scripts/clip_reid_fixture.py (CLIP-ReID). Default: the repository's, looked for in
        /// the working folder and above the binary (target/release/, .gpu/).
        #[arg(long)]
        fixture: Option<PathBuf>,
    },
}

/// The benchmarked network and where it runs.
#[derive(clap::Args)]
pub struct BenchModelArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    device: Device,
    /// Backbone: vit_base16, deit_base16, deit_small16, vit_small16, vit_small_legacy, tiny.
    #[arg(long, default_value = "vit_base16")]
    backbone: VitPreset,
    /// Image height and width.
    #[arg(long, num_args = 2, default_values_t = [256, 128])]
    size: Vec<usize>,
    /// Patch stride (1 to the patch size, 16).
    #[arg(long, default_value_t = 16)]
    stride: usize,
    /// Dtype of the products (`auto`: bf16 on CUDA, f32 elsewhere).
    #[arg(long, value_enum, default_value = "auto")]
    precision: PrecisionSetting,
}

impl BenchModelArgs {
    fn model(&self) -> anyhow::Result<BenchModel> {
        let model = BenchModel {
            backbone: self.backbone,
            size: [self.size[0], self.size[1]],
            stride: self.stride,
        };
        model.config().validate()?;
        Ok(model)
    }

    fn precision(&self) -> Precision {
        self.precision.resolve(self.device == Device::Cuda)
    }
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Train {
            model,
            batch,
            steps,
        } => {
            anyhow::ensure!(
                batch >= 8 && batch % 4 == 0,
                "--batch must be a multiple of 4, at least 8"
            );
            anyhow::ensure!(steps > 0, "--steps must be at least 1");
            let job = BenchJob::Train {
                model: model.model()?,
                precision: model.precision(),
                batch,
                steps,
            };
            on_backend(model.device, NamedBench(model.device, job))
        }
        BenchCommand::ClipReid {
            device,
            stride,
            size,
            batch,
            prompt_batch,
            steps,
        } => {
            anyhow::ensure!(
                batch >= 8 && batch % 4 == 0,
                "--batch must be a multiple of 4, at least 8"
            );
            anyhow::ensure!(
                prompt_batch > 0 && steps > 0,
                "--prompt-batch and --steps must be at least 1"
            );
            let model = ClipReidBenchModel {
                size: [size[0], size[1]],
                stride,
                classes: 751,
            };
            model.config().validate()?;
            let job = BenchJob::ClipReid {
                model,
                batch,
                prompt_batch,
                steps,
            };
            on_backend(device, NamedBench(device, job))
        }
        BenchCommand::Infer {
            model,
            batch,
            iters,
        } => {
            anyhow::ensure!(
                batch > 0 && iters > 0,
                "--batch and --iters must be at least 1"
            );
            let job = BenchJob::Infer {
                model: model.model()?,
                precision: model.precision(),
                batch,
                iters,
            };
            on_backend(model.device, NamedBench(model.device, job))
        }
        BenchCommand::Allreduce {
            model,
            bucket_mb,
            iters,
        } => {
            anyhow::ensure!(
                bucket_mb > 0 && iters > 0,
                "--bucket-mb and --iters must be at least 1"
            );
            let job = BenchJob::AllReduce {
                model: model.model()?,
                bucket_bytes: bucket_mb << 20,
                iters,
            };
            on_backend(model.device, NamedBench(model.device, job))
        }
        BenchCommand::Check {
            device,
            model,
            precision,
            fixture,
        } => {
            let precision = precision.resolve(device == Device::Cuda);
            if model == CheckedModel::ClipReid && precision != Precision::F32 {
                anyhow::bail!(
                    "the CLIP-ReID check runs in f32 (CLIP-ReID trains in f32): --precision f32"
                );
            }
            let fixture = match fixture {
                Some(path) => path,
                None => find_check_fixture(model.fixture())?,
            };
            let job = BenchJob::Check {
                model,
                precision,
                fixture,
            };
            on_backend(device, NamedBench(device, job))
        }
    }
}

/// The model `bench check` compares.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum CheckedModel {
    /// The tiny JPM + SIE TransReID.
    Transreid,
    /// The tiny trained CLIP-ReID (both stages).
    ClipReid,
}

impl CheckedModel {
    /// The check's fixture, relative to the repository root.
    fn fixture(self) -> &'static str {
        match self {
            Self::Transreid => "tests/fixtures/reference_model.safetensors",
            Self::ClipReid => "crates/transreid-model/tests/fixtures/clip_reid.safetensors",
        }
    }
}

/// `fixture` (relative to the repository root) in the working folder or in a folder above
/// the binary.
fn find_check_fixture(fixture: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().ok();
    let above_binary = exe.iter().flat_map(|e| e.ancestors().skip(1));
    std::iter::once(Path::new("."))
        .chain(above_binary)
        .map(|dir| dir.join(fixture))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no {fixture} in the working folder or above the binary: give --fixture PATH \
                 (the repository's {fixture})"
            )
        })
}

/// `transreid bench` on one backend; each prints one JSON line.
enum BenchJob {
    Train {
        model: BenchModel,
        precision: Precision,
        batch: usize,
        steps: usize,
    },
    Infer {
        model: BenchModel,
        precision: Precision,
        batch: usize,
        iters: usize,
    },
    ClipReid {
        model: ClipReidBenchModel,
        batch: usize,
        prompt_batch: usize,
        steps: usize,
    },
    AllReduce {
        model: BenchModel,
        bucket_bytes: usize,
        iters: usize,
    },
    Check {
        model: CheckedModel,
        precision: Precision,
        fixture: PathBuf,
    },
}

/// A [`BenchJob`] and the name of its `--device`, for the JSON's `impl`.
struct NamedBench(Device, BenchJob);

impl BackendJob for NamedBench {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let backend = self.0.name();
        let name = |precision: Precision| match precision {
            Precision::F32 => format!("burn-{backend}"),
            p => format!("burn-{backend}-{}", p.name()),
        };
        let (mut json, passed) = match self.1 {
            BenchJob::Train {
                model,
                precision,
                batch,
                steps,
            } => {
                let result =
                    bench_train_step::<TrainBackend<B>>(model, batch, steps, precision, &device);
                (serde_json::to_value(&result)?, true)
            }
            BenchJob::Infer {
                model,
                precision,
                batch,
                iters,
            } => {
                let result = bench_inference::<B>(model, batch, iters, precision, &device);
                (serde_json::to_value(&result)?, true)
            }
            BenchJob::ClipReid {
                model,
                batch,
                prompt_batch,
                steps,
            } => {
                let prompts =
                    bench_clip_reid_prompts::<TrainBackend<B>>(model, prompt_batch, steps, &device);
                let mut json = serde_json::to_value(&prompts)?;
                json["impl"] = name(Precision::F32).into();
                println!("{json}");
                let images =
                    bench_clip_reid_images::<TrainBackend<B>>(model, batch, steps, &device);
                let mut json = serde_json::to_value(&images)?;
                json["impl"] = name(Precision::F32).into();
                println!("{json}");
                return Ok(());
            }
            BenchJob::AllReduce {
                model,
                bucket_bytes,
                iters,
            } => {
                let ranks = crate::train::Ranks::start()?;
                let collective = ranks.collective.as_ref();
                let result = transreid::bench::bench_allreduce::<TrainBackend<B>>(
                    model,
                    bucket_bytes,
                    iters,
                    collective,
                    &device,
                )?;
                if collective.rank() != 0 {
                    return Ok(());
                }
                let mut json = serde_json::to_value(&result)?;
                json["impl"] = format!("burn-{backend}-mpi").into();
                println!("{json}");
                return Ok(());
            }
            BenchJob::Check {
                model,
                precision,
                fixture,
            } => {
                let result = match model {
                    CheckedModel::Transreid => {
                        check_device::<TrainBackend<B>>(&fixture, precision, &device)
                    }
                    CheckedModel::ClipReid => {
                        check_clip_reid_device::<TrainBackend<B>>(&fixture, &device)
                    }
                }
                .with_context(|| format!("checking against {}", fixture.display()))?;
                (serde_json::to_value(&result)?, result.passed)
            }
        };
        let precision: Precision = serde_json::from_value(json["precision"].clone())?;
        json["impl"] = name(precision).into();
        println!("{json}");
        anyhow::ensure!(passed, "the device's numbers differ from the reference's");
        Ok(())
    }
}
