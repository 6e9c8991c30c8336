//! Markdown: ATX (`## Title`) and setext (underlined) headings open sections; blank lines separate blocks;
//! fenced code stays one block and never opens a heading; YAML front matter is skipped (its `title:`
//! names the document). Inline markup is kept: the model reads Markdown well and the index ignores it.

use super::{heading_path, open_heading};
use crate::Block;

pub(super) fn blocks(text: &str, fallback_title: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut title = fallback_title.to_string();
    let mut i = 0;
    if lines.first().map(|l| l.trim_end()) == Some("---") {
        if let Some(end) = lines.iter().skip(1).position(|l| matches!(l.trim_end(), "---" | "...")) {
            for l in &lines[1..=end] {
                if let Some(t) = l.strip_prefix("title:") {
                    title = t.trim().trim_matches(['"', '\'']).to_string();
                }
            }
            i = end + 2;
        }
    }

    let mut out = Vec::new();
    let mut open: Vec<(u8, String)> = Vec::new();
    let mut para: Vec<&str> = Vec::new();
    let mut para_start = 0usize;
    let mut fence: Option<&str> = None;
    let flush = |para: &mut Vec<&str>, start: usize, open: &[(u8, String)], out: &mut Vec<Block>| {
        if para.iter().any(|l| !l.trim().is_empty()) {
            out.push(Block {
                headings: heading_path(&title, open),
                anchor: None,
                text: para.join("\n"),
                lines: (start as u32 + 1, (start + para.len()) as u32),
            });
        }
        para.clear();
    };
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(marker) = fence {
            para.push(line);
            if indent <= 3 && trimmed.starts_with(marker) {
                fence = None;
                flush(&mut para, para_start, &open, &mut out);
            }
            i += 1;
            continue;
        }
        if indent <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            flush(&mut para, para_start, &open, &mut out);
            fence = Some(&trimmed[..3]);
            para_start = i;
            para.push(line);
            i += 1;
            continue;
        }
        if let Some((level, heading)) = atx_heading(line) {
            flush(&mut para, para_start, &open, &mut out);
            open_heading(&mut open, level, heading);
            i += 1;
            continue;
        }
        if let Some(level) = setext_underline(line).filter(|_| para.len() == 1) {
            let heading = para.pop().unwrap_or_default().trim().to_string();
            open_heading(&mut open, level, heading);
            i += 1;
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut para, para_start, &open, &mut out);
        } else {
            if para.is_empty() {
                para_start = i;
            }
            para.push(line);
        }
        i += 1;
    }
    flush(&mut para, para_start, &open, &mut out);
    out
}

/// `## Title ##` → (2, "Title"). Up to three spaces of indent; a space must follow the hashes.
fn atx_heading(line: &str) -> Option<(u8, String)> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let hashes = trimmed.bytes().take_while(|b| *b == b'#').count();
    let rest = &trimmed[hashes..];
    if !(1..=6).contains(&hashes) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let text = rest.trim().trim_end_matches('#').trim_end();
    Some((hashes as u8, text.replace("**", "").replace('`', "")))
}

/// `====` → level 1, `----` → level 2 (only directly under a one-line paragraph).
fn setext_underline(line: &str) -> Option<u8> {
    let t = line.trim();
    if t.len() >= 2 && t.bytes().all(|b| b == b'=') {
        Some(1)
    } else if t.len() >= 2 && t.bytes().all(|b| b == b'-') {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "---\ntitle: \"Returns\"\n---\nIntro line one.\nIntro line two.\n\n## Refund timing\n\n\
        Refunds take 5 days.\n\n```\n# not a heading\n```\n\nSub section\n-----------\nText under setext.\n\n\
        ### Deep #\nDeep text.\n## Next\nNext text.\n";

    #[test]
    fn headings_paths_and_line_ranges() {
        let b = blocks(DOC, "fallback");
        let got: Vec<(Vec<&str>, &str, (u32, u32))> =
            b.iter().map(|b| (b.headings.iter().map(String::as_str).collect(), b.text.as_str(), b.lines)).collect();
        assert_eq!(
            got,
            vec![
                (vec!["Returns"], "Intro line one.\nIntro line two.", (4, 5)),
                (vec!["Returns", "Refund timing"], "Refunds take 5 days.", (9, 9)),
                (vec!["Returns", "Refund timing"], "```\n# not a heading\n```", (11, 13)),
                (vec!["Returns", "Sub section"], "Text under setext.", (17, 17)),
                (vec!["Returns", "Sub section", "Deep"], "Deep text.", (20, 20)),
                (vec!["Returns", "Next"], "Next text.", (22, 22)),
            ]
        );
    }

    #[test]
    fn an_h1_replaces_the_fallback_title() {
        let b = blocks("# Warranty\n\nTwo years.\n", "warranty file");
        assert_eq!(b[0].headings, vec!["Warranty"]);
        assert_eq!(b[0].lines, (3, 3));
        assert!(atx_heading("#hashtag").is_none() && atx_heading("    # code").is_none());
    }
}
