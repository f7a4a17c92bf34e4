//! Reading a `POST /ingest` body without amplification (issue 17).
//!
//! The body is read as a stream of tokens straight into the IDs, never into a JSON tree (which
//! costs tens of bytes per ID, hundreds of MB for a body of a few MB). Once a field has broken
//! a rule nothing more of it is kept: past `max_ids` the IDs are only counted, after an
//! invalid ID the rest are only checked to be JSON. So the memory a body costs is bounded by
//! the limit, whatever a client sends. The whole body is still read as JSON, every string and
//! number of it checked, and the rules are answered in their one order (JSON, an object,
//! `ids`: present, an array, not empty, not too many, each ID; then `priority`; then `tenant`), so the answer
//! is the one a reading of the whole body as a JSON tree would give.

use super::request::{check_range, Limits, Priority, RequestError, Tenant};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The IDs, priority and tenant (if named) of a body that breaks no rule.
pub(super) fn parse(
    body: &[u8],
    limits: Limits,
) -> Result<(Vec<u64>, Priority, Option<Tenant>), RequestError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let read = BodySeed { limits }
        .deserialize(&mut json)
        .and_then(|read| json.end().map(|()| read))
        .map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    let Body::Object {
        ids,
        priority,
        tenant,
    } = read
    else {
        return Err(RequestError::NotAnObject);
    };
    let ids = match ids {
        Field::Absent => return Err(RequestError::MissingField("ids")),
        Field::Broken(e) => return Err(e),
        Field::Valid(ids) => ids,
    };
    let priority = match priority {
        Field::Absent => return Err(RequestError::MissingField("priority")),
        Field::Broken(e) => return Err(e),
        Field::Valid(priority) => priority,
    };
    match tenant {
        Field::Absent => Ok((ids, priority, None)),
        Field::Broken(e) => Err(e),
        Field::Valid(tenant) => Ok((ids, priority, Some(tenant))),
    }
}

/// What a field turned out to be: absent (or null), valid, or the first rule it broke.
enum Field<T> {
    Absent,
    Valid(T),
    Broken(RequestError),
}

enum Body {
    Object {
        ids: Field<Vec<u64>>,
        priority: Field<Priority>,
        tenant: Field<Tenant>,
    },
    NotAnObject,
}

/// Any JSON value, checked as the JSON tree would check it (UTF-8 and escapes of strings,
/// numbers in range) and then forgotten. (`IgnoredAny` skips without checking.)
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

/// Accept any scalar as it is.
macro_rules! accept_scalars {
    ($value:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value(self, "a boolean"))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value(self, "a number"))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value(self, "a number"))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value(self, "a number"))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value(self, "a string"))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value(self, "null"))
        }
    };
}

/// Check the rest of an array or an object, keeping nothing.
fn check_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<usize, A::Error> {
    let mut count = 0;
    while seq.next_element::<Checked>()?.is_some() {
        count += 1;
    }
    Ok(count)
}

fn check_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<Checked, Checked>()?.is_some() {}
    Ok(())
}

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    accept_scalars!(|_, _| Checked);

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Checked, A::Error> {
        check_seq(seq).map(|_| Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checked, A::Error> {
        check_map(map).map(|()| Checked)
    }
}

/// The body: an object with `ids` and `priority` (other fields checked and ignored; of a
/// repeated field the last one counts, as in a JSON tree).
struct BodySeed {
    limits: Limits,
}

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Body;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Body, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    accept_scalars!(|_, _| Body::NotAnObject);

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Body, A::Error> {
        check_seq(seq).map(|_| Body::NotAnObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let (mut ids, mut priority, mut tenant) = (Field::Absent, Field::Absent, Field::Absent);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "ids" => {
                    ids = map.next_value_seed(IdsSeed {
                        limits: self.limits,
                    })?
                }
                "priority" => priority = map.next_value_seed(PrioritySeed)?,
                "tenant" => tenant = map.next_value_seed(TenantSeed)?,
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(Body::Object {
            ids,
            priority,
            tenant,
        })
    }
}

/// `ids`: an array of at most `max_ids` valid IDs.
struct IdsSeed {
    limits: Limits,
}

impl<'de> DeserializeSeed<'de> for IdsSeed {
    type Value = Field<Vec<u64>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdsSeed {
    type Value = Field<Vec<u64>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of IDs")
    }

    accept_scalars!(|_, kind| if kind == "null" {
        Field::Absent
    } else {
        Field::Broken(RequestError::IdsNotAnArray)
    });

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        check_map(map).map(|()| Field::Broken(RequestError::IdsNotAnArray))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let max = self.limits.max_ids;
        let mut ids = Vec::with_capacity(max.min(4096));
        let mut invalid = None;
        // Keep IDs while they are valid and within the limit; past that, only count.
        while invalid.is_none() && ids.len() < max {
            let index = ids.len();
            match seq.next_element_seed(IdSeed { index })? {
                None => break,
                Some(Ok(id)) => ids.push(id),
                Some(Err(e)) => invalid = Some(e),
            }
        }
        let count = ids.len() + usize::from(invalid.is_some()) + check_seq(seq)?;
        Ok(if count == 0 {
            Field::Broken(RequestError::EmptyIds)
        } else if count > max {
            Field::Broken(RequestError::TooManyIds { max })
        } else if let Some(e) = invalid {
            Field::Broken(e)
        } else {
            Field::Valid(ids)
        })
    }
}

/// One ID: an integer in range, not a string, not `2.0`.
struct IdSeed {
    index: usize,
}

impl IdSeed {
    fn not_an_integer(&self, value: String) -> Result<u64, RequestError> {
        Err(RequestError::IdNotAnInteger {
            index: self.index,
            value,
        })
    }
}

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = Result<u64, RequestError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A JSON number as it would be written back: `2.0`, `1000.0`, `1.8446744073709552e19`.
fn number_text(n: f64) -> String {
    serde_json::Number::from_f64(n).map_or_else(|| n.to_string(), |n| n.to_string())
}

impl<'de> Visitor<'de> for IdSeed {
    type Value = Result<u64, RequestError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer ID")
    }

    fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<Self::Value, E> {
        Ok(check_range(self.index, id))
    }

    fn visit_i64<E: serde::de::Error>(self, id: i64) -> Result<Self::Value, E> {
        Ok(match u64::try_from(id) {
            Ok(id) => check_range(self.index, id),
            Err(_) => Err(RequestError::IdOutOfRange {
                index: self.index,
                value: id.to_string(),
            }),
        })
    }

    /// Anything written with a fraction or exponent (2.0, 1.5, 1e3) or too big for u64.
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(self.not_an_integer(number_text(n)))
    }

    /// Strings ("7"), booleans and null are refused even when they look like numbers.
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(self.not_an_integer(serde_json::Value::from(s).to_string()))
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(self.not_an_integer(b.to_string()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.not_an_integer("null".to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        check_seq(seq)?;
        Ok(self.not_an_integer("an array".to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        check_map(map)?;
        Ok(self.not_an_integer("an object".to_owned()))
    }
}

/// A field that must be a string: any other value is refused with `$invalid`, given the
/// value as written (arrays and objects still checked to be JSON).
macro_rules! refuse_non_strings {
    ($invalid:expr) => {
        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok($invalid(b.to_string()))
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok($invalid(n.to_string()))
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok($invalid(n.to_string()))
        }

        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Ok($invalid(number_text(n)))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            check_seq(seq)?;
            Ok($invalid("an array".to_owned()))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            check_map(map)?;
            Ok($invalid("an object".to_owned()))
        }
    };
}

/// `priority`: exactly `HIGH`, `MEDIUM` or `LOW`.
struct PrioritySeed;

impl<'de> DeserializeSeed<'de> for PrioritySeed {
    type Value = Field<Priority>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn invalid_priority(got: String) -> Field<Priority> {
    Field::Broken(RequestError::InvalidPriority(got))
}

impl<'de> Visitor<'de> for PrioritySeed {
    type Value = Field<Priority>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"HIGH\", \"MEDIUM\" or \"LOW\"")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Priority::from_wire(s).map_or_else(|| invalid_priority(format!("{s:?}")), Field::Valid))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Absent)
    }

    refuse_non_strings!(invalid_priority);
}

/// `tenant`: a string of the accepted characters (`Tenant::parse`); null is absent.
struct TenantSeed;

impl<'de> DeserializeSeed<'de> for TenantSeed {
    type Value = Field<Tenant>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn invalid_tenant(got: String) -> Field<Tenant> {
    Field::Broken(RequestError::InvalidTenant(got))
}

impl<'de> Visitor<'de> for TenantSeed {
    type Value = Field<Tenant>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tenant name")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Tenant::parse(s).map_or_else(Field::Broken, Field::Valid))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Absent)
    }

    refuse_non_strings!(invalid_tenant);
}
