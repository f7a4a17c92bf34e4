//! The JSON API over real HTTP: every status code of SPEC §1, response shapes, and that a
//! refused request stores nothing.

mod common;

use common::spawn_app;
use serde_json::{json, Value};
use sluice::domain::Timestamp;
use std::time::Duration;

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(keys(body), vec!["error"], "{body}");
    assert_eq!(keys(&body["error"]), vec!["code", "message"], "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
}

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
async fn the_status_shows_the_reference_shape_and_reaches_completed() {
    let app = spawn_app(&[]).await;
    let id = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5], "priority": "MEDIUM"}"#)
        .await;

    let status = app
        .wait_for_status(&id, Duration::from_secs(10), |s| s["status"] == "completed")
        .await;
    assert_eq!(
        keys(&status),
        vec![
            "batches",
            "cancelled_at",
            "created_at",
            "ingestion_id",
            "predicted_completion",
            "priority",
            "status"
        ]
    );
    assert_eq!(status["predicted_completion"], Value::Null);
    assert_eq!(status["ingestion_id"], id);
    assert_eq!(status["priority"], "MEDIUM");
    let batches = status["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0]["ids"], json!([1, 2, 3]));
    assert_eq!(batches[1]["ids"], json!([4, 5]));
    for batch in batches {
        assert_eq!(
            keys(batch),
            vec![
                "attempts",
                "batch_id",
                "completed_at",
                "error",
                "ids",
                "predicted_start",
                "results",
                "retry_at",
                "started_at",
                "status"
            ]
        );
        assert_eq!(batch["status"], "completed");
        assert_eq!(batch["predicted_start"], Value::Null);
        for field in ["started_at", "completed_at"] {
            let t = batch[field].as_str().unwrap();
            // RFC 3339, UTC, milliseconds: 2026-11-28T14:36:08.123Z
            assert_eq!(t.len(), 24, "{t}");
            assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
        }
        let expected: Vec<Value> = batch["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| json!({"id": id, "data": "processed"}))
            .collect();
        assert_eq!(batch["results"], Value::Array(expected));
    }
    // The second batch started at least one interval after the first.
    let start = |b: &Value| {
        chrono::DateTime::parse_from_rfc3339(b["started_at"].as_str().unwrap()).unwrap()
    };
    assert!(start(&batches[1]) - start(&batches[0]) >= chrono::Duration::milliseconds(50));
}

#[tokio::test]
async fn a_waiting_ingestion_shows_null_times_and_yet_to_start() {
    // A long interval keeps the second ingestion waiting behind the first.
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    app.post_ingest(r#"{"ids": [1], "priority": "HIGH"}"#).await;
    let id = app.ingest(r#"{"ids": [2, 3], "priority": "LOW"}"#).await;
    let status: Value = app.get_status(&id).await.json().await.unwrap();
    assert_eq!(status["status"], "yet_to_start");
    assert_eq!(status["batches"][0]["status"], "yet_to_start");
    assert_eq!(status["batches"][0]["started_at"], Value::Null);
    assert_eq!(status["batches"][0]["completed_at"], Value::Null);
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
async fn an_unknown_or_malformed_ingestion_id_is_404() {
    let app = spawn_app(&[]).await;
    for id in [
        uuid::Uuid::new_v4().to_string().as_str(),
        "not-a-uuid",
        "123",
        "%20",
    ] {
        let res = app.get_status(id).await;
        assert_eq!(res.status(), 404, "{id}");
        assert_error(&res.json().await.unwrap(), "not_found");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_error_shape() {
    let app = spawn_app(&[]).await;
    let res = app.get("/ingest").await;
    assert_eq!(res.status(), 405);
    assert_error(&res.json().await.unwrap(), "method_not_allowed");
}

#[tokio::test]
async fn the_dashboard_page_is_served_at_the_root_with_the_stored_ingestions_rendered() {
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    let id = app
        .ingest(r#"{"ids": [11, 12, 13, 14], "priority": "HIGH"}"#)
        .await;
    let res = app.client.get(&app.base).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("<title>sluice</title>"), "{html}");
    assert!(
        html.contains("/pkg/sluice.js"),
        "the page loads the hydration script: {html}"
    );
    // Rendered on the server from the store, so it is there on first paint and after reloads.
    assert!(
        html.contains(&format!("data-ingestion-id=\"{id}\"")),
        "{html}"
    );
    assert!(html.contains("14"), "the second batch's ID is on the page");
    assert!(html.contains("data-testid=\"depth-HIGH\""), "{html}");
}

#[tokio::test]
async fn the_newest_ingestions_are_listed_newest_first() {
    let app = spawn_app(&[]).await;
    let mut ids = Vec::new();
    for priority in ["LOW", "HIGH", "MEDIUM"] {
        let res = app
            .post_ingest(&format!(
                r#"{{"ids": [1, 2, 3, 4], "priority": "{priority}"}}"#
            ))
            .await;
        ids.push(res.json::<Value>().await.unwrap()["ingestion_id"].clone());
    }
    let get = |query: &'static str| {
        let url = format!("{}/ingestions{query}", app.base);
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let res = get("?limit=2").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(keys(&body), vec!["ingestions", "last_event_id", "now"]);
    let listed: Vec<&Value> = body["ingestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["ingestion_id"])
        .collect();
    assert_eq!(listed, vec![&ids[2], &ids[1]]);
    assert_eq!(
        body["ingestions"][0]["batches"].as_array().unwrap().len(),
        2
    );
    assert!(body["last_event_id"].as_u64().unwrap() >= 3);

    let all: Value = get("").await.json().await.unwrap();
    assert_eq!(all["ingestions"].as_array().unwrap().len(), 3);

    let res = get("?limit=ten").await;
    assert_eq!(res.status(), 400);
    assert_error(&res.json().await.unwrap(), "invalid_query");
}

#[tokio::test]
async fn the_queue_and_status_predict_when_waiting_work_will_run() {
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    let id = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5, 6, 7], "priority": "LOW"}"#)
        .await;
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), |s| {
            s["batches"][0]["status"] == "completed"
        })
        .await;
    let started =
        Timestamp::parse_rfc3339(status["batches"][0]["started_at"].as_str().unwrap()).unwrap();
    let hour = Duration::from_secs(3600);
    let predicted = |i: usize| {
        status["batches"][i]["predicted_start"]
            .as_str()
            .and_then(Timestamp::parse_rfc3339)
    };
    assert_eq!(predicted(0), None, "a started batch has no prediction");
    assert_eq!(predicted(1), Some(started.plus(hour)));
    assert_eq!(predicted(2), Some(started.plus(hour * 2)));
    assert_eq!(
        status["predicted_completion"]
            .as_str()
            .and_then(Timestamp::parse_rfc3339),
        Some(started.plus(hour * 2).plus(Duration::from_millis(10)))
    );

    let queue = app.get_json("/queue").await;
    assert_eq!(queue["rate_interval_ms"], 3_600_000);
    assert_eq!(
        queue["waiting"],
        json!([
            {"priority": "HIGH", "batches": 0},
            {"priority": "MEDIUM", "batches": 0},
            {"priority": "LOW", "batches": 2}
        ])
    );
    assert_eq!(queue["in_flight"], Value::Null);
    assert_eq!(
        queue["next_slot"]
            .as_str()
            .and_then(Timestamp::parse_rfc3339),
        Some(started.plus(hour))
    );
    assert_eq!(queue["recent"][0]["ids"], json!([1, 2, 3]));
    assert_eq!(queue["recent"][0]["ingestion_id"], id);
}

#[tokio::test]
async fn only_configured_origins_may_call_the_api_from_another_site() {
    let app = spawn_app(&["--cors-origins", "http://ui.example:8080"]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/api/ingest", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("http://ui.example:8080").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://ui.example:8080"
    );
    let refused = preflight("http://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // Without configuration, no cross-origin access at all.
    let plain = spawn_app(&[]).await;
    let res = plain
        .client
        .get(format!("{}/queue", plain.base))
        .header("origin", "http://ui.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn health_and_readiness_answer_for_load_balancers() {
    let app = spawn_app(&[]).await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let readyz = || async {
        let res = app.get("/readyz").await;
        (res.status(), res.json::<Value>().await.unwrap())
    };
    let (status, body) = readyz().await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {"store": "ok", "scheduler": "ok"}})
    );

    // A schema this build does not know (say, a newer sluice migrated the file): not ready.
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    let (status, body) = readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert!(body["checks"]["store"]
        .as_str()
        .unwrap()
        .contains("schema version 99"));
    assert_eq!(body["checks"]["scheduler"], "ok");
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

#[tokio::test]
async fn an_operator_can_pause_and_resume_dispatch() {
    let app = spawn_app(&[]).await;
    let admin = |action: &'static str| {
        app.client
            .post(format!("{}/admin/{action}", app.base))
            .send()
    };
    let queue = || app.get_json("/queue");
    let res = admin("pause").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"paused": true, "changed": true})
    );
    assert_eq!(queue().await["paused"], true);

    // Accepting work continues while paused.
    let id = app
        .ingest(r#"{"ids": [1, 2, 3, 4], "priority": "HIGH"}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status: Value = app.get_status(&id).await.json().await.unwrap();
    assert_eq!(status["status"], "yet_to_start");
    assert_eq!(status["predicted_completion"], Value::Null);

    let res = admin("resume").await.unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"paused": false, "changed": true})
    );
    app.wait_for_status(&id, Duration::from_secs(10), |s| s["status"] == "completed")
        .await;
    assert_eq!(queue().await["paused"], false);
    let again = admin("resume").await.unwrap();
    assert_eq!(again.json::<Value>().await.unwrap()["changed"], false);
}

#[tokio::test]
async fn cancelling_an_ingestion_stops_its_waiting_batches_and_the_started_one_finishes() {
    // A long interval: the first batch starts at once, the others wait.
    let app = spawn_app(&["--rate-interval", "1h", "--simulated-work", "300ms"]).await;
    let id = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5, 6, 7], "priority": "MEDIUM"}"#)
        .await;
    app.wait_for_status(&id, Duration::from_secs(5), |s| {
        s["batches"][0]["status"] == "triggered"
    })
    .await;
    let path = format!("/ingest/{id}/cancel");
    let cancel = || app.post_json(&path, "");
    let res = cancel().await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ingestion_id"], id.as_str());
    assert_eq!(body["cancelled_batches"], 2);
    assert_eq!(
        body["status"], "triggered",
        "the started batch is still running"
    );
    assert!(body["cancelled_at"].is_string());
    // Read-your-writes: the very next status read shows the cancel (status reads are
    // remembered between events, and the cancel's event is committed before its answer).
    let next: Value = app.get_status(&id).await.json().await.unwrap();
    assert_eq!(next["batches"][2]["status"], "cancelled");
    assert_eq!(next["cancelled_at"], body["cancelled_at"]);

    let done = app
        .wait_for_status(&id, Duration::from_secs(5), |s| s["status"] == "cancelled")
        .await;
    let statuses: Vec<&str> = done["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["completed", "cancelled", "cancelled"]);
    assert_eq!(done["batches"][1]["started_at"], Value::Null);
    assert_eq!(done["batches"][1]["predicted_start"], Value::Null);
    assert_eq!(done["cancelled_at"], body["cancelled_at"]);
    assert_eq!(done["predicted_completion"], Value::Null);
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["waiting"][1]["batches"], 0);

    // Repeating it is harmless.
    let again: Value = cancel().await.json().await.unwrap();
    assert_eq!(again["cancelled_batches"], 0);
    assert_eq!(again["status"], "cancelled");
    for bad in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        let res = app.post_json(&format!("/ingest/{bad}/cancel"), "").await;
        assert_eq!(res.status(), 404);
        assert_error(&res.json().await.unwrap(), "not_found");
    }
}

#[tokio::test]
async fn an_operator_can_change_the_rate_at_run_time() {
    let app = spawn_app(&[]).await;
    let put = |body: &'static str| {
        app.client
            .put(format!("{}/admin/rate", app.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = put(r#"{"rate_interval": "2s"}"#).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"rate_interval_ms": 2000, "overridden": true})
    );
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["rate_interval_ms"], 2000);

    for (body, status, code) in [
        (r#"{"rate_interval": "fast"}"#, 422, "invalid_rate_interval"),
        (r#"{"rate_interval": "0ms"}"#, 422, "invalid_rate_interval"),
        (r#"{"rate_interval": 5}"#, 422, "invalid_rate_interval"),
        (r#"{"rate_interval": "#, 400, "bad_body"),
    ] {
        let res = put(body).await.unwrap();
        assert_eq!(res.status(), status, "{body}");
        assert_error(&res.json().await.unwrap(), code);
    }

    let res = put(r#"{"rate_interval": null}"#).await.unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"rate_interval_ms": 50, "overridden": false})
    );
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

/// Scrape `/metrics` and parse it as Prometheus does.
async fn scrape(app: &common::TestApp) -> prometheus_parse::Scrape {
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        Some(prometheus_parse::Value::Untyped(v)) => *v,
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            buckets.last().map(|b| b.count).unwrap_or(0.0)
        }
        other => panic!(
            "{name} {labels:?}: {other:?} in {:#?}",
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == name)
                .collect::<Vec<_>>()
        ),
    }
}

#[tokio::test]
async fn metrics_move_when_work_flows() {
    let app = spawn_app(&["--rate-interval", "100ms"]).await;
    let before = scrape(&app).await;
    assert_eq!(sample(&before, "sluice_batches_dispatched_total", &[]), 0.0);
    assert_eq!(
        sample(
            &before,
            "sluice_queue_waiting_batches",
            &[("priority", "HIGH")]
        ),
        0.0
    );

    // Pause, so the queue holds still while it is measured.
    let pause = app.post_json("/admin/pause", "").await;
    assert_eq!(pause.status(), 200);
    let id = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5, 6, 7], "priority": "HIGH"}"#)
        .await;
    app.ingest(r#"{"ids": [8], "priority": "LOW"}"#).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let held = scrape(&app).await;
    assert_eq!(
        sample(
            &held,
            "sluice_queue_waiting_batches",
            &[("priority", "HIGH")]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &held,
            "sluice_queue_waiting_batches",
            &[("priority", "LOW")]
        ),
        1.0
    );
    assert_eq!(sample(&held, "sluice_dispatch_paused", &[]), 1.0);
    assert!(sample(&held, "sluice_queue_oldest_waiting_age_seconds", &[]) >= 0.05);
    assert_eq!(sample(&held, "sluice_ingestions_accepted_total", &[]), 2.0);
    assert_eq!(sample(&held, "sluice_ids_accepted_total", &[]), 8.0);
    assert_eq!(sample(&held, "sluice_rate_interval_seconds", &[]), 0.1);

    app.post_json("/admin/resume", "").await;
    app.wait_for_status(&id, Duration::from_secs(10), |s| s["status"] == "completed")
        .await;
    // The scheduler counts a completion once the store has it, so a status read can see it
    // first: wait for the count (bounded), then read the rest.
    let mut after = scrape(&app).await;
    for _ in 0..100 {
        if sample(&after, "sluice_batches_completed_total", &[]) >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(&app).await;
    }
    assert!(sample(&after, "sluice_batches_dispatched_total", &[]) >= 3.0);
    assert!(sample(&after, "sluice_batches_completed_total", &[]) >= 3.0);
    // Starts after the first waited for their slot: their lateness was measured.
    assert!(sample(&after, "sluice_dispatch_lateness_seconds", &[]) >= 2.0);
    assert!(
        sample(
            &after,
            "sluice_http_requests_total",
            &[("route", "/ingest"), ("method", "POST"), ("status", "200")]
        ) == 2.0
    );
    // Requests are labelled by route template, never by the id in the path.
    assert!(
        sample(
            &after,
            "sluice_http_requests_total",
            &[("route", "/status/:ingestion_id"), ("status", "200")]
        ) >= 1.0
    );
    assert!(!after
        .samples
        .iter()
        .any(|s| s.labels.get("route").is_some_and(|r| r.contains(&id))));
    assert!(
        sample(
            &after,
            "sluice_http_request_duration_seconds",
            &[("route", "/ingest"), ("method", "POST")]
        ) >= 2.0
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_each_answers_as_documented() {
    let app = spawn_app(&[]).await;
    let id = app.ingest(r#"{"ids": [1, 2], "priority": "LOW"}"#).await;
    let batch_id = app.get_json(&format!("/status/{id}")).await["batches"][0]["batch_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = app.get_json("/openapi.json").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();

    // Every server function Leptos registered is described.
    let mut server_fns = 0;
    for (path, method) in leptos::server_fn::axum::server_fn_paths() {
        let method = method.as_str().to_ascii_lowercase();
        assert!(
            paths.get(path).and_then(|p| p.get(&method)).is_some(),
            "server function {method} {path} is missing from the document"
        );
        server_fns += 1;
    }
    assert_eq!(server_fns, 5);

    // Every documented route exists and answers as documented (no route-level 404 or 405).
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{ingestion_id}", &id)
                    .replace("{batch_id}", &batch_id)
            );
            let body = match path.as_str() {
                "/ingest" => json!({"ids": [3], "priority": "HIGH"}),
                "/admin/rate" => json!({"rate_interval": null}),
                "/api/ingest" => json!({"request": {"ids": [4], "priority": "LOW"}}),
                "/api/status" | "/api/cancel" => json!({"ingestion_id": id}),
                "/api/ingestions" => json!({"limit": 5}),
                _ => json!({}),
            };
            let request = match method.as_str() {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&body),
                "put" => app.client.put(&url).json(&body),
                other => panic!("unexpected method {other} for {path}"),
            };
            let res = request.send().await.unwrap();
            let status = res.status().as_u16().to_string();
            assert!(
                op["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which the document does not list"
            );
            // A batch that has not failed cannot be retried: the documented 409.
            let expected = if path.contains("{batch_id}") {
                409
            } else {
                200
            };
            assert_eq!(res.status(), expected, "{method} {path}");
        }
    }
    assert!(operations >= 20, "{operations}");

    // The page for people shows every path, from sluice itself.
    let res = app.get("/docs").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    for path in paths.keys() {
        assert!(
            html.contains(&format!("<code>{path}</code>")),
            "{path} not on /docs"
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}

#[tokio::test]
async fn a_status_read_reflects_work_that_overtook_it_since_the_last_read() {
    // Queue places are remembered between events; a new event must refresh them.
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    let low = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5, 6], "priority": "LOW"}"#)
        .await;
    let predicted = |s: &Value| {
        Timestamp::parse_rfc3339(s["batches"][1]["predicted_start"].as_str().unwrap()).unwrap()
    };
    let before = app
        .wait_for_status(&low, Duration::from_secs(5), |s| {
            s["batches"][0]["status"] != "yet_to_start"
        })
        .await;
    let again: Value = app.get_status(&low).await.json().await.unwrap();
    assert_eq!(
        predicted(&again),
        predicted(&before),
        "nothing changed in between"
    );
    app.ingest(r#"{"ids": [7, 8, 9], "priority": "HIGH"}"#)
        .await;
    let after: Value = app.get_status(&low).await.json().await.unwrap();
    assert_eq!(
        predicted(&after).as_micros() - predicted(&before).as_micros(),
        3_600_000_000,
        "one HIGH batch now goes first: one interval later"
    );
}
