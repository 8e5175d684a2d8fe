//! The [`Format`] enum: one variant per scanner export the importer understands.

use std::fmt;

use crate::mapping;

/// A scanner export format, detected from the header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Nessus Professional / Manager CSV export (default or "all columns").
    Nessus,
    /// Tenable Web App Scanning CSV export (Nessus columns plus `CVSSv3`).
    TenableWas,
    /// Tenable.io / Tenable Vulnerability Management column-name export.
    TenableIo,
    /// Tenable Vulnerability Management "Findings" export with dotted keys (`definition.id`).
    TenableIoFindings,
    /// Tenable.sc (SecurityCenter) vulnerability detail list.
    TenableSc,
    /// Greenbone / OpenVAS "CSV Results" report format.
    Greenbone,
    /// RapidFire Tools VulScan (Greenbone checks, own layout).
    RapidFire,
    /// Qualys VM scan / host-detection report.
    QualysVm,
    /// Qualys VMDR "Asset Vuln Datalist" report (QID or CVE variant).
    QualysVmdr,
    /// Qualys PCI / HackerGuardian report.
    QualysPci,
    /// SAINT vulnerability scanner export.
    Saint,
    /// Rapid7 InsightVM / Nexpose CSV export.
    Rapid7,
    /// hexflow's own generic CSV format (see `docs/formats.md`).
    Generic,
}

impl Format {
    /// Every format, in the order detection tries them (most specific first).
    pub const ALL: &'static [Format] = &[
        Format::TenableIoFindings,
        Format::TenableIo,
        Format::TenableWas,
        Format::TenableSc,
        Format::Nessus,
        Format::Greenbone,
        Format::RapidFire,
        Format::QualysVmdr,
        Format::QualysPci,
        Format::QualysVm,
        Format::Saint,
        Format::Rapid7,
        Format::Generic,
    ];

    /// The stable name used in the API, the database and the `format` upload field.
    pub fn name(self) -> &'static str {
        match self {
            Format::Nessus => "nessus",
            Format::TenableWas => "tenable_was",
            Format::TenableIo => "tenable_io",
            Format::TenableIoFindings => "tenable_io_findings",
            Format::TenableSc => "tenable_sc",
            Format::Greenbone => "openvas",
            Format::RapidFire => "rapidfire",
            Format::QualysVm => "qualys",
            Format::QualysVmdr => "qualys_vmdr",
            Format::QualysPci => "qualys_pci",
            Format::Saint => "saint",
            Format::Rapid7 => "rapid7",
            Format::Generic => "generic",
        }
    }

    /// Looks a format up by [`Format::name`], case-insensitively. `"auto"` is not a format:
    /// the caller handles it by passing `None` to [`crate::sniff`].
    pub fn parse(s: &str) -> Option<Format> {
        let s = s.trim();
        Format::ALL.iter().copied().find(|f| f.name().eq_ignore_ascii_case(s))
    }

    /// The scanner family whose check ids are comparable across formats: `tenable`,
    /// `greenbone`, `qualys`, `saint`, `rapid7` or `generic`.
    pub fn scanner(self) -> &'static str {
        match self {
            Format::Nessus | Format::TenableWas | Format::TenableIo | Format::TenableIoFindings | Format::TenableSc => {
                "tenable"
            }
            Format::Greenbone | Format::RapidFire => "greenbone",
            Format::QualysVm | Format::QualysVmdr | Format::QualysPci => "qualys",
            Format::Saint => "saint",
            Format::Rapid7 => "rapid7",
            Format::Generic => "generic",
        }
    }

    /// The header names that identify this format (all must be present, compared trimmed
    /// and case-insensitively). Used for detection and in error messages.
    pub fn required_columns(self) -> &'static [&'static str] {
        mapping::spec(self).required
    }
}

/// Serialises as [`Format::name`].
impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for &f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
            assert_eq!(Format::parse(&f.name().to_uppercase()), Some(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!(Format::parse("auto"), None);
        assert_eq!(Format::ALL.len(), 13);
    }

    #[test]
    fn families_group_comparable_check_ids() {
        assert_eq!(Format::TenableSc.scanner(), "tenable");
        assert_eq!(Format::RapidFire.scanner(), "greenbone");
        assert_eq!(Format::QualysPci.scanner(), "qualys");
        assert_eq!(Format::Generic.required_columns(), ["asset", "check_id", "title", "severity"]);
    }
}
