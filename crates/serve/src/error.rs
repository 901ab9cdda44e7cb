//! Errors as OpenAI sends them: a status and `{"error": {"message", "type", "param", "code"}}`,
//! so that OpenAI client libraries raise their usual exceptions (`BadRequestError`,
//! `NotFoundError`, `RateLimitError`) with our message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A request the server refuses or could not serve. Every 4xx says what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, when there is one (`"max_tokens"`, `"messages"`).
    pub param: Option<String>,
    /// A machine-readable code where OpenAI has one (`model_not_found`,
    /// `context_length_exceeded`, `invalid_api_key`).
    pub code: Option<&'static str>,
    /// Seconds after which to try again (sent as `Retry-After`; 429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 about `param`.
    pub fn invalid(param: impl Into<Option<String>>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: param.into(),
            code: None,
            retry_after: None,
        }
    }

    /// 400 about the request field `name`.
    pub fn field(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid(Some(name.to_string()), message)
    }

    pub fn with_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// OpenAI's `type`: what kind of problem, by status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 => "service_unavailable_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body (also sent as the last event of a stream that fails midway).
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_openai_shape_and_the_type_follows_the_status() {
        let e = ApiError::field("max_tokens", "must be at least 1");
        let b = e.body();
        assert_eq!(b["error"]["param"], "max_tokens");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert!(b["error"]["code"].is_null());
        let e =
            ApiError::with_status(StatusCode::NOT_FOUND, "no such model").code("model_not_found");
        assert_eq!(e.body()["error"]["type"], "not_found_error");
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        let r = ApiError::with_status(StatusCode::TOO_MANY_REQUESTS, "full")
            .retry_after(2)
            .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
