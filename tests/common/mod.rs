//! Helpers shared by the HTTP-level tests: a server on port 0 with a fresh database.

#![allow(dead_code)]

use clap::Parser;
use sluice::server::{application::Application, config::Cli};
use std::{path::PathBuf, time::Duration};

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Start a real server on 127.0.0.1:0 over a fresh SQLite file, with `extra` flags on top of
/// fast test settings.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sluice.db");
    let url = format!("sqlite://{}", db_path.display());
    let mut args = vec![
        "sluice",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--rate-interval",
        "50ms",
        "--simulated-work",
        "10ms",
    ];
    args.extend_from_slice(extra);
    let settings = Cli::try_parse_from(args).unwrap().into_settings().unwrap();
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        base,
        client: reqwest::Client::new(),
        db_path,
        _dir: dir,
    }
}

impl TestApp {
    pub async fn post_ingest(&self, body: &str) -> reqwest::Response {
        self.post_json("/ingest", body).await
    }

    /// POST a body declared as JSON (sent as given, so malformed bodies can be tested).
    pub async fn post_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Submit an ingestion that must be accepted; its id.
    pub async fn ingest(&self, body: &str) -> String {
        let res = self.post_ingest(body).await;
        assert_eq!(res.status(), 200, "{body}");
        res.json::<serde_json::Value>().await.unwrap()["ingestion_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// GET a JSON route that must answer 200; its body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        res.json().await.unwrap()
    }

    pub async fn get_status(&self, id: &str) -> reqwest::Response {
        self.get(&format!("/status/{id}")).await
    }

    /// GET a path of the server.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// Rows in a table of the test's database, read behind the server's back.
    pub fn count(&self, table: &str) -> i64 {
        let conn = rusqlite::Connection::open(&self.db_path).unwrap();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// Poll the status until `done` holds or the deadline passes (the test then fails).
    pub async fn wait_for_status(
        &self,
        id: &str,
        deadline: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let status: serde_json::Value = self.get_status(id).await.json().await.unwrap();
            if done(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "status never reached the expected state: {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One Server-Sent Events message: its id, event name and JSON data.
#[derive(Debug, Clone)]
pub struct SseMessage {
    pub id: u64,
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads SSE messages from a streaming response (heartbeat comments are skipped).
pub struct SseReader {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next message; fails the test if none arrives within 10 s.
    pub async fn next(&mut self) -> SseMessage {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    return SseMessage { id, event, data };
                }
                continue; // a comment (heartbeat)
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream stays open")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
