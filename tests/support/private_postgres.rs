//! A PostgreSQL server of the test's own (initdb, pg_ctl from `pg_config --bindir`), for what
//! must not happen to the shared one: crashing it. Its WAL writer sleeps 10 s between rounds,
//! so WAL that no commit flushed is still in the server's memory when it crashes, and lost.
//! Like every PostgreSQL test it runs when `SLUICE_TEST_POSTGRES` is set (the binaries come
//! with that server's installation), and fails, never skips, when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivateServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Run a server binary as the user that may own a data directory (root may not).
fn as_owner(bin: &Path, args: &[&str]) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    match is_root {
        true => {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(bin).args(args);
            command
        }
        false => {
            let mut command = Command::new(bin);
            command.args(args);
            command
        }
    }
}

fn run(mut command: Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivateServer {
    /// A new server, initialised and started on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let out = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config (PostgreSQL's server installation) is needed for this test");
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let dir = tempfile::tempdir().unwrap();
        // Readable by the server's user, whoever creates it.
        run(
            {
                let mut c = Command::new("chmod");
                c.args(["777"]).arg(dir.path());
                c
            },
            "chmod",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self { dir, bin, port };
        let data = server.data();
        run(
            as_owner(
                &server.bin.join("initdb"),
                &["-D", &data, "-A", "trust", "-U", "root", "--no-sync"],
            ),
            "initdb",
        );
        server.up();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Start (again, after a crash: it recovers from its WAL first).
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c wal_writer_delay=10000 \
             -c max_connections=40 -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        run(
            as_owner(
                &self.bin.join("pg_ctl"),
                &[
                    "-D",
                    &self.data(),
                    "-o",
                    &options,
                    "-l",
                    &log,
                    "-w",
                    "start",
                ],
            ),
            "pg_ctl start",
        );
    }

    /// Stop at once, as a crash does: no checkpoint, WAL in memory is lost.
    pub fn crash(&self) {
        run(
            as_owner(
                &self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
            ),
            "pg_ctl stop -m immediate",
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://root@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = as_owner(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "stop"],
        )
        .output();
    }
}
