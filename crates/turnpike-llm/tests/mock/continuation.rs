//! Continuation requests against the mock in every wire format: whatever point a reply was cut at, the
//! continuation streams exactly the rest, so the text shown plus the continuation is the uninterrupted
//! reply byte for byte; a chain sends continuations only to deployments that can continue.

use std::time::Duration;

use futures::StreamExt;
use turnpike_core::{Classify, ErrorClass};
use turnpike_llm::breaker::BreakerConfig;
use turnpike_llm::mock::{self, MockConfig, MockServer};
use turnpike_llm::{
    collect, AnthropicClient, Chain, ChatMessage, ChatRequest, ClientConfig, ContinuationStyle, Deployment,
    GeminiClient, LlmError, LlmEvent, LlmProvider, OpenAiClient, RetryPolicy,
};

fn cfg(base: String) -> ClientConfig {
    let mut cfg = ClientConfig::new(base);
    cfg.ttft_timeout = Duration::from_secs(5);
    cfg.idle_timeout = Duration::from_millis(500);
    cfg
}

/// Every client that can continue, each pointed at `server`.
fn continuing_clients(server: &MockServer) -> Vec<(&'static str, LlmProvider)> {
    let openai = |style| OpenAiClient::new(cfg(server.base_url())).unwrap().with_continuation(style).into();
    vec![
        ("openai vllm", openai(ContinuationStyle::Vllm)),
        ("openai prefix", openai(ContinuationStyle::Prefix)),
        ("anthropic", LlmProvider::Anthropic(AnthropicClient::new(cfg(server.root_url())).unwrap())),
        ("gemini", LlmProvider::Gemini(GeminiClient::new(cfg(server.root_url())).unwrap())),
    ]
}

const QUESTION: &str = "Where is my parcel?";

fn request(user: &str) -> ChatRequest {
    ChatRequest::new("mock-1", vec![ChatMessage::system("You are terse."), ChatMessage::user(user)])
}

#[tokio::test]
async fn a_continuation_in_every_format_streams_exactly_the_rest_of_the_reply() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let full = mock::text::generate(MockConfig::default().seed, QUESTION, 40).concat();
    // Cut points: after a word, on the space after it (Anthropic's prefill loses that space), inside a
    // word, after a sentence and the space after it, and the whole reply (nothing left to write).
    let word_end = full.find(' ').unwrap();
    let sentence_end = full.find(". ").unwrap() + 1;
    let cuts = [word_end, word_end + 1, word_end + 3, sentence_end, sentence_end + 1, full.len()];
    for (name, client) in continuing_clients(&server) {
        assert!(client.can_continue(), "{name}");
        for cut in cuts {
            let shown = &full[..cut];
            let reply = collect(client.stream(&request(QUESTION).continuing(shown)).await.unwrap()).await.unwrap();
            assert_eq!(format!("{shown}{}", reply.text), full, "{name}, cut after {shown:?}");
            assert_eq!(reply.finish_reason.as_deref(), Some("stop"), "{name}");
        }
    }
}

#[tokio::test]
async fn a_prefill_ending_in_whitespace_is_refused_as_anthropic_does_so_the_client_trims_it() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.root_url()))
        .json(&serde_json::json!({"model": "m", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "The "}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(raw.text().await.unwrap().contains("trailing whitespace"));
    // The same text through the client: accepted, and the whitespace is not doubled.
    let client = AnthropicClient::new(cfg(server.root_url())).unwrap();
    let full = mock::text::generate(MockConfig::default().seed, QUESTION, 40).concat();
    let shown = &full[..=full.find(' ').unwrap()];
    let reply = collect(client.stream(&request(QUESTION).continuing(shown)).await.unwrap()).await.unwrap();
    assert_eq!(format!("{shown}{}", reply.text), full);
}

#[tokio::test]
async fn an_openai_server_not_configured_to_continue_is_never_sent_a_continuation() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let plain = OpenAiClient::new(cfg(server.base_url())).unwrap();
    assert!(!LlmProvider::from(plain.clone()).can_continue());
    let err = plain.stream(&request(QUESTION).continuing("The")).await.err().unwrap();
    assert!(matches!(err, LlmError::Config(_)), "{err:?}");
    assert_eq!(server.stats().requests, 0);
    // Without the flags, a trailing assistant message asks an OpenAI server for a new reply after it: the
    // mock answers the question afresh, as OpenAI would, not the rest.
    let mut req = request(QUESTION);
    req.messages.push(ChatMessage::assistant("The"));
    let fresh = collect(plain.stream(&req).await.unwrap()).await.unwrap();
    assert_eq!(fresh.text, mock::text::generate(MockConfig::default().seed, QUESTION, 40).concat());
}

#[tokio::test]
async fn a_chain_sends_a_continuation_only_where_it_can_continue() {
    let plain_server = mock::spawn(MockConfig::instant()).await.unwrap();
    let claude_server = mock::spawn(MockConfig::instant()).await.unwrap();
    let plain = || {
        Deployment::new(
            "plain",
            "gpt-4o-mini",
            OpenAiClient::new(cfg(plain_server.base_url())).unwrap().into(),
            BreakerConfig::default(),
        )
    };
    let claude = Deployment::new(
        "claude",
        "claude-sonnet-4",
        LlmProvider::Anthropic(AnthropicClient::new(cfg(claude_server.root_url())).unwrap()),
        BreakerConfig::default(),
    );
    let chain = Chain::new("cheap", vec![plain(), claude], RetryPolicy::default());
    assert!(chain.can_continue());
    let full = mock::text::generate(MockConfig::default().seed, QUESTION, 40).concat();
    let answer = chain.stream(&request(QUESTION).continuing(&full[..10])).await.unwrap();
    assert_eq!(answer.deployment, "claude");
    let rest = collect(answer.events).await.unwrap();
    assert_eq!(format!("{}{}", &full[..10], rest.text), full);
    assert_eq!((plain_server.stats().requests, claude_server.stats().requests), (0, 1));

    // No deployment can continue: refused at once, nothing sent.
    let only_plain = Chain::new("cheap", vec![plain()], RetryPolicy::default());
    assert!(!only_plain.can_continue());
    let err = only_plain.stream(&request(QUESTION).continuing("The")).await.err().unwrap();
    assert!(matches!(&err, LlmError::Unavailable(m) if m.contains("can continue")), "{err:?}");
    assert_eq!(plain_server.stats().requests, 0);
    // A request that is not a continuation still goes to the first deployment.
    assert_eq!(only_plain.stream(&request(QUESTION)).await.unwrap().deployment, "plain");
}

#[tokio::test]
async fn cut_once_cuts_a_new_reply_and_answers_its_continuation_whole() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let question = "Where is my parcel? [[mock:fault=cut_once]]";
    let full = mock::text::generate(MockConfig::default().seed, question, 40).concat();
    for (name, client) in continuing_clients(&server) {
        let mut stream = client.stream(&request(question)).await.unwrap();
        let mut shown = String::new();
        let err = loop {
            match stream.next().await.expect("the stream ends with an error") {
                Ok(LlmEvent::TextDelta(t)) => shown.push_str(&t),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!((err.class(), err.code()), (ErrorClass::Retryable, "stream_cut"), "{name}");
        assert_eq!(shown.split_whitespace().count(), 3, "{name}: {shown:?}");
        let rest = collect(client.stream(&request(question).continuing(&shown)).await.unwrap()).await.unwrap();
        assert_eq!(format!("{shown}{}", rest.text), full, "{name}");
    }
    // `cut` cuts continuations too.
    let client = &continuing_clients(&server)[0].1;
    let mut stream = client.stream(&request("Hi [[mock:fault=cut]]").continuing("Quiet")).await.unwrap();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        failed |= item.is_err();
    }
    assert!(failed, "a continuation under `cut` was not cut");
}

#[tokio::test]
async fn the_mocks_this_process_serves_are_known_by_their_base_url() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let url = server.base_url();
    assert!(mock::serves_in_process(&url));
    assert!(mock::serves_in_process(&format!("{url}/")));
    assert!(!mock::serves_in_process(&server.root_url()), "the OpenAI base URL only");
    drop(server);
    assert!(!mock::serves_in_process(&url));
}

/// A continuation after a cut goes first to a deployment other than the one that cut the reply: a provider
/// cutting every stream would otherwise cut each continuation too, until the reply ends in an apology.
#[tokio::test]
async fn a_continuation_tries_the_deployment_that_cut_the_reply_last() {
    let (primary, secondary) =
        (mock::spawn(MockConfig::instant()).await.unwrap(), mock::spawn(MockConfig::instant()).await.unwrap());
    primary.set_fault(Some(turnpike_llm::mock::script::Fault::Cut));
    let deployment = |name: &str, server: &MockServer| {
        let client = OpenAiClient::new(cfg(server.base_url())).unwrap().with_continuation(ContinuationStyle::Vllm);
        Deployment::new(name, "mock-1", client.into(), BreakerConfig::default())
    };
    let chain = Chain::new(
        "cheap",
        vec![deployment("primary", &primary), deployment("secondary", &secondary)],
        RetryPolicy::default(),
    );
    let full = mock::text::generate(MockConfig::default().seed, QUESTION, 40).concat();
    let shown = &full[..full.find(". ").unwrap() + 1];
    let mut req = request(QUESTION).continuing(shown);
    // Without the hint, chain order: the primary (which cuts again).
    assert_eq!(chain.stream(&req).await.unwrap().deployment, "primary");
    req.cut_on = Some("primary".into());
    let answer = chain.stream(&req).await.unwrap();
    assert_eq!(answer.deployment, "secondary", "the deployment that cut the reply is tried last");
    let reply = collect(answer.events).await.unwrap();
    assert_eq!(format!("{shown}{}", reply.text), full, "continued whole by the secondary");
}
