//! Tokens as real deployments use them: a short secret stops the gateway at start-up, a token
//! must carry `exp` and, when the gateway pins them, its `iss` and `aud`; `hexflow token` signs
//! what the gateways accept.

use std::{process::Output, time::Duration};

use hexflow_tests::{
    TestEnv, files,
    realtime::{TEST_SECRET, get_as, upload_as},
    stack::hexflow_binary,
};
use shared::{
    auth::{Audience, AuthConfig, Claims, issue},
    config::Secret,
    events::now_ms,
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
const ISSUER: &str = "https://id.hexflow.test";
const AUDIENCE: &str = "hexflow-api";

/// The settings of a gateway that pins issuer and audience.
fn pinned() -> AuthConfig {
    AuthConfig {
        secret: Some(Secret(TEST_SECRET.into())),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
    }
}

/// Claims that a [`pinned`] gateway accepts.
fn good_claims() -> Claims {
    Claims {
        sub: "ann".into(),
        tenant: Some("acme".into()),
        exp: Some(now_ms() / 1000 + 3600),
        iss: Some(ISSUER.into()),
        aud: Some(Audience::One(AUDIENCE.into())),
        ..Claims::default()
    }
}

/// `hexflow ARGS` with `env` (and no `HEXFLOW_AUTH_*` but those given); its output once it has
/// exited, which it must within [`WAIT`].
async fn hexflow(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(hexflow_binary());
    command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    for var in ["HEXFLOW_AUTH_SECRET", "HEXFLOW_AUTH_ISSUER", "HEXFLOW_AUTH_AUDIENCE", "RUST_LOG"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("`hexflow {}` still running after {WAIT:?}", args.join(" ")))
        .expect("running hexflow")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_given_a_short_secret_exits_at_start_up_saying_32_bytes_are_needed() {
    let env = TestEnv::start().await;
    let settings = [
        ("NATS_URL", env.nats_config.url()),
        ("DATABASE_URL", env.db_config.url()),
        ("HEXFLOW_LISTEN", "127.0.0.1:0"),
        ("HEXFLOW_OPS_LISTEN", "127.0.0.1:0"),
        ("HEXFLOW_AUTH_SECRET", "change-me"),
    ];

    let output = hexflow(&["upload-gateway"], &settings).await;

    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "the gateway must refuse to start; stderr:\n{stderr}");
    assert!(stderr.contains("HEXFLOW_AUTH_SECRET"), "{stderr}");
    assert!(stderr.contains("9 bytes long") && stderr.contains("at least 32 bytes"), "{stderr}");
    assert!(stderr.contains("openssl rand -base64 48"), "{stderr}");
    assert!(!stderr.contains("change-me"), "the secret must not be printed:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_gateway_refuses_tokens_without_exp_or_of_another_issuer_or_audience_with_401() {
    let env = TestEnv::start().await;
    let gateway = env.gateway_with(|c| c.auth = pinned()).await;
    let url = format!("{}/api/imports", gateway.base);
    let with = |claims: Claims| issue(TEST_SECRET, &claims);

    let no_exp = get_as(&url, Some(&with(Claims { exp: None, ..good_claims() }))).await;
    let other_issuer =
        get_as(&url, Some(&with(Claims { iss: Some("https://elsewhere.test".into()), ..good_claims() }))).await;
    let no_issuer = get_as(&url, Some(&with(Claims { iss: None, ..good_claims() }))).await;
    let other_audience =
        get_as(&url, Some(&with(Claims { aud: Some(Audience::One("billing".into())), ..good_claims() }))).await;
    let audiences = Audience::Many(vec!["billing".into(), AUDIENCE.into()]);
    let among_audiences = get_as(&url, Some(&with(Claims { aud: Some(audiences), ..good_claims() }))).await;

    for ((status, body), word) in
        [(&no_exp, "`exp`"), (&other_issuer, "issuer"), (&no_issuer, "issuer"), (&other_audience, "audience")]
    {
        assert_eq!(*status, 401, "{body}");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED");
        assert!(body["error"]["message"].as_str().unwrap().contains(word), "{word}: {body}");
    }
    assert!(other_issuer.1["error"]["message"].as_str().unwrap().contains("https://elsewhere.test"));
    assert_eq!(among_audiences.0, 200, "an `aud` array naming the audience: {}", among_audiences.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_hexflow_token_is_accepted_by_a_gateway_with_the_same_settings() {
    let env = TestEnv::start().await;
    let gateway = env.gateway_with(|c| c.auth = pinned()).await;
    let settings =
        [("HEXFLOW_AUTH_SECRET", TEST_SECRET), ("HEXFLOW_AUTH_ISSUER", ISSUER), ("HEXFLOW_AUTH_AUDIENCE", AUDIENCE)];

    let output = hexflow(&["token", "--sub", "ann", "--tenant", "acme", "--ttl", "15m"], &settings).await;

    assert!(output.status.success(), "hexflow token failed:\n{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let token = stdout.strip_suffix('\n').expect("the token ends with a newline");
    assert_eq!(token.split('.').count(), 3, "stdout holds the token and nothing else: {stdout:?}");
    let (status, page) = get_as(&format!("{}/api/imports", gateway.base), Some(token)).await;
    assert_eq!(status, 200, "{page}");
    let id = Uuid::now_v7();
    let csv = files::generic_csv(&[files::Row::new("h1", "C1", 80)]);
    let (status, body) = upload_as(&gateway.base, token, csv, "ann.csv", id).await;
    assert_eq!(status, 202, "{body}");
    let (owner, tenant): (String, String) = sqlx::query_as("SELECT owner, tenant FROM imports WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db)
        .await
        .expect("the import row");
    assert_eq!((owner.as_str(), tenant.as_str()), ("ann", "acme"), "the token's sub and tenant own the upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hexflow_token_refuses_to_sign_without_a_secret_or_with_an_unreadable_ttl() {
    let without_secret = hexflow(&["token", "--sub", "ann"], &[]).await;
    let bad_ttl = hexflow(&["token", "--sub", "ann", "--ttl", "1w"], &[("HEXFLOW_AUTH_SECRET", TEST_SECRET)]).await;

    assert!(!without_secret.status.success());
    assert!(without_secret.stdout.is_empty(), "no token on stdout");
    assert!(text(&without_secret.stderr).contains("HEXFLOW_AUTH_SECRET"), "{}", text(&without_secret.stderr));
    assert!(!bad_ttl.status.success());
    assert!(bad_ttl.stdout.is_empty(), "no token on stdout");
    assert!(text(&bad_ttl.stderr).contains("90s, 15m, 24h or 7d"), "{}", text(&bad_ttl.stderr));
}
