//! Failover through [`Chain`] against mock deployments: a dead primary is invisible, a 429 storm is
//! waited out per `Retry-After` and then trips the breaker, a TTFT stall fails over, and a stream cut
//! after the first text is surfaced as `Interrupted`, never restarted, duplicated or passed off as whole.

use std::time::{Duration, Instant};

use futures::StreamExt;
use turnpike_core::{Classify, ErrorClass};
use turnpike_llm::breaker::BreakerConfig;
use turnpike_llm::mock::script::Fault;
use turnpike_llm::mock::{self, MockConfig, MockServer};
use turnpike_llm::{
    collect, AnthropicClient, Chain, ChatMessage, ChatRequest, ClientConfig, Deployment, GeminiClient, LlmError,
    LlmEvent, LlmProvider, OpenAiClient, RetryPolicy,
};

fn client_cfg(base: String) -> ClientConfig {
    let mut cfg = ClientConfig::new(base);
    cfg.ttft_timeout = Duration::from_secs(5);
    cfg.idle_timeout = Duration::from_millis(300);
    cfg
}

fn openai(name: &str, server: &MockServer, breaker: BreakerConfig) -> Deployment {
    let client = OpenAiClient::new(client_cfg(server.base_url())).unwrap();
    Deployment::new(name, "gpt-4o-mini", client.into(), breaker)
}

fn anthropic(name: &str, server: &MockServer, breaker: BreakerConfig) -> Deployment {
    let client = AnthropicClient::new(client_cfg(server.root_url())).unwrap();
    Deployment::new(name, "claude-sonnet-4", LlmProvider::Anthropic(client), breaker)
}

fn gemini(name: &str, server: &MockServer, breaker: BreakerConfig) -> Deployment {
    let client = GeminiClient::new(client_cfg(server.root_url())).unwrap();
    Deployment::new(name, "gemini-2.0-flash", LlmProvider::Gemini(client), breaker)
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        time_budget: Duration::from_secs(5),
        ttft_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
    }
}

fn request(user: &str) -> ChatRequest {
    ChatRequest::new("tier-model", vec![ChatMessage::system("You are terse."), ChatMessage::user(user)])
}

async fn instant() -> MockServer {
    mock::spawn(MockConfig::instant()).await.unwrap()
}

#[tokio::test]
async fn primary_down_fallback_answers_identically() {
    let (primary, fallback) = (instant().await, instant().await);
    let user = "Where is my parcel?";
    // What the user would have seen from a healthy primary.
    let healthy = Chain::new("cheap", vec![openai("primary", &primary, BreakerConfig::default())], policy());
    let expected = collect(healthy.stream(&request(user)).await.unwrap().events).await.unwrap();

    primary.set_fault(Some(Fault::Status(503)));
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = OpenAiClient::new(client_cfg(format!("http://127.0.0.1:{closed_port}/v1"))).unwrap();
    let chain = Chain::new(
        "cheap",
        vec![
            openai("primary", &primary, BreakerConfig::default()),
            Deployment::new("unreachable", "gpt-4o-mini", refused.into(), BreakerConfig::default()),
            anthropic("fallback", &fallback, BreakerConfig::default()),
        ],
        policy(),
    );
    let answer = chain.stream(&request(user)).await.unwrap();
    assert_eq!((answer.deployment.as_str(), answer.provider), ("fallback", "anthropic"));
    assert_eq!((answer.attempts, answer.failovers), (3, 2));
    let reply = collect(answer.events).await.unwrap();
    assert_eq!(reply.text, expected.text, "no visible difference");
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert!(reply.usage.is_some_and(|u| u.output_tokens == 40));
    assert_eq!(fallback.stats().requests, 1);
}

#[tokio::test]
async fn rate_limit_storm_honours_retry_after_then_opens_the_breaker() {
    let server = instant().await;
    server.set_fault(Some(Fault::Status(429)));
    let breaker = BreakerConfig {
        window: Duration::from_secs(60),
        min_requests: 2,
        failure_rate: 0.5,
        cool_down: Duration::from_secs(30),
    };
    let mut policy = policy();
    policy.max_attempts = 2;
    let chain = Chain::new("cheap", vec![openai("only", &server, breaker)], policy);

    // Turn 1: two attempts, the second only after the mock's `Retry-After: 1`.
    let started = Instant::now();
    let err = chain.stream(&request("hi")).await.err().unwrap();
    assert_eq!((err.class(), err.code()), (ErrorClass::Retryable, "rate_limited"));
    assert_eq!(server.stats().requests, 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "retried before Retry-After: {:?}", started.elapsed());

    // Turn 2 waits out the cooling left by turn 1, fails again: two failed turns of two open the breaker.
    let started = Instant::now();
    chain.stream(&request("hi")).await.err().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    let requests = server.stats().requests;

    // Open: the next turn costs no request and no time.
    let started = Instant::now();
    let err = chain.stream(&request("hi again")).await.err().unwrap();
    assert!(matches!(err, LlmError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "{:?}", started.elapsed());
    assert_eq!(server.stats().requests, requests);
}

#[tokio::test]
async fn one_request_failing_every_retry_does_not_open_the_breaker() {
    let server = instant().await;
    let breaker = BreakerConfig {
        window: Duration::from_secs(60),
        min_requests: 2,
        failure_rate: 0.5,
        cool_down: Duration::from_secs(30),
    };
    let chain = Chain::new("cheap", vec![openai("only", &server, breaker)], policy());
    let err = chain.stream(&request("[[mock:fault=500]]")).await.err().unwrap();
    assert_eq!(err.code(), "server_error");
    assert_eq!(server.stats().requests, 4, "max_attempts on the only deployment");
    let answer = chain.stream(&request("an ordinary question")).await.unwrap();
    assert_eq!(answer.deployment, "only", "other requests are unaffected");
}

#[tokio::test]
async fn rate_limited_primary_is_skipped_while_cooling() {
    let (primary, fallback) = (instant().await, instant().await);
    primary.set_fault(Some(Fault::Status(429)));
    let chain = Chain::new(
        "cheap",
        vec![
            openai("primary", &primary, BreakerConfig::default()),
            gemini("fallback", &fallback, BreakerConfig::default()),
        ],
        policy(),
    );
    for _ in 0..3 {
        let started = Instant::now();
        let answer = chain.stream(&request("hi")).await.unwrap();
        assert_eq!(answer.deployment, "fallback");
        collect(answer.events).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500), "no waiting when another deployment can answer");
    }
    assert_eq!(primary.stats().requests, 1, "Retry-After: 1 keeps the primary out of picks");
    assert_eq!(fallback.stats().requests, 3);
}

#[tokio::test]
async fn breaker_half_opens_and_closes_when_the_primary_recovers() {
    let (primary, fallback) = (instant().await, instant().await);
    primary.set_fault(Some(Fault::Status(500)));
    let breaker = BreakerConfig {
        window: Duration::from_secs(60),
        min_requests: 2,
        failure_rate: 0.5,
        cool_down: Duration::from_millis(300),
    };
    let chain = Chain::new(
        "capable",
        vec![openai("primary", &primary, breaker.clone()), anthropic("fallback", &fallback, breaker)],
        policy(),
    );
    for _ in 0..4 {
        assert_eq!(chain.stream(&request("hi")).await.unwrap().deployment, "fallback");
    }
    assert_eq!(primary.stats().requests, 2, "open after two failures");
    primary.set_fault(None);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let answer = chain.stream(&request("hi")).await.unwrap();
    assert_eq!(answer.deployment, "primary", "the half-open probe");
    collect(answer.events).await.unwrap();
    assert_eq!(chain.stream(&request("hi")).await.unwrap().deployment, "primary", "closed again");
}

#[tokio::test]
async fn a_stall_before_the_first_token_fails_over_within_the_ttft_timeout() {
    let slow = mock::spawn(MockConfig { ttft: Duration::from_secs(30), ..MockConfig::instant() }).await.unwrap();
    let fallback = instant().await;
    let chain = Chain::new(
        "cheap",
        vec![openai("slow", &slow, BreakerConfig::default()), openai("fallback", &fallback, BreakerConfig::default())],
        policy(),
    );
    let started = Instant::now();
    let answer = chain.stream(&request("hi")).await.unwrap();
    assert_eq!(answer.deployment, "fallback");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_millis(1500), "{took:?}");
}

/// Every event of a committed answer, and its error.
async fn drain(answer: turnpike_llm::Answer) -> (String, Option<LlmError>) {
    let mut events = answer.events;
    let mut text = String::new();
    while let Some(item) = events.next().await {
        match item {
            Ok(LlmEvent::TextDelta(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => {
                assert!(events.next().await.is_none());
                return (text, Some(e));
            }
        }
    }
    (text, None)
}

#[tokio::test]
async fn a_cut_or_stall_after_the_first_text_is_interrupted_never_restarted() {
    let user = "Tell me a story.";
    for (fault, cause_code) in
        [(Fault::Cut, "stream_cut"), (Fault::Stall, "idle_timeout"), (Fault::ErrorEvent, "provider_error")]
    {
        let (primary, fallback) = (instant().await, instant().await);
        let full = collect(
            Chain::new("t", vec![openai("p", &primary, BreakerConfig::default())], policy())
                .stream(&request(user))
                .await
                .unwrap()
                .events,
        )
        .await
        .unwrap()
        .text;
        primary.set_fault(Some(fault));
        let chain = Chain::new(
            "t",
            vec![
                anthropic("primary", &primary, BreakerConfig::default()),
                openai("fallback", &fallback, BreakerConfig::default()),
            ],
            policy(),
        );
        let answer = chain.stream(&request(user)).await.unwrap();
        assert_eq!(answer.deployment, "primary");
        let (text, err) = drain(answer).await;
        let err = err.unwrap_or_else(|| panic!("{fault:?}: a broken stream must not end as a success"));
        match &err {
            LlmError::Interrupted { deployment, cause } => {
                assert_eq!((deployment.as_str(), cause.code()), ("primary", cause_code), "{fault:?}");
            }
            other => panic!("{fault:?}: expected Interrupted, got {other:?}"),
        }
        assert_eq!((err.class(), err.code()), (ErrorClass::Poison, "interrupted"), "never retried");
        assert!(!text.is_empty() && full.starts_with(&text) && text.len() < full.len(), "{fault:?}: {text:?}");
        assert_eq!(fallback.stats().requests, 0, "{fault:?}: the visible answer is not restarted elsewhere");
    }
}

#[tokio::test]
async fn configuration_errors_fail_over_without_further_passes() {
    let (primary, fallback) = (instant().await, instant().await);
    primary.set_fault(Some(Fault::Status(401)));
    let chain = Chain::new(
        "t",
        vec![
            openai("primary", &primary, BreakerConfig::default()),
            openai("fallback", &fallback, BreakerConfig::default()),
        ],
        policy(),
    );
    assert_eq!(chain.stream(&request("hi")).await.unwrap().deployment, "fallback");

    // Every deployment refusing the key: the fatal error comes back after one attempt each, no passes.
    fallback.set_fault(Some(Fault::Status(401)));
    let err = chain.stream(&request("hi")).await.err().unwrap();
    assert_eq!((err.class(), err.code()), (ErrorClass::Fatal, "unauthorized"));
    assert_eq!((primary.stats().requests, fallback.stats().requests), (2, 2));
}

/// The outage switch of a mock in another process (the chaos tool's provider faults): `PUT /mock/fault`.
#[tokio::test]
async fn a_mock_process_is_taken_down_and_back_over_http() {
    let (primary, fallback) = (instant().await, instant().await);
    let chain = Chain::new(
        "cheap",
        vec![
            openai("primary", &primary, BreakerConfig::default()),
            openai("fallback", &fallback, BreakerConfig::default()),
        ],
        policy(),
    );
    let http = reqwest::Client::new();
    let url = format!("http://{}/mock/fault", primary.addr());
    let put = |body: &'static str| http.put(&url).body(body).send();
    assert_eq!(put("bogus").await.unwrap().status(), 400, "an unknown fault is refused");
    assert_eq!(put("503").await.unwrap().status(), 200);
    let answer = chain.stream(&request("Where is my parcel?")).await.unwrap();
    assert_eq!(answer.deployment, "fallback", "the primary is down");
    collect(answer.events).await.unwrap();
    assert_eq!(put("none").await.unwrap().status(), 200);
    let answer = chain.stream(&request("And my invoice?")).await.unwrap();
    assert_eq!(answer.deployment, "primary", "the primary answers again once cleared");
    collect(answer.events).await.unwrap();
}

#[tokio::test]
async fn a_provider_failing_a_share_of_its_requests_is_carried_by_the_chain() {
    // The load-test mock's luck: 40% of the primary's requests answered 503, drawn per request.
    let variation = mock::vary::Variation { unavailable_ppm: 400_000, ..Default::default() };
    let flaky = mock::spawn(MockConfig { variation, ..MockConfig::instant() }).await.unwrap();
    let steady = instant().await;
    let breaker = BreakerConfig::default();
    let chain = Chain::new(
        "cheap",
        vec![openai("flaky", &flaky, breaker.clone()), openai("steady", &steady, breaker)],
        policy(),
    );
    let mut served = std::collections::HashMap::new();
    for i in 0..30 {
        let answer = chain.stream(&request(&format!("Where is parcel {i}?"))).await.unwrap();
        *served.entry(answer.deployment.clone()).or_insert(0) += 1;
        let reply = collect(answer.events).await.unwrap();
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"), "every reply whole");
        assert!(reply.usage.is_some_and(|u| u.output_tokens == 40));
    }
    assert!(served.get("flaky").is_some_and(|n| *n > 0), "the primary answered its lucky requests: {served:?}");
    assert!(served.get("steady").is_some_and(|n| *n > 0), "the fallback carried the failed ones: {served:?}");
    assert!(flaky.stats().requests > served["flaky"], "some of the primary's requests failed");
}
