//! The Leptos application: the HTML shell, the dashboard at `/` and each ingestion's page
//! at `/ingestions/{id}`.
//!
//! The UI knows no SQL and no HTTP routes beyond the server functions in [`crate::api`] and
//! the event stream; every rule it applies (ID parsing, limits) is the shared domain code.

mod dashboard;
mod format;
mod ingestion_page;
mod ingestions;
mod live;
mod queue;
mod search;
mod submit;
mod timeline;
pub(crate) mod token;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document around the application, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: tests wait for this marker.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));

    view! {
        // The client-side build links its stylesheet from index.html instead.
        {(!cfg!(feature = "csr")).then(|| view! { <Stylesheet id="leptos" href="/pkg/sluice.css"/> })}
        <Title text="sluice"/>
        <Router>
            <main data-testid="app" data-hydrated=move || hydrated.get().to_string()>
                <Routes fallback=|| view! { <p>"Not found."</p> }>
                    // Rendered whole once every read has resolved (`Async`), so the first
                    // paint has all of it and hydration finds exactly what the server sent:
                    // out-of-order streaming sent a section empty now and then (while a local
                    // resource held the list's Transition) and hydration stopped on it. A
                    // page's reads take milliseconds, so waiting for them costs nothing seen.
                    <Route path=path!("/") view=dashboard::Dashboard ssr=SsrMode::Async/>
                    <Route
                        path=path!("/ingestions/:id")
                        view=ingestion_page::IngestionPageView
                        ssr=SsrMode::Async
                    />
                </Routes>
            </main>
        </Router>
    }
}
