//! The datasets this crate can read, by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// A dataset layout. `FromStr` and deserialisation accept the canonical names (`market1501`,
/// `dukemtmc`, `msmt17`, `occluded-duke`, `veri776`, `vehicleid`, `custom`) case-insensitively,
/// with `-` and `_` ignored (`Market-1501`, `Occluded_Duke`, `VeRi_776`); it serialises to the
/// canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum DatasetKind {
    /// Market-1501 ([`crate::datasets::market1501`]).
    Market1501,
    /// DukeMTMC-reID ([`crate::datasets::dukemtmc`]).
    #[serde(rename = "dukemtmc")]
    DukeMtmc,
    /// MSMT17, V1 or V2 layout ([`crate::datasets::msmt17`]).
    Msmt17,
    /// Occluded-Duke ([`crate::datasets::occluded_duke`]).
    OccludedDuke,
    /// VeRi-776 with viewpoint labels ([`crate::datasets::veri776`]).
    Veri776,
    /// VehicleID ([`crate::datasets::vehicleid`]).
    #[serde(rename = "vehicleid")]
    VehicleId,
    /// A user's own folder or CSV lists ([`crate::datasets::custom`]).
    Custom,
}

impl DatasetKind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [DatasetKind; 7] = [
        DatasetKind::Market1501,
        DatasetKind::DukeMtmc,
        DatasetKind::Msmt17,
        DatasetKind::OccludedDuke,
        DatasetKind::Veri776,
        DatasetKind::VehicleId,
        DatasetKind::Custom,
    ];

    /// The canonical command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetKind::Market1501 => "market1501",
            DatasetKind::DukeMtmc => "dukemtmc",
            DatasetKind::Msmt17 => "msmt17",
            DatasetKind::OccludedDuke => "occluded-duke",
            DatasetKind::Veri776 => "veri776",
            DatasetKind::VehicleId => "vehicleid",
            DatasetKind::Custom => "custom",
        }
    }

    /// The dataset's usual display name.
    pub fn title(self) -> &'static str {
        match self {
            DatasetKind::Market1501 => "Market-1501",
            DatasetKind::DukeMtmc => "DukeMTMC-reID",
            DatasetKind::Msmt17 => "MSMT17",
            DatasetKind::OccludedDuke => "Occluded-Duke",
            DatasetKind::Veri776 => "VeRi-776",
            DatasetKind::VehicleId => "VehicleID",
            DatasetKind::Custom => "custom",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let plain = |name: &str| -> String {
            name.trim()
                .chars()
                .filter(|c| !matches!(c, '-' | '_'))
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        let name = plain(s);
        DatasetKind::ALL
            .into_iter()
            .find(|kind| plain(kind.as_str()) == name)
            .ok_or_else(|| DataError::UnknownDatasetKind {
                name: s.to_string(),
                expected: DatasetKind::ALL.map(DatasetKind::as_str).join(", "),
            })
    }
}

impl TryFrom<String> for DatasetKind {
    type Error = DataError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_the_docs_say() {
        for (name, kind) in [
            ("Occluded_Duke", DatasetKind::OccludedDuke),
            ("MARKET1501", DatasetKind::Market1501),
            ("Market_1501", DatasetKind::Market1501),
            ("VeRi-776", DatasetKind::Veri776),
        ] {
            assert_eq!(name.parse::<DatasetKind>().unwrap(), kind, "{name}");
            let json = serde_json::to_string(name).unwrap();
            assert_eq!(serde_json::from_str::<DatasetKind>(&json).unwrap(), kind);
        }
        assert!(serde_json::from_str::<DatasetKind>("\"market\"").is_err());
        assert_eq!(
            serde_json::to_string(&DatasetKind::OccludedDuke).unwrap(),
            "\"occluded-duke\""
        );
    }

    #[test]
    fn names_round_trip() {
        for kind in DatasetKind::ALL {
            assert_eq!(kind.as_str().parse::<DatasetKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.as_str());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn parsing_ignores_case_and_underscores() {
        assert_eq!(
            "Occluded_Duke".parse::<DatasetKind>().unwrap(),
            DatasetKind::OccludedDuke
        );
        assert_eq!(
            "VERI776".parse::<DatasetKind>().unwrap(),
            DatasetKind::Veri776
        );
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "market".parse::<DatasetKind>().unwrap_err();
        let DataError::UnknownDatasetKind { name, expected } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(name, "market");
        assert!(expected.contains("market1501") && expected.contains("occluded-duke"));
    }
}
