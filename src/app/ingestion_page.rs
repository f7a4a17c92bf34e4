//! The page of one ingestion at `/ingestions/{id}`: its card with a page of its batches
//! (`?from=` the position of the first), each with its IDs, results, attempts and errors,
//! kept live by the event stream like the dashboard. A page reads only its own batches (and
//! counts, by index, the waiting ones before it), so a big ingestion opens fast.

use super::{
    dashboard::{ConnectionBadge, LoadError},
    ingestions::IngestionCard,
    live::Live,
    search::{page_of, SearchBox},
    token::TokenPrompt,
};
use crate::api::read_ingestion_page;
use crate::domain::{ErrorDetail, IngestionPage};
use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

#[component]
pub fn IngestionPageView() -> impl IntoView {
    let live = Live::new();
    provide_context(live);
    let params = use_params_map();
    let query = use_query_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").unwrap_or_default()));
    let from = Memo::new(move |_| {
        query.with(|q| {
            q.get("from")
                .and_then(|f| f.parse::<u32>().ok())
                .unwrap_or(0)
        })
    });
    let page: Resource<Result<IngestionPage, ErrorDetail>> = Resource::new(
        move || (live.version.get(), id.get(), from.get()),
        |(_, id, from)| read_ingestion_page(id, from),
    );
    // Every read corrects the clock; the first one also starts the live parts.
    Effect::new(move |_| {
        let Some(read) = page.get() else { return };
        live.note_read(read.as_ref().map(|p| p.now));
        let after = read.as_ref().ok().map(|p| p.last_event_id);
        live.begin(read.as_ref().map(|_| ()), after);
    });

    view! {
        <header class="masthead">
            <div>
                <h1><a href="/" rel="external" data-testid="home">"sluice"</a></h1>
                <p class="tagline">"Ingestion " <code>{move || id.get()}</code></p>
            </div>
            <SearchBox/>
            <ConnectionBadge live/>
        </header>
        <TokenPrompt/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => Either::Left(view! { <Paged page=p/> }),
                    Err(error) => {
                        page_status(&error);
                        Either::Right(view! { <LoadError error/> })
                    }
                }
            })}
        </Transition>
    }
}

/// The server's render of the page of an unknown ingestion answers 404 (and a refused read its
/// own status), not 200: the page is rendered whole before it is sent (`SsrMode::Async`).
fn page_status(error: &ErrorDetail) {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        let status = match error.code.as_str() {
            "not_found" => axum::http::StatusCode::NOT_FOUND,
            "unauthorized" => axum::http::StatusCode::UNAUTHORIZED,
            "forbidden" => axum::http::StatusCode::FORBIDDEN,
            _ => return,
        };
        response.set_status(status);
    }
    #[cfg(not(feature = "ssr"))]
    let _ = error;
}

/// The ingestion's card and the links to the other pages of its batches.
#[component]
fn Paged(page: IngestionPage) -> impl IntoView {
    let ingestion = page.ingestion;
    let (first, total, size) = (
        ingestion.first_shown,
        ingestion.batch_count,
        page.page_size.max(1),
    );
    let shown = ingestion.batches.len() as u32;
    let base = page_of(ingestion.ingestion_id);
    let link = move |to: u32, label: &'static str, testid: &'static str, enabled: bool| {
        let href = format!("{base}?from={to}");
        view! {
            <a
                href=href
                class="page-link"
                data-testid=testid
                aria-disabled=(!enabled).to_string()
                class:disabled=!enabled
            >
                {label}
            </a>
        }
    };
    let last_page = total.saturating_sub(1) / size * size;
    let nav = view! {
        <nav class="pager" data-testid="pager" aria-label="pages of batches">
            {link(0, "« First", "page-first", first > 0)}
            {link(first.saturating_sub(size), "‹ Previous", "page-previous", first > 0)}
            <span data-testid="page-range">
                {format!(
                    "Batches {}–{} of {}",
                    first + 1,
                    first + shown,
                    total
                )}
            </span>
            {link((first + size).min(last_page), "Next ›", "page-next", first + shown < total)}
            {link(last_page, "Last »", "page-last", first + shown < total)}
        </nav>
    };
    view! {
        <section class="card ingestion-page" data-testid="ingestion-page">
            {nav}
            <ol class="ingestions">
                <IngestionCard ingestion now=page.now paged=true/>
            </ol>
        </section>
    }
}
