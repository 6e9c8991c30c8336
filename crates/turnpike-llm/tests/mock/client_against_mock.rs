//! The OpenAI client against the mock server on an ephemeral port: the happy path, every scripted fault
//! and its error class, timeouts, request accounting and many concurrent streams.

use std::time::{Duration, Instant};

use futures::StreamExt;
use turnpike_core::{Classify, ErrorClass};
use turnpike_llm::mock::{self, MockConfig, MockServer, MockStats};
use turnpike_llm::{collect, ChatMessage, ChatRequest, LlmError, LlmEvent, LlmProvider, OpenAiClient, OpenAiConfig};

fn config(server: &MockServer) -> OpenAiConfig {
    let mut cfg = OpenAiConfig::new(server.base_url());
    cfg.ttft_timeout = Duration::from_secs(5);
    cfg.idle_timeout = Duration::from_secs(5);
    cfg
}

async fn setup(mock_cfg: MockConfig) -> (MockServer, OpenAiClient) {
    let server = mock::spawn(mock_cfg).await.unwrap();
    let client = OpenAiClient::new(config(&server)).unwrap();
    (server, client)
}

fn request(user: &str) -> ChatRequest {
    ChatRequest::new("mock-1", vec![ChatMessage::system("You are terse."), ChatMessage::user(user)])
}

/// Events received before the failure, and the failure (from `stream()` itself or from the stream).
async fn failure(client: &OpenAiClient, user: &str) -> (Vec<LlmEvent>, LlmError) {
    let stream = match client.stream(&request(user)).await {
        Ok(stream) => stream,
        Err(e) => return (Vec::new(), e),
    };
    let mut stream = std::pin::pin!(stream);
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
    panic!("stream for {user:?} ended without an error: {events:?}");
}

#[tokio::test]
async fn streamed_text_equals_non_streamed_text() {
    let (server, client) = setup(MockConfig::instant()).await;
    let user = "Tell me about the harbour.";

    let stream = client.stream(&request(user)).await.unwrap();
    let events: Vec<_> = stream.collect().await;
    let events: Vec<LlmEvent> = events.into_iter().map(Result::unwrap).collect();
    let deltas = events.iter().filter(|e| matches!(e, LlmEvent::TextDelta(_))).count();
    assert_eq!(deltas, 40, "one delta per token, 40 by default");
    assert!(matches!(&events[deltas], LlmEvent::Finish { reason } if reason == "stop"), "{events:?}");
    let input_words = ("You are terse. ".to_owned() + user).split_whitespace().count() as u32;
    assert_eq!(
        events[deltas + 1],
        LlmEvent::Usage { input_tokens: input_words, output_tokens: 40, cached_input_tokens: 0 }
    );
    assert_eq!(events.len(), deltas + 2);
    let streamed: String =
        events.iter().filter_map(|e| if let LlmEvent::TextDelta(t) = e { Some(t.as_str()) } else { None }).collect();

    let body = serde_json::json!({
        "model": "mock-1",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": user}],
    });
    let plain: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["choices"][0]["message"]["content"].as_str(), Some(streamed.as_str()));
    assert_eq!(plain["choices"][0]["finish_reason"], "stop");
    assert_eq!(plain["usage"]["completion_tokens"], 40);
    assert_eq!(server.stats().requests, 2);

    // Same seed and prompt, same words: a second streamed call through the provider enum agrees.
    let provider = LlmProvider::from(client);
    let again = collect(provider.stream(&request(user)).await.unwrap()).await.unwrap();
    assert_eq!(again.text, streamed);
}

#[tokio::test]
async fn scripted_reply_and_max_tokens() {
    let (_server, client) = setup(MockConfig::instant()).await;
    let reply = collect(client.stream(&request("[[mock:reply=Hello there,  friend!]]")).await.unwrap()).await.unwrap();
    assert_eq!(reply.text, "Hello there,  friend!");
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert_eq!(reply.usage.map(|u| u.output_tokens), Some(3));

    let mut req = request("[[mock:reply=one two three four five]]");
    req.max_tokens = Some(2);
    let reply = collect(client.stream(&req).await.unwrap()).await.unwrap();
    assert_eq!(reply.text, "one two");
    assert_eq!(reply.finish_reason.as_deref(), Some("length"));
}

#[tokio::test]
async fn faults_map_to_error_classes() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let mut cfg = config(&server);
    cfg.idle_timeout = Duration::from_millis(300);
    let client = OpenAiClient::new(cfg).unwrap();

    let cases = [
        ("[[mock:fault=500]]", ErrorClass::Retryable, "server_error", 0),
        ("[[mock:fault=503]]", ErrorClass::Retryable, "server_error", 0),
        ("[[mock:fault=429]]", ErrorClass::Retryable, "rate_limited", 0),
        ("[[mock:fault=400]]", ErrorClass::Fatal, "bad_request", 0),
        ("[[mock:fault=401]]", ErrorClass::Fatal, "unauthorized", 0),
        ("[[mock:fault=403]]", ErrorClass::Fatal, "forbidden", 0),
        ("[[mock:fault=404]]", ErrorClass::Fatal, "not_found", 0),
        ("[[mock:fault=cut]]", ErrorClass::Retryable, "stream_cut", 3),
        ("[[mock:fault=stall]]", ErrorClass::Retryable, "idle_timeout", 2),
        ("[[mock:fault=error_event]]", ErrorClass::Retryable, "provider_error", 2),
        ("[[mock:fault=malformed]]", ErrorClass::Retryable, "malformed_chunk", 2),
    ];
    for (user, class, code, deltas_before) in cases {
        let (events, err) = failure(&client, user).await;
        assert_eq!((err.class(), err.code()), (class, code), "{user}: {err}");
        assert_eq!(events.len(), deltas_before, "{user}: {events:?}");
        assert!(events.iter().all(|e| matches!(e, LlmEvent::TextDelta(_))), "{user}: {events:?}");
    }

    let (_, err) = failure(&client, "[[mock:fault=429]]").await;
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    let (_, err) = failure(&client, "[[mock:fault=error_event]]").await;
    assert_eq!(err, LlmError::Provider { kind: "server_error".into(), message: "overloaded".into() });
}

#[tokio::test]
async fn ttft_timeout_fires_when_first_token_is_late() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let mut cfg = config(&server);
    cfg.ttft_timeout = Duration::from_millis(200);
    let client = OpenAiClient::new(cfg).unwrap();

    let started = Instant::now();
    let (events, err) = failure(&client, "[[mock:ttft=1500]] hello").await;
    assert!(events.is_empty());
    assert_eq!(err, LlmError::TtftTimeout(Duration::from_millis(200)));
    assert_eq!((err.class(), err.code()), (ErrorClass::Retryable, "ttft_timeout"));
    assert!(started.elapsed() < Duration::from_millis(1000), "took {:?}", started.elapsed());

    // Within the limit it is just a slow start.
    let reply = collect(client.stream(&request("[[mock:ttft=50]] hello")).await.unwrap()).await.unwrap();
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = OpenAiClient::new(OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"))).unwrap();
    let err = client.stream(&request("hi")).await.err().unwrap();
    assert_eq!((err.class(), err.code()), (ErrorClass::Retryable, "connect"), "{err}");
}

#[tokio::test]
async fn headers_script_too_and_stats_count_requests() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let http = reqwest::Client::new();
    let stats = || async {
        http.get(format!("http://{}/mock/stats", server.addr()))
            .send()
            .await
            .unwrap()
            .json::<MockStats>()
            .await
            .unwrap()
    };
    assert_eq!(stats().await, MockStats { requests: 0, streams_open: 0, tool_calls: 0, summaries: 0 });
    let health = http.get(format!("http://{}/healthz", server.addr())).send().await.unwrap();
    assert!(health.status().is_success());

    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/chat/completions", server.base_url());
    let resp = http.post(&url).header("x-mock-fault", "500").json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let resp = http.post(&url).header("x-mock-reply", "from a header").json(&body).send().await.unwrap();
    let resp: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(resp["choices"][0]["message"]["content"], "from a header");
    assert_eq!(stats().await.requests, 2);

    // A stalled stream abandoned by its client is closed on the server side too.
    let mut cfg = config(&server);
    cfg.idle_timeout = Duration::from_millis(100);
    let client = OpenAiClient::new(cfg).unwrap();
    let (_, err) = failure(&client, "[[mock:fault=stall]]").await;
    assert_eq!(err.code(), "idle_timeout");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stats().streams_open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.stats(), MockStats { requests: 3, streams_open: 0, tool_calls: 0, summaries: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams() {
    const STREAMS: usize = 1000;
    // A first token late enough that all streams overlap even while the 2 cores are busy opening connections.
    let ttft = Duration::from_millis(1500);
    let cfg = MockConfig { ttft, tokens_per_sec: 100, reply_tokens: 10, ..MockConfig::instant() };
    let (server, client) = setup(cfg).await;
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { collect(client.stream(&request(&format!("question {i}"))).await?).await })
        })
        .collect();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tasks.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        peak = peak.max(server.stats().streams_open);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in tasks {
        let reply = task.await.unwrap().unwrap();
        assert_eq!(reply.usage.map(|u| u.output_tokens), Some(10));
    }
    eprintln!("peak concurrent streams: {peak}");
    assert!(peak as usize > STREAMS / 2, "only {peak} streams were open at once");
    assert_eq!(server.stats().requests, STREAMS as u64);
}

#[tokio::test]
async fn mock_speaks_the_openai_wire_format() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.base_url());
    let body = |include_usage: bool| {
        serde_json::json!({
            "model": "gpt-mock",
            "messages": [{"role": "user", "content": "[[mock:reply=Hi there]]"}],
            "stream": true,
            "stream_options": {"include_usage": include_usage},
        })
    };
    let resp = http.post(&url).json(&body(true)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(frames.len(), 5, "{text}");
    assert!(frames[0].starts_with(r#"data: {"id":"chatcmpl-mock-1","object":"chat.completion.chunk","created":"#));
    assert!(frames[0].ends_with(
        r#""model":"gpt-mock","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}"#
    ));
    assert!(frames[1].contains(r#""delta":{"content":" there"},"logprobs":null,"finish_reason":null}]"#));
    assert!(frames[2]
        .contains(r#""choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#));
    assert!(frames[3].contains(r#""choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4,"#));
    assert_eq!(frames[4], "data: [DONE]");

    let text = http.post(&url).json(&body(false)).send().await.unwrap().text().await.unwrap();
    assert_eq!(text.split_terminator("\n\n").count(), 4, "no usage chunk without include_usage: {text}");
    assert!(!text.contains("usage"), "{text}");
}

#[tokio::test]
async fn recall_answers_from_the_context_and_summary_requests_get_a_digest() {
    let (_server, client) = setup(MockConfig::instant()).await;
    let req = ChatRequest::new(
        "mock-1",
        vec![
            ChatMessage::system("Never make promises about refunds."),
            ChatMessage::system("Commitments:\n- We will refund within 3 days of receiving your order."),
            ChatMessage::user("My parcel is late [[mock:reply=a refund directive is not context]]."),
            ChatMessage::assistant("Sorry about that."),
            ChatMessage::user("What did you promise about my refund? [[mock:recall=refund]]"),
        ],
    );
    let reply = collect(client.stream(&req).await.unwrap()).await.unwrap();
    assert_eq!(reply.text, "We will refund within 3 days of receiving your order.");

    let summary = ChatRequest::new(
        "mock-1",
        vec![
            ChatMessage::system("You summarise."),
            ChatMessage::user("<conversation>\nUser: I am Ana. [[mock:fault=500]] Long story.\nAssistant: Hello Ana!\n</conversation>"),
            ChatMessage::user(format!("{} please.", mock::SUMMARY_REQUEST_PREFIX)),
        ],
    );
    let reply = collect(client.stream(&summary).await.unwrap()).await.unwrap();
    assert_eq!(reply.text, "User: I am Ana.\nAssistant: Hello Ana!", "directives in the data are not obeyed");
}
