//! The gateway's Redis scripts against the real Redis: the token limiter shared by instances, and the
//! idempotent event append of the outbound consumer.

use futures::StreamExt;
use std::time::Duration;
use turnpike_core::Endpoints;
use turnpike_gateway::config::{EventsConfig, TenantLimits};
use turnpike_gateway::events::{notify_channel, stream_key, trim_mark_key};
use turnpike_gateway::limiter::{Admission, Limiter, Scope, Window};
use turnpike_gateway::stage::GatewayStage;
use turnpike_schemas::{OutboundKind, OutboundReply, Usage};
use turnpike_store::RedisPool;

const HINT: &str = "is the local stack running? `deploy/local/stack.sh start`";

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn pool() -> RedisPool {
    RedisPool::connect(&Endpoints::from_env().redis_url, 2).await.expect(HINT)
}

fn minute_limits(user: u64, tenant: u64) -> TenantLimits {
    TenantLimits {
        user_tokens_per_minute: user,
        user_tokens_per_day: 0,
        tenant_tokens_per_minute: tenant,
        tenant_tokens_per_day: 0,
    }
}

#[tokio::test]
async fn two_limiters_share_one_budget_per_user_and_per_tenant() {
    // Two instances = two limiters on their own connections.
    let (one, two) = (Limiter::new(pool().await), Limiter::new(pool().await));
    let t = unique("t");
    let limits = minute_limits(0, 0);
    let day = TenantLimits { user_tokens_per_day: 100, tenant_tokens_per_day: 250, ..limits };
    assert_eq!(one.admit(&t, "u1", "u1:c", "m1", 60, &day).await.unwrap(), Admission::Admitted);
    // 60 + 60 > 100 on the other instance: refused until the day's end.
    match two.admit(&t, "u1", "u1:c", "m2", 60, &day).await.unwrap() {
        Admission::Refused { scope: Scope::User, window: Window::Day, retry_after_ms } => {
            assert!(retry_after_ms > 0 && retry_after_ms <= 86_400_000, "{retry_after_ms}")
        }
        other => panic!("{other:?}"),
    }
    // What still fits is admitted; other users are unaffected until the tenant budget is spent.
    assert_eq!(two.admit(&t, "u1", "u1:c", "m3", 40, &day).await.unwrap(), Admission::Admitted);
    assert_eq!(two.admit(&t, "u2", "u2:c", "m1", 100, &day).await.unwrap(), Admission::Admitted);
    // Tenant: 60 + 40 + 100 = 200; 60 more would be 260 > 250.
    match one.admit(&t, "u3", "u3:c", "m1", 60, &day).await.unwrap() {
        Admission::Refused { scope: Scope::Tenant, window: Window::Day, .. } => {}
        other => panic!("{other:?}"),
    }
    // A refusal consumed nothing: 50 still fits the tenant.
    assert_eq!(one.admit(&t, "u3", "u3:c", "m2", 50, &day).await.unwrap(), Admission::Admitted);
    // Another tenant has its own budget.
    assert_eq!(one.admit(&unique("t"), "u1", "u1:c", "m1", 100, &day).await.unwrap(), Admission::Admitted);
}

#[tokio::test]
async fn a_retried_message_is_charged_once_refunds_give_back_and_oversized_messages_never_fit() {
    let limiter = Limiter::new(pool().await);
    let t = unique("t");
    let limits = minute_limits(100, 0);
    assert_eq!(limiter.admit(&t, "u", "u:c", "m1", 70, &limits).await.unwrap(), Admission::Admitted);
    assert_eq!(limiter.admit(&t, "u", "u:c", "m1", 70, &limits).await.unwrap(), Admission::Duplicate);
    match limiter.admit(&t, "u", "u:c", "m2", 70, &limits).await.unwrap() {
        Admission::Refused { scope: Scope::User, window: Window::Minute, retry_after_ms } => {
            assert!(retry_after_ms > 0 && retry_after_ms <= 60_000, "{retry_after_ms}")
        }
        other => panic!("{other:?}"),
    }
    // m1 could not be produced: its 70 tokens come back and m1 may be admitted again later.
    limiter.refund(&t, "u", "u:c", "m1").await.unwrap();
    assert_eq!(limiter.admit(&t, "u", "u:c", "m2", 70, &limits).await.unwrap(), Admission::Admitted);
    assert_eq!(
        limiter.admit(&t, "u", "u:c", "m3", 101, &limits).await.unwrap(),
        Admission::TooLarge { scope: Scope::User, window: Window::Minute }
    );
}

#[tokio::test]
async fn output_tokens_are_charged_once_per_turn() {
    let limiter = Limiter::new(pool().await);
    let t = unique("t");
    let limits = TenantLimits { user_tokens_per_day: 100, ..minute_limits(0, 0) };
    assert!(limiter.charge(&t, "u", "turn-1", 90).await.unwrap());
    assert!(!limiter.charge(&t, "u", "turn-1", 90).await.unwrap(), "a redelivered FINAL charges nothing");
    assert_eq!(limiter.admit(&t, "u", "u:c", "m1", 10, &limits).await.unwrap(), Admission::Admitted);
    assert!(matches!(limiter.admit(&t, "u", "u:c", "m2", 1, &limits).await.unwrap(), Admission::Refused { .. }));
}

fn reply(tenant: &str, session: &str, seq: i64, chunk_index: i32, kind: OutboundKind) -> OutboundReply {
    OutboundReply {
        tenant_id: tenant.into(),
        session_id: session.into(),
        turn_id: format!("turn-{seq}"),
        seq,
        chunk_index,
        kind,
        text: format!("chunk {chunk_index} "),
        channel: "ws".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn appends_are_idempotent_capped_expiring_and_announced_once() {
    let pool = pool().await;
    let stage = GatewayStage::new(pool.clone(), EventsConfig { max_len: 5, ttl_secs: 600 });
    let (tenant, session) = (unique("t"), "u1:c1".to_string());
    let part = unique("outbound/");
    let client = redis::Client::open(Endpoints::from_env().redis_url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.expect(HINT);
    pubsub.subscribe(notify_channel(&tenant, &session)).await.unwrap();

    let first = reply(&tenant, &session, 1, 0, OutboundKind::Delta);
    assert!(stage.deliver(&first, &part).await.unwrap());
    assert!(!stage.deliver(&first, &part).await.unwrap(), "a redelivery is not appended again");
    assert!(stage.deliver(&reply(&tenant, &session, 1, 1, OutboundKind::Delta), &part).await.unwrap());
    assert!(!stage.deliver(&first, &part).await.unwrap(), "nor is an older record after a newer one");
    let mut fin = reply(&tenant, &session, 1, 2, OutboundKind::Final);
    fin.usage = Some(Usage { output_tokens: 7, ..Default::default() });
    assert!(stage.deliver(&fin, &part).await.unwrap());
    // Kafka-channel replies are for Kafka clients: not copied.
    let mut kafka = reply(&tenant, &session, 2, 0, OutboundKind::Delta);
    kafka.channel = "kafka".into();
    assert!(!stage.deliver(&kafka, &part).await.unwrap());

    let mut conn = pool.clone();
    let key = stream_key(&tenant, &session);
    let ids: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    let ids: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1-8", "1-24", "1-41"]);
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!((1..=600).contains(&ttl), "{ttl}");
    // One notification per appended event, none for the rejected ones.
    let mut announced = Vec::new();
    let mut messages = pubsub.on_message();
    while announced.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(5), messages.next()).await.expect("notification").unwrap();
        announced.push(m.get_payload::<String>().unwrap());
    }
    assert_eq!(announced, ["1-8", "1-24", "1-41"]);
    assert!(tokio::time::timeout(Duration::from_millis(200), messages.next()).await.is_err(), "an extra notification");
    drop(messages);

    // The cap: only the newest 5 events are kept.
    for i in 0..6 {
        stage.deliver(&reply(&tenant, &session, 3, i, OutboundKind::Delta), &part).await.unwrap();
    }
    let len: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 5);
    // ... and the newest trimmed id is recorded, so a resume from before it learns events are missing.
    let mark: String = redis::cmd("GET").arg(trim_mark_key(&tenant, &session)).query_async(&mut conn).await.unwrap();
    assert_eq!(mark, "3-8", "kept: 3-24 .. 3-88");
}

async fn stream_ids(conn: &mut RedisPool, tenant: &str, session: &str) -> Vec<String> {
    let entries: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg(stream_key(tenant, session)).arg("-").arg("+").query_async(conn).await.unwrap();
    entries.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test]
async fn events_lost_with_redis_are_put_back_before_newer_ones() {
    let pool = pool().await;
    let stage = GatewayStage::new(pool.clone(), EventsConfig { max_len: 100, ttl_secs: 600 });
    let (tenant, part, other_part) = (unique("t"), unique("outbound/"), unique("outbound/"));
    let (a, b) = ("u1:a".to_string(), "u2:b".to_string());
    for i in 0..3 {
        stage.deliver(&reply(&tenant, &a, 1, i, OutboundKind::Delta), &part).await.unwrap();
    }
    stage.deliver(&reply(&tenant, &a, 1, 3, OutboundKind::Final), &part).await.unwrap();
    stage.deliver(&reply(&tenant, &b, 1, 0, OutboundKind::Final), &part).await.unwrap();
    let mut conn = pool.clone();
    let before_a = stream_ids(&mut conn, &tenant, &a).await;
    let before_b = stream_ids(&mut conn, &tenant, &b).await;
    assert_eq!((before_a.len(), before_b.len()), (4, 1));

    // Redis comes back empty (for this test's keys: the shared Redis serves other tests too). The marker is
    // per input partition: `turnpike:gw:marker:{topic/partition}`.
    let _: () = redis::pipe()
        .del(stream_key(&tenant, &a))
        .del(stream_key(&tenant, &b))
        .del(format!("turnpike:gw:marker:{part}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // The next record of session b: a's and b's earlier events are put back first, b's new one after.
    assert!(stage.deliver(&reply(&tenant, &b, 2, 0, OutboundKind::Final), &part).await.unwrap());
    assert_eq!(stream_ids(&mut conn, &tenant, &a).await, before_a, "session a's reply is whole again");
    let got_b = stream_ids(&mut conn, &tenant, &b).await;
    assert_eq!(got_b.len(), 2, "{got_b:?}");
    assert_eq!(got_b[0], before_b[0], "b's first reply put back");
    assert!(got_b[1].starts_with("2-"), "then b's new one: {got_b:?}");
    // Nothing twice: a redelivered old record is still refused, and the put-back events are not re-appended.
    assert!(!stage.deliver(&reply(&tenant, &a, 1, 3, OutboundKind::Final), &part).await.unwrap());
    assert_eq!(stream_ids(&mut conn, &tenant, &a).await.len(), 4);

    // A partition this instance appended nothing from has nothing to put back: the record is appended.
    let c = "u3:c".to_string();
    assert!(stage.deliver(&reply(&tenant, &c, 1, 0, OutboundKind::Final), &other_part).await.unwrap());
    assert_eq!(stream_ids(&mut conn, &tenant, &c).await.len(), 1);
    let no_mark: Option<String> =
        redis::cmd("GET").arg(trim_mark_key(&tenant, &c)).query_async(&mut conn).await.unwrap();
    assert_eq!(no_mark, None, "a session's first turn starts its stream: nothing can be missing");

    // An instance that cannot put back (it restarted, or took the partition over) and finds a later turn's
    // stream gone marks the gap, so a client resuming from an earlier event hears `events_expired`.
    let restarted = GatewayStage::new(pool.clone(), EventsConfig { max_len: 100, ttl_secs: 600 });
    let _: () = redis::cmd("DEL").arg(stream_key(&tenant, &c)).query_async(&mut conn).await.unwrap();
    assert!(restarted.deliver(&reply(&tenant, &c, 2, 0, OutboundKind::Final), &other_part).await.unwrap());
    let mark: String = redis::cmd("GET").arg(trim_mark_key(&tenant, &c)).query_async(&mut conn).await.unwrap();
    assert_eq!(mark, "2-0", "every event of turns before 2 may be missing");
}
