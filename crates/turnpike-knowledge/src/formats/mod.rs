//! Document formats: each parser turns one document into structural [`Block`]s under heading paths, with
//! 1-based line ranges into the original file.
//!
//! Guarantee: every block's heading path starts with the document's title — its `# h1` / `<h1>` /
//! first short line, else its front-matter or `<title>`, else a title made from the file name — so every
//! chunk is self-describing in the index and in a citation.

mod html;
mod markdown;
mod text;

use crate::Block;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
    Text,
}

impl Format {
    /// By file extension; `None` for files the knowledge base does not read.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" | "mdown" => Some(Format::Markdown),
            "html" | "htm" | "xhtml" => Some(Format::Html),
            "txt" | "text" => Some(Format::Text),
            _ => None,
        }
    }
}

/// Blocks of one document. `source` (its path or URL) names the document when it has no title.
pub fn parse_document(format: Format, source: &str, text: &str) -> Vec<Block> {
    let fallback = title_from_source(source);
    match format {
        Format::Markdown => markdown::blocks(text, &fallback),
        Format::Html => html::blocks(text, &fallback),
        Format::Text => text::blocks(text, &fallback),
    }
}

/// `help/shipping-times.md` → `Shipping times`.
fn title_from_source(source: &str) -> String {
    let name = source.trim_end_matches('/').rsplit(['/', '\\']).next().unwrap_or(source);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let words = stem.replace(['-', '_'], " ");
    let mut c = words.trim().chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => "Untitled".into(),
    }
}

/// Heading path of the current section: the open headings (level, text), under the document title when
/// the document does not start with a level-1 heading of its own.
fn heading_path(title: &str, open: &[(u8, String)]) -> Vec<String> {
    let mut path = Vec::with_capacity(open.len() + 1);
    if open.first().is_none_or(|(level, _)| *level > 1) {
        path.push(title.to_string());
    }
    path.extend(open.iter().map(|(_, t)| t.clone()));
    path
}

/// Opens a heading at `level`: closes every open heading at that level or deeper.
fn open_heading(open: &mut Vec<(u8, String)>, level: u8, text: String) {
    open.retain(|(l, _)| *l < level);
    open.push((level, text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_file_names_when_documents_have_none() {
        assert_eq!(title_from_source("help/shipping-times.md"), "Shipping times");
        assert_eq!(title_from_source("https://help.example.com/faq/returns_policy.html"), "Returns policy");
        assert_eq!(Format::from_path(std::path::Path::new("a/B.HTM")), Some(Format::Html));
        assert_eq!(Format::from_path(std::path::Path::new("a/b.pdf")), None);
    }
}
