//! [`OpenAiClient`]: streams a Chat Completion and turns it into [`LlmEvent`]s.
//!
//! Guarantees: those of [`crate::stream`] (complete-or-error, bounded TTFT and idle time, nothing after
//! an error); the API key is only ever written into a sensitive `Authorization` header.

use std::time::Duration;

use futures::Stream;

use super::wire::{OpenAiDecoder, RequestBody};
use crate::stream::{self, ClientConfig};
use crate::{ApiKey, ChatRequest, ContinuationStyle, LlmError, LlmEvent};

/// An OpenAI client's settings: the shared [`ClientConfig`] (`base_url` up to and including the version
/// path, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8090/v1`).
pub type OpenAiConfig = ClientConfig;

/// A Chat Completions client. Cheap to clone (the connection pool is shared); build it once.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    http: reqwest::Client,
    url: reqwest::Url,
    api_key: Option<ApiKey>,
    ttft_timeout: Duration,
    idle_timeout: Duration,
    /// How this server continues an assistant message, if it can (see [`crate::continuation`]).
    continuation: ContinuationStyle,
}

impl OpenAiClient {
    /// Builds the client and its own connection pool.
    pub fn new(cfg: OpenAiConfig) -> Result<Self, LlmError> {
        let http = stream::http_client(cfg.connect_timeout)?;
        Self::with_http_client(http, cfg)
    }

    /// Builds the client on a shared `reqwest::Client` (its connect timeout then applies, not `cfg`'s).
    pub fn with_http_client(http: reqwest::Client, cfg: OpenAiConfig) -> Result<Self, LlmError> {
        let url = stream::endpoint(&cfg.base_url, "/chat/completions")?;
        Ok(OpenAiClient {
            http,
            url,
            api_key: cfg.api_key,
            ttft_timeout: cfg.ttft_timeout,
            idle_timeout: cfg.idle_timeout,
            continuation: ContinuationStyle::None,
        })
    }

    /// This client, for a server that continues assistant messages in `style`'s way.
    pub fn with_continuation(mut self, style: ContinuationStyle) -> Self {
        self.continuation = style;
        self
    }

    /// Whether this server can continue an assistant message.
    pub fn can_continue(&self) -> bool {
        self.continuation != ContinuationStyle::None
    }

    /// The endpoint requests go to (`{base_url}/chat/completions`).
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Starts a streamed completion. `Err` here means no stream was opened (status, connect, TTFT);
    /// failures after that arrive as the stream's last item.
    pub async fn stream(
        &self,
        req: &ChatRequest,
    ) -> Result<impl Stream<Item = Result<LlmEvent, LlmError>> + Send + 'static, LlmError> {
        if req.continuation.is_some() && !self.can_continue() {
            // Sent plainly, the server would start a new reply after the shown text: refuse instead.
            return Err(LlmError::Config(format!("{} is not configured to continue a reply", self.url)));
        }
        let mut builder = self.http.post(self.url.clone()).json(&RequestBody::streaming(req, self.continuation));
        if let Some(key) = &self.api_key {
            // reqwest marks bearer headers sensitive, so they are redacted from its own Debug output too.
            builder = builder.bearer_auth(key.expose());
        }
        tracing::debug!(model = %req.model, url = %self.url, "LLM stream opening");
        stream::open(builder, OpenAiDecoder, self.ttft_timeout, self.idle_timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_must_be_http() {
        let err = OpenAiClient::new(OpenAiConfig::new("ftp://example.invalid/v1")).unwrap_err();
        assert!(matches!(err, LlmError::Config(_)), "{err:?}");
        let client = OpenAiClient::new(OpenAiConfig::new("http://127.0.0.1:8090/v1/")).unwrap();
        assert_eq!(client.url().as_str(), "http://127.0.0.1:8090/v1/chat/completions");
    }
}
