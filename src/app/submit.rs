//! The submit form: IDs typed or pasted, a priority, errors inline before anything is sent.

use super::{format, live::Live};
use crate::api::submit_ingestion;
use crate::domain::{
    ids_from_text, ErrorDetail, IngestRequest, IngestResponse, Limits, NewIngestion, Priority,
};
use leptos::prelude::*;

/// The IDs, priority and tenant (blank: none, so the token's or `default`) as the form holds
/// them, checked by the server's own rules.
fn check(
    text: &str,
    priority: &str,
    tenant: &str,
    limits: Limits,
) -> Result<IngestRequest, String> {
    let priority = Priority::from_wire(priority).ok_or("choose a priority")?;
    let ids = ids_from_text(text, limits).map_err(|e| e.to_string())?;
    let tenant = tenant.trim();
    let request = IngestRequest {
        ids,
        priority,
        tenant: (!tenant.is_empty()).then(|| tenant.to_owned()),
    };
    NewIngestion::parse(request.clone(), limits).map_err(|e| e.to_string())?;
    Ok(request)
}

#[component]
pub fn SubmitForm() -> impl IntoView {
    let live = expect_context::<Live>();
    let text = RwSignal::new(String::new());
    let priority = RwSignal::new(Priority::Medium.as_str().to_owned());
    let tenant = RwSignal::new(String::new());
    // Errors show once the person has typed or tried to send, not on an empty new form.
    let touched = RwSignal::new(false);
    // The server's own limits once the queue snapshot has been read (its defaults until then).
    let checked = Memo::new(move |_| {
        check(
            &text.get(),
            &priority.get(),
            &tenant.get(),
            live.limits.get(),
        )
    });

    let submit = Action::new(move |request: &IngestRequest| {
        let request = request.clone();
        async move { submit_ingestion(request).await }
    });
    let last: RwSignal<Option<Result<IngestResponse, ErrorDetail>>> = RwSignal::new(None);
    Effect::new(move |_| {
        if let Some(outcome) = submit.value().get() {
            match &outcome {
                Ok(_) => {
                    live.note_outcome(true, None);
                    text.set(String::new());
                    touched.set(false);
                    live.refresh_soon();
                }
                Err(e) => live.note_outcome(true, Some(e)),
            }
            last.set(Some(outcome));
        }
    });

    let send = move || {
        touched.set(true);
        last.set(None);
        if let Ok(request) = checked.get_untracked() {
            if !submit.pending().get_untracked() {
                submit.dispatch(request);
            }
        }
    };
    let error = move || {
        let local = checked.get().err().filter(|_| touched.get());
        let remote = match last.get() {
            Some(Err(e)) => Some(e.message),
            _ => None,
        };
        local.or(remote)
    };
    let summary = move || match checked.get() {
        Ok(request) => {
            let n = request.ids.len() as u64;
            let batches = n.div_ceil(live.batch_size.get());
            format!(
                "{n} ID{} in {batches} batch{}",
                if n == 1 { "" } else { "s" },
                if batches == 1 { "" } else { "es" }
            )
        }
        Err(_) => "Separate IDs with commas, spaces or new lines; 10-20 is a range.".to_owned(),
    };
    let accepted = move || match last.get() {
        Some(Ok(r)) => Some(format!("Accepted as {}", format::short(r.ingestion_id))),
        _ => None,
    };

    view! {
        <section class="card submit-card" aria-labelledby="submit-title">
            <h2 id="submit-title">"Submit IDs"</h2>
            <form
                class="submit"
                data-testid="submit-form"
                novalidate
                on:submit=move |ev| {
                    ev.prevent_default();
                    send();
                }
            >
                <label for="ids">"IDs"</label>
                <textarea
                    id="ids"
                    name="ids"
                    rows="3"
                    placeholder="1, 2, 3, 10-20"
                    data-testid="ids-input"
                    aria-describedby="ids-help ids-error"
                    aria-invalid=move || error().is_some().to_string()
                    prop:value=move || text.get()
                    on:input=move |ev| {
                        text.set(event_target_value(&ev));
                        touched.set(true);
                        last.set(None);
                    }
                    on:keydown=move |ev| {
                        if ev.key() == "Enter" && (ev.ctrl_key() || ev.meta_key()) {
                            ev.prevent_default();
                            send();
                        }
                    }
                ></textarea>
                <p id="ids-help" class="help" data-testid="form-summary">{summary}</p>
                <div class="row">
                    <label for="priority">"Priority"</label>
                    <select
                        id="priority"
                        name="priority"
                        data-testid="priority"
                        prop:value=move || priority.get()
                        on:change=move |ev| priority.set(event_target_value(&ev))
                    >
                        {Priority::ALL
                            .into_iter()
                            .map(|p| view! { <option value=p.as_str()>{p.as_str()}</option> })
                            .collect_view()}
                    </select>
                    <label for="tenant">"Tenant"</label>
                    <input
                        id="tenant"
                        name="tenant"
                        class="tenant-input"
                        data-testid="tenant"
                        placeholder="optional"
                        maxlength="64"
                        autocomplete="off"
                        prop:value=move || tenant.get()
                        on:input=move |ev| {
                            tenant.set(event_target_value(&ev));
                            touched.set(true);
                            last.set(None);
                        }
                    />
                    <button
                        type="submit"
                        data-testid="submit"
                        title=live.write_title("Store the IDs and queue their batches")
                        disabled=live.write_disabled(move || submit.pending().get())
                    >
                        {move || if submit.pending().get() { "Sending…" } else { "Submit" }}
                    </button>
                </div>
                <p id="ids-error" class="error" role="alert" data-testid="form-error">
                    {error}
                </p>
                <p class="accepted" role="status" data-testid="form-accepted">
                    {accepted}
                </p>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_refuses_what_the_server_would_with_the_same_words() {
        let limits = Limits { max_ids: 5 };
        assert_eq!(
            check("1, 2, 3-4", "HIGH", "", limits).map(|r| r.ids),
            Ok(vec![1, 2, 3, 4])
        );
        assert!(check("", "HIGH", "", limits)
            .unwrap_err()
            .contains("at least one"));
        assert!(check("0", "LOW", "", limits)
            .unwrap_err()
            .contains("out of range"));
        assert!(check("1-6", "LOW", "", limits)
            .unwrap_err()
            .contains("limit"));
        assert_eq!(
            check("1", "high", "", limits).unwrap_err(),
            "choose a priority"
        );
        assert_eq!(
            check("1", "LOW", " acme ", limits).map(|r| r.tenant),
            Ok(Some("acme".to_owned()))
        );
        assert!(check("1", "LOW", "a b", limits)
            .unwrap_err()
            .contains("\"tenant\" must be"));
    }
}
