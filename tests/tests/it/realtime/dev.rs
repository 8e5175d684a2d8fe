//! `hexflow dev`, started outside the repository, serves the page and Socket.IO on the upload
//! gateway's address, one set of ops endpoints on a port of their own, and lets in the dev
//! origin (only) by CORS.

use std::time::Duration;

use hexflow_tests::{
    GatewayHandle, TestEnv, files,
    realtime::{RealtimeEnv, get_as},
    sio::{ClientOptions, SioClient},
};
use reqwest::{Method, header};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hexflow_dev_serves_socket_io_next_to_the_upload_api() {
    let env = TestEnv::start().await;
    let data_dir = env.dir().join("dev");
    let dev = env.hexflow_process("dev", "HEXFLOW_LISTEN", &[("HEXFLOW_DATA_DIR", data_dir.to_str().unwrap())]).await;
    let api = GatewayHandle::new(dev.addr, dev.ops_addr, None);
    let page = reqwest::get(dev.url()).await.unwrap();
    assert_eq!(page.status(), 200, "the page is served from the binary");
    assert!(page.text().await.unwrap().contains("/js/main.js"), "it is the hexflow page");
    let client_js = reqwest::get(format!("{}/vendor/socket.io-client/socket.io.esm.min.js", dev.url())).await.unwrap();
    assert_eq!(client_js.status(), 200, "the page's socket.io client is served too");
    assert!(client_js.headers()[header::CONTENT_TYPE].to_str().unwrap().contains("javascript"));
    let mut client = SioClient::connected(&ClientOptions::at(dev.url())).await;

    let rows: Vec<files::Row> = (0..50).map(|i| files::Row::new(&format!("h{i}"), "C1", 80)).collect();
    let id = api.upload_ok(files::generic_csv(&rows), "dev.csv", &[]).await;
    assert_eq!(client.join(id).await["ok"], true);
    let done = client.wait_for("progress-complete", |_| true, Duration::from_secs(120)).await;

    assert_eq!(done.data["summary"]["new"], 50);
    let (status, ready) = get_as(&format!("{}/readyz", dev.ops_url()), None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["progress-consumer"]["ok"], true, "{ready}");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let public = reqwest::get(format!("{}{path}", dev.url())).await.unwrap();
        assert_eq!(public.status(), 404, "{path} is not served on the public port");
    }
    assert!(dev.log_text().contains(&format!("ops endpoints on http://{}", dev.ops_addr)), "dev prints both addresses");
    let metrics = reqwest::get(format!("{}/metrics", dev.ops_url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hexflow_realtime_sockets 1\n"), "one /metrics for both: {metrics}");
    assert!(metrics.contains("hexflow_uploads_accepted_total 1\n"), "{metrics}");
    let preflight = |origin: String| {
        reqwest::Client::new()
            .request(Method::OPTIONS, format!("{}/socket.io/?EIO=4&transport=polling", dev.url()))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .send()
    };
    let own = preflight(format!("http://localhost:{}", dev.addr.port())).await.unwrap();
    let allowed = own.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(allowed, Some(format!("http://localhost:{}", dev.addr.port())), "the dev origin is allowed");
    let foreign = preflight("http://evil.example".into()).await.unwrap();
    assert!(foreign.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "other origins are not");
    assert!(dev.log_text().contains("AUTHENTICATION IS OFF"), "open mode is announced");
}
