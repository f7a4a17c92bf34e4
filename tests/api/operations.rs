//! Operating: pause and resume, cancel, the rate at run time.

use super::*;

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
    for bad in [
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".to_owned(),
        "%FF".to_owned(),
    ] {
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
    assert_eq!(queue["rate_overridden"], true);

    // The dashboard's server function follows the same rules.
    let call = |args: Value| {
        app.client
            .post(format!("{}/api/rate", app.base))
            .json(&args)
            .send()
    };
    let res = call(json!({"rate_interval": "3s"})).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), 3000);
    let res = call(json!({"rate_interval": "fast"})).await.unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "invalid_rate_interval"
    );
    assert_eq!(app.get_json("/queue").await["rate_interval_ms"], 3000);

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
    assert_eq!(app.get_json("/queue").await["rate_overridden"], false);
    // Set and cleared through the server function alone; nothing (or a typo) clears nothing.
    call(json!({"rate_interval": "4s"})).await.unwrap();
    for (args, status) in [
        (json!({}), 400),
        (json!({"interval": null}), 400),
        (json!({"rate_interval": 5}), 422),
    ] {
        assert_eq!(call(args.clone()).await.unwrap().status(), status, "{args}");
    }
    assert_eq!(app.get_json("/queue").await["rate_interval_ms"], 4000);
    let res = call(json!({"rate_interval": null})).await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), 50);
    assert_eq!(app.get_json("/queue").await["rate_overridden"], false);
}
