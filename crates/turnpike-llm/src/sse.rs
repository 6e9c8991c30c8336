//! Incremental Server-Sent Events parser (the subset of the WHATWG algorithm that LLM APIs use).
//!
//! Guarantees: bytes may be fed in arbitrary pieces (a line, a UTF-8 character or a `\r\n` split across
//! network reads gives the same events as one big read); `\n`, `\r\n` and `\r` all end a line; comment
//! lines (`: keep-alive`) are skipped; an event is dispatched on a blank line only, so a half-received
//! event at end of stream is never emitted; memory is bounded by [`MAX_LINE_BYTES`] per line.

/// Longest line we accept. Real chunks are a few hundred bytes; this only stops a runaway peer.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One dispatched event: its `event:` name, if any, and its `data:` lines joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Why the byte stream is not SSE.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("SSE line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("SSE line is not valid UTF-8")]
    InvalidUtf8,
}

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    /// The previous byte was `\r`: a `\n` right after it belongs to the same line ending.
    after_cr: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `bytes` and appends every event they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.push_partial(bytes)?;
                    break;
                }
                Some(end) => {
                    self.push_partial(&bytes[..end])?;
                    self.end_line(out)?;
                    let newline = bytes[end];
                    bytes = &bytes[end + 1..];
                    if newline == b'\r' {
                        match bytes.first() {
                            Some(b'\n') => bytes = &bytes[1..],
                            Some(_) => {}
                            // The `\n` of a `\r\n` may arrive in the next read.
                            None => self.after_cr = true,
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn push_partial(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.line.is_empty() {
            if self.has_data {
                out.push(SseEvent { event: self.event.take(), data: std::mem::take(&mut self.data) });
            }
            self.has_data = false;
            self.event = None;
            return Ok(());
        }
        let result = self.apply_field();
        self.line.clear();
        result
    }

    fn apply_field(&mut self) -> Result<(), SseError> {
        let line = std::str::from_utf8(&self.line).map_err(|_| SseError::InvalidUtf8)?;
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` matter for browser reconnection, which a completion stream never does.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            parser.feed(chunk, &mut out).unwrap();
        }
        out
    }

    fn data(d: &str) -> SseEvent {
        SseEvent { event: None, data: d.to_owned() }
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let input =
            "data: {\"a\":\"é\"}\r\n\r\n: keep-alive\n\nevent: ping\ndata: x\ndata:y\n\rdata: [DONE]\n\ndata: cut"
                .as_bytes();
        let expected =
            vec![data("{\"a\":\"é\"}"), SseEvent { event: Some("ping".into()), data: "x\ny".into() }, data("[DONE]")];
        for piece in 1..=input.len() {
            assert_eq!(parse_in_pieces(input, piece), expected, "piece size {piece}");
        }
    }

    #[test]
    fn rejects_runaway_lines_and_bad_utf8() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        assert_eq!(parser.feed(&vec![b'a'; MAX_LINE_BYTES + 1], &mut out), Err(SseError::LineTooLong));
        let mut parser = SseParser::new();
        assert_eq!(parser.feed(b"data: \xff\n", &mut out), Err(SseError::InvalidUtf8));
    }
}
