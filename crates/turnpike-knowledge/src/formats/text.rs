//! Plain text: blank lines separate paragraphs. Plain-text help files still have titles and section
//! names, so a paragraph of one short line (at most 60 characters) that does not end like a sentence
//! (`.`, `!`, `?`, `:`, `,`, `;`) is taken as a heading: the first one titles the document, later ones
//! name sections under it.

use super::{heading_path, open_heading};
use crate::Block;

pub(super) fn blocks(text: &str, fallback_title: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut paragraphs: Vec<(usize, usize)> = Vec::new(); // [start, end) line indexes
    let mut start = None;
    for (i, l) in lines.iter().enumerate() {
        match (l.trim().is_empty(), start) {
            (true, Some(s)) => {
                paragraphs.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        paragraphs.push((s, lines.len()));
    }

    let mut title = fallback_title.to_string();
    let mut open: Vec<(u8, String)> = Vec::new();
    let mut out = Vec::new();
    for (n, &(s, e)) in paragraphs.iter().enumerate() {
        let first = lines[s].trim();
        let is_heading = e - s == 1
            && first.chars().count() <= 60
            && !first.ends_with(['.', '!', '?', ':', ',', ';'])
            && n + 1 < paragraphs.len();
        if is_heading {
            let name = first.trim_matches(['=', '-', '#', '*', ' ']).to_string();
            if n == 0 {
                title = name;
            } else {
                open_heading(&mut open, 2, name);
            }
            continue;
        }
        out.push(Block {
            headings: heading_path(&title, &open),
            anchor: None,
            text: lines[s..e].join("\n"),
            lines: (s as u32 + 1, e as u32),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_with_title_and_section_lines() {
        let doc = "ACME WARRANTY\n\nEvery product has a two-year warranty.\nIt covers defects.\n\n\
                   How to claim\n\nWrite to us with your order number:\nwarranty@acme.example\n\nThe end.\n";
        let b = blocks(doc, "fallback");
        let got: Vec<(String, &str, (u32, u32))> =
            b.iter().map(|b| (b.headings.join(" > "), b.text.as_str(), b.lines)).collect();
        assert_eq!(
            got,
            vec![
                ("ACME WARRANTY".into(), "Every product has a two-year warranty.\nIt covers defects.", (3, 4)),
                (
                    "ACME WARRANTY > How to claim".into(),
                    "Write to us with your order number:\nwarranty@acme.example",
                    (8, 9)
                ),
                ("ACME WARRANTY > How to claim".into(), "The end.", (11, 11)),
            ]
        );
    }

    #[test]
    fn a_document_of_sentences_keeps_the_file_title() {
        let b = blocks("Returns are free.\n\nRefunds take five days.", "Returns");
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|b| b.headings == vec!["Returns"]));
        assert_eq!(b[1].lines, (3, 3));
    }
}
