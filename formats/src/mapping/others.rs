//! SAINT, Rapid7 InsightVM and hexflow's generic format.

use super::{Field as F, Scale, Spec};
use crate::format::Format;

/// SAINT. `CVEs` holds HTML anchors, so the plain copy `Plain CVEs` is used. There is no
/// numeric port: port is 0 and the protocol is the `Service` name (see `row.rs`).
pub(super) static SAINT: Spec = Spec {
    format: Format::Saint,
    required: &["IP Address", "Vulnerability Check ID", "Severity Level"],
    any_of: &[],
    columns: &[
        (F::Asset, &["IP Address", "Hostname"]),
        (F::CheckId, &["Vulnerability Check ID"]),
        (F::Protocol, &["Service"]),
        (F::Cves, &["Plain CVEs"]),
        (F::Severity, &["Severity Level"]),
        (F::Cvss, &["CVSSv3 Score", "CVSS Score"]),
        (F::Title, &["Description"]),
        // SAINT's `Severity` is free text naming the impact ("root shell access").
        (F::Description, &["Severity"]),
        (F::FirstSeen, &["First Detected"]),
        (F::LastSeen, &["Last Detected"]),
    ],
    scale: Scale::Cvss,
    day_first: false,
};

/// Rapid7 InsightVM / Nexpose CSV export (built from the documented columns; no public
/// sample exists). Result codes not starting with `v` mean "not vulnerable" (see `row.rs`).
pub(super) static RAPID7: Spec = Spec {
    format: Format::Rapid7,
    required: &["Asset IP Address", "Vulnerability ID"],
    any_of: &[],
    columns: &[
        (F::Asset, &["Asset IP Address", "Asset Names", "Hostname(s)"]),
        (F::CheckId, &["Vulnerability ID"]),
        (F::Port, &["Service Port"]),
        (F::Protocol, &["Service Protocol", "Protocol"]),
        (F::Cves, &["Vulnerability CVE IDs"]),
        (F::Severity, &["Vulnerability Severity Level"]),
        (F::Cvss, &["Vulnerability CVSSv3 Score", "Vulnerability CVSS Score"]),
        (F::Title, &["Vulnerability Title"]),
        (F::Description, &["Vulnerability Description"]),
        (F::Solution, &["Vulnerability Solution"]),
        (F::Output, &["Vulnerability Proof"]),
        (F::FirstSeen, &["Vulnerable Since"]),
        (F::LastSeen, &["Vulnerability Test Date"]),
        (F::State, &["Vulnerability Test Result Code"]),
    ],
    scale: Scale::Rapid7,
    day_first: false,
};

/// hexflow's generic CSV, specified in `docs/formats.md`.
pub(super) static GENERIC: Spec = Spec {
    format: Format::Generic,
    required: &["asset", "check_id", "title", "severity"],
    any_of: &[],
    columns: &[
        (F::Asset, &["asset"]),
        (F::CheckId, &["check_id"]),
        (F::Port, &["port"]),
        (F::Protocol, &["protocol"]),
        (F::Cves, &["cves"]),
        (F::Severity, &["severity"]),
        (F::Cvss, &["cvss"]),
        (F::Vpr, &["vpr"]),
        (F::Title, &["title"]),
        (F::Description, &["description"]),
        (F::Solution, &["solution"]),
        (F::Output, &["output"]),
        (F::FirstSeen, &["first_seen"]),
        (F::LastSeen, &["last_seen"]),
        (F::State, &["state"]),
    ],
    scale: Scale::ZeroToFour,
    day_first: false,
};
