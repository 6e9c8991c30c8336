//! The tool loop against the mock LLM (all three formats) and a real HTTP tool server: the model's call
//! reaches the tool, its result reaches the model, errors go back to the model instead of failing the
//! turn, rounds are capped, and a redelivered turn does not repeat the tool's side effect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use turnpike_llm::breaker::BreakerConfig;
use turnpike_llm::mock::{self, MockConfig, MockServer};
use turnpike_llm::tools::{stream_with_tools, HttpToolConfig, ToolRunner};
use turnpike_llm::{
    collect, AnthropicClient, Chain, ChatMessage, ChatRequest, ClientConfig, Deployment, GeminiClient, LlmProvider,
    OpenAiClient, RetryPolicy,
};

#[derive(Default)]
struct ToolServer {
    calls: AtomicU64,
    keys: Mutex<Vec<String>>,
}

/// An order-lookup tool (POST), a slow one and a verbose one (GET).
async fn tool_server() -> (String, Arc<ToolServer>) {
    let state = Arc::new(ToolServer::default());
    let s = Arc::clone(&state);
    let app = Router::new()
        .route(
            "/lookup",
            post(move |headers: HeaderMap, Json(args): Json<serde_json::Value>| {
                let s = Arc::clone(&s);
                async move {
                    s.calls.fetch_add(1, Ordering::SeqCst);
                    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    s.keys.lock().unwrap().push(key.to_owned());
                    format!("order {} in transit", args["order"].as_str().unwrap_or("?"))
                }
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/verbose", get(|| async { "x".repeat(10_000) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

fn tool(name: &str, url: String, method: &str) -> HttpToolConfig {
    HttpToolConfig {
        name: name.into(),
        description: format!("{name} tool"),
        url,
        method: method.into(),
        parameters: serde_json::json!({"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}),
        timeout_ms: Some(300),
        max_result_bytes: Some(100),
    }
}

fn runner(base: &str, max_rounds: u32) -> Arc<ToolRunner> {
    let tools = vec![
        tool("lookup_order", format!("{base}/lookup"), "POST"),
        tool("slow", format!("{base}/slow"), "POST"),
        tool("verbose", format!("{base}/verbose"), "GET"),
    ];
    Arc::new(ToolRunner::new(tools, max_rounds).unwrap())
}

fn chains(server: &MockServer) -> Vec<Arc<Chain>> {
    let cfg = |base: String| ClientConfig::new(base);
    let providers: Vec<LlmProvider> = vec![
        OpenAiClient::new(cfg(server.base_url())).unwrap().into(),
        LlmProvider::Anthropic(AnthropicClient::new(cfg(server.root_url())).unwrap()),
        LlmProvider::Gemini(GeminiClient::new(cfg(server.root_url())).unwrap()),
    ];
    providers
        .into_iter()
        .map(|p| {
            let dep = Deployment::new(p.name(), "m", p, BreakerConfig::default());
            Arc::new(Chain::new("t", vec![dep], RetryPolicy::default()))
        })
        .collect()
}

fn request(user: &str) -> ChatRequest {
    ChatRequest::new("m", vec![ChatMessage::system("You help with orders."), ChatMessage::user(user)])
}

#[tokio::test]
async fn the_model_calls_the_tool_and_answers_with_its_result_in_every_format() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let (base, tools) = tool_server().await;
    let runner = runner(&base, 3);
    for (i, chain) in chains(&server).into_iter().enumerate() {
        let req = request(r#"Where is order 42? [[mock:tool=lookup_order {"order":"42"}]]"#);
        let answer = stream_with_tools(chain, Arc::clone(&runner), req, format!("turn-{i}"), None).await.unwrap();
        let reply = collect(answer.events).await.unwrap();
        assert_eq!(reply.text, "Tool result: order 42 in transit", "{}", answer.provider);
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
        assert!(reply.tool_calls.is_empty(), "tool calls are consumed by the loop");
    }
    assert_eq!(tools.calls.load(Ordering::SeqCst), 3);
    let keys = tools.keys.lock().unwrap().clone();
    assert!(keys.iter().all(|k| k.starts_with("turn-") && k.contains(":lookup_order:")), "{keys:?}");
}

#[tokio::test]
async fn tool_failures_go_back_to_the_model_and_rounds_are_capped() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let (base, _) = tool_server().await;
    let chain = chains(&server).remove(0);
    let ask = |script: &str| request(&format!("Help [[mock:tool={script}]]"));
    let text = |runner: Arc<ToolRunner>, script: &str| {
        let (chain, req) = (Arc::clone(&chain), ask(script));
        async move { collect(stream_with_tools(chain, runner, req, "t".into(), None).await.unwrap().events).await.unwrap() }
    };
    let r = runner(&base, 3);
    assert_eq!(text(r.clone(), r#"nope {"order":"1"}"#).await.text, r#"Tool result: {"error":"no tool named nope"}"#);
    assert_eq!(
        text(r.clone(), r#"lookup_order {"id":"1"}"#).await.text,
        r#"Tool result: {"error":"missing argument order"}"#
    );
    let slow = text(r.clone(), r#"slow {"order":"1"}"#).await.text;
    assert!(slow.contains("timed out"), "{slow}");
    let verbose = text(r.clone(), r#"verbose {"order":"1"}"#).await.text;
    assert!(verbose.ends_with("[truncated]") && verbose.len() < 150, "{verbose}");

    // One round only: the model's tool call cannot be answered, and the reply says so.
    let capped = text(runner(&base, 1), r#"lookup_order {"order":"1"}"#).await;
    assert_eq!((capped.text.as_str(), capped.finish_reason.as_deref()), ("", Some("tool_limit")));
}

#[tokio::test]
async fn a_redelivered_turn_does_not_repeat_the_side_effect() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let (base, tools) = tool_server().await;
    let url = std::env::var("TURNPIKE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = redis::Client::open(url).unwrap().get_connection_manager().await.unwrap();
    let runner = runner(&base, 3);
    runner.attach_ledger(redis);
    let turn =
        format!("turn-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let chain = chains(&server).remove(1);
    for _ in 0..2 {
        let req = request(r#"Where is order 7? [[mock:tool=lookup_order {"order": "7"}]]"#);
        let answer = stream_with_tools(Arc::clone(&chain), Arc::clone(&runner), req, turn.clone(), None).await.unwrap();
        assert_eq!(collect(answer.events).await.unwrap().text, "Tool result: order 7 in transit");
    }
    assert_eq!(tools.calls.load(Ordering::SeqCst), 1, "the second delivery replays the recorded result");
}

#[tokio::test]
async fn text_before_a_tool_call_stays_and_the_answer_continues_after_it() {
    let server = mock::spawn(MockConfig::instant()).await.unwrap();
    let (base, tools) = tool_server().await;
    let runner = runner(&base, 3);
    for (i, chain) in chains(&server).into_iter().enumerate() {
        let req = request(r#"Order 42? [[mock:reply=Let me check. ]] [[mock:tool=lookup_order {"order":"42"}]]"#);
        let answer = stream_with_tools(chain, Arc::clone(&runner), req, format!("mixed-{i}"), None).await.unwrap();
        let provider = answer.provider;
        let reply = collect(answer.events).await.unwrap();
        // Shown once, never restarted: the first round's text, then the second round's.
        assert_eq!(reply.text, "Let me check. Tool result: order 42 in transit", "{provider}");
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"), "{provider}");
        assert!(reply.usage.is_some(), "{provider}");
    }
    assert_eq!(tools.calls.load(Ordering::SeqCst), 3);
}
