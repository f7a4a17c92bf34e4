//! Three real `sluice` processes on one fresh PostgreSQL database: one queue, one rate limit,
//! events across replicas, a batch rescued after its replica is killed with SIGKILL, and the
//! reference downstream applying every batch exactly once while replicas are killed and
//! paused.

mod common;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/process.rs"]
mod process;

use common::SseReader;
use process::Process as Replica;
use serde_json::{json, Value};
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

const INTERVAL_MS: i64 = 200;

/// Start a replica (a real `sluice serve`) on the shared database.
async fn start(url: &str, extra: &[&str]) -> Replica {
    let mut args = vec!["--database-pool-size", "4"];
    args.extend_from_slice(extra);
    process::start(url, &args).await
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    res.json().await.unwrap()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let res = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    res.json().await.unwrap()
}

/// Wait until every listed ingestion has completed; their final views.
async fn all_completed(client: &reqwest::Client, base: &str, ids: &[String]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut views = Vec::new();
    for id in ids {
        loop {
            let view = get(client, format!("{base}/status/{id}")).await;
            if view["status"] == "completed" {
                views.push(view);
                break;
            }
            assert!(Instant::now() < deadline, "never completed: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    views
}

/// The rows of a two-column query, straight from the database.
async fn pairs<A, B>(sql: &tokio_postgres::Client, query: &str) -> Vec<(A, B)>
where
    A: for<'a> tokio_postgres::types::FromSql<'a>,
    B: for<'a> tokio_postgres::types::FromSql<'a>,
{
    let rows = sql.query(query, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn started_at(batch: &Value) -> i64 {
    let at = batch["started_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp_millis()
}

fn rank(priority: &str) -> u8 {
    match priority {
        "HIGH" => 0,
        "MEDIUM" => 1,
        _ => 2,
    }
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_queue_and_one_rate_limit_and_rescue_a_killed_replicas_batch() {
    let db = postgres::fresh_database().await;
    let client = reqwest::Client::new();
    let interval = format!("{INTERVAL_MS}ms");
    let flags = [
        "--rate-interval",
        &interval,
        "--simulated-work",
        "20ms",
        "--lease",
        "1s",
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(start(&db.url, &flags).await);
    }

    // Hold dispatch while everything is submitted, so the expected order is exact.
    post(
        &client,
        format!("{}/admin/pause", replicas[0].base),
        json!({}),
    )
    .await;
    let watcher = client
        .get(format!("{}/events", replicas[2].base))
        .send()
        .await
        .unwrap();
    let mut watcher = SseReader::new(watcher);

    let priorities = ["LOW", "HIGH", "MEDIUM"];
    let mut submissions = Vec::new();
    for round in 0..4u64 {
        for (r, replica) in replicas.iter().enumerate() {
            let priority = priorities[(round as usize + r) % 3];
            let first = 1 + round * 100 + r as u64 * 10;
            let ids: Vec<u64> = (first..first + 2 + (round + r as u64) % 4).collect();
            let url = format!("{}/ingest", replica.base);
            let body = json!({"ids": ids, "priority": priority});
            let client = client.clone();
            submissions.push(tokio::spawn(async move { post(&client, url, body).await }));
        }
    }
    let mut ids = Vec::new();
    for submission in submissions {
        ids.push(
            submission.await.unwrap()["ingestion_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Acceptance order, oldest first, as any replica lists it.
    let listed = get(
        &client,
        format!("{}/ingestions?limit=100", replicas[1].base),
    )
    .await;
    let accepted: Vec<String> = listed["ingestions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|i| i["ingestion_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(accepted.len(), 12);

    post(
        &client,
        format!("{}/admin/resume", replicas[1].base),
        json!({}),
    )
    .await;
    let views = all_completed(&client, &replicas[2].base, &accepted).await;

    // Every batch started exactly once, and starts are at least the interval apart.
    let mut starts = Vec::new();
    for (order, view) in views.iter().enumerate() {
        let priority = view["priority"].as_str().unwrap();
        for (position, batch) in view["batches"].as_array().unwrap().iter().enumerate() {
            assert_eq!(batch["status"], "completed");
            starts.push((
                started_at(batch),
                (rank(priority), order, position),
                batch["batch_id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    starts.sort();
    let distinct: HashSet<&i64> = starts.iter().map(|(at, _, _)| at).collect();
    assert_eq!(distinct.len(), starts.len(), "two batches started at once");
    for pair in starts.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= INTERVAL_MS, "starts {gap} ms apart: {pair:?}");
    }
    let gaps: Vec<i64> = starts.windows(2).map(|p| p[1].0 - p[0].0).collect();
    eprintln!(
        "{} starts over 3 replicas; gaps min {} ms, max {} ms (interval {INTERVAL_MS} ms)",
        starts.len(),
        gaps.iter().min().unwrap(),
        gaps.iter().max().unwrap()
    );
    // Global priority, then acceptance order, then position: the order they started in.
    let keys: Vec<_> = starts.iter().map(|(_, key, _)| *key).collect();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(keys, expected, "dispatch order");

    // Each start was made by exactly one replica (whichever's claim came first), and the
    // watcher on replica 2 saw each batch start, whichever replica started it.
    let mut starters: HashMap<usize, usize> = HashMap::new();
    for (_, _, batch) in &starts {
        for (i, replica) in replicas.iter().enumerate() {
            let log = replica.log.lock().unwrap();
            if log
                .iter()
                .any(|l| l.contains("batch triggered") && l.contains(batch.as_str()))
            {
                *starters.entry(i).or_default() += 1;
            }
        }
    }
    assert_eq!(
        starters.values().sum::<usize>(),
        starts.len(),
        "each start made by one replica: {starters:?}"
    );
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    while seen.len() < starts.len() {
        let message = watcher.next().await;
        if message.event == "batch_triggered" {
            seen.insert(message.data["batch_id"].as_str().unwrap().to_owned());
        }
        messages.push(message);
    }
    // A client that saw part of the stream on replica 2 resumes on replica 0 where it left off.
    let resume_after = messages[messages.len() / 2].id;
    let resumed = client
        .get(format!("{}/events", replicas[0].base))
        .header("last-event-id", resume_after.to_string())
        .send()
        .await
        .unwrap();
    let mut resumed = SseReader::new(resumed);
    for expected in &messages[messages.len() / 2 + 1..] {
        let message = resumed.next().await;
        assert_eq!((message.id, &message.event), (expected.id, &expected.event));
    }

    // Kill the replica holding a batch mid-flight; another takes it over after the lease.
    for replica in &mut replicas {
        replica.kill().await;
    }
    let slow = [
        "--rate-interval",
        &interval,
        "--simulated-work",
        "4s",
        "--lease",
        "1s",
    ];
    let mut replicas = vec![
        start(&db.url, &slow).await,
        start(&db.url, &slow).await,
        start(&db.url, &slow).await,
    ];
    let id = post(
        &client,
        format!("{}/ingest", replicas[0].base),
        json!({"ids": [7, 8, 9], "priority": "HIGH"}),
    )
    .await["ingestion_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status_url = |base: &str| format!("{base}/status/{id}");
    let batch = loop {
        let view = get(&client, status_url(&replicas[0].base)).await;
        if view["batches"][0]["status"] == "triggered" {
            break view["batches"][0]["batch_id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let holder = loop {
        let found = replicas.iter().position(|r| {
            r.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("batch triggered") && l.contains(batch.as_str()))
        });
        if let Some(i) = found {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut dead = replicas.remove(holder);
    dead.kill().await;
    let killed = Instant::now();
    let killed_at = chrono::Utc::now().timestamp_millis();

    let survivor = &replicas[0].base;
    let rescued = loop {
        let view = get(&client, status_url(survivor)).await;
        if view["batches"][0]["status"] == "completed" {
            break view;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the batch was not rescued: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Started again within the lease (1 s, renewed every third of it) plus scheduling noise.
    let rescued_in = started_at(&rescued["batches"][0]) - killed_at;
    assert!(
        (0..=1_500).contains(&rescued_in),
        "rescued {rescued_in} ms after the kill"
    );
    eprintln!(
        "the killed replica's batch started again {rescued_in} ms after the kill (lease 1 s)"
    );
    let rescuer = replicas
        .iter()
        .position(|r| {
            r.log.lock().unwrap().iter().any(|l| {
                l.contains("batch triggered")
                    && l.contains(batch.as_str())
                    && l.contains("attempt=2")
            })
        })
        .expect("a surviving replica dispatched the batch again");
    assert!(rescued["batches"][0]["results"].as_array().unwrap().len() == 3);
    let _ = rescuer;
    for replica in &mut replicas {
        replica.kill().await;
    }
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_under_concurrent_ingest_keep_the_spacing_and_never_start_a_batch_twice() {
    let db = postgres::fresh_database().await;
    const INTERVAL_US: i64 = 50_000;
    let flags = ["--rate-interval", "50ms", "--simulated-work", "5ms"];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(start(&db.url, &flags).await);
    }
    let client = reqwest::Client::new();
    // Eight submitters per replica, for three seconds, while all three dispatch.
    let until = Instant::now() + Duration::from_secs(3);
    let mut submitters = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for s in 0..8u64 {
            let (client, url) = (client.clone(), format!("{}/ingest", replica.base));
            submitters.push(tokio::spawn(async move {
                let mut accepted = Vec::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    let first = 1 + (r as u64 * 8 + s) * 100 + n % 20 * 5;
                    let priority = ["HIGH", "MEDIUM", "LOW"][(n % 3) as usize];
                    let ids: Vec<u64> = (first..first + 5).collect();
                    let body = json!({"ids": ids, "priority": priority});
                    let view = post(&client, url.clone(), body).await;
                    accepted.push(view["ingestion_id"].as_str().unwrap().to_owned());
                    n += 1;
                }
                accepted
            }));
        }
    }
    let mut accepted = HashSet::new();
    for submitter in submitters {
        accepted.extend(submitter.await.unwrap());
    }
    for replica in &mut replicas {
        replica.terminate(Duration::from_secs(10)).await;
    }

    let sql = db.connect().await;
    // Every acknowledged ingestion is stored, with both of its batches.
    let stored: HashMap<String, i64> = pairs(
        &sql,
        "SELECT i.id::text, COUNT(b.id) FROM ingestions i JOIN batches b ON b.ingestion_seq = i.seq
         GROUP BY i.id",
    )
    .await
    .into_iter()
    .collect();
    eprintln!("{} ingestions accepted", accepted.len());
    assert!(
        accepted.len() > 100,
        "{} ingestions accepted",
        accepted.len()
    );
    for id in &accepted {
        assert_eq!(stored.get(id), Some(&2), "ingestion {id}");
    }
    // Every start recorded, in time order: none within the interval of the previous one, and
    // no batch started more than once.
    let starts: Vec<(i64, i32)> = pairs(
        &sql,
        "SELECT started_at, attempt FROM batches WHERE started_at IS NOT NULL
         ORDER BY started_at",
    )
    .await;
    eprintln!("{} starts", starts.len());
    assert!(starts.len() > 20, "{} starts", starts.len());
    let again: Vec<_> = starts
        .iter()
        .filter(|&&(_, attempt)| attempt != 1)
        .collect();
    assert!(
        again.is_empty(),
        "batches started more than once: {again:?}"
    );
    for pair in starts.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= INTERVAL_US, "two starts {gap} µs apart");
    }
    let triggered: i64 = sql
        .query_one(
            "SELECT COUNT(*) FROM events WHERE body::jsonb->>'type' = 'batch_triggered'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        triggered as usize,
        starts.len(),
        "one batch_triggered per start"
    );
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_status_read_on_one_replica_shows_a_change_made_through_another_at_once() {
    let db = postgres::fresh_database().await;
    let flags = ["--rate-interval", "1h"];
    let (a, b) = (start(&db.url, &flags).await, start(&db.url, &flags).await);
    let client = reqwest::Client::new();
    for round in 0..20u64 {
        let body = json!({"ids": [round + 1, round + 2, round + 3, round + 4], "priority": "LOW"});
        let id = post(&client, format!("{}/ingest", a.base), body).await["ingestion_id"]
            .as_str()
            .unwrap()
            .to_owned();
        // B reads it (and may remember the read), then A changes it.
        let before = get(&client, format!("{}/status/{id}", b.base)).await;
        assert!(before["cancelled_at"].is_null());
        post(&client, format!("{}/ingest/{id}/cancel", a.base), json!({})).await;
        let after = get(&client, format!("{}/status/{id}", b.base)).await;
        assert!(!after["cancelled_at"].is_null(), "round {round}: {after}");
    }
}

/// The reference downstream (`sluice downstream-example`) as a child process; its record file.
async fn reference_downstream(work: &str) -> (tokio::process::Child, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let port = process::free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("downstream-example")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--record", record.to_str().unwrap()])
        .args(["--work", work])
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the downstream example starts");
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, format!("http://127.0.0.1:{port}/batches"), dir);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the downstream example never listened");
}

/// The record's complete lines (`{"event", "key", "attempt"}`): the downstream may be writing
/// the last one while it is read.
fn record_of(dir: &tempfile::TempDir) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.path().join("record.jsonl")).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count(record: &[Value], event: &str, key: &str) -> usize {
    record
        .iter()
        .filter(|l| l["event"] == event && l["key"] == key)
        .count()
}

/// The replica whose log says it dispatched `batch` (attempt 1).
async fn holder_of(replicas: &[Replica], batch: &str) -> usize {
    for _ in 0..500 {
        let found = replicas.iter().position(|r| {
            r.log.lock().unwrap().iter().any(|l| {
                l.contains("batch triggered") && l.contains(batch) && l.contains("attempt=1")
            })
        });
        if let Some(i) = found {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no replica dispatched {batch}");
}

/// Wait until the downstream has received `batch`'s first attempt.
async fn until_received(dir: &tempfile::TempDir, batch: &str) {
    for _ in 0..1_500 {
        if count(&record_of(dir), "received", batch) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the downstream never received {batch}");
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_downstream_that_follows_the_two_rules_applies_every_batch_once_while_replicas_die_and_pause(
) {
    let db = postgres::fresh_database().await;
    let client = reqwest::Client::new();
    // Each batch works 3 s at the downstream, longer than the 1 s lease: a replica killed
    // or paused while its request works loses the batch to another replica, whose request
    // (attempt 2) reaches the downstream while attempt 1 is still working there.
    let (_downstream, url, record) = reference_downstream("3s").await;
    let flags = [
        "--processor",
        "http",
        "--processor-url",
        &url,
        "--processor-timeout",
        "10s",
        "--processor-backoff",
        "0s",
        "--rate-interval",
        "200ms",
        "--lease",
        "1s",
    ];
    let mut replicas = Vec::new();
    for name in ["r0", "r1", "r2"] {
        let mut named = flags.to_vec();
        named.extend(["--replica-name", name]);
        replicas.push(start(&db.url, &named).await);
    }
    let id = post(
        &client,
        format!("{}/ingest", replicas[0].base),
        json!({"ids": [1, 2, 3, 4, 5, 6], "priority": "HIGH"}),
    )
    .await["ingestion_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let view = get(&client, format!("{}/status/{id}", replicas[0].base)).await;
    let batch = |k: usize| view["batches"][k]["batch_id"].as_str().unwrap().to_owned();
    let (first, second) = (batch(0), batch(1));

    // The first batch's replica is killed while the downstream works on its request.
    until_received(&record, &first).await;
    let holder = holder_of(&replicas, &first).await;
    // Its log names it.
    assert!(
        replicas[holder]
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("replica{{name=r{holder}}}"))
                && l.contains("batch triggered")),
        "{:?}",
        replicas[holder].log.lock().unwrap()
    );
    let mut dead = replicas.remove(holder);
    dead.kill().await;

    // The second batch's replica is paused past its lease, then goes on.
    until_received(&record, &second).await;
    let holder = holder_of(&replicas, &second).await;
    replicas[holder].signal("STOP");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    replicas[holder].signal("CONT");

    let reader = &replicas[1 - holder].base;
    let done = all_completed(&client, reader, std::slice::from_ref(&id)).await;
    for batch in done[0]["batches"].as_array().unwrap() {
        let results = batch["results"].as_array().unwrap();
        assert!(
            results.iter().all(|r| r["data"] == "applied"),
            "{results:?}"
        );
    }
    // Some batch reached the downstream twice (attempts 1 and 2 of both, here); each was
    // applied once.
    let lines = record_of(&record);
    for key in [&first, &second] {
        assert_eq!(count(&lines, "applied", key), 1, "{key}: {lines:?}");
        assert!(count(&lines, "received", key) >= 2, "{key}: {lines:?}");
    }
    assert_eq!(
        lines.iter().filter(|l| l["event"] == "applied").count(),
        2,
        "{lines:?}"
    );
    // Each batch's history: attempt 1 cut off (its replica killed, or paused past its lease:
    // nothing recorded, no retry, no failure), then attempt 2 completed: for the killed
    // replica's batch, by another replica. (Which replica takes the paused one's batch over
    // depends on the machine's load: the paused one itself, once resumed, may be first.)
    for key in [&first, &second] {
        let history = get(&client, format!("{reader}/batches/{key}/attempts")).await;
        let attempts = history["attempts"].as_array().unwrap();
        let outcomes: Vec<&str> = attempts
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["cut_off", "completed"], "{history}");
        if key == &first {
            assert_ne!(attempts[0]["replica"], attempts[1]["replica"], "{history}");
        }
    }
    for replica in &mut replicas {
        replica.kill().await;
    }
}
