//! Normalisation of single cells: severities, scores, ports, protocols, CVE lists.

use crate::mapping::Scale;

/// Cells that mean "no value" in some export (`null` in Tenable VPR, `-` in HackerGuardian,
/// `'-` when a spreadsheet escaped the dash, `N/A` in Tenable.sc dates).
pub(crate) fn is_none_sentinel(s: &str) -> bool {
    let s = s.trim();
    s.is_empty() || ["-", "'-", "null", "n/a", "na", "none", "nocve", "--"].iter().any(|x| s.eq_ignore_ascii_case(x))
}

/// Severity from a CVSS-like 0.0..=10.0 score, with the CVSS v3 bands.
pub(crate) fn severity_from_cvss(score: f32) -> u8 {
    match score {
        s if s <= 0.0 => 0,
        s if s < 4.0 => 1,
        s if s < 7.0 => 2,
        s if s < 9.0 => 3,
        _ => 4,
    }
}

/// Reads a severity cell: words and letters the same for every format, numbers on the
/// format's `scale`. Returns `None` when not understood.
pub(crate) fn parse_severity(s: &str, scale: Scale) -> Option<u8> {
    let w = s.trim().to_ascii_lowercase();
    let word = match w.as_str() {
        "none" | "info" | "informational" | "information" | "log" | "i" | "n" | "service" | "debug" => Some(0),
        "low" | "l" | "minimal" | "potential problem" => Some(1),
        "medium" | "med" | "m" | "moderate" | "area of concern" => Some(2),
        "high" | "h" | "serious" | "severe" => Some(3),
        "critical" | "c" | "urgent" | "critical problem" => Some(4),
        _ => None,
    };
    if word.is_some() {
        return word;
    }
    let n: f32 = w.parse().ok()?;
    if !n.is_finite() {
        return None;
    }
    match scale {
        Scale::ZeroToFour if (0.0..=4.0).contains(&n) && n.fract() == 0.0 => Some(n as u8),
        Scale::Qualys if (1.0..=5.0).contains(&n) && n.fract() == 0.0 => Some(n as u8 - 1),
        Scale::Rapid7 if (0.0..=10.0).contains(&n) => Some(severity_from_cvss(n)),
        Scale::Cvss if (0.0..=10.0).contains(&n) => Some(severity_from_cvss(n)),
        _ => None,
    }
}

/// Reads a 0.0..=10.0 score (CVSS, VPR). Sentinels give `Ok(None)`. Only the leading number
/// is read, so Qualys' `8.1 (AV:N/AC:H/...)` works; a decimal comma is accepted. A number
/// without a decimal separator in 10 < x <= 100 lost its separator in a spreadsheet round
/// trip (`50` for 5.0) and is divided by 10. `Err(())` when the value is not a score.
pub(crate) fn parse_score(s: &str) -> Result<Option<f32>, ()> {
    if is_none_sentinel(s) {
        return Ok(None);
    }
    let s = s.trim().trim_start_matches('\'');
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(s.len());
    let (num, rest) = s.split_at(end);
    if num.is_empty() || !(rest.is_empty() || rest.starts_with([' ', '('])) {
        return Err(());
    }
    let num = num.replace(',', ".");
    let mut v: f32 = num.parse().map_err(|_| ())?;
    if !num.contains('.') && v > 10.0 && v <= 100.0 {
        v /= 10.0;
    }
    if (0.0..=10.0).contains(&v) { Ok(Some(v)) } else { Err(()) }
}

/// Reads a port cell: empty/sentinel → 0, `443`, or `443/tcp` / `general/tcp` (which also
/// carry a protocol). `Err(())` for anything else or a number over 65535.
pub(crate) fn parse_port(s: &str) -> Result<(i32, Option<String>), ()> {
    let s = s.trim().trim_start_matches('\'');
    if is_none_sentinel(s) {
        return Ok((0, None));
    }
    let (num, proto) = match s.split_once('/') {
        Some((n, p)) => (n.trim(), Some(normalize_protocol(p))),
        None => (s, None),
    };
    let port = if num.eq_ignore_ascii_case("general") {
        0
    } else if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) && num.len() <= 5 {
        num.parse::<i32>().map_err(|_| ())?
    } else {
        return Err(());
    };
    if port > 65535 {
        return Err(());
    }
    Ok((port, proto))
}

/// Reads a RapidFire `Ports` list: ports separated by commas or spaces (`80/tcp, 443/tcp`),
/// each perhaps followed by its service name, in parentheses (`443/tcp (https)`) or bare
/// (`443/tcp https`). A service name labels the port before it and is dropped, so it never
/// turns a good list into an invalid row. An empty list is one host-level port (0).
/// `Err(item)` quotes the first comma-separated item that holds no port, or a token that is
/// neither a port nor a name (`70000/tcp`).
pub(crate) fn parse_port_list(s: &str) -> Result<Vec<(i32, Option<String>)>, String> {
    let mut ports = Vec::new();
    for item in s.split(',') {
        let (bare, labelled) = without_parenthesised(item);
        let mut named = labelled;
        let before = ports.len();
        for token in bare.split_whitespace() {
            match parse_port(token) {
                Ok(port) => ports.push(port),
                Err(()) if is_service_name(token) => named = true,
                Err(()) => return Err(token.to_owned()),
            }
        }
        if named && ports.len() == before {
            return Err(item.trim().to_owned());
        }
    }
    if ports.is_empty() {
        ports.push((0, None));
    }
    Ok(ports)
}

/// `item` without its `(...)` groups (an unclosed one runs to the end), and whether it had any.
fn without_parenthesised(item: &str) -> (String, bool) {
    let mut out = String::with_capacity(item.len());
    let (mut depth, mut had) = (0usize, false);
    for c in item.chars() {
        match c {
            '(' => {
                depth += 1;
                had = true;
                out.push(' ');
            }
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    (out, had)
}

/// A service name such as `https`, `ms-wbt-server` or `imaps`: letters, digits and `-_.+`,
/// with at least one letter (so a bad number is never taken for a name).
fn is_service_name(token: &str) -> bool {
    token.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        && token.chars().any(|c| c.is_ascii_alphabetic())
}

/// Lower-cased, trimmed protocol; sentinels (`-`, `NA`) become "".
pub(crate) fn normalize_protocol(s: &str) -> String {
    if is_none_sentinel(s) { String::new() } else { s.trim().trim_start_matches('\'').trim().to_lowercase() }
}

/// All CVE ids in a cell, upper-cased, deduplicated and sorted. Items may be separated by
/// commas, semicolons, whitespace or any other non-id character; anything that is not a
/// `CVE-YYYY-NNNN+` id (`NOCVE`, `-`, HTML) is ignored.
pub(crate) fn parse_cves(s: &str) -> Vec<String> {
    let mut out: Vec<String> = s
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter_map(|tok| {
            let t = tok.to_ascii_uppercase();
            let rest = t.strip_prefix("CVE-")?;
            let (year, seq) = rest.split_once('-')?;
            let ok = year.len() == 4
                && year.bytes().all(|b| b.is_ascii_digit())
                && seq.len() >= 4
                && seq.bytes().all(|b| b.is_ascii_digit());
            ok.then_some(t)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `n/a` (Nessus) means "no solution"; anything else is kept verbatim.
pub(crate) fn clean_solution(s: &str) -> String {
    if s.trim().eq_ignore_ascii_case("n/a") { String::new() } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_words_letters_and_scales() {
        let z = Scale::ZeroToFour;
        assert_eq!(parse_severity("None", z), Some(0));
        assert_eq!(parse_severity("high", z), Some(3));
        assert_eq!(parse_severity(" CRITICAL ", z), Some(4));
        assert_eq!(parse_severity("M", z), Some(2));
        assert_eq!(parse_severity("Log", Scale::Cvss), Some(0));
        assert_eq!(parse_severity("Critical Problem", Scale::Cvss), Some(4));
        assert_eq!(parse_severity("3", z), Some(3));
        assert_eq!(parse_severity("5", z), None);
        assert_eq!(parse_severity("1", Scale::Qualys), Some(0));
        assert_eq!(parse_severity("5", Scale::Qualys), Some(4));
        assert_eq!(parse_severity("0", Scale::Qualys), None);
        assert_eq!(parse_severity("3", Scale::Rapid7), Some(1));
        assert_eq!(parse_severity("7", Scale::Rapid7), Some(3));
        assert_eq!(parse_severity("10", Scale::Rapid7), Some(4));
        assert_eq!(parse_severity("6.5", Scale::Cvss), Some(2));
        assert_eq!(parse_severity("bad", z), None);
        assert_eq!(severity_from_cvss(0.0), 0);
        assert_eq!(severity_from_cvss(9.0), 4);
    }

    #[test]
    fn scores_and_the_locale_fix() {
        assert_eq!(parse_score("5.0"), Ok(Some(5.0)));
        assert_eq!(parse_score("50"), Ok(Some(5.0)));
        assert_eq!(parse_score("75"), Ok(Some(7.5)));
        assert_eq!(parse_score("100"), Ok(Some(10.0)));
        assert_eq!(parse_score("10"), Ok(Some(10.0)));
        assert_eq!(parse_score("5,3"), Ok(Some(5.3)));
        assert_eq!(parse_score("8.1 (AV:N/AC:H/PR:N)"), Ok(Some(8.1)));
        assert_eq!(parse_score("null"), Ok(None));
        assert_eq!(parse_score(""), Ok(None));
        assert_eq!(parse_score("55.5"), Err(()));
        assert_eq!(parse_score("3833"), Err(()));
        assert_eq!(parse_score("high"), Err(()));
    }

    #[test]
    fn ports_and_protocols() {
        assert_eq!(parse_port(""), Ok((0, None)));
        assert_eq!(parse_port("443"), Ok((443, None)));
        assert_eq!(parse_port("2083/tcp"), Ok((2083, Some("tcp".into()))));
        assert_eq!(parse_port("0/NA"), Ok((0, Some(String::new()))));
        assert_eq!(parse_port("general/tcp"), Ok((0, Some("tcp".into()))));
        assert_eq!(parse_port("70000"), Err(()));
        assert_eq!(parse_port("-1"), Err(()));
        assert_eq!(parse_port("http"), Err(()));
        assert_eq!(normalize_protocol(" TCP "), "tcp");
        assert_eq!(normalize_protocol("'-"), "");
    }

    #[test]
    fn port_lists_drop_service_names_and_keep_every_port() {
        let tcp = |p: i32| (p, Some("tcp".to_owned()));
        assert_eq!(parse_port_list("443 (https)"), Ok(vec![(443, None)]));
        assert_eq!(parse_port_list("80/tcp, 443/tcp (https)"), Ok(vec![tcp(80), tcp(443)]));
        assert_eq!(
            parse_port_list("22/tcp (ssh),3389/tcp (ms-wbt-server), 8443"),
            Ok(vec![tcp(22), tcp(3389), (8443, None)])
        );
        assert_eq!(parse_port_list("443/tcp https 80/tcp"), Ok(vec![tcp(443), tcp(80)]));
        assert_eq!(parse_port_list("2083/tcp,2087/tcp"), Ok(vec![tcp(2083), tcp(2087)]));
        assert_eq!(parse_port_list("443/tcp(https)"), Ok(vec![tcp(443)]));
        assert_eq!(parse_port_list("0/NA"), Ok(vec![(0, Some(String::new()))]));
        assert_eq!(parse_port_list(""), Ok(vec![(0, None)]));
        assert_eq!(parse_port_list("443 (https"), Ok(vec![(443, None)]));
    }

    #[test]
    fn port_lists_refuse_names_without_ports_and_bad_numbers() {
        assert_eq!(parse_port_list("https"), Err("https".to_owned()));
        assert_eq!(parse_port_list("80/tcp, (https)"), Err("(https)".to_owned()));
        assert_eq!(parse_port_list("80/tcp, 70000/tcp (x)"), Err("70000/tcp".to_owned()));
        assert_eq!(parse_port_list("80/tcp 99999"), Err("99999".to_owned()));
    }

    #[test]
    fn cve_lists() {
        assert_eq!(parse_cves("CVE-2021-31192, cve-2021-31188,CVE-2021-31192"), ["CVE-2021-31188", "CVE-2021-31192"]);
        assert_eq!(parse_cves("CVE-2020-1234; CVE-2019-12345 x"), ["CVE-2019-12345", "CVE-2020-1234"]);
        assert!(parse_cves("NOCVE").is_empty());
        assert!(parse_cves("").is_empty());
        assert!(parse_cves("CVE-20-1").is_empty());
        assert_eq!(parse_cves(r#"<a href="x?name=CVE-2024-31982">CVE-2024-31982</a>"#), ["CVE-2024-31982"]);
        assert_eq!(clean_solution("n/a"), "");
        assert_eq!(clean_solution("Upgrade."), "Upgrade.");
    }
}
