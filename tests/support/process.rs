//! The real `sluice` binary as a child process: started on a database URL, waited for until
//! `/readyz` answers 200, its log kept, and killed with SIGKILL (no shutdown hook, no flush).

use std::{
    net::TcpListener,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub struct Process {
    child: Child,
    pub base: String,
    /// Its log lines, as they come (`RUST_LOG=info`, no colours). Not every test reads them.
    #[allow(dead_code)]
    pub log: Arc<Mutex<Vec<String>>>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `sluice serve` on `database_url` with `extra` arguments; answer once it is ready.
pub async fn start(database_url: &str, extra: &[&str]) -> Process {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the sluice binary starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..1500 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == 200 {
                return Process { child, base, log };
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "sluice on {base} never became ready: {:?}",
        log.lock().unwrap()
    );
}

impl Process {
    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Send a signal by name (`STOP`, `CONT`, …) without waiting for anything.
    #[allow(dead_code)]
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {pid}");
    }

    /// SIGTERM (a graceful shutdown), and the exit status once it is gone, if within `within`.
    #[allow(dead_code)]
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(Result::unwrap)
    }
}
