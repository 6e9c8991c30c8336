//! Chunking: a document's structural blocks (paragraphs, lists, code under a heading path) grouped into
//! chunks of bounded size.
//!
//! Guarantee: a chunk never exceeds `max_tokens` estimated tokens and never spans two sections (a change
//! of heading path always starts a new chunk), so its location names one place in the source. Blocks are
//! kept whole when they fit; a longer block is cut at sentence ends (else at spaces, else anywhere on a
//! character boundary). A chunk that continues a section starts with the last sentence(s) of the previous
//! chunk, at most `overlap_tokens`, so a fact cut across the boundary is still whole in one chunk; the
//! repeated prefix's length is recorded so the whole knowledge base can be reassembled without it.

use crate::estimate_tokens;

/// A structural unit of a document under its heading path.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub headings: Vec<String>,
    pub anchor: Option<String>,
    pub text: String,
    /// 1-based inclusive line range in the source.
    pub lines: (u32, u32),
}

/// Chunk size bounds, in estimated tokens.
#[derive(Clone, Copy, Debug)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    /// ~350 tokens: big enough to hold a whole FAQ answer or policy clause, small enough that four of them
    /// stay within the ~1,500-token knowledge share of an 8K prompt.
    fn default() -> Self {
        ChunkConfig { max_tokens: 350, overlap_tokens: 40 }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub headings: Vec<String>,
    pub anchor: Option<String>,
    pub text: String,
    pub lines: (u32, u32),
    /// Bytes at the start of `text` repeated from the previous chunk (0 for a section's first chunk).
    pub overlap_bytes: usize,
}

/// A block, or a piece of an over-long one.
struct Piece<'a> {
    block: usize,
    text: &'a str,
    lines: (u32, u32),
}

/// Groups `blocks` (in document order) into chunks.
pub fn chunk_blocks(blocks: &[Block], cfg: ChunkConfig) -> Vec<Chunk> {
    let max_bytes = cfg.max_tokens.max(8) * 4;
    let overlap_bytes = (cfg.overlap_tokens * 4).min(max_bytes / 4);
    // Room for the overlap and the separator that follows it.
    let piece_bytes = max_bytes - overlap_bytes - 2;
    let mut pieces = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let text = b.text.trim();
        if text.is_empty() {
            continue;
        }
        let spans = split(text, piece_bytes);
        if spans.len() == 1 {
            pieces.push(Piece { block: i, text, lines: b.lines });
            continue;
        }
        // A block's text keeps its source line breaks (HTML collapses them: its pieces stay on its lines).
        for (start, end) in spans {
            let first = (b.lines.0 + newlines(&text[..start])).min(b.lines.1);
            let last = (b.lines.0 + newlines(&text[..end])).min(b.lines.1);
            pieces.push(Piece { block: i, text: text[start..end].trim(), lines: (first, last.max(first)) });
        }
    }

    let mut chunks: Vec<Chunk> = Vec::new();
    let mut cur: Option<(Chunk, usize)> = None; // the chunk being filled and the block of its last piece
    for p in pieces {
        let b = &blocks[p.block];
        let sep = |last_block: usize| if last_block == p.block { " " } else { "\n\n" };
        if let Some((c, last_block)) = cur.as_mut() {
            let same_section = c.headings == b.headings && c.anchor == b.anchor;
            if same_section && c.text.len() + sep(*last_block).len() + p.text.len() <= max_bytes {
                c.text.push_str(sep(*last_block));
                c.text.push_str(p.text);
                c.lines.1 = c.lines.1.max(p.lines.1);
                *last_block = p.block;
                continue;
            }
        }
        // Start a new chunk; carry an overlap when it continues the same section.
        let mut next = Chunk {
            headings: b.headings.clone(),
            anchor: b.anchor.clone(),
            text: String::new(),
            lines: p.lines,
            overlap_bytes: 0,
        };
        if let Some((prev, last_block)) = cur.take() {
            if prev.headings == next.headings && prev.anchor == next.anchor && overlap_bytes > 0 {
                let t = tail(&prev.text, overlap_bytes);
                if !t.is_empty() {
                    next.text.push_str(t);
                    next.text.push_str(sep(last_block));
                    next.overlap_bytes = next.text.len();
                    next.lines.0 = prev.lines.1.saturating_sub(newlines(t)).max(prev.lines.0).min(p.lines.0);
                }
            }
            chunks.push(prev);
        }
        next.text.push_str(p.text);
        cur = Some((next, p.block));
    }
    chunks.extend(cur.map(|(c, _)| c));
    debug_assert!(chunks.iter().all(|c| estimate_tokens(&c.text) <= cfg.max_tokens.max(8)));
    chunks
}

fn newlines(s: &str) -> u32 {
    s.bytes().filter(|b| *b == b'\n').count() as u32
}

/// Sentence spans of `text`: a sentence ends after `.`, `!` or `?` followed by whitespace, or at a newline.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        let end_here = c == '\n' || (c.is_whitespace() && matches!(prev, '.' | '!' | '?'));
        if end_here && i > start {
            out.push((start, i));
            start = i;
        }
        prev = c;
    }
    if start < text.len() {
        out.push((start, text.len()));
    }
    out
}

/// Cuts `text` into spans of at most `limit` bytes: whole sentences where possible.
fn split(text: &str, limit: usize) -> Vec<(usize, usize)> {
    if text.len() <= limit {
        return vec![(0, text.len())];
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (s, e) in sentences(text) {
        match out.last_mut() {
            Some(last) if e - last.0 <= limit => last.1 = e,
            _ if e - s <= limit => out.push((s, e)),
            _ => out.extend(hard_split(text, s, e, limit)),
        }
    }
    out
}

/// A sentence longer than `limit`: cut at spaces, or anywhere on a character boundary.
fn hard_split(text: &str, mut s: usize, e: usize, limit: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    while e - s > limit {
        let window = &text[s..floor_char(text, s + limit)];
        let cut = match window.rfind(char::is_whitespace) {
            Some(i) if i > 0 => s + i,
            _ => s + window.len().max(text[s..].chars().next().map_or(1, char::len_utf8)),
        };
        out.push((s, cut));
        s = cut;
    }
    out.push((s, e));
    out
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The last sentence(s) of `text` within `max` bytes, else its last words within `max` bytes.
fn tail(text: &str, max: usize) -> &str {
    let from = text.len().saturating_sub(max);
    let sentence_start = sentences(text).into_iter().map(|(s, _)| s).find(|s| *s >= from);
    let start = sentence_start.unwrap_or_else(|| {
        let f = floor_char(text, from.max(1).min(text.len()));
        text[f..].find(char::is_whitespace).map_or(text.len(), |i| f + i)
    });
    text[start..].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(h: &[&str], text: &str, lines: (u32, u32)) -> Block {
        Block { headings: h.iter().map(|s| s.to_string()).collect(), anchor: None, text: text.into(), lines }
    }

    #[test]
    fn small_blocks_of_one_section_share_a_chunk_and_sections_never_mix() {
        let blocks = [
            block(&["Returns"], "Returns are free.", (3, 3)),
            block(&["Returns"], "Use the label in the box.", (5, 6)),
            block(&["Returns", "Refunds"], "Refunds take 5 days.", (9, 9)),
        ];
        let chunks = chunk_blocks(&blocks, ChunkConfig::default());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].text, "Returns are free.\n\nUse the label in the box.");
        assert_eq!(chunks[0].lines, (3, 6));
        assert_eq!(chunks[1].headings, vec!["Returns", "Refunds"]);
        assert_eq!((chunks[1].lines, chunks[1].overlap_bytes), ((9, 9), 0), "no overlap across sections");
    }

    #[test]
    fn long_sections_are_cut_at_sentences_with_a_bounded_overlap() {
        let text: String =
            (1..=60).map(|i| format!("Sentence number {i} explains one more detail of the policy.\n")).collect();
        let blocks = [block(&["Policy"], &text, (10, 69))];
        let cfg = ChunkConfig { max_tokens: 100, overlap_tokens: 20 };
        let chunks = chunk_blocks(&blocks, cfg);
        assert!(chunks.len() >= 7, "{}", chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            assert!(estimate_tokens(&c.text) <= 100, "chunk {i} too big: {}", c.text.len());
            assert!(c.text.ends_with("policy."), "chunk {i} ends mid-sentence: {:?}", c.text);
            assert!(c.lines.0 >= 10 && c.lines.1 <= 69 && c.lines.0 <= c.lines.1, "{:?}", c.lines);
            if i > 0 {
                let overlap = &c.text[..c.overlap_bytes];
                assert!(overlap.len() <= 80 + 2, "{overlap:?}");
                assert!(chunks[i - 1].text.contains(overlap.trim()), "overlap repeats the previous chunk's end");
            }
        }
        // Without the overlaps, the chunks give back every sentence once, in order.
        let rebuilt: String = chunks.iter().map(|c| c.text[c.overlap_bytes..].trim().to_string() + " ").collect();
        for i in 1..=60 {
            assert_eq!(rebuilt.matches(&format!("number {i} explains")).count(), 1, "sentence {i}");
        }
        let first_line = chunks[1].text[chunks[1].overlap_bytes..].split(' ').nth(2).unwrap();
        let n: u32 = first_line.parse().unwrap();
        assert!(chunks[1].lines.0 <= 9 + n, "line range covers the chunk's first sentence");
    }

    #[test]
    fn a_sentence_longer_than_a_chunk_is_cut_at_spaces_or_characters() {
        let words = "word ".repeat(400);
        let chunks = chunk_blocks(&[block(&[], &words, (1, 1))], ChunkConfig { max_tokens: 50, overlap_tokens: 0 });
        assert!(chunks.len() >= 10 && chunks.iter().all(|c| c.text.len() <= 200 && !c.text.contains("wo rd")));
        let cjk = "退货政策".repeat(200);
        let chunks = chunk_blocks(&[block(&[], &cjk, (1, 1))], ChunkConfig { max_tokens: 50, overlap_tokens: 10 });
        assert!(chunks.iter().all(|c| c.text.len() <= 200), "multi-byte text is cut on char boundaries");
    }
}
