//! HTTP clients: `POST /v1/messages` sends a message, `GET /v1/sessions/{conversation}/events` streams the
//! conversation's reply events as Server-Sent Events.
//!
//! Guarantees: both authenticated like WebSocket connections; the POST answers 202 only after Kafka
//! acknowledged the turn (see [`crate::ingress`]), 429 with `Retry-After` when a quota is spent; the event
//! stream sends each event once, in order, with the stream entry id as the SSE `id`, so a browser's
//! `EventSource` reconnect (`Last-Event-ID`) resumes exactly after the last event it got. Events are read from
//! Redis only as fast as the client takes them (the response body is pulled), so a slow client costs no
//! memory beyond one page.

use crate::auth::Presented;
use crate::error::ApiError;
use crate::events::{session_id, valid_conversation_id, EventId};
use crate::feed::{Feed, Start, PAGE};
use crate::ingress::{self, MessageIn};
use crate::{App, ConnectionGauge};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// `POST /v1/messages`.
pub async fn post_message(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let principal = match app.auth.authenticate(&Presented::from_parts(&headers, &query)) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let m: MessageIn = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return ApiError::invalid(format!("not a valid message: {e}")).into_response(),
    };
    // A caller that traces (W3C Trace Context) gets the turn in its trace; otherwise the gateway starts one.
    let traceparent = headers.get(turnpike_runner::trace::TRACEPARENT).and_then(|v| v.to_str().ok());
    match ingress::accept(&app, &principal, m, "sse", traceparent).await {
        Ok(accepted) => {
            app.ttft.accepted(&accepted.turn_id);
            (StatusCode::ACCEPTED, [("content-type", "application/json")], accepted.to_json()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// What the event stream carries between polls.
struct StreamState {
    app: Arc<App>,
    feed: Feed,
    notify: Arc<Notify>,
    pending: VecDeque<Event>,
    _gauge: ConnectionGauge,
}

/// `GET /v1/sessions/{conversation}/events`.
pub async fn events(
    State(app): State<Arc<App>>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let principal = match app.auth.authenticate(&Presented::from_parts(&headers, &query)) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !valid_conversation_id(&conversation) {
        return ApiError::invalid("conversation_id must be 1-64 of A-Z a-z 0-9 _ -").into_response();
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| query.get("last_event_id").cloned());
    let start = match last.as_deref().map(str::parse::<EventId>) {
        None => Start::Latest,
        Some(Ok(id)) => Start::After(id),
        Some(Err(())) => {
            return ApiError::invalid("Last-Event-ID must be an event id such as 3-24, or 0").into_response()
        }
    };
    let notify = Arc::new(Notify::new());
    let session = session_id(&principal.user, &conversation);
    let opened = match Feed::open(&app, &principal.tenant, &session, &conversation, start, notify.clone()).await {
        Ok(o) => o,
        Err(e) => return ApiError::unavailable(format!("cannot follow the conversation: {e}")).into_response(),
    };
    let mut pending = VecDeque::new();
    pending.push_back(
        Event::default().event("ready").data(json!({"type": "ready", "conversation_id": conversation}).to_string()),
    );
    if opened.expired {
        let e = ApiError::new(StatusCode::GONE, "events_expired", "some events after Last-Event-ID are no longer kept");
        e.count();
        pending.push_back(Event::default().event("error").data(e.to_json()));
    }
    let state = StreamState { app, feed: opened.feed, notify, pending, _gauge: ConnectionGauge::new("sse") };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok::<_, Infallible>(event), s));
            }
            match s.feed.next(PAGE).await {
                Ok(events) if !events.is_empty() => {
                    for e in events {
                        s.app.ttft.sent(&e, "sse");
                        s.pending.push_back(Event::default().id(e.id.to_string()).event(e.kind.clone()).data(e.json));
                    }
                    continue;
                }
                Ok(_) => {}
                // The client reconnects with its Last-Event-ID and loses nothing.
                Err(e) => {
                    tracing::warn!(error = %e, "Reading a session's events failed; ending the event stream.");
                    return None;
                }
            }
            tokio::select! {
                _ = s.notify.notified() => {}
                _ = s.app.shutdown.cancelled() => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")).into_response()
}
