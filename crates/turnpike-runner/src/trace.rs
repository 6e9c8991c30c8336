//! Tracing a turn across stages: W3C trace context in Kafka headers, one span per stage, OTLP export.
//!
//! Guarantee: every record a stage emits carries a `traceparent` header (W3C Trace Context, version 00)
//! whose trace id is its input's — the producer's own header on an inbound turn (a gateway or an enterprise
//! producer), else a new trace started by the first stage — and whose parent id is the span of the stage
//! that made it. So a turn is one trace from the inbound record to the outbound one, and a stage never
//! touches the header: the runner reads it and the [`crate::Emitter`] writes it.
//!
//! Each processing attempt of a record is a span (`<stage> process`, kind consumer) with the turn id, the
//! stage, the input's topic, partition and offset, and its outcome. Spans are exported over OTLP/HTTP
//! (JSON encoding, `POST {endpoint}/v1/traces`) when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise none is recorded. Export is best effort and never
//! slows a stage: spans go through a bounded queue (dropped and counted when it is full) to one task that
//! sends batches every second. Span attributes carry ids and the bounded tenant label, never message text.
//!
//! The `opentelemetry` crates are not used (yet): this is the whole of what the runner needs (a header, a
//! span per record, a batch exporter) with the HTTP client and JSON it already has, so start-up, memory and
//! build time stay as they were. Moving to the SDK later changes no header and no span a receiver sees.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

/// The header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: the trace a record belongs to and the span that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` value; `None` for anything the W3C specification says to ignore (bad
    /// lengths, upper-case or non-hex digits, version ff, all-zero ids, extra fields on version 00).
    pub fn parse(header: &str) -> Option<TraceContext> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
            return None;
        }
        if parts[0] == "00" && parts.len() != 4 {
            return None;
        }
        let version = hex::<1>(parts[0])?;
        let trace_id = hex::<16>(parts[1])?;
        let span_id = hex::<8>(parts[2])?;
        let flags = hex::<1>(parts[3])?;
        if version == [0xff] || trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, span_id, sampled: flags[0] & 1 == 1 })
    }

    /// The `traceparent` value (version 00).
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", to_hex(&self.trace_id), to_hex(&self.span_id), u8::from(self.sampled))
    }

    /// A new span of `parent`'s trace, or the root span of a new trace.
    pub fn child_of(parent: Option<&TraceContext>) -> TraceContext {
        let random = uuid::Uuid::new_v4().into_bytes();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&random[..8]);
        span_id[0] |= 1; // never all zero
        match parent {
            Some(p) => TraceContext { trace_id: p.trace_id, span_id, sampled: p.sampled },
            None => {
                let mut trace_id = uuid::Uuid::new_v4().into_bytes();
                trace_id[0] |= 1;
                TraceContext { trace_id, span_id, sampled: true }
            }
        }
    }

    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One finished stage span.
#[derive(Debug)]
pub struct SpanRecord {
    pub ctx: TraceContext,
    pub parent: Option<[u8; 8]>,
    pub stage: &'static str,
    pub turn_id: String,
    pub tenant: &'static str,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub start: SystemTime,
    pub end: SystemTime,
    /// The error code when the attempt failed.
    pub error: Option<&'static str>,
}

/// Spans waiting for the exporter, at most.
const QUEUE: usize = 8192;
/// Spans per export request, at most.
const BATCH: usize = 512;

static EXPORTER: OnceLock<Option<mpsc::Sender<SpanRecord>>> = OnceLock::new();

/// Where spans go: the OTLP/HTTP traces URL from the standard environment variables, if any.
pub fn endpoint_from_env() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| format!("{}/v1/traces", e.trim_end_matches('/'))))
}

/// Whether spans are exported (the exporter is started on first use, inside the Tokio runtime).
pub fn enabled() -> bool {
    sender().is_some()
}

fn sender() -> Option<&'static mpsc::Sender<SpanRecord>> {
    EXPORTER
        .get_or_init(|| {
            let url = endpoint_from_env()?;
            let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "turnpike".into());
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(export_loop(url.clone(), service, rx));
            tracing::info!(%url, "Exporting stage spans over OTLP/HTTP.");
            Some(tx)
        })
        .as_ref()
}

/// Queues a finished span for export; drops it (counted) when the queue is full or export is off.
pub fn record(span: SpanRecord) {
    if let Some(tx) = sender() {
        if tx.try_send(span).is_err() {
            metrics::counter!("turnpike_trace_spans_dropped_total").increment(1);
        }
    }
}

async fn export_loop(url: String, service: String, mut rx: mpsc::Receiver<SpanRecord>) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "No HTTP client for span export; spans are not exported."),
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_send = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(s)) => batch.push(s),
            Ok(None) if batch.is_empty() => return,
            Ok(None) | Err(_) => {}
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        // A full batch, or whatever there is once a second (a span leaves at most ~2 s after it ended).
        if batch.is_empty() || (batch.len() < BATCH && last_send.elapsed() < Duration::from_secs(1)) {
            continue;
        }
        last_send = tokio::time::Instant::now();
        let body = otlp_json(&service, &batch);
        let n = batch.len() as u64;
        batch.clear();
        match client.post(&url).header("content-type", "application/json").body(body).send().await {
            Ok(r) if r.status().is_success() => metrics::counter!("turnpike_trace_spans_exported_total").increment(n),
            Ok(r) => {
                metrics::counter!("turnpike_trace_spans_dropped_total").increment(n);
                tracing::warn!(status = %r.status(), "OTLP receiver refused spans.");
            }
            Err(e) => {
                metrics::counter!("turnpike_trace_spans_dropped_total").increment(n);
                tracing::warn!(error = %e, "Cannot export spans.");
            }
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos().to_string()
}

/// The OTLP/HTTP JSON body of an `ExportTraceServiceRequest` (ids in hex, times as decimal strings).
pub fn otlp_json(service: &str, spans: &[SpanRecord]) -> String {
    let attr = |k: &str, v: serde_json::Value| serde_json::json!({"key": k, "value": v});
    let s = |v: &str| serde_json::json!({ "stringValue": v });
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|r| {
            let mut attributes = vec![
                attr("turnpike.stage", s(r.stage)),
                attr("turnpike.turn_id", s(&r.turn_id)),
                attr("turnpike.tenant", s(r.tenant)),
                attr("messaging.system", s("kafka")),
                attr("messaging.destination.name", s(&r.topic)),
                attr("messaging.kafka.partition", serde_json::json!({ "intValue": r.partition.to_string() })),
                attr("messaging.kafka.offset", serde_json::json!({ "intValue": r.offset.to_string() })),
            ];
            if let Some(code) = r.error {
                attributes.push(attr("error.type", s(code)));
            }
            serde_json::json!({
                "traceId": to_hex(&r.ctx.trace_id),
                "spanId": to_hex(&r.ctx.span_id),
                "parentSpanId": r.parent.map(|p| to_hex(&p)).unwrap_or_default(),
                "name": format!("{} process", r.stage),
                "kind": 5,
                "startTimeUnixNano": nanos(r.start),
                "endTimeUnixNano": nanos(r.end),
                "attributes": attributes,
                "status": { "code": if r.error.is_some() { 2 } else { 1 } },
            })
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": { "attributes": [attr("service.name", s(service))] },
            "scopeSpans": [{ "scope": { "name": "turnpike-runner" }, "spans": spans }],
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_specifications_example_and_writes_it_back() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(h).unwrap();
        assert!(c.sampled);
        assert_eq!(c.header(), h);
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn ignores_what_the_specification_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version may add fields: the first four are read.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more").is_some());
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_span_of_its_own() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let child = TraceContext::child_of(Some(&parent));
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert!(!child.sampled, "the sampling decision travels");
        let root = TraceContext::child_of(None);
        assert_ne!(root.trace_id, [0; 16]);
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
    }

    #[test]
    fn the_otlp_body_has_hex_ids_and_the_turn() {
        let ctx = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let now = SystemTime::now();
        let span = SpanRecord {
            ctx,
            parent: Some([1, 2, 3, 4, 5, 6, 7, 8]),
            stage: "route",
            turn_id: "t-1".into(),
            tenant: "other",
            topic: "turnpike.prompts".into(),
            partition: 3,
            offset: 42,
            start: now,
            end: now,
            error: None,
        };
        let body: serde_json::Value = serde_json::from_str(&otlp_json("turnpike", &[span])).unwrap();
        let s = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "0102030405060708");
        assert_eq!(s["name"], "route process");
        assert!(s["attributes"].as_array().unwrap().iter().any(|a| a["value"]["stringValue"] == "t-1"));
    }
}
