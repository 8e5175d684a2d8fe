//! Tenable family: Nessus, Web App Scanning, Tenable.io (two shapes) and Tenable.sc.

use super::{Field as F, Scale, Spec};
use crate::format::Format;

/// Nessus Professional/Manager. The `dati.csv`-style variant has no `Plugin ID` and no
/// `Protocol`; its check id becomes `name:<Name>` (see `row.rs`).
pub(super) static NESSUS: Spec = Spec {
    format: Format::Nessus,
    required: &["Host", "Port", "Name"],
    any_of: &["Plugin ID", "Risk", "Synopsis", "Plugin Output"],
    columns: &[
        (F::Asset, &["Host"]),
        (F::CheckId, &["Plugin ID"]),
        (F::Port, &["Port"]),
        (F::Protocol, &["Protocol"]),
        (F::Cves, &["CVE"]),
        (F::Severity, &["Risk", "Risk Factor"]),
        (F::Cvss, &["CVSS v3.0 Base Score", "CVSS v4.0 Base Score", "CVSS v2.0 Base Score", "CVSS"]),
        (F::Vpr, &["VPR Score"]),
        (F::Title, &["Name"]),
        (F::Description, &["Description", "Synopsis"]),
        (F::Solution, &["Solution"]),
        (F::Output, &["Plugin Output"]),
    ],
    scale: Scale::ZeroToFour,
    // Only seen on plugin dates (`nessus-template.csv`), which are not mapped.
    day_first: true,
};

/// Tenable Web App Scanning: the Nessus columns plus `CVSSv3`; `Risk` is lower-case.
pub(super) static TENABLE_WAS: Spec = Spec {
    format: Format::TenableWas,
    required: &["Plugin ID", "Host", "Name", "CVSSv3"],
    any_of: &[],
    columns: &[
        (F::Asset, &["Host"]),
        (F::CheckId, &["Plugin ID"]),
        (F::Port, &["Port"]),
        (F::Protocol, &["Protocol"]),
        (F::Cves, &["CVE"]),
        (F::Severity, &["Risk"]),
        (F::Cvss, &["CVSSv3", "CVSS"]),
        (F::Title, &["Name"]),
        (F::Description, &["Description", "Synopsis"]),
        (F::Solution, &["Solution"]),
        (F::Output, &["Plugin Output"]),
    ],
    scale: Scale::ZeroToFour,
    day_first: false,
};

/// Tenable.io / Tenable VM column-name export. `Asset UUID` is the stable asset id but may
/// come under an empty header, so `IP Address` and `Host` follow as fallbacks.
pub(super) static TENABLE_IO: Spec = Spec {
    format: Format::TenableIo,
    required: &["Plugin ID", "Name"],
    any_of: &["Vulnerability State", "Asset UUID", "First Found", "Last Found"],
    columns: &[
        (F::Asset, &["Asset UUID", "IP Address", "Host", "FQDN"]),
        (F::CheckId, &["Plugin ID"]),
        (F::Port, &["Port"]),
        (F::Protocol, &["Protocol"]),
        (F::Cves, &["CVE"]),
        (F::Severity, &["Severity", "Risk", "Risk Factor"]),
        (F::Cvss, &["CVSS3 Base Score", "CVSS Base Score", "CVSS"]),
        (F::Vpr, &["Vulnerability Priority Rating (VPR)", "VPR"]),
        (F::Title, &["Name"]),
        (F::Description, &["Description", "Synopsis"]),
        (F::Solution, &["Solution"]),
        (F::Output, &["Plugin Output"]),
        (F::FirstSeen, &["First Found"]),
        (F::LastSeen, &["Last Found"]),
        (F::State, &["Vulnerability State"]),
    ],
    scale: Scale::ZeroToFour,
    day_first: false,
};

/// Tenable VM "Findings" export with dotted keys (usually `;`-delimited). The unnamed
/// column after `definition.cwe` holds the description but has no name, so it is not used.
pub(super) static TENABLE_IO_FINDINGS: Spec = Spec {
    format: Format::TenableIoFindings,
    required: &["asset.id", "definition.id", "definition.name"],
    any_of: &[],
    columns: &[
        (F::Asset, &["asset.id", "asset.display_ipv4_address", "asset.host_name", "asset.name"]),
        (F::CheckId, &["definition.id"]),
        (F::Port, &["port"]),
        (F::Protocol, &["protocol"]),
        (F::Cves, &["definition.cve"]),
        (F::Severity, &["severity", "definition.severity"]),
        (F::Cvss, &["definition.cvss3.base_score", "definition.cvss2.base_score"]),
        (F::Vpr, &["definition.vpr.score"]),
        (F::Title, &["definition.name"]),
        (F::Description, &["definition.description", "definition.synopsis"]),
        (F::Solution, &["definition.solution"]),
        (F::Output, &["output"]),
        (F::FirstSeen, &["first_observed"]),
        (F::LastSeen, &["last_seen"]),
        (F::State, &["state"]),
    ],
    scale: Scale::ZeroToFour,
    day_first: false,
};

/// Tenable.sc vulnerability detail list. `Plugin Text` starts with a `Plugin Output: `
/// label, which is removed (see `row.rs`).
pub(super) static TENABLE_SC: Spec = Spec {
    format: Format::TenableSc,
    required: &["Plugin", "Plugin Name", "IP Address"],
    any_of: &[],
    columns: &[
        (F::Asset, &["IP Address", "DNS Name", "NetBIOS Name"]),
        (F::CheckId, &["Plugin"]),
        (F::Port, &["Port"]),
        (F::Protocol, &["Protocol"]),
        (F::Cves, &["CVE"]),
        (F::Severity, &["Severity", "Risk Factor"]),
        (F::Cvss, &["CVSS V3 Base Score", "CVSS V2 Base Score"]),
        (F::Vpr, &["Vulnerability Priority Rating"]),
        (F::Title, &["Plugin Name"]),
        (F::Description, &["Description", "Synopsis"]),
        (F::Solution, &["Solution", "Steps to Remediate"]),
        (F::Output, &["Plugin Output", "Plugin Text"]),
        (F::FirstSeen, &["First Discovered"]),
        (F::LastSeen, &["Last Observed"]),
    ],
    scale: Scale::ZeroToFour,
    day_first: false,
};
