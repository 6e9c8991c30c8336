//! The Anthropic and Gemini clients against the mock speaking their wire formats: the same request gives
//! the same text, finish and usage in all three formats; every scripted fault maps to the same error
//! class whatever the format (plus Anthropic's 529 `overloaded`).

use std::time::Duration;

use futures::StreamExt;
use turnpike_core::{Classify, ErrorClass};
use turnpike_llm::mock::{self, MockConfig, MockServer};
use turnpike_llm::{
    collect, AnthropicClient, ChatMessage, ChatRequest, ClientConfig, GeminiClient, LlmError, LlmEvent, LlmProvider,
    OpenAiClient, Usage,
};

fn cfg(base: String) -> ClientConfig {
    let mut cfg = ClientConfig::new(base);
    cfg.ttft_timeout = Duration::from_secs(5);
    cfg.idle_timeout = Duration::from_millis(300);
    cfg
}

/// One client per format, all pointed at `server`.
fn clients(server: &MockServer) -> Vec<LlmProvider> {
    vec![
        OpenAiClient::new(cfg(server.base_url())).unwrap().into(),
        LlmProvider::Anthropic(AnthropicClient::new(cfg(server.root_url())).unwrap()),
        LlmProvider::Gemini(GeminiClient::new(cfg(server.root_url())).unwrap()),
    ]
}

fn request(user: &str) -> ChatRequest {
    ChatRequest::new("mock-1", vec![ChatMessage::system("You are terse."), ChatMessage::user(user)])
}

/// Events before the failure and the failure, from `stream()` itself or from the stream.
async fn failure(client: &LlmProvider, user: &str) -> (Vec<LlmEvent>, LlmError) {
    let mut stream = match client.stream(&request(user)).await {
        Ok(stream) => stream,
        Err(e) => return (Vec::new(), e),
    };
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(e) => {
                assert!(stream.next().await.is_none(), "nothing may follow an error");
                return (events, e);
            }
        }
    }
    panic!("{} stream for {user:?} ended without an error: {events:?}", client.name());
}

#[tokio::test]
async fn every_format_streams_the_same_reply_with_usage() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let user = "Tell me about the harbour.";
    let input_words = ("You are terse. ".to_owned() + user).split_whitespace().count() as u32;
    let mut texts = Vec::new();
    for client in clients(&server) {
        let reply = collect(client.stream(&request(user)).await.unwrap()).await.unwrap();
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"), "{}", client.name());
        assert_eq!(
            reply.usage,
            Some(Usage { input_tokens: input_words, output_tokens: 40, cached_input_tokens: 0 }),
            "{}",
            client.name()
        );
        texts.push(reply.text);
    }
    assert_eq!(texts[0].split_whitespace().count(), 40);
    assert!(texts.iter().all(|t| *t == texts[0]), "{texts:?}");

    // max_tokens is honoured and reported as "length" in every format.
    for client in clients(&server) {
        let mut req = request("[[mock:reply=one two three four]]");
        req.max_tokens = Some(2);
        let reply = collect(client.stream(&req).await.unwrap()).await.unwrap();
        assert_eq!((reply.text.as_str(), reply.finish_reason.as_deref()), ("one two", Some("length")));
    }
    assert_eq!(server.stats().requests, 6);
}

#[tokio::test]
async fn faults_map_to_the_same_classes_in_every_format() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let cases = [
        ("[[mock:fault=500]]", ErrorClass::Retryable, "server_error", 0),
        ("[[mock:fault=503]]", ErrorClass::Retryable, "server_error", 0),
        ("[[mock:fault=529]]", ErrorClass::Retryable, "overloaded", 0),
        ("[[mock:fault=429]]", ErrorClass::Retryable, "rate_limited", 0),
        ("[[mock:fault=401]]", ErrorClass::Fatal, "unauthorized", 0),
        ("[[mock:fault=404]]", ErrorClass::Fatal, "not_found", 0),
        ("[[mock:fault=cut]]", ErrorClass::Retryable, "stream_cut", 3),
        ("[[mock:fault=stall]]", ErrorClass::Retryable, "idle_timeout", 2),
        ("[[mock:fault=error_event]]", ErrorClass::Retryable, "provider_error", 2),
        ("[[mock:fault=malformed]]", ErrorClass::Retryable, "malformed_chunk", 2),
    ];
    for client in clients(&server) {
        for (user, class, code, deltas_before) in cases {
            let (events, err) = failure(&client, user).await;
            let who = format!("{} {user}: {err}", client.name());
            assert_eq!((err.class(), err.code()), (class, code), "{who}");
            assert_eq!(events.len(), deltas_before, "{who}: {events:?}");
            assert!(events.iter().all(|e| matches!(e, LlmEvent::TextDelta(_))), "{who}: {events:?}");
        }
        // Header for OpenAI and Anthropic, RetryInfo.retryDelay for Gemini: the same hint.
        let (_, err) = failure(&client, "[[mock:fault=429]]").await;
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)), "{}", client.name());
    }
    let anthropic = &clients(&server)[1];
    let (_, err) = failure(anthropic, "[[mock:fault=error_event]]").await;
    assert_eq!(err, LlmError::Provider { kind: "overloaded_error".into(), message: "Overloaded".into() });
    let (_, err) = failure(anthropic, "[[mock:fault=529]]").await;
    assert!(matches!(&err, LlmError::Http { status: 529, provider_code: Some(c), .. } if c == "overloaded_error"));
    let gemini = &clients(&server)[2];
    let (_, err) = failure(gemini, "[[mock:fault=error_event]]").await;
    assert!(matches!(&err, LlmError::Provider { kind, .. } if kind == "UNAVAILABLE"), "{err:?}");
}

#[tokio::test]
async fn a_server_wide_outage_overrides_scripts_until_cleared() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    server.set_fault(Some(mock::script::Fault::Status(503)));
    for client in clients(&server) {
        let (_, err) = failure(&client, "[[mock:reply=fine]]").await;
        assert_eq!(err.code(), "server_error", "{}", client.name());
    }
    server.set_fault(None);
    for client in clients(&server) {
        let reply = collect(client.stream(&request("[[mock:reply=fine]]")).await.unwrap()).await.unwrap();
        assert_eq!(reply.text, "fine");
    }
}

#[tokio::test]
async fn api_keys_are_never_printed() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let key = turnpike_llm::ApiKey::new("sk-ant-super-secret");
    let anthropic = AnthropicClient::new(cfg(server.root_url()).with_api_key(key.clone())).unwrap();
    let gemini = GeminiClient::new(cfg(server.root_url()).with_api_key(key)).unwrap();
    let printed = format!("{anthropic:?} {gemini:?}");
    assert!(!printed.contains("super-secret"), "{printed}");
    // The key header does not stop the mock from answering.
    let reply = collect(LlmProvider::Anthropic(anthropic).stream(&request("[[mock:reply=ok]]")).await.unwrap());
    assert_eq!(reply.await.unwrap().text, "ok");
}

#[tokio::test]
async fn tool_calls_round_trip_in_every_format() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let tool = turnpike_llm::ToolSpec {
        name: "lookup_order".into(),
        description: "Looks an order up by its number.".into(),
        parameters: serde_json::json!({"type": "object", "properties": {"order": {"type": "string"}}}),
    };
    for client in clients(&server) {
        let mut req = request(r#"Where is my order? [[mock:tool=lookup_order {"order":"42"}]]"#);
        req.tools.push(tool.clone());
        let first = collect(client.stream(&req).await.unwrap()).await.unwrap();
        let who = client.name();
        assert_eq!((first.text.as_str(), first.finish_reason.as_deref()), ("", Some("tool_calls")), "{who}");
        assert_eq!(first.tool_calls.len(), 1, "{who}");
        let call = first.tool_calls[0].clone();
        assert_eq!(call.name, "lookup_order", "{who}");
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(args, serde_json::json!({"order": "42"}), "{who}");
        assert!(first.usage.is_some(), "{who}: tool-call replies are costed too");

        req.messages.push(ChatMessage::assistant_tool_calls("", vec![call.clone()]));
        req.messages.push(ChatMessage::tool_result(call.id.clone(), "in transit, arriving Friday"));
        let second = collect(client.stream(&req).await.unwrap()).await.unwrap();
        assert_eq!(second.text, "Tool result: in transit, arriving Friday", "{who}");
        assert_eq!(second.finish_reason.as_deref(), Some("stop"), "{who}");
        assert!(second.tool_calls.is_empty(), "{who}");
    }
}
