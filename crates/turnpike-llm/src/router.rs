//! [`Chain`]: one model tier's ordered deployments, with retries, failover, breakers and the commit point.
//!
//! The commit point is the first reply text handed to the caller. [`Chain::stream`] returns only once
//! a deployment has produced that first text (or finished cleanly without any), so everything before it
//! is invisible and fails over freely:
//! - deployments are tried in order; a failed one is skipped for the rest of this pass and the next one
//!   is tried at once (no waiting on a broken primary); when every deployment failed, another pass
//!   starts after an exponential back-off;
//! - by class: retryable errors (429, 5xx, Anthropic's 529, connect/read timeouts, the per-attempt TTFT
//!   timeout, cut/stalled/malformed streams, error events) try again; a 429's `Retry-After` keeps that
//!   deployment out of picks until then (waited for only if the turn's budget allows and nothing else
//!   can answer); configuration errors (401/403/404/other 4xx) exclude the deployment for the turn;
//!   poison (context length) returns at once;
//! - the turn is bounded by `max_attempts` and `time_budget`, so an outage costs each request at most
//!   that, and an open breaker costs nothing at all; each deployment's breaker hears at most one failure
//!   per turn (a request that fails on every retry must not open it for everyone).
//!
//! After the commit point nothing is retried: a failure surfaces as [`LlmError::Interrupted`]; visible
//! text is never restarted or duplicated, and a cut stream is never passed off as complete (the clients
//! already refuse that). The caller may then ask for the rest with a continuation request (the text shown
//! as [`ChatRequest::continuation`]), which is a new call with a commit point of its own: it goes to the
//! deployments that can continue ([`crate::LlmProvider::can_continue`]), in chain order but the deployment
//! that was cut last ([`ChatRequest::cut_on`]), breakers applying (it has just heard a failure), and fails
//! at once when none can.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{sleep_until, timeout_at, Instant};
use turnpike_core::{Classify, ErrorClass};

use crate::breaker::{Breaker, BreakerConfig};
use crate::{ChatRequest, EventStream, LlmError, LlmEvent, LlmProvider};

/// Limits of one turn's pre-commit retries.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts over all deployments, the first included.
    pub max_attempts: u32,
    /// From the call to the first text, all attempts and waits included.
    pub time_budget: Duration,
    /// One attempt's time to first text; a stall before it moves on to the next deployment.
    pub ttft_timeout: Duration,
    /// Pause before a new pass over the chain; doubles each pass up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            time_budget: Duration::from_secs(10),
            ttft_timeout: Duration::from_secs(8),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// One provider + model (+ key, inside the client) a tier can use.
#[derive(Debug)]
pub struct Deployment {
    /// Stable label from configuration, used in metrics and logs (bounded: one per configured deployment).
    pub name: String,
    /// The model to ask for; `None` passes the caller's model through (a single OpenAI-compatible server).
    pub model: Option<String>,
    pub provider: LlmProvider,
    pub breaker: Breaker,
}

impl Deployment {
    pub fn new(
        name: impl Into<String>,
        model: impl Into<String>,
        provider: LlmProvider,
        breaker: BreakerConfig,
    ) -> Self {
        Deployment { name: name.into(), model: Some(model.into()), provider, breaker: Breaker::new(breaker) }
    }

    /// A deployment that serves whatever model the request names.
    pub fn passthrough(name: impl Into<String>, provider: LlmProvider, breaker: BreakerConfig) -> Self {
        Deployment { name: name.into(), model: None, provider, breaker: Breaker::new(breaker) }
    }

    /// The model a request for `requested` is sent with.
    pub fn model_for<'a>(&'a self, requested: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(requested)
    }

    fn publish_state(&self, now: Instant) {
        let state = self.breaker.state(now);
        metrics::gauge!("turnpike_llm_breaker_state", "deployment" => self.name.clone()).set(state as u8 as f64);
    }
}

/// A reply that passed the commit point (or finished cleanly without text).
pub struct Answer {
    /// The deployment that answered.
    pub deployment: String,
    pub provider: &'static str,
    pub model: String,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// Times the chain moved to a different deployment.
    pub failovers: u32,
    /// From the call to the first text (all attempts included), if there was any text.
    pub ttft: Option<Duration>,
    /// The first text onward. An error in it is always [`LlmError::Interrupted`].
    pub events: EventStream,
}

/// An ordered chain of deployments for one tier.
#[derive(Debug)]
pub struct Chain {
    pub tier: String,
    pub deployments: Vec<Arc<Deployment>>,
    pub policy: RetryPolicy,
}

/// What one attempt produced before the commit point.
struct Opened {
    /// Events before (and including) the first text.
    head: Vec<LlmEvent>,
    /// The rest of the stream; `None` if it already ended cleanly.
    rest: Option<EventStream>,
}

async fn open_until_first_text(provider: &LlmProvider, req: &ChatRequest) -> Result<Opened, LlmError> {
    let mut stream = provider.stream(req).await?;
    let mut head = Vec::new();
    while let Some(item) = stream.next().await {
        let event = item?;
        let is_text = matches!(event, LlmEvent::TextDelta(_));
        head.push(event);
        if is_text {
            return Ok(Opened { head, rest: Some(stream) });
        }
    }
    Ok(Opened { head, rest: None })
}

impl Chain {
    pub fn new(tier: impl Into<String>, deployments: Vec<Deployment>, policy: RetryPolicy) -> Self {
        Self::shared(tier, deployments.into_iter().map(Arc::new).collect(), policy)
    }

    /// A chain over deployments other chains may share (one breaker per deployment, whatever the tier).
    pub fn shared(tier: impl Into<String>, deployments: Vec<Arc<Deployment>>, policy: RetryPolicy) -> Self {
        Chain { tier: tier.into(), deployments, policy }
    }

    /// Whether some deployment can continue a reply ([`ChatRequest::continuation`]).
    pub fn can_continue(&self) -> bool {
        self.deployments.iter().any(|d| d.provider.can_continue())
    }

    /// Streams `req` (its `model` is replaced by each deployment's) up to the commit point; see the
    /// module comment. `Err` means nothing was shown: its class tells the caller whether to retry later.
    pub async fn stream(&self, req: &ChatRequest) -> Result<Answer, LlmError> {
        let started = Instant::now();
        let deadline = started + self.policy.time_budget;
        let n = self.deployments.len();
        let mut failed = vec![false; n];
        // A continuation goes only to deployments that can continue (see the module comment).
        let continuing = req.continuation.is_some();
        let mut excluded: Vec<bool> =
            self.deployments.iter().map(|d| continuing && !d.provider.can_continue()).collect();
        if excluded.iter().all(|e| *e) {
            return Err(LlmError::Unavailable(format!("tier {}: no deployment can continue a reply", self.tier)));
        }
        // One failure per deployment per turn reaches its breaker: the breaker measures how many
        // *requests* a deployment fails, so one request that fails every retry (something in its content)
        // cannot open it for everyone else.
        let mut recorded = vec![false; n];
        // The deployment that just cut this reply goes last (see the module comment).
        let mut order: Vec<usize> = (0..n).collect();
        if let Some(cut) = req.cut_on.as_deref().filter(|_| continuing) {
            order.sort_by_key(|i| self.deployments[*i].name == cut);
        }
        let (mut attempts, mut failovers, mut passes) = (0u32, 0u32, 0u32);
        let mut previous: Option<usize> = None;
        let mut last_error: Option<LlmError> = None;
        while attempts < self.policy.max_attempts {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let mut earliest: Option<Instant> = None;
            let mut picked = None;
            for &i in &order {
                let dep = &self.deployments[i];
                if failed[i] || excluded[i] {
                    continue;
                }
                match dep.breaker.try_acquire(now) {
                    Ok(()) => {
                        picked = Some(i);
                        break;
                    }
                    Err(at) => earliest = Some(earliest.map_or(at, |e: Instant| e.min(at))),
                }
            }
            let Some(i) = picked else {
                if failed.iter().any(|f| *f) {
                    // Every available deployment failed once this turn: a new pass after a back-off.
                    failed.iter_mut().for_each(|f| *f = false);
                    passes += 1;
                    let wait = backoff(&self.policy, passes);
                    if now + wait >= deadline {
                        break;
                    }
                    sleep_until(now + wait).await;
                } else if let Some(at) = earliest.filter(|at| *at < deadline) {
                    // Only cooling/open deployments left: wait for the first (e.g. a Retry-After).
                    sleep_until(at).await;
                } else {
                    break;
                }
                continue;
            };
            let dep = &self.deployments[i];
            attempts += 1;
            if attempts > 1 {
                metrics::counter!("turnpike_llm_retries_total", "tier" => self.tier.clone()).increment(1);
            }
            if previous.is_some_and(|p| p != i) {
                failovers += 1;
                metrics::counter!("turnpike_llm_failovers_total", "tier" => self.tier.clone(), "to" => dep.name.clone())
                    .increment(1);
            }
            previous = Some(i);
            let mut attempt_req = req.clone();
            attempt_req.model = dep.model_for(&req.model).to_owned();
            let attempt_deadline = (now + self.policy.ttft_timeout).min(deadline);
            let result = match timeout_at(attempt_deadline, open_until_first_text(&dep.provider, &attempt_req)).await {
                Ok(result) => result,
                Err(_) => Err(LlmError::TtftTimeout(attempt_deadline - now)),
            };
            let done = Instant::now();
            match result {
                Ok(opened) => {
                    let outcome = if opened.rest.is_some() { "first_text" } else { "ok" };
                    self.count_attempt(dep, outcome);
                    if opened.rest.is_none() {
                        dep.breaker.record(done, true);
                        dep.publish_state(done);
                    }
                    let ttft = opened.head.iter().any(|e| matches!(e, LlmEvent::TextDelta(_))).then(|| done - started);
                    return Ok(Answer {
                        deployment: dep.name.clone(),
                        provider: dep.provider.name(),
                        model: attempt_req.model,
                        attempts,
                        failovers,
                        ttft,
                        events: committed(Arc::clone(dep), opened),
                    });
                }
                Err(err) => {
                    self.count_attempt(dep, err.code());
                    tracing::warn!(tier = %self.tier, deployment = %dep.name, error = %err, attempts, "LLM attempt failed");
                    if !std::mem::replace(&mut recorded[i], true) {
                        dep.breaker.record(done, false);
                    }
                    if let Some(wait) = err.retry_after() {
                        dep.breaker.cool_until(done + wait);
                    }
                    dep.publish_state(done);
                    match err.class() {
                        ErrorClass::Poison => return Err(err),
                        ErrorClass::Fatal => excluded[i] = true,
                        ErrorClass::Retryable => failed[i] = true,
                    }
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            LlmError::Unavailable(format!("tier {}: every deployment is open or cooling down", self.tier))
        }))
    }

    fn count_attempt(&self, dep: &Deployment, outcome: &'static str) {
        metrics::counter!("turnpike_llm_attempts_total", "deployment" => dep.name.clone(), "outcome" => outcome)
            .increment(1);
    }
}

/// `base * 2^(pass-1)`, capped, minus up to a quarter of jitter so synchronized turns spread out.
fn backoff(policy: &RetryPolicy, pass: u32) -> Duration {
    let exp = policy.backoff_base.saturating_mul(1u32 << pass.saturating_sub(1).min(16)).min(policy.backoff_max);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    exp.saturating_sub(exp / 4 * (nanos % 1000) / 1000)
}

/// The post-commit stream: the buffered head, then the rest with every error turned into `Interrupted`
/// and the outcome recorded on the deployment's breaker.
fn committed(dep: Arc<Deployment>, opened: Opened) -> EventStream {
    let head = futures::stream::iter(opened.head.into_iter().map(Ok));
    let Some(rest) = opened.rest else { return head.boxed() };
    let tail = futures::stream::unfold(Some(rest), move |state| {
        let dep = Arc::clone(&dep);
        async move {
            let mut rest = state?;
            match rest.next().await {
                Some(Ok(event)) => Some((Ok(event), Some(rest))),
                Some(Err(cause)) => {
                    let now = Instant::now();
                    dep.breaker.record(now, false);
                    dep.publish_state(now);
                    let err = LlmError::Interrupted { deployment: dep.name.clone(), cause: Box::new(cause) };
                    Some((Err(err), None))
                }
                None => {
                    let now = Instant::now();
                    dep.breaker.record(now, true);
                    dep.publish_state(now);
                    None
                }
            }
        }
    });
    head.chain(tail).boxed()
}
