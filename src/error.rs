//! The API error: a stable snake_case code, an HTTP status, and the `{"error":{…}}` envelope.
//! Every layer's error is converted here, once; internal causes are logged, never sent.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::model::validate::FieldError;
use crate::store::StoreError;

/// Everything an API route can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON or request.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong admin token.
    #[error("a valid admin token is required: send Authorization: Bearer <token>")]
    Unauthorized,
    /// An API key that was revoked, never issued, or has expired.
    #[error("{0}")]
    BadKey(String),
    /// The key's rate limit is used up.
    #[error("the rate limit of this key is reached; retry in {0} s")]
    RateLimited(u64),
    /// The caller may not do this (e.g. a cross-site browser request without an admin token).
    #[error("{0}")]
    Forbidden(String),
    /// A request body that is not `application/json`.
    #[error("request bodies must be JSON: send Content-Type: application/json")]
    UnsupportedMediaType,
    /// An error answered by the HTTP layer itself (e.g. 414), put in the envelope.
    #[error("{message}")]
    Http {
        /// The status the layer chose.
        status: StatusCode,
        /// Sentence for a person.
        message: String,
    },
    /// No such entity or route.
    #[error("{0}")]
    NotFound(String),
    /// Route exists, method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// Unique name already used.
    #[error("the name '{0}' is already taken")]
    NameTaken(String),
    /// Delete guard.
    #[error("{message}")]
    InUse {
        /// Sentence for a person.
        message: String,
        /// Dependants.
        details: Vec<Value>,
    },
    /// A conflicting state other than in-use (e.g. calling an unlinked tool).
    #[error("{message}")]
    Conflict {
        /// snake_case code.
        code: &'static str,
        /// Sentence for a person.
        message: String,
    },
    /// Body over the limit.
    #[error("the request body is larger than the configured limit")]
    PayloadTooLarge,
    /// Definition problems.
    #[error("the definition is invalid")]
    InvalidDefinition(Vec<FieldError>),
    /// An OpenAPI document that cannot be imported.
    #[error("the OpenAPI document cannot be imported")]
    InvalidSpec(Vec<FieldError>),
    /// Tool arguments refused; nothing was sent.
    #[error("{message}")]
    InvalidArguments {
        /// Sentence for a person.
        message: String,
        /// One entry per offending argument.
        details: Vec<FieldError>,
        /// The history record of the refused call.
        call_id: String,
    },
    /// The model endpoint failed (after retries) or answered nonsense.
    #[error("{message}")]
    BadGateway {
        /// snake_case code (`llm_unavailable`, `llm_error`).
        code: &'static str,
        /// Sentence for a person.
        message: String,
    },
    /// The shared store cannot be reached; the request may be retried.
    #[error("the store is unavailable: {0}")]
    StoreUnavailable(String),
    /// Something broke inside; the cause is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The answer to a client that did not send its request body within the client timeout
    /// (`serving::body_deadline`).
    pub fn body_too_slow() -> ApiError {
        ApiError::Http {
            status: StatusCode::REQUEST_TIMEOUT,
            message: "the request body did not arrive in time".into(),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized | ApiError::BadKey(_) => "unauthorized",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Http { status, .. } => status_code_name(*status),
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::NameTaken(_) => "name_taken",
            ApiError::InUse { .. } => "in_use",
            ApiError::Conflict { code, .. } => code,
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::InvalidDefinition(_) => "invalid_definition",
            ApiError::InvalidSpec(_) => "invalid_spec",
            ApiError::InvalidArguments { .. } => "invalid_arguments",
            ApiError::BadGateway { code, .. } => code,
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::BadKey(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Http { status, .. } => *status,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NameTaken(_) | ApiError::InUse { .. } | ApiError::Conflict { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidDefinition(_)
            | ApiError::InvalidSpec(_)
            | ApiError::InvalidArguments { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::InUse { details, .. } => Some(Value::Array(details.clone())),
            ApiError::InvalidDefinition(d) | ApiError::InvalidSpec(d) => {
                serde_json::to_value(d).ok()
            }
            ApiError::InvalidArguments { details, .. } => serde_json::to_value(details).ok(),
            _ => None,
        }
    }
}

/// The envelope code for a status chosen outside the handlers.
pub fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        431 => "headers_too_large",
        500..=599 => "internal",
        _ => "http_error",
    }
}

/// Whether a `Content-Type` value names JSON (`application/json`, `application/*+json`, any
/// parameters).
pub fn is_json_content_type(value: &str) -> bool {
    // Compared without a lower-cased copy: every JSON request asks this.
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .as_bytes();
    let Some((kind, sub)) = essence.split_at_checked(12) else {
        return false;
    };
    kind.eq_ignore_ascii_case(b"application/")
        && (sub.eq_ignore_ascii_case(b"json")
            || sub.len() >= 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        let mut err = json!({"code": self.code(), "message": self.to_string()});
        if let Some(d) = self.details() {
            err["details"] = d;
        }
        if let ApiError::InvalidArguments { call_id, .. } = &self {
            err["call_id"] = json!(call_id);
        }
        let mut resp = (self.status(), axum::Json(json!({ "error": err }))).into_response();
        if let ApiError::RateLimited(secs) = &self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*secs),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::NameTaken(n) => ApiError::NameTaken(n),
            StoreError::InUse { message, details } => ApiError::InUse { message, details },
            StoreError::Invalid(d) => ApiError::InvalidDefinition(d),
            StoreError::Unavailable(why) => ApiError::StoreUnavailable(why),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::definitions::DefinitionError> for ApiError {
    fn from(e: crate::definitions::DefinitionError) -> Self {
        use crate::definitions::DefinitionError;
        match e {
            DefinitionError::Invalid(d) => ApiError::InvalidDefinition(d),
            e @ DefinitionError::ManagedByFile { .. } => ApiError::Conflict {
                code: "managed_by_file",
                message: e.to_string(),
            },
            DefinitionError::Store(e) => e.into(),
        }
    }
}

impl From<crate::openapi::ImportError> for ApiError {
    fn from(e: crate::openapi::ImportError) -> Self {
        ApiError::InvalidSpec(e.details)
    }
}

impl From<crate::agent::LlmError> for ApiError {
    fn from(e: crate::agent::LlmError) -> Self {
        let code = match e {
            crate::agent::LlmError::Unavailable(_) => "llm_unavailable",
            _ => "llm_error",
        };
        ApiError::BadGateway {
            code,
            message: e.to_string(),
        }
    }
}

/// Drop backtick-quoted values from serde messages so no submitted value is echoed back.
fn scrub_serde_message(msg: &str) -> String {
    if !msg.starts_with("invalid") && !msg.contains("at line") {
        return msg.to_string();
    }
    without_quoted_values(msg)
}

/// `msg` without its backtick-quoted parts (where parsers quote the input they refused).
pub fn without_quoted_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '`' {
            inside = !inside;
            continue;
        }
        if !inside {
            out.push(c);
        }
    }
    out.replace("  ", " ").replace(" ,", ",")
}

/// JSON body extractor whose rejections use the error envelope:
/// 413 over the limit, 400 for malformed JSON, 422 naming the field for wrong shapes.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // A browser may send a "simple" cross-site POST with text/plain and no preflight; only
        // JSON bodies are read, so such a request never reaches a handler.
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_content_type);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else if crate::serving::body_deadline::ClientTooSlow::in_chain(&e) {
                ApiError::body_too_slow()
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if !empty && !json_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        let parse = || -> Result<Value, ApiError> {
            if empty {
                return Ok(json!({}));
            }
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::BadRequest(format!(
                    "malformed JSON: {}",
                    scrub_serde_message(&e.to_string())
                ))
            })
        };
        let value = parse()?;
        match T::deserialize(value) {
            Ok(t) => Ok(ApiJson(t)),
            // Read again, slowly, to report every bad name and id with its path; the first
            // attempt moved the value so the common case copies nothing.
            Err(_) => {
                let errs = crate::model::submitted::deserialize_reporting_all::<T>(
                    parse()?,
                    &scrub_serde_message,
                );
                match errs {
                    Ok(t) => Ok(ApiJson(t)),
                    Err(errs) => Err(ApiError::InvalidDefinition(errs)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_json_content_type, scrub_serde_message};

    #[test]
    fn json_media_types_are_told_apart_whatever_their_case_and_parameters() {
        for yes in [
            "application/json",
            "Application/JSON",
            " application/json ; charset=utf-8",
            "application/problem+json",
            "application/vnd.api+JSON;v=1",
            "application/+json",
            "application/é+json",
        ] {
            assert!(is_json_content_type(yes), "{yes}");
        }
        for no in [
            "",
            "application/",
            "application/jso",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "text/json",
            "application/json+xml",
            "applicatio/json",
            "appl\u{e9}cation/json",
        ] {
            assert!(!is_json_content_type(no), "{no}");
        }
    }

    #[test]
    fn scrubs_values() {
        assert_eq!(
            scrub_serde_message("invalid type: string `hunter2`, expected u64"),
            "invalid type: string, expected u64"
        );
        assert_eq!(
            scrub_serde_message("unknown field `x`, expected `a`"),
            "unknown field `x`, expected `a`"
        );
    }
}
