//! Qualys family: VM scan reports, VMDR "Asset Vuln Datalist" and PCI / HackerGuardian.

use super::{Field as F, Scale, Spec};
use crate::format::Format;

/// Qualys VM host-detection / scan report (optionally after a report preamble).
pub(super) static QUALYS_VM: Spec = Spec {
    format: Format::QualysVm,
    required: &["IP", "QID", "Title"],
    any_of: &[],
    columns: &[
        (F::Asset, &["IP", "DNS", "NetBIOS"]),
        (F::CheckId, &["QID"]),
        (F::Port, &["Port"]),
        (F::Protocol, &["Protocol"]),
        (F::Cves, &["CVE ID"]),
        (F::Severity, &["Severity"]),
        (F::Cvss, &["CVSS3 Base", "CVSS3.1 Base", "CVSS3", "CVSS Base", "CVSS"]),
        (F::Title, &["Title"]),
        (F::Description, &["Threat"]),
        (F::Solution, &["Solution"]),
        (F::Output, &["Results"]),
        (F::FirstSeen, &["First Detected"]),
        (F::LastSeen, &["Last Detected"]),
        (F::State, &["Vuln Status", "Status"]),
    ],
    scale: Scale::Qualys,
    // `MM/DD/YYYY` and `M/D/YYYY H:MM` in every known export.
    day_first: false,
};

/// Qualys VMDR, QID- and CVE-centric variants. `Asset Id` is the stable asset identity;
/// `Asset IPV4` can be empty or a list.
pub(super) static QUALYS_VMDR: Spec = Spec {
    format: Format::QualysVmdr,
    required: &["QID", "Title", "Asset Id"],
    any_of: &[],
    columns: &[
        (F::Asset, &["Asset Id", "Asset IPV4", "Asset Name"]),
        (F::CheckId, &["QID"]),
        (F::Port, &["Port"]),
        (F::Protocol, &["Protocol"]),
        (F::Cves, &["CVE", "CVE ID"]),
        (F::Severity, &["Severity", "KB Severity"]),
        (F::Cvss, &["CVSSv3.1 Base (nvd)", "CVSS3.1 Base", "CVSSv3 Base", "CVSSv2 Base (nvd)"]),
        (F::Title, &["Title"]),
        (F::Description, &["Threat", "CVE-Description"]),
        (F::Solution, &["Solution"]),
        (F::Output, &["Results"]),
        (F::FirstSeen, &["First Detected"]),
        (F::LastSeen, &["Last Detected"]),
        (F::State, &["Status"]),
    ],
    scale: Scale::Qualys,
    day_first: false,
};

/// Qualys PCI / HackerGuardian. `SEVERITY` is a word or letter (H/M/L), `Q_SEVERITY` the
/// Qualys 1-5 level; `LAST SCAN` is ISO or `DD/MM/YYYY HH:MM`.
pub(super) static QUALYS_PCI: Spec = Spec {
    format: Format::QualysPci,
    required: &["IP", "QID", "VULN TITLE"],
    any_of: &[],
    columns: &[
        (F::Asset, &["IP", "HOSTNAME"]),
        (F::CheckId, &["QID"]),
        (F::Port, &["PORT"]),
        (F::Protocol, &["PROTOCOL"]),
        (F::Cves, &["CVEID"]),
        (F::Severity, &["SEVERITY", "Q_SEVERITY"]),
        (F::Cvss, &["CVSS_BASE"]),
        (F::Title, &["VULN TITLE"]),
        (F::Description, &["THREAT"]),
        (F::Solution, &["SOLUTION"]),
        (F::Output, &["RESULT"]),
        (F::LastSeen, &["LAST SCAN"]),
    ],
    scale: Scale::Qualys,
    day_first: true,
};
