//! Query strings: the few numeric parameters the read routes take, refused with the one JSON
//! error shape when they are not numbers (axum's own rejection would be plain text).

use super::ApiError;

/// The raw value of `name` in a raw query string, if present.
fn raw<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The value of `name`, percent-decoded (`+` is a space), if present and valid UTF-8.
pub(super) fn text(query: Option<&str>, name: &str) -> Option<String> {
    decode(raw(query, name)?)
}

/// The value of `name`, percent-decoded, if present; a value that is not UTF-8 once decoded
/// is refused (a condition that cannot be read is never ignored).
pub(super) fn condition(query: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    raw(query, name)
        .map(|value| {
            decode(value).ok_or_else(|| {
                ApiError::InvalidQuery(format!("{name} is not UTF-8 once percent-decoded"))
            })
        })
        .transpose()
}

fn decode(raw: &str) -> Option<String> {
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match raw[i] {
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The value of `name` in a raw query string as a non-negative integer, if present.
pub(super) fn number(query: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = raw(query, name) else {
        return Ok(None);
    };
    non_negative(value).map(Some).ok_or_else(|| {
        ApiError::InvalidQuery(format!("{name} must be an integer in 0..={}", i64::MAX))
    })
}

/// A non-negative integer as the API documents them (OpenAPI `int64`, so at most `i64::MAX`:
/// what a client's schema says fits is exactly what is accepted).
pub(super) fn non_negative(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|&n| n <= i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_parameter_is_percent_decoded() {
        assert_eq!(
            text(Some("access_token=a%2Bb%3D%3D&x=1"), "access_token").unwrap(),
            "a+b=="
        );
        assert_eq!(text(Some("t=a+b"), "t").unwrap(), "a b");
        assert_eq!(text(Some("t=100%"), "t").unwrap(), "100%");
        assert_eq!(text(Some("t=%zz"), "t").unwrap(), "%zz");
        assert_eq!(text(Some("x=1"), "t"), None);
    }

    #[test]
    fn a_numeric_parameter_is_read_from_anywhere_in_the_query() {
        assert_eq!(number(None, "limit").unwrap(), None);
        assert_eq!(number(Some("a=1"), "limit").unwrap(), None);
        assert_eq!(number(Some("a=1&limit=20"), "limit").unwrap(), Some(20));
        assert_eq!(number(Some("limit=0"), "limit").unwrap(), Some(0));
    }

    #[test]
    fn a_parameter_that_is_not_a_number_is_refused() {
        assert_eq!(
            number(Some("limit=9223372036854775807"), "limit").unwrap(),
            Some(i64::MAX as u64)
        );
        for bad in [
            "limit=",
            "limit",
            "limit=-1",
            "limit=ten",
            "limit=1.5",
            "limit=9223372036854775808",
        ] {
            assert!(
                matches!(number(Some(bad), "limit"), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
