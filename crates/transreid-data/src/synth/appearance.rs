//! What makes an identity recognisable: clothing colours, build and accessories.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::seed::{derive_rng, RngPurpose};

/// Clothing palette; identities draw (upper, lower) pairs from it.
const PALETTE: [[f32; 3]; 12] = [
    [200.0, 40.0, 40.0],   // red
    [40.0, 70.0, 190.0],   // blue
    [40.0, 150.0, 60.0],   // green
    [230.0, 200.0, 40.0],  // yellow
    [235.0, 235.0, 235.0], // white
    [25.0, 25.0, 25.0],    // black
    [128.0, 128.0, 128.0], // grey
    [240.0, 130.0, 30.0],  // orange
    [130.0, 50.0, 160.0],  // purple
    [40.0, 180.0, 200.0],  // cyan
    [120.0, 75.0, 35.0],   // brown
    [235.0, 130.0, 170.0], // pink
];
const SKIN: [[f32; 3]; 4] = [
    [240.0, 200.0, 170.0],
    [205.0, 150.0, 110.0],
    [150.0, 100.0, 70.0],
    [95.0, 60.0, 40.0],
];
const HAIR: [[f32; 3]; 4] = [
    [20.0, 15.0, 10.0],
    [90.0, 55.0, 25.0],
    [200.0, 170.0, 90.0],
    [150.0, 150.0, 150.0],
];

/// Distinct (upper, lower) colour pairs and accessory combinations.
const PAIRS: usize = PALETTE.len() * PALETTE.len();
const ACCESSORIES: usize = 2 * 3 * 3;

/// Side of a carried bag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BagSide {
    Left,
    Right,
}

/// A mark on the upper garment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TorsoPattern {
    Plain,
    /// A horizontal band across the chest.
    Stripe([f32; 3]),
    /// A vertical line down the middle.
    Zip([f32; 3]),
}

/// The fixed look of one identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Appearance {
    pub upper: [f32; 3],
    pub lower: [f32; 3],
    pub skin: [f32; 3],
    pub hair: [f32; 3],
    pub hat: Option<[f32; 3]>,
    pub bag: Option<(BagSide, [f32; 3])>,
    pub pattern: TorsoPattern,
    pub short_sleeves: bool,
    /// Height relative to the frame, 0.90..1.0.
    pub height: f32,
    /// Width factor, 0.85..1.15.
    pub build: f32,
}

/// Assigns appearances so that identities differ: the first 144 identities get distinct
/// (upper, lower) colour pairs, and identities sharing a pair differ in accessories.
#[derive(Debug, Clone)]
pub struct AppearanceBook {
    seed: u64,
    pairs: Vec<usize>,
    accessories: Vec<usize>,
}

impl AppearanceBook {
    /// The assignment for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = derive_rng(seed, RngPurpose::Synthetic, u64::MAX, 0);
        let mut pairs: Vec<usize> = (0..PAIRS).collect();
        let mut accessories: Vec<usize> = (0..ACCESSORIES).collect();
        pairs.shuffle(&mut rng);
        accessories.shuffle(&mut rng);
        Self {
            seed,
            pairs,
            accessories,
        }
    }

    /// The appearance of identity number `k` (0-based over all identities).
    pub fn appearance(&self, k: usize) -> Appearance {
        let pair = self.pairs[k % PAIRS];
        let combo = self.accessories[(k + k / PAIRS) % ACCESSORIES];
        let mut rng = derive_rng(self.seed, RngPurpose::Synthetic, u64::MAX - 1, k as u64);
        let skin = SKIN[rng.random_range(0..SKIN.len())];
        let hair = HAIR[rng.random_range(0..HAIR.len())];
        let short_sleeves = rng.random_bool(0.4);
        let height = rng.random_range(0.90..1.0);
        let build = rng.random_range(0.85..1.15);
        let mut tint =
            |c: [f32; 3]| c.map(|v| (v + rng.random_range(-10.0..10.0)).clamp(0.0, 255.0));
        let upper = tint(PALETTE[pair / PALETTE.len()]);
        let lower = tint(PALETTE[pair % PALETTE.len()]);
        let accent = tint(PALETTE[(pair + 5) % PALETTE.len()]);
        let contrast = if upper.iter().sum::<f32>() > 380.0 {
            [30.0; 3]
        } else {
            [225.0; 3]
        };
        Appearance {
            upper,
            lower,
            skin,
            hair,
            hat: (combo % 2 == 1).then_some(accent),
            bag: match (combo / 2) % 3 {
                0 => None,
                1 => Some((BagSide::Left, tint(PALETTE[(pair + 7) % PALETTE.len()]))),
                _ => Some((BagSide::Right, tint(PALETTE[(pair + 3) % PALETTE.len()]))),
            },
            pattern: match combo / 6 {
                0 => TorsoPattern::Plain,
                1 => TorsoPattern::Stripe(contrast),
                _ => TorsoPattern::Zip(contrast),
            },
            short_sleeves,
            height,
            build,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_identities_have_distinct_colour_pairs() {
        let book = AppearanceBook::new(3);
        let looks: Vec<Appearance> = (0..PAIRS).map(|k| book.appearance(k)).collect();
        for a in 0..looks.len() {
            for b in a + 1..looks.len() {
                let dist: f32 = looks[a]
                    .upper
                    .iter()
                    .chain(&looks[a].lower)
                    .zip(looks[b].upper.iter().chain(&looks[b].lower))
                    .map(|(x, y)| (x - y).abs())
                    .sum();
                assert!(dist > 20.0, "identities {a} and {b} look alike");
            }
        }
    }

    #[test]
    fn appearance_is_a_function_of_seed_and_identity() {
        assert_eq!(
            AppearanceBook::new(1).appearance(17),
            AppearanceBook::new(1).appearance(17)
        );
        assert_ne!(
            AppearanceBook::new(1).appearance(17),
            AppearanceBook::new(2).appearance(17)
        );
    }
}
