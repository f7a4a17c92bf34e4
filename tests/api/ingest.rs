//! Submitting: what is accepted, what is refused (and stores nothing), keys, backpressure and
//! timeouts.

use super::*;

#[tokio::test]
async fn an_accepted_ingestion_answers_200_with_its_id() {
    let app = spawn_app(&[]).await;
    let res = app
        .post_ingest(r#"{"ids": [1, 2, 3, 4, 5], "priority": "HIGH"}"#)
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(keys(&body), vec!["ingestion_id"]);
    let id = body["ingestion_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(app.count("ingestions"), 1);
    assert_eq!(app.count("batches"), 2);
}

#[tokio::test]
async fn malformed_json_is_400_and_stores_nothing() {
    let app = spawn_app(&[]).await;
    for body in [
        "",
        "{",
        "{\"ids\": [1,], \"priority\": \"HIGH\"}",
        "not json",
        "{\"ids\": [1]} x",
    ] {
        let res = app.post_ingest(body).await;
        assert_eq!(res.status(), 400, "{body:?}");
        assert_error(&res.json().await.unwrap(), "malformed_json");
    }
    assert_eq!(app.count("ingestions"), 0);
}

#[tokio::test]
async fn rule_breaking_json_is_422_with_a_precise_message_and_stores_nothing() {
    let app = spawn_app(&[]).await;
    let cases = [
        (json!({"priority": "HIGH"}), "missing_field"),
        (json!({"ids": [1]}), "missing_field"),
        (json!({"ids": [], "priority": "HIGH"}), "empty_ids"),
        (json!({"ids": "1", "priority": "HIGH"}), "invalid_ids"),
        (json!({"ids": ["7"], "priority": "HIGH"}), "invalid_id"),
        (json!({"ids": [2.0], "priority": "HIGH"}), "invalid_id"),
        (json!({"ids": [1.5], "priority": "HIGH"}), "invalid_id"),
        (json!({"ids": [true], "priority": "HIGH"}), "invalid_id"),
        (json!({"ids": [null], "priority": "HIGH"}), "invalid_id"),
        (json!({"ids": [0], "priority": "HIGH"}), "invalid_id"),
        (
            json!({"ids": [1, 2, 3, 1000000008u64], "priority": "HIGH"}),
            "invalid_id",
        ),
        (json!({"ids": [1], "priority": "high"}), "invalid_priority"),
        (
            json!({"ids": [1], "priority": "HIGH", "tenant": ""}),
            "invalid_tenant",
        ),
        (
            json!({"ids": [1], "priority": "HIGH", "tenant": "a/b"}),
            "invalid_tenant",
        ),
        (
            json!({"ids": [1], "priority": "HIGH", "tenant": 7}),
            "invalid_tenant",
        ),
        (json!({"ids": [1], "priority": null}), "missing_field"),
        (json!([1, 2, 3]), "invalid_body"),
        (json!("HIGH"), "invalid_body"),
    ];
    for (body, code) in cases {
        let res = app.post_ingest(&body.to_string()).await;
        assert_eq!(res.status(), 422, "{body}");
        assert_error(&res.json().await.unwrap(), code);
    }
    let res = app
        .post_ingest(r#"{"ids": [1, 2, 3, 1000000008], "priority": "HIGH"}"#)
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "ids[3]: 1000000008 is out of range 1..=1000000007"
    );
    assert_eq!(app.count("ingestions"), 0);
}

#[tokio::test]
async fn the_boundary_ids_are_accepted() {
    let app = spawn_app(&[]).await;
    let res = app
        .post_ingest(r#"{"ids": [1, 1000000007, 1], "priority": "LOW"}"#)
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415() {
    let app = spawn_app(&[]).await;
    let body = r#"{"ids": [1], "priority": "HIGH"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = app.client.post(format!("{}/ingest", app.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 415, "{content_type:?}");
        assert_error(&res.json().await.unwrap(), "unsupported_media_type");
    }
    let res = app
        .client
        .post(format!("{}/ingest", app.base))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("ingestions"), 1);
}

#[tokio::test]
async fn too_many_ids_is_413_and_stores_nothing() {
    let app = spawn_app(&["--max-ids", "10"]).await;
    let ids: Vec<u64> = (1..=11).collect();
    let res = app
        .post_ingest(&json!({"ids": ids, "priority": "HIGH"}).to_string())
        .await;
    assert_eq!(res.status(), 413);
    assert_error(&res.json().await.unwrap(), "too_many_ids");
    let ids: Vec<u64> = (1..=10).collect();
    let res = app
        .post_ingest(&json!({"ids": ids, "priority": "HIGH"}).to_string())
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("ingestions"), 1);
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_413_whether_declared_or_streamed() {
    let app = spawn_app(&["--max-body-bytes", "2048"]).await;
    let ids: Vec<u64> = (1..=1000).collect();
    let big = json!({"ids": ids, "priority": "HIGH"}).to_string();
    assert!(big.len() > 2048);
    let res = app.post_ingest(&big).await;
    assert_eq!(res.status(), 413);
    assert_error(&res.json().await.unwrap(), "payload_too_large");

    // Without a Content-Length (chunked), the limit applies while reading.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(512)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let res = app
        .client
        .post(format!("{}/ingest", app.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_error(&res.json().await.unwrap(), "payload_too_large");
    assert_eq!(app.count("ingestions"), 0);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_ingestion() {
    let app = spawn_app(&[]).await;
    let post = |key: &'static str, body: &'static str| {
        app.client
            .post(format!("{}/ingest", app.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let first = post("pay-7", r#"{"ids": [1, 2, 3, 4], "priority": "HIGH"}"#)
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_id = first.json::<Value>().await.unwrap()["ingestion_id"].clone();

    // Same request, formatted differently: same ingestion, nothing new stored.
    let retry = post("pay-7", r#"{"priority": "HIGH", "ids": [1,2,3,4]}"#)
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.json::<Value>().await.unwrap()["ingestion_id"],
        first_id
    );
    assert_eq!(app.count("ingestions"), 1);

    let reused = post("pay-7", r#"{"ids": [5], "priority": "HIGH"}"#)
        .await
        .unwrap();
    assert_eq!(reused.status(), 422);
    assert_error(&reused.json().await.unwrap(), "idempotency_key_reused");

    let bad = post("has space", r#"{"ids": [5], "priority": "HIGH"}"#)
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_error(&bad.json().await.unwrap(), "invalid_idempotency_key");
    assert_eq!(app.count("ingestions"), 1);

    // Without a key every request is new work.
    for _ in 0..2 {
        let res = app
            .post_ingest(r#"{"ids": [1, 2, 3, 4], "priority": "HIGH"}"#)
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(app.count("ingestions"), 3);
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_stores_nothing() {
    let app = spawn_app(&["--rate-interval", "1h", "--max-waiting-batches", "2"]).await;
    // Four new batches against a bound of 2: room once two of them would have started.
    let res = app
        .post_ingest(r#"{"ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "priority": "LOW"}"#)
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "7200");
    assert_error(&res.json().await.unwrap(), "queue_full");
    assert_eq!(app.count("ingestions"), 0);

    let res = app
        .post_ingest(r#"{"ids": [1, 2, 3, 4, 5, 6], "priority": "LOW"}"#)
        .await;
    assert_eq!(res.status(), 200);
    // Whether the first batch has started yet or not, one more batch does not fit.
    let res = app
        .post_ingest(r#"{"ids": [7, 8, 9, 10, 11, 12], "priority": "HIGH"}"#)
        .await;
    assert_eq!(res.status(), 429);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after == 3600 || retry_after == 7200, "{retry_after}");
    assert_eq!(app.count("ingestions"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_408_means_nothing_was_stored_even_when_the_store_was_slow_to_answer() {
    // Large ingestions at once, with a bound shorter than storing them takes: some answers
    // come in time, others not. Before the fix, a timeout could cut a request whose write was
    // already queued: the client saw 408, the ingestion was stored anyway (a retry doubled it).
    let app = spawn_app(&["--request-timeout", "100ms", "--rate-interval", "1h"]).await;
    let ids: Vec<String> = (1..=100_000).map(|i| i.to_string()).collect();
    let body = format!(r#"{{"ids": [{}], "priority": "LOW"}}"#, ids.join(","));
    let answers = futures::future::join_all((0..16).map(|_| app.post_ingest(&body))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 408),
        "{statuses:?}"
    );
    let accepted = statuses.iter().filter(|&&s| s == 200).count() as i64;
    // Whatever a cut request might still have written has had time to land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("ingestions"),
        accepted,
        "every stored ingestion was answered 200: {statuses:?}"
    );
}

#[tokio::test]
async fn a_request_too_slow_to_arrive_is_408_and_event_streams_are_not_cut() {
    let app = spawn_app(&["--request-timeout", "300ms"]).await;
    // The body's second half comes 2 s after the first: far past the bound.
    let slow = futures::stream::unfold(0, |step| async move {
        match step {
            0 => Some((Ok::<_, std::io::Error>(r#"{"ids": [1, 2"#.to_owned()), 1)),
            1 => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Some((Ok(r#"], "priority": "LOW"}"#.to_owned()), 2))
            }
            _ => None,
        }
    });
    let started = std::time::Instant::now();
    let res = app
        .client
        .post(format!("{}/ingest", app.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(slow))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 408);
    assert_error(&res.json().await.unwrap(), "request_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the bound"
    );
    assert_eq!(app.count("ingestions"), 0);

    // An event stream outlives the bound.
    let mut events = common::SseReader::new(
        app.client
            .get(format!("{}/events", app.base))
            .send()
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.post_ingest(r#"{"ids": [1], "priority": "LOW"}"#).await;
    assert_eq!(events.next().await.event, "ingestion_created");
}

#[tokio::test]
async fn an_ingestion_shows_the_tenant_it_was_sent_with_or_default() {
    let app = spawn_app(&[]).await;
    let named = app
        .ingest(r#"{"ids": [1], "priority": "LOW", "tenant": "acme-eu.1"}"#)
        .await;
    let unnamed = app.ingest(r#"{"ids": [2], "priority": "LOW"}"#).await;
    assert_eq!(
        app.get_json(&format!("/status/{named}")).await["tenant"],
        "acme-eu.1"
    );
    assert_eq!(
        app.get_json(&format!("/status/{unnamed}")).await["tenant"],
        "default"
    );
}

#[tokio::test]
async fn with_tenant_fairness_a_small_tenant_is_not_stuck_behind_a_big_one() {
    let app = spawn_app(&["--fairness", "tenant", "--rate-interval", "20ms"]).await;
    // Held while both arrive, so the order is the rule's, not the arrivals'.
    assert_eq!(app.post_json("/admin/pause", "").await.status(), 200);
    let big = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "priority": "MEDIUM", "tenant": "big"}"#)
        .await;
    let small = app
        .ingest(r#"{"ids": [101, 102, 103], "priority": "MEDIUM", "tenant": "small"}"#)
        .await;
    app.post_json("/admin/resume", "").await;
    let done = app
        .wait_for_status(&small, Duration::from_secs(10), |s| {
            s["status"] == "completed"
        })
        .await;
    let big_now = app.get_json(&format!("/status/{big}")).await;
    // The small tenant's one batch went second, right after the big one's first: at most one
    // of big's four batches had started before it.
    let small_start = done["batches"][0]["started_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let big_before = big_now["batches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["started_at"]
                .as_str()
                .is_some_and(|t| t < small_start.as_str())
        })
        .count();
    assert_eq!(big_before, 1, "{big_now}");
}
