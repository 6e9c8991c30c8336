//! The Anthropic Messages and Gemini `streamGenerateContent` wire formats as the mock speaks them: SSE
//! frames and error bodies, shaped like the providers' documented examples.
//!
//! Guarantee: the same [`Reply`](super::respond::Reply) acted out in any format carries the same text,
//! finish reason and token counts, so a client test can compare providers one to one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which provider's wire format a request arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    OpenAi,
    Anthropic,
    Gemini,
}

/// One SSE frame; `event` only for formats that name their events (Anthropic).
pub(super) fn frame(event: Option<&str>, data: &serde_json::Value) -> String {
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

pub(super) fn anthropic_stop_reason(finish: &str) -> &'static str {
    if finish == "length" {
        "max_tokens"
    } else {
        "end_turn"
    }
}

pub(super) fn gemini_finish_reason(finish: &str) -> &'static str {
    if finish == "length" {
        "MAX_TOKENS"
    } else {
        "STOP"
    }
}

/// Anthropic's `message_start`, `content_block_start` and a `ping`, sent with the first token.
pub(super) fn anthropic_prelude(id: &str, model: &str, input_tokens: usize) -> Vec<String> {
    let start = json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}});
    let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
    vec![
        frame(Some("message_start"), &start),
        frame(Some("content_block_start"), &block),
        frame(Some("ping"), &json!({"type": "ping"})),
    ]
}

pub(super) fn anthropic_delta(text: &str) -> String {
    let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
    frame(Some("content_block_delta"), &delta)
}

pub(super) fn anthropic_finish(finish: &str, output_tokens: usize) -> Vec<String> {
    let delta = json!({"type": "message_delta",
        "delta": {"stop_reason": anthropic_stop_reason(finish), "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}});
    vec![
        frame(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0})),
        frame(Some("message_delta"), &delta),
        frame(Some("message_stop"), &json!({"type": "message_stop"})),
    ]
}

/// A Gemini chunk; `finish` adds the finish reason and the final usage figures.
pub(super) fn gemini_chunk(model: &str, text: &str, input: usize, finish: Option<(&str, usize)>) -> String {
    let mut candidate = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    let mut usage = json!({"promptTokenCount": input, "totalTokenCount": input});
    if let Some((reason, output)) = finish {
        candidate["finishReason"] = json!(gemini_finish_reason(reason));
        usage = json!({"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output});
    }
    frame(None, &json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}))
}

/// The in-stream error event of each format (the fault `error_event`): "overloaded" in each dialect.
pub(super) fn error_event(format: Format) -> String {
    match format {
        Format::OpenAi => frame(
            None,
            &json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}),
        ),
        Format::Anthropic => frame(
            Some("error"),
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
        Format::Gemini => frame(
            None,
            &json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
        ),
    }
}

/// A frame whose JSON is cut short (the fault `malformed`).
pub(super) fn malformed(format: Format, id: &str) -> String {
    match format {
        Format::OpenAi => format!("data: {{\"id\":\"{id}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\n\n"),
        Format::Anthropic => "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\n\n".to_owned(),
        Format::Gemini => "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \n\n".to_owned(),
    }
}

/// An Anthropic error body: `{"type":"error","error":{"type":...,"message":...}}`; 529 is
/// `overloaded_error`; 429 carries `retry-after`.
pub(super) fn anthropic_error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let body = Json(json!({"type": "error", "error": {"type": kind, "message": message}}));
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [(header::RETRY_AFTER, HeaderValue::from_static("1"))], body).into_response();
    }
    (status, body).into_response()
}

/// A Gemini (Google RPC) error body; a 429 carries its hint as `RetryInfo.retryDelay`, as Gemini does,
/// not as a header.
pub(super) fn gemini_error(status: StatusCode, message: &str) -> Response {
    let code = status.as_u16();
    let rpc_status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    let mut error = json!({"code": code, "message": message, "status": rpc_status});
    if code == 429 {
        error["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]);
    }
    (status, Json(json!({ "error": error }))).into_response()
}

/// A reply's tool call of tool `name` with `args` (JSON text), in `format`, through the end of the reply.
/// `after_text`: text frames (and for Anthropic the prelude) were already sent.
#[allow(clippy::too_many_arguments)]
pub(super) fn tool_call_frames(
    after_text: bool,
    format: Format,
    id: &str,
    model: &str,
    name: &str,
    args: &str,
    input_tokens: usize,
    include_usage: bool,
) -> Vec<String> {
    let output = 1 + args.len() / 4;
    // Arguments stream in two fragments where the format streams them, as real providers do.
    let cut = args.char_indices().nth(args.chars().count() / 2).map_or(0, |(i, _)| i);
    let (first, second) = args.split_at(cut);
    match format {
        Format::OpenAi => {
            let call = |delta: serde_json::Value| {
                frame(
                    None,
                    &json!({"id": id, "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
                )
            };
            let mut frames = vec![
                call(
                    json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": format!("call_{id}"),
                    "type": "function", "function": {"name": name, "arguments": ""}}]}),
                ),
                call(json!({"tool_calls": [{"index": 0, "function": {"arguments": first}}]})),
                call(json!({"tool_calls": [{"index": 0, "function": {"arguments": second}}]})),
                frame(
                    None,
                    &json!({"id": id, "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
                ),
            ];
            if include_usage {
                frames.push(frame(None, &json!({"id": id, "object": "chat.completion.chunk", "model": model, "choices": [],
                    "usage": {"prompt_tokens": input_tokens, "completion_tokens": output, "total_tokens": input_tokens + output}})));
            }
            frames.push("data: [DONE]\n\n".to_owned());
            frames
        }
        Format::Anthropic => {
            let mut frames = if after_text { Vec::new() } else { anthropic_prelude(id, model, input_tokens) };
            // The prelude opened a text block 0: close it, the tool call is block 1.
            frames.push(frame(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0})));
            frames.push(frame(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": format!("toolu_{id}"), "name": name, "input": {}}}),
            ));
            for part in [first, second] {
                frames.push(frame(
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            frames.push(frame(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 1})));
            frames.push(frame(
                Some("message_delta"),
                &json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": output}}),
            ));
            frames.push(frame(Some("message_stop"), &json!({"type": "message_stop"})));
            frames
        }
        Format::Gemini => {
            let parsed: serde_json::Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
            vec![frame(
                None,
                &json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": name, "args": parsed}}], "role": "model"},
                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": input_tokens, "candidatesTokenCount": output, "totalTokenCount": input_tokens + output},
                "modelVersion": model}),
            )]
        }
    }
}
