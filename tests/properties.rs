//! Property tests of the request validator, the one gate every submission passes (JSON routes,
//! server functions and the dashboard's form): whatever bytes arrive, it never panics, accepts
//! exactly what the rules allow (IDs, priority, tenant), and splits accepted IDs into batches
//! without losing, reordering or inventing one.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sluice::domain::{Limits, NewIngestion, Priority};

const MAX_ID: u64 = 1_000_000_007;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_answered_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = NewIngestion::parse_json(&body, Limits { max_ids: 5 }) {
            prop_assert!(!e.code().is_empty());
        }
    }

    #[test]
    fn json_like_text_is_answered_without_panicking(body in r#"\{("ids"|"priority"|"x"|\[|\]|:|,|-?[0-9]{1,22}|\.|e|"HIGH"|null|true| )*\}?"#) {
        if let Err(e) = NewIngestion::parse_json(body.as_bytes(), Limits { max_ids: 5 }) {
            prop_assert!(!e.code().is_empty());
        }
    }

    #[test]
    fn exactly_the_requests_the_rules_allow_are_accepted(
        ids in proptest::option::of(proptest::collection::vec(id_value(), 0..12)),
        priority in priority_value(),
        tenant in tenant_value(),
        max_ids in 1usize..10,
        extra_field in any::<bool>(),
    ) {
        let mut fields = Map::new();
        if let Some(ids) = &ids {
            fields.insert("ids".into(), Value::Array(ids.iter().map(|(v, _)| v.clone()).collect()));
        }
        if let Some((p, _)) = &priority {
            fields.insert("priority".into(), p.clone());
        }
        if let Some((t, _)) = &tenant {
            fields.insert("tenant".into(), t.clone());
        }
        if extra_field {
            fields.insert("note".into(), json!("ignored"));
        }
        let body = serde_json::to_vec(&Value::Object(fields)).unwrap();
        let parsed = NewIngestion::parse_json(&body, Limits { max_ids });

        // The reference: every rule written out once more, independently.
        let expected_ids: Option<Vec<u64>> = ids.as_ref().and_then(|ids| {
            (!ids.is_empty() && ids.len() <= max_ids)
                .then(|| ids.iter().map(|(_, valid)| *valid).collect::<Option<Vec<u64>>>())
                .flatten()
        });
        let expected_priority = priority.and_then(|(_, valid)| valid);
        // Absent or null: none named. Otherwise it must be valid.
        let expected_tenant: Option<Option<String>> = match tenant {
            None => Some(None),
            Some((_, valid)) => valid,
        };
        match (expected_ids, expected_priority, expected_tenant) {
            (Some(ids), Some(priority), Some(tenant)) => {
                let accepted = parsed.map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
                prop_assert_eq!(accepted.ids(), &ids[..]);
                prop_assert_eq!(accepted.priority(), priority);
                prop_assert_eq!(accepted.tenant().map(|t| t.as_str().to_owned()), tenant);
            }
            _ => prop_assert!(parsed.is_err(), "accepted {}", String::from_utf8_lossy(&body)),
        }
    }

    #[test]
    fn batches_keep_every_id_in_order_and_fill_all_but_the_last(
        ids in proptest::collection::vec(1..=MAX_ID, 1..200),
        size in 1usize..50,
    ) {
        let request = sluice::domain::IngestRequest { ids: ids.clone(), priority: Priority::Low, tenant: None };
        let ingestion = NewIngestion::parse(request, Limits { max_ids: 1000 }).unwrap();
        let batches: Vec<&[u64]> = ingestion.batches(size).collect();
        prop_assert_eq!(batches.concat(), ids.clone());
        prop_assert_eq!(batches.len(), ids.len().div_ceil(size));
        for batch in &batches[..batches.len() - 1] {
            prop_assert_eq!(batch.len(), size);
        }
        let last = batches.last().unwrap().len();
        prop_assert!((1..=size).contains(&last));
    }
}

/// A JSON value for one element of `ids`, with the ID it must be read as (`None`: refused).
fn id_value() -> impl Strategy<Value = (Value, Option<u64>)> {
    prop_oneof![
        4 => (1..=MAX_ID).prop_map(|id| (json!(id), Some(id))),
        1 => Just((json!(0), None)),
        1 => Just((json!(MAX_ID), Some(MAX_ID))),
        1 => Just((json!(MAX_ID + 1), None)),
        1 => Just((json!(u64::MAX), None)),
        1 => (i64::MIN..0).prop_map(|n| (json!(n), None)),
        1 => (1.0f64..1e12).prop_map(|f| (json!(f + 0.5), None)),
        1 => (1..=MAX_ID).prop_map(|id| (json!(id as f64), None)),
        1 => (1..=MAX_ID).prop_map(|id| (json!(id.to_string()), None)),
        1 => Just((Value::Null, None)),
        1 => any::<bool>().prop_map(|b| (json!(b), None)),
        1 => Just((json!([1]), None)),
        1 => Just((json!({"id": 1}), None)),
    ]
}

/// A JSON value for `tenant` (`None` outside: the field is left out), with what it must be
/// read as: `Some(Some(name))` a named tenant, `Some(None)` none named (null), `None` refused.
#[allow(clippy::type_complexity)]
fn tenant_value() -> impl Strategy<Value = Option<(Value, Option<Option<String>>)>> {
    prop_oneof![
        2 => Just(None),
        2 => "[A-Za-z0-9._-]{1,64}".prop_map(|s| Some((json!(s.clone()), Some(Some(s))))),
        1 => Just(Some((Value::Null, Some(None)))),
        1 => Just(Some((json!(""), None))),
        1 => "[A-Za-z0-9._-]{65,70}".prop_map(|s| Some((json!(s), None))),
        1 => "[a-z]{0,4}[ /:@é][a-z]{0,4}".prop_map(|s| Some((json!(s), None))),
        1 => any::<i32>().prop_map(|n| Some((json!(n), None))),
        1 => Just(Some((json!(["acme"]), None))),
    ]
}

/// A JSON value for `priority` (`None` outside: the field is left out), with the priority it
/// must be read as.
fn priority_value() -> impl Strategy<Value = Option<(Value, Option<Priority>)>> {
    prop_oneof![
        1 => Just(None),
        2 => Just(Some((json!("HIGH"), Some(Priority::High)))),
        2 => Just(Some((json!("MEDIUM"), Some(Priority::Medium)))),
        2 => Just(Some((json!("LOW"), Some(Priority::Low)))),
        1 => "[a-zA-Z ]{0,8}".prop_filter("not a priority", |s| !["HIGH", "MEDIUM", "LOW"].contains(&s.as_str()))
            .prop_map(|s| Some((json!(s), None))),
        1 => Just(Some((json!("high"), None))),
        1 => Just(Some((Value::Null, None))),
        1 => any::<i32>().prop_map(|n| Some((json!(n), None))),
    ]
}
