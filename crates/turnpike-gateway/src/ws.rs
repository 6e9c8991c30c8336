//! WebSocket connections (`GET /v1/ws`): authenticated at the upgrade, then one task per connection that
//! reads client frames, sends reply events and pings.
//!
//! Guarantees: no connection without a valid credential and an acceptable `Origin`; a connection follows at
//! most `max_conversations_per_socket` conversations and sends each conversation's events in order, once
//! (see [`crate::feed`]); nothing is buffered per connection beyond one page of events — events wait in
//! Redis until the socket takes them, and a client that takes nothing for `slow_client_timeout` is
//! disconnected (it resumes from its last id); over-quota, over-rate and oversized messages get an error
//! frame and the connection stays usable; pings every `ping_interval`, and a client silent for
//! `idle_timeout` (no pong either) is closed; on shutdown every socket is closed with 1001.

use crate::auth::{Presented, Principal};
use crate::error::{count_rejection, ApiError};
use crate::events::valid_conversation_id;
use crate::feed::{Feed, Start, PAGE};
use crate::ingress::{self, MessageIn};
use crate::{App, ConnectionGauge};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Client → server frames.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Message(MessageIn),
    Resume {
        conversation_id: String,
        #[serde(default)]
        last_event_id: Option<String>,
    },
}

/// The upgrade: origin, then credential; refusals are plain HTTP errors, so no socket is ever opened.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&app, &headers) {
        return ApiError::new(StatusCode::FORBIDDEN, "origin_not_allowed", "this origin may not open a WebSocket")
            .into_response();
    }
    let principal = match app.auth.authenticate(&Presented::from_parts(&headers, &query)) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if app.shutdown.is_cancelled() {
        return ApiError::unavailable("the gateway is shutting down").into_response();
    }
    let max = app.cfg.limits.max_message_bytes;
    // Frames far above the text limit are cut off by the protocol layer; the text limit itself is checked per
    // message so an oversized message gets an error frame, not a closed socket.
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(max * 4 + 64 * 1024)
        .max_frame_size(max * 4 + 64 * 1024)
        .on_upgrade(move |socket| Connection::new(app, principal).run(socket))
}

/// A browser may connect from an allowed origin or from the gateway's own (a page it serves); a request
/// without `Origin` does not come from a browser page, so cross-site hijacking does not apply to it.
fn origin_allowed(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
        return true;
    };
    if app.cfg.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
    host.is_some() && origin_host == host
}

/// Messages per second with bursts: a token bucket.
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// Takes one token, or says in how many milliseconds one will be there.
    fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - self.tokens) / self.rate) * 1000.0).ceil() as u64)
        }
    }
}

/// Why a connection ends.
enum End {
    /// The client went away or the socket failed: nothing to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

struct Connection {
    app: Arc<App>,
    principal: Principal,
    notify: Arc<Notify>,
    feeds: Vec<Feed>,
    bucket: Bucket,
    _gauge: ConnectionGauge,
}

impl Connection {
    fn new(app: Arc<App>, principal: Principal) -> Connection {
        let l = &app.cfg.limits;
        let bucket =
            Bucket { tokens: l.burst as f64, last: Instant::now(), rate: l.messages_per_second, burst: l.burst as f64 };
        Connection {
            principal,
            notify: Arc::new(Notify::new()),
            feeds: Vec::new(),
            bucket,
            _gauge: ConnectionGauge::new("ws"),
            app,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let limits = self.app.cfg.limits.clone();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + limits.ping_interval(), limits.ping_interval());
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let shutdown = self.app.shutdown.clone();
        let end = loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => Err(End::Close(1001, "shutting_down")),
                msg = socket.recv() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(End::Gone),
                    Some(Ok(m)) => {
                        last_heard = Instant::now();
                        self.on_message(&mut socket, m).await
                    }
                },
                _ = self.notify.notified() => self.flush(&mut socket).await,
                _ = ping.tick() => {
                    if last_heard.elapsed() > limits.idle_timeout() {
                        Err(End::Close(4000, "idle_timeout"))
                    } else {
                        self.send(&mut socket, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                break end;
            }
        };
        if let End::Close(code, reason) = end {
            if code >= 4000 {
                count_rejection(reason);
            }
            let frame = CloseFrame { code, reason: reason.into() };
            // Best effort: a client that stopped reading will not take the close frame either.
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
        }
    }

    /// Sends one frame, or gives up on a client that does not take it in time.
    async fn send(&self, socket: &mut WebSocket, msg: Message) -> Result<(), End> {
        match tokio::time::timeout(self.app.cfg.limits.slow_client_timeout(), socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Close(4001, "slow_consumer")),
        }
    }

    async fn send_text(&self, socket: &mut WebSocket, text: String) -> Result<(), End> {
        self.send(socket, Message::Text(text.into())).await
    }

    async fn on_message(&mut self, socket: &mut WebSocket, msg: Message) -> Result<(), End> {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                let e = ApiError::invalid("binary frames are not part of the protocol; send JSON text");
                e.count();
                return self.send_text(socket, e.to_json()).await;
            }
            // Pings are answered by the protocol layer; pongs only prove the client is alive.
            _ => return Ok(()),
        };
        let reply = match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(ClientFrame::Message(m)) => self.on_chat_message(m).await,
            Ok(ClientFrame::Resume { conversation_id, last_event_id }) => {
                return self.on_resume(socket, conversation_id, last_event_id).await
            }
            Err(e) => Err(ApiError::invalid(format!("not a valid frame: {e}"))),
        };
        let text = reply.unwrap_or_else(|e| {
            e.count();
            e.to_json()
        });
        self.send_text(socket, text).await
    }

    async fn on_chat_message(&mut self, m: MessageIn) -> Result<String, ApiError> {
        if let Err(retry) = self.bucket.take() {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_messages",
                "too many messages per second on this connection",
            )
            .retry_after(retry)
            .for_message(m.message_id.as_deref()));
        }
        if !valid_conversation_id(&m.conversation_id) {
            return Err(ApiError::invalid("conversation_id must be 1-64 of A-Z a-z 0-9 _ -")
                .for_message(m.message_id.as_deref()));
        }
        // Follow the conversation before producing, so the reply cannot slip past.
        if !self.feeds.iter().any(|f| f.conversation == m.conversation_id) {
            self.open(&m.conversation_id, Start::Latest).await.map_err(|e| e.for_message(m.message_id.as_deref()))?;
        }
        let accepted = ingress::accept(&self.app, &self.principal, m, "ws", None).await?;
        self.app.ttft.accepted(&accepted.turn_id);
        Ok(accepted.to_json())
    }

    async fn on_resume(
        &mut self,
        socket: &mut WebSocket,
        conversation: String,
        last: Option<String>,
    ) -> Result<(), End> {
        let start = match last.as_deref().map(str::parse) {
            None => Ok(Start::Latest),
            Some(Ok(id)) => Ok(Start::After(id)),
            Some(Err(())) => Err(ApiError::invalid("last_event_id must be an event id such as 3-24, or 0")),
        };
        let opened = match start {
            Ok(_) if !valid_conversation_id(&conversation) => {
                Err(ApiError::invalid("conversation_id must be 1-64 of A-Z a-z 0-9 _ -"))
            }
            Ok(start) => {
                // A resume restarts the conversation's feed from the client's id.
                self.feeds.retain(|f| f.conversation != conversation);
                self.open(&conversation, start).await
            }
            Err(e) => Err(e),
        };
        let expired = match opened {
            Ok(expired) => expired,
            Err(e) => {
                e.count();
                return self.send_text(socket, e.to_json()).await;
            }
        };
        let cursor = self.feeds.last().map(|f| f.cursor().to_string());
        let resumed = json!({"type": "resumed", "conversation_id": conversation, "last_event_id": cursor});
        self.send_text(socket, resumed.to_string()).await?;
        if expired {
            let e =
                ApiError::new(StatusCode::GONE, "events_expired", "some events after last_event_id are no longer kept");
            e.count();
            self.send_text(socket, e.to_json()).await?;
        }
        self.flush(socket).await
    }

    /// Starts following a conversation; true when the client's resume point is older than what is kept.
    async fn open(&mut self, conversation: &str, start: Start) -> Result<bool, ApiError> {
        if self.feeds.len() >= self.app.cfg.limits.max_conversations_per_socket {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_conversations",
                "this connection follows the maximum number of conversations",
            ));
        }
        let (tenant, user) = (&self.principal.tenant, &self.principal.user);
        let session = crate::events::session_id(user, conversation);
        let opened = Feed::open(&self.app, tenant, &session, conversation, start, self.notify.clone())
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot follow the conversation: {e}")))?;
        self.feeds.push(opened.feed);
        Ok(opened.expired)
    }

    /// Sends every event that is waiting, conversation by conversation, page by page.
    async fn flush(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        for i in 0..self.feeds.len() {
            loop {
                let events = match self.feeds[i].next(PAGE).await {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::warn!(error = %e, "Reading a session's events failed; closing the connection.");
                        return Err(End::Close(1011, "unavailable"));
                    }
                };
                let full = events.len() == PAGE;
                for e in events {
                    self.app.ttft.sent(&e, "ws");
                    self.send_text(socket, e.json).await?;
                }
                if !full {
                    break;
                }
            }
        }
        Ok(())
    }
}
