//! Wiring: open the store, start the scheduler, build the router, listen, shut down cleanly.

use crate::app::{shell, App};
use crate::domain::{Limits, Pace};
use crate::server::{
    auth::Tokens,
    clock::Clock,
    config::{DatabaseUrl, ProcessorKind, Settings},
    http::{self, ApiState},
    metrics::Metrics,
    processor::{HttpProcessor, Processor, RetryPolicy, SimulatedProcessor},
    scheduler::{Scheduler, SchedulerConfig, Wake},
    service::{Service, ServiceConfig},
    shutdown::{self, Shutdown, ShutdownTrigger},
    store::{DynStore, PostgresStore, Retention, SlotClock, SqliteStore, StoreError},
};
use anyhow::Context;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, task::JoinHandle};

/// A bound, ready-to-run sluice server. Tests bind port 0 and read `local_addr()`.
pub struct Application {
    listener: TcpListener,
    limits: http::ConnectionLimits,
    router: Router,
    scheduler: JoinHandle<()>,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
}

/// The core without HTTP: a service and its running scheduler over one store, sharing one
/// set of metrics.
pub struct Core {
    pub service: Service,
    pub scheduler: JoinHandle<()>,
}

/// What the core needs to know, independent of where it came from.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub batch_size: usize,
    pub limits: Limits,
    pub scheduler: SchedulerConfig,
    /// Expected work per batch, for predictions.
    pub expected_work: std::time::Duration,
    /// Most batches allowed to wait (backpressure); `None`: no bound.
    pub max_waiting_batches: Option<u64>,
    /// This process's name among replicas (logs and metrics).
    pub replica: String,
}

impl CoreConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            batch_size: settings.batch_size as usize,
            limits: Limits {
                max_ids: settings.max_ids as usize,
            },
            scheduler: SchedulerConfig {
                interval: settings.rate_interval(),
                lease: *settings.lease,
                shutdown_grace: *settings.shutdown_grace,
                retry: RetryPolicy {
                    max_attempts: settings.processor_attempts,
                    base: *settings.processor_backoff,
                    cap: Duration::from_secs(300).max(*settings.processor_backoff),
                },
                fairness: settings.fairness,
            },
            expected_work: *settings.simulated_work,
            max_waiting_batches: settings.max_waiting_batches,
            replica: settings.replica(),
        }
    }
}

impl Core {
    /// Start the scheduler over `store` and return the service that feeds it.
    pub fn start(
        store: DynStore,
        processor: Arc<dyn Processor>,
        config: CoreConfig,
        clock: Clock,
        shutdown: Shutdown,
    ) -> Self {
        use tracing::Instrument;
        let wake = Wake::default();
        let metrics = Metrics::for_replica(Some(&config.replica));
        // Every log line of the scheduler and housekeeping names the replica.
        let span = tracing::info_span!("replica", name = %config.replica);
        let (service, alive) = Service::new(
            store.clone(),
            clock,
            ServiceConfig {
                batch_size: config.batch_size,
                limits: config.limits,
                pace: Pace {
                    interval: config.scheduler.interval,
                    work: config.expected_work,
                },
                max_waiting: config.max_waiting_batches,
                fairness: config.scheduler.fairness,
            },
            wake.clone(),
            metrics.clone(),
        );
        tokio::spawn(
            crate::server::housekeeping::run(
                Arc::downgrade(&store),
                clock,
                Retention::default(),
                crate::server::housekeeping::PERIOD,
                shutdown.clone(),
            )
            .instrument(span.clone()),
        );
        tokio::spawn(
            crate::server::timeline::run(
                Arc::downgrade(&store),
                service.depth_history(),
                clock,
                crate::server::timeline::SAMPLE_PERIOD,
                shutdown.clone(),
            )
            .instrument(span.clone()),
        );
        let scheduler = Scheduler::new(store, processor, clock, wake, config.scheduler, metrics)
            .with_replica(&config.replica);
        let scheduler = tokio::spawn(
            async move {
                let _alive = alive;
                scheduler.run(shutdown).await
            }
            .instrument(span),
        );
        Self { service, scheduler }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check().map_err(anyhow::Error::msg)?;
        let tokens = settings.tokens().map_err(anyhow::Error::msg)?;
        let store = open_store(&settings.database_url, settings.database_pool_size as usize)
            .await
            .with_context(|| format!("opening the store at {}", settings.database_url))?;
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("listening on {}", settings.addr))?;
        let (trigger, shutdown) = shutdown::channel();
        let processor: Arc<dyn Processor> = match settings.processor {
            ProcessorKind::Simulated => Arc::new(SimulatedProcessor::new(*settings.simulated_work)),
            ProcessorKind::Http => {
                let url = settings
                    .processor_url
                    .as_deref()
                    .context("--processor http needs --processor-url (SLUICE_PROCESSOR_URL)")?;
                Arc::new(
                    HttpProcessor::new(
                        url,
                        *settings.processor_timeout,
                        settings.processor_header.as_ref().map(|h| h.expose()),
                    )
                    .map_err(anyhow::Error::msg)?,
                )
            }
        };
        let core = Core::start(
            store,
            processor,
            CoreConfig::from_settings(&settings),
            Clock::system(),
            shutdown.clone(),
        );
        let router = router(
            core.service.clone(),
            tokens.clone(),
            &settings,
            listener.local_addr()?,
            shutdown.clone(),
        );
        tracing::info!(
            addr = %listener.local_addr()?, store = %settings.database_url,
            interval = %settings.rate_interval, batch_size = settings.batch_size,
            writes_need_token = tokens.writes_guarded(), reads_need_token = tokens.reads_guarded(),
            token_tenants = %tokens.names().join(","),
            "sluice is serving"
        );
        Ok(Self {
            listener,
            limits: http::ConnectionLimits {
                max_connections: settings.max_connections as usize,
                header_timeout: *settings.header_timeout,
                idle_timeout: *settings.idle_timeout,
            },
            router,
            scheduler: core.scheduler,
            trigger,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serve until `signal` completes; then stop accepting requests, let in-flight requests
    /// and the batch in hand finish (within the configured grace), and return.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            limits,
            router,
            scheduler,
            trigger,
            shutdown,
        } = self;
        let trigger = Arc::new(trigger);
        let on_signal = {
            let trigger = trigger.clone();
            async move {
                signal.await;
                tracing::info!("shutdown requested");
                trigger.trigger();
            }
        };
        tokio::spawn(on_signal);
        let served = http::serve(listener, router, limits, shutdown).await;
        // Whether serving ended by the signal or by an error, stop dispatching the same way.
        trigger.trigger();
        scheduler.await.context("scheduler task")?;
        served.context("serving HTTP")
    }
}

fn router(
    service: Service,
    tokens: Tokens,
    settings: &Settings,
    addr: SocketAddr,
    shutdown: Shutdown,
) -> Router {
    // Built here rather than by `get_configuration`: sluice's own settings are the one source
    // of truth, with cargo-leptos' defaults for the rest (`pkg/sluice.js`, reload port 3001).
    let conf = LeptosOptions::builder()
        .output_name("sluice")
        .site_root(settings.site_root.to_string_lossy().as_ref())
        .site_addr(addr)
        .build();
    let routes = generate_route_list(App);
    let metrics = service.clone();
    let api = http::router(ApiState {
        service: service.clone(),
        max_body_bytes: settings.max_body_bytes as usize,
        shutdown,
        tokens: tokens.clone(),
        streams: http::StreamBudget::new(
            settings.max_streams() as usize,
            settings.max_streams_per_client as usize,
            service.metrics().clone(),
        ),
        buffers: http::BufferBudget::new(settings.max_buffered_bytes()),
    });
    let router = Router::new()
        .merge(api)
        // Server functions and pages get the same service and tokens the JSON routes use.
        .leptos_routes_with_context(
            &conf,
            routes,
            move || {
                provide_context(service.clone());
                provide_context(tokens.clone());
            },
            {
                let conf = conf.clone();
                move || shell(conf.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .layer(axum::middleware::from_fn_with_state(
            settings.max_body_bytes as usize,
            http::undecodable_arguments_are_bad_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            *settings.request_timeout,
            http::request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(metrics, http::track))
        .with_state(conf);
    match http::cors(&settings.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Open the store a URL names, creating and migrating it if needed.
pub async fn open_store(url: &DatabaseUrl, pool_size: usize) -> Result<DynStore, StoreError> {
    Ok(match url {
        DatabaseUrl::SqliteFile(path) => Arc::new(SqliteStore::open_file(path).await?),
        DatabaseUrl::SqliteMemory => Arc::new(SqliteStore::open_memory().await?),
        DatabaseUrl::Postgres(url) => {
            Arc::new(PostgresStore::open(url.expose(), SlotClock::Database, pool_size).await?)
        }
    })
}
