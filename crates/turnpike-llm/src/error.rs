//! [`LlmError`]: every way an LLM call can fail, each with a stable code and a runner decision.
//!
//! Classification choices (why, not just what):
//! - **Retryable**: 429 (the `Retry-After` value is kept), 5xx, 408/409, connection failures, timeouts
//!   (first token and idle), a stream cut before `[DONE]`/finish, a malformed chunk, and an error object
//!   inside a 200 stream. All of these are the provider's or the network's transient state: the same
//!   request can succeed a moment later, and a later failover layer can try another provider.
//! - **Fatal**: 400, 401, 403, 404 and other 4xx. The request is built from our configuration (model
//!   name, parameters, key), not from the user's text, so a rejection would repeat for every message:
//!   dead-lettering would silently drain the whole input into the dead-letter topic, while exiting makes
//!   the misconfiguration visible at once.
//! - **Unavailable** (every deployment's breaker open) is retryable: the outage is the provider's.
//! - **Interrupted** (a failure after the commit point) is poison for the runner: retrying it would
//!   restart or duplicate visible text, so the caller must end the reply itself (see the variant).
//! - **Poison**: the single exception to the above, a 400 whose provider code is
//!   `context_length_exceeded`: that one *is* caused by this input (a conversation too long) and would
//!   otherwise crash-loop the stage on one message.
//!
//! Codes are `&'static str` from a closed set; provider messages stay in `Display` only.

use std::time::Duration;

use turnpike_core::{Classify, ErrorClass};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The client could not be built (bad base URL, unusable key characters, TLS setup).
    #[error("invalid LLM client configuration: {0}")]
    Config(String),

    /// No TCP/TLS connection could be made (refused, DNS, connect timeout).
    #[error("cannot connect to the LLM endpoint: {0}")]
    Connect(String),

    /// Any other transport failure before the response headers arrived.
    #[error("LLM request failed: {0}")]
    Transport(String),

    /// HTTP 429. `retry_after` is the provider's `Retry-After`/`retry-after-ms` hint, when it sent one.
    #[error("LLM provider rate-limited the request (retry after {retry_after:?}): {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },

    /// Any other non-2xx status. `provider_code` is the `error.code` of an OpenAI-style error body.
    #[error("LLM provider answered HTTP {status}: {message}")]
    Http { status: u16, provider_code: Option<String>, message: String },

    /// Nothing useful (text, finish or usage) arrived within the time-to-first-token limit.
    #[error("no first token from the LLM within {0:?}")]
    TtftTimeout(Duration),

    /// The stream went silent for longer than the idle limit after it had started.
    #[error("LLM stream idle for more than {0:?}")]
    IdleTimeout(Duration),

    /// The body ended (or broke) before `[DONE]` or a finish reason: the reply is incomplete.
    #[error("LLM stream cut before it finished: {0}")]
    StreamCut(String),

    /// A chunk that is not valid SSE / JSON of the expected shape.
    #[error("malformed LLM stream chunk: {0}")]
    MalformedChunk(String),

    /// An error object/event sent inside an otherwise successful (200) stream (OpenAI `{"error":...}`,
    /// Anthropic `event: error` such as `overloaded_error`, Gemini `{"error":...}`).
    #[error("LLM provider reported an error mid-stream ({kind}): {message}")]
    Provider { kind: String, message: String },

    /// No deployment of the chain could be tried within the turn's retry and time budget (every breaker
    /// open or cooling down after a `Retry-After`, or the budget spent before an attempt).
    #[error("no LLM deployment available: {0}")]
    Unavailable(String),

    /// The stream failed *after* reply text was handed to the caller (the commit point). Never retried,
    /// here or by the runner: a new generation would differ from, or duplicate, what the user already saw.
    /// The caller ends the visible reply explicitly as incomplete (generate: `incomplete` FINAL + handoff).
    #[error("LLM reply from {deployment} interrupted after text was sent: {cause}")]
    Interrupted { deployment: String, cause: Box<LlmError> },
}

impl LlmError {
    /// How long the provider asked us to wait, for a rate limit; `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Flattens a reqwest error and its causes into one line: reqwest's own `Display` hides the useful
    /// part ("connection refused") in the source chain.
    pub(crate) fn describe(err: &reqwest::Error) -> String {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Maps a failure of `send()` (before any response) to the right variant.
    pub(crate) fn from_send(err: &reqwest::Error) -> Self {
        if err.is_connect() {
            LlmError::Connect(Self::describe(err))
        } else if err.is_builder() {
            LlmError::Config(Self::describe(err))
        } else {
            LlmError::Transport(Self::describe(err))
        }
    }
}

impl Classify for LlmError {
    fn class(&self) -> ErrorClass {
        match self {
            LlmError::Config(_) => ErrorClass::Fatal,
            LlmError::Http { status, provider_code, .. } => match status {
                400 if provider_code.as_deref() == Some("context_length_exceeded") => ErrorClass::Poison,
                408 | 409 | 500..=599 => ErrorClass::Retryable,
                _ => ErrorClass::Fatal,
            },
            LlmError::Connect(_)
            | LlmError::Transport(_)
            | LlmError::RateLimited { .. }
            | LlmError::TtftTimeout(_)
            | LlmError::IdleTimeout(_)
            | LlmError::StreamCut(_)
            | LlmError::MalformedChunk(_)
            | LlmError::Provider { .. }
            | LlmError::Unavailable(_) => ErrorClass::Retryable,
            LlmError::Interrupted { .. } => ErrorClass::Poison,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LlmError::Config(_) => "llm_config",
            LlmError::Connect(_) => "connect",
            LlmError::Transport(_) => "transport",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Http { status, provider_code, .. } => match status {
                400 if provider_code.as_deref() == Some("context_length_exceeded") => "context_length_exceeded",
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                408 => "request_timeout",
                409 => "conflict",
                // Anthropic's "overloaded": distinct from a 500 on dashboards, retried the same way.
                529 => "overloaded",
                500..=599 => "server_error",
                400..=499 => "client_error",
                _ => "unexpected_status",
            },
            LlmError::TtftTimeout(_) => "ttft_timeout",
            LlmError::IdleTimeout(_) => "idle_timeout",
            LlmError::StreamCut(_) => "stream_cut",
            LlmError::MalformedChunk(_) => "malformed_chunk",
            LlmError::Provider { .. } => "provider_error",
            LlmError::Unavailable(_) => "unavailable",
            LlmError::Interrupted { .. } => "interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: Option<&str>) -> LlmError {
        LlmError::Http { status, provider_code: code.map(str::to_owned), message: String::new() }
    }

    #[test]
    fn statuses_map_to_the_documented_classes() {
        let cases = [
            (400, None, ErrorClass::Fatal, "bad_request"),
            (400, Some("context_length_exceeded"), ErrorClass::Poison, "context_length_exceeded"),
            (401, None, ErrorClass::Fatal, "unauthorized"),
            (403, None, ErrorClass::Fatal, "forbidden"),
            (404, None, ErrorClass::Fatal, "not_found"),
            (408, None, ErrorClass::Retryable, "request_timeout"),
            (422, None, ErrorClass::Fatal, "client_error"),
            (500, None, ErrorClass::Retryable, "server_error"),
            (503, None, ErrorClass::Retryable, "server_error"),
            (529, Some("overloaded_error"), ErrorClass::Retryable, "overloaded"),
            (302, None, ErrorClass::Fatal, "unexpected_status"),
        ];
        for (status, code, class, label) in cases {
            let err = http(status, code);
            assert_eq!((err.class(), err.code()), (class, label), "HTTP {status} {code:?}");
        }
    }

    #[test]
    fn rate_limit_keeps_retry_after() {
        let err = LlmError::RateLimited { retry_after: Some(Duration::from_secs(1)), message: "slow down".into() };
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert_eq!(err.code(), "rate_limited");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }
}
