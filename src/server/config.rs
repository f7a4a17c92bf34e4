//! Configuration: every setting has a flag and an environment variable (flags win), and is
//! validated before anything starts, with a message that names the setting.

use crate::domain::{Fairness, MAX_RATE_INTERVAL, MIN_RATE_INTERVAL};
use crate::server::auth::{read_token_file, Secret, Tokens};
use clap::{Args, Parser, Subcommand};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Priority, rate-limited batch ingestion service with a live dashboard",
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for `serve`, which is what runs when no subcommand is given.
    #[command(flatten)]
    pub serve: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the JSON API and the dashboard (the default).
    Serve(Box<Settings>),
    /// Submit IDs to a running server; prints the ingestion id.
    Ingest(IngestArgs),
    /// Show an ingestion's status; with --watch, follow it until it completes.
    Status(StatusArgs),
    /// Show the queue: depth per priority, the batch in flight, the next slot.
    Queue(ServerArg),
    /// Cancel an ingestion's batches that have not started.
    Cancel(CancelArgs),
    /// Run a reference downstream for `--processor http` that applies every batch exactly
    /// once (it deduplicates by Idempotency-Key and refuses stale attempts with 409),
    /// recording every request and effect in a file.
    DownstreamExample(crate::server::downstream_example::DownstreamArgs),
}

/// Where the server is, for the client commands.
#[derive(Clone, Debug, Args)]
pub struct ServerArg {
    /// Base URL of a running sluice server. A token for a server that needs one is read from
    /// the environment variable SLUICE_TOKEN (never from the command line).
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:3000")]
    pub server: String,
}

#[derive(Clone, Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// HIGH, MEDIUM or LOW.
    #[arg(long, short, default_value = "MEDIUM")]
    pub priority: String,
    /// Who the work belongs to (default: the name of the token in SLUICE_TOKEN, if the server
    /// names it, else `default`).
    #[arg(long, short)]
    pub tenant: Option<String>,
    /// IDs (ranges like 10-20 welcome); read from standard input when none are given.
    pub ids: Vec<String>,
}

#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub server: ServerArg,
    pub ingestion_id: String,
    /// Follow the ingestion's events and print each change until it completes.
    #[arg(long, short)]
    pub watch: bool,
}

#[derive(Clone, Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub server: ServerArg,
    pub ingestion_id: String,
}

/// What the command line asks for.
pub enum Run {
    Serve(Box<Settings>),
    Client(Box<Command>),
}

impl Cli {
    pub fn into_run(self) -> Run {
        match self.command {
            Some(Command::Serve(settings)) => Run::Serve(settings),
            Some(client) => Run::Client(Box::new(client)),
            None => Run::Serve(Box::new(self.serve)),
        }
    }

    /// The server settings (`serve`, or no subcommand); `None` for a client command.
    pub fn into_settings(self) -> Option<Settings> {
        match self.into_run() {
            Run::Serve(settings) => Some(*settings),
            Run::Client(_) => None,
        }
    }
}

/// The validated settings of a running server.
#[derive(Clone, Debug, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Where state is kept: `sqlite://path/to/file.db` (created if missing), `sqlite::memory:`
    /// for a throw-away store, or `postgres://user@host/db` to share one queue between many
    /// sluice processes.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/sluice.db",
        value_parser = parse_database_url
    )]
    pub database_url: DatabaseUrl,

    /// Connections to PostgreSQL per process for requests (2..=256; the ingest writer, the
    /// dispatcher and the event listener have their own); ignored for SQLite.
    #[arg(long, env = "SLUICE_DATABASE_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(2..=256))]
    pub database_pool_size: u32,

    /// IDs per batch (1..=10000).
    #[arg(long, env = "SLUICE_BATCH_SIZE", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// Minimum time between two batch starts, globally (e.g. `250ms`, `5s`, `1m`; 1ms..=1day).
    #[arg(long, env = "SLUICE_RATE_INTERVAL", default_value = "5s",
          value_parser = duration_between(MIN_RATE_INTERVAL, MAX_RATE_INTERVAL))]
    pub rate_interval: humantime::Duration,

    /// How the next batch is chosen within a priority: `fifo` (acceptance order, SPEC §2) or
    /// `tenant` (round-robin between tenants: the one that waited longest since its last start
    /// at that priority goes next; FIFO within a tenant). Every replica must use the same.
    #[arg(long, env = "SLUICE_FAIRNESS", value_enum, default_value_t = Fairness::Fifo)]
    pub fairness: Fairness,

    /// Simulated work per batch by the default processor (`0s`..=`1h`).
    #[arg(long, env = "SLUICE_SIMULATED_WORK", default_value = "1s",
          value_parser = duration_between(Duration::ZERO, Duration::from_secs(3_600)))]
    pub simulated_work: humantime::Duration,

    /// What processes a dispatched batch: `simulated` (a fixed delay per batch, SPEC §2) or
    /// `http` (POST it to --processor-url).
    #[arg(long, env = "SLUICE_PROCESSOR", value_enum, default_value_t = ProcessorKind::Simulated)]
    pub processor: ProcessorKind,

    /// The downstream URL the `http` processor POSTs each batch to.
    #[arg(long, env = "SLUICE_PROCESSOR_URL")]
    pub processor_url: Option<String>,

    /// A header sent with every downstream request, `Name: value` (e.g. `Authorization: Bearer
    /// …`). Never logged.
    #[arg(long, env = "SLUICE_PROCESSOR_HEADER", hide_env_values = true,
          value_parser = crate::server::auth::secret_arg)]
    pub processor_header: Option<Secret>,

    /// How long one downstream request may take (100ms..=10m); past it the attempt failed.
    #[arg(long, env = "SLUICE_PROCESSOR_TIMEOUT", default_value = "10s",
          value_parser = duration_between(Duration::from_millis(100), Duration::from_secs(600)))]
    pub processor_timeout: humantime::Duration,

    /// Attempts per batch in all (1..=100); after the last failed one the batch is `failed`.
    #[arg(long, env = "SLUICE_PROCESSOR_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub processor_attempts: u32,

    /// The first retry's backoff (doubling with each attempt, up to 5 minutes, with jitter);
    /// each retry is also a new dispatch under the rate limit (0s..=1h).
    #[arg(long, env = "SLUICE_PROCESSOR_BACKOFF", default_value = "1s",
          value_parser = duration_between(Duration::ZERO, Duration::from_secs(3_600)))]
    pub processor_backoff: humantime::Duration,

    /// Maximum IDs in one request (1..=10000000).
    #[arg(long, env = "SLUICE_MAX_IDS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_ids: u64,

    /// Most batches allowed to wait; a submission that would pass it is refused with 429 and a
    /// Retry-After computed from the queue (1..). Unset: no bound.
    #[arg(long, env = "SLUICE_MAX_WAITING_BATCHES",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_waiting_batches: Option<u64>,

    /// How long a request may take to be answered, reading its body included; past it, 408
    /// (100ms..=1h). Event streams are not cut: they answer at once.
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT", default_value = "30s",
          value_parser = duration_between(Duration::from_millis(100), Duration::from_secs(3_600)))]
    pub request_timeout: humantime::Duration,

    /// Most connections open at once; past it new ones wait until one closes (1..=1000000).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// Most event streams (`GET /events`, `GET /status/{id}/events`) open at once: their share
    /// of --max-connections, so plain requests and health probes always find a connection.
    /// Past it a new stream is refused with 503 and Retry-After. Default: half of
    /// --max-connections; must be less than it (0 refuses every stream).
    #[arg(long, env = "SLUICE_MAX_STREAMS",
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub max_streams: Option<u64>,

    /// Most event streams one client (one IP address) may hold open at once; past it 429 with
    /// Retry-After. 0: no bound per client (behind a proxy every client has the proxy's
    /// address: bound clients there instead).
    #[arg(long, env = "SLUICE_MAX_STREAMS_PER_CLIENT", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub max_streams_per_client: u64,

    /// How long a client may take to send a request's headers; past it the connection is
    /// closed (100ms..=10min).
    #[arg(long, env = "SLUICE_HEADER_TIMEOUT", default_value = "10s",
          value_parser = duration_between(Duration::from_millis(100), Duration::from_secs(600)))]
    pub header_timeout: humantime::Duration,

    /// A connection on which nothing was read or written for this long is closed; longer than
    /// the request timeout (1s..=1h).
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT", default_value = "60s",
          value_parser = duration_between(Duration::from_secs(1), Duration::from_secs(3_600)))]
    pub idle_timeout: humantime::Duration,

    /// Most bytes of request bodies held in memory at once, all requests together; a body
    /// waits for room before it is read (within the request timeout), then must arrive within
    /// 5 s plus its length at 256 KiB/s. At least --max-body-bytes. Default: twice
    /// --max-body-bytes (8 MiB with the defaults).
    #[arg(long, env = "SLUICE_MAX_BUFFERED_BYTES",
          value_parser = clap::value_parser!(u64).range(1024..=17_179_869_184))]
    pub max_buffered_bytes: Option<u64>,

    /// Maximum size of a request body in bytes (1024..=1073741824).
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824))]
    pub max_body_bytes: u64,

    /// This process's name among replicas, in its logs (`replica{name=…}`) and metrics
    /// (`sluice_replica_info`): 1 to 64 of A-Z a-z 0-9 . _ : -. Default: the host name and
    /// the port, e.g. `web-1:3000`.
    #[arg(long, env = "SLUICE_REPLICA_NAME", value_parser = replica_name)]
    pub replica_name: Option<String>,

    /// How long a dispatched batch is leased before another dispatcher may take it over;
    /// renewed while the batch is being processed (100ms..=1h).
    #[arg(long, env = "SLUICE_LEASE", default_value = "15s",
          value_parser = duration_between(Duration::from_millis(100), Duration::from_secs(3_600)))]
    pub lease: humantime::Duration,

    /// On SIGTERM/Ctrl-C, how long the batch in hand may take to finish before the process
    /// exits anyway (the batch is then dispatched again on the next start).
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE", default_value = "10s",
          value_parser = duration_between(Duration::ZERO, Duration::from_secs(3_600)))]
    pub shutdown_grace: humantime::Duration,

    /// Web origins (e.g. `https://ui.example.com`, comma-separated) whose pages may call the
    /// API and stream events from another origin: for the client-side dashboard hosted
    /// elsewhere. Empty (the default): same origin only.
    #[arg(long, env = "SLUICE_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// API tokens, comma-separated (16+ visible characters each, e.g. `openssl rand -hex 24`).
    /// When any is set, writes (ingest, cancel, admin) need `Authorization: Bearer <token>`.
    /// Never logged.
    #[arg(long, env = "SLUICE_API_TOKENS", value_delimiter = ',', hide_env_values = true,
          value_parser = crate::server::auth::secret_arg)]
    pub api_tokens: Vec<Secret>,

    /// A file of API tokens, one per line (`#` comments), added to `--api-tokens`; read at
    /// start-up.
    #[arg(long, env = "SLUICE_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,

    /// Read-only tokens, comma-separated. When any is set, reads (status, lists, queue, events,
    /// metrics) need a read token or an API token too. Needs API tokens.
    #[arg(long, env = "SLUICE_READ_TOKENS", value_delimiter = ',', hide_env_values = true,
          value_parser = crate::server::auth::secret_arg)]
    pub read_tokens: Vec<Secret>,

    /// Directory holding the built dashboard (`cargo leptos build` writes `target/site`).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
}

/// What processes a dispatched batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProcessorKind {
    Simulated,
    Http,
}

/// A store location, parsed from `DATABASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    SqliteFile(PathBuf),
    SqliteMemory,
    Postgres(PostgresUrl),
}

/// A `postgres://` URL. It may carry a password: `Display` and `Debug` show it as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // scheme://user:password@host/...: the password becomes ***.
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("postgres", &self.0));
        match rest.rsplit_once('@') {
            Some((user, host)) => match user.split_once(':') {
                Some((name, _)) => write!(f, "{scheme}://{name}:***@{host}"),
                None => write!(f, "{scheme}://{user}@{host}"),
            },
            None => write!(f, "{scheme}://{rest}"),
        }
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::SqliteFile(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::SqliteMemory => f.write_str("sqlite::memory:"),
            DatabaseUrl::Postgres(url) => url.fmt(f),
        }
    }
}

pub fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    if raw == "sqlite::memory:" || raw == "sqlite://:memory:" {
        return Ok(DatabaseUrl::SqliteMemory);
    }
    if let Some(rest) = raw.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err("a sqlite URL needs a file path, e.g. sqlite://data/sluice.db".into());
        }
        return Ok(DatabaseUrl::SqliteFile(PathBuf::from(path)));
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        raw.parse::<tokio_postgres::Config>()
            .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
        return Ok(DatabaseUrl::Postgres(PostgresUrl(raw.to_owned())));
    }
    Err(format!(
        "unsupported database URL {}: expected sqlite://PATH, sqlite::memory: or \
         postgres://USER@HOST/DB",
        raw.split('@').next_back().unwrap_or_default()
    ))
}

/// A web origin: `scheme://host[:port]`, nothing after it.
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let origin = raw.trim().trim_end_matches('/');
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match host {
        Some(host)
            if !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) =>
        {
            Ok(origin.to_owned())
        }
        _ => Err(format!(
            "{raw:?} is not a web origin like https://ui.example.com or http://127.0.0.1:8080"
        )),
    }
}

/// A replica name: 1..=64 of `A-Z a-z 0-9 . _ : -` (safe in logs and metric labels).
fn replica_name(value: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    match ok {
        true => Ok(value.to_owned()),
        false => Err("1 to 64 characters of A-Z a-z 0-9 . _ : -".into()),
    }
}

fn duration_between(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<humantime::Duration, String> + Clone + Send + Sync + 'static {
    move |raw| {
        let d: humantime::Duration = raw
            .parse()
            .map_err(|e| format!("{e} (examples: 250ms, 5s, 1m)"))?;
        if *d < min || *d > max {
            return Err(format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(d)
    }
}

impl Settings {
    pub fn rate_interval(&self) -> Duration {
        *self.rate_interval
    }

    /// This process's name among replicas: `--replica-name`, or the host name and the port.
    pub fn replica(&self) -> String {
        self.replica_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| replica_name(h).is_ok())
                .unwrap_or_else(|| "localhost".into());
            format!("{host}:{}", self.addr.port())
        })
    }

    /// Settings that are only wrong together.
    pub fn check(&self) -> Result<(), String> {
        if self.max_buffered_bytes() < self.max_body_bytes {
            return Err(format!(
                "--max-buffered-bytes ({}) must be at least --max-body-bytes ({}): a body of \
                 the largest size must fit",
                self.max_buffered_bytes(),
                self.max_body_bytes
            ));
        }
        if self.max_streams() >= self.max_connections {
            return Err(format!(
                "--max-streams ({}) must be less than --max-connections ({}): requests and \
                 health probes need connections that streams cannot take",
                self.max_streams(),
                self.max_connections
            ));
        }
        if *self.idle_timeout <= *self.request_timeout {
            return Err(format!(
                "--idle-timeout ({}) must be longer than --request-timeout ({}): a request \
                 still being answered must not be cut as idle",
                self.idle_timeout, self.request_timeout
            ));
        }
        Ok(())
    }

    /// The room for bodies held at once: `--max-buffered-bytes`, or two bodies of
    /// `--max-body-bytes` (parsing is CPU-bound: more at once only costs memory,
    /// docs/benchmarks.md).
    pub fn max_buffered_bytes(&self) -> u64 {
        self.max_buffered_bytes.unwrap_or(2 * self.max_body_bytes)
    }

    /// The event streams' budget: `--max-streams`, or half of `--max-connections`.
    pub fn max_streams(&self) -> u64 {
        self.max_streams.unwrap_or(self.max_connections / 2)
    }

    /// The API and read tokens, the token file included.
    pub fn tokens(&self) -> Result<Tokens, String> {
        let mut write = self.api_tokens.clone();
        if let Some(file) = &self.api_tokens_file {
            write.extend(read_token_file(file)?);
        }
        Tokens::new(&write, &self.read_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_postgres_url_is_accepted_and_its_password_never_shown() {
        let url = parse_database_url("postgres://app:s3cret@db.internal:5432/sluice").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db.internal:5432/sluice"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = parse_database_url("postgresql://root@127.0.0.1/test").unwrap();
        assert_eq!(plain.to_string(), "postgresql://root@127.0.0.1/test");
        assert!(parse_database_url("postgres://host:notaport/db").is_err());
    }

    #[test]
    fn cors_origins_are_plain_web_origins() {
        assert_eq!(
            parse_origin("https://ui.example.com/"),
            Ok("https://ui.example.com".into())
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8080"),
            Ok("http://127.0.0.1:8080".into())
        );
        for bad in [
            "*",
            "ui.example.com",
            "https://",
            "https://x.com/path",
            "ftp://x",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        let s = Cli::try_parse_from(["sluice", "--cors-origins", "http://a:1,https://b"])
            .unwrap()
            .into_settings()
            .unwrap();
        assert_eq!(s.cors_origins, vec!["http://a:1", "https://b"]);
    }

    #[test]
    fn a_replica_is_named_by_its_host_and_port_unless_named_safely() {
        let s = Cli::try_parse_from(["sluice", "--addr", "127.0.0.1:4123"])
            .unwrap()
            .into_settings()
            .unwrap();
        assert!(s.replica().ends_with(":4123"), "{}", s.replica());
        let named = Cli::try_parse_from(["sluice", "--replica-name", "eu-1.web_2:3000"])
            .unwrap()
            .into_settings()
            .unwrap();
        assert_eq!(named.replica(), "eu-1.web_2:3000");
        for bad in ["", "a b", "x\"", &"n".repeat(65)] {
            let err = Cli::try_parse_from(["sluice", "--replica-name", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--replica-name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn database_urls_select_a_backend() {
        assert_eq!(
            parse_database_url("sqlite://data/sluice.db"),
            Ok(DatabaseUrl::SqliteFile("data/sluice.db".into()))
        );
        assert_eq!(
            parse_database_url("sqlite:///var/lib/sluice.db?mode=rwc"),
            Ok(DatabaseUrl::SqliteFile("/var/lib/sluice.db".into()))
        );
        assert_eq!(
            parse_database_url("sqlite::memory:"),
            Ok(DatabaseUrl::SqliteMemory)
        );
        assert!(parse_database_url("mysql://x").is_err());
        assert!(parse_database_url("sqlite://").is_err());
    }

    #[test]
    fn flags_win_and_bad_values_are_refused_with_the_setting_named() {
        let s = Cli::try_parse_from([
            "sluice",
            "serve",
            "--rate-interval",
            "250ms",
            "--batch-size",
            "7",
        ])
        .unwrap()
        .into_settings()
        .unwrap();
        assert_eq!(s.rate_interval(), Duration::from_millis(250));
        assert_eq!(s.batch_size, 7);

        let err = Cli::try_parse_from(["sluice", "--batch-size", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--batch-size"), "{err}");
        let err = Cli::try_parse_from(["sluice", "--rate-interval", "0s"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--rate-interval") && err.contains("between"),
            "{err}"
        );
        let err = Cli::try_parse_from(["sluice", "--rate-interval", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--rate-interval"), "{err}");
    }

    #[test]
    fn event_streams_get_half_the_connections_unless_told_and_never_all_of_them() {
        let settings = |extra: &[&str]| {
            let mut args = vec!["sluice"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).unwrap().into_settings().unwrap()
        };
        let default = settings(&[]);
        assert_eq!(default.max_streams(), 512);
        assert_eq!(default.max_streams_per_client, 16);
        assert!(default.check().is_ok());
        let told = settings(&["--max-connections", "200", "--max-streams", "150"]);
        assert_eq!(told.max_streams(), 150);
        assert!(told.check().is_ok());
        let err = settings(&["--max-connections", "200", "--max-streams", "200"])
            .check()
            .unwrap_err();
        assert!(
            err.contains("--max-streams") && err.contains("--max-connections"),
            "{err}"
        );
    }

    #[test]
    fn the_room_for_bodies_is_two_largest_bodies_unless_told_and_never_less_than_one() {
        let settings = |extra: &[&str]| {
            let mut args = vec!["sluice"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).unwrap().into_settings().unwrap()
        };
        assert_eq!(settings(&[]).max_buffered_bytes(), 8 * 1024 * 1024);
        let big = settings(&["--max-body-bytes", "134217728"]);
        assert_eq!(big.max_buffered_bytes(), 268_435_456);
        assert!(big.check().is_ok());
        let err = settings(&["--max-body-bytes", "8192", "--max-buffered-bytes", "4096"])
            .check()
            .unwrap_err();
        assert!(err.contains("--max-buffered-bytes"), "{err}");
    }
}
