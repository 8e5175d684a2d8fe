//! One mapping table per format: which header names feed which [`Field`] of a finding.
//!
//! A field lists candidate header names in order of preference. For each row the value is
//! the first *non-empty* cell among the candidates the header has, so one list handles both
//! renames (`Solution` / `Steps to Remediate`) and fallbacks (`CVSS v3` before `CVSS v2`,
//! `Asset UUID` before `IP Address`). Header names are compared trimmed and
//! case-insensitively; the first of duplicated names wins and empty names are ignored.

#[cfg(test)]
mod docs;
mod greenbone;
mod others;
mod qualys;
mod tenable;

use crate::format::Format;

/// A field of [`crate::Finding`] that is read from a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Asset,
    CheckId,
    Port,
    Protocol,
    Cves,
    Severity,
    Cvss,
    Vpr,
    Title,
    Description,
    Solution,
    Output,
    FirstSeen,
    LastSeen,
    State,
}

/// Number of [`Field`] variants (array sizes).
pub(crate) const FIELD_COUNT: usize = 15;

/// How a *numeric* severity cell is read; words (`High`, `M`, `Log`) are the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    /// 0 info .. 4 critical (Tenable `Severity`, generic format).
    ZeroToFour,
    /// Qualys levels 1..5: 1 info, 2 low, 3 medium, 4 high, 5 critical.
    Qualys,
    /// Rapid7 levels 1..10, banded like CVSS.
    Rapid7,
    /// A CVSS-like 0.0..10.0 number (Greenbone), banded like CVSS v3.
    Cvss,
}

/// Everything the crate knows about one format.
#[derive(Debug)]
pub(crate) struct Spec {
    pub format: Format,
    /// Header names that must all be present for detection (and for a forced format).
    pub required: &'static [&'static str],
    /// If non-empty, at least one of these must be present too (tells siblings apart).
    pub any_of: &'static [&'static str],
    /// The mapping table: field → candidate header names, best first.
    pub columns: &'static [(Field, &'static [&'static str])],
    /// How numeric severities are read.
    pub scale: Scale,
    /// Whether ambiguous `NN/NN/YYYY` dates are day-first in this format.
    pub day_first: bool,
}

/// The spec of one format.
pub(crate) fn spec(format: Format) -> &'static Spec {
    match format {
        Format::Nessus => &tenable::NESSUS,
        Format::TenableWas => &tenable::TENABLE_WAS,
        Format::TenableIo => &tenable::TENABLE_IO,
        Format::TenableIoFindings => &tenable::TENABLE_IO_FINDINGS,
        Format::TenableSc => &tenable::TENABLE_SC,
        Format::Greenbone => &greenbone::GREENBONE,
        Format::RapidFire => &greenbone::RAPIDFIRE,
        Format::QualysVm => &qualys::QUALYS_VM,
        Format::QualysVmdr => &qualys::QUALYS_VMDR,
        Format::QualysPci => &qualys::QUALYS_PCI,
        Format::Saint => &others::SAINT,
        Format::Rapid7 => &others::RAPID7,
        Format::Generic => &others::GENERIC,
    }
}

/// Normalises a header name for comparison: trimmed, BOM removed, lower-case.
pub(crate) fn normalize_name(name: &str) -> String {
    name.trim_start_matches('\u{feff}').trim().to_lowercase()
}

impl Spec {
    /// Whether a header (already normalised with [`normalize_name`]) has the columns this
    /// format needs.
    pub(crate) fn matches(&self, names: &[String]) -> bool {
        let has = |c: &&str| names.iter().any(|n| n.eq_ignore_ascii_case(c));
        self.required.iter().all(&has) && (self.any_of.is_empty() || self.any_of.iter().any(has))
    }

    /// Required columns (and the "one of" group) this header lacks.
    pub(crate) fn missing(&self, names: &[String]) -> Vec<String> {
        let has = |c: &str| names.iter().any(|n| n.eq_ignore_ascii_case(c));
        let mut missing: Vec<String> = self.required.iter().filter(|c| !has(c)).map(|c| (*c).to_owned()).collect();
        if !self.any_of.is_empty() && !self.any_of.iter().any(|c| has(c)) {
            missing.push(format!("one of {}", self.any_of.join(" / ")));
        }
        missing
    }

    /// Human description of what this format needs, for error messages.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("{} ({}", self.format, self.required.join(", "));
        if !self.any_of.is_empty() {
            s.push_str(&format!(", and one of {}", self.any_of.join(" / ")));
        }
        s.push(')');
        s
    }
}

/// Detects the format of a header row; the first format in [`Format::ALL`] order wins.
pub(crate) fn detect(names: &[String]) -> Option<Format> {
    Format::ALL.iter().copied().find(|&f| spec(f).matches(names))
}

/// A format's table resolved against one concrete header: column indexes per field.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// Candidate column indexes per field, best first.
    pub columns: [Vec<usize>; FIELD_COUNT],
    /// The header names as written (trimmed, BOM removed), for error messages.
    pub header: Vec<String>,
}

impl Resolved {
    /// Resolves `spec` against a raw header record (names as written in the file).
    pub(crate) fn new(spec: &Spec, header: &[String]) -> Resolved {
        let names: Vec<String> = header.iter().map(|h| normalize_name(h)).collect();
        let mut columns: [Vec<usize>; FIELD_COUNT] = Default::default();
        for (field, candidates) in spec.columns {
            for cand in *candidates {
                // Duplicated names: the first occurrence wins; empty names never match.
                if let Some(idx) = names.iter().position(|n| n.eq_ignore_ascii_case(cand)) {
                    columns[*field as usize].push(idx);
                }
            }
        }
        Resolved {
            columns,
            header: header.iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_owned()).collect(),
        }
    }

    /// One past the last column with a non-empty name: cells further right are padding.
    pub(crate) fn named_width(&self) -> usize {
        self.header.iter().rposition(|h| !h.is_empty()).map_or(0, |i| i + 1)
    }

    /// The column indexes that feed `field`.
    pub(crate) fn of(&self, field: Field) -> &[usize] {
        &self.columns[field as usize]
    }

    /// A column's display name, or `#<n>` (1-based) for a cell beyond the header or under an
    /// empty name.
    pub(crate) fn column_name(&self, idx: usize) -> String {
        match self.header.get(idx) {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!("#{}", idx + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(header: &str) -> Vec<String> {
        header.split(',').map(normalize_name).collect()
    }

    #[test]
    fn every_table_names_asset_and_check_columns() {
        for &f in Format::ALL {
            let s = spec(f);
            assert_eq!(s.format, f);
            for field in [Field::Asset, Field::CheckId, Field::Title, Field::Severity] {
                assert!(s.columns.iter().any(|(fl, c)| *fl == field && !c.is_empty()), "{f} has no {field:?} column");
            }
        }
    }

    #[test]
    fn siblings_are_told_apart() {
        let nessus = "Plugin ID,CVE,CVSS,Risk,Host,Protocol,Port,Name,Synopsis";
        let was = "Plugin ID,CVE,CVSS,CVSSv3,Risk,Host,Protocol,Port,Name";
        let dati = "CVE;CVSS;Risk;Host;Port;Name".replace(';', ",");
        assert_eq!(detect(&names(nessus)), Some(Format::Nessus));
        assert_eq!(detect(&names(was)), Some(Format::TenableWas));
        assert_eq!(detect(&names(&dati)), Some(Format::Nessus));
        assert_eq!(detect(&names("IP,QID,Title,Severity")), Some(Format::QualysVm));
        assert_eq!(detect(&names("QID,Title,Asset Id")), Some(Format::QualysVmdr));
        assert_eq!(detect(&names("IP,QID,VULN TITLE")), Some(Format::QualysPci));
        assert_eq!(detect(&names("asset,check_id,title,severity")), Some(Format::Generic));
        assert_eq!(detect(&names("a,b,c")), None);
    }

    #[test]
    fn resolution_ignores_empty_and_duplicate_names() {
        let header: Vec<String> =
            ["\u{feff}Host", "", "Plugin ID", "Port", "Name", "host", " "].iter().map(|s| (*s).to_owned()).collect();
        let r = Resolved::new(spec(Format::Nessus), &header);
        assert_eq!(r.of(Field::Asset), [0]);
        assert_eq!(r.of(Field::CheckId), [2]);
        assert_eq!(r.column_name(1), "#2");
        assert_eq!(r.column_name(0), "Host");
    }
}
