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

/// The tenant of work that names none, sent without a named token.
pub const DEFAULT_TENANT: &str = "default";

/// Who an ingestion belongs to, for fair shares under the global rate (`--fairness tenant`):
/// 1 to 64 characters of `A-Z a-z 0-9 . _ -`. Not secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

impl Tenant {
    pub const MAX_LEN: usize = 64;

    /// The tenant of an ingestion that names none.
    pub fn default_tenant() -> Self {
        Self(DEFAULT_TENANT.to_owned())
    }

    /// Exactly the accepted names; anything else is `InvalidTenant` (its text quoted).
    pub fn parse(name: &str) -> Result<Self, RequestError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        match (1..=Self::MAX_LEN).contains(&name.len()) && name.chars().all(allowed) {
            true => Ok(Self(name.to_owned())),
            false => Err(RequestError::InvalidTenant(format!("{name:?}"))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a well-behaved client sends to `POST /ingest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IngestRequest {
    #[cfg_attr(feature = "ssr", schema(min_items = 1))]
    pub ids: Vec<u64>,
    pub priority: Priority,
    /// Who the work belongs to (1 to 64 of `A-Z a-z 0-9 . _ -`); absent: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "ssr",
        schema(value_type = Option<String>, min_length = 1, max_length = 64,
               pattern = "^[A-Za-z0-9._-]{1,64}$")
    )]
    pub tenant: Option<String>,
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
    #[error("\"tenant\" must be 1 to 64 characters of A-Z a-z 0-9 . _ -; got {0}")]
    InvalidTenant(String),
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
            RequestError::InvalidTenant(_) => "invalid_tenant",
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
    /// As the request named it; `None`: the service decides (see `IngestRequest::tenant`).
    tenant: Option<Tenant>,
}

impl NewIngestion {
    /// Parse a raw `POST /ingest` body. JSON that is not JSON is `MalformedJson`; everything
    /// else is checked field by field with a message naming the offending element. Read
    /// without building a JSON tree and keeping nothing past a broken rule (`ingest_body.rs`),
    /// with the answers of reading the whole tree.
    pub fn parse_json(body: &[u8], limits: Limits) -> Result<Self, RequestError> {
        let (ids, priority, tenant) = super::ingest_body::parse(body, limits)?;
        Ok(Self {
            ids,
            priority,
            tenant,
        })
    }

    /// Check an already-typed request (server functions, the dashboard's form).
    pub fn parse(request: IngestRequest, limits: Limits) -> Result<Self, RequestError> {
        check_count(request.ids.len(), limits)?;
        for (index, &id) in request.ids.iter().enumerate() {
            check_range(index, id)?;
        }
        let tenant = request.tenant.as_deref().map(Tenant::parse).transpose()?;
        Ok(Self {
            ids: request.ids,
            priority: request.priority,
            tenant,
        })
    }

    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// With `tenant` (its token's) if the request named none.
    pub fn or_tenant(mut self, tenant: Option<Tenant>) -> Self {
        self.tenant = self.tenant.or(tenant);
        self
    }

    /// The tenant the request named (or its token did), if any.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
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

pub(super) fn check_range(index: usize, id: u64) -> Result<u64, RequestError> {
    if (MIN_ID..=MAX_ID).contains(&id) {
        Ok(id)
    } else {
        Err(RequestError::IdOutOfRange {
            index,
            value: id.to_string(),
        })
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
    fn a_tenant_is_optional_and_kept_as_named() {
        assert_eq!(
            parse(r#"{"ids": [1], "priority": "LOW"}"#)
                .unwrap()
                .tenant(),
            None
        );
        assert_eq!(
            parse(r#"{"ids": [1], "priority": "LOW", "tenant": null}"#)
                .unwrap()
                .tenant(),
            None
        );
        let name = "a".repeat(64);
        for tenant in ["acme", "A.b_c-9", name.as_str()] {
            let body = format!(r#"{{"ids": [1], "priority": "LOW", "tenant": "{tenant}"}}"#);
            let ok = parse(&body).unwrap();
            assert_eq!(ok.tenant().map(Tenant::as_str), Some(tenant));
        }
        let typed = IngestRequest {
            ids: vec![1],
            priority: Priority::Low,
            tenant: Some("no spaces".into()),
        };
        assert_eq!(
            NewIngestion::parse(typed, Limits::default())
                .unwrap_err()
                .code(),
            "invalid_tenant"
        );
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
            (
                r#"{"ids": [1], "priority": "LOW", "tenant": ""}"#,
                "invalid_tenant",
            ),
            (
                r#"{"ids": [1], "priority": "LOW", "tenant": "a b"}"#,
                "invalid_tenant",
            ),
            (
                r#"{"ids": [1], "priority": "LOW", "tenant": "é"}"#,
                "invalid_tenant",
            ),
            (
                r#"{"ids": [1], "priority": "LOW", "tenant": 7}"#,
                "invalid_tenant",
            ),
            (
                r#"{"ids": [1], "priority": "LOW", "tenant": ["a"]}"#,
                "invalid_tenant",
            ),
            (
                r#"{"ids": [1], "priority": "LOW", "tenant": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
                "invalid_tenant",
            ),
            // The rules are answered in order: a bad priority before a bad tenant.
            (
                r#"{"ids": [1], "priority": "x", "tenant": ""}"#,
                "invalid_priority",
            ),
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
    fn rules_are_answered_in_their_order_wherever_the_fields_are_written() {
        for (body, code) in [
            // Too many outranks an invalid ID (the count is checked first).
            (
                r#"{"ids": [0,1,2,3,4,5], "priority": "LOW"}"#,
                "too_many_ids",
            ),
            // `ids` outranks `priority`, whichever comes first.
            (r#"{"priority": "x"}"#, "missing_field"),
            (r#"{"priority": null, "ids": "x"}"#, "invalid_ids"),
            (r#"{"priority": "x", "ids": [0]}"#, "invalid_id"),
            (r#"{"priority": 5, "ids": [1]}"#, "invalid_priority"),
            // Of a repeated field the last one counts.
            (
                r#"{"ids": [0], "ids": [1], "priority": "LOW", "priority": "x"}"#,
                "invalid_priority",
            ),
        ] {
            assert_eq!(parse(body).unwrap_err().code(), code, "{body}");
        }
        let ok = parse(r#"{"ids": [0], "ids": [1], "priority": "LOW"}"#).unwrap();
        assert_eq!(ok.ids(), &[1]);
    }

    #[test]
    fn every_string_and_number_is_checked_as_json_even_in_ignored_fields() {
        for body in [
            r#"{"ids": [1], "priority": "LOW", "note": "\ud800"}"#,
            r#"{"ids": [1], "priority": "LOW", "x": 1e400}"#,
            r#"{"ids": [0], "x": 1e400}"#,
            r#"{"ids": [1,2,3,4,5,6,1e400], "priority": "LOW"}"#,
        ] {
            assert_eq!(parse(body).unwrap_err().code(), "malformed_json", "{body}");
        }
        let mut invalid_utf8 = br#"{"ids": [1], "priority": "LOW", "note": "x"}"#.to_vec();
        let x = invalid_utf8.iter().rposition(|&b| b == b'x').unwrap();
        invalid_utf8[x] = 0xFF;
        assert_eq!(
            NewIngestion::parse_json(&invalid_utf8, Limits { max_ids: 5 })
                .unwrap_err()
                .code(),
            "malformed_json"
        );
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
            tenant: None,
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
