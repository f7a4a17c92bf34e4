//! Server functions over real HTTP: the same service, rules, error shape and status codes as
//! the JSON routes.

mod common;

use common::spawn_app;
use serde_json::{json, Value};

async fn call(app: &common::TestApp, endpoint: &str, args: Value) -> reqwest::Response {
    app.post_json(&format!("/api/{endpoint}"), &args.to_string())
        .await
}

#[tokio::test]
async fn submitting_through_the_server_function_stores_the_ingestion() {
    let app = spawn_app(&[]).await;
    let res = call(
        &app,
        "ingest",
        json!({"request": {"ids": [1, 2, 3, 4], "priority": "HIGH"}}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let id = res.json::<Value>().await.unwrap()["ingestion_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let res = call(&app, "status", json!({"ingestion_id": id})).await;
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["ingestion_id"], id);
    assert_eq!(view["batches"].as_array().unwrap().len(), 2);
    assert_eq!(app.count("ingestions"), 1);
}

#[tokio::test]
async fn a_server_function_refuses_bad_input_like_the_json_route() {
    let app = spawn_app(&["--max-ids", "3"]).await;
    let cases = [
        (
            json!({"request": {"ids": [], "priority": "LOW"}}),
            422,
            "empty_ids",
        ),
        (
            json!({"request": {"ids": [0], "priority": "LOW"}}),
            422,
            "invalid_id",
        ),
        (
            json!({"request": {"ids": [1, 2, 3, 4], "priority": "LOW"}}),
            413,
            "too_many_ids",
        ),
    ];
    for (args, status, code) in cases {
        let res = call(&app, "ingest", args.clone()).await;
        assert_eq!(res.status(), status, "{args}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], code, "{args}: {body}");
    }
    let res = call(&app, "status", json!({"ingestion_id": "nope"})).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "not_found");
    assert_eq!(app.count("ingestions"), 0);
}

#[tokio::test]
async fn arguments_that_do_not_decode_are_a_client_error_not_a_server_error() {
    let app = spawn_app(&[]).await;
    let res = call(
        &app,
        "ingest",
        json!({"request": {"ids": [1], "priority": "high"}}),
    )
    .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_arguments");
    assert_eq!(app.count("ingestions"), 0);
}

#[tokio::test]
async fn arguments_that_are_not_a_json_object_are_refused_as_documented() {
    let app = spawn_app(&[]).await;
    for body in ["[]", "\"x\"", "", "  [1]"] {
        let res = app.post_json("/api/queue", body).await;
        let status = res.status();
        let answer: Value = res.json().await.unwrap();
        assert_eq!(status, 400, "{body:?}: {answer}");
        assert_eq!(answer["code"], "invalid_arguments", "{body:?}");
    }
    let res = app.post_json("/api/queue", " {}").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_dashboard_reads_recent_ingestions_and_the_queue_through_server_functions() {
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    for ids in [[1, 2, 3, 4], [5, 6, 7, 8]] {
        let res = call(
            &app,
            "ingest",
            json!({"request": {"ids": ids, "priority": "MEDIUM"}}),
        )
        .await;
        assert_eq!(res.status(), 200);
    }
    let res = call(&app, "ingestions", json!({"limit": 1})).await;
    assert_eq!(res.status(), 200);
    let recent: Value = res.json().await.unwrap();
    assert_eq!(recent["ingestions"].as_array().unwrap().len(), 1);
    assert_eq!(
        recent["ingestions"][0]["batches"][0]["ids"],
        json!([5, 6, 7])
    );

    let res = call(&app, "queue", json!({})).await;
    assert_eq!(res.status(), 200);
    let queue: Value = res.json().await.unwrap();
    assert_eq!(queue["waiting"][1]["priority"], "MEDIUM");
    assert_eq!(
        queue["waiting"][1]["batches"], 3,
        "one of four batches started at once"
    );
    assert_eq!(queue["rate_interval_ms"], 3_600_000);
}
