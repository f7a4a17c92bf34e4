//! The HTTP processor against a real downstream (axum on port 0) that records every arrival:
//! results, per-ID errors, 5xx then success, timeouts, malformed and oversized answers,
//! permanent refusals, an operator's retry, the rate limit holding through retries, the
//! attempt and key each request carries, a downstream's Retry-After, and a 409 that says a
//! newer attempt exists.

mod common;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
    Json, Router,
};
use common::spawn_app;
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

type Arrival = (Instant, Value, Option<String>);

#[derive(Clone, Default)]
struct Downstream {
    /// Every request: when it arrived, its body and its `Idempotency-Key`.
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// Requests seen per batch (by its first ID).
    seen: Arc<Mutex<HashMap<u64, u32>>>,
    /// Refuse batches starting with 200 (until an operator fixes "the downstream").
    refuse: Arc<Mutex<bool>>,
}

/// What the downstream does depends on the batch's first ID.
async fn handle(
    State(down): State<Downstream>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    down.arrivals
        .lock()
        .unwrap()
        .push((Instant::now(), body.clone(), key));
    let ids: Vec<u64> = serde_json::from_value(body["ids"].clone()).unwrap();
    let first = ids[0];
    let seen = {
        let mut seen = down.seen.lock().unwrap();
        let n = seen.entry(first).or_default();
        *n += 1;
        *n
    };
    match first {
        // Unavailable twice, then fine.
        600 if seen <= 2 => (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
        // Too many requests: come back in a second.
        800 if seen == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        // "A newer attempt of this batch exists" (as a downstream that saw one answers).
        900 if seen == 1 => (StatusCode::CONFLICT, "attempt 1 is stale").into_response(),
        // A refusal that retrying the same request will not change.
        200 if *down.refuse.lock().unwrap() => {
            (StatusCode::BAD_REQUEST, "unknown customer").into_response()
        }
        // Too slow for the processor's timeout.
        300 => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::OK.into_response()
        }
        // A 200 that is not the documented shape.
        400 => (StatusCode::OK, "<html>oops</html>").into_response(),
        // A 200 over the answer bound (2 MiB, in the documented shape).
        700 => {
            let huge = "x".repeat(2 << 20);
            Json(json!({"results": [{"id": 700, "data": huge}]})).into_response()
        }
        // A plain 2xx without a body: every ID done.
        500 => StatusCode::NO_CONTENT.into_response(),
        _ => Json(
            json!({"results": ids.iter().filter(|&&id| id != 12).map(|&id| {
            if id == 13 {
                json!({"id": id, "error": "unknown id"})
            } else {
                json!({"id": id, "data": {"double": id * 2}})
            }
        }).collect::<Vec<_>>()}),
        )
        .into_response(),
    }
}

async fn downstream() -> (Downstream, String) {
    let state = Downstream::default();
    *state.refuse.lock().unwrap() = true;
    let app = Router::new()
        .route("/batches", post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/batches", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, url)
}

async fn app_for(url: &str, attempts: &str) -> common::TestApp {
    spawn_app(&[
        "--processor",
        "http",
        "--processor-url",
        url,
        "--processor-attempts",
        attempts,
        "--processor-backoff",
        "0s",
        "--processor-timeout",
        "300ms",
        "--rate-interval",
        "100ms",
    ])
    .await
}

fn finished(s: &Value) -> bool {
    matches!(
        s["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

#[tokio::test]
async fn the_downstreams_results_and_per_id_errors_are_kept_for_each_id() {
    let (down, url) = downstream().await;
    let app = app_for(&url, "3").await;
    let id = app
        .ingest(r#"{"ids": [11, 12, 13, 500, 501], "priority": "HIGH"}"#)
        .await;
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), finished)
        .await;
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(
        status["batches"][0]["results"],
        json!([
            {"id": 11, "data": {"double": 22}},
            {"id": 12, "data": null, "error": "no result"},
            {"id": 13, "data": null, "error": "unknown id"},
        ])
    );
    assert_eq!(
        status["batches"][1]["results"],
        json!([{"id": 500, "data": "done"}, {"id": 501, "data": "done"}])
    );
    // The same, an ID at a time, a page at a time.
    let page = app
        .get_json(&format!("/status/{id}/results?offset=1&limit=3"))
        .await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["offset"], 1);
    let ids: Vec<u64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [12, 13, 500]);
    assert_eq!(page["results"][1]["error"], "unknown id");
    assert_eq!(page["results"][2]["data"], "done");
    assert_eq!(page["results"][2]["status"], "completed");
    // The documented request shape.
    let arrivals = down.arrivals.lock().unwrap();
    let body = &arrivals[0].1;
    assert_eq!(body["ids"], json!([11, 12, 13]));
    assert_eq!(body["ingestion_id"], id.as_str());
    assert_eq!(body["priority"], "HIGH");
    assert_eq!(body["batch_id"], status["batches"][0]["batch_id"]);
}

#[tokio::test]
async fn a_busy_downstream_is_retried_under_the_rate_limit_until_it_answers() {
    let (down, url) = downstream().await;
    let app = app_for(&url, "5").await;
    let id = app
        .ingest(r#"{"ids": [600, 601, 602, 7, 8], "priority": "MEDIUM"}"#)
        .await;
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), finished)
        .await;
    assert_eq!(status["status"], "completed", "{status}");
    let first = &status["batches"][0];
    assert_eq!(first["attempts"], 3);
    assert_eq!(first["error"], Value::Null, "cleared by the success");
    assert_eq!(
        first["results"][0],
        json!({"id": 600, "data": {"double": 1200}})
    );
    // Every request, retries included, at least the interval after the one before.
    let arrivals = down.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 4, "three attempts and the second batch");
    for pair in arrivals.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_millis(95), "requests {gap:?} apart");
    }
    // The retries came before the second batch: a batch keeps its place in the queue.
    assert_eq!(arrivals[3].1["ids"], json!([7, 8]));
    // Each request says which attempt it is (the fencing token) and carries the batch's id
    // as its idempotency key, the same for every attempt.
    let attempts: Vec<&Value> = arrivals[..3].iter().map(|a| &a.1["attempt"]).collect();
    assert_eq!(attempts, [&json!(1), &json!(2), &json!(3)]);
    for arrival in &arrivals[..3] {
        assert_eq!(arrival.2.as_deref(), first["batch_id"].as_str());
    }
    assert_eq!(arrivals[3].1["attempt"], 1);
    assert_eq!(
        arrivals[3].2.as_deref(),
        status["batches"][1]["batch_id"].as_str()
    );
    // Its attempts, each with the replica that ran it and how it ended.
    let history = app
        .get_json(&format!(
            "/batches/{}/attempts",
            first["batch_id"].as_str().unwrap()
        ))
        .await;
    let outcomes: Vec<&str> = history["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "completed"], "{history}");
    assert!(history["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("503"));
    assert_eq!(history["attempts"][0]["status_code"], 503);
    assert_eq!(history["attempts"][2].get("status_code"), None);
    assert_eq!(
        history["attempts"][2]["replica"],
        history["attempts"][0]["replica"]
    );
    let unknown = app
        .get("/batches/0190f0c2-0000-7000-8000-000000000000/attempts")
        .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn a_downstream_asking_to_wait_with_retry_after_is_given_at_least_that_long() {
    let (down, url) = downstream().await;
    // No backoff of sluice's own: the wait is the downstream's.
    let app = app_for(&url, "3").await;
    let id = app.ingest(r#"{"ids": [800], "priority": "HIGH"}"#).await;
    let retrying = app
        .wait_for_status(&id, Duration::from_secs(10), |s| {
            s["batches"][0]["error"].is_string()
        })
        .await;
    assert!(
        retrying["batches"][0]["retry_at"].is_string(),
        "shown: {retrying}"
    );
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), finished)
        .await;
    assert_eq!(status["status"], "completed", "{status}");
    let arrivals = down.arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1].0 - arrivals[0].0;
    assert!(
        gap >= Duration::from_millis(990),
        "asked for 1 s, came back after {gap:?}"
    );
}

#[tokio::test]
async fn a_409_that_no_newer_attempt_explains_fails_the_batch_like_any_refusal() {
    // A downstream following the two rules answers 409 only to an attempt that a newer one
    // has taken over (then recording it is refused and it ends quietly: tests/cluster.rs).
    // Here no newer attempt exists: the answer is a refusal, and it is not tried forever.
    let (down, url) = downstream().await;
    let app = app_for(&url, "3").await;
    let id = app.ingest(r#"{"ids": [900], "priority": "HIGH"}"#).await;
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), finished)
        .await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["batches"][0]["attempts"], 1);
    assert!(
        status["batches"][0]["error"]
            .as_str()
            .unwrap()
            .contains("409"),
        "{status}"
    );
    assert_eq!(down.arrivals.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_batch_fails_at_once_and_an_operator_can_retry_it() {
    let (down, url) = downstream().await;
    let app = app_for(&url, "5").await;
    let id = app
        .ingest(r#"{"ids": [200, 201, 202, 9], "priority": "LOW"}"#)
        .await;
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), finished)
        .await;
    assert_eq!(status["status"], "failed", "{status}");
    let batch = &status["batches"][0];
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["attempts"], 1, "a 400 is not retried");
    assert!(batch["error"]
        .as_str()
        .unwrap()
        .contains("400 Bad Request: unknown customer"));
    assert_eq!(status["batches"][1]["status"], "completed");

    let batch_id = batch["batch_id"].as_str().unwrap().to_owned();
    *down.refuse.lock().unwrap() = false;
    let res = app
        .post_json(&format!("/admin/batches/{batch_id}/retry"), "")
        .await;
    assert_eq!(res.status(), 200);
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), |s| s["status"] == "completed")
        .await;
    assert_eq!(status["batches"][0]["attempts"], 2);
    // Only a failed batch can be retried.
    let again = app
        .post_json(&format!("/admin/batches/{batch_id}/retry"), "")
        .await;
    assert_eq!(again.status(), 409);
    let unknown = app.post_json("/admin/batches/nope/retry", "").await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn slow_and_malformed_answers_fail_after_the_last_attempt_without_losing_anything() {
    let (_down, url) = downstream().await;
    let app = app_for(&url, "2").await;
    let slow = app.ingest(r#"{"ids": [300], "priority": "HIGH"}"#).await;
    let broken = app.ingest(r#"{"ids": [400], "priority": "HIGH"}"#).await;
    let huge = app.ingest(r#"{"ids": [700], "priority": "HIGH"}"#).await;
    let after = app.ingest(r#"{"ids": [21, 22], "priority": "LOW"}"#).await;
    for (id, expected) in [
        (&slow, "timed out"),
        (&broken, "is not {\"results\""),
        (&huge, "larger than 1024 KiB"),
    ] {
        let status = app
            .wait_for_status(id, Duration::from_secs(15), finished)
            .await;
        assert_eq!(status["status"], "failed", "{status}");
        assert_eq!(status["batches"][0]["attempts"], 2);
        let error = status["batches"][0]["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
    }
    let status = app
        .wait_for_status(&after, Duration::from_secs(10), finished)
        .await;
    assert_eq!(status["status"], "completed");
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_batches_failed_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_attempts_retried_total 3"),
        "{metrics}"
    );
}
