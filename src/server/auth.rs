//! API tokens: who may write (ingest, cancel, operate) and, optionally, who may read.
//!
//! Off unless tokens are configured. Tokens are kept only as SHA-256 digests, compared in
//! constant time (every configured digest is compared, byte by byte, without an early exit),
//! and never logged. This module knows no HTTP: the routes and the server functions hand it
//! the bearer token they found and map its refusal to their answer.

use sha2::{Digest, Sha256};
use std::{path::Path, sync::Arc};

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Status, lists, queue, events, metrics.
    Read,
    /// Ingest, cancel, admin.
    Write,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this route needs an API token: send Authorization: Bearer <token>")]
    Missing,
    #[error("the token was not accepted")]
    Invalid,
    #[error("this token may only read")]
    ReadOnly,
}

/// A token as configured; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Shortest token accepted: guessing a 16-character random token is out of reach.
pub const MIN_TOKEN_LEN: usize = 16;
pub const MAX_TOKEN_LEN: usize = 512;

/// A token as given on the command line or in the environment; checked by [`Tokens::new`],
/// so that an error message never repeats it.
pub fn secret_arg(raw: &str) -> Result<Secret, String> {
    Ok(Secret(raw.trim().to_owned()))
}

/// A token from the command line, the environment or a file: 16..=512 visible ASCII
/// characters, no commas (they separate tokens). The error does not repeat the token.
pub fn parse_token(raw: &str) -> Result<Secret, String> {
    let token = raw.trim();
    let visible = token
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len()) || !visible {
        return Err(format!(
            "a token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} visible ASCII characters without \
             commas (e.g. `openssl rand -hex 24`)"
        ));
    }
    Ok(Secret(token.to_owned()))
}

/// Tokens in a file: one per line; blank lines and lines starting with `#` are skipped.
pub fn read_token_file(path: &Path) -> Result<Vec<Secret>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(n, line)| {
            parse_token(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

type Digest32 = [u8; 32];

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// Compare every configured digest with `presented`, always all of them and all 32 bytes.
fn any_matches(digests: &[Digest32], presented: &Digest32) -> bool {
    let mut found = 0u8;
    for d in digests {
        let diff = d
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found |= u8::from(diff == 0);
    }
    found == 1
}

/// The configured tokens. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tokens {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// May do everything.
    write: Vec<Digest32>,
    /// May only read.
    read: Vec<Digest32>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("write", &self.inner.write.len())
            .field("read", &self.inner.read.len())
            .finish()
    }
}

impl Tokens {
    /// Read tokens alone would leave writes open while guarding reads, which no one wants:
    /// refused.
    pub fn new(write: &[Secret], read: &[Secret]) -> Result<Self, String> {
        for (kind, list) in [("API", write), ("read", read)] {
            for (i, secret) in list.iter().enumerate() {
                parse_token(&secret.0).map_err(|e| format!("{kind} token {}: {e}", i + 1))?;
            }
        }
        if write.is_empty() && !read.is_empty() {
            return Err(
                "read tokens are set but no API token: writes would be open to anyone; \
                        set SLUICE_API_TOKENS too"
                    .into(),
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                write: write.iter().map(|s| digest(&s.0)).collect(),
                read: read.iter().map(|s| digest(&s.0)).collect(),
            }),
        })
    }

    /// Writes need a token.
    pub fn writes_guarded(&self) -> bool {
        !self.inner.write.is_empty()
    }

    /// Reads need a token.
    pub fn reads_guarded(&self) -> bool {
        !self.inner.read.is_empty()
    }

    /// May a request presenting `token` (if any) do `access`?
    pub fn check(&self, access: Access, token: Option<&str>) -> Result<(), Denied> {
        let guarded = match access {
            Access::Read => self.reads_guarded(),
            Access::Write => self.writes_guarded(),
        };
        if !guarded {
            return Ok(());
        }
        let presented = digest(token.ok_or(Denied::Missing)?);
        if any_matches(&self.inner.write, &presented) {
            return Ok(());
        }
        match any_matches(&self.inner.read, &presented) {
            true if access == Access::Read => Ok(()),
            true => Err(Denied::ReadOnly),
            false => Err(Denied::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(tokens: &[&str]) -> Vec<Secret> {
        tokens.iter().map(|t| parse_token(t).unwrap()).collect()
    }

    const WRITER: &str = "writer-token-0123456789";
    const READER: &str = "reader-token-0123456789";

    #[test]
    fn without_tokens_everything_is_open() {
        let tokens = Tokens::default();
        assert_eq!(tokens.check(Access::Write, None), Ok(()));
        assert_eq!(tokens.check(Access::Read, Some("anything")), Ok(()));
    }

    #[test]
    fn api_tokens_guard_writes_and_leave_reads_open() {
        let tokens = Tokens::new(&secrets(&[WRITER, "second-writer-token-xyz"]), &[]).unwrap();
        assert_eq!(tokens.check(Access::Write, None), Err(Denied::Missing));
        assert_eq!(
            tokens.check(Access::Write, Some("wrong")),
            Err(Denied::Invalid)
        );
        assert_eq!(tokens.check(Access::Write, Some(WRITER)), Ok(()));
        assert_eq!(
            tokens.check(Access::Write, Some("second-writer-token-xyz")),
            Ok(())
        );
        assert_eq!(tokens.check(Access::Read, None), Ok(()));
    }

    #[test]
    fn read_tokens_guard_reads_and_may_not_write() {
        let tokens = Tokens::new(&secrets(&[WRITER]), &secrets(&[READER])).unwrap();
        assert_eq!(tokens.check(Access::Read, None), Err(Denied::Missing));
        assert_eq!(tokens.check(Access::Read, Some(READER)), Ok(()));
        assert_eq!(tokens.check(Access::Read, Some(WRITER)), Ok(()));
        assert_eq!(
            tokens.check(Access::Write, Some(READER)),
            Err(Denied::ReadOnly)
        );
        assert_eq!(
            tokens.check(Access::Read, Some("nope")),
            Err(Denied::Invalid)
        );
    }

    #[test]
    fn read_tokens_without_api_tokens_are_refused() {
        assert!(Tokens::new(&[], &secrets(&[READER])).is_err());
    }

    #[test]
    fn a_weak_token_from_the_command_line_is_refused_without_repeating_it() {
        let weak = secret_arg("weak-one").unwrap();
        let error = Tokens::new(&[parse_token(WRITER).unwrap(), weak], &[]).unwrap_err();
        assert!(error.starts_with("API token 2:"), "{error}");
        assert!(!error.contains("weak-one"));
    }

    #[test]
    fn weak_or_malformed_tokens_are_refused_and_never_shown() {
        for bad in [
            "short",
            "has space inside 0123456789",
            "comma,inside-0123456789",
            "",
        ] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
        let secret = parse_token(WRITER).unwrap();
        assert!(!format!("{secret:?}").contains("writer"));
        let tokens = Tokens::new(&[secret], &[]).unwrap();
        assert!(!format!("{tokens:?}").contains("writer"));
    }

    #[test]
    fn a_token_file_skips_blank_lines_and_comments_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("# ops\n{WRITER}\n\n  {READER}  \n")).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), secrets(&[WRITER, READER]));
        std::fs::write(&path, "# ops\nshort\n").unwrap();
        assert!(read_token_file(&path).unwrap_err().contains(":2:"));
    }
}
