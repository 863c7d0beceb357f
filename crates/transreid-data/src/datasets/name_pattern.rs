//! The reference's file-name patterns `([-\d]+)_c(\d)` (persons) and `([-\d]+)_c(\d+)` (VeRi).

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use crate::error::{DataError, Result};

/// A regex with two groups, identity and camera, searched in a file name.
#[derive(Debug, Clone)]
pub(crate) struct PidCamPattern {
    regex: Regex,
    expected: &'static str,
}

/// What a folder of `<pid>_c<cam>…` images may hold.
#[derive(Debug, Clone)]
pub(crate) struct PidCamRules {
    pub pattern: PidCamPattern,
    /// Allowed identity numbers; −1 (junk) is always skipped before this check.
    pub pids: RangeInclusive<i64>,
    /// Allowed 1-based camera numbers.
    pub cameras: RangeInclusive<i64>,
}

/// A file name's identity and 1-based camera number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidCam {
    /// The identity (−1 for junk in Market-1501).
    pub pid: i64,
    /// The camera number, 1-based as the datasets write it.
    pub camera: i64,
}

/// The labels a file name carries: an identity and, when it has one, a camera number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameLabels {
    /// The identity (−1 marks junk).
    pub pid: i64,
    /// The camera number as written in the name (1-based in every dataset), if any.
    pub camera: Option<i64>,
}

/// The one parser of `<pid>_c<camera>…` names outside the reference's dataset folders: the
/// custom folder layout, `--camera name` and the identities of `search` all read names with it.
///
/// The stem starts with the identity (`-?\d+`); a following `_c<digits>` not followed by
/// another digit is the camera (`0002_c1s1_000451_03.jpg`, `0776_c017_00086250_0.jpg`,
/// `0042_c3_0001.jpg`); anything else after `_` is free text (`0042_0001.jpg`, `0042_cat.jpg`,
/// `0042.jpg` have no camera). `None` when the stem does not start with an identity.
pub fn labels_from_name(path: &Path) -> Option<NameLabels> {
    static PATTERN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(-?\d+)(?:_c(\d+)(?:\D.*)?|_.*)?$").expect("valid regex"));
    let stem = path.file_stem()?.to_str()?;
    let caps = PATTERN.captures(stem)?;
    let pid = caps[1].parse().ok()?;
    let camera = match caps.get(2) {
        Some(c) => Some(c.as_str().parse().ok()?),
        None => None,
    };
    Some(NameLabels { pid, camera })
}

impl PidCamPattern {
    /// `([-\d]+)_c(\d)`: Market-1501, DukeMTMC-reID, Occluded-Duke (one camera digit).
    pub fn person() -> Self {
        Self {
            regex: Regex::new(r"([-\d]+)_c(\d)").expect("valid regex"),
            expected: "<pid>_c<camera digit>… (e.g. 0002_c1s1_000451_03.jpg)",
        }
    }

    /// `([-\d]+)_c(\d+)`: VeRi-776 (cameras up to 20).
    pub fn vehicle() -> Self {
        Self {
            regex: Regex::new(r"([-\d]+)_c(\d+)").expect("valid regex"),
            expected: "<pid>_c<camera>… (e.g. 0002_c002_00030600_0.jpg)",
        }
    }

    /// Searches the file name of `path`.
    pub fn parse(&self, path: &Path) -> Result<PidCam> {
        let unparsable = || DataError::UnparsableName {
            path: path.to_path_buf(),
            expected: self.expected,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(unparsable)?;
        let caps = self.regex.captures(name).ok_or_else(unparsable)?;
        let pid = caps[1].parse::<i64>().map_err(|_| unparsable())?;
        let camera = caps[2].parse::<i64>().map_err(|_| unparsable())?;
        Ok(PidCam { pid, camera })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reference_names() {
        let p = PidCamPattern::person();
        assert_eq!(
            p.parse(Path::new("/x/0002_c1s1_000451_03.jpg")).unwrap(),
            PidCam { pid: 2, camera: 1 }
        );
        assert_eq!(
            p.parse(Path::new("-1_c3s2_000001_00.jpg")).unwrap(),
            PidCam { pid: -1, camera: 3 }
        );
        assert_eq!(
            p.parse(Path::new("0005_c2_f0046182.jpg")).unwrap(),
            PidCam { pid: 5, camera: 2 }
        );
        let v = PidCamPattern::vehicle();
        assert_eq!(
            v.parse(Path::new("0776_c017_00086250_0.jpg")).unwrap(),
            PidCam {
                pid: 776,
                camera: 17
            }
        );
    }

    #[test]
    fn one_parser_reads_market_veri_and_free_names() {
        let labels = |name: &str| labels_from_name(Path::new(name));
        let some = |pid, camera| Some(NameLabels { pid, camera });
        assert_eq!(labels("q/0002_c1s1_000451_03.jpg"), some(2, Some(1)));
        assert_eq!(labels("-1_c3s2_0001.jpg"), some(-1, Some(3)));
        assert_eq!(labels("0776_c017_00086250_0.jpg"), some(776, Some(17)));
        assert_eq!(labels("0005_c8_f0051234.jpg"), some(5, Some(8)));
        assert_eq!(labels("0042_c3.png"), some(42, Some(3)));
        assert_eq!(labels("0042_c0_a.png"), some(42, Some(0)));
        assert_eq!(labels("0042_0001.jpg"), some(42, None));
        assert_eq!(labels("0042_cat.jpg"), some(42, None));
        assert_eq!(labels("0042_c.jpg"), some(42, None));
        assert_eq!(labels("0042.jpg"), some(42, None));
        for name in [
            "photo_cat.jpg",
            "crop.png",
            "x0002_c1.jpg",
            "-_c1.jpg",
            "0002c1.jpg",
        ] {
            assert_eq!(labels(name), None, "{name}");
        }
    }

    #[test]
    fn rejects_names_without_the_pattern() {
        let p = PidCamPattern::person();
        for name in ["image.jpg", "0002c1.jpg", "-_c1.jpg", "1-2_c1.jpg"] {
            assert!(
                matches!(
                    p.parse(Path::new(name)),
                    Err(DataError::UnparsableName { .. })
                ),
                "{name}"
            );
        }
    }
}
