//! One HTTP call to a helpdesk, retried: 429 and 5xx (and connection failures) wait `Retry-After` when the
//! helpdesk sends one, else an exponential back-off with jitter, up to the tenant's `max_attempts`.
//! Credentials travel only in the request's `Authorization` header, which reqwest marks sensitive.

use crate::HelpdeskError;
use reqwest::{RequestBuilder, StatusCode};
use std::time::Duration;

/// Retry policy of one tenant's connector.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub max_attempts: u32,
    pub max_backoff: Duration,
}

/// A successful answer: status and JSON body (`Null` when the body is empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// Sends the request `make` builds, retrying transient failures. `what` names the call in logs and metrics.
pub async fn call(
    helpdesk: &'static str,
    what: &'static str,
    retry: Retry,
    make: impl Fn() -> RequestBuilder,
) -> Result<Answer, HelpdeskError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = make().send().await;
        let error = match outcome {
            Ok(resp) if resp.status().is_success() => {
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| HelpdeskError::unavailable(what, None, e.to_string()))?;
                let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                metrics::counter!("turnpike_helpdesk_requests_total", "helpdesk" => helpdesk, "call" => what, "outcome" => "ok")
                    .increment(1);
                return Ok(Answer { status, body });
            }
            Ok(resp) => {
                let status = resp.status();
                let retry_after = retry_after(&resp);
                let text = resp.text().await.unwrap_or_default();
                let detail: String = text.chars().take(300).collect();
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    HelpdeskError::Unavailable { call: what, status: Some(status.as_u16()), retry_after, detail }
                } else {
                    metrics::counter!("turnpike_helpdesk_requests_total", "helpdesk" => helpdesk, "call" => what, "outcome" => "refused")
                        .increment(1);
                    return Err(HelpdeskError::Refused { call: what, status: status.as_u16(), detail });
                }
            }
            Err(e) => HelpdeskError::unavailable(what, None, e.to_string()),
        };
        metrics::counter!("turnpike_helpdesk_requests_total", "helpdesk" => helpdesk, "call" => what, "outcome" => "retryable")
            .increment(1);
        if attempt >= retry.max_attempts {
            return Err(error);
        }
        let wait = match &error {
            HelpdeskError::Unavailable { retry_after: Some(d), .. } => (*d).min(retry.max_backoff),
            _ => backoff(attempt, retry.max_backoff),
        };
        tracing::warn!(helpdesk, call = what, attempt, wait_ms = wait.as_millis() as u64, error = %error,
            "Helpdesk call failed; retrying.");
        metrics::counter!("turnpike_helpdesk_retries_total", "helpdesk" => helpdesk).increment(1);
        tokio::time::sleep(wait).await;
    }
}

/// `Retry-After` in seconds (the form all three helpdesks use); Intercom's `X-RateLimit-Reset` (a unix time).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(secs.max(0.0)));
    }
    let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

/// 200 ms doubling, capped, with up to 25% jitter so many sessions retrying together spread out.
fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempt.min(10)).min(cap);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    base + base.mul_f64((nanos % 1000) as f64 / 4000.0)
}
