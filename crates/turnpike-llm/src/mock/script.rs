//! Per-request scripting of the mock: `[[mock:key=value]]` directives in the last user message, or the
//! same options as `x-mock-*` headers.
//!
//! Directives in the message win over headers: the message is what a pipeline test controls end to end,
//! headers are a convenience for direct HTTP tests. Unknown keys and unparsable values are ignored, so a
//! typo degrades to the default reply instead of a confusing failure inside someone else's test.

use std::time::Duration;

use axum::http::HeaderMap;

/// A misbehaviour to act out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and an OpenAI error body (429 adds `Retry-After: 1`).
    Status(u16),
    /// Stream 3 chunks, then drop the connection without `[DONE]`.
    Cut,
    /// Like `Cut` for a new reply; a continuation request ([`super`]) is answered whole: a provider whose
    /// stream broke once and that then finishes the reply when asked to continue it.
    CutOnce,
    /// Stream 2 chunks, then send nothing more until the client gives up.
    Stall,
    /// Stream 2 chunks, then an `{"error": ...}` event inside the 200 stream.
    ErrorEvent,
    /// Stream 2 chunks, then a chunk that is not valid JSON.
    Malformed,
}

impl Fault {
    pub(crate) fn parse(value: &str) -> Option<Fault> {
        match value.trim() {
            "cut" => Some(Fault::Cut),
            "cut_once" => Some(Fault::CutOnce),
            "stall" => Some(Fault::Stall),
            "error_event" => Some(Fault::ErrorEvent),
            "malformed" => Some(Fault::Malformed),
            code => code.parse::<u16>().ok().filter(|c| (400..=599).contains(c)).map(Fault::Status),
        }
    }
}

/// Options for one request; `None` means "use the server's configuration".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// Reply with exactly this text, streamed word by word.
    pub reply: Option<String>,
    pub fault: Option<Fault>,
    pub ttft: Option<Duration>,
    pub tokens_per_sec: Option<u32>,
    /// Length of the generated reply, in tokens.
    pub tokens: Option<usize>,
    /// Call this tool (`name {json arguments}`) instead of answering; once the request carries a tool
    /// result, answer `Tool result: <result>`.
    pub tool: Option<(String, String)>,
    /// Answer with the first sentence of the request's earlier messages (system, summary, history: not
    /// the last user message) that contains this word: a stand-in for a model that reads its context.
    pub recall: Option<String>,
}

impl Script {
    /// Reads every `[[mock:key=value]]` in `text`; a later directive overrides an earlier one.
    pub fn from_message(text: &str) -> Script {
        let mut script = Script::default();
        let mut rest = text;
        while let Some(start) = rest.find("[[mock:") {
            let body = &rest[start + "[[mock:".len()..];
            let Some(end) = body.find("]]") else { break };
            if let Some((key, value)) = body[..end].split_once('=') {
                script.set(key.trim(), value);
            }
            rest = &body[end + 2..];
        }
        script
    }

    /// Reads `x-mock-reply`, `x-mock-fault`, `x-mock-ttft-ms`, `x-mock-tokens-per-sec`, `x-mock-tokens`,
    /// `x-mock-tool`, `x-mock-recall`.
    pub fn from_headers(headers: &HeaderMap) -> Script {
        let mut script = Script::default();
        for (header, key) in [
            ("x-mock-reply", "reply"),
            ("x-mock-fault", "fault"),
            ("x-mock-ttft-ms", "ttft"),
            ("x-mock-tokens-per-sec", "tps"),
            ("x-mock-tokens", "tokens"),
            ("x-mock-tool", "tool"),
            ("x-mock-recall", "recall"),
        ] {
            if let Some(value) = headers.get(header).and_then(|v| v.to_str().ok()) {
                script.set(key, value);
            }
        }
        script
    }

    fn set(&mut self, key: &str, value: &str) {
        match key {
            "reply" => self.reply = Some(value.to_owned()),
            "fault" => self.fault = Fault::parse(value).or(self.fault),
            "ttft" => self.ttft = value.trim().parse().ok().map(Duration::from_millis).or(self.ttft),
            "tps" => self.tokens_per_sec = value.trim().parse().ok().or(self.tokens_per_sec),
            "tokens" => self.tokens = value.trim().parse().ok().or(self.tokens),
            "tool" => {
                let value = value.trim();
                let (name, args) = value.split_once(char::is_whitespace).unwrap_or((value, "{}"));
                if !name.is_empty() {
                    self.tool = Some((name.to_owned(), args.trim().to_owned()));
                }
            }
            "recall" => {
                let word = value.trim();
                if !word.is_empty() {
                    self.recall = Some(word.to_owned());
                }
            }
            _ => {}
        }
    }

    /// Field by field, `self` where set, else `fallback`.
    pub fn or(self, fallback: Script) -> Script {
        Script {
            reply: self.reply.or(fallback.reply),
            fault: self.fault.or(fallback.fault),
            ttft: self.ttft.or(fallback.ttft),
            tokens_per_sec: self.tokens_per_sec.or(fallback.tokens_per_sec),
            tokens: self.tokens.or(fallback.tokens),
            tool: self.tool.or(fallback.tool),
            recall: self.recall.or(fallback.recall),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn parses_directives_anywhere_in_the_message() {
        let script = Script::from_message("hi [[mock:reply=some text here]] and [[mock:fault=429]][[mock:ttft=500]]");
        assert_eq!(script.reply.as_deref(), Some("some text here"));
        assert_eq!(script.fault, Some(Fault::Status(429)));
        assert_eq!(script.ttft, Some(Duration::from_millis(500)));
        assert_eq!(Script::from_message("[[mock:fault=cut]]").fault, Some(Fault::Cut));
        assert_eq!(Script::from_message("[[mock:fault=cut_once]]").fault, Some(Fault::CutOnce));
        assert_eq!(
            Script::from_message(r#"[[mock:tool=lookup_order {"order": "42"}]]"#).tool,
            Some(("lookup_order".into(), r#"{"order": "42"}"#.into()))
        );
        assert_eq!(Script::from_message("[[mock:fault=bogus]] [[mock:nope=1]] [[mock:unclosed"), Script::default());
        assert_eq!(
            Script::from_message("what did you promise? [[mock:recall= refund ]]").recall.as_deref(),
            Some("refund")
        );
        assert_eq!(Script::from_message("[[mock:recall=]]").recall, None);
    }

    #[test]
    fn message_wins_over_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-fault", HeaderValue::from_static("500"));
        headers.insert("x-mock-ttft-ms", HeaderValue::from_static("10"));
        let script = Script::from_message("[[mock:fault=stall]]").or(Script::from_headers(&headers));
        assert_eq!(script.fault, Some(Fault::Stall));
        assert_eq!(script.ttft, Some(Duration::from_millis(10)));
    }
}
