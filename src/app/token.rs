//! The API token, when the server asks for one: a person enters it once per browser session
//! (kept in `sessionStorage`, gone when the tab's session ends), and every server-function call
//! and the event stream carry it.

use super::live::Live;
use leptos::prelude::*;

#[cfg(feature = "browser")]
const KEY: &str = "sluice-token";

#[cfg(feature = "browser")]
fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// The token entered in this browser session, if any.
pub fn session_token() -> Option<String> {
    #[cfg(feature = "browser")]
    {
        storage()?.get_item(KEY).ok()?.filter(|t| !t.is_empty())
    }
    #[cfg(not(feature = "browser"))]
    None
}

/// Keep (or with `None`, forget) the token, then load the page again with it.
#[cfg_attr(not(feature = "browser"), allow(unused_variables))]
fn use_token(token: Option<&str>) {
    #[cfg(feature = "browser")]
    {
        if let Some(storage) = storage() {
            let _ = match token {
                Some(token) => storage.set_item(KEY, token.trim()),
                None => storage.remove_item(KEY),
            };
        }
        if let Some(window) = web_sys::window() {
            let _ = window.location().reload();
        }
    }
}

/// Asks for a token when a read or a write was refused for the lack of one.
#[component]
pub fn TokenPrompt() -> impl IntoView {
    let live = expect_context::<Live>();
    let entered = RwSignal::new(String::new());
    let has_token = session_token().is_some();
    view! {
        <Show when=move || live.token_needed()>
            <form
                class="card token"
                data-testid="token-form"
                on:submit=move |ev| {
                    ev.prevent_default();
                    let token = entered.get_untracked();
                    if !token.trim().is_empty() {
                        use_token(Some(&token));
                    }
                }
            >
                <label for="token">
                    {move || match (live.write_refusal(), has_token) {
                        (Some(_), _) => "This session's token may only read. Another API token:",
                        (None, true) => "The token for this session was not accepted. API token:",
                        (None, false) => "This server needs an API token:",
                    }}
                </label>
                <div class="row">
                    <input
                        id="token"
                        type="password"
                        autocomplete="off"
                        data-testid="token-input"
                        prop:value=move || entered.get()
                        on:input=move |ev| entered.set(event_target_value(&ev))
                    />
                    <button type="submit" data-testid="token-save">"Use token"</button>
                </div>
                <p class="help">"Kept in this browser tab's session only."</p>
            </form>
        </Show>
    }
}
