//! API tokens: who may write (ingest, cancel, operate) and, optionally, who may read.
//!
//! Off unless tokens are configured. Tokens are kept only as SHA-256 digests, compared in
//! constant time (every configured digest is compared, byte by byte, without an early exit),
//! and never logged. This module knows no HTTP: the routes and the server functions hand it
//! the bearer token they found and map its refusal to their answer.
//!
//! A token may be configured as `name:token`, where `name` is a tenant name (`Tenant::parse`)
//! and `token` a whole token: work sent with it that names no tenant is that tenant's. Names
//! are not secret (they may be logged); the token after the colon is what is sent.

use crate::domain::{Tenant, WriteAccess};
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

/// Compare every configured digest with `presented`, always all of them and all 32 bytes;
/// answers the index of the (last) match.
fn matching(digests: &[Digest32], presented: &Digest32) -> Option<usize> {
    // Arithmetic rather than a branch on each comparison: the time does not depend on which
    // digest (if any) matches either.
    let (mut found, mut index) = (0usize, 0usize);
    for (i, d) in digests.iter().enumerate() {
        let diff = d
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        let hit = usize::from(diff == 0);
        found |= hit;
        index = hit * i + (1 - hit) * index;
    }
    (found == 1).then_some(index)
}

/// A configured token's name and the token itself: `name:token` when the part before the
/// first colon is a tenant name (the rest must then be a whole token itself), else the whole
/// text is the token, unnamed.
fn named(token: &str) -> (Option<Tenant>, &str) {
    match token.split_once(':') {
        Some((name, rest)) => match Tenant::parse(name) {
            Ok(tenant) => (Some(tenant), rest),
            Err(_) => (None, token),
        },
        None => (None, token),
    }
}

/// What a request's token was granted: the tenant its name gives, if it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub tenant: Option<Tenant>,
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
    /// The names of `write` then `read`, by index.
    names: Vec<Option<Tenant>>,
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
        // Each token as it will be compared (trimmed, without its name), with its name.
        let mut checked: Vec<(Digest32, Option<Tenant>)> = Vec::new();
        for (kind, list) in [("API", write), ("read", read)] {
            for (i, secret) in list.iter().enumerate() {
                let (name, token) = named(&secret.0);
                let after = if name.is_some() {
                    " (after its name)"
                } else {
                    ""
                };
                let token = parse_token(token)
                    .map_err(|e| format!("{kind} token {}{after}: {e}", i + 1))?;
                let digest = digest(&token.0);
                if checked.iter().any(|(d, n)| *d == digest && *n != name) {
                    return Err(format!(
                        "{kind} token {} is configured again under another name: one token, \
                         one tenant",
                        i + 1
                    ));
                }
                checked.push((digest, name));
            }
        }
        if write.is_empty() && !read.is_empty() {
            return Err(
                "read tokens are set but no API token: writes would be open to anyone; \
                        set SLUICE_API_TOKENS too"
                    .into(),
            );
        }
        let (mut digests, names): (Vec<Digest32>, Vec<Option<Tenant>>) =
            checked.into_iter().unzip();
        let read = digests.split_off(write.len());
        Ok(Self {
            inner: Arc::new(Inner {
                write: digests,
                read,
                names,
            }),
        })
    }

    /// The tenants that configured tokens name (not secret: for the start-up log).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .inner
            .names
            .iter()
            .flatten()
            .map(Tenant::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Writes need a token.
    pub fn writes_guarded(&self) -> bool {
        !self.inner.write.is_empty()
    }

    /// Reads need a token.
    pub fn reads_guarded(&self) -> bool {
        !self.inner.read.is_empty()
    }

    /// What a request presenting `token` (if any) may do with writes (`check`'s answer, as
    /// the dashboard is told it).
    pub fn write_access(&self, token: Option<&str>) -> WriteAccess {
        match self.check(Access::Write, token) {
            Ok(_) => WriteAccess::Allowed,
            Err(Denied::ReadOnly) => WriteAccess::ReadOnly,
            Err(Denied::Missing | Denied::Invalid) => WriteAccess::NeedsToken,
        }
    }

    /// May a request presenting `token` (if any) do `access`? Answers the token's name.
    pub fn check(&self, access: Access, token: Option<&str>) -> Result<Grant, Denied> {
        let guarded = match access {
            Access::Read => self.reads_guarded(),
            Access::Write => self.writes_guarded(),
        };
        if !guarded {
            return Ok(Grant::default());
        }
        let presented = digest(token.ok_or(Denied::Missing)?);
        let name = |i: usize| Grant {
            tenant: self.inner.names.get(i).cloned().flatten(),
        };
        if let Some(i) = matching(&self.inner.write, &presented) {
            return Ok(name(i));
        }
        match matching(&self.inner.read, &presented) {
            Some(i) if access == Access::Read => Ok(name(self.inner.write.len() + i)),
            Some(_) => Err(Denied::ReadOnly),
            None => Err(Denied::Invalid),
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
        assert_eq!(tokens.check(Access::Write, None), Ok(Grant::default()));
        assert_eq!(
            tokens.check(Access::Read, Some("anything")),
            Ok(Grant::default())
        );
    }

    #[test]
    fn api_tokens_guard_writes_and_leave_reads_open() {
        let tokens = Tokens::new(&secrets(&[WRITER, "second-writer-token-xyz"]), &[]).unwrap();
        assert_eq!(tokens.check(Access::Write, None), Err(Denied::Missing));
        assert_eq!(
            tokens.check(Access::Write, Some("wrong")),
            Err(Denied::Invalid)
        );
        assert_eq!(
            tokens.check(Access::Write, Some(WRITER)),
            Ok(Grant::default())
        );
        assert_eq!(
            tokens.check(Access::Write, Some("second-writer-token-xyz")),
            Ok(Grant::default())
        );
        assert_eq!(tokens.check(Access::Read, None), Ok(Grant::default()));
    }

    #[test]
    fn read_tokens_guard_reads_and_may_not_write() {
        let tokens = Tokens::new(&secrets(&[WRITER]), &secrets(&[READER])).unwrap();
        assert_eq!(tokens.check(Access::Read, None), Err(Denied::Missing));
        assert_eq!(
            tokens.check(Access::Read, Some(READER)),
            Ok(Grant::default())
        );
        assert_eq!(
            tokens.check(Access::Read, Some(WRITER)),
            Ok(Grant::default())
        );
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
    fn a_named_token_is_sent_without_its_name_and_grants_its_tenant() {
        let tokens = Tokens::new(
            &secrets(&[&format!("acme:{WRITER}"), "second-writer-token-xyz"]),
            &secrets(&[&format!("ops.team:{READER}")]),
        )
        .unwrap();
        let acme = Grant {
            tenant: Some(Tenant::parse("acme").unwrap()),
        };
        assert_eq!(tokens.check(Access::Write, Some(WRITER)), Ok(acme));
        assert_eq!(
            tokens.check(Access::Write, Some(&format!("acme:{WRITER}"))),
            Err(Denied::Invalid),
            "the name is not part of the token"
        );
        assert_eq!(
            tokens.check(Access::Write, Some("second-writer-token-xyz")),
            Ok(Grant::default())
        );
        assert_eq!(
            tokens.check(Access::Read, Some(READER)).unwrap().tenant,
            Some(Tenant::parse("ops.team").unwrap())
        );
        assert_eq!(
            tokens.check(Access::Write, Some(READER)),
            Err(Denied::ReadOnly)
        );
    }

    #[test]
    fn a_colon_after_something_that_is_no_tenant_name_is_part_of_the_token() {
        let odd = "a/b:c-0123456789abcdef";
        let tokens = Tokens::new(&secrets(&[odd]), &[]).unwrap();
        assert_eq!(tokens.check(Access::Write, Some(odd)), Ok(Grant::default()));
    }

    #[test]
    fn a_named_token_is_compared_as_sent_and_one_token_has_one_name() {
        // Spaces around the token after its name are trimmed, as a sent token is.
        let tokens = Tokens::new(&[Secret(format!("acme: {WRITER}"))], &[]).unwrap();
        assert_eq!(
            tokens.check(Access::Write, Some(WRITER)).unwrap().tenant,
            Some(Tenant::parse("acme").unwrap())
        );
        assert_eq!(tokens.names(), ["acme"]);
        let twice = secrets(&[&format!("acme:{WRITER}"), &format!("globex:{WRITER}")]);
        assert!(Tokens::new(&twice, &[])
            .unwrap_err()
            .contains("under another name"));
    }

    #[test]
    fn a_named_token_too_weak_after_its_name_is_refused() {
        let error = Tokens::new(&secrets(&["acme:weak-one-0123"]), &[]).unwrap_err();
        assert!(
            error.starts_with("API token 1 (after its name):"),
            "{error}"
        );
        assert!(!error.contains("weak-one"));
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
