//! Keeping the dashboard current: the event stream, the ticking clock, and refreshes.
//!
//! The page never polls. It opens one `EventSource` on `/events`, starting after the event its
//! first snapshot reflects; each event schedules a refresh of the snapshot (coalesced, so a
//! burst of events costs one read). A stream the server refuses (its stream budget is spent, a
//! token is missing) or that fails for good is opened again after a backoff: 1 s, doubling to
//! 30 s, with jitter, shown in the header. The clock ticks locally, corrected by the server's time in
//! each snapshot, so countdowns move between events without asking the server anything.

use crate::domain::{ErrorDetail, Limits, Timestamp, WriteAccess};
use leptos::prelude::*;

/// How long events are gathered before one refresh (a triggered and a completed event of a
/// fast batch arrive together).
#[cfg(feature = "browser")]
const COALESCE_MS: u32 = 30;
/// How often countdowns move.
#[cfg(feature = "browser")]
const TICK_MS: u32 = 250;

/// The state of the push connection, shown in the header.
#[cfg_attr(not(feature = "browser"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    /// The browser is reconnecting by itself (a dropped connection).
    Reconnecting,
    /// The stream was refused or failed for good; the page opens it again at `retry_at`
    /// (server time as the page reckons it).
    BackingOff {
        retry_at: Timestamp,
    },
}

impl Connection {
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Live => "live",
            Connection::Reconnecting => "reconnecting",
            Connection::BackingOff { .. } => "backing-off",
        }
    }
}

/// Shared by the dashboard's parts.
#[derive(Clone, Copy)]
pub struct Live {
    /// Bumped to read the snapshot again.
    pub version: RwSignal<u64>,
    /// The server's time as the browser reckons it; `None` until the first tick (the
    /// snapshot's own time stands in, so server and browser render the same first frame).
    pub now: RwSignal<Option<Timestamp>>,
    /// Server time minus browser time, in milliseconds.
    #[cfg_attr(not(feature = "browser"), allow(dead_code))]
    pub offset_ms: RwSignal<f64>,
    pub connection: RwSignal<Connection>,
    /// The server's limits and batch size, from the latest queue snapshot.
    pub limits: RwSignal<Limits>,
    pub batch_size: RwSignal<u64>,
    /// Batches whose results the person opened: cards are redrawn on every refresh and
    /// reopen from here.
    pub open_results: RwSignal<std::collections::HashSet<uuid::Uuid>>,
    /// Batches whose attempt history the person opened (read afresh on every redraw).
    pub open_attempts: RwSignal<std::collections::HashSet<uuid::Uuid>>,
    /// The last read was refused for the lack of a (valid) token.
    pub reads_refused: RwSignal<bool>,
    /// The last write was refused for the lack of a (valid, writing) token.
    pub writes_refused: RwSignal<bool>,
    /// What this session's token may do with writes, as the server answered once the page
    /// was live (a page render carries no token).
    pub write_access: RwSignal<WriteAccess>,
    /// The ingestion whose Cancel button is asking for confirmation, if any.
    pub confirm_cancel: RwSignal<Option<uuid::Uuid>>,
    /// The rate interval was set at run time (from the latest queue snapshot).
    pub rate_overridden: RwSignal<bool>,
    refresh_pending: RwSignal<bool>,
    /// The live parts have started (`begin`).
    started: StoredValue<bool>,
}

impl Live {
    pub fn new() -> Self {
        Self {
            version: RwSignal::new(0),
            now: RwSignal::new(None),
            offset_ms: RwSignal::new(0.0),
            connection: RwSignal::new(Connection::Connecting),
            limits: RwSignal::new(Limits::default()),
            batch_size: RwSignal::new(3),
            open_results: RwSignal::new(Default::default()),
            open_attempts: RwSignal::new(Default::default()),
            reads_refused: RwSignal::new(false),
            writes_refused: RwSignal::new(false),
            write_access: RwSignal::new(WriteAccess::Allowed),
            rate_overridden: RwSignal::new(false),
            confirm_cancel: RwSignal::new(None),
            refresh_pending: RwSignal::new(false),
            started: StoredValue::new(false),
        }
    }

    /// Take note of how a read (`write: false`) or a write went: a refusal for want of a token
    /// asks the person for one, until the same kind of call succeeds.
    pub fn note_outcome(self, write: bool, error: Option<&ErrorDetail>) {
        let refused =
            error.is_some_and(|e| matches!(e.code.as_str(), "unauthorized" | "forbidden"));
        let signal = if write {
            self.writes_refused
        } else {
            self.reads_refused
        };
        if signal.get_untracked() != refused {
            signal.set(refused);
        }
    }

    /// Take note of how reading a page's snapshot went: a success corrects the clock by the
    /// server's time; a refusal asks for a token, unless it is of the first read (before
    /// `begin`), which the server made while rendering the page without the session's token
    /// (a page load carries none): not this browser's refusal; `begin` reads again with it.
    pub fn note_read(self, read: Result<Timestamp, &ErrorDetail>) {
        match read {
            Ok(server_now) => {
                self.note_outcome(false, None);
                self.observe_server_time(server_now);
            }
            Err(_) if !self.started.get_value() && crate::app::token::session_token().is_some() => {
            }
            Err(e) => self.note_outcome(false, Some(e)),
        }
    }

    /// An operator's write from the dashboard (cancel, retry, pause): `call` runs the server
    /// function, and its outcome is noted (a refusal asks for a token). Every open dashboard
    /// redraws from the next snapshot, which the write's event brings.
    pub fn write_action<T, F, Fut>(self, call: F) -> Action<(), Result<T, ErrorDetail>>
    where
        T: Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, ErrorDetail>> + Send + 'static,
    {
        Action::new(move |_: &()| {
            let outcome = call();
            async move {
                let outcome = outcome.await;
                self.note_outcome(true, outcome.as_ref().err());
                outcome
            }
        })
    }

    /// Why the buttons that write are disabled, if they are (a token that may only read).
    pub fn write_refusal(self) -> Option<&'static str> {
        self.write_access.get().refusal()
    }

    /// A write button's title: what it does, or why it is disabled.
    pub fn write_title(self, what: &'static str) -> impl Fn() -> &'static str + Copy {
        move || self.write_refusal().unwrap_or(what)
    }

    /// Whether a write button whose action is `pending` is disabled.
    pub fn write_disabled(self, pending: impl Fn() -> bool + Copy) -> impl Fn() -> bool + Copy {
        move || pending() || self.write_refusal().is_some()
    }

    /// A token is needed for what the person is doing.
    pub fn token_needed(self) -> bool {
        self.reads_refused.get() || self.writes_refused.get()
    }

    /// Read the snapshot again soon, once for however many calls arrive meanwhile.
    pub fn refresh_soon(self) {
        if self.refresh_pending.get_untracked() {
            return;
        }
        self.refresh_pending.set(true);
        #[cfg(feature = "browser")]
        gloo_timers::callback::Timeout::new(COALESCE_MS, move || {
            self.refresh_pending.set(false);
            self.version.update(|v| *v += 1);
        })
        .forget();
        #[cfg(not(feature = "browser"))]
        {
            self.refresh_pending.set(false);
            self.version.update(|v| *v += 1);
        }
    }

    /// Correct the clock by a server time just received.
    pub fn observe_server_time(self, server_now: Timestamp) {
        #[cfg(feature = "browser")]
        self.offset_ms
            .set(server_now.as_micros() as f64 / 1000.0 - js_sys::Date::now());
        #[cfg(not(feature = "browser"))]
        let _ = server_now;
    }

    /// Start a page's live parts from its first snapshot (`read` is how reading it went,
    /// `after` the event it reflects), once; later calls do nothing. The clock, the event
    /// stream, and asking what this session's token may write. A page rendered on the server
    /// was read without the session's token (a page load carries none), so a refused first
    /// read is read again with it.
    pub fn begin(self, read: Result<(), &ErrorDetail>, after: Option<u64>) {
        if self.started.get_value() {
            return;
        }
        self.started.set_value(true);
        if read.is_err() && crate::app::token::session_token().is_some() {
            self.refresh_soon();
        }
        self.start(after);
        // Asked from the browser, with the session's token (the page render had none).
        leptos::task::spawn_local(async move {
            if let Ok(access) = crate::api::session_write_access().await {
                self.write_access.set(access);
            }
        });
    }

    /// Start the clock and the event stream (browser only; the page lives as long as they do).
    fn start(self, after: Option<u64>) {
        #[cfg(feature = "browser")]
        {
            let tick = move || {
                let ms = js_sys::Date::now() + self.offset_ms.get_untracked();
                self.now
                    .set(Some(Timestamp::from_micros((ms * 1000.0) as i64)));
            };
            tick();
            gloo_timers::callback::Interval::new(TICK_MS, tick).forget();
            if let Err(e) = stream::open(self, after) {
                leptos::logging::error!("could not open the event stream: {e:?}");
                self.connection.set(Connection::Reconnecting);
            }
        }
        #[cfg(not(feature = "browser"))]
        let _ = after;
    }
}

#[cfg(feature = "browser")]
mod stream {
    use super::{Connection, Live};
    use crate::domain::{EventBody, Timestamp};
    use leptos::prelude::*;
    use std::{cell::Cell, rc::Rc};
    use wasm_bindgen::{closure::Closure, JsCast, JsValue};
    use web_sys::EventSource;

    /// The first wait before opening a refused stream again, and the longest.
    const FIRST_BACKOFF_MS: f64 = 1_000.0;
    const MAX_BACKOFF_MS: f64 = 30_000.0;

    /// What outlives one `EventSource`: where to resume, and how many opens failed in a row.
    struct Resume {
        after: Cell<Option<u64>>,
        failures: Cell<u32>,
    }

    pub fn open(live: Live, after: Option<u64>) -> Result<(), JsValue> {
        let resume = Rc::new(Resume {
            after: Cell::new(after),
            failures: Cell::new(0),
        });
        connect(live, resume)
    }

    fn connect(live: Live, resume: Rc<Resume>) -> Result<(), JsValue> {
        // The server functions' root: empty for a page the server rendered, the configured
        // server for the client-side build.
        let root = leptos::server_fn::client::get_server_url();
        let query = web_sys::UrlSearchParams::new()?;
        if let Some(id) = resume.after.get() {
            query.append("after", &id.to_string());
        }
        // EventSource cannot send headers: a read token travels in the query.
        if let Some(token) = crate::app::token::session_token() {
            query.append("access_token", &token);
        }
        let url = format!("{root}/events?{}", String::from(query.to_string()));
        let source = EventSource::new(&url)?;
        let seen = resume.clone();
        let on_event = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                if let Ok(id) = event.last_event_id().parse::<u64>() {
                    seen.after.set(Some(id));
                }
                live.refresh_soon();
            },
        );
        for name in EventBody::NAMES {
            source.add_event_listener_with_callback(name, on_event.as_ref().unchecked_ref())?;
        }
        on_event.forget();
        // After a reconnect the browser resumes with Last-Event-ID; refresh anyway, in case the
        // log's retention was passed while away.
        let opened = resume.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            opened.failures.set(0);
            live.connection.set(Connection::Live);
            live.refresh_soon();
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        on_open.forget();
        let failed = source.clone();
        let on_error = Closure::<dyn FnMut()>::new(move || {
            if failed.ready_state() != EventSource::CLOSED {
                // A dropped connection: the browser reconnects by itself.
                live.connection.set(Connection::Reconnecting);
                return;
            }
            // Refused (any answer but 200) or failed for good: the browser gives up, so the
            // page opens the stream again after a backoff.
            failed.close();
            back_off(live, resume.clone());
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        Ok(())
    }

    fn back_off(live: Live, resume: Rc<Resume>) {
        let failures = resume.failures.get();
        resume.failures.set(failures.saturating_add(1));
        let base = (FIRST_BACKOFF_MS * 2f64.powi(failures.min(8) as i32)).min(MAX_BACKOFF_MS);
        let wait_ms = base * (0.8 + 0.4 * js_sys::Math::random());
        let now_ms = js_sys::Date::now() + live.offset_ms.get_untracked();
        live.connection.set(Connection::BackingOff {
            retry_at: Timestamp::from_micros(((now_ms + wait_ms) * 1000.0) as i64),
        });
        gloo_timers::callback::Timeout::new(wait_ms as u32, move || {
            live.connection.set(Connection::Connecting);
            if let Err(e) = connect(live, resume.clone()) {
                leptos::logging::error!("could not open the event stream: {e:?}");
                back_off(live, resume);
            }
        })
        .forget();
    }
}

/// The error of an operator's write, if its last run failed, as an alert beside its button.
pub fn write_error<T: Clone + Send + Sync + 'static>(
    action: Action<(), Result<T, ErrorDetail>>,
) -> impl IntoView {
    move || {
        action
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <span class="error" role="alert">{e.message}</span> })
    }
}
