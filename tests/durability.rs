//! The real binary, killed with SIGKILL: nothing acknowledged is lost, and a batch that was in
//! flight at the kill is dispatched again and completes.

#[path = "support/process.rs"]
mod process;

use process::Process;
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Start `sluice serve` on the SQLite file `db` and wait until it is ready.
async fn start(db: &Path, extra: &[&str]) -> Process {
    process::start(&format!("sqlite://{}", db.display()), extra).await
}

/// GET a JSON body.
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Poll a status URL until `done` holds; fail after 10 s.
async fn wait_for(client: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        last = get_json(client, url).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never reached the expected state: {last}");
}

/// Submit an ingestion and return its id.
async fn ingest(server: &Process, client: &reqwest::Client, body: Value) -> String {
    let res = client
        .post(format!("{}/ingest", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["ingestion_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_ingestion_survives_sigkill_during_concurrent_ingestion() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sluice.db");
    let mut server = start(&db, &["--rate-interval", "1h"]).await;
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();

    // 32 clients post as fast as they can; the server is killed while they do.
    let writers: Vec<_> = (0..32u64)
        .map(|worker| {
            let (client, base, acked) = (client.clone(), server.base.clone(), acked.clone());
            tokio::spawn(async move {
                for n in 0u64.. {
                    let ids: Vec<u64> =
                        (0..5).map(|k| worker * 1_000_000 + n * 5 + k + 1).collect();
                    let priority = ["HIGH", "MEDIUM", "LOW"][(n % 3) as usize];
                    let body = json!({"ids": ids, "priority": priority});
                    let Ok(res) = client
                        .post(format!("{base}/ingest"))
                        .json(&body)
                        .send()
                        .await
                    else {
                        return; // the server is gone
                    };
                    if res.status() != 200 {
                        return;
                    }
                    let Ok(body) = res.json::<Value>().await else {
                        return;
                    };
                    let id = body["ingestion_id"].as_str().unwrap().to_owned();
                    acked.lock().unwrap().insert(id, ids);
                }
            })
        })
        .collect();

    // Kill once a good number of acknowledgements are in (or after a bounded time).
    for _ in 0..200 {
        if acked.lock().unwrap().len() >= 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.kill().await;
    for w in writers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 100,
        "too few acknowledgements to prove anything: {}",
        acked.len()
    );

    let mut server = start(&db, &["--rate-interval", "1h"]).await;
    for (id, ids) in &acked {
        let res = client
            .get(format!("{}/status/{id}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged ingestion {id} was lost");
        let status: Value = res.json().await.unwrap();
        let stored: Vec<u64> = status["batches"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
            })
            .collect();
        assert_eq!(&stored, ids, "ingestion {id} changed");
    }
    // Ingestions stored but not acknowledged (killed mid-response) may exist; none twice.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM ingestions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, distinct);
    assert!(rows as usize >= acked.len());
    println!(
        "{} acknowledged ingestions all intact after SIGKILL ({rows} stored)",
        acked.len()
    );
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_at_sigkill_is_dispatched_again_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sluice.db");
    let client = reqwest::Client::new();
    let mut server = start(&db, &["--rate-interval", "300ms", "--simulated-work", "1h"]).await;
    let id = ingest(
        &server,
        &client,
        json!({"ids": [1, 2, 3, 4], "priority": "HIGH"}),
    )
    .await;
    let status_url = format!("{}/status/{id}", server.base);
    let before = wait_for(&client, &status_url, |s| {
        s["batches"][0]["status"] == "triggered"
    })
    .await;
    server.kill().await;

    let mut server = start(
        &db,
        &["--rate-interval", "300ms", "--simulated-work", "10ms"],
    )
    .await;
    let status_url = format!("{}/status/{id}", server.base);
    let after = wait_for(&client, &status_url, |s| s["status"] == "completed").await;
    let started = |v: &Value, i: usize| {
        chrono::DateTime::parse_from_rfc3339(v["batches"][i]["started_at"].as_str().unwrap())
            .unwrap()
    };
    // Re-dispatched (a new start), at least one interval after the start before the kill,
    // and still ahead of the batch that never started.
    assert!(started(&after, 0) - started(&before, 0) >= chrono::Duration::milliseconds(300));
    assert!(started(&after, 1) - started(&after, 0) >= chrono::Duration::milliseconds(300));
    assert_eq!(
        after["batches"][0]["results"][0],
        json!({"id": 1, "data": "processed"})
    );
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_rate_and_cancellations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sluice.db");
    let client = reqwest::Client::new();
    let flags = ["--rate-interval", "50ms", "--simulated-work", "10ms"];
    let mut server = start(&db, &flags).await;
    let admin = |server: &Process, method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, format!("{}/admin/{path}", server.base))
            .json(&body)
            .send()
    };
    let res = admin(&server, reqwest::Method::POST, "pause", json!({}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = admin(
        &server,
        reqwest::Method::PUT,
        "rate",
        json!({"rate_interval": "300ms"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let kept = ingest(
        &server,
        &client,
        json!({"ids": [1, 2, 3, 4], "priority": "LOW"}),
    )
    .await;
    let dropped = ingest(
        &server,
        &client,
        json!({"ids": [5, 6, 7], "priority": "HIGH"}),
    )
    .await;
    let res = client
        .post(format!("{}/ingest/{dropped}/cancel", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server.kill().await;

    let mut server = start(&db, &flags).await;
    let queue: Value = get_json(&client, &format!("{}/queue", server.base)).await;
    assert_eq!(queue["paused"], true);
    assert_eq!(queue["rate_interval_ms"], 300);
    // Still paused after the restart: nothing starts.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status_url = |id: &str| format!("{}/status/{id}", server.base);
    let waiting: Value = get_json(&client, &status_url(&kept)).await;
    assert_eq!(waiting["status"], "yet_to_start");

    let res = admin(&server, reqwest::Method::POST, "resume", json!({}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let done = wait_for(&client, &status_url(&kept), |s| s["status"] == "completed").await;
    let started = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(done["batches"][i]["started_at"].as_str().unwrap())
            .unwrap()
    };
    // The run-time interval, not the configured 50 ms, spaced the two batches.
    assert!(started(1) - started(0) >= chrono::Duration::milliseconds(300));
    let cancelled: Value = get_json(&client, &status_url(&dropped)).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["batches"][0]["started_at"], Value::Null);
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_batch_in_hand_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sluice.db");
    let client = reqwest::Client::new();
    let mut server = start(
        &db,
        &["--rate-interval", "100ms", "--simulated-work", "1500ms"],
    )
    .await;
    let id = ingest(
        &server,
        &client,
        json!({"ids": [1, 2, 3, 4], "priority": "LOW"}),
    )
    .await;
    let status_url = format!("{}/status/{id}", server.base);
    wait_for(&client, &status_url, |s| {
        s["batches"][0]["status"] == "triggered"
    })
    .await;

    // An open event stream must not hold the shutdown up.
    let listener = client
        .get(format!("{}/events", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(listener.status(), 200);

    let exit = server
        .terminate(Duration::from_secs(10))
        .await
        .expect("sluice exits within the shutdown grace");
    assert!(exit.success(), "{exit:?}");
    drop(listener);

    // The batch in hand finished; nothing new was started after the signal.
    let mut server = start(&db, &["--rate-interval", "1h"]).await;
    let after: Value = get_json(&client, &format!("{}/status/{id}", server.base)).await;
    assert_eq!(after["batches"][0]["status"], "completed", "{after}");
    assert_eq!(after["batches"][1]["status"], "yet_to_start", "{after}");
    server.kill().await;
}
