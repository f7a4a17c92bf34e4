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
    let settings = Cli::try_parse_from(args).unwrap().into_settings();
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
        self.client
            .post(format!("{}/ingest", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn get_status(&self, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/status/{id}", self.base))
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
