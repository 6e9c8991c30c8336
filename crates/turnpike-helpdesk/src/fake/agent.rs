//! The fake's agent side: an agent replies or solves a ticket, and the fake sends the webhook the vendor
//! would send, signed in the vendor's scheme, to the URL configured for that vendor.
//!
//! Bodies: Zendesk sends what our trigger template renders (ids and status only, as integrations.md
//! recommends; the receiver reads the comment through the API); Freshdesk's automation rule sends the same
//! ids with the shared token header; Intercom sends its `notification_event` envelope with the new part.

use super::vendors::intercom_json;
use super::{FakeComment, Shared};
use crate::signature;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The agent's user id in every vendor (distinct from requesters and the API user, id 1).
pub const AGENT_ID: u64 = 500;

pub(super) enum Action {
    Reply(String),
    Solve,
}

#[derive(Deserialize)]
struct AgentRequest {
    vendor: String,
    ticket_id: u64,
    #[serde(default)]
    body: Option<String>,
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/fake/agent/reply", post(reply)).route("/fake/agent/solve", post(solve))
}

async fn reply(State(s): State<Arc<Shared>>, Json(r): Json<AgentRequest>) -> Json<Value> {
    let outcome = act(&s, &r.vendor, r.ticket_id, Action::Reply(r.body.unwrap_or_default())).await;
    Json(json!({"webhook_status": outcome.as_ref().ok(), "error": outcome.err()}))
}

async fn solve(State(s): State<Arc<Shared>>, Json(r): Json<AgentRequest>) -> Json<Value> {
    let outcome = act(&s, &r.vendor, r.ticket_id, Action::Solve).await;
    Json(json!({"webhook_status": outcome.as_ref().ok(), "error": outcome.err()}))
}

/// Applies the agent's action to the ticket and POSTs the vendor's webhook; returns the target's status.
pub(super) async fn act(shared: &Shared, vendor: &str, ticket_id: u64, action: Action) -> Result<u16, String> {
    let (url, body, headers) = {
        let mut st = shared.lock();
        let url = st.webhooks.get(vendor).cloned().ok_or_else(|| format!("no webhook URL configured for {vendor}"))?;
        let cid = Shared::next_id(&mut st);
        let t = st
            .tickets
            .iter_mut()
            .find(|t| t.vendor == vendor && t.id == ticket_id)
            .ok_or_else(|| format!("{vendor} has no ticket {ticket_id}"))?;
        let event = match &action {
            Action::Reply(text) => {
                t.comments.push(FakeComment {
                    id: cid,
                    author: "agent".into(),
                    author_id: AGENT_ID,
                    body: text.clone(),
                    public: true,
                });
                if t.status == "new" {
                    t.status = "open".into();
                }
                "reply"
            }
            Action::Solve => {
                t.status = if vendor == "intercom" { "closed".into() } else { "solved".into() };
                "solved"
            }
        };
        let cfg = &shared.cfg;
        let invocation = cid.to_string();
        match vendor {
            "zendesk" => {
                let body = serde_json::to_vec(&json!({"ticket_id": t.id.to_string(), "external_id": t.external_id,
                    "status": t.status, "actor_id": AGENT_ID.to_string(), "actor_role": "agent", "event": event}))
                .unwrap_or_default();
                let ts = iso8601_now();
                let sig = signature::zendesk_sign(&cfg.zendesk_signing_secret, &ts, &body);
                let headers = vec![
                    (signature::ZENDESK_SIGNATURE_HEADER, sig),
                    (signature::ZENDESK_TIMESTAMP_HEADER, ts),
                    ("x-zendesk-webhook-id", "01FAKEWEBHOOK".to_string()),
                    ("x-zendesk-webhook-invocation-id", invocation),
                    ("x-zendesk-account-id", "1".to_string()),
                ];
                (url, body, headers)
            }
            "freshdesk" => {
                let body = serde_json::to_vec(
                    &json!({"ticket_id": t.id, "status": if event == "solved" { 4 } else { 2 }, "event": event}),
                )
                .unwrap_or_default();
                (url, body, vec![(signature::FRESHDESK_TOKEN_HEADER, cfg.freshdesk_webhook_token.clone())])
            }
            _ => {
                let topic = if event == "solved" { "conversation.admin.closed" } else { "conversation.admin.replied" };
                let mut item = intercom_json(t);
                // A webhook carries the parts of this event only.
                let parts = item["conversation_parts"]["conversation_parts"].as_array().cloned().unwrap_or_default();
                let new: Vec<Value> = parts.into_iter().filter(|p| p["id"] == json!(cid.to_string())).collect();
                item["conversation_parts"] =
                    json!({"type": "conversation_part.list", "total_count": new.len(), "conversation_parts": new});
                let body = serde_json::to_vec(
                    &json!({"type": "notification_event", "id": format!("notif_{cid}"), "topic": topic,
                    "app_id": "fakeapp", "created_at": 0, "delivery_attempts": 1,
                    "data": {"type": "notification_event_data", "item": item}}),
                )
                .unwrap_or_default();
                let sig = signature::intercom_sign(&cfg.intercom_client_secret, &body);
                (
                    url,
                    body,
                    vec![
                        (signature::INTERCOM_SIGNATURE_HEADER, sig),
                        ("user-agent", "intercom-parrot-service-client/1.0".into()),
                    ],
                )
            }
        }
    };
    let mut req = shared.http.post(&url).header("content-type", "application/json").body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

/// `2021-03-25T05:09:27Z`, Zendesk's timestamp header format.
pub fn iso8601_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    iso8601(secs)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn iso8601(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parses [`iso8601`]'s format back to unix seconds (the endpoint checks the timestamp's age).
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.trim();
    if b.len() != 20 || !b.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| b.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_round_trips() {
        assert_eq!(super::iso8601(1_616_649_767), "2021-03-25T05:22:47Z");
        for t in [0, 951_782_400, 1_616_649_767, 4_102_444_800] {
            assert_eq!(super::parse_iso8601(&super::iso8601(t)), Some(t));
        }
    }
}
