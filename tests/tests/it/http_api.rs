//! The HTTP API around imports: polling, history, row errors, ids, ops endpoints.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use hexflow_tests::{
    GatewayHandle, TestEnv, files,
    realtime::{TEST_SECRET, get_as, post_import_as, token},
};
use shared::{Status, config::Secret};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_answers_the_latest_event_and_the_history_lists_newest_first() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let rows = vec![files::Row::new(&format!("h{i}"), "C1", 80)];
        let id = gateway.upload_ok(files::generic_csv(&rows), &format!("scan{i}.csv"), &[]).await;
        env.wait_for_terminal(id, Duration::from_secs(30)).await;
        ids.push(id);
    }

    let (status, event) = gateway.get(&format!("/api/imports/{}", ids[0])).await;
    assert_eq!(status, 200);
    assert_eq!(event["status"], "completed");
    assert_eq!(event["summary"]["new"], 1);
    assert_eq!(event["metadata"]["filename"], "scan0.csv");

    let (status, page) = gateway.get("/api/imports?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["sessionId"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[2].to_string(), ids[1].to_string()]);
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let (_, rest) = gateway.get(&format!("/api/imports?limit=2&cursor={cursor}")).await;
    let listed: Vec<&str> =
        rest["items"].as_array().unwrap().iter().map(|i| i["sessionId"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[0].to_string()]);
    assert!(rest["nextCursor"].is_null());
    assert_eq!(rest["items"][0]["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_answer_gives_the_files_size_and_sha256_and_the_store_holds_it_compressed() {
    use sha2::{Digest, Sha256};
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let rows: Vec<files::Row> = (0..3000)
        .map(|i| files::Row { output: "x".repeat(500), ..files::Row::new(&format!("h{i}"), "C1", 80) })
        .collect();
    let bytes = files::generic_csv(&rows);
    assert!(bytes.len() > 1024 * 1024, "spans several chunks of the object store");
    let expected: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let (status, body) = gateway.upload(bytes.clone(), "scan.csv", &[]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["sha256"], expected.as_str());
    assert_eq!(body["sizeBytes"], bytes.len() as u64);

    // The store holds the file compressed: an ordinary reader of the object store (which checks
    // the object's size and digest) gets a zstd stream that decompresses to the file.
    let id = Uuid::parse_str(body["sessionId"].as_str().unwrap()).unwrap();
    let key = object_key(&env, id).await;
    let store = env.nats.uploads().await.unwrap();
    let info = store.info(&key).await.unwrap();
    assert!(info.size * 10 < bytes.len(), "{} bytes stored for a file of {}", info.size, bytes.len());
    assert_eq!(info.metadata.get(shared::compression::DECODED_SIZE_KEY), Some(&bytes.len().to_string()));
    let mut stored = Vec::new();
    store.get(&key).await.unwrap().read_to_end(&mut stored).await.unwrap();
    assert!(zstd::decode_all(stored.as_slice()).unwrap() == bytes, "the stored stream decompresses to the file");
    let metrics = reqwest::get(format!("{}/metrics", gateway.ops_base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("hexflow_upload_bytes_total {}", bytes.len())), "{metrics}");
    assert!(metrics.contains(&format!("hexflow_upload_stored_bytes_total {}", info.size)), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_stored_uncompressed_by_an_earlier_version_is_still_imported() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let rows: Vec<files::Row> = (0..2000)
        .map(|i| files::Row {
            output: format!("output {i} ").repeat(60),
            ..files::Row::new(&format!("h{i}"), "C1", 80)
        })
        .collect();
    let bytes = files::generic_csv(&rows);
    assert!(bytes.len() > 1024 * 1024, "spans several chunks of the object store");
    let id = gateway.upload_ok(bytes.clone(), "older.csv", &[]).await;
    // As gateways stored uploads before they were compressed: the object store's own put, the
    // file's bytes as the chunks, no encoding in the metadata.
    let key = object_key(&env, id).await;
    let store = env.nats.uploads().await.unwrap();
    store.put(key.as_str(), &mut bytes.as_slice()).await.unwrap();
    assert!(store.info(&key).await.unwrap().metadata.is_empty());

    let _worker = env.worker().await;
    let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(done.status, Status::Completed, "{:?}", done.error);
    assert_eq!(done.summary.expect("completed").new, 2000);
}

async fn object_key(env: &TestEnv, id: Uuid) -> String {
    sqlx::query_scalar("SELECT object_key FROM imports WHERE id = $1").bind(id).fetch_one(&env.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_get_clear_errors() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let (status, body) = gateway.get(&format!("/api/imports/{}", Uuid::now_v7())).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "SESSION_NOT_FOUND");
    let (status, body) = gateway.get("/api/imports/not-a-uuid").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "INVALID_REQUEST");
    let (status, body) = gateway.get("/api/imports?limit=5000").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_chosen_session_id_must_be_new() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let id = Uuid::now_v7().to_string();
    let bytes = files::generic_csv(&[files::Row::new("h1", "C1", 80)]);
    gateway.upload_ok(bytes.clone(), "a.csv", &[("sessionId", &id)]).await;
    let (status, body) = gateway.upload(bytes.clone(), "a.csv", &[("sessionId", &id)]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "SESSION_EXISTS");
    let (status, body) = gateway.upload(bytes, "a.csv", &[("sessionId", "nope")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(env.scalar("SELECT count(*) FROM imports").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_rows_are_listed_with_line_column_value_and_expectation() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let id = gateway.upload_ok(files::fixture("generic.csv"), "generic.csv", &[]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.summary.unwrap().validation_errors, 1);

    let (status, body) = gateway.get(&format!("/api/imports/{id}/errors")).await;

    assert_eq!(status, 200);
    let item = &body["items"][0];
    assert_eq!(item["line"], 5);
    assert_eq!(item["column"], "port");
    assert_eq!(item["value"], "70000");
    assert!(item["expected"].as_str().unwrap().contains("65535"), "{item}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer_on_the_ops_port_only() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let (status, body) = gateway.ops_get("/healthz").await;
    assert_eq!((status.as_u16(), body["status"].as_str()), (200, Some("ok")));
    let (status, body) = gateway.ops_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["postgres"]["ok"], true);
    let metrics = reqwest::get(format!("{}/metrics", gateway.ops_base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hexflow_uploads_accepted_total 0"), "{metrics}");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = gateway.get(path).await;
        assert_eq!(status, 404, "{path} is not served on the public port");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_context_travels_with_the_job_and_the_events() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(files::generic_csv(&[files::Row::new("h1", "C1", 80)])).file_name("t.csv"),
    );
    let response = reqwest::Client::new()
        .post(format!("{}/api/imports", gateway.base))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id: Uuid = response.json::<serde_json::Value>().await.unwrap()["sessionId"].as_str().unwrap().parse().unwrap();

    // No worker runs: the job is still in the work queue, with its headers.
    let jobs = env.nats.js.get_stream(shared::names::JOBS_STREAM).await.unwrap();
    let job = jobs.get_raw_message(1).await.unwrap();
    let header = job.headers.get("traceparent").expect("the job carries traceparent").as_str().to_owned();
    assert!(header.starts_with(&format!("00-{trace_id}-")), "{header}");
    assert!(!header.contains("00f067aa0ba902b7"), "the next hop has a span id of its own: {header}");
    let body: serde_json::Value = serde_json::from_slice(&job.payload).unwrap();
    assert_eq!(body["traceparent"].as_str(), Some(header.as_str()));
    assert_eq!(body["importId"], id.to_string());

    let progress = env.nats.js.get_stream(shared::names::PROGRESS_STREAM).await.unwrap();
    let snapshot = progress.get_last_raw_message_by_subject(&shared::names::progress_subject(id)).await.unwrap();
    assert!(snapshot.headers.get("traceparent").unwrap().as_str().contains(trace_id));
}

/// Imports `rows` as scanned on `scan_date` for the holder of `token`; waits until completed.
async fn scan_as(env: &TestEnv, gateway: &GatewayHandle, token: &str, rows: &[files::Row], scan_date: &str) {
    let form = reqwest::multipart::Form::new()
        .text("scanDate", scan_date.to_owned())
        .part("file", reqwest::multipart::Part::bytes(files::generic_csv(rows)).file_name("scan.csv"));
    let response = post_import_as(&gateway.base, token, form).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    let id = Uuid::parse_str(body["sessionId"].as_str().unwrap()).unwrap();
    assert_eq!(env.wait_for_terminal(id, Duration::from_secs(30)).await.status, Status::Completed);
}

/// `asset/check` of every finding the listing gives `token` for `filters`, page after page of one.
async fn listed_one_by_one(gateway: &GatewayHandle, token: &str, filters: &str) -> Vec<String> {
    let mut assets = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let url = format!("{}/api/findings?limit=1{filters}{cursor}", gateway.base);
        let (status, page) = get_as(&url, Some(token)).await;
        assert_eq!(status, 200, "{url}: {page}");
        let items = page["items"].as_array().unwrap();
        assets.extend(
            items.iter().map(|f| format!("{}/{}", f["asset"].as_str().unwrap(), f["checkId"].as_str().unwrap())),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return assets,
        }
    }
    panic!("more than 20 pages of {filters}: {assets:?}");
}

/// `asset/check` of `tenant`'s findings in `states` and `severities`, as plain SQL orders them.
async fn in_sql_order(env: &TestEnv, tenant: &str, states: &[&str], severities: &[i16]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT asset || '/' || check_id FROM vulnerabilities WHERE tenant = $1 AND state = ANY($2) AND severity = ANY($3)
         ORDER BY severity DESC, id DESC",
    )
    .bind(tenant)
    .bind(states)
    .bind(severities)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_are_paged_by_state_and_severity_and_only_to_their_tenant_when_tenants_hash_alike() {
    let env = TestEnv::start().await;
    let gateway = env.gateway_with(|c| c.auth.secret = Some(Secret(TEST_SECRET.into()))).await;
    let _worker = env.worker().await;
    // The page index starts with the tenant's hash; these two names share one.
    let (ours, theirs) = ("tenant-109551", "tenant-161554");
    let shared_hash = env.scalar(&format!("SELECT (hashtext('{ours}') = hashtext('{theirs}'))::int::int8")).await;
    assert_eq!(shared_hash, 1, "{ours} and {theirs} hash alike");
    let (ann, eve) = (token("ann", ours, false), token("eve", theirs, false));
    let row = |asset: &str, check: &str, severity| files::Row { severity, ..files::Row::new(asset, check, 443) };
    let week1 = [
        row("h1", "C1", "low"),
        row("h2", "C1", "critical"),
        row("h3", "C1", "high"),
        row("h1", "C2", "high"),
        row("h2", "C2", "info"),
    ];
    scan_as(&env, &gateway, &ann, &week1, "2026-01-01").await;
    // A week later C2 is gone from both hosts: resolved.
    scan_as(&env, &gateway, &ann, &week1[..3], "2026-01-08").await;
    let theirs_rows = [row("x1", "C1", "high"), row("x2", "C1", "critical"), row("x3", "C1", "high")];
    scan_as(&env, &gateway, &eve, &theirs_rows, "2026-01-01").await;

    let all = [0, 1, 2, 3, 4];
    for (token, tenant, filters, states, severities) in [
        (&ann, ours, "", &["open"][..], &all[..]),
        (&ann, ours, "&state=resolved", &["resolved"], &all),
        (&ann, ours, "&state=all", &["open", "resolved"], &all),
        (&ann, ours, "&state=all&severity=high,critical,high", &["open", "resolved"], &[3, 4]),
        (&ann, ours, "&state=all&severity=0,3", &["open", "resolved"], &[0, 3]),
        (&eve, theirs, "&state=all", &["open", "resolved"], &all),
    ] {
        let expected = in_sql_order(&env, tenant, states, severities).await;
        assert!(!expected.is_empty(), "{tenant} {filters}");
        assert_eq!(listed_one_by_one(&gateway, token, filters).await, expected, "{tenant} {filters}");
    }
    assert_eq!(listed_one_by_one(&gateway, &ann, "&state=resolved").await.len(), 2);
    assert_eq!(listed_one_by_one(&gateway, &eve, "").await.len(), 3, "each tenant sees its own findings only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_are_listed_most_severe_first_in_pages_that_follow_their_cursor() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let row = |asset: &str, severity| files::Row { severity, ..files::Row::new(asset, "C1", 443) };
    let rows = [row("h1", "low"), row("h2", "critical"), row("h3", "medium")];
    let id = gateway.upload_ok(files::generic_csv(&rows), "f.csv", &[]).await;
    assert_eq!(env.wait_for_terminal(id, Duration::from_secs(30)).await.status, Status::Completed);

    let (status, first) = gateway.get("/api/findings?limit=2").await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["nextCursor"].as_str().expect("a second page");
    let (status, rest) = gateway.get(&format!("/api/findings?limit=2&cursor={cursor}")).await;
    assert_eq!(status, 200, "{rest}");

    let listed: Vec<(&str, &str)> = [&first, &rest]
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap())
        .map(|f| (f["asset"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("h2", "critical"), ("h3", "medium"), ("h1", "low")]);
    assert!(rest["nextCursor"].is_null(), "{rest}");
    let finding = &first["items"][0];
    assert_eq!(finding["checkId"], "C1");
    assert_eq!(finding["title"], "Check C1 title");
    assert_eq!(finding["port"], 443);
    assert_eq!(finding["cvss"], 5.0);
    assert_eq!(finding["state"], "open");
    assert!(finding["firstSeen"].as_i64().is_some() && finding["lastSeen"].as_i64().is_some(), "{finding}");

    let (status, body) = gateway.get("/api/findings?cursor=3_x").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("pass back the nextCursor"), "{body}");
}
