//! The one error shape every route answers with: `{"error": {"code", "message"}, "detail"}`
//! (`detail` repeats the message, as the FastAPI reference's errors carry it).

use serde::{Deserialize, Serialize};

/// Body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The message again, at the top level: clients written against the FastAPI reference read
    /// errors as `{"detail": "…"}`.
    #[serde(default)]
    pub detail: String,
}

impl ErrorBody {
    pub fn new(error: ErrorDetail) -> Self {
        let detail = error.message.clone();
        Self { error, detail }
    }
}

/// A stable machine-readable `code` and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorDetail {}

/// Code of a server-function call whose arguments did not decode.
pub const INVALID_ARGUMENTS: &str = "invalid_arguments";

/// Server functions answer with the same `{code, message}` as the JSON routes; failures of the
/// server-function machinery itself (network, encoding) become `code: "server_fn"`.
impl leptos::server_fn::error::FromServerFnError for ErrorDetail {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        use leptos::server_fn::error::ServerFnErrorErr as E;
        let code = match value {
            // The arguments did not decode: the caller's mistake (answered 400 by the server).
            E::Args(_) | E::MissingArg(_) | E::Deserialization(_) => INVALID_ARGUMENTS,
            _ => "server_fn",
        };
        ErrorDetail {
            code: code.into(),
            message: value.to_string(),
        }
    }
}
