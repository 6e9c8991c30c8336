//! One Redis pub/sub connection per gateway instance, subscribed to the notification channels of exactly the
//! sessions this instance holds connections for.
//!
//! A notification only says "this session has new events": connections then read the session's stream from
//! their own last sent id, so a lost notification delays events but never loses them. The hub makes sure
//! none is lost silently anyway: [`Hub::subscribe`] returns only once Redis confirmed the subscription (a
//! connection reads the stream after that, so an event appended in between is either read or notified), and
//! when the pub/sub connection breaks (or stops answering pings) the hub reconnects, subscribes again and
//! wakes every connection to re-read.
//!
//! Subscription changes go through one task in order, so a connection leaving a channel can never undo
//! another one joining it.

use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Members {
    channels: HashMap<String, Vec<(u64, Arc<Notify>)>>,
    next_id: u64,
}

type Done = oneshot::Sender<Result<(), String>>;

/// "Make Redis's subscription to this channel match its membership", with an optional confirmation.
struct Sync(String, Option<Done>);

/// Handle to the hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    members: Arc<Mutex<Members>>,
    commands: mpsc::UnboundedSender<Sync>,
}

/// Membership of one connection in one channel; leaving is dropping it.
pub struct Subscription {
    hub: Hub,
    channel: String,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let empty = {
            let mut m = self.hub.members.lock().unwrap_or_else(|e| e.into_inner());
            match m.channels.get_mut(&self.channel) {
                Some(list) => {
                    list.retain(|(id, _)| *id != self.id);
                    if list.is_empty() {
                        m.channels.remove(&self.channel);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if empty {
            let _ = self.hub.commands.send(Sync(std::mem::take(&mut self.channel), None));
        }
    }
}

impl Hub {
    /// Connects and starts the hub's task, which ends when `shutdown` is cancelled.
    pub async fn start(redis_url: &str, shutdown: CancellationToken) -> Result<Hub, redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let pubsub = client.get_async_pubsub().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Hub { members: Arc::default(), commands: tx };
        tokio::spawn(run(client, pubsub, rx, hub.members.clone(), shutdown));
        Ok(hub)
    }

    /// Wakes `notify` whenever `channel` gets a message, from the moment this returns.
    pub async fn subscribe(&self, channel: String, notify: Arc<Notify>) -> Result<Subscription, String> {
        let id = {
            let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
            m.next_id += 1;
            let id = m.next_id;
            m.channels.entry(channel.clone()).or_default().push((id, notify));
            id
        };
        // From here on, dropping the subscription undoes the membership (also on error).
        let sub = Subscription { hub: self.clone(), channel: channel.clone(), id };
        let (done, confirmed) = oneshot::channel();
        self.commands.send(Sync(channel, Some(done))).map_err(|_| "the hub has stopped".to_string())?;
        confirmed.await.map_err(|_| "the hub has stopped".to_string())??;
        Ok(sub)
    }

    /// Channels with at least one member (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.members.lock().unwrap_or_else(|e| e.into_inner()).channels.len()
    }
}

fn wake(members: &Mutex<Members>, channel: Option<&str>) {
    let m = members.lock().unwrap_or_else(|e| e.into_inner());
    let wake_list = |list: &Vec<(u64, Arc<Notify>)>| list.iter().for_each(|(_, n)| n.notify_one());
    match channel {
        Some(c) => m.channels.get(c).into_iter().for_each(wake_list),
        None => m.channels.values().for_each(wake_list),
    }
}

const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

async fn run(
    client: redis::Client,
    pubsub: redis::aio::PubSub,
    mut commands: mpsc::UnboundedReceiver<Sync>,
    members: Arc<Mutex<Members>>,
    shutdown: CancellationToken,
) {
    let (mut sink, mut stream) = pubsub.split();
    let mut subscribed: HashSet<String> = HashSet::new();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let healthy = tokio::select! {
            _ = shutdown.cancelled() => return,
            cmd = commands.recv() => {
                let Some(first) = cmd else { return };
                // Batch whatever else is queued into one SUBSCRIBE and one UNSUBSCRIBE.
                let mut batch = vec![first];
                while let Ok(more) = commands.try_recv() {
                    batch.push(more);
                }
                apply(&mut sink, &mut subscribed, &members, batch).await
            }
            msg = stream.next() => match msg {
                Some(m) => {
                    wake(&members, Some(m.get_channel_name()));
                    true
                }
                None => false,
            },
            _ = ping.tick() => {
                // A subscribed connection answers PING with an array, an idle one with PONG: any answer will do.
                matches!(tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await, Ok(Ok(_)))
            }
        };
        if healthy {
            continue;
        }
        tracing::warn!("Redis pub/sub connection lost; reconnecting.");
        metrics::counter!("turnpike_gateway_pubsub_reconnects_total").increment(1);
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match reconnect(&client, &members).await {
                Ok((s, st, set)) => {
                    (sink, stream, subscribed) = (s, st, set);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Redis pub/sub reconnect failed.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Whatever was published while disconnected was missed: every connection re-reads its streams.
        wake(&members, None);
    }
}

async fn reconnect(
    client: &redis::Client,
    members: &Mutex<Members>,
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream, HashSet<String>), redis::RedisError> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    let wanted: Vec<String> = members.lock().unwrap_or_else(|e| e.into_inner()).channels.keys().cloned().collect();
    if !wanted.is_empty() {
        sink.subscribe(&wanted).await?;
    }
    Ok((sink, stream, wanted.into_iter().collect()))
}

/// Brings Redis's subscriptions for the batch's channels in line with membership; false when Redis failed.
async fn apply(
    sink: &mut redis::aio::PubSubSink,
    subscribed: &mut HashSet<String>,
    members: &Mutex<Members>,
    batch: Vec<Sync>,
) -> bool {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    {
        let m = members.lock().unwrap_or_else(|e| e.into_inner());
        let channels: HashSet<&String> = batch.iter().map(|Sync(c, _)| c).collect();
        for c in channels {
            match (m.channels.contains_key(c), subscribed.contains(c)) {
                (true, false) => add.push(c.clone()),
                (false, true) => remove.push(c.clone()),
                _ => {}
            }
        }
    }
    let mut result = Ok(());
    if !add.is_empty() {
        result = sink.subscribe(&add).await;
        if result.is_ok() {
            subscribed.extend(add);
        }
    }
    if result.is_ok() && !remove.is_empty() {
        result = sink.unsubscribe(&remove).await;
        if result.is_ok() {
            remove.iter().for_each(|c| {
                subscribed.remove(c);
            });
        }
    }
    let reply = result.as_ref().map(|_| ()).map_err(|e| format!("redis pub/sub: {e}"));
    for Sync(_, done) in batch {
        if let Some(done) = done {
            let _ = done.send(reply.clone());
        }
    }
    result.is_ok()
}
