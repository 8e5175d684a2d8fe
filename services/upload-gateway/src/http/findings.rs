//! `GET /api/findings`: the tenant's findings, most severe first, for the page's findings view.

use axum::{
    Json, Router,
    extract::{Query, State},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    error::{ApiError, Result, StepExt},
    state::{AppState, Identity},
};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/findings", get(list_findings))
}

#[derive(Deserialize)]
struct FindingsQuery {
    /// `open` (default), `resolved` or `all`.
    state: Option<String>,
    /// Comma-separated severities to keep: `info,low,medium,high,critical` or 0–4.
    severity: Option<String>,
    /// Page size, 1–500 (default 100).
    limit: Option<i64>,
    /// From the previous page's `nextCursor`.
    cursor: Option<String>,
}

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

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
        .ok_or_else(|| ApiError::BadRequest {
            message: format!("severity {raw:?} is not understood; expected a comma list of {}", SEVERITIES.join(", ")),
        })
}

async fn list_findings(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<FindingsQuery>,
) -> Result<Json<Value>> {
    let states: &[&str] = match query.state.as_deref().unwrap_or("open") {
        "open" => &["open"],
        "resolved" => &["resolved"],
        "all" => &["open", "resolved"],
        other => {
            return Err(ApiError::BadRequest {
                message: format!("state {other:?} is unknown; expected open, resolved or all"),
            });
        }
    };
    let severities = parse_severities(query.severity.as_deref())?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest { message: format!("limit {limit} is out of range; expected 1 to 500") });
    }
    let (before_severity, before_id) = match query.cursor.as_deref() {
        None | Some("") => (i16::MAX, i64::MAX),
        Some(c) => c.split_once('_').and_then(|(s, i)| Some((s.parse().ok()?, i.parse().ok()?))).ok_or_else(|| {
            ApiError::BadRequest {
                message: format!("cursor {c:?} is malformed; pass back the previous page's nextCursor"),
            }
        })?,
    };
    type FindingRow =
        (i64, String, String, String, i32, String, Vec<String>, i16, Option<f32>, String, String, i64, i64);
    let rows: Vec<FindingRow> = sqlx::query_as(
        "SELECT v.id, v.scanner, v.asset, v.check_id, v.port, v.protocol, v.cves, v.severity, v.cvss,
                coalesce(c.title, v.check_id), v.state,
                (extract(epoch FROM v.first_seen) * 1000)::bigint, (extract(epoch FROM v.last_seen) * 1000)::bigint
         FROM vulnerabilities v
         LEFT JOIN scanner_checks c ON c.scanner = v.scanner AND c.check_id = v.check_id
         WHERE v.tenant = $1 AND v.state = ANY($2) AND v.severity = ANY($3)
           AND (v.severity, v.id) < ($4, $5)
         ORDER BY v.severity DESC, v.id DESC
         LIMIT $6",
    )
    .bind(&identity.tenant)
    .bind(states)
    .bind(&severities)
    .bind(before_severity)
    .bind(before_id)
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await
    .step("listing findings")?;
    let has_more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let items: Vec<Value> = rows
        .iter()
        .map(|(id, scanner, asset, check_id, port, protocol, cves, severity, cvss, title, state, first, last)| {
            json!({
                "id": id, "scanner": scanner, "asset": asset, "checkId": check_id, "port": port, "protocol": protocol,
                "cves": cves, "severity": SEVERITIES[(*severity).clamp(0, 4) as usize], "cvss": cvss, "title": title,
                "state": state, "firstSeen": first, "lastSeen": last,
            })
        })
        .collect();
    let next_cursor = if has_more { rows.last().map(|r| format!("{}_{}", r.7, r.0)) } else { None };
    Ok(Json(json!({ "items": items, "nextCursor": next_cursor })))
}
