//! Query strings: the few numeric parameters the read routes take, refused with the one JSON
//! error shape when they are not numbers (axum's own rejection would be plain text).

use super::ApiError;

/// The value of `name` in a raw query string as a non-negative integer, if present.
pub(super) fn number(query: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let Some(value) = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (key == name).then_some(value))
    else {
        return Ok(None);
    };
    value
        .parse()
        .map(Some)
        .map_err(|_| ApiError::InvalidQuery(format!("{name} must be a non-negative integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numeric_parameter_is_read_from_anywhere_in_the_query() {
        assert_eq!(number(None, "limit").unwrap(), None);
        assert_eq!(number(Some("a=1"), "limit").unwrap(), None);
        assert_eq!(number(Some("a=1&limit=20"), "limit").unwrap(), Some(20));
        assert_eq!(number(Some("limit=0"), "limit").unwrap(), Some(0));
    }

    #[test]
    fn a_parameter_that_is_not_a_number_is_refused() {
        for bad in ["limit=", "limit", "limit=-1", "limit=ten", "limit=1.5"] {
            assert!(
                matches!(number(Some(bad), "limit"), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
