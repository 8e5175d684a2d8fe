//! Turning one CSV record into [`Finding`]s with a format's mapping table.

use csv::ByteRecord;

use crate::dates::parse_date;
use crate::error::RowError;
use crate::format::Format;
use crate::mapping::{Field, Resolved, Spec};
use crate::normalize::{
    clean_solution, normalize_protocol, parse_cves, parse_port, parse_port_list, parse_score, parse_severity,
    severity_from_cvss,
};
use crate::realign;

/// One finding, normalised to the same shape for every format.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// The asset identity (trimmed, non-empty); which column it comes from is per format.
    pub asset: String,
    /// Plugin id / NVT OID / QID / check id / vulnerability id (trimmed, non-empty).
    pub check_id: String,
    /// 0 for host-level findings, else 1..=65535.
    pub port: i32,
    /// Lower-case protocol (`tcp`, `udp`, `http`, SAINT service name); "" when none.
    pub protocol: String,
    /// Upper-case `CVE-YYYY-NNNN` ids, deduplicated and sorted.
    pub cves: Vec<String>,
    /// 0 info, 1 low, 2 medium, 3 high, 4 critical.
    pub severity: u8,
    /// Best available CVSS base score (v3 preferred), 0.0..=10.0.
    pub cvss: Option<f32>,
    /// Tenable VPR, 0.0..=10.0.
    pub vpr: Option<f32>,
    /// Finding title (verbatim; formula-like cells are never altered).
    pub title: String,
    /// Description (verbatim).
    pub description: String,
    /// Solution (verbatim; the `n/a` sentinel becomes "").
    pub solution: String,
    /// Plugin output / specific result / proof (verbatim).
    pub output: String,
    /// First seen, RFC 3339, when the format has it and it parses.
    pub first_seen: Option<String>,
    /// Last seen, RFC 3339, when the format has it and it parses.
    pub last_seen: Option<String>,
    /// The scanner itself says the finding is fixed / not vulnerable.
    pub fixed: bool,
}

/// One data record, mapped.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// Usually one finding; RapidFire `Ports` lists give one per port.
    Findings(Vec<Finding>),
    /// A blank or all-empty record: skipped, not an error.
    Blank {
        /// 1-based physical line of the record.
        line: u64,
    },
    /// A record that cannot be imported: skipped and reported; the import goes on.
    Invalid(RowError),
}

/// Maps records of one file, whose header has been resolved against a format's table.
pub(crate) struct Mapper {
    pub spec: &'static Spec,
    pub resolved: Resolved,
    pub max_field: usize,
}

/// The cells of one record, looked up by field.
struct Cells<'a> {
    rec: &'a ByteRecord,
    mapper: &'a Mapper,
    line: u64,
}

impl Cells<'_> {
    /// The first non-empty cell among `field`'s candidate columns ("" if none).
    fn get(&self, field: Field) -> Result<&str, RowError> {
        for &idx in self.mapper.resolved.of(field) {
            let bytes = self.rec.get(idx).unwrap_or(b"");
            let s = std::str::from_utf8(bytes).map_err(|e| {
                let lossy = String::from_utf8_lossy(bytes);
                let expected = format!("UTF-8 text (invalid byte at offset {})", e.valid_up_to());
                self.error(idx, &lossy, "INVALID_ENCODING", expected)
            })?;
            if !s.trim().is_empty() {
                return Ok(s);
            }
        }
        Ok("")
    }

    /// The name to blame for `field`: its first column present in the header, else its
    /// first candidate name.
    fn column(&self, field: Field) -> String {
        match self.mapper.resolved.of(field).first() {
            Some(&idx) => self.mapper.resolved.column_name(idx),
            None => (self.mapper.spec.columns.iter())
                .find(|(f, _)| *f == field)
                .and_then(|(_, c)| c.first())
                .map_or_else(|| format!("{field:?}"), |c| (*c).to_owned()),
        }
    }

    fn error(&self, idx: usize, value: &str, code: &'static str, expected: String) -> RowError {
        RowError::new(self.line, self.mapper.resolved.column_name(idx), value, code, expected)
    }

    fn field_error(&self, field: Field, value: &str, code: &'static str, expected: &str) -> RowError {
        RowError::new(self.line, self.column(field), value, code, expected)
    }
}

impl Mapper {
    /// Maps one record that starts at physical `line`.
    pub(crate) fn map(&self, rec: &ByteRecord, line: u64) -> Row {
        if rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            return Row::Blank { line };
        }
        let cells = Cells { rec, mapper: self, line };
        for (idx, f) in rec.iter().enumerate() {
            if f.len() > self.max_field {
                let value = String::from_utf8_lossy(&f[..f.len().min(800)]).into_owned();
                let expected = format!("a cell of at most {} bytes (it has {})", self.max_field, f.len());
                return Row::Invalid(cells.error(idx, &value, "FIELD_TOO_LONG", expected));
            }
        }
        let width = self.resolved.named_width();
        if let Some(last) = realign::spill(rec, width) {
            let output_col = self.resolved.of(Field::Output).first().copied();
            if let (Format::RapidFire, Some(col)) = (self.spec.format, output_col) {
                let fixed = realign::join_cells(rec, col, last + 1 - width);
                let cells = Cells { rec: &fixed, mapper: self, line };
                return match self.build(&cells) {
                    Ok(findings) => Row::Findings(findings),
                    Err(e) => Row::Invalid(e),
                };
            }
            let value = String::from_utf8_lossy(&rec[last]).into_owned();
            let expected = format!(
                "no cells right of the last named column \"{}\" (cell {} is not empty)",
                self.resolved.column_name(width.saturating_sub(1)),
                last + 1
            );
            return Row::Invalid(cells.error(last, &value, "WRONG_FIELD_COUNT", expected));
        }
        match self.build(&cells) {
            Ok(findings) => Row::Findings(findings),
            Err(e) => Row::Invalid(e),
        }
    }

    fn build(&self, c: &Cells<'_>) -> Result<Vec<Finding>, RowError> {
        let format = self.spec.format;
        let asset = c.get(Field::Asset)?.trim().to_owned();
        if asset.is_empty() {
            return Err(c.field_error(Field::Asset, "", "MISSING_VALUE", "a non-empty asset (host, IP or asset id)"));
        }
        let title = c.get(Field::Title)?.to_owned();
        let mut check_id = c.get(Field::CheckId)?.trim().to_owned();
        if check_id.is_empty() && format == Format::Nessus && !title.trim().is_empty() {
            // Nessus exports without `Plugin ID` (the `dati.csv` variant): key on the name.
            check_id = format!("name:{}", title.trim());
        }
        if check_id.is_empty() {
            return Err(c.field_error(Field::CheckId, "", "MISSING_VALUE", "a non-empty check / plugin id"));
        }

        let score = |field: Field| -> Result<Option<f32>, RowError> {
            let v = c.get(field)?;
            parse_score(v).map_err(|()| c.field_error(field, v, "INVALID_NUMBER", "a score from 0.0 to 10.0, e.g. 7.5"))
        };
        let mut cvss = score(Field::Cvss)?;
        if cvss.is_none() && format == Format::RapidFire {
            cvss = cvss_in_title(&title);
        }
        let vpr = score(Field::Vpr)?;

        let sev_cell = c.get(Field::Severity)?;
        let severity = if sev_cell.trim().is_empty() {
            if format == Format::Generic {
                return Err(c.field_error(Field::Severity, "", "MISSING_VALUE", SEVERITY_EXPECTED));
            }
            cvss.map_or(0, severity_from_cvss)
        } else {
            parse_severity(sev_cell, self.spec.scale)
                .ok_or_else(|| c.field_error(Field::Severity, sev_cell, "INVALID_SEVERITY", SEVERITY_EXPECTED))?
        };

        let mut cves = parse_cves(c.get(Field::Cves)?);
        if format == Format::Greenbone && !parse_cves(&check_id).is_empty() && cves.is_empty() {
            // The Greenbone CVE scanner writes the CVE id where the NVT OID goes.
            cves = parse_cves(&check_id);
        }

        let state = c.get(Field::State)?.trim();
        let fixed = match format {
            Format::Generic => match state.to_ascii_lowercase().as_str() {
                "" | "open" => false,
                "fixed" => true,
                _ => return Err(c.field_error(Field::State, state, "INVALID_VALUE", "open or fixed")),
            },
            // Rapid7 result codes: vv/ve/vp… are vulnerable; any other code is not.
            Format::Rapid7 => !state.is_empty() && !state.starts_with(['v', 'V']),
            _ => state.eq_ignore_ascii_case("fixed"),
        };

        let mut output = c.get(Field::Output)?;
        if format == Format::TenableSc
            && let Some(rest) = output.strip_prefix("Plugin Output:")
        {
            output = rest.trim_start();
        }

        let protocol = normalize_protocol(c.get(Field::Protocol)?);
        let port_cell = c.get(Field::Port)?;
        let port_err =
            |v: &str| c.field_error(Field::Port, v, "INVALID_PORT", "an integer port 0-65535 (or port/protocol)");
        let ports: Vec<(i32, Option<String>)> = if format == Format::RapidFire {
            parse_port_list(port_cell).map_err(|item| port_err(&item))?
        } else {
            vec![parse_port(port_cell).map_err(|()| port_err(port_cell))?]
        };

        let day_first = self.spec.day_first;
        let base = Finding {
            line: c.line,
            asset,
            check_id,
            port: 0,
            protocol: String::new(),
            cves,
            severity,
            cvss,
            vpr,
            title,
            description: c.get(Field::Description)?.to_owned(),
            solution: clean_solution(c.get(Field::Solution)?),
            output: output.to_owned(),
            first_seen: parse_date(c.get(Field::FirstSeen)?, day_first),
            last_seen: parse_date(c.get(Field::LastSeen)?, day_first),
            fixed,
        };
        Ok(ports
            .into_iter()
            .map(|(port, port_proto)| Finding {
                port,
                protocol: match port_proto {
                    Some(p) if protocol.is_empty() => p,
                    _ => protocol.clone(),
                },
                ..base.clone()
            })
            .collect())
    }
}

const SEVERITY_EXPECTED: &str = "info, low, medium, high or critical (or the format's numeric level)";

/// RapidFire writes the score only in the title: `Apache Tomcat ... (CVSS: 8.6)`.
fn cvss_in_title(title: &str) -> Option<f32> {
    let start = title.rfind("(CVSS:")? + "(CVSS:".len();
    let end = title[start..].find(')')? + start;
    parse_score(&title[start..end]).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::cvss_in_title;

    #[test]
    fn rapidfire_score_comes_from_the_title() {
        assert_eq!(cvss_in_title("Tomcat EOL (CVSS: 10)"), Some(10.0));
        assert_eq!(cvss_in_title("Mix-up (May 2022) - Windows (CVSS: 8.6)"), Some(8.6));
        assert_eq!(cvss_in_title("No score"), None);
    }
}
