//! HTML: `<h1>`–`<h3>` open sections (their `id` becomes the citation's anchor); block elements (p, li,
//! tr, pre, div, h4–h6, ...) separate blocks; text is whitespace-collapsed (except in `<pre>`), character
//! references decoded; script, style, template, svg, nav and footer content is dropped (page chrome, not
//! knowledge). Line ranges come from the tokenizer's byte spans.

use super::{heading_path, open_heading};
use crate::Block;
use html5gum::{DefaultEmitter, Token, Tokenizer};

/// Elements whose content is never knowledge.
const SKIP: &[&str] = &["script", "style", "template", "svg", "nav", "footer", "noscript", "iframe"];
/// Elements that start or end a block.
const BLOCK: &[&str] = &[
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "aside",
    "header",
    "blockquote",
    "pre",
    "br",
    "hr",
    "h4",
    "h5",
    "h6",
    "details",
    "summary",
    "figure",
    "figcaption",
    "form",
    "body",
];

struct Parser<'a> {
    src: &'a str,
    title: String,
    in_title: bool,
    skip_depth: usize,
    pre_depth: usize,
    open: Vec<(u8, String)>,
    anchor: Option<String>,
    /// The heading being read: (level, text, id).
    heading: Option<(u8, String, Option<String>)>,
    text: String,
    span: Option<(usize, usize)>,
    out: Vec<Block>,
}

impl Parser<'_> {
    fn line_of(&self, byte: usize) -> u32 {
        let byte = byte.min(self.src.len());
        self.src.as_bytes()[..byte].iter().filter(|b| **b == b'\n').count() as u32 + 1
    }

    fn push_text(&mut self, s: &str, start: usize, end: usize) {
        if self.pre_depth > 0 {
            self.text.push_str(s);
        } else {
            // Collapse whitespace runs but keep them: "a <b>b</b>" stays two words, "Hel<b>lo</b>" one.
            for c in s.chars() {
                if !c.is_whitespace() {
                    self.text.push(c);
                } else if !self.text.is_empty() && !self.text.ends_with([' ', '\n']) {
                    self.text.push(' ');
                }
            }
        }
        if !s.trim().is_empty() {
            // Edge whitespace is literal in the source (never a character reference), so it can be
            // stepped over by its length; the span then starts and ends on text.
            let start = start + (s.len() - s.trim_start_matches(|c: char| c.is_ascii_whitespace()).len());
            let end = end - (s.len() - s.trim_end_matches(|c: char| c.is_ascii_whitespace()).len());
            self.span = Some(self.span.map_or((start, end), |(a, _)| (a, end)));
        }
    }

    fn flush(&mut self) {
        let text = std::mem::take(&mut self.text);
        if let Some((start, end)) = self.span.take() {
            let text = text.trim();
            if !text.is_empty() {
                self.out.push(Block {
                    headings: heading_path(&self.title, &self.open),
                    anchor: self.anchor.clone(),
                    text: text.to_string(),
                    lines: (self.line_of(start), self.line_of(end.saturating_sub(1))),
                });
            }
        }
    }
}

pub(super) fn blocks(src: &str, fallback_title: &str) -> Vec<Block> {
    let mut emitter = DefaultEmitter::<usize>::new_with_span();
    emitter.naively_switch_states(true);
    let mut p = Parser {
        src,
        title: String::new(),
        in_title: false,
        skip_depth: 0,
        pre_depth: 0,
        open: Vec::new(),
        anchor: None,
        heading: None,
        text: String::new(),
        span: None,
        out: Vec::new(),
    };
    let mut page_title = String::new();
    for token in Tokenizer::new_with_emitter(src, emitter).flatten() {
        match token {
            Token::StartTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                if SKIP.contains(&name.as_str()) && !tag.self_closing {
                    p.skip_depth += 1;
                } else if p.skip_depth > 0 {
                } else if name == "title" {
                    p.in_title = true;
                } else if let Some(level) = heading_level(&name) {
                    p.flush();
                    let id = tag.attributes.get(b"id".as_slice()).map(|v| String::from_utf8_lossy(v).into_owned());
                    p.heading = Some((level, String::new(), id));
                } else if BLOCK.contains(&name.as_str()) {
                    p.flush();
                    if name == "pre" {
                        p.pre_depth += 1;
                    }
                } else if matches!(name.as_str(), "td" | "th") && !p.text.is_empty() {
                    p.text.push_str(" | ");
                }
            }
            Token::EndTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                if SKIP.contains(&name.as_str()) {
                    p.skip_depth = p.skip_depth.saturating_sub(1);
                } else if p.skip_depth > 0 {
                } else if name == "title" {
                    p.in_title = false;
                } else if let Some(level) = heading_level(&name) {
                    if let Some((open_level, text, id)) = p.heading.take() {
                        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                        if p.title.is_empty() {
                            // The first heading names the page when it is an h1; else the <title> does.
                            p.title =
                                if open_level == 1 { text.clone() } else { title_or(&page_title, fallback_title) };
                        }
                        if !text.is_empty() {
                            open_heading(&mut p.open, open_level.min(level).max(1), text);
                            p.anchor = id;
                        }
                    }
                } else if BLOCK.contains(&name.as_str()) {
                    p.flush();
                    if name == "pre" {
                        p.pre_depth = p.pre_depth.saturating_sub(1);
                    }
                }
            }
            Token::String(s) if p.skip_depth == 0 => {
                let text = String::from_utf8_lossy(&s.value);
                if p.in_title {
                    page_title.push_str(&text);
                } else if let Some((_, h, _)) = p.heading.as_mut() {
                    h.push_str(&text);
                } else {
                    if p.title.is_empty() && !text.trim().is_empty() {
                        p.title = title_or(&page_title, fallback_title);
                    }
                    p.push_text(&text, s.span.start, s.span.end);
                }
            }
            _ => {}
        }
    }
    p.flush();
    p.out
}

fn title_or(page_title: &str, fallback: &str) -> String {
    // "Returns – Acme Help Center": the part before a site-name separator.
    let t = page_title.split([' ', '\n', '\t']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    let cut = [" | ", " – ", " — ", " - "].iter().filter_map(|sep| t.find(sep)).min().unwrap_or(t.len());
    let t = t[..cut].trim();
    if t.is_empty() {
        fallback.to_string()
    } else {
        t.to_string()
    }
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<!doctype html>\n<html><head><title>Shipping | Acme Help</title>\n\
        <style>p { color: red }</style><script>var x = '<p>no</p>';</script></head>\n<body>\n\
        <nav><a href=/>Home</a></nav>\n<h1>Shipping</h1>\n<p>We ship to\n   40 countries &amp; territories.</p>\n\
        <h2 id=\"intl\">International</h2>\n<ul><li>Customs: paid by us</li>\n<li>Time: 7&ndash;10 days</li></ul>\n\
        <table><tr><th>Zone</th><th>Price</th></tr><tr><td>EU</td><td>€9</td></tr></table>\n\
        <pre>line 1\n  line 2</pre>\n<h4>Note</h4><div>Small print.</div>\n<footer>© Acme</footer></body></html>\n";

    #[test]
    fn sections_blocks_anchors_and_lines() {
        let b = blocks(PAGE, "fallback");
        type Row<'a> = (String, Option<&'a str>, &'a str, (u32, u32));
        let got: Vec<Row> =
            b.iter().map(|b| (b.headings.join(" > "), b.anchor.as_deref(), b.text.as_str(), b.lines)).collect();
        assert_eq!(
            got,
            vec![
                ("Shipping".into(), None, "We ship to 40 countries & territories.", (7, 8)),
                ("Shipping > International".into(), Some("intl"), "Customs: paid by us", (10, 10)),
                ("Shipping > International".into(), Some("intl"), "Time: 7–10 days", (11, 11)),
                ("Shipping > International".into(), Some("intl"), "Zone | Price", (12, 12)),
                ("Shipping > International".into(), Some("intl"), "EU | €9", (12, 12)),
                ("Shipping > International".into(), Some("intl"), "line 1\n  line 2", (13, 14)),
                ("Shipping > International".into(), Some("intl"), "Note", (15, 15)),
                ("Shipping > International".into(), Some("intl"), "Small print.", (15, 15)),
            ]
        );
    }

    #[test]
    fn pages_without_h1_use_their_title_or_file_name() {
        let b = blocks("<title>Warranty – Acme</title><h2>Claims</h2><p>Two years.</p>", "fb");
        assert_eq!(b[0].headings, vec!["Warranty", "Claims"]);
        let b = blocks("<p>Just text.</p>", "Fallback name");
        assert_eq!(b[0].headings, vec!["Fallback name"]);
    }
}
