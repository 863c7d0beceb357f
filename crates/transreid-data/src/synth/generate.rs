//! Writing a synthetic set as JPEG files in the Market-1501 layout.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{DataError, Result, WriteAction};
use crate::seed::{derive_rng, RngPurpose};
use crate::synth::appearance::AppearanceBook;
use crate::synth::camera_style::CameraStyle;
use crate::synth::config::{SynthConfig, SynthSummary};
use crate::synth::render::{render, Subject};

/// Market-1501's split folders, as written.
const TRAIN_DIR: &str = "bounding_box_train";
const QUERY_DIR: &str = "query";
const GALLERY_DIR: &str = "bounding_box_test";

/// One file to write.
struct Frame {
    dir: &'static str,
    /// Market pid: identities from 1, 0 for distractors, −1 for junk.
    pid: i64,
    /// 0-based camera.
    camera: usize,
    /// Global frame number, unique over the set (names stay unique).
    number: usize,
}

impl Frame {
    /// `{pid:04}_c{cam}s1_{frame:06}_00.jpg`, junk as `-1_c{cam}s1_…`.
    fn file_name(&self) -> String {
        let pid = if self.pid < 0 {
            "-1".to_string()
        } else {
            format!("{:04}", self.pid)
        };
        format!("{pid}_c{}s1_{:06}_00.jpg", self.camera + 1, self.number)
    }
}

/// Writes a synthetic re-identification set under `config.out` in the Market-1501 layout
/// (`bounding_box_train/`, `query/`, `bounding_box_test/`), loadable as
/// [`crate::DatasetKind::Market1501`]. Output depends only on the config (images are rendered
/// in parallel, each from its own seeded generator).
///
/// Each identity has fixed clothing colours, build and accessories; each camera has its own
/// background, colour cast, brightness, blur, framing and occluders; each image varies pose,
/// position, lighting and noise.
///
/// # Errors
/// [`DataError::InvalidConfig`] for an invalid config or when an output folder already holds
/// files; [`DataError::Io`] / [`DataError::Encode`] naming the file that failed.
pub fn generate(config: &SynthConfig) -> Result<SynthSummary> {
    config.validate()?;
    for dir in [TRAIN_DIR, QUERY_DIR, GALLERY_DIR] {
        let path = config.out.join(dir);
        if path.exists() {
            let mut entries = std::fs::read_dir(&path).map_err(|e| DataError::io(&path, e))?;
            if entries.next().is_some() {
                return Err(DataError::invalid(
                    "out",
                    format!("{} already holds files", path.display()),
                ));
            }
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| DataError::write(WriteAction::CreateFolder, &path, e))?;
    }

    let frames = plan(config);
    let book = AppearanceBook::new(config.seed);
    let cameras: Vec<CameraStyle> = (0..config.cameras)
        .map(|c| CameraStyle::new(config.seed, c))
        .collect();
    let total_ids = config.train_ids + config.test_ids;
    frames.par_iter().try_for_each(|frame| {
        let mut rng = derive_rng(config.seed, RngPurpose::Synthetic, frame.number as u64, 0);
        let image = match frame.pid {
            -1 => render(
                &Subject::Fragment([200.0, 60.0, 60.0]),
                &cameras[frame.camera],
                config.width,
                config.height,
                &mut rng,
            ),
            // distractors: people seen once, drawn from beyond the set's identities
            0 => {
                let look = book.appearance(total_ids + frame.number);
                render(
                    &Subject::Person(&look),
                    &cameras[frame.camera],
                    config.width,
                    config.height,
                    &mut rng,
                )
            }
            pid => {
                let look = book.appearance(pid as usize - 1);
                render(
                    &Subject::Person(&look),
                    &cameras[frame.camera],
                    config.width,
                    config.height,
                    &mut rng,
                )
            }
        };
        write_jpeg(
            &config.out.join(frame.dir).join(frame.file_name()),
            &image,
            config.jpeg_quality,
        )
    })?;

    let count = |dir: &str, pid: Option<i64>| {
        frames
            .iter()
            .filter(|f| f.dir == dir && pid.is_none_or(|p| f.pid == p))
            .count()
    };
    Ok(SynthSummary {
        root: config.out.clone(),
        train_ids: config.train_ids,
        test_ids: config.test_ids,
        cameras: config.cameras,
        train_images: count(TRAIN_DIR, None),
        query_images: count(QUERY_DIR, None),
        gallery_images: count(GALLERY_DIR, None),
        distractor_images: count(GALLERY_DIR, Some(0)),
        junk_images: count(GALLERY_DIR, Some(-1)),
    })
}

/// Every file of the set, in a fixed order.
fn plan(config: &SynthConfig) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut push = |dir, pid, camera| {
        let number = frames.len();
        frames.push(Frame {
            dir,
            pid,
            camera,
            number,
        });
    };
    for pid in 1..=config.train_ids as i64 {
        for camera in 0..config.cameras {
            for _ in 0..config.images_per_id_per_cam {
                push(TRAIN_DIR, pid, camera);
            }
        }
    }
    for pid in (config.train_ids + 1) as i64..=(config.train_ids + config.test_ids) as i64 {
        for camera in 0..config.cameras {
            push(QUERY_DIR, pid, camera);
            for _ in 1..config.images_per_id_per_cam {
                push(GALLERY_DIR, pid, camera);
            }
        }
    }
    for i in 0..config.distractors {
        push(GALLERY_DIR, 0, i % config.cameras);
    }
    for i in 0..config.junk {
        push(GALLERY_DIR, -1, i % config.cameras);
    }
    frames
}

fn write_jpeg(path: &Path, image: &image::RgbImage, quality: u8) -> Result<()> {
    let file = File::create(path).map_err(|e| DataError::write(WriteAction::WriteFile, path, e))?;
    let mut writer = BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, quality)
        .encode_image(image)
        .map_err(|source| DataError::Encode {
            path: PathBuf::from(path),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_rgb;
    use crate::kind::DatasetKind;
    use crate::load::load_dataset;
    use crate::options::{ImageCheck, LoadOptions};
    use crate::stats::SplitStats;

    fn small(out: &Path) -> SynthConfig {
        SynthConfig {
            train_ids: 6,
            test_ids: 5,
            cameras: 3,
            images_per_id_per_cam: 3,
            distractors: 4,
            junk: 2,
            ..SynthConfig::new(out)
        }
    }

    #[test]
    fn writes_a_market_layout_the_loader_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let summary = generate(&small(tmp.path())).unwrap();
        assert_eq!(
            (
                summary.train_images,
                summary.query_images,
                summary.gallery_images
            ),
            (6 * 3 * 3, 5 * 3, 5 * 3 * 2 + 4 + 2)
        );
        assert_eq!((summary.distractor_images, summary.junk_images), (4, 2));
        let options = LoadOptions {
            image_check: ImageCheck::Verify,
            ..LoadOptions::default()
        };
        let dataset = load_dataset(DatasetKind::Market1501, tmp.path(), &options).unwrap();
        let stats = dataset.stats();
        assert_eq!(
            stats.train,
            SplitStats {
                ids: 6,
                images: 54,
                cameras: 3,
                views: 1
            }
        );
        assert_eq!(
            stats.query,
            SplitStats {
                ids: 5,
                images: 15,
                cameras: 3,
                views: 1
            }
        );
        // 5 test ids + distractor id 0; junk skipped
        assert_eq!(
            stats.gallery,
            SplitStats {
                ids: 6,
                images: 34,
                cameras: 3,
                views: 1
            }
        );
        assert_eq!(dataset.report.junk.gallery, 2);
        // train and test identities are disjoint (raw pids 1..=6 vs 7..=11)
        assert!(dataset.query.iter().all(|i| (7..=11).contains(&i.pid)));
        let img = decode_rgb(&dataset.train[0].path).unwrap();
        assert_eq!(img.dimensions(), (64, 128));
        let name = dataset.query[0]
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(name, format!("0007_c1s1_{:06}_00.jpg", 6 * 3 * 3));
    }

    #[test]
    fn same_seed_same_files_other_seed_differs() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        generate(&small(a.path())).unwrap();
        generate(&small(b.path())).unwrap();
        generate(&SynthConfig {
            seed: 9,
            ..small(c.path())
        })
        .unwrap();
        let file = "bounding_box_train/0003_c2s1_000021_00.jpg";
        let read = |d: &tempfile::TempDir| std::fs::read(d.path().join(file)).unwrap();
        assert_eq!(read(&a), read(&b));
        assert_ne!(read(&a), read(&c));
    }

    /// Mean colour of the torso region, where clothing dominates.
    fn torso_colour(path: &Path) -> [f32; 3] {
        let img = decode_rgb(path).unwrap();
        let mut sum = [0.0f32; 3];
        let mut n = 0.0;
        for y in 48..64 {
            for x in 26..38 {
                let p = img.get_pixel(x, y).0;
                for c in 0..3 {
                    sum[c] += p[c] as f32;
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n)
    }

    #[test]
    fn identity_is_more_consistent_than_camera() {
        // same id across cameras should be closer (on average) than different ids on one camera
        let tmp = tempfile::tempdir().unwrap();
        let config = SynthConfig {
            junk: 0,
            distractors: 0,
            ..small(tmp.path())
        };
        generate(&config).unwrap();
        let dataset =
            load_dataset(DatasetKind::Market1501, tmp.path(), &LoadOptions::default()).unwrap();
        let colours: Vec<(usize, usize, [f32; 3])> = dataset
            .train
            .iter()
            .map(|i| (i.pid, i.camid, torso_colour(&i.path)))
            .collect();
        let dist =
            |a: [f32; 3], b: [f32; 3]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>();
        let (mut same_id, mut n_same, mut same_cam, mut n_cam) = (0.0, 0.0, 0.0, 0.0);
        for a in &colours {
            for b in &colours {
                if a.0 == b.0 && a.1 != b.1 {
                    same_id += dist(a.2, b.2);
                    n_same += 1.0;
                } else if a.0 != b.0 && a.1 == b.1 {
                    same_cam += dist(a.2, b.2);
                    n_cam += 1.0;
                }
            }
        }
        let (same_id, same_cam) = (same_id / n_same, same_cam / n_cam);
        assert!(
            same_id < 0.75 * same_cam,
            "same id {same_id}, same camera {same_cam}"
        );
    }

    #[test]
    fn rejects_invalid_configs_and_non_empty_output() {
        let tmp = tempfile::tempdir().unwrap();
        let one_camera = SynthConfig {
            cameras: 1,
            ..small(tmp.path())
        };
        match generate(&one_camera) {
            Err(e @ DataError::InvalidConfig { .. }) => {
                assert!(e.to_string().contains("cannot be evaluated"), "{e}")
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        for config in [
            SynthConfig {
                cameras: 7,
                ..small(tmp.path())
            },
            SynthConfig {
                images_per_id_per_cam: 1,
                ..small(tmp.path())
            },
            SynthConfig {
                train_ids: 1500,
                ..small(tmp.path())
            },
            SynthConfig {
                height: 8,
                ..small(tmp.path())
            },
        ] {
            assert!(matches!(
                generate(&config),
                Err(DataError::InvalidConfig { .. })
            ));
        }
        generate(&small(tmp.path())).unwrap();
        assert!(matches!(
            generate(&small(tmp.path())),
            Err(DataError::InvalidConfig { field: "out", .. })
        ));
    }

    #[test]
    fn a_folder_that_cannot_be_created_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = generate(&small(&file.join("set"))).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Write {
                    action: WriteAction::CreateFolder,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("cannot create the folder "),
            "{err}"
        );
    }
}
