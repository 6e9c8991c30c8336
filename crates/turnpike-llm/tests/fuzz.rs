//! Fuzz targets of the three providers' stream parsing (issue 20): the SSE parser and the OpenAI,
//! Anthropic and Gemini decoders behind it, up to the tool-call assembler. A provider (or whatever sits
//! between it and us) may send anything:
//! - the SSE parser gives the same events however the bytes are split into reads;
//! - no stream makes a decoder panic, and no stream makes the assembler hold more than
//!   [`MAX_TOOL_CALLS`] calls (an OpenAI tool-call `index` of 4,000,000,000 used to make it allocate that
//!   many: found by the `openai_tool_call_index` target).
//!
//! Seeds: `tests/corpus/sse/` (each provider's documented stream shapes, errors, CR/CRLF, a BOM).

use turnpike_fuzz::proptest::prelude::*;
use turnpike_llm::anthropic::AnthropicDecoder;
use turnpike_llm::gemini::GeminiDecoder;
use turnpike_llm::openai::wire::{parse_chunk, OpenAiDecoder};
use turnpike_llm::sse::{SseEvent, SseParser};
use turnpike_llm::stream::{ChunkOutcome, Decoder};
use turnpike_llm::types::MAX_TOOL_CALLS;
use turnpike_llm::{LlmEvent, ToolCallAssembler};

fn seeds() -> Vec<Vec<u8>> {
    turnpike_fuzz::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/sse"))
}

/// Parses `bytes` fed in the pieces that `cuts` (sorted offsets) make.
fn parse(bytes: &[u8], cuts: &[usize]) -> (Vec<SseEvent>, bool) {
    let (mut parser, mut out) = (SseParser::new(), Vec::new());
    for w in cuts.windows(2) {
        if parser.feed(&bytes[w[0]..w[1]], &mut out).is_err() {
            return (out, false);
        }
    }
    (out, true)
}

#[test]
fn fuzz_sse_parser() {
    let strategy = (turnpike_fuzz::bytes_from(seeds()), turnpike_fuzz::proptest::collection::vec(any::<usize>(), 0..8));
    turnpike_fuzz::run("sse_parser", 40_000, strategy, |(bytes, cuts)| {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).chain([0, bytes.len()]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let whole = parse(&bytes, &[0, bytes.len()]);
        let pieces = parse(&bytes, &cuts);
        // An error (invalid UTF-8 in a line) ends both at the same line, with the same events before it.
        prop_assert_eq!(pieces, whole, "pieces {:?}", cuts);
        Ok(())
    });
}

/// Runs a whole stream through `decoder` and the assembler, as `stream::open` and `collect` do.
fn decode_stream(bytes: &[u8], mut decoder: impl Decoder) -> Result<(), TestCaseError> {
    let (events, _) = parse(bytes, &[0, bytes.len()]);
    let mut tools = ToolCallAssembler::default();
    for sse in &events {
        match decoder.decode(sse) {
            Ok(ChunkOutcome::Done) | Err(_) => break,
            Ok(ChunkOutcome::Events(evs)) => {
                for e in evs {
                    if let LlmEvent::ToolCallDelta { index, id, name, arguments } = e {
                        tools.push(index, id, name, &arguments);
                    }
                }
            }
        }
    }
    prop_assert!(tools.finish().len() <= MAX_TOOL_CALLS as usize);
    Ok(())
}

#[test]
fn fuzz_provider_stream_decoders() {
    turnpike_fuzz::run("provider_decoders", 30_000, turnpike_fuzz::bytes_from(seeds()), |bytes| {
        decode_stream(&bytes, OpenAiDecoder)?;
        decode_stream(&bytes, AnthropicDecoder::default())?;
        decode_stream(&bytes, GeminiDecoder::default())
    });
}

#[test]
fn fuzz_openai_tool_call_index() {
    turnpike_fuzz::run("openai_tool_call_index", 5_000, (any::<u32>(), 0u32..4), |(index, small)| {
        let index = if small == 0 { index % (MAX_TOOL_CALLS + 2) } else { index };
        let data = format!(
            r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{index},"id":"c","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}"#
        );
        match parse_chunk(&data) {
            Ok(ChunkOutcome::Events(_)) => prop_assert!(index < MAX_TOOL_CALLS, "index {index} accepted"),
            Ok(ChunkOutcome::Done) => prop_assert!(false, "not a done marker"),
            Err(_) => prop_assert!(index >= MAX_TOOL_CALLS, "index {index} refused"),
        }
        decode_stream(format!("data: {data}\n\n").as_bytes(), OpenAiDecoder)
    });
}

/// Regression (`openai_tool_call_index`): a huge index is refused by the decoder and dropped by the
/// assembler instead of allocating up to it.
#[test]
fn a_tool_call_index_past_the_limit_allocates_nothing() {
    let data = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":4000000000,"function":{"name":"f"}}]}}]}"#;
    assert!(parse_chunk(data).is_err());
    let mut tools = ToolCallAssembler::default();
    tools.push(4_000_000_000, None, Some("f".into()), "{}");
    tools.push(1, None, Some("g".into()), "{}");
    let calls = tools.finish();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].name, "g");
}
