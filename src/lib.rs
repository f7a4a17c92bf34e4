//! sluice: a priority, rate-limited batch ingestion service with a live dashboard.
//!
//! Clients submit lists of IDs with a priority; sluice splits them into batches and hands one
//! batch at a time to a downstream processor at a fixed global rate, highest priority first.
//!
//! # Layout
//!
//! - [`domain`]: wire types and validation shared by server and browser (wasm-safe).
//! - [`app`]: the Leptos application (server-rendered, hydrated in the browser).
//! - [`api`]: server functions, the browser's calls into the same service as the JSON routes.
//! - `server` (feature `ssr`): everything that runs only on the server:
//!   - `server::config`: command line and environment, validated at start;
//!   - `server::store`: the `Store` trait and its SQLite backend (knows no HTTP);
//!   - `server::scheduler`: the dispatch loop (knows no HTTP, no SQL);
//!   - `server::processor`: what is done with a dispatched batch;
//!   - `server::service`: the one entry point for every rule, used by all routes;
//!   - `server::http`: JSON routes and their error mapping;
//!   - `server::application`: wiring, listening, graceful shutdown.

// The dashboard's view types nest deeply when components are not erased (plain cargo builds).
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod domain;

#[cfg(feature = "ssr")]
pub mod server;

/// Browser entry point: attach the server-rendered page to the wasm application.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}

/// Client-side entry point (Trunk): mount the dashboard on a static page and point it at the
/// sluice server named by `?server=URL` or `<meta name="sluice-server" content="URL">` (empty:
/// the page's own origin).
#[cfg(feature = "csr")]
pub fn mount_csr() {
    console_error_panic_hook::set_once();
    if let Some(server) = csr_server() {
        // Server functions and the event stream both use this root.
        leptos::server_fn::client::set_server_url(Box::leak(server.into_boxed_str()));
    }
    leptos::mount::mount_to_body(app::App);
}

#[cfg(feature = "csr")]
fn csr_server() -> Option<String> {
    let window = web_sys::window()?;
    let from_query = window
        .location()
        .search()
        .ok()
        .and_then(|q| web_sys::UrlSearchParams::new_with_str(&q).ok())
        .and_then(|p| p.get("server"));
    let from_meta = || {
        window
            .document()?
            .query_selector("meta[name=sluice-server]")
            .ok()??
            .get_attribute("content")
    };
    from_query
        .or_else(from_meta)
        .map(|s| s.trim().trim_end_matches('/').to_owned())
        .filter(|s| !s.is_empty())
}
