//! Reading: status in the reference's shape, lists, predictions, unknown ids.

use super::*;

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
            "status",
            "tenant"
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
async fn an_unknown_or_malformed_ingestion_id_is_404() {
    let app = spawn_app(&[]).await;
    for id in [
        uuid::Uuid::new_v4().to_string().as_str(),
        "not-a-uuid",
        "123",
        "%20",
        // Not UTF-8 once decoded: the same answer, not a plain-text 400.
        "%FF",
        "%C3%28",
    ] {
        let res = app.get_status(id).await;
        assert_eq!(res.status(), 404, "{id}");
        assert_error(&res.json().await.unwrap(), "not_found");
        let res = app.get(&format!("/status/{id}/results")).await;
        assert_eq!(res.status(), 404, "{id}/results");
        assert_error(&res.json().await.unwrap(), "not_found");
    }
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
            {"priority": "HIGH", "batches": 0, "tenants": [], "other_tenants": 0},
            {"priority": "MEDIUM", "batches": 0, "tenants": [], "other_tenants": 0},
            {"priority": "LOW", "batches": 2, "tenants": [{"tenant": "default", "batches": 2}],
             "other_tenants": 0}
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

#[tokio::test]
async fn under_tenant_fairness_the_status_predicts_the_round_robin_and_the_queue_lists_tenants() {
    let app = spawn_app(&["--fairness", "tenant", "--rate-interval", "1h"]).await;
    let big = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "priority": "MEDIUM", "tenant": "big"}"#)
        .await;
    let first = app
        .wait_for_status(&big, Duration::from_secs(10), |s| {
            s["batches"][0]["status"] == "completed"
        })
        .await;
    let started =
        Timestamp::parse_rfc3339(first["batches"][0]["started_at"].as_str().unwrap()).unwrap();
    let small = app
        .ingest(r#"{"ids": [101, 102, 103, 104], "priority": "MEDIUM", "tenant": "small"}"#)
        .await;
    let hour = Duration::from_secs(3600);
    let starts = |status: Value| -> Vec<Option<Timestamp>> {
        status["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                b["predicted_start"]
                    .as_str()
                    .and_then(Timestamp::parse_rfc3339)
            })
            .collect()
    };
    let at = |slots: u32| Some(started.plus(hour * slots));
    // "small" never started, so it goes at the next slot; then they alternate, and "big"
    // finishes alone: big 1 (started), small 1, big 2, small 2, big 3, big 4.
    let small_status = app.get_json(&format!("/status/{small}")).await;
    assert_eq!(starts(small_status.clone()), [at(1), at(3)]);
    assert_eq!(
        starts(app.get_json(&format!("/status/{big}")).await),
        [None, at(2), at(4), at(5)]
    );
    assert_eq!(
        small_status["predicted_completion"]
            .as_str()
            .and_then(Timestamp::parse_rfc3339),
        Some(started.plus(hour * 3).plus(Duration::from_millis(10)))
    );
    // The dashboard's list predicts the same.
    let listed = app.get_json("/ingestions").await;
    let small_listed = listed["ingestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ingestion_id"] == small.as_str())
        .unwrap()
        .clone();
    assert_eq!(starts(small_listed), [at(1), at(3)]);

    let queue = app.get_json("/queue").await;
    assert_eq!(
        queue["waiting"][1],
        json!({"priority": "MEDIUM", "batches": 5, "other_tenants": 0,
               "tenants": [{"tenant": "big", "batches": 3}, {"tenant": "small", "batches": 2}]})
    );
}

#[tokio::test]
async fn the_list_filters_by_priority_and_status_and_pages_to_older_ingestions() {
    // A long interval: the first HIGH starts, everything else waits.
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    let high = app.ingest(r#"{"ids": [1], "priority": "HIGH"}"#).await;
    let low = app.ingest(r#"{"ids": [2], "priority": "LOW"}"#).await;
    let medium = app.ingest(r#"{"ids": [3], "priority": "MEDIUM"}"#).await;
    let newest = app.ingest(r#"{"ids": [4], "priority": "LOW"}"#).await;
    app.wait_for_status(&high, Duration::from_secs(10), |s| {
        s["batches"][0]["status"] != "yet_to_start"
    })
    .await;
    let listed = |query: String| {
        let app = &app;
        async move {
            let body = app.get_json(&format!("/ingestions{query}")).await;
            body["ingestions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["ingestion_id"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(
        listed("?priority=LOW".into()).await,
        [newest.as_str(), low.as_str()]
    );
    assert_eq!(
        listed("?status=yet_to_start".into()).await,
        [newest.as_str(), medium.as_str(), low.as_str()]
    );
    // The HIGH one has started: it is not waiting, whatever it is now.
    assert!(listed("?status=yet_to_start&priority=HIGH".into())
        .await
        .is_empty());
    // "Older": each page starts after the last one shown.
    assert_eq!(
        listed("?limit=2".into()).await,
        [newest.as_str(), medium.as_str()]
    );
    assert_eq!(
        listed(format!("?limit=2&before={medium}")).await,
        [low.as_str(), high.as_str()]
    );
    assert!(listed(format!("?limit=2&before={high}")).await.is_empty());
    // The server function takes the same conditions.
    let res = app
        .post_json("/api/ingestions", r#"{"limit": 5, "priority": "MEDIUM"}"#)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ingestions"][0]["ingestion_id"], medium.as_str());
    assert_eq!(body["ingestions"].as_array().unwrap().len(), 1);
    // A condition that names nothing is refused, never ignored.
    for query in [
        "?priority=URGENT",
        "?status=done",
        "?before=yesterday",
        "?status=%FF",
    ] {
        let res = app.get(&format!("/ingestions{query}")).await;
        assert_eq!(res.status(), 400, "{query}");
        assert_error(&res.json().await.unwrap(), "invalid_query");
    }
    let res = app
        .post_json("/api/ingestions", r#"{"limit": 5, "status": "finished"}"#)
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_query");
}

#[tokio::test]
async fn a_search_finds_an_ingestion_by_its_short_id_its_whole_id_or_a_batch_id() {
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    let first = app
        .ingest(r#"{"ids": [1, 2, 3, 4], "priority": "LOW"}"#)
        .await;
    let second = app.ingest(r#"{"ids": [5], "priority": "LOW"}"#).await;
    let find = |query: String| {
        let app = &app;
        async move {
            app.post_json("/api/find", &json!({ "query": query }).to_string())
                .await
        }
    };
    let found = |query: String| {
        let find = &find;
        async move {
            let res = find(query.clone()).await;
            assert_eq!(res.status(), 200, "{query}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(keys(&body), vec!["ingestions"]);
            body["ingestions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    // The 8 characters a card shows are the id's last 8, in any case, with spaces around.
    let short = &second[second.len() - 8..];
    assert_eq!(
        found(format!(" {} ", short.to_uppercase())).await,
        [second.as_str()]
    );
    assert_eq!(found(first.clone()).await, [first.as_str()]);
    let status: Value = app.get_status(&first).await.json().await.unwrap();
    let batch = status["batches"][1]["batch_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        found(batch).await,
        [first.as_str()],
        "a batch's id finds its ingestion"
    );
    assert!(found(uuid::Uuid::new_v4().to_string()).await.is_empty());
    for bad in ["", "abc", "not an id", "0123456789abcdef0"] {
        let res = find(bad.to_owned()).await;
        assert_eq!(res.status(), 400, "{bad:?}");
        // A server function answers the error itself, `{code, message}`.
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_query");
    }
}

#[tokio::test]
async fn an_ingestion_page_shows_a_page_of_its_batches_with_the_predictions_of_its_status() {
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    let ids: Vec<u64> = (1..=900).collect();
    let id = app
        .ingest(&json!({"ids": ids, "priority": "MEDIUM"}).to_string())
        .await;
    // The first batch done, nothing runs: both reads below see the same queue.
    app.wait_for_status(&id, Duration::from_secs(10), |s| {
        s["batches"][0]["status"] == "completed"
    })
    .await;
    let page = |from: u32| {
        let app = &app;
        let id = id.clone();
        async move {
            let res = app
                .post_json(
                    "/api/ingestion",
                    &json!({"ingestion_id": id, "from": from}).to_string(),
                )
                .await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let body = page(200).await;
    assert_eq!(
        keys(&body),
        vec!["ingestion", "last_event_id", "now", "page_size"]
    );
    assert_eq!(body["page_size"], 100);
    let ingestion = &body["ingestion"];
    assert_eq!(ingestion["ingestion_id"], id.as_str());
    assert_eq!(ingestion["batch_count"], 300);
    assert_eq!(ingestion["first_shown"], 200);
    let batches = ingestion["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 100);
    assert_eq!(batches[0]["ids"], json!([601, 602, 603]));
    // Each waiting batch's predicted start is the one its status gives.
    let status: Value = app.get_status(&id).await.json().await.unwrap();
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(
            batch["predicted_start"],
            status["batches"][200 + i]["predicted_start"],
            "batch {}",
            200 + i
        );
    }
    // The last page is short, and one past the end shows the last batch.
    assert_eq!(
        page(250).await["ingestion"]["batches"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    assert_eq!(page(5000).await["ingestion"]["first_shown"], 299);
    let res = app
        .post_json(
            "/api/ingestion",
            &json!({"ingestion_id": uuid::Uuid::new_v4(), "from": 0}).to_string(),
        )
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "not_found");
}

#[tokio::test]
async fn the_pace_shows_every_start_in_the_window_and_the_waiting_depth_now() {
    // 50 ms: the window is its shortest, 10 s.
    let app = spawn_app(&[]).await;
    let id = app
        .ingest(r#"{"ids": [1, 2, 3, 4, 5, 6, 7, 8, 9], "priority": "MEDIUM"}"#)
        .await;
    let status = app
        .wait_for_status(&id, Duration::from_secs(10), |s| s["status"] == "completed")
        .await;
    let res = app.post_json("/api/pace", "{}").await;
    assert_eq!(res.status(), 200);
    let pace: Value = res.json().await.unwrap();
    assert_eq!(
        keys(&pace),
        vec![
            "depth",
            "last_event_id",
            "now",
            "paused",
            "rate_interval_ms",
            "starts",
            "truncated",
            "window_ms"
        ]
    );
    assert_eq!(pace["window_ms"], 10_000);
    assert_eq!(pace["rate_interval_ms"], 50);
    assert_eq!(pace["truncated"], false);
    // Every batch's start, oldest first, as its status gives it.
    let marks: Vec<(Value, Value)> = pace["starts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["batch_id"].clone(), m["at"].clone()))
        .collect();
    let batches: Vec<(Value, Value)> = status["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["batch_id"].clone(), b["started_at"].clone()))
        .collect();
    assert_eq!(marks, batches);
    assert!(pace["starts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["priority"] == "MEDIUM"));
    // The depth ends with the depth now: nothing waits.
    let last = pace["depth"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["at"], pace["now"]);
    assert_eq!(
        (
            last["high"].clone(),
            last["medium"].clone(),
            last["low"].clone()
        ),
        (json!(0), json!(0), json!(0))
    );
}
