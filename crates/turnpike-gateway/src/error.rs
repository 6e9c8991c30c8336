//! The one error shape of the protocol: an HTTP body or a WebSocket frame
//! `{"type":"error","code":…,"message":…}` plus `retry_after_ms`, `scope`, `window`, `message_id` when they
//! apply. Every refusal is also counted by reason.

use crate::auth::AuthError;
use crate::limiter::{Scope, Window};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    pub quota: Option<(Scope, Window)>,
    pub message_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_ms: None, quota: None, message_id: None }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn retry_after(mut self, ms: u64) -> ApiError {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn for_message(mut self, message_id: Option<&str>) -> ApiError {
        self.message_id = message_id.map(String::from);
        self
    }

    /// The frame or body.
    pub fn to_json(&self) -> String {
        let mut v = json!({"type": "error", "code": self.code, "message": self.message});
        let o = v.as_object_mut().expect("a JSON object literal");
        if let Some(ms) = self.retry_after_ms {
            o.insert("retry_after_ms".into(), json!(ms));
        }
        if let Some((scope, window)) = self.quota {
            o.insert("scope".into(), json!(scope.name()));
            o.insert("window".into(), json!(window.name()));
        }
        if let Some(id) = &self.message_id {
            o.insert("message_id".into(), json!(id));
        }
        v.to_string()
    }

    /// Counts the refusal; call once where it is answered.
    pub fn count(&self) {
        count_rejection(self.code);
    }
}

/// Counts a refused request, message or connection by reason (the protocol's error code or close reason).
pub fn count_rejection(reason: &'static str) {
    metrics::counter!("turnpike_gateway_rejections_total", "reason" => reason).increment(1);
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        ApiError::new(e.status(), e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.count();
        let mut resp = (self.status, [("content-type", "application/json")], self.to_json()).into_response();
        if let Some(ms) = self.retry_after_ms {
            // Retry-After is in whole seconds; round up so a client that obeys it is not refused again.
            if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}
