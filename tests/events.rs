//! Push events over real HTTP (Server-Sent Events): order, content, resume with
//! `Last-Event-ID`, and one ingestion's stream.

mod common;

use common::{spawn_app, SseReader, TestApp};
use serde_json::Value;

async fn stream(app: &TestApp, path: &str, last_event_id: Option<u64>) -> reqwest::Response {
    let mut req = app.client.get(format!("{}{path}", app.base));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    req.send().await.unwrap()
}

const LIFE_OF_TWO_BATCHES: [&str; 6] = [
    "ingestion_created",
    "batch_triggered",
    "batch_completed",
    "batch_triggered",
    "batch_completed",
    "ingestion_completed",
];

#[tokio::test]
async fn a_listener_sees_every_step_of_an_ingestion_in_order() {
    let app = spawn_app(&[]).await;
    let mut events = SseReader::new(stream(&app, "/events", None).await);
    let id = app
        .ingest(r#"{"ids": [1, 2, 3, 4], "priority": "HIGH"}"#)
        .await;

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(events.next().await);
    }
    let names: Vec<&str> = seen.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(names, LIFE_OF_TWO_BATCHES);
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
    for m in &seen {
        assert_eq!(m.data["type"], m.event);
        assert_eq!(m.data["id"], m.id);
        assert_eq!(m.data["ingestion_id"], id);
    }
    assert_eq!(seen[0].data["batches"], 2);
    assert_eq!(seen[3].data["position"], 1);
}

#[tokio::test]
async fn a_client_reconnecting_with_last_event_id_gets_exactly_what_it_missed() {
    let app = spawn_app(&[]).await;
    let mut first = SseReader::new(stream(&app, "/events", None).await);
    app.ingest(r#"{"ids": [1, 2, 3, 4], "priority": "LOW"}"#)
        .await;
    let mut all = Vec::new();
    for _ in 0..6 {
        all.push(first.next().await);
    }
    drop(first);

    let mut resumed = SseReader::new(stream(&app, "/events", Some(all[1].id)).await);
    for expected in &all[2..] {
        let m = resumed.next().await;
        assert_eq!((m.id, &m.event), (expected.id, &expected.event));
    }
}

#[tokio::test]
async fn a_first_connection_can_start_after_the_event_its_page_reflects() {
    let app = spawn_app(&[]).await;
    app.ingest(r#"{"ids": [1], "priority": "LOW"}"#).await;
    let snapshot = app.get_json("/ingestions").await;
    let after = snapshot["last_event_id"].as_u64().unwrap();
    assert!(after >= 1);
    let mut events =
        SseReader::new(stream(&app, &format!("/events?after={}", after - 1), None).await);
    assert_eq!(events.next().await.id, after);

    let res = stream(&app, "/events?after=soon", None).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query");
}

#[tokio::test]
async fn an_ingestions_stream_replays_its_own_events_only() {
    let app = spawn_app(&[]).await;
    let mine = app
        .ingest(r#"{"ids": [1, 2, 3, 4], "priority": "MEDIUM"}"#)
        .await;
    let other = app.ingest(r#"{"ids": [5], "priority": "HIGH"}"#).await;
    let mut events = SseReader::new(stream(&app, &format!("/status/{mine}/events"), None).await);
    for name in LIFE_OF_TWO_BATCHES {
        let m = events.next().await;
        assert_eq!(m.event, name);
        assert_eq!(m.data["ingestion_id"], mine);
        assert_ne!(m.data["ingestion_id"], other);
    }
}

#[tokio::test]
async fn event_streams_refuse_unknown_ingestions_and_bad_resume_ids() {
    let app = spawn_app(&[]).await;
    let res = stream(
        &app,
        &format!("/status/{}/events", uuid::Uuid::new_v4()),
        None,
    )
    .await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let res = app
        .client
        .get(format!("{}/events", app.base))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_last_event_id");
}
