//! Metrics in the Prometheus text format (`GET /metrics`).
//!
//! Counters and histograms are recorded where things happen (the scheduler, the service, the
//! HTTP layer); the queue's gauges are read from the store when scraped, so they are the
//! cluster's truth rather than this process's guess. One registry per server (not a global),
//! so servers in one test process never mix their numbers.

use crate::domain::QueueView;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};
use std::{
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    priority: &'static str,
    tenant: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// A cheap, cloneable handle to one server's metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    dispatched: Counter,
    completed: Counter,
    fenced: Counter,
    retried: Counter,
    failed: Counter,
    lateness: Histogram,
    claim_time: Histogram,
    accepted: Counter,
    accepted_ids: Counter,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    waiting: Family<PriorityLabels, Gauge>,
    tenant_waiting: Family<TenantLabels, Gauge>,
    /// Held while the queue's gauges are set and while the registry is encoded.
    scrape: std::sync::Mutex<()>,
    other_tenants_waiting: Family<PriorityLabels, Gauge>,
    oldest_waiting_age: FloatGauge,
    in_flight: Gauge,
    paused: Gauge,
    rate_interval: FloatGauge,
    event_streams: Gauge,
}

fn request_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::for_replica(None)
    }

    /// With `sluice_replica_info{name="…"} 1` naming this process among replicas.
    pub fn for_replica(name: Option<&str>) -> Self {
        let mut registry = Registry::with_prefix("sluice");
        if let Some(name) = name {
            registry.register(
                "replica",
                "This process's name among the replicas (--replica-name)",
                prometheus_client::metrics::info::Info::new(vec![("name", name.to_owned())]),
            );
        }
        let inner = Inner {
            dispatched: Counter::default(),
            completed: Counter::default(),
            fenced: Counter::default(),
            retried: Counter::default(),
            failed: Counter::default(),
            // 50 µs .. ~1.6 s
            lateness: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 10 µs .. ~0.3 s
            claim_time: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            accepted: Counter::default(),
            accepted_ids: Counter::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            waiting: Family::default(),
            tenant_waiting: Family::default(),
            scrape: std::sync::Mutex::new(()),
            other_tenants_waiting: Family::default(),
            oldest_waiting_age: FloatGauge::default(),
            in_flight: Gauge::default(),
            paused: Gauge::default(),
            rate_interval: FloatGauge::default(),
            event_streams: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "batches_dispatched",
            "Batches started (each attempt counts)",
            inner.dispatched.clone(),
        );
        registry.register(
            "batches_completed",
            "Batches whose completion was recorded",
            inner.completed.clone(),
        );
        registry.register(
            "completions_fenced",
            "Late completions refused because the batch was taken over",
            inner.fenced.clone(),
        );
        registry.register(
            "attempts_retried",
            "Failed attempts that will be tried again",
            inner.retried.clone(),
        );
        registry.register(
            "batches_failed",
            "Batches failed for good after their last attempt",
            inner.failed.clone(),
        );
        registry.register_with_unit(
            "dispatch_lateness",
            "Actual start minus the slot the dispatcher waited for",
            Unit::Seconds,
            inner.lateness.clone(),
        );
        registry.register_with_unit(
            "claim_duration",
            "Time the store took to answer a claim (whatever its answer)",
            Unit::Seconds,
            inner.claim_time.clone(),
        );
        registry.register(
            "ingestions_accepted",
            "Ingestions stored (idempotent replays not counted)",
            inner.accepted.clone(),
        );
        registry.register(
            "ids_accepted",
            "IDs in the ingestions stored",
            inner.accepted_ids.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            inner.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to the response head), by route template",
            Unit::Seconds,
            inner.latency.clone(),
        );
        registry.register(
            "queue_waiting_batches",
            "Batches waiting to start, by priority",
            inner.waiting.clone(),
        );
        registry.register(
            "queue_tenant_waiting_batches",
            "Batches waiting to start, by priority and tenant, for the 20 tenants with the most \
             waiting at each priority (the rest: queue_other_tenants_waiting_batches)",
            inner.tenant_waiting.clone(),
        );
        registry.register(
            "queue_other_tenants_waiting_batches",
            "Batches waiting to start of the tenants not labelled in \
             queue_tenant_waiting_batches, by priority",
            inner.other_tenants_waiting.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_waiting_age",
            "Age of the oldest waiting batch (0 when none waits)",
            Unit::Seconds,
            inner.oldest_waiting_age.clone(),
        );
        registry.register(
            "queue_in_flight_batches",
            "Batches triggered and not completed",
            inner.in_flight.clone(),
        );
        registry.register(
            "dispatch_paused",
            "1 while an operator has paused dispatch",
            inner.paused.clone(),
        );
        registry.register_with_unit(
            "rate_interval",
            "The rate interval in force",
            Unit::Seconds,
            inner.rate_interval.clone(),
        );
        registry.register(
            "event_streams_open",
            "Event streams open on this process (refusals are counted in http_requests)",
            inner.event_streams.clone(),
        );
        Self {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    /// An event stream was admitted.
    pub fn event_stream_opened(&self) {
        self.inner.event_streams.inc();
    }

    /// An admitted event stream ended.
    pub fn event_stream_closed(&self) {
        self.inner.event_streams.dec();
    }

    /// A batch started; `lateness` is how long after its slot, when it waited for one.
    pub fn batch_dispatched(&self, lateness: Option<Duration>) {
        self.inner.dispatched.inc();
        if let Some(late) = lateness {
            self.inner.lateness.observe(late.as_secs_f64());
        }
    }

    /// How long one `claim_next` took.
    pub fn claim_took(&self, took: Duration) {
        self.inner.claim_time.observe(took.as_secs_f64());
    }

    pub fn batch_completed(&self) {
        self.inner.completed.inc();
    }

    /// A failed attempt: to be retried, or the batch's last.
    pub fn batch_failed(&self, will_retry: bool) {
        match will_retry {
            true => self.inner.retried.inc(),
            false => self.inner.failed.inc(),
        };
    }

    pub fn completion_fenced(&self) {
        self.inner.fenced.inc();
    }

    pub fn ingestion_accepted(&self, ids: usize) {
        self.inner.accepted.inc();
        self.inner.accepted_ids.inc_by(ids as u64);
    }

    /// One answered request; `route` is the route's template (never the raw path, which would
    /// make a series per ingestion id).
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Set the queue gauges from a fresh view.
    pub fn observe_queue(&self, queue: &QueueView) {
        // Only the tenants listed now keep a series: the label set stays bounded. Cleared and
        // set again under the scrape lock, so a concurrent scrape never sees them half set.
        let _scrape = self.inner.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.tenant_waiting.clear();
        for depth in &queue.waiting {
            let priority = depth.priority.as_str();
            self.inner
                .waiting
                .get_or_create(&PriorityLabels { priority })
                .set(depth.batches as i64);
            for tenant in &depth.tenants {
                self.inner
                    .tenant_waiting
                    .get_or_create(&TenantLabels {
                        priority,
                        tenant: tenant.tenant.clone(),
                    })
                    .set(tenant.batches as i64);
            }
            self.inner
                .other_tenants_waiting
                .get_or_create(&PriorityLabels { priority })
                .set(depth.other_tenants as i64);
        }
        let age = queue
            .oldest_waiting
            .map(|since| queue.now.since(since).as_secs_f64())
            .unwrap_or(0.0);
        self.inner.oldest_waiting_age.set(age);
        self.inner
            .in_flight
            .set(i64::from(queue.in_flight.is_some()));
        self.inner.paused.set(i64::from(queue.paused));
        self.inner
            .rate_interval
            .set(queue.rate_interval_ms as f64 / 1000.0);
    }

    /// Everything, in the Prometheus text format (OpenMetrics flavour).
    pub fn encode(&self) -> String {
        let _scrape = self.inner.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_appear_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.batch_dispatched(Some(Duration::from_micros(700)));
        metrics.batch_completed();
        metrics.ingestion_accepted(5);
        metrics.http_request("POST", "/ingest", 200, Duration::from_millis(3));
        let text = metrics.encode();
        for line in [
            "sluice_batches_dispatched_total 1",
            "sluice_batches_completed_total 1",
            "sluice_ids_accepted_total 5",
            "sluice_dispatch_lateness_seconds_count 1",
            "sluice_http_requests_total{method=\"POST\",route=\"/ingest\",status=\"200\"} 1",
            "sluice_http_request_duration_seconds_count{method=\"POST\",route=\"/ingest\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
