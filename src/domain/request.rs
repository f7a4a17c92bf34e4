//! An ingestion request: its wire form, and the one place where raw input becomes a
//! validated [`NewIngestion`]. JSON routes, server functions and the dashboard's form all
//! go through [`NewIngestion::parse_json`] or [`NewIngestion::parse`], so the rules cannot drift.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Smallest accepted ID.
pub const MIN_ID: u64 = 1;
/// Largest accepted ID (10^9 + 7).
pub const MAX_ID: u64 = 1_000_000_007;

/// Dispatch priority. The derived order is dispatch order: `High < Medium < Low`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Priority {
    High,
    Medium,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "HIGH",
            Priority::Medium => "MEDIUM",
            Priority::Low => "LOW",
        }
    }

    /// Exact, case-sensitive match of the wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// 0 for HIGH, 1 for MEDIUM, 2 for LOW: sorts ascending in dispatch order.
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.rank() == rank)
    }
}

/// What a well-behaved client sends to `POST /ingest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IngestRequest {
    #[cfg_attr(feature = "ssr", schema(min_items = 1))]
    pub ids: Vec<u64>,
    pub priority: Priority,
}

/// The answer to an accepted ingestion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IngestResponse {
    pub ingestion_id: Uuid,
}

/// Limits that are configuration rather than rules of the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_ids: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_ids: 100_000 }
    }
}

/// Why a request was refused. `kind()` says which family it belongs to; the HTTP layer maps
/// families to status codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be a JSON object with \"ids\" and \"priority\"")]
    NotAnObject,
    #[error("\"{0}\" is required")]
    MissingField(&'static str),
    #[error("\"ids\" must be an array of integers")]
    IdsNotAnArray,
    #[error("\"ids\" must not be empty")]
    EmptyIds,
    #[error("ids[{index}]: {value} is not an integer")]
    IdNotAnInteger { index: usize, value: String },
    #[error("ids[{index}]: {value} is out of range {MIN_ID}..={MAX_ID}")]
    IdOutOfRange { index: usize, value: String },
    #[error("more than {max} ids in one request (the limit)")]
    TooManyIds { max: usize },
    #[error("\"priority\" must be one of \"HIGH\", \"MEDIUM\", \"LOW\"; got {0}")]
    InvalidPriority(String),
}

/// Families of [`RequestError`], one per response status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestErrorKind {
    /// Not JSON at all (400).
    Malformed,
    /// JSON that breaks a rule (422).
    Invalid,
    /// More than the configured limit (413).
    TooLarge,
}

impl RequestError {
    /// Stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::MalformedJson(_) => "malformed_json",
            RequestError::NotAnObject => "invalid_body",
            RequestError::MissingField(_) => "missing_field",
            RequestError::IdsNotAnArray => "invalid_ids",
            RequestError::EmptyIds => "empty_ids",
            RequestError::IdNotAnInteger { .. } | RequestError::IdOutOfRange { .. } => "invalid_id",
            RequestError::TooManyIds { .. } => "too_many_ids",
            RequestError::InvalidPriority(_) => "invalid_priority",
        }
    }

    pub fn kind(&self) -> RequestErrorKind {
        match self {
            RequestError::MalformedJson(_) => RequestErrorKind::Malformed,
            RequestError::TooManyIds { .. } => RequestErrorKind::TooLarge,
            _ => RequestErrorKind::Invalid,
        }
    }
}

/// A request that passed every rule: non-empty, within limits, every ID in range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewIngestion {
    ids: Vec<u64>,
    priority: Priority,
}

impl NewIngestion {
    /// Parse a raw `POST /ingest` body. JSON that is not JSON is `MalformedJson`; everything
    /// else is checked field by field with a message naming the offending element.
    ///
    /// The body is read as a stream of tokens straight into the IDs (never into a JSON tree,
    /// which costs tens of bytes per ID), and stops at the first broken rule: an invalid ID,
    /// or the ID past `max_ids`. So the memory a body costs is bounded by the limit, not by
    /// what a client sends (issue 17). The answer is the same as reading the whole body
    /// first: a refused body is then checked to be JSON at all (without building anything),
    /// and if it is not, that is the answer.
    pub fn parse_json(body: &[u8], limits: Limits) -> Result<Self, RequestError> {
        let refusal = Refusal::default();
        let mut json = serde_json::Deserializer::from_slice(body);
        let parsed = serde::de::DeserializeSeed::deserialize(
            BodySeed {
                limits,
                refusal: &refusal,
            },
            &mut json,
        )
        .and_then(|ingestion| json.end().map(|()| ingestion));
        parsed.map_err(|e| match refusal.take() {
            Some(refused) => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => refused,
                Err(e) => RequestError::MalformedJson(e.to_string()),
            },
            None => RequestError::MalformedJson(e.to_string()),
        })
    }

    /// Check an already-typed request (server functions, the dashboard's form).
    pub fn parse(request: IngestRequest, limits: Limits) -> Result<Self, RequestError> {
        check_count(request.ids.len(), limits)?;
        for (index, &id) in request.ids.iter().enumerate() {
            check_range(index, id)?;
        }
        Ok(Self {
            ids: request.ids,
            priority: request.priority,
        })
    }

    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The IDs split in order into batches of at most `batch_size` (SPEC §2):
    /// `[1,2,3,4,5]` with size 3 gives `[1,2,3]`, `[4,5]`.
    pub fn batches(&self, batch_size: usize) -> impl Iterator<Item = &[u64]> {
        self.ids.chunks(batch_size.max(1))
    }
}

fn check_count(count: usize, limits: Limits) -> Result<(), RequestError> {
    if count == 0 {
        return Err(RequestError::EmptyIds);
    }
    if count > limits.max_ids {
        return Err(RequestError::TooManyIds {
            max: limits.max_ids,
        });
    }
    Ok(())
}

fn check_range(index: usize, id: u64) -> Result<u64, RequestError> {
    if (MIN_ID..=MAX_ID).contains(&id) {
        Ok(id)
    } else {
        Err(RequestError::IdOutOfRange {
            index,
            value: id.to_string(),
        })
    }
}

/// The rule a streamed body broke, kept beside the parser's error (which only stops it).
type Refusal = std::cell::Cell<Option<RequestError>>;

/// Stop parsing because `error`: noted for `parse_json`, which answers it instead of the
/// parser's error.
fn refuse<E: serde::de::Error>(refusal: &Refusal, error: RequestError) -> E {
    refusal.set(Some(error));
    E::custom("refused")
}

/// The body: an object with `ids` and `priority` (other fields ignored; a repeated field, the
/// last one counts, as in a JSON object read whole).
struct BodySeed<'r> {
    limits: Limits,
    refusal: &'r Refusal,
}

impl<'de> serde::de::DeserializeSeed<'de> for BodySeed<'_> {
    type Value = NewIngestion;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<NewIngestion, D::Error> {
        d.deserialize_any(self)
    }
}

/// Every JSON type but an object is the wrong kind of body.
macro_rules! refuse_other_kinds {
    ($error:expr; $($method:ident($ty:ty)),*) => {
        $(
            fn $method<E: serde::de::Error>(self, _: $ty) -> Result<Self::Value, E> {
                Err(refuse(self.refusal, $error))
            }
        )*
    };
}

impl<'de> serde::de::Visitor<'de> for BodySeed<'_> {
    type Value = NewIngestion;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with \"ids\" and \"priority\"")
    }

    refuse_other_kinds!(RequestError::NotAnObject;
        visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));

    fn visit_unit<E: serde::de::Error>(self) -> Result<NewIngestion, E> {
        Err(refuse(self.refusal, RequestError::NotAnObject))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<NewIngestion, A::Error> {
        Err(refuse(self.refusal, RequestError::NotAnObject))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NewIngestion, A::Error> {
        let (mut ids, mut priority) = (None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "ids" => {
                    ids = Some(map.next_value_seed(IdsSeed {
                        limits: self.limits,
                        refusal: self.refusal,
                    })?)
                }
                "priority" => {
                    priority = Some(map.next_value_seed(PrioritySeed {
                        refusal: self.refusal,
                    })?)
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let ids = ids.ok_or_else(|| refuse(self.refusal, RequestError::MissingField("ids")))?;
        let priority =
            priority.ok_or_else(|| refuse(self.refusal, RequestError::MissingField("priority")))?;
        Ok(NewIngestion { ids, priority })
    }
}

/// `ids`: an array of valid IDs, at most `max_ids` of them.
struct IdsSeed<'r> {
    limits: Limits,
    refusal: &'r Refusal,
}

impl<'de> serde::de::DeserializeSeed<'de> for IdsSeed<'_> {
    type Value = Vec<u64>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<u64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IdsSeed<'_> {
    type Value = Vec<u64>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of IDs")
    }

    refuse_other_kinds!(RequestError::IdsNotAnArray;
        visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));

    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<u64>, E> {
        Err(refuse(self.refusal, RequestError::MissingField("ids")))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Vec<u64>, A::Error> {
        Err(refuse(self.refusal, RequestError::IdsNotAnArray))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
        let max = self.limits.max_ids;
        let mut ids = Vec::with_capacity(max.min(4096));
        loop {
            let index = ids.len();
            if index == max {
                // One more element, whatever it is, is one too many: stop reading here.
                return match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => Err(refuse(self.refusal, RequestError::TooManyIds { max })),
                    None => Ok(ids),
                };
            }
            match seq.next_element_seed(IdSeed {
                index,
                refusal: self.refusal,
            })? {
                Some(id) => ids.push(id),
                None if ids.is_empty() => return Err(refuse(self.refusal, RequestError::EmptyIds)),
                None => return Ok(ids),
            }
        }
    }
}

/// One ID: an integer in range, not a string, not `2.0`.
struct IdSeed<'r> {
    index: usize,
    refusal: &'r Refusal,
}

impl<'de> serde::de::DeserializeSeed<'de> for IdSeed<'_> {
    type Value = u64;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl IdSeed<'_> {
    fn not_an_integer<E: serde::de::Error>(self, value: String) -> E {
        let index = self.index;
        refuse(self.refusal, RequestError::IdNotAnInteger { index, value })
    }
}

impl<'de> serde::de::Visitor<'de> for IdSeed<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer ID")
    }

    fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<u64, E> {
        check_range(self.index, id).map_err(|e| refuse(self.refusal, e))
    }

    fn visit_i64<E: serde::de::Error>(self, id: i64) -> Result<u64, E> {
        match u64::try_from(id) {
            Ok(id) => self.visit_u64(id),
            Err(_) => Err(refuse(
                self.refusal,
                RequestError::IdOutOfRange {
                    index: self.index,
                    value: id.to_string(),
                },
            )),
        }
    }

    /// Anything written with a fraction or exponent (2.0, 1.5, 1e3) or too big for u64.
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<u64, E> {
        let value =
            serde_json::Number::from_f64(n).map_or_else(|| n.to_string(), |n| n.to_string());
        Err(self.not_an_integer(value))
    }

    /// Strings ("7"), booleans and null are refused even when they look like numbers.
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<u64, E> {
        Err(self.not_an_integer(serde_json::Value::from(s).to_string()))
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<u64, E> {
        Err(self.not_an_integer(b.to_string()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<u64, E> {
        Err(self.not_an_integer("null".to_owned()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(self.not_an_integer("an array".to_owned()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(self.not_an_integer("an object".to_owned()))
    }
}

/// `priority`: exactly `HIGH`, `MEDIUM` or `LOW`.
struct PrioritySeed<'r> {
    refusal: &'r Refusal,
}

impl<'de> serde::de::DeserializeSeed<'de> for PrioritySeed<'_> {
    type Value = Priority;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Priority, D::Error> {
        d.deserialize_any(self)
    }
}

impl PrioritySeed<'_> {
    fn invalid<E: serde::de::Error>(self, got: String) -> E {
        refuse(self.refusal, RequestError::InvalidPriority(got))
    }
}

impl<'de> serde::de::Visitor<'de> for PrioritySeed<'_> {
    type Value = Priority;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("\"HIGH\", \"MEDIUM\" or \"LOW\"")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Priority, E> {
        Priority::from_wire(s).ok_or_else(|| self.invalid(format!("{s:?}")))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Priority, E> {
        Err(refuse(self.refusal, RequestError::MissingField("priority")))
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Priority, E> {
        Err(self.invalid(b.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Priority, E> {
        Err(self.invalid(n.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Priority, E> {
        Err(self.invalid(n.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Priority, E> {
        let value =
            serde_json::Number::from_f64(n).map_or_else(|| n.to_string(), |n| n.to_string());
        Err(self.invalid(value))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Priority, A::Error> {
        Err(self.invalid("an array".to_owned()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Priority, A::Error> {
        Err(self.invalid("an object".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<NewIngestion, RequestError> {
        NewIngestion::parse_json(body.as_bytes(), Limits { max_ids: 5 })
    }

    #[test]
    fn a_valid_request_keeps_ids_in_order_with_duplicates() {
        let ok = parse(r#"{"ids": [3, 1, 3, 1000000007], "priority": "HIGH"}"#).unwrap();
        assert_eq!(ok.ids(), &[3, 1, 3, 1_000_000_007]);
        assert_eq!(ok.priority(), Priority::High);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(parse(r#"{"ids": [1], "priority": "LOW", "note": "x"}"#).is_ok());
    }

    #[test]
    fn every_rule_breaking_request_is_refused_with_its_code() {
        let cases = [
            (r#"{"ids": [1], "priority": "HIGH""#, "malformed_json"),
            ("", "malformed_json"),
            ("[1,2]", "invalid_body"),
            (r#"{"priority": "HIGH"}"#, "missing_field"),
            (r#"{"ids": [1]}"#, "missing_field"),
            (r#"{"ids": null, "priority": "HIGH"}"#, "missing_field"),
            (r#"{"ids": "1,2", "priority": "HIGH"}"#, "invalid_ids"),
            (r#"{"ids": [], "priority": "HIGH"}"#, "empty_ids"),
            (r#"{"ids": ["7"], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [2.0], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [1.5], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [1e3], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [true], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [null], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [0], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [-1], "priority": "HIGH"}"#, "invalid_id"),
            (r#"{"ids": [1000000008], "priority": "HIGH"}"#, "invalid_id"),
            (
                r#"{"ids": [18446744073709551616], "priority": "HIGH"}"#,
                "invalid_id",
            ),
            (
                r#"{"ids": [1,2,3,4,5,6], "priority": "HIGH"}"#,
                "too_many_ids",
            ),
            (r#"{"ids": [1], "priority": "high"}"#, "invalid_priority"),
            (r#"{"ids": [1], "priority": "URGENT"}"#, "invalid_priority"),
            (r#"{"ids": [1], "priority": 1}"#, "invalid_priority"),
        ];
        for (body, code) in cases {
            let err = parse(body).expect_err(body);
            assert_eq!(err.code(), code, "{body}: {err}");
        }
    }

    #[test]
    fn the_error_message_names_the_offending_element() {
        let err = parse(r#"{"ids": [1, 2, 3, 1000000008], "priority": "HIGH"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ids[3]: 1000000008 is out of range 1..=1000000007"
        );
    }

    #[test]
    fn the_id_past_the_limit_is_one_too_many_whatever_it_is() {
        let err = parse(r#"{"ids": [1,2,3,4,5,6,7], "priority": "LOW"}"#).unwrap_err();
        assert_eq!(err.code(), "too_many_ids", "{err}");
        assert_eq!(
            err.to_string(),
            "more than 5 ids in one request (the limit)"
        );
        let err = parse(r#"{"ids": [1,2,3,4,5,"x"], "priority": "LOW"}"#).unwrap_err();
        assert_eq!(err.code(), "too_many_ids", "{err}");
        // Exactly the limit is fine.
        assert!(parse(r#"{"ids": [1,2,3,4,5], "priority": "LOW"}"#).is_ok());
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed_whatever_rule_it_breaks_first() {
        for body in [
            r#"{"ids": [1,2,3,4,5,6,7,"#,
            r#"{"ids": [1, 0, "#,
            r#"{"ids": [1]} x"#,
            r#"[1, 2"#,
        ] {
            assert_eq!(parse(body).unwrap_err().code(), "malformed_json", "{body}");
        }
    }

    #[test]
    fn an_invalid_id_is_named_as_it_was_written() {
        let err = parse(r#"{"ids": [1, 0], "priority": "LOW"}"#).unwrap_err();
        assert_eq!(err.to_string(), "ids[1]: 0 is out of range 1..=1000000007");
        let err = parse(r#"{"ids": [1, [2, 3]], "priority": "LOW"}"#).unwrap_err();
        assert_eq!(err.to_string(), "ids[1]: an array is not an integer");
        let err = parse(r#"{"ids": ["7"], "priority": "LOW"}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"ids[0]: "7" is not an integer"#);
        let err = parse(r#"{"ids": [1e3], "priority": "LOW"}"#).unwrap_err();
        assert_eq!(err.to_string(), "ids[0]: 1000.0 is not an integer");
    }

    #[test]
    fn fields_may_come_in_any_order_and_the_last_of_a_repeated_field_counts() {
        let ok = parse(r#"{"priority": "LOW", "x": {"y": [1]}, "ids": [4, 5]}"#).unwrap();
        assert_eq!((ok.ids(), ok.priority()), (&[4, 5][..], Priority::Low));
        let ok = parse(r#"{"ids": [1], "priority": "LOW", "ids": [2]}"#).unwrap();
        assert_eq!(ok.ids(), &[2]);
        assert_eq!(
            parse(r#"{"ids": [1], "priority": "HIGH"} x"#)
                .unwrap_err()
                .code(),
            "malformed_json"
        );
    }

    #[test]
    fn malformed_json_is_a_different_family_from_broken_rules() {
        assert_eq!(parse("{").unwrap_err().kind(), RequestErrorKind::Malformed);
        assert_eq!(parse("{}").unwrap_err().kind(), RequestErrorKind::Invalid);
        assert_eq!(
            parse(r#"{"ids": [1,2,3,4,5,6], "priority": "LOW"}"#)
                .unwrap_err()
                .kind(),
            RequestErrorKind::TooLarge
        );
    }

    #[test]
    fn typed_requests_follow_the_same_rules() {
        let limits = Limits { max_ids: 2 };
        let req = |ids: Vec<u64>| IngestRequest {
            ids,
            priority: Priority::Medium,
        };
        assert!(NewIngestion::parse(req(vec![1, MAX_ID]), limits).is_ok());
        assert_eq!(
            NewIngestion::parse(req(vec![]), limits).unwrap_err(),
            RequestError::EmptyIds
        );
        assert_eq!(
            NewIngestion::parse(req(vec![0]), limits)
                .unwrap_err()
                .code(),
            "invalid_id"
        );
        assert_eq!(
            NewIngestion::parse(req(vec![1, 2, 3]), limits)
                .unwrap_err()
                .code(),
            "too_many_ids"
        );
    }

    #[test]
    fn ids_split_in_order_into_batches_that_never_mix_requests() {
        let ok = parse(r#"{"ids": [1, 2, 3, 4, 5], "priority": "MEDIUM"}"#).unwrap();
        let batches: Vec<&[u64]> = ok.batches(3).collect();
        assert_eq!(batches, vec![&[1, 2, 3][..], &[4, 5][..]]);
        assert_eq!(ok.batches(5).count(), 1);
        assert_eq!(ok.batches(1).count(), 5);
    }

    #[test]
    fn priorities_sort_in_dispatch_order() {
        let mut ps = vec![Priority::Low, Priority::High, Priority::Medium];
        ps.sort();
        assert_eq!(ps, Priority::ALL);
        for p in Priority::ALL {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
            assert_eq!(Priority::from_wire(p.as_str()), Some(p));
        }
    }
}
