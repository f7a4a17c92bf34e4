//! Crash rounds: the real binary under concurrent ingestion, killed with SIGKILL at random
//! moments and restarted on the same store, round after round. After every restart each
//! acknowledged ingestion is there and intact; requests left unanswered by a kill are retried
//! with their `Idempotency-Key` and never create a second ingestion; in the end every batch
//! completes (at least once, none skipped) and no two starts were closer than the interval,
//! across all the restarts.
//!
//! `SLUICE_CRASH_ROUNDS` sets the rounds (5 by default, as the test command runs it;
//! `scripts/crash` runs 25 on each store). `SLUICE_CRASH_SEED` replays a run's kill times.

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/process.rs"]
mod process;

use serde_json::{json, Value};
use sluice::domain::EventBody;
use sluice::server::{application::open_store, config::parse_database_url};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const INTERVAL_MS: i64 = 5;
const WRITERS: u64 = 8;

/// A request as a client sent it: retried with the same key until it is answered.
#[derive(Clone, Debug)]
struct Request {
    key: String,
    ids: Vec<u64>,
    priority: &'static str,
}

#[derive(Default)]
struct Ledger {
    /// key → (ingestion id, the request), once answered 200.
    acked: HashMap<String, (String, Request)>,
    /// Sent but unanswered when the server died.
    unanswered: Vec<Request>,
    next: u64,
}

/// xorshift64*: enough randomness for kill times, replayable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rounds() -> usize {
    std::env::var("SLUICE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn seed() -> u64 {
    std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// Post one request; `None` when the server did not answer (it was killed).
async fn send(client: &reqwest::Client, base: &str, request: &Request) -> Option<String> {
    let res = client
        .post(format!("{base}/ingest"))
        .header("idempotency-key", &request.key)
        .json(&json!({"ids": request.ids, "priority": request.priority}))
        .send()
        .await
        .ok()?;
    let status = res.status();
    let body: Value = res.json().await.ok()?;
    assert_eq!(status, 200, "{request:?} was refused: {body}");
    Some(body["ingestion_id"].as_str().unwrap().to_owned())
}

/// Record an answer; a replayed key must answer the ingestion it answered before.
fn record(ledger: &Mutex<Ledger>, request: Request, id: String) {
    let mut ledger = ledger.lock().unwrap();
    if let Some((first, _)) = ledger.acked.get(&request.key) {
        assert_eq!(first, &id, "key {} answered two ingestions", request.key);
    }
    ledger.acked.insert(request.key.clone(), (id, request));
}

/// Writers post until the server dies: first the requests a kill left unanswered, then new ones.
fn writers(
    client: &reqwest::Client,
    base: &str,
    ledger: &Arc<Mutex<Ledger>>,
    seed: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let (client, base, ledger) = (client.clone(), base.to_owned(), ledger.clone());
            let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tokio::spawn(async move {
                loop {
                    let request = {
                        let mut l = ledger.lock().unwrap();
                        l.unanswered.pop().unwrap_or_else(|| {
                            l.next += 1;
                            let n = l.next;
                            Request {
                                key: format!("crash-{n}"),
                                ids: (0..1 + rng.below(8)).map(|k| n * 100 + k + 1).collect(),
                                priority: ["HIGH", "MEDIUM", "LOW"][rng.below(3) as usize],
                            }
                        })
                    };
                    match send(&client, &base, &request).await {
                        Some(id) => record(&ledger, request, id),
                        None => {
                            ledger.lock().unwrap().unanswered.push(request);
                            return;
                        }
                    }
                    // Steady load rather than a flood, so the final drain stays short.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect()
}

/// Every acknowledged ingestion is there with its priority and its IDs in order.
async fn assert_intact(client: &reqwest::Client, base: &str, ledger: &Mutex<Ledger>) {
    let acked: Vec<(String, Request)> = ledger.lock().unwrap().acked.values().cloned().collect();
    for (id, request) in acked {
        let res = client
            .get(format!("{base}/status/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged ingestion {id} was lost");
        let view: Value = res.json().await.unwrap();
        let ids: Vec<u64> = view["batches"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["ids"].as_array().unwrap().clone())
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ids, request.ids, "ingestion {id} changed");
    }
}

async fn crash_rounds(database_url: &str, extra: &[&str]) {
    let seed = seed();
    let rounds = rounds();
    println!("{rounds} crash rounds on {database_url}, SLUICE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let interval = format!("{INTERVAL_MS}ms");
    let mut args = vec![
        "--rate-interval",
        interval.as_str(),
        "--simulated-work",
        "3ms",
        "--batch-size",
        "1000",
    ];
    args.extend_from_slice(extra);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let ledger: Arc<Mutex<Ledger>> = Arc::default();

    for round in 0..rounds {
        let mut server = process::start(database_url, &args).await;
        assert_intact(&client, &server.base, &ledger).await;
        let load = writers(&client, &server.base, &ledger, rng.next());
        tokio::time::sleep(Duration::from_millis(150 + rng.below(450))).await;
        server.kill().await;
        for writer in load {
            writer.await.unwrap();
        }
        let l = ledger.lock().unwrap();
        println!(
            "round {}: {} acknowledged so far, {} unanswered at the kill",
            round + 1,
            l.acked.len(),
            l.unanswered.len()
        );
    }

    // The last life: answer what was left unanswered, then let everything run to the end.
    let mut server = process::start(database_url, &args).await;
    assert_intact(&client, &server.base, &ledger).await;
    let unanswered = std::mem::take(&mut ledger.lock().unwrap().unanswered);
    for request in unanswered {
        let id = send(&client, &server.base, &request)
            .await
            .expect("the server answers");
        record(&ledger, request, id);
    }
    let acked: Vec<(String, Request)> = ledger.lock().unwrap().acked.values().cloned().collect();
    assert!(
        acked.len() >= 20 * rounds,
        "too little load to prove anything: {} acknowledged",
        acked.len()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    for (id, request) in &acked {
        loop {
            let view: Value = client
                .get(format!("{}/status/{id}", server.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if view["status"] == "completed" {
                for batch in view["batches"].as_array().unwrap() {
                    assert_eq!(batch["status"], "completed", "{view}");
                    assert_eq!(
                        batch["results"].as_array().unwrap().len(),
                        batch["ids"].as_array().unwrap().len(),
                        "every ID has its result: {view}"
                    );
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} ({:?}) never completed: {view}",
                request.key
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    server.kill().await;

    // From the store itself: no ingestion twice, and the rate limit held across every life.
    let store = open_store(&parse_database_url(database_url).unwrap(), 2)
        .await
        .unwrap();
    let stored = store.recent_ingestions(1_000_000).await.unwrap();
    assert_eq!(
        stored.len(),
        acked.len(),
        "one stored ingestion per request, however often it was retried"
    );
    let starts: Vec<i64> = store
        .events_after(0, None, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.body, EventBody::BatchTriggered { .. }))
        .map(|e| e.at.as_micros())
        .collect();
    let batches: usize = stored.iter().map(|i| i.batches.len()).sum();
    assert!(starts.len() >= batches, "every batch started at least once");
    let closest = starts.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(
        closest >= INTERVAL_MS * 1000,
        "two starts {closest} µs apart, under the {INTERVAL_MS} ms interval"
    );
    println!(
        "{} ingestions, {batches} batches, {} starts ({} again after a kill), closest starts {closest} µs apart",
        acked.len(),
        starts.len(),
        starts.len() - batches
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_rounds_under_load_on_sqlite_lose_nothing_duplicate_nothing_and_keep_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
    crash_rounds(&url, &[]).await;
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_rounds_under_load_on_postgres_lose_nothing_duplicate_nothing_and_keep_the_rate() {
    let db = postgres::fresh_database().await;
    // A killed process's batch is taken over when its lease runs out.
    crash_rounds(&db.url, &["--lease", "500ms"]).await;
}
