//! Accepting connections, with the limits a public server needs (`axum::serve` has none):
//!
//! - at most `max_connections` open at once: past it sluice stops accepting until one closes
//!   (new clients wait in the kernel's backlog), so a flood of connections cannot exhaust file
//!   descriptors or memory;
//! - a client must send a request's headers within `header_timeout` of starting them, and an
//!   idle keep-alive connection is closed after `idle_timeout`: a slow or silent client holds
//!   nothing for long (slow *bodies* are bounded by the request timeout, `timeout.rs`);
//! - headers are at most 64 KiB (431 past it); HTTP/1.1 only (HTTP/2 is the TLS-terminating
//!   proxy's business);
//! - graceful shutdown: on the signal, stop accepting, let requests in progress finish and
//!   close idle connections.

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    Router,
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{sleep_until, Instant, Sleep},
};
use tower::ServiceExt;

use crate::server::shutdown::Shutdown;

/// Limits on connections (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serve `router` on `listener` until `shutdown` triggers, then drain.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    loop {
        let permit = tokio::select! {
            _ = shutdown.triggered() => break,
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.triggered() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let service = TowerToHyperService::new(router.clone().map_request(
            move |request: Request<Incoming>| {
                // Handlers that bound something per client read its address here.
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A stream that fails its reads once nothing has been read or written for `limit`, so an
/// idle or stalled connection is closed. A request being answered slowly (an event stream
/// between heartbeats, a long ingest) writes or is written to within the limit, or is bounded
/// by the request timeout; a request past its point of no return (its write handed to the
/// store, `no_return.rs`) is answered when the store answers: one group commit on SQLite, at
/// most a 10 s wait for a pooled connection plus the transaction on PostgreSQL, far below the
/// idle limit unless the store hangs (no statement timeout bounds that yet).
///
/// Reads and writes only note the time; the timer is moved when it fires early, so the hot
/// path never touches the timer wheel.
struct IdleTimeout {
    stream: TcpStream,
    limit: Duration,
    last_active: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            stream,
            limit,
            last_active: now,
            deadline: Box::pin(sleep_until(now + limit)),
        }
    }

    fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// A write's outcome, noting activity when it wrote something.
    fn noted(&mut self, written: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        written
    }

    /// Ready once the connection has really been idle for the limit.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.deadline.as_mut().poll(cx));
            let due = self.last_active + self.limit;
            if due <= Instant::now() {
                return Poll::Ready(());
            }
            self.deadline.as_mut().reset(due);
        }
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let filled = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > filled {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, data);
        self.noted(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.noted(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
