//! `GET /api/findings`: the tenant's findings, most severe first, for the page's findings view.

use axum::{
    Json, Router,
    extract::{Query, State},
    routing::get,
};
use serde::{Deserialize, Serialize, Serializer};

use super::page::{Cursor, Page, PageQuery, Sizes};
use crate::{
    error::{ApiError, Result, StepExt},
    state::{AppState, Identity},
};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/findings", get(list_findings))
}

/// The filters of the listing (its paging is a [`PageQuery`]).
#[derive(Deserialize)]
struct FindingsQuery {
    /// `open` (default), `resolved` or `all`.
    state: Option<String>,
    /// Comma-separated severities to keep: `info,low,medium,high,critical` or 0–4.
    severity: Option<String>,
}

/// Page sizes of the listing.
const SIZES: Sizes = Sizes { default: 100, max: 500 };

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// One finding as the listing reads and shows it (fields in the byte order of their JSON names).
#[derive(sqlx::FromRow, Serialize)]
#[serde(rename_all = "camelCase")]
struct Finding {
    asset: String,
    check_id: String,
    cves: Vec<String>,
    /// Read as `float8`: the value as it has always been sent (a `real` widened).
    cvss: Option<f64>,
    /// ms since the epoch.
    first_seen: i64,
    id: i64,
    /// ms since the epoch.
    last_seen: i64,
    port: i32,
    protocol: String,
    scanner: String,
    /// 0–4 in the table, its name on the wire.
    #[serde(serialize_with = "severity_name")]
    severity: i16,
    state: String,
    /// The check's title, or its id when the scanner gave none.
    title: String,
}

fn severity_name<S: Serializer>(severity: &i16, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(SEVERITIES[(*severity).clamp(0, 4) as usize])
}

fn parse_severities(raw: Option<&str>) -> Result<Vec<i16>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else { return Ok(vec![0, 1, 2, 3, 4]) };
    raw.split(',')
        .map(|s| {
            let s = s.trim().to_lowercase();
            SEVERITIES
                .iter()
                .position(|n| *n == s)
                .map(|i| i as i16)
                .or_else(|| s.parse().ok().filter(|n| (0..=4).contains(n)))
        })
        .collect::<Option<Vec<i16>>>()
        .map(|mut severities| {
            severities.sort_unstable();
            severities.dedup();
            severities
        })
        .ok_or_else(|| ApiError::BadRequest {
            message: format!("severity {raw:?} is not understood; expected a comma list of {}", SEVERITIES.join(", ")),
        })
}

async fn list_findings(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<FindingsQuery>,
    Query(paging): Query<PageQuery>,
) -> Result<Json<Page<Finding>>> {
    let open: &[bool] = match query.state.as_deref().unwrap_or("open") {
        "open" => &[true],
        "resolved" => &[false],
        "all" => &[true, false],
        other => {
            return Err(ApiError::BadRequest {
                message: format!("state {other:?} is unknown; expected open, resolved or all"),
            });
        }
    };
    let severities = parse_severities(query.severity.as_deref())?;
    let window = paging.window(SIZES, Cursor(i16::MAX, i64::MAX))?;
    // One short scan of the page index per (state, severity) asked for, each newest first from
    // the cursor on, merged: a page costs the same however many findings the tenant has.
    let rows: Vec<Finding> = sqlx::query_as(
        "SELECT v.id, v.scanner, v.asset, v.check_id, v.port, v.protocol, v.cves, v.severity, v.cvss::float8 AS cvss,
                coalesce(c.title, v.check_id) AS title, v.state,
                (extract(epoch FROM v.first_seen) * 1000)::bigint AS first_seen,
                (extract(epoch FROM v.last_seen) * 1000)::bigint AS last_seen
         FROM (SELECT f.*
               FROM unnest($2::bool[]) AS o(open)
               CROSS JOIN unnest($3::int2[]) AS s(severity)
               CROSS JOIN LATERAL (
                   SELECT * FROM vulnerabilities v
                   WHERE hashtext(v.tenant) = hashtext($1) AND v.tenant = $1
                     AND (v.state = 'open') = o.open AND v.severity = s.severity
                     AND v.id < CASE WHEN s.severity = $4 THEN $5 ELSE 9223372036854775807 END
                   ORDER BY v.id DESC
                   LIMIT $6) f
               WHERE s.severity <= $4
               ORDER BY f.severity DESC, f.id DESC
               LIMIT $6) v
         LEFT JOIN scanner_checks c ON c.scanner = v.scanner AND c.check_id = v.check_id
         ORDER BY v.severity DESC, v.id DESC",
    )
    .bind(&identity.tenant)
    .bind(open)
    .bind(&severities)
    .bind(window.before.0)
    .bind(window.before.1)
    .bind(window.fetch())
    .fetch_all(&state.db)
    .await
    .step("listing findings")?;
    Ok(Json(window.page(rows, |f| Cursor(f.severity, f.id), |f| f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_is_sent_as_the_sorted_json_it_always_was() {
        let finding = Finding {
            asset: "h1".into(),
            check_id: "C1".into(),
            cves: vec!["CVE-2024-1".into()],
            cvss: Some(f64::from(9.8_f32)),
            first_seen: 1,
            id: 7,
            last_seen: 2,
            port: 443,
            protocol: "tcp".into(),
            scanner: "generic".into(),
            severity: 9,
            state: "open".into(),
            title: "T".into(),
        };
        let typed = serde_json::to_string(&finding).unwrap();
        let as_value = serde_json::to_value(&finding).unwrap().to_string();
        assert_eq!(typed, as_value, "fields in the byte order of their names");
        assert!(typed.contains(r#""cvss":9.800000190734863"#) && typed.contains(r#""severity":"critical""#), "{typed}");
    }
}
