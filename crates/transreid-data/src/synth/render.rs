//! Drawing one frame: background, a person (head, hair or hat, torso, arms, legs, bag), an
//! optional occluder, then the camera's colour cast, brightness, noise and blur.

use image::RgbImage;
use rand::Rng;

use crate::synth::appearance::{Appearance, BagSide, TorsoPattern};
use crate::synth::camera_style::CameraStyle;

/// A float RGB canvas; shapes are clipped to it.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<[f32; 3]>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width: width as usize,
            height: height as usize,
            pixels: vec![[0.0; 3]; width as usize * height as usize],
        }
    }

    /// Fills `[x0, x1) × [y0, y1)` (rounded, clipped).
    fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, colour: [f32; 3]) {
        let clip = |v: f32, max: usize| (v.round().max(0.0) as usize).min(max);
        let (x0, x1) = (clip(x0, self.width), clip(x1, self.width));
        let (y0, y1) = (clip(y0, self.height), clip(y1, self.height));
        for y in y0..y1 {
            self.pixels[y * self.width + x0..y * self.width + x1].fill(colour);
        }
    }

    /// Fills the disc of radius `r` around `(cx, cy)` (pixel centres inside).
    fn disc(&mut self, cx: f32, cy: f32, r: f32, colour: [f32; 3]) {
        let y0 = (cy - r).floor().max(0.0) as usize;
        let y1 = ((cy + r).ceil().max(0.0) as usize).min(self.height);
        let x0 = (cx - r).floor().max(0.0) as usize;
        let x1 = ((cx + r).ceil().max(0.0) as usize).min(self.width);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.pixels[y * self.width + x] = colour;
                }
            }
        }
    }

    fn into_image(self) -> RgbImage {
        let raw = self
            .pixels
            .iter()
            .flat_map(|p| p.map(|v| v.round().clamp(0.0, 255.0) as u8))
            .collect();
        RgbImage::from_raw(self.width as u32, self.height as u32, raw).expect("canvas size")
    }
}

/// What to put in a frame.
pub(crate) enum Subject<'a> {
    Person(&'a Appearance),
    /// Junk: background with a fragment of clothing, as Market's badly cropped boxes.
    Fragment([f32; 3]),
}

/// Renders one `width × height` frame of `subject` seen by `camera`, with per-image variation
/// (pose, position, lighting, noise) drawn from `rng`.
pub(crate) fn render(
    subject: &Subject,
    camera: &CameraStyle,
    width: u32,
    height: u32,
    rng: &mut impl Rng,
) -> RgbImage {
    let mut canvas = Canvas::new(width, height);
    let (w, h) = (width as f32, height as f32);
    let floor = h * rng.random_range(0.9..0.97);
    canvas.rect(0.0, 0.0, w, floor, camera.background);
    canvas.rect(0.0, floor, w, h, camera.ground);
    // a wall feature (door, window, pole) whose place varies per image
    let feature_x = rng.random_range(0.0..w);
    let shade = camera.background.map(|v| v * 0.7);
    canvas.rect(feature_x, h * 0.1, feature_x + w * 0.12, floor, shade);

    match subject {
        Subject::Person(look) => draw_person(&mut canvas, look, camera, floor, rng),
        Subject::Fragment(colour) => {
            let y = rng.random_range(0.0..h * 0.6);
            canvas.rect(0.0, y, w * rng.random_range(0.2..0.5), y + h * 0.3, *colour);
        }
    }

    if rng.random_bool(camera.occlusion) {
        if rng.random_bool(0.6) {
            // something in front of the legs: a car, a bench, a bin
            canvas.rect(0.0, h * rng.random_range(0.6..0.8), w, h, camera.occluder);
        } else if rng.random_bool(0.5) {
            canvas.rect(0.0, 0.0, w * rng.random_range(0.2..0.4), h, camera.occluder);
        } else {
            canvas.rect(w * rng.random_range(0.6..0.8), 0.0, w, h, camera.occluder);
        }
    }

    let light = camera.brightness + rng.random_range(-10.0..10.0);
    for p in &mut canvas.pixels {
        for (v, gain) in p.iter_mut().zip(camera.cast) {
            *v = *v * gain + light + rng.random_range(-6.0..6.0);
        }
    }
    let image = canvas.into_image();
    let sigma = camera.blur * h / 128.0;
    if sigma > 0.0 {
        image::imageops::blur(&image, sigma)
    } else {
        image
    }
}

/// Draws the person standing on `floor`, scaled and placed by the camera, with jitter.
fn draw_person(
    canvas: &mut Canvas,
    look: &Appearance,
    camera: &CameraStyle,
    floor: f32,
    rng: &mut impl Rng,
) {
    let (w, h) = (canvas.width as f32, canvas.height as f32);
    let fh = h * camera.scale * look.height * rng.random_range(0.95..1.03);
    let top = floor - fh;
    let cx = w * (0.5 + camera.offset + rng.random_range(-0.05..0.05));
    // body proportions relative to the figure height
    let u = |f: f32| f * fh;
    let half_torso = u(0.13) * look.build;
    let y = |f: f32| top + u(f);

    // legs, with a stride that varies per image
    let stride = u(rng.random_range(0.0..0.04));
    let leg = u(0.1) * look.build;
    canvas.rect(
        cx - leg - u(0.01) - stride,
        y(0.52),
        cx - u(0.01),
        y(0.95),
        look.lower,
    );
    canvas.rect(
        cx + u(0.01),
        y(0.52),
        cx + leg + u(0.01) + stride,
        y(0.95),
        look.lower,
    );
    canvas.rect(
        cx - leg - u(0.02) - stride,
        y(0.95),
        cx - u(0.01),
        y(1.0),
        [30.0; 3],
    );
    canvas.rect(
        cx + u(0.01),
        y(0.95),
        cx + leg + u(0.02) + stride,
        y(1.0),
        [30.0; 3],
    );

    // arms, then torso over them
    let arm = u(0.05);
    let sleeve_end = if look.short_sleeves { y(0.28) } else { y(0.47) };
    for (x0, x1) in [
        (cx - half_torso - arm, cx - half_torso),
        (cx + half_torso, cx + half_torso + arm),
    ] {
        canvas.rect(x0, y(0.17), x1, y(0.49), look.skin);
        canvas.rect(x0, y(0.17), x1, sleeve_end, look.upper);
    }
    canvas.rect(
        cx - half_torso,
        y(0.16),
        cx + half_torso,
        y(0.53),
        look.upper,
    );
    match look.pattern {
        TorsoPattern::Plain => {}
        TorsoPattern::Stripe(colour) => {
            canvas.rect(cx - half_torso, y(0.29), cx + half_torso, y(0.35), colour)
        }
        TorsoPattern::Zip(colour) => {
            canvas.rect(cx - u(0.012), y(0.16), cx + u(0.012), y(0.53), colour)
        }
    }

    // head: hair disc, face disc slightly lower, then an optional cap
    let r = u(0.07);
    canvas.rect(cx - u(0.025), y(0.13), cx + u(0.025), y(0.17), look.skin);
    canvas.disc(cx, y(0.075), r, look.hair);
    canvas.disc(cx, y(0.09), r * 0.85, look.skin);
    if let Some(hat) = look.hat {
        canvas.rect(cx - r * 1.1, y(0.0), cx + r * 1.1, y(0.05), hat);
        canvas.rect(cx - r * 1.5, y(0.045), cx + r * 1.1, y(0.065), hat);
    }

    if let Some((side, colour)) = look.bag {
        let (x0, x1) = match side {
            BagSide::Left => (cx - half_torso - u(0.1), cx - half_torso + u(0.01)),
            BagSide::Right => (cx + half_torso - u(0.01), cx + half_torso + u(0.1)),
        };
        canvas.rect(x0, y(0.38), x1, y(0.56), colour);
        // strap across the chest
        let strap = colour.map(|v| v * 0.6);
        for i in 0..8 {
            let f = i as f32 / 8.0;
            let sx = match side {
                BagSide::Left => cx + half_torso - f * 2.0 * half_torso,
                BagSide::Right => cx - half_torso + f * 2.0 * half_torso,
            };
            canvas.rect(
                sx - u(0.012),
                y(0.17 + 0.2 * f),
                sx + u(0.012),
                y(0.2 + 0.2 * f),
                strap,
            );
        }
    }
}
