//! The vendor APIs of the fake: authentication, rate limits, faults and recording in [`api`], then one
//! function per call shaped like the vendor's documented request and answer.

use super::{FakeComment, FakeRequest, FakeTicket, Shared, State};
use crate::connector::basic;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/{*rest}", any(api))
        .route("/contacts", any(api))
        .route("/contacts/{*rest}", any(api))
        .route("/conversations", any(api))
        .route("/conversations/{*rest}", any(api))
}

type Answer = (StatusCode, Vec<(&'static str, String)>, Value);

fn answer(status: StatusCode, body: Value) -> Answer {
    (status, Vec::new(), body)
}

/// Which vendor the credentials belong to (Zendesk and Freshdesk share paths).
fn vendor(shared: &Shared, path: &str, headers: &HeaderMap) -> Option<&'static str> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let cfg = &shared.cfg;
    if path.starts_with("/contacts") || path.starts_with("/conversations") {
        return (auth == format!("Bearer {}", cfg.intercom_token)).then_some("intercom");
    }
    if auth == basic(&format!("{}/token", cfg.zendesk_email), &cfg.zendesk_token) {
        return Some("zendesk");
    }
    // Freshdesk: the API key is the user name, the password is anything (conventionally X).
    let decoded = auth.strip_prefix("Basic ").and_then(|b| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(b).ok().and_then(|d| String::from_utf8(d).ok())
    });
    decoded
        .and_then(|d| d.split_once(':').map(|(user, _)| user == cfg.freshdesk_api_key))
        .filter(|ok| *ok)
        .map(|_| "freshdesk")
}

async fn api(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches(".json").to_string();
    let query = uri.query().unwrap_or("").to_string();
    let idem = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let who = vendor(&shared, &path, &headers);
    let (status, extra, value, latency) = {
        let mut st = shared.lock();
        let mut delay = Duration::ZERO;
        let (status, extra, value) = match who {
            None => answer(StatusCode::UNAUTHORIZED, json!({"error": "Couldn't authenticate you"})),
            Some(v) => gate(&mut st, &shared, v, &method, &path, &mut delay)
                .unwrap_or_else(|| route(&mut st, v, &method, &path, &query, idem.as_deref(), &body)),
        };
        st.requests.push(FakeRequest {
            vendor: who.unwrap_or("unknown").into(),
            method: method.to_string(),
            path: path.clone(),
            status: status.as_u16(),
            idempotency_key: idem,
        });
        (status, extra, value, st.latency.unwrap_or(shared.cfg.latency) + delay)
    };
    // After the work: a client that gives up (or dies) while waiting leaves the effect behind.
    tokio::time::sleep(latency).await;
    let mut resp = (status, axum::Json(value)).into_response();
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Rate limit and scripted faults, before any work (a delay fault only sets `delay`).
fn gate(
    st: &mut State,
    shared: &Shared,
    vendor: &str,
    method: &Method,
    path: &str,
    delay: &mut Duration,
) -> Option<Answer> {
    let matches = |f: &super::Fault| {
        f.path_contains.as_deref().is_none_or(|p| path.contains(p))
            && f.method.as_deref().is_none_or(|m| m == method.as_str())
    };
    if let Some(i) = st.faults.iter().position(matches) {
        let (status, delay_ms) = (st.faults[i].status, st.faults[i].delay_ms);
        st.faults[i].count = st.faults[i].count.saturating_sub(1);
        if st.faults[i].count == 0 {
            st.faults.remove(i);
        }
        if status == 0 {
            *delay = Duration::from_millis(delay_ms);
            return None;
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let extra = if status == 429 { vec![("retry-after", "1".to_string())] } else { Vec::new() };
        return Some((code, extra, json!({"error": "injected fault"})));
    }
    let limit = shared.cfg.rate_limit_per_min;
    if limit == 0 {
        return None;
    }
    let now = Instant::now();
    let window = st.windows.entry(vendor.to_string()).or_insert((now, 0));
    if now.duration_since(window.0) >= Duration::from_secs(60) {
        *window = (now, 0);
    }
    window.1 += 1;
    if window.1 > limit {
        let wait = 60u64.saturating_sub(now.duration_since(window.0).as_secs()).max(1);
        let extra = vec![
            ("retry-after", wait.to_string()),
            ("x-rate-limit", limit.to_string()),
            ("x-rate-limit-remaining", "0".into()),
        ];
        return Some((StatusCode::TOO_MANY_REQUESTS, extra, json!({"error": "APIRateLimitExceeded"})));
    }
    None
}

fn route(
    st: &mut State,
    vendor: &str,
    method: &Method,
    path: &str,
    query: &str,
    idem: Option<&str>,
    body: &Value,
) -> Answer {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (vendor, method.as_str(), parts.as_slice()) {
        ("zendesk", "POST", ["api", "v2", "tickets"]) => zendesk_create(st, idem, body),
        ("zendesk", "GET", ["api", "v2", "tickets"]) => {
            let ext = param(query, "external_id");
            let found: Vec<Value> =
                st.tickets.iter().filter(|t| t.vendor == "zendesk" && t.external_id == ext).map(zendesk_json).collect();
            answer(StatusCode::OK, json!({"tickets": found, "count": found.len()}))
        }
        ("zendesk", "PUT", ["api", "v2", "tickets", id]) => {
            let c = &body["ticket"]["comment"];
            let text = c["body"].as_str().or(c["html_body"].as_str()).unwrap_or("").to_string();
            let (public, author_id) = (c["public"].as_bool().unwrap_or(true), c["author_id"].as_u64());
            with_ticket(st, "zendesk", id, |t, cid| {
                let author = if author_id == Some(t.requester_id) { "customer" } else { "bot" };
                t.comments.push(FakeComment {
                    id: cid,
                    author: author.into(),
                    author_id: author_id.unwrap_or(1),
                    body: text,
                    public,
                });
                answer(
                    StatusCode::OK,
                    json!({"ticket": zendesk_json(t), "audit": {"events": [{"type": "Comment", "id": cid}]}}),
                )
            })
        }
        ("zendesk", "GET", ["api", "v2", "tickets", id, "comments"]) => with_ticket(st, "zendesk", id, |t, _| {
            let mut cs: Vec<Value> = t.comments.iter().map(|c| json!({"id": c.id, "type": "Comment", "author_id": c.author_id, "body": c.body, "public": c.public})).collect();
            if param(query, "sort_order").as_deref() == Some("desc") {
                cs.reverse();
            }
            answer(StatusCode::OK, json!({"comments": cs}))
        }),
        ("freshdesk", "POST", ["api", "v2", "tickets"]) => freshdesk_create(st, body),
        ("freshdesk", "GET", ["api", "v2", "search", "tickets"]) => {
            // query="cf_turnpike_ticket_id:'T-…'" (URL-encoded quotes are accepted too)
            let q = param(query, "query").unwrap_or_default();
            let wanted = q.split('\'').nth(1).map(str::to_string);
            let found: Vec<Value> = st
                .tickets
                .iter()
                .filter(|t| t.vendor == "freshdesk" && wanted.is_some() && t.external_id == wanted)
                .map(freshdesk_json)
                .collect();
            answer(StatusCode::OK, json!({"results": found, "total": found.len()}))
        }
        ("freshdesk", "POST", ["api", "v2", "tickets", id, kind @ ("notes" | "reply")]) => {
            let text = body["body"].as_str().unwrap_or("").to_string();
            let incoming = body["incoming"].as_bool().unwrap_or(false);
            let public = *kind == "reply" || !body["private"].as_bool().unwrap_or(true);
            with_ticket(st, "freshdesk", id, |t, cid| {
                let author = if incoming { "customer" } else { "bot" };
                t.comments.push(FakeComment {
                    id: cid,
                    author: author.into(),
                    author_id: if incoming { t.requester_id } else { 1 },
                    body: text.clone(),
                    public,
                });
                answer(
                    StatusCode::CREATED,
                    json!({"id": cid, "body": text, "private": !public, "incoming": incoming, "ticket_id": t.id}),
                )
            })
        }
        ("freshdesk", "GET", ["api", "v2", "tickets", id, "conversations"]) => {
            with_ticket(st, "freshdesk", id, |t, _| {
                let cs: Vec<Value> = t.comments.iter().map(|c| json!({"id": c.id, "body_text": c.body, "private": !c.public, "incoming": c.author == "customer", "user_id": c.author_id})).collect();
                answer(StatusCode::OK, Value::Array(cs))
            })
        }
        ("intercom", "GET", ["contacts", "find_by_external_id", ext]) => match st.contacts.get(*ext) {
            Some(id) => answer(
                StatusCode::OK,
                json!({"type": "contact", "id": id.to_string(), "external_id": ext, "role": "user"}),
            ),
            None => answer(
                StatusCode::NOT_FOUND,
                json!({"type": "error.list", "errors": [{"code": "not_found", "message": "User Not Found"}]}),
            ),
        },
        ("intercom", "POST", ["contacts"]) => {
            let ext = body["external_id"].as_str().unwrap_or("").to_string();
            if let Some(id) = st.contacts.get(&ext) {
                return answer(
                    StatusCode::CONFLICT,
                    json!({"type": "error.list", "errors": [{"code": "conflict", "message": format!("A contact matching those details already exists with id={id}")}]}),
                );
            }
            let id = Shared::next_id(st);
            st.contacts.insert(ext.clone(), id);
            answer(StatusCode::OK, json!({"type": "contact", "id": id.to_string(), "external_id": ext, "role": "user"}))
        }
        ("intercom", "POST", ["conversations"]) => intercom_create(st, body),
        ("intercom", "POST", ["conversations", "search"]) => {
            let q = &body["query"];
            let wanted = q["value"].as_str().unwrap_or("\u{0}");
            let ok = q["field"] == "source.body" && q["operator"] == "~";
            let found: Vec<Value> = st
                .tickets
                .iter()
                .filter(|t| ok && t.vendor == "intercom" && t.description.contains(wanted))
                .map(intercom_json)
                .collect();
            answer(
                StatusCode::OK,
                json!({"type": "conversation.list", "conversations": found, "total_count": found.len()}),
            )
        }
        ("intercom", "POST", ["conversations", id, "reply"]) => {
            let admin = body["type"] == "admin";
            let text = body["body"].as_str().unwrap_or("").to_string();
            let note = body["message_type"] == "note";
            if admin && body["admin_id"].as_str().is_none_or(str::is_empty) {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"type": "error.list", "errors": [{"code": "parameter_not_found", "message": "admin_id not specified"}]}),
                );
            }
            with_ticket(st, "intercom", id, |t, cid| {
                let author = if admin { "bot" } else { "customer" };
                t.comments.push(FakeComment {
                    id: cid,
                    author: author.into(),
                    author_id: if admin { 1 } else { t.requester_id },
                    body: text,
                    public: !note,
                });
                answer(StatusCode::OK, intercom_json(t))
            })
        }
        ("intercom", "GET", ["conversations", id]) => {
            with_ticket(st, "intercom", id, |t, _| answer(StatusCode::OK, intercom_json(t)))
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            json!({"error": "InvalidEndpoint", "description": format!("{vendor}: no route {method} {path}")}),
        ),
    }
}

/// Runs `f` on the vendor's ticket `id` with a fresh comment id, or answers 404.
fn with_ticket(st: &mut State, vendor: &str, id: &str, f: impl FnOnce(&mut FakeTicket, u64) -> Answer) -> Answer {
    let cid = Shared::next_id(st);
    match st.tickets.iter_mut().find(|t| t.vendor == vendor && t.id.to_string() == id) {
        Some(t) => f(t, cid),
        None => answer(StatusCode::NOT_FOUND, json!({"error": "RecordNotFound", "description": "Not found"})),
    }
}

fn zendesk_create(st: &mut State, idem: Option<&str>, body: &Value) -> Answer {
    if let Some(key) = idem {
        if let Some((first_body, status, first)) = st.idempotency.get(key) {
            if first_body != body {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "IdempotentRequestError", "description": "Request parameters don't match the given idempotency key"}),
                );
            }
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::CREATED);
            return (code, vec![("x-idempotency-lookup", "hit".into())], first.clone());
        }
    }
    let t = &body["ticket"];
    let comment = t["comment"]["html_body"].as_str().or(t["comment"]["body"].as_str());
    let Some(comment) = comment else {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "RecordInvalid", "details": {"base": [{"description": "Description: cannot be blank"}]}}),
        );
    };
    let (id, requester_id) = (Shared::next_id(st), Shared::next_id(st));
    let ticket = FakeTicket {
        vendor: "zendesk".into(),
        id,
        external_id: t["external_id"].as_str().map(str::to_string),
        subject: t["subject"].as_str().unwrap_or("").into(),
        description: comment.into(),
        requester_id,
        priority: t["priority"].clone(),
        tags: strings(&t["tags"]),
        status: "new".into(),
        comments: Vec::new(),
    };
    let out = json!({"ticket": zendesk_json(&ticket)});
    st.tickets.push(ticket);
    if let Some(key) = idem {
        st.idempotency.insert(key.to_string(), (body.clone(), 201, out.clone()));
    }
    (StatusCode::CREATED, vec![("x-idempotency-lookup", "miss".into())], out)
}

fn freshdesk_create(st: &mut State, body: &Value) -> Answer {
    let has_requester = ["email", "requester_id", "phone", "unique_external_id", "twitter_id", "facebook_id"]
        .iter()
        .any(|k| !body[*k].is_null());
    let mut errors = Vec::new();
    if !has_requester {
        errors.push(json!({"field": "requester_id", "message": "Please fill at least 1 of email, mobile, phone, twitter_id, unique_external_id, facebook_id, requester_id fields", "code": "missing_field"}));
    }
    for field in ["subject", "description"] {
        if body[field].as_str().is_none_or(str::is_empty) {
            errors.push(json!({"field": field, "message": "It should not be blank", "code": "missing_field"}));
        }
    }
    if !errors.is_empty() {
        return answer(StatusCode::BAD_REQUEST, json!({"description": "Validation failed", "errors": errors}));
    }
    let (id, requester_id) = (Shared::next_id(st), Shared::next_id(st));
    let ticket = FakeTicket {
        vendor: "freshdesk".into(),
        id,
        external_id: body["custom_fields"]["cf_turnpike_ticket_id"].as_str().map(str::to_string),
        subject: body["subject"].as_str().unwrap_or("").into(),
        description: body["description"].as_str().unwrap_or("").into(),
        requester_id,
        priority: body["priority"].clone(),
        tags: strings(&body["tags"]),
        status: "2".into(),
        comments: Vec::new(),
    };
    let out = freshdesk_json(&ticket);
    st.tickets.push(ticket);
    (StatusCode::CREATED, vec![("location", format!("/api/v2/tickets/{id}"))], out)
}

fn intercom_create(st: &mut State, body: &Value) -> Answer {
    let from = body["from"]["id"].as_str().and_then(|s| s.parse::<u64>().ok());
    let Some(contact) = from.filter(|c| st.contacts.values().any(|v| v == c)) else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"type": "error.list", "errors": [{"code": "not_found", "message": "User Not Found"}]}),
        );
    };
    let (id, msg) = (Shared::next_id(st), Shared::next_id(st));
    let text = body["body"].as_str().unwrap_or("").to_string();
    st.tickets.push(FakeTicket {
        vendor: "intercom".into(),
        id,
        external_id: None,
        subject: String::new(),
        description: text.clone(),
        requester_id: contact,
        priority: json!("not_priority"),
        tags: Vec::new(),
        status: "open".into(),
        comments: Vec::new(),
    });
    answer(
        StatusCode::OK,
        json!({"type": "user_message", "id": msg.to_string(), "created_at": 0, "body": text, "message_type": "inapp", "conversation_id": id.to_string()}),
    )
}

pub(super) fn zendesk_json(t: &FakeTicket) -> Value {
    json!({"id": t.id, "url": format!("/api/v2/tickets/{}.json", t.id), "status": t.status, "subject": t.subject,
           "requester_id": t.requester_id, "submitter_id": t.requester_id, "external_id": t.external_id,
           "tags": t.tags, "priority": t.priority})
}

fn freshdesk_json(t: &FakeTicket) -> Value {
    json!({"id": t.id, "subject": t.subject, "description": t.description, "status": 2, "priority": t.priority,
           "source": 7, "tags": t.tags, "requester_id": t.requester_id, "custom_fields": {"cf_turnpike_ticket_id": t.external_id}})
}

pub(super) fn intercom_json(t: &FakeTicket) -> Value {
    let parts: Vec<Value> = t
        .comments
        .iter()
        .map(|c| {
            json!({
        "type": "conversation_part", "id": c.id.to_string(),
        "part_type": if c.public { "comment" } else { "note" }, "body": c.body,
        "author": {"type": if c.author == "customer" { "user" } else { "admin" }, "id": c.author_id.to_string()}})
        })
        .collect();
    json!({"type": "conversation", "id": t.id.to_string(), "state": t.status,
           "source": {"type": "conversation", "body": t.description},
           "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": t.requester_id.to_string()}]},
           "conversation_parts": {"type": "conversation_part.list", "total_count": parts.len(), "conversation_parts": parts}})
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// A query parameter, percent-decoded (enough for ids and the quoted Freshdesk query).
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| decode(v))
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
