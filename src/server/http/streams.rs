//! The event streams' own budget. A stream holds its connection for as long as the client
//! likes, so without a bound of their own streams could take every connection slot
//! (`--max-connections`) and leave none for requests and health probes: one client opening
//! enough `EventSource`s would take a server off its load balancer. Streams get a share of
//! the connections (`--max-streams`) and each client (by IP address) a bound of its own
//! (`--max-streams-per-client`); past either a stream is refused at once, in the one error
//! shape with `Retry-After`, and the refused connection is closed so it holds nothing.

use super::ApiError;
use crate::server::metrics::Metrics;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused client is asked to wait: streams end when people close pages, which
/// no one can predict; long enough that refused dashboards do not hammer a busy server.
pub(super) const RETRY_AFTER_SECS: u64 = 10;

/// Streams open per client address (only clients with at least one).
type Clients = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Counts the streams open, in all and per client. Cheap to clone (shared counts).
#[derive(Clone)]
pub struct StreamBudget {
    total: Arc<Semaphore>,
    per_client: usize,
    clients: Clients,
    metrics: Metrics,
}

/// One admitted stream's place in the budget, given back when the stream ends (dropped with
/// it, whether the client went away, the server is shutting down or the stream failed).
pub(super) struct StreamTicket {
    _permit: OwnedSemaphorePermit,
    client: Option<(IpAddr, Clients)>,
    metrics: Metrics,
}

impl StreamBudget {
    /// At most `total` streams, at most `per_client` of them from one address (0: no bound
    /// per client).
    pub fn new(total: usize, per_client: usize, metrics: Metrics) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_client,
            clients: Arc::default(),
            metrics,
        }
    }

    /// A place for a new stream from `client` (unknown when the request did not come over a
    /// connection sluice accepted, e.g. in-process calls), or why there is none.
    pub(super) fn admit(&self, client: Option<IpAddr>) -> Result<StreamTicket, ApiError> {
        let client = client.filter(|_| self.per_client > 0);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = client {
            if clients.get(&ip).copied().unwrap_or(0) >= self.per_client {
                return Err(ApiError::TooManyStreams {
                    per_client: self.per_client,
                });
            }
        }
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::StreamsBusy)?;
        if let Some(ip) = client {
            *clients.entry(ip).or_insert(0) += 1;
        }
        self.metrics.event_stream_opened();
        Ok(StreamTicket {
            _permit: permit,
            client: client.map(|ip| (ip, self.clients.clone())),
            metrics: self.metrics.clone(),
        })
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.metrics.event_stream_closed();
        if let Some((ip, clients)) = &self.client {
            let mut clients = clients.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(open) = clients.get_mut(ip) {
                *open -= 1;
                if *open == 0 {
                    clients.remove(ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_client_past_its_own_bound_is_refused_while_others_are_admitted() {
        let budget = StreamBudget::new(10, 2, Metrics::new());
        let _a = [budget.admit(ip(1)).unwrap(), budget.admit(ip(1)).unwrap()];
        assert!(matches!(
            budget.admit(ip(1)),
            Err(ApiError::TooManyStreams { per_client: 2 })
        ));
        assert!(budget.admit(ip(2)).is_ok());
    }

    #[test]
    fn past_the_total_every_client_is_refused_until_a_stream_ends() {
        let budget = StreamBudget::new(2, 0, Metrics::new());
        let first = budget.admit(ip(1)).unwrap();
        let _second = budget.admit(ip(1)).unwrap();
        assert!(matches!(budget.admit(ip(2)), Err(ApiError::StreamsBusy)));
        assert!(matches!(budget.admit(None), Err(ApiError::StreamsBusy)));
        drop(first);
        assert!(budget.admit(ip(2)).is_ok());
    }

    #[test]
    fn a_client_whose_streams_all_ended_is_forgotten() {
        let budget = StreamBudget::new(4, 1, Metrics::new());
        let ticket = budget.admit(ip(1)).unwrap();
        drop(ticket);
        assert!(budget.clients.lock().unwrap().is_empty());
        assert!(budget.admit(ip(1)).is_ok());
    }
}
