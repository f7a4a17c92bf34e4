//! IDs as people type or paste them: `1, 2, 3`, one per line, or ranges such as `10-20`.
//!
//! The dashboard's form reads its text with this, then checks the result with the same
//! [`NewIngestion::parse`](super::NewIngestion::parse) the server applies, so the form refuses
//! exactly what the server would, before anything is sent.

use super::{Limits, MAX_ID, MIN_ID};

/// Why the text is not a list of IDs. Messages name the entry as it was typed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTextError {
    #[error("enter at least one ID")]
    Empty,
    #[error("\"{0}\" is not an ID (whole numbers, or ranges such as 10-20)")]
    NotAnId(String),
    #[error("\"{0}\" is out of range {MIN_ID}..={MAX_ID}")]
    OutOfRange(String),
    #[error("\"{0}\" is a range that goes down; write it low-high")]
    BackwardsRange(String),
    #[error("more than {max} IDs; the limit per submission is {max}")]
    TooMany { max: usize },
}

/// Read IDs separated by commas, spaces or newlines; `a-b` is every ID from a to b inclusive.
/// Never expands more than `limits.max_ids` IDs, whatever the ranges say.
pub fn ids_from_text(text: &str, limits: Limits) -> Result<Vec<u64>, IdTextError> {
    let mut ids = Vec::new();
    let entries = text
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|e| !e.is_empty());
    for entry in entries {
        let (low, high) = match entry.split_once('-') {
            Some((low, high)) => (id_of(entry, low)?, id_of(entry, high)?),
            None => {
                let id = id_of(entry, entry)?;
                (id, id)
            }
        };
        if low > high {
            return Err(IdTextError::BackwardsRange(entry.to_owned()));
        }
        let count = usize::try_from(high - low + 1).unwrap_or(usize::MAX);
        if count > limits.max_ids.saturating_sub(ids.len()) {
            return Err(IdTextError::TooMany {
                max: limits.max_ids,
            });
        }
        ids.extend(low..=high);
    }
    if ids.is_empty() {
        return Err(IdTextError::Empty);
    }
    Ok(ids)
}

fn id_of(entry: &str, digits: &str) -> Result<u64, IdTextError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdTextError::NotAnId(entry.to_owned()));
    }
    match digits.parse::<u64>() {
        Ok(id) if (MIN_ID..=MAX_ID).contains(&id) => Ok(id),
        _ => Err(IdTextError::OutOfRange(entry.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<u64>, IdTextError> {
        ids_from_text(text, Limits { max_ids: 10 })
    }

    #[test]
    fn ids_can_be_separated_by_commas_spaces_and_newlines() {
        assert_eq!(
            read("1,2 3\n4\r\n5,\t6 ,, 7"),
            Ok(vec![1, 2, 3, 4, 5, 6, 7])
        );
        assert_eq!(read(" 9, 9 "), Ok(vec![9, 9]), "duplicates are kept");
    }

    #[test]
    fn a_range_expands_inclusively_in_order() {
        assert_eq!(read("10-13, 2"), Ok(vec![10, 11, 12, 13, 2]));
        assert_eq!(read("5-5"), Ok(vec![5]));
    }

    #[test]
    fn each_kind_of_mistake_names_the_entry() {
        assert_eq!(read("   \n"), Err(IdTextError::Empty));
        assert_eq!(read("1, abc"), Err(IdTextError::NotAnId("abc".into())));
        assert_eq!(read("1.5"), Err(IdTextError::NotAnId("1.5".into())));
        assert_eq!(read("-3"), Err(IdTextError::NotAnId("-3".into())));
        assert_eq!(read("1-"), Err(IdTextError::NotAnId("1-".into())));
        assert_eq!(read("0"), Err(IdTextError::OutOfRange("0".into())));
        assert_eq!(
            read("1000000008"),
            Err(IdTextError::OutOfRange("1000000008".into()))
        );
        assert_eq!(
            read("99999999999999999999999"),
            Err(IdTextError::OutOfRange("99999999999999999999999".into()))
        );
        assert_eq!(
            read("20-10"),
            Err(IdTextError::BackwardsRange("20-10".into()))
        );
        assert_eq!(read("1000000007"), Ok(vec![MAX_ID]));
    }

    #[test]
    fn a_huge_range_is_refused_without_expanding_it() {
        let limits = Limits { max_ids: 100_000 };
        assert_eq!(
            ids_from_text("1-1000000007", limits),
            Err(IdTextError::TooMany { max: 100_000 })
        );
        assert_eq!(read("1-5, 6-11"), Err(IdTextError::TooMany { max: 10 }));
        assert_eq!(read("1-10").map(|v| v.len()), Ok(10));
    }
}
