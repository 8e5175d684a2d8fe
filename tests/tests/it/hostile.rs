//! Hostile clients of the upload gateway (authentication on): every input has a bound checked
//! before it is buffered, stored or echoed; the gateway stays responsive meanwhile (`/healthz` on
//! the ops port answers within a second); and nothing is left behind (no chunk in the uploads
//! bucket, no `imports` row, no staging table, no job without its row).

use std::time::{Duration, Instant};

use hexflow_tests::{
    TestEnv, files,
    realtime::{TEST_SECRET, post_import_as, token},
    stack::GatewayHandle,
};
use serde_json::Value;
use shared::{config::Secret, names};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const BOUNDARY: &str = "hexflow-hostile-boundary";

async fn secured_gateway(env: &TestEnv, adjust: impl FnOnce(&mut upload_gateway::Config)) -> GatewayHandle {
    env.gateway_with(|c| {
        c.auth.secret = Some(Secret(TEST_SECRET.into()));
        adjust(c);
    })
    .await
}

/// Waits (bounded) until no chunk, no row, no staging table and no job is left.
async fn assert_nothing_left(env: &TestEnv) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let chunks = env.upload_chunks().await;
        let rows = env.scalar("SELECT count(*) FROM imports").await;
        let staging = env.scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'import_staging_%' AND tablename <> 'import_staging_template'").await;
        let jobs = env.nats.js.get_stream(names::JOBS_STREAM).await.unwrap().info().await.unwrap().state.messages;
        if (chunks, rows, staging, jobs) == (0, 0, 0, 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {chunks} chunks, {rows} rows, {staging} staging tables, {jobs} jobs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_responsive(gateway: &GatewayHandle) {
    let answered = tokio::time::timeout(Duration::from_secs(1), gateway.ops_get("/healthz")).await;
    assert!(matches!(&answered, Ok((status, _)) if status.as_u16() == 200), "/healthz did not answer in 1 s");
}

/// A CSV of about `bytes` bytes in the generic format.
fn csv_of(bytes: usize) -> Vec<u8> {
    let rows: Vec<files::Row> =
        (0..bytes / 40).map(|i| files::Row::new(&format!("host-{i}.example"), "CHK-1", 443)).collect();
    files::generic_csv(&rows)
}

/// A CSV of about `bytes` whose rows carry random hex outputs: it compresses about twofold, not
/// tenfold as scan exports do.
fn noisy_csv_of(bytes: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let rows: Vec<files::Row> = (0..bytes / 110)
        .map(|i| {
            let output: String = (0..4)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    format!("{state:016x}")
                })
                .collect();
            files::Row { output, ..files::Row::new(&format!("host-{i}.example"), "CHK-1", 443) }
        })
        .collect();
    files::generic_csv(&rows)
}

/// Sends `head` + `body` on a raw connection while reading the answer (status, JSON body, bytes
/// received): the server may answer, and close, before it has read everything, which is the point.
async fn raw_exchange(gateway: &GatewayHandle, head: &str, body: Vec<u8>) -> (u16, Value, usize) {
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let head = head.as_bytes().to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&head).await;
        for piece in body.chunks(64 * 1024) {
            if write.write_all(piece).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let json = body.find('{').and_then(|start| serde_json::from_str(&body[start..=body.rfind('}')?]).ok());
    (status, json.unwrap_or(Value::Null), answer.len())
}

fn head(gateway: &GatewayHandle, extra: &str) -> String {
    format!(
        "POST /api/imports HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nConnection: close\r\n{extra}\r\n",
        gateway.addr,
        token("ann", "acme", false)
    )
}

fn text_part(name: &str, value: &str) -> String {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
}

fn file_part_head(filename: &str) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: text/csv\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_filename_is_refused_before_the_file_is_stored_and_names_are_normalised() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |_| {}).await;
    let csv = csv_of(2 * 1024 * 1024);
    // A name past 255 characters, and one past the bound on a part's headers (16 KiB), which the
    // parser would otherwise buffer whole: both refused with a short answer, nothing stored.
    for (name_bytes, says) in [(4 * 1024, "longer than 255"), (2 * 1024 * 1024, "longer than 16384 bytes")] {
        let long_name = format!("{}.csv", "n".repeat(name_bytes));
        let mut body = file_part_head(&long_name).into_bytes();
        body.extend_from_slice(&csv);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());

        let request = head(&gateway, &format!("Content-Length: {}\r\n", body.len()));
        let ((status, answer, size), ()) = tokio::join!(raw_exchange(&gateway, &request, body), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_responsive(&gateway).await;
        });

        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "INVALID_REQUEST");
        assert!(answer["error"]["message"].as_str().unwrap().contains(says), "{answer}");
        assert!(size < 2048, "the answer quotes a short prefix only ({size} bytes)");
        assert_nothing_left(&env).await;
    }

    // A name with a path, controls and a direction override is stored as its plain last component.
    let ann = token("ann", "acme", false);
    let id = uuid::Uuid::now_v7();
    let (status, body) =
        hexflow_tests::realtime::upload_as(&gateway.base, &ann, csv_of(1000), "../../etc/scan\u{202E}vsc.csv", id)
            .await;
    assert_eq!(status, 202, "{body}");
    let stored: String =
        sqlx::query_scalar("SELECT filename FROM imports WHERE id = $1").bind(id).fetch_one(&env.db).await.unwrap();
    assert_eq!(stored, "scanvsc.csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_form_field_is_refused_after_its_first_bytes_and_not_echoed() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |_| {}).await;
    // 8 MB of scanDate, chunked, so no Content-Length warns the gateway.
    let opening = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"scanDate\"\r\n\r\n");
    let mut body = format!("{:x}\r\n{opening}\r\n", opening.len()).into_bytes();
    let chunk = vec![b'9'; 64 * 1024];
    for _ in 0..128 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    let started = Instant::now();
    let chunked = head(&gateway, "Transfer-Encoding: chunked\r\n");
    let ((status, answer, size), ()) = tokio::join!(raw_exchange(&gateway, &chunked, body), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_responsive(&gateway).await;
    });

    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("longer than 256 bytes"), "{answer}");
    assert!(size < 2048, "the answer does not echo the field ({size} bytes)");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_nothing_left(&env).await;

    // Fields are counted too: a second sessionId is refused before its database lookup.
    let mut many = String::new();
    for _ in 0..2000 {
        many.push_str(&text_part("sessionId", &uuid::Uuid::new_v4().to_string()));
    }
    many.push_str(&format!("--{BOUNDARY}--\r\n"));
    let started = Instant::now();
    let (status, answer, _) =
        raw_exchange(&gateway, &head(&gateway, &format!("Content-Length: {}\r\n", many.len())), many.into_bytes())
            .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("more than one \"sessionId\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused at the second field");
    assert_nothing_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_connections_past_the_cap_wait_without_starving_ops() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |c| {
        c.connections.header_read_timeout_secs = 1;
        c.connections.max_connections = Some(50);
    })
    .await;
    // 200 clients that send a request line and then nothing more (slowloris).
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
        let _ = tcp.write_all(b"GET /api/imports HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
        slow.push(tcp);
    }
    assert_responsive(&gateway).await;

    // Past the header timeout every one of them has been closed (those waiting beyond the cap
    // too, each after its own timeout): reads end instead of hanging.
    let started = Instant::now();
    for tcp in &mut slow {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf)).await;
        assert!(read.is_ok(), "a slow-header connection was still open after {:?}", started.elapsed());
    }
    assert_responsive(&gateway).await;

    // 50 idle connections fill the cap: the next request waits until the header timeout frees one.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(gateway.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, _) =
        tokio::time::timeout(Duration::from_secs(10), gateway.get("/api/imports")).await.expect("served in time");
    let waited = started.elapsed();
    assert_eq!(status, 401, "served once a slot was free");
    assert!(waited >= Duration::from_millis(500), "the 51st connection waited for a slot ({waited:?})");
    assert!(waited < Duration::from_secs(5), "and got one when the idle ones timed out ({waited:?})");
    assert_responsive(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_dropped_by_the_request_timeout_or_a_hang_up_leaves_nothing_behind() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |c| c.request_timeout_secs = 2).await;
    let csv = csv_of(3 * 1024 * 1024);
    let mut full = file_part_head("stalled.csv").into_bytes();
    full.extend_from_slice(&csv);
    let length = full.len() + 1024;

    // Sends 2 MB (past the sniffing, so chunks are being written) and stalls until the timeout.
    let mut stalled = TcpStream::connect(gateway.addr).await.unwrap();
    stalled.write_all(head(&gateway, &format!("Content-Length: {length}\r\n")).as_bytes()).await.unwrap();
    stalled.write_all(&full[..2 * 1024 * 1024]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"REQUEST_TIMEOUT\""), "the timeout answers in the JSON shape: {text}");
    assert_responsive(&gateway).await;
    assert_nothing_left(&env).await;

    // Sends 2 MB and hangs up.
    let mut hung_up = TcpStream::connect(gateway.addr).await.unwrap();
    hung_up.write_all(head(&gateway, &format!("Content-Length: {length}\r\n")).as_bytes()).await.unwrap();
    hung_up.write_all(&full[..2 * 1024 * 1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(hung_up);
    assert_responsive(&gateway).await;
    assert_nothing_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_while_postgres_is_slow_never_leaves_a_row_queued_without_its_job() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |c| c.request_timeout_secs = 1).await;
    // PostgreSQL "slow": the imports table is locked for 3 s, past the request timeout.
    let mut lock = env.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE imports IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let ann = token("ann", "acme", false);
    let id = uuid::Uuid::now_v7();
    let upload = hexflow_tests::realtime::upload_as(&gateway.base, &ann, csv_of(100_000), "slow.csv", id);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), upload).await.expect("answered");
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "REQUEST_TIMEOUT", "{body}");
    // The fault itself: PostgreSQL stays slow for 2 s more after the client was answered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    lock.rollback().await.unwrap();

    // The upload finishes on its own: the row and its job, both, or neither.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = env.scalar("SELECT count(*) FROM imports").await;
        let jobs = env.nats.js.get_stream(names::JOBS_STREAM).await.unwrap().info().await.unwrap().state.messages;
        if rows == 1 && jobs == 1 {
            let queued: String = sqlx::query_scalar("SELECT status FROM imports WHERE id = $1")
                .bind(id)
                .fetch_one(&env.db)
                .await
                .unwrap();
            assert_eq!(queued, "queued");
            assert!(env.upload_chunks().await > 0, "its file is kept for the worker");
            break;
        }
        if rows == 0 && jobs == 0 && env.upload_chunks().await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} rows and {jobs} jobs: a row without its job, or a job without its row"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_responsive(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dates_and_reserved_session_ids_are_refused_with_400_quoting_a_prefix() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |_| {}).await;
    let ann = token("ann", "acme", false);
    let refused = |fields: Vec<(&'static str, String)>| {
        let (base, ann) = (gateway.base.clone(), ann.clone());
        async move {
            let mut form = reqwest::multipart::Form::new();
            for (name, value) in fields {
                form = form.text(name, value);
            }
            form = form.part("file", reqwest::multipart::Part::bytes(csv_of(1000)).file_name("scan.csv"));
            let response = reqwest::Client::new()
                .post(format!("{base}/api/imports"))
                .bearer_auth(ann)
                .multipart(form)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for date in ["infinity", "-infinity", "2999-01-01", "294276-01-01", "1989-12-31", "epoch", "not a date"] {
        let (status, body) = refused(vec![("scanDate", date.to_owned())]).await;
        assert_eq!(status, 400, "scanDate={date}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{body}");
    }
    for id in [uuid::Uuid::nil(), uuid::Uuid::max()] {
        let (status, body) = refused(vec![("sessionId", id.to_string())]).await;
        assert_eq!(status, 400, "sessionId={id}: {body}");
    }
    let (status, body) = refused(vec![("format", "x".repeat(200))]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().len() < 300, "a prefix only: {body}");
    assert_nothing_left(&env).await;
    assert_responsive(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_answer_in_the_json_shape_and_the_page_sends_security_headers() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |_| {}).await;
    let ann = token("ann", "acme", false);
    let client = reqwest::Client::new();

    let bad_query =
        client.get(format!("{}/api/imports?limit=abc", gateway.base)).bearer_auth(&ann).send().await.unwrap();
    let no_boundary = client
        .post(format!("{}/api/imports", gateway.base))
        .bearer_auth(&ann)
        .header("content-type", "multipart/form-data")
        .body("x")
        .send()
        .await
        .unwrap();
    let page = client.get(format!("{}/", gateway.base)).send().await.unwrap();

    for response in [bad_query, no_boundary] {
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty() && m.len() < 400), "{body}");
    }
    assert_eq!(page.status(), 200);
    let headers = page.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_and_someone_elses_import_answers_as_an_unknown_one() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |_| {}).await;
    let (ann, bob) = (token("ann", "acme", false), token("bob", "acme", false));
    let id = uuid::Uuid::now_v7();
    let (status, body) = hexflow_tests::realtime::upload_as(&gateway.base, &ann, csv_of(1000), "ann.csv", id).await;
    assert_eq!(status, 202, "{body}");

    // A 200 KiB header: refused (431) without being buffered past the 64 KiB bound.
    let huge = format!("GET /api/imports HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(200 * 1024));
    let (status, _, _) = raw_exchange(&gateway, &huge, Vec::new()).await;
    assert_eq!(status, 431);
    assert_responsive(&gateway).await;

    // Bob asks about Ann's import and about one that does not exist: the same answers.
    let client = reqwest::Client::new();
    let unknown = uuid::Uuid::now_v7();
    for (method, path) in [("GET", ""), ("GET", "/errors"), ("POST", "/cancel")] {
        let mut answers = Vec::new();
        for target in [id, unknown] {
            let url = format!("{}/api/imports/{target}{path}", gateway.base);
            let request = if method == "GET" { client.get(url) } else { client.post(url) };
            let response = request.bearer_auth(&bob).send().await.unwrap();
            let status = response.status();
            answers.push((status, response.text().await.unwrap().replace(&target.to_string(), "ID")));
        }
        assert_eq!(answers[0].0, 404, "{method} {path}: {}", answers[0].1);
        assert_eq!(answers[0], answers[1], "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_mid_upload_is_cut_off_after_the_idle_timeout() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |c| c.upload_idle_timeout_secs = 1).await;
    let mut file = file_part_head("drip.csv").into_bytes();
    file.extend_from_slice(&csv_of(2 * 1024 * 1024));
    let field = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"scanDate\"\r\n\r\n2026-");
    // Mid-file (chunks already stored), mid-field, and between two parts.
    let stalls = [file, field.into_bytes(), text_part("format", "auto").into_bytes()];
    for sent in stalls {
        let length = sent.len() + 4096;
        let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
        tcp.write_all(head(&gateway, &format!("Content-Length: {length}\r\n")).as_bytes()).await.unwrap();
        tcp.write_all(&sent).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);

        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("no data for 1 s"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5), "cut off after {:?}", started.elapsed());
        assert_responsive(&gateway).await;
        assert_nothing_left(&env).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_long_header_cell_is_refused_without_being_echoed() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |_| {}).await;
    let ann = token("ann", "acme", false);
    let csv = format!("Host,{},Port\nh1,x,80\n", "c".repeat(900 * 1024)).into_bytes();

    let (status, body) =
        hexflow_tests::realtime::upload_as(&gateway.base, &ann, csv, "wide.csv", uuid::Uuid::now_v7()).await;

    assert_eq!(status, 422, "{}", &body.to_string()[..body.to_string().len().min(300)]);
    assert_eq!(body["error"]["code"], "UNKNOWN_COLUMNS");
    assert!(body.to_string().len() < 4096, "the answer is {} bytes", body.to_string().len());
    assert_nothing_left(&env).await;
    assert_responsive(&gateway).await;
}

/// An upload by `token` naming `id` as its sessionId, before or after the file: status and body
/// text with the id written as `ID`.
async fn upload_naming(gateway: &GatewayHandle, token: &str, id: uuid::Uuid, id_after_file: bool) -> (u16, String) {
    let file = || reqwest::multipart::Part::bytes(csv_of(1000)).file_name("again.csv");
    let form = reqwest::multipart::Form::new();
    let form = if id_after_file {
        form.part("file", file()).text("sessionId", id.to_string())
    } else {
        form.text("sessionId", id.to_string()).part("file", file())
    };
    let response = post_import_as(&gateway.base, token, form).await;
    (response.status().as_u16(), response.text().await.unwrap().replace(&id.to_string(), "ID"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_session_id_answers_the_same_whoever_used_it() {
    let env = TestEnv::start().await;
    let gateway = secured_gateway(&env, |_| {}).await;
    // Ann and Bob share tenant acme; Carol is in globex. Each has one import.
    let users = [("ann", "acme"), ("bob", "acme"), ("carol", "globex")];
    let mut ids = Vec::new();
    for (user, tenant) in users {
        let id = uuid::Uuid::now_v7();
        let (status, body) =
            hexflow_tests::realtime::upload_as(&gateway.base, &token(user, tenant, false), csv_of(1000), "a.csv", id)
                .await;
        assert_eq!(status, 202, "{user}: {body}");
        ids.push(id);
    }
    let bob = token("bob", "acme", false);

    // Bob names his own used id, a tenant mate's and another tenant's, with the id sent before
    // the file (checked as the field is read) and after it (checked as the row is written).
    for id_after_file in [false, true] {
        let mut answers = Vec::new();
        for id in &ids {
            answers.push(upload_naming(&gateway, &bob, *id, id_after_file).await);
        }
        let (own, [mate, stranger]) = (&answers[1], [&answers[0], &answers[2]]);
        assert_eq!(own.0, 409, "{}", own.1);
        let body: Value = serde_json::from_str(&own.1).unwrap();
        assert_eq!(body["error"]["code"], "SESSION_EXISTS", "{body}");
        assert!(!own.1.to_lowercase().contains("bob"), "the answer names no owner: {}", own.1);
        assert_eq!(mate, own, "a tenant mate's id answers as Bob's own (id after file: {id_after_file})");
        assert_eq!(stranger, own, "another tenant's id answers as Bob's own (id after file: {id_after_file})");
    }

    // Nothing was taken over or added, and the refused files are gone.
    let owners: Vec<(String, String)> =
        sqlx::query_as("SELECT owner, tenant FROM imports ORDER BY id").fetch_all(&env.db).await.unwrap();
    let expected: Vec<(String, String)> = users.iter().map(|(u, t)| (u.to_string(), t.to_string())).collect();
    assert_eq!(owners, expected);
    // One chunk per kept file (each is far below the chunk size); the refused ones are deleted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.upload_chunks().await > ids.len() {
        assert!(Instant::now() < deadline, "the refused uploads' chunks were not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_responsive(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_upload_store_refuses_the_upload_keeps_nothing_and_takes_the_next_one() {
    let env = TestEnv::start().await;
    let gateway = env.gateway_with(|c| c.nats.uploads_max_bytes = Some(3 * 1024 * 1024)).await;
    // The store refuses a chunk before the object's metadata is written: the gateway removes
    // the chunks already stored by their name, without waiting for the worker's sweep.
    let _worker = env.worker_with(|c| c.nats.uploads_max_bytes = Some(3 * 1024 * 1024)).await;
    let stream = env.nats.js.get_stream(format!("OBJ_{}", names::UPLOADS_BUCKET)).await.unwrap();
    assert_eq!(stream.cached_info().config.max_bytes, 3 * 1024 * 1024, "the gateway set the bucket's limit");

    // Uploads are stored compressed: this file's random outputs keep more than 3 MiB of it.
    let (status, body) = gateway.upload(noisy_csv_of(12 * 1024 * 1024), "big.csv", &[]).await;

    assert_eq!(status, 503, "the store's limit is the operator's, not the client's fault: {body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("storing the file"), "{body}");
    assert_responsive(&gateway).await;
    assert_nothing_left(&env).await;
    let (status, body) = gateway.upload(csv_of(64 * 1024), "small.csv", &[]).await;
    assert_eq!(status, 202, "room again once the refused file is gone: {body}");
}
