//! Tokens at the HTTP edge: the bearer token of a request, checked by `server::auth` before a
//! guarded route runs. Event streams may carry a read token as `?access_token=` instead,
//! because a browser's `EventSource` cannot send headers; writes take the header only.

use super::{query, ApiError};
use crate::server::auth::{Access, Tokens};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The token in `Authorization: Bearer <token>`, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Let the request through if its token allows `access`, with what it was granted (its
/// token's tenant) as an extension.
pub async fn require(
    State((tokens, access)): State<(Tokens, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    let from_query = match access {
        Access::Read => query::text(request.uri().query(), "access_token"),
        Access::Write => None,
    };
    let token = bearer(request.headers()).or(from_query.as_deref());
    match tokens.check(access, token) {
        Ok(grant) => {
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
        Err(denied) => ApiError::Denied(denied).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_bearer_token_is_read_from_the_authorization_header() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            bearer(&headers).map(str::to_owned)
        };
        assert_eq!(with("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(with("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(with("Basic abc"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
