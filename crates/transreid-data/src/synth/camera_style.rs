//! How a camera changes what it sees: background, colour cast, brightness, blur, framing and
//! occluders. Identity must be learnt across these changes.

use rand::Rng;

use crate::seed::{derive_rng, RngPurpose};

/// The fixed rendering style of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraStyle {
    /// Wall colour (upper part of the frame).
    pub background: [f32; 3],
    /// Ground colour (below the feet line).
    pub ground: [f32; 3],
    /// Per-channel gain, 0.8..1.2.
    pub cast: [f32; 3],
    /// Added brightness, −30..30.
    pub brightness: f32,
    /// Gaussian blur sigma in pixels at 128 px height (0 = sharp).
    pub blur: f32,
    /// Person height as a fraction of the frame, 0.78..0.98.
    pub scale: f32,
    /// Horizontal offset of the person as a fraction of the width, −0.1..0.1.
    pub offset: f32,
    /// Probability that an occluder hides part of the person.
    pub occlusion: f64,
    pub occluder: [f32; 3],
}

impl CameraStyle {
    /// The style of camera `camera` (0-based) for `seed`.
    pub fn new(seed: u64, camera: usize) -> Self {
        let mut rng = derive_rng(seed, RngPurpose::Synthetic, u64::MAX - 2, camera as u64);
        let mut colour = |lo: f32, hi: f32| [0; 3].map(|_| rng.random_range(lo..hi));
        let background = colour(60.0, 190.0);
        let ground = colour(40.0, 140.0);
        let occluder = colour(20.0, 230.0);
        Self {
            background,
            ground,
            cast: [0; 3].map(|_| rng.random_range(0.8..1.2)),
            brightness: rng.random_range(-30.0..30.0),
            blur: [0.0, 1.0, 0.4, 1.4, 0.0, 0.7][camera % 6],
            scale: rng.random_range(0.78..0.98),
            offset: rng.random_range(-0.1..0.1),
            occlusion: [0.0, 0.3, 0.15, 0.45, 0.1, 0.25][camera % 6],
            occluder,
        }
    }
}
