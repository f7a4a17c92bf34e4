//! The recent ingestions, newest first, each with its progress, prediction and batch cards.

use super::{
    dashboard::{now_or, LoadError, RecentResource, LISTED},
    format,
    live::{write_error, Live},
    search::page_of,
};
use crate::api::{cancel_ingestion, list_ingestions};
use crate::domain::{
    BatchAttempts, BatchStatus, BatchView, ErrorDetail, IngestionStatus, IngestionSummary,
    Priority, RecentIngestions, Timestamp,
};
use leptos::either::{Either, EitherOf3};
use leptos::prelude::*;
use uuid::Uuid;

/// Which ingestions the list asks the server for: a status and a priority (blank: any), and
/// `before`: the last one of the page before, to page to older ones (`None`: the newest).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    pub status: String,
    pub priority: String,
    pub before: Option<Uuid>,
}

impl Listing {
    /// The list the server answers for it, at most `limit` long.
    pub async fn read(self, limit: u32) -> Result<RecentIngestions, ErrorDetail> {
        let given = |s: String| (!s.is_empty()).then_some(s);
        list_ingestions(
            limit,
            self.before.map(|id| id.to_string()),
            given(self.priority),
            given(self.status),
        )
        .await
    }
}

#[component]
pub fn IngestionList(recent: RecentResource, listing: RwSignal<Listing>) -> impl IntoView {
    // Shows only the listed ingestions whose tenant starts with it (blank: all).
    let filter = RwSignal::new(String::new());
    view! {
        <section class="card recent-card" aria-labelledby="recent-title">
            <h2 id="recent-title">
                {move || match listing.with(|l| l.before.is_some()) {
                    true => "Older ingestions",
                    false => "Recent ingestions",
                }}
            </h2>
            <p class="tenant-filter">
                <Condition
                    label="Status"
                    id="status-filter"
                    options=IngestionStatus::ALL.map(IngestionStatus::as_str).to_vec()
                    field=|l| &mut l.status
                    listing
                />
                <Condition
                    label="Priority"
                    id="priority-filter"
                    options=Priority::ALL.map(Priority::as_str).to_vec()
                    field=|l| &mut l.priority
                    listing
                />
                <label for="tenant-filter">"Tenant"</label>
                <input
                    id="tenant-filter"
                    data-testid="tenant-filter"
                    placeholder="all"
                    autocomplete="off"
                    prop:value=move || filter.get()
                    on:input=move |ev| filter.set(event_target_value(&ev))
                />
            </p>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match recent.await {
                        Ok(list) if list.ingestions.is_empty() => {
                            EitherOf3::A(view! {
                                <p class="muted" data-testid="no-ingestions">
                                    {match listing.get_untracked() == Listing::default() {
                                        true => "Nothing submitted yet.",
                                        false => "No ingestion matches.",
                                    }}
                                </p>
                                <Pager last=None listing/>
                            })
                        }
                        Ok(list) => {
                            // The last one listed, if the page is full (older ones may exist).
                            let last = (list.ingestions.len() >= LISTED as usize)
                                .then(|| list.ingestions.last().map(|i| i.ingestion_id))
                                .flatten();
                            EitherOf3::B(view! {
                                <ol class="ingestions" data-testid="ingestions">
                                    {list
                                        .ingestions
                                        .into_iter()
                                        .map(|i| view! { <IngestionCard ingestion=i now=list.now filter/> })
                                        .collect_view()}
                                </ol>
                                <Pager last listing/>
                            })
                        }
                        Err(error) => EitherOf3::C(view! { <LoadError error/> }),
                    }
                })}
            </Transition>
        </section>
    }
}

/// One ingestion: its progress, prediction, Cancel, and its batches (`paged`: a page of them
/// on the ingestion's own page, which says itself which ones; otherwise the window around its
/// work in progress). `filter` hides it unless its tenant starts with the text.
#[component]
pub fn IngestionCard(
    ingestion: IngestionSummary,
    now: Timestamp,
    #[prop(optional)] filter: Option<RwSignal<String>>,
    #[prop(optional)] paged: bool,
) -> impl IntoView {
    let live = expect_context::<Live>();
    let tenant = ingestion.tenant.clone();
    let hidden = {
        let tenant = tenant.clone();
        move || filter.is_some_and(|f| !tenant.starts_with(f.get().trim()))
    };
    let status = ingestion.status.as_str();
    let priority = ingestion.priority.as_str();
    let total = ingestion.batch_count.max(1);
    let done = ingestion.completed_batches;
    // Per mille in integers: float formatting would add ~20 KB to the browser bundle.
    let permille = u64::from(done) * 1000 / u64::from(total);
    let percent = format!("{}.{}", permille / 10, permille % 10);
    let created = ingestion.created_at;
    let eta = match (
        ingestion.cancelled_at,
        ingestion.completed_at,
        ingestion.predicted_completion,
    ) {
        // Plain text or a live countdown. (`Either`, not `into_any`: every erased view type
        // keeps its asynchronous hydration code in the bundle.)
        _ if ingestion.status == IngestionStatus::Failed => Either::Left(format!(
            "Failed: {} batch{} failed after every attempt",
            ingestion.failed_batches,
            if ingestion.failed_batches == 1 {
                ""
            } else {
                "es"
            }
        )),
        (Some(at), _, _) => Either::Left(format!(
            "Cancelled at {} UTC: {} batches will not run",
            format::clock(at),
            ingestion.cancelled_batches
        )),
        (None, Some(at), _) => {
            let took = format::elapsed(created, at);
            Either::Left(format!(
                "Completed at {} UTC, {took} after submission",
                format::clock(at)
            ))
        }
        (None, None, Some(at)) => {
            let left = move || format::countdown(at, now_or(live, now));
            Either::Right(
                view! { "Expected done at " {format::clock(at)} " UTC · " <span class="countdown">{left}</span> },
            )
        }
        (None, None, None) => Either::Left(String::new()),
    };
    let waiting = ingestion.batch_count
        - ingestion.completed_batches
        - ingestion.triggered_batches
        - ingestion.cancelled_batches
        - ingestion.failed_batches;
    let id = ingestion.ingestion_id;
    let cancel = live.write_action(move || cancel_ingestion(id.to_string()));
    let cancel_error = write_error(cancel);
    // Cancelling discards work: the button asks first (the question survives redraws).
    let confirming = move || live.confirm_cancel.get() == Some(id);
    // Nothing left to cancel: a question left open would come back with a retried batch.
    if waiting == 0 && live.confirm_cancel.get_untracked() == Some(id) {
        live.confirm_cancel.set(None);
    }
    let question = format!(
        "Cancel {waiting} waiting batch{}?",
        if waiting == 1 { "" } else { "es" }
    );
    let cancel_button = (waiting > 0).then(|| {
        let ask = move || {
            view! {
                <button
                    type="button"
                    class="cancel"
                    data-testid="cancel"
                    title=live.write_title(
                        "Cancel the batches that have not started; a running batch finishes",
                    )
                    disabled=live.write_disabled(move || cancel.pending().get())
                    on:click=move |_| live.confirm_cancel.set(Some(id))
                >
                    "Cancel"
                </button>
            }
        };
        view! {
            <Show when=confirming fallback=ask>
                <span class="confirm" role="group" data-testid="cancel-question">
                    {question.clone()}
                    <button
                        type="button"
                        class="cancel"
                        data-testid="cancel-confirm"
                        disabled=live.write_disabled(|| false)
                        on:click=move |_| {
                            live.confirm_cancel.set(None);
                            cancel.dispatch(());
                        }
                    >
                        "Yes, cancel"
                    </button>
                    <button
                        type="button"
                        data-testid="cancel-keep"
                        on:click=move |_| live.confirm_cancel.set(None)
                    >
                        "Keep"
                    </button>
                </span>
            </Show>
            {cancel_error}
        }
    });
    let first = ingestion.first_shown;
    let shown = ingestion.batches.len() as u32;
    let window_note = (!paged && shown < ingestion.batch_count).then(|| {
        format!(
            "Showing batches {}–{} of {}",
            first + 1,
            first + shown,
            ingestion.batch_count
        )
    });
    let batches = ingestion
        .batches
        .into_iter()
        .enumerate()
        .map(|(i, b)| view! { <BatchCard batch=b position=first + i as u32 now/> })
        .collect_view();

    view! {
        <li
            class=format!("ingestion status-{status}")
            data-testid="ingestion"
            data-ingestion-id=ingestion.ingestion_id.to_string()
            data-status=status
            data-priority=priority
            data-tenant=ingestion.tenant
            hidden=hidden
        >
            <header class="ingestion-head">
                <span class=format!("badge priority-{}", priority.to_ascii_lowercase())>{priority}</span>
                <a
                    href=page_of(ingestion.ingestion_id)
                    rel="external"
                    data-testid="ingestion-link"
                    title=format!("{}: open its page", ingestion.ingestion_id)
                >
                    <code>{format::short(ingestion.ingestion_id)}</code>
                </a>
                <span class="tenant" title="tenant" data-testid="ingestion-tenant">{tenant.clone()}</span>
                <span class=format!("status status-{status}") data-testid="ingestion-status">
                    {status}
                </span>
                <span class="muted">"submitted " {format::clock(created)} " UTC"</span>
                {cancel_button}
            </header>
            <div
                class="progress"
                role="progressbar"
                aria-label="batches completed"
                aria-valuemin="0"
                aria-valuemax=ingestion.batch_count
                aria-valuenow=done
            >
                <span style=format!("width: {percent}%")></span>
            </div>
            <p class="progress-text" data-testid="progress">
                {format!(
                    "{done} of {} batches completed · {} IDs",
                    ingestion.batch_count,
                    ingestion.id_count,
                )}
                {(ingestion.cancelled_batches > 0)
                    .then(|| format!(" · {} cancelled", ingestion.cancelled_batches))}
                {(ingestion.failed_batches > 0)
                    .then(|| format!(" · {} failed", ingestion.failed_batches))}
            </p>
            <p class="eta" data-testid="eta">{eta}</p>
            <ol class="batches">{batches}</ol>
            {window_note.map(|n| view! { <p class="muted">{n}</p> })}
        </li>
    }
}

/// One of the list's conditions, asked of the server: "any", or one of `options`, held in
/// the `field` of `listing` (a new choice lists from the newest again).
#[component]
fn Condition(
    label: &'static str,
    id: &'static str,
    options: Vec<&'static str>,
    field: fn(&mut Listing) -> &mut String,
    listing: RwSignal<Listing>,
) -> impl IntoView {
    let options = options
        .into_iter()
        .map(|o| view! { <option value=o>{o}</option> })
        .collect_view();
    view! {
        <label for=id>{label}</label>
        <select
            id=id
            data-testid=id
            prop:value=move || listing.with(|l| field(&mut l.clone()).clone())
            on:change=move |ev| {
                let value = event_target_value(&ev);
                listing.update(|l| {
                    *field(l) = value;
                    l.before = None;
                });
            }
        >
            <option value="">"any"</option>
            {options}
        </select>
    }
}

/// "Older" pages past `last`, the last ingestion listed (if the page was full); "Newest"
/// goes back to the first page.
#[component]
fn Pager(last: Option<Uuid>, listing: RwSignal<Listing>) -> impl IntoView {
    view! {
        <p class="pager">
            <button
                type="button"
                data-testid="list-newest"
                disabled=move || listing.with(|l| l.before.is_none())
                on:click=move |_| listing.update(|l| l.before = None)
            >
                "« Newest"
            </button>
            <button
                type="button"
                data-testid="list-older"
                disabled=last.is_none()
                on:click=move |_| {
                    if let Some(id) = last {
                        listing.update(|l| l.before = Some(id));
                    }
                }
            >
                "Older ›"
            </button>
        </p>
    }
}

#[component]
fn BatchCard(batch: BatchView, position: u32, now: Timestamp) -> impl IntoView {
    let live = expect_context::<Live>();
    let status = batch.status.as_str();
    let when = match (batch.status, batch.started_at, batch.completed_at) {
        (BatchStatus::Completed, Some(start), Some(end)) => EitherOf3::A(format!(
            "started {}, took {}",
            format::clock(start),
            format::elapsed(start, end)
        )),
        (BatchStatus::Triggered, Some(start), _) => {
            let running = move || format::elapsed(start, now_or(live, start));
            EitherOf3::B(view! { "started " {format::clock(start)} ", running " {running} })
        }
        (BatchStatus::YetToStart, _, _) => match batch.predicted_start {
            Some(at) => {
                let left = move || format::countdown(at, now_or(live, now));
                EitherOf3::C(view! { "starts " {format::clock(at)} " · " {left} })
            }
            None => EitherOf3::A("waiting".to_owned()),
        },
        (BatchStatus::Cancelled, _, _) => EitherOf3::A("will not run".to_owned()),
        (BatchStatus::Failed, _, _) => EitherOf3::A(format!(
            "failed after {} attempt{}",
            batch.attempts,
            if batch.attempts == 1 { "" } else { "s" }
        )),
        _ => EitherOf3::A(String::new()),
    };
    // The last failed attempt, while a retry waits (or for good).
    let problem = batch.error.clone().map(|error| {
        let retry = batch
            .retry_at
            .map(|at| format!(" · retry at {} UTC", format::clock(at)));
        view! {
            <span class="batch-error" data-testid="batch-error">
                {error}
                {retry}
            </span>
        }
    });
    let result_count = batch.results.len();
    // A big batch lists its first results here; all of them are in /status/{id}/results.
    const LISTED_RESULTS: usize = 50;
    let more = result_count.saturating_sub(LISTED_RESULTS);
    let results = (result_count > 0).then(|| {
        let items = batch
            .results
            .iter()
            .take(LISTED_RESULTS)
            .map(|r| {
                let (class, text) = match &r.error {
                    Some(e) => ("result error", e.clone()),
                    None => ("result", r.data.to_string()),
                };
                view! {
                    <li class=class>
                        <code>{r.id}</code>
                        " "
                        {text}
                    </li>
                }
            })
            .collect_view();
        let batch_id = batch.batch_id;
        let open = live.open_results;
        view! {
            <details
                class="batch-results"
                data-testid="batch-results"
                prop:open=move || open.with_untracked(|o| o.contains(&batch_id))
                on:toggle=move |_ev| {
                    // Handlers run in the browser only.
                    #[cfg(feature = "browser")]
                    {
                        remember_open(open, batch_id, &_ev);
                    }
                }
            >
                <summary>{format!("{result_count} result{}", if result_count == 1 { "" } else { "s" })}</summary>
                <ul>{items}</ul>
                {(more > 0).then(|| view! { <p class="muted">{format!("… and {more} more")}</p> })}
            </details>
        }
    });
    let history = (batch.attempts > 0).then(|| attempt_history(batch.batch_id, batch.attempts));
    // A failed batch can be put back in the queue (its attempts keep counting).
    let retry = (batch.status == BatchStatus::Failed).then(|| {
        let batch_id = batch.batch_id;
        let action =
            live.write_action(move || crate::api::retry_failed_batch(batch_id.to_string()));
        let error = write_error(action);
        view! {
            <span class="batch-retry">
                <button
                    type="button"
                    data-testid="retry"
                    title=live.write_title(
                        "Put the batch back in the queue, at its place; its attempts keep counting",
                    )
                    disabled=live.write_disabled(move || action.pending().get())
                    on:click=move |_| {
                        action.dispatch(());
                    }
                >
                    "Retry"
                </button>
                {error}
            </span>
        }
    });
    view! {
        <li
            class=format!("batch status-{status}")
            data-testid="batch"
            data-status=status
            data-position=position
            data-batch-id=batch.batch_id.to_string()
        >
            <span class="batch-no">"#" {position + 1}</span>
            <span class="batch-ids">{format::ids(&batch.ids)}</span>
            <span class=format!("status status-{status}")>{status}</span>
            <span class="batch-when muted">{when}</span>
            {problem}
            {retry}
            {results}
            {history}
        </li>
    }
}

/// A batch's attempts, read from the server when the person opens them: who ran each
/// (`--replica-name`), when, and how it ended.
fn attempt_history(batch_id: uuid::Uuid, count: u32) -> impl IntoView {
    let live = expect_context::<Live>();
    let open_set = live.open_attempts;
    let shown = RwSignal::new(open_set.with_untracked(|o| o.contains(&batch_id)));
    // A signal, not a resource: nothing here may hold up the list's `Transition` (a local
    // resource never resolves on the server, so the page was rendered without the list).
    let attempts: RwSignal<Option<Result<BatchAttempts, ErrorDetail>>> = RwSignal::new(None);
    // Each read is numbered: only the latest one's answer is shown ("…" until it comes).
    let reads = StoredValue::new(0u32);
    let load = move || {
        attempts.set(None);
        reads.update_value(|n| *n = n.wrapping_add(1));
        #[cfg(feature = "browser")]
        {
            let this = reads.get_value();
            leptos::task::spawn_local(async move {
                let read = crate::api::batch_attempt_history(batch_id.to_string()).await;
                if reads.try_get_value() == Some(this) {
                    attempts.try_set(Some(read));
                }
            });
        }
    };
    // Opened before this redraw: read afresh.
    Effect::new(move |_| {
        if shown.get_untracked() {
            load();
        }
    });
    let list = move || {
        match attempts.get() {
        None => EitherOf3::A(view! { <li class="muted">"…"</li> }),
        Some(Err(e)) => EitherOf3::B(view! { <li class="result error">{e.message}</li> }),
        Some(Ok(history)) => EitherOf3::C(
            history
                .attempts
                .into_iter()
                .map(|a| {
                    let ended = a
                        .finished_at
                        .map(|end| format!(", took {}", format::elapsed(a.started_at, end)))
                        .unwrap_or_default();
                    view! {
                        <li data-testid="attempt" data-outcome=a.outcome.clone()>
                            "#" {a.attempt} " " <code>{a.replica}</code> " · "
                            {format!("started {}{ended} · ", format::clock(a.started_at))}
                            <span class=format!("outcome outcome-{}", a.outcome)>{a.outcome.clone()}</span>
                            {a.error.map(|e| view! { <span class="muted">" · " {e}</span> })}
                        </li>
                    }
                })
                .collect_view(),
        ),
    }
    };
    view! {
        <details
            class="batch-attempts"
            data-testid="batch-attempts"
            prop:open=move || shown.get_untracked()
            on:toggle=move |_ev| {
                // Handlers run in the browser only.
                #[cfg(feature = "browser")]
                {
                    let now_open = remember_open(open_set, batch_id, &_ev);
                    if now_open && !shown.get_untracked() {
                        load();
                    }
                    shown.set(now_open);
                }
            }
        >
            <summary>{format!("{count} attempt{}", if count == 1 { "" } else { "s" })}</summary>
            <ol class="attempts">{list}</ol>
        </details>
    }
}

/// Note whether a batch's `<details>` is now open, so a redrawn card reopens it; the answer.
#[cfg(feature = "browser")]
fn remember_open(
    set: RwSignal<std::collections::HashSet<uuid::Uuid>>,
    batch_id: uuid::Uuid,
    toggled: &leptos::ev::Event,
) -> bool {
    let now_open = event_target::<web_sys::HtmlDetailsElement>(toggled).open();
    set.update_untracked(|o| {
        if now_open {
            o.insert(batch_id);
        } else {
            o.remove(&batch_id);
        }
    });
    now_open
}
