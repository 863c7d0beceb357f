//! Decoding every image of a split up front ([`ImageCheck::Verify`] / `SkipUnreadable`).

use std::path::PathBuf;

use rayon::prelude::*;

use crate::decode::decode_rgb;
use crate::error::Result;
use crate::item::ReidItem;
use crate::options::ImageCheck;

/// Applies `check` to `items`: nothing, fail on the first unreadable image (in item order), or
/// drop unreadable images and append their paths to `dropped`.
pub(crate) fn check_images(
    items: &mut Vec<ReidItem>,
    check: ImageCheck,
    dropped: &mut Vec<PathBuf>,
) -> Result<()> {
    if check == ImageCheck::None {
        return Ok(());
    }
    let outcomes: Vec<Result<()>> = items
        .par_iter()
        .map(|item| decode_rgb(&item.path).map(|_| ()))
        .collect();
    if check == ImageCheck::Verify {
        return outcomes.into_iter().collect();
    }
    let mut kept = Vec::with_capacity(items.len());
    for (item, outcome) in items.drain(..).zip(outcomes) {
        match outcome {
            Ok(()) => kept.push(item),
            Err(_) => dropped.push(item.path),
        }
    }
    *items = kept;
    Ok(())
}
