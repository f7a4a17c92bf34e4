//! The search box: an ingestion's id, the 8 characters its card shows, or a batch's id, and
//! the ingestion's page opens (the server resolves what was typed: `find_ingestions`).

use super::format;
use crate::api::find_ingestions;
use crate::domain::{ErrorDetail, Found};
use leptos::either::EitherOf4;
use leptos::prelude::*;
use uuid::Uuid;

/// Where an ingestion's page is: on this server, or for the client-side build (whose static
/// host has no such page) on the server it talks to.
pub fn page_of(id: Uuid) -> String {
    #[cfg(feature = "csr")]
    let root = leptos::server_fn::client::get_server_url();
    #[cfg(not(feature = "csr"))]
    let root = "";
    format!("{root}/ingestions/{id}")
}

#[component]
pub fn SearchBox() -> impl IntoView {
    let text = RwSignal::new(String::new());
    let find = Action::new(move |query: &String| {
        let query = query.clone();
        async move { find_ingestions(query).await }
    });
    // One match: open its page (a whole page load: each page keeps its own event stream).
    Effect::new(move |_| {
        if let Some(Ok(Found { ingestions })) = find.value().get() {
            if let [only] = ingestions.as_slice() {
                open(&page_of(*only));
            }
        }
    });
    let answer = move || match find.value().get() {
        None => EitherOf4::A(()),
        Some(Ok(Found { ingestions })) if ingestions.is_empty() => EitherOf4::B(view! {
            <p class="muted" data-testid="search-none" role="status">"No ingestion found."</p>
        }),
        Some(Ok(Found { ingestions })) => EitherOf4::C(view! {
            <ul class="search-found" data-testid="search-found">
                {ingestions
                    .into_iter()
                    .map(|id| view! {
                        <li>
                            <a href=page_of(id) rel="external" title=id.to_string()>
                                <code>{format::short(id)}</code>
                            </a>
                        </li>
                    })
                    .collect_view()}
            </ul>
        }),
        Some(Err(ErrorDetail { message, .. })) => EitherOf4::D(view! {
            <p class="error" role="alert" data-testid="search-error">{message}</p>
        }),
    };
    view! {
        <form
            class="search"
            role="search"
            on:submit=move |ev| {
                ev.prevent_default();
                let query = text.get_untracked();
                if !query.trim().is_empty() && !find.pending().get_untracked() {
                    find.dispatch(query);
                }
            }
        >
            <label for="search" class="visually-hidden">"Find an ingestion"</label>
            <input
                id="search"
                data-testid="search"
                type="search"
                placeholder="ingestion id, short id or batch id"
                autocomplete="off"
                spellcheck="false"
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
            />
            <button type="submit" data-testid="search-go">"Find"</button>
            {answer}
        </form>
    }
}

/// Load `path` as a new page.
fn open(path: &str) {
    #[cfg(feature = "browser")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_href(path);
    }
    #[cfg(not(feature = "browser"))]
    let _ = path;
}
