//! PNG plots of a run: loss and lr per epoch, mAP / Rank-1 per evaluation and the CMC curve.
//! Drawn with plotters into an RGB buffer and written atomically with the `image` crate; the
//! font (DejaVu Sans) is compiled in, so no system fonts are needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::epoch_record::EpochRecord;

/// A plot that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The picture.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// Writing the PNG failed.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The picture.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// The font family every text uses.
pub(crate) const FONT: &str = "sans-serif";

/// Registers the embedded font once per process.
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is valid"));
    });
}

/// An RGB canvas of `width x height` pixels, white.
pub(crate) struct Canvas {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) pixels: Vec<u8>,
}

impl Canvas {
    pub(crate) fn new(width: u32, height: u32) -> Self {
        register_font();
        Self {
            width,
            height,
            pixels: vec![255; (width * height * 3) as usize],
        }
    }

    /// Draws on the canvas with plotters; errors are reported against `path`.
    pub(crate) fn draw(
        &mut self,
        path: &Path,
        f: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
    ) -> Result<(), PlotError> {
        let root = BitMapBackend::with_buffer(&mut self.pixels, (self.width, self.height))
            .into_drawing_area();
        let result = f(&root).and_then(|()| root.present().map_err(|e| e.to_string()));
        result.map_err(|message| PlotError::Draw {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Writes the canvas as PNG: a temporary file beside `path`, then a rename.
    pub(crate) fn save(self, path: &Path) -> Result<(), PlotError> {
        let write_error = |message: String| PlotError::Write {
            path: path.to_path_buf(),
            message,
        };
        crate::output_path::refuse_special_file(path).map_err(|e| write_error(e.to_string()))?;
        let image = RgbImage::from_raw(self.width, self.height, self.pixels)
            .expect("buffer matches the canvas size");
        let tmp = path.with_extension("png.tmp");
        image
            .save_with_format(&tmp, image::ImageFormat::Png)
            .map_err(|e| write_error(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| write_error(e.to_string()))
    }
}

/// One line of a chart.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    markers: bool,
}

/// Draws a line chart of `series` into `area`.
fn line_chart(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<(), String> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some((lo, hi)) = y_range {
        (y0, y1) = (lo, hi);
    }
    let pad = |lo: f64, hi: f64| {
        // A constant (or rounding-noise) series gets a visible band around its value, so the
        // ticks do not read ±5e-14.
        if hi - lo <= hi.abs().max(lo.abs()) * 1e-6 {
            let half = (hi.abs() * 0.1).max(if hi == 0.0 { 1.0 } else { 1e-12 });
            return (lo - half, hi + half);
        }
        let span = hi - lo;
        (lo - 0.05 * span, hi + 0.05 * span)
    };
    let (x0, x1) = if x0 == x1 {
        (x0 - 1.0, x1 + 1.0)
    } else {
        (x0, x1)
    };
    let (y0, y1) = if y_range.is_some() {
        (y0, y1)
    } else {
        pad(y0, y1)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| e.to_string())?;
    let integer_x = series
        .iter()
        .all(|s| s.points.iter().all(|(x, _)| x.fract() == 0.0));
    let x_format = |v: &f64| {
        if integer_x {
            integer_tick(*v)
        } else {
            format!("{v:.2}")
        }
    };
    // Epochs and ranks: at most one tick per integer, so short runs do not repeat labels.
    let x_ticks = if integer_x {
        ((x1 - x0).floor() as usize + 1).clamp(2, 11)
    } else {
        10
    };
    let y_format = |v: &f64| tick_label(*v, y1 - y0);
    chart
        .configure_mesh()
        .x_labels(x_ticks)
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 13))
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .draw()
        .map_err(|e| e.to_string())?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if s.markers {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// An integer axis's tick label: the integer, or nothing between integers.
fn integer_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{:.0}", v.round())
    } else {
        String::new()
    }
}

/// A tick label with as many decimals as the axis span needs.
fn tick_label(v: f64, span: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if span < 1e-2 || v.abs() < 1e-3 {
        return format!("{v:.1e}");
    }
    let decimals = (2.0 - span.log10().floor()).clamp(0.0, 4.0) as usize;
    format!("{v:.decimals$}")
}

fn cmc_series(cmc: &[f64]) -> Series {
    Series {
        label: "CMC",
        color: RGBColor(31, 119, 180),
        points: cmc
            .iter()
            .enumerate()
            .map(|(k, &v)| ((k + 1) as f64, v * 100.0))
            .collect(),
        markers: cmc.len() <= 20,
    }
}

/// Writes the CMC curve (`cmc[k]`: share of queries matched within the top `k + 1`).
pub fn plot_cmc(path: &Path, cmc: &[f64], title: &str) -> Result<(), PlotError> {
    let mut canvas = Canvas::new(640, 480);
    canvas.draw(path, |root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        line_chart(
            root,
            title,
            "rank",
            "matching rate (%)",
            &[cmc_series(cmc)],
            Some((0.0, 100.0)),
        )
    })?;
    canvas.save(path)
}

/// Writes CLIP-ReID's first-stage figure: loss and lr per epoch, side by side, from
/// `(epoch, loss, lr)` rows.
pub fn plot_prompt_stage(path: &Path, epochs: &[(usize, f64, f64)]) -> Result<(), PlotError> {
    let series = |f: fn(&(usize, f64, f64)) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|r| (r.0 as f64, f(r))).collect()
    };
    let markers = epochs.len() <= 30;
    let mut canvas = Canvas::new(1280, 480);
    canvas.draw(path, |root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 2));
        let loss = Series {
            label: "SupCon image-to-text + text-to-image",
            color: RGBColor(31, 119, 180),
            markers,
            points: series(|r| r.1),
        };
        line_chart(&panels[0], "prompt loss", "epoch", "loss", &[loss], None)?;
        let lr = Series {
            label: "lr",
            color: RGBColor(255, 127, 14),
            markers,
            points: series(|r| r.2),
        };
        line_chart(&panels[1], "learning rate", "epoch", "lr", &[lr], None)
    })?;
    canvas.save(path)
}

/// Writes the training figure: loss and lr per epoch, mAP / Rank-1 / mINP per evaluation and
/// the CMC curve of the last evaluation, in a 2 x 2 grid.
pub fn plot_training(path: &Path, records: &[EpochRecord]) -> Result<(), PlotError> {
    let per_epoch = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        records.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let evaluated: Vec<_> = records
        .iter()
        .filter_map(|r| r.metrics.as_ref().map(|m| (r.epoch as f64, m)))
        .collect();
    let per_eval = |f: fn(&transreid_eval::ReidMetrics) -> f64| -> Vec<(f64, f64)> {
        evaluated.iter().map(|(e, m)| (*e, f(m) * 100.0)).collect()
    };
    let last_cmc = evaluated
        .last()
        .map(|(_, m)| m.cmc.clone())
        .unwrap_or_default();
    let mut canvas = Canvas::new(1280, 960);
    canvas.draw(path, |root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((2, 2));
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        let green = RGBColor(44, 160, 44);
        // A few epochs are drawn as points too: one epoch is no line.
        let line = |label, color, points: Vec<(f64, f64)>| Series {
            label,
            color,
            markers: points.len() <= 30,
            points,
        };
        line_chart(
            &panels[0],
            "training loss",
            "epoch",
            "loss",
            &[line("loss", blue, per_epoch(|r| r.loss))],
            None,
        )?;
        line_chart(
            &panels[1],
            "learning rate (weights)",
            "epoch",
            "lr",
            &[line("lr", orange, per_epoch(|r| r.lr))],
            None,
        )?;
        let mark = |label, color, points| Series {
            label,
            color,
            points,
            markers: true,
        };
        line_chart(
            &panels[2],
            "evaluation",
            "epoch",
            "%",
            &[
                mark("mAP", blue, per_eval(|m| m.map)),
                mark("Rank-1", orange, per_eval(|m| m.rank1().unwrap_or(0.0))),
                mark("mINP", green, per_eval(|m| m.minp)),
            ],
            Some((0.0, 100.0)),
        )?;
        line_chart(
            &panels[3],
            "CMC (last evaluation)",
            "rank",
            "matching rate (%)",
            &[cmc_series(&last_cmc)],
            Some((0.0, 100.0)),
        )
    })?;
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transreid_eval::ReidMetrics;

    fn record(epoch: usize, evaluated: bool) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: 5.0 / epoch as f64,
            accuracy: 0.1 * epoch as f64,
            lr: 0.008 * epoch as f64,
            images_per_second: 100.0,
            metrics: evaluated.then(|| ReidMetrics {
                cmc: vec![0.5, 0.7, 0.8, 0.9],
                map: 0.4,
                minp: 0.2,
                num_valid_queries: 10,
                num_skipped_queries: 0,
                num_gallery: 4,
            }),
        }
    }

    fn pixels_not_white(path: &Path) -> usize {
        let image = image::open(path).unwrap().to_rgb8();
        image.pixels().filter(|p| p.0 != [255, 255, 255]).count()
    }

    #[test]
    fn training_figure_and_cmc_are_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let figure = dir.path().join("training.png");
        let records: Vec<_> = (1..=6).map(|e| record(e, e % 3 == 0)).collect();
        plot_training(&figure, &records).unwrap();
        let image = image::open(&figure).unwrap();
        assert_eq!((image.width(), image.height()), (1280, 960));
        assert!(
            pixels_not_white(&figure) > 10_000,
            "axes, text and lines are drawn"
        );

        let cmc = dir.path().join("cmc.png");
        plot_cmc(&cmc, &[0.2, 0.5, 1.0], "CMC").unwrap();
        assert!(pixels_not_white(&cmc) > 2_000);
        assert!(!dir.path().join("cmc.png.tmp").exists());
    }

    #[test]
    fn tick_labels_follow_the_axis_span() {
        assert_eq!(tick_label(20.0, 100.0), "20");
        assert_eq!(tick_label(2.5, 4.0), "2.50");
        assert_eq!(tick_label(0.015, 0.03), "0.0150");
        assert_eq!(tick_label(5e-4, 0.03), "5.0e-4");
        assert_eq!(tick_label(0.0, 1.0), "0");
    }

    #[test]
    fn short_runs_get_integer_epoch_ticks_and_points() {
        assert_eq!(integer_tick(2.0), "2");
        assert_eq!(integer_tick(1.5), "");
        assert_eq!(integer_tick(0.9999999999999), "1");
        let dir = tempfile::tempdir().unwrap();
        let figure = dir.path().join("training.png");
        // One and two epochs, evaluated, with a CMC at 100% everywhere and a constant lr.
        for epochs in [1, 2] {
            let records: Vec<EpochRecord> = (1..=epochs)
                .map(|e| {
                    let mut r = record(e, true);
                    r.lr = 1e-4;
                    if let Some(m) = r.metrics.as_mut() {
                        m.cmc = vec![1.0; 50];
                    }
                    r
                })
                .collect();
            plot_training(&figure, &records).unwrap();
            assert!(pixels_not_white(&figure) > 20_000);
        }
    }

    #[test]
    fn a_run_without_evaluation_still_plots() {
        let dir = tempfile::tempdir().unwrap();
        let figure = dir.path().join("training.png");
        plot_training(&figure, &[record(1, false)]).unwrap();
        assert!(figure.exists());
    }
}
