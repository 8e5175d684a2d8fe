//! Greenbone family: OpenVAS/Greenbone "CSV Results" and RapidFire VulScan.

use super::{Field as F, Scale, Spec};
use crate::format::Format;

/// Greenbone "CSV Results" (25, 26 with `QoD`, 28 with EPSS columns). The CVE scanner puts
/// a CVE id in `NVT OID`; that id is also added to the CVE list (see `row.rs`).
pub(super) static GREENBONE: Spec = Spec {
    format: Format::Greenbone,
    required: &["IP", "NVT OID", "NVT Name"],
    any_of: &[],
    columns: &[
        (F::Asset, &["IP", "Hostname"]),
        (F::CheckId, &["NVT OID"]),
        (F::Port, &["Port"]),
        (F::Protocol, &["Port Protocol"]),
        (F::Cves, &["CVEs"]),
        (F::Severity, &["Severity"]),
        (F::Cvss, &["CVSS"]),
        (F::Title, &["NVT Name"]),
        (F::Description, &["Summary"]),
        (F::Solution, &["Solution"]),
        (F::Output, &["Specific Result"]),
        (F::LastSeen, &["Timestamp"]),
    ],
    scale: Scale::Cvss,
    day_first: false,
};

/// RapidFire VulScan. `Ports` (`2083/tcp,2087/tcp`, `0/NA`) gives one finding per port, and
/// the CVSS score is only written inside `Issue` (`... (CVSS: 8.6)`); see `row.rs`.
pub(super) static RAPIDFIRE: Spec = Spec {
    format: Format::RapidFire,
    required: &["IP Address", "OID", "Issue", "Ports"],
    any_of: &[],
    columns: &[
        (F::Asset, &["IP Address", "Hostname"]),
        (F::CheckId, &["OID"]),
        (F::Port, &["Ports"]),
        (F::Cves, &["CVE"]),
        (F::Severity, &["Severity"]),
        (F::Title, &["Issue"]),
        (F::Description, &["Summary"]),
        (F::Solution, &["Solution"]),
        (F::Output, &["Vulnerability Detection Result"]),
        (F::LastSeen, &["Last Detected"]),
    ],
    scale: Scale::Cvss,
    day_first: true,
};
