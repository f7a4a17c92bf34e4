//! API tokens: who may write, who may read.

use super::*;

const WRITER: &str = "writer-token-0123456789abcdef";

const READER: &str = "reader-token-0123456789abcdef";

#[tokio::test]
async fn with_api_tokens_writes_need_a_bearer_token_and_reads_stay_open() {
    let app = spawn_app(&[
        "--api-tokens",
        &format!("{WRITER},another-token-0123456789"),
    ])
    .await;
    let body = r#"{"ids": [1, 2, 3], "priority": "HIGH"}"#;
    let post = |path: &'static str, token: Option<&'static str>| {
        let mut request = app
            .client
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for token in [None, Some("wrong-token-0123456789abcdef")] {
        let res = post("/ingest", token).await.unwrap();
        assert_eq!(res.status(), 401, "{token:?}");
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_error(&res.json().await.unwrap(), "unauthorized");
        // The server functions follow the same rule.
        let mut call = app
            .client
            .post(format!("{}/api/ingest", app.base))
            .json(&json!({"request": {"ids": [4], "priority": "LOW"}}));
        if let Some(token) = token {
            call = call.bearer_auth(token);
        }
        let res = call.send().await.unwrap();
        assert_eq!(res.status(), 401);
        // Server functions answer the error's `{code, message}` itself.
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "unauthorized");
    }
    assert_eq!(app.count("ingestions"), 0, "nothing stored when refused");
    for path in ["/admin/pause", "/admin/resume"] {
        assert_eq!(post(path, None).await.unwrap().status(), 401, "{path}");
    }

    let res = post("/ingest", Some(WRITER)).await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res.json::<Value>().await.unwrap()["ingestion_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .post(format!("{}/api/ingest", app.base))
        .bearer_auth("another-token-0123456789")
        .json(&json!({"request": {"ids": [4], "priority": "LOW"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cancel = app
        .client
        .post(format!("{}/ingest/{id}/cancel", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 401);

    // Reads need nothing.
    assert_eq!(app.get_status(&id).await.status(), 200);
    app.get_json("/queue").await;
    app.get_json("/healthz").await;
}

#[tokio::test]
async fn with_read_tokens_reads_need_a_token_and_a_read_token_cannot_write() {
    let app = spawn_app(&["--api-tokens", WRITER, "--read-tokens", READER]).await;
    let get = |path: String, token: Option<&'static str>| {
        let mut request = app.client.get(format!("{}{path}", app.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let res = get("/queue".into(), None).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_error(&res.json().await.unwrap(), "unauthorized");
    assert_eq!(
        get("/queue".into(), Some(READER)).await.unwrap().status(),
        200
    );
    assert_eq!(
        get("/queue".into(), Some(WRITER)).await.unwrap().status(),
        200
    );
    // Probes stay open for load balancers.
    assert_eq!(get("/healthz".into(), None).await.unwrap().status(), 200);
    assert_eq!(get("/readyz".into(), None).await.unwrap().status(), 200);

    let res = app
        .client
        .post(format!("{}/ingest", app.base))
        .bearer_auth(READER)
        .json(&json!({"ids": [1], "priority": "LOW"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_error(&res.json().await.unwrap(), "forbidden");

    // An event stream takes the token in the query (EventSource cannot send headers).
    assert_eq!(get("/events".into(), None).await.unwrap().status(), 401);
    let stream = get(format!("/events?access_token={READER}"), None)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The dashboard page itself renders (the browser then asks for the token), without data.
    let page = get("/".into(), None).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("needs an API token"), "{html}");
}

#[tokio::test]
async fn read_tokens_without_api_tokens_or_a_weak_token_stop_the_start() {
    use clap::Parser;
    use sluice::server::{application::Application, config::Cli};
    let settings = |args: &[&str]| {
        let mut all = vec![
            "sluice",
            "--addr",
            "127.0.0.1:0",
            "--database-url",
            "sqlite::memory:",
        ];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|cli| cli.into_settings().unwrap())
    };
    let only_read = settings(&["--read-tokens", READER]).unwrap();
    let error = Application::build(only_read)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no API token"), "{error}");
    let weak = settings(&["--api-tokens", "short-token"]).unwrap();
    let error = Application::build(weak).await.err().unwrap().to_string();
    assert!(error.contains("16 to 512"), "{error}");
    assert!(
        !error.contains("short-token"),
        "the token itself is not echoed: {error}"
    );
}

#[tokio::test]
async fn work_sent_with_a_named_token_is_its_tenants_unless_it_names_another() {
    let app = spawn_app(&["--api-tokens", &format!("acme:{WRITER},{READER}")]).await;
    let ingest = |body: Value, token: &'static str| {
        app.client
            .post(format!("{}/ingest", app.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let tenant_of = |res: reqwest::Response| async {
        assert_eq!(res.status(), 200);
        let id = res.json::<Value>().await.unwrap()["ingestion_id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.get_json(&format!("/status/{id}")).await["tenant"].clone()
    };
    let res = ingest(json!({"ids": [1], "priority": "LOW"}), WRITER).await;
    assert_eq!(tenant_of(res.unwrap()).await, "acme");
    let named = json!({"ids": [2], "priority": "LOW", "tenant": "globex"});
    assert_eq!(
        tenant_of(ingest(named, WRITER).await.unwrap()).await,
        "globex"
    );
    let unnamed = ingest(json!({"ids": [3], "priority": "LOW"}), READER);
    assert_eq!(tenant_of(unnamed.await.unwrap()).await, "default");
    // The server function too.
    let res = app
        .client
        .post(format!("{}/api/ingest", app.base))
        .bearer_auth(WRITER)
        .json(&json!({"request": {"ids": [4], "priority": "LOW"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(tenant_of(res).await, "acme");
    // The name is not part of the token.
    let res = ingest(
        json!({"ids": [5], "priority": "LOW"}),
        "acme:writer-token-0123456789abcdef",
    );
    assert_eq!(res.await.unwrap().status(), 401);
}

#[tokio::test]
async fn the_dashboard_can_ask_what_its_token_may_do_with_writes() {
    let app = spawn_app(&["--api-tokens", WRITER, "--read-tokens", READER]).await;
    let access = |token: Option<&'static str>| {
        let mut call = app
            .client
            .post(format!("{}/api/access", app.base))
            .json(&json!({}));
        if let Some(token) = token {
            call = call.bearer_auth(token);
        }
        async move {
            let res = call.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(access(None).await, "needs_token");
    assert_eq!(
        access(Some("unknown-token-0123456789")).await,
        "needs_token"
    );
    assert_eq!(access(Some(READER)).await, "read_only");
    assert_eq!(access(Some(WRITER)).await, "allowed");
    // The dashboard's writes are guarded like the routes: the rate, for one.
    let rate = |token: Option<&'static str>| {
        let mut call = app
            .client
            .post(format!("{}/api/rate", app.base))
            .json(&json!({"rate_interval": "2s"}));
        if let Some(token) = token {
            call = call.bearer_auth(token);
        }
        async move { call.send().await.unwrap().status() }
    };
    assert_eq!(rate(None).await, 401);
    assert_eq!(rate(Some(READER)).await, 403);
    assert_eq!(rate(Some(WRITER)).await, 200);
    let open = spawn_app(&[]).await;
    let res = open
        .client
        .post(format!("{}/api/access", open.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), "allowed");
}
