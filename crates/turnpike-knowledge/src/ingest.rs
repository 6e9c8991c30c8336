//! Reading a knowledge base from disk: files and folders to documents with stable ids.
//!
//! Guarantee: a document's id (its `source`) depends only on its path relative to the folder named on the
//! command line (or its file name, for a file named directly), optionally under a prefix such as the help
//! center's URL — never on the machine or the current directory — so ingesting the same folder again from
//! anywhere replaces the same documents. Hidden files and folders and symbolic links are not followed (a
//! link could pull in files from outside the knowledge base); folders are walked in name order.

use std::path::{Path, PathBuf};

use crate::{Format, KnowledgeError};

/// Files larger than this are skipped: help pages are small, and a huge file is most likely a data dump.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// One document to ingest.
#[derive(Clone, Debug)]
pub struct SourceDoc {
    pub source: String,
    pub format: Format,
    pub text: String,
}

/// What an ingest did.
#[derive(Clone, Debug, Default)]
pub struct IngestReport {
    pub documents: usize,
    pub chunks: usize,
    /// Estimated tokens of every chunk (overlaps included).
    pub tokens: usize,
    /// Files not read, with the reason.
    pub skipped: Vec<String>,
}

impl SourceDoc {
    /// Every Markdown, HTML and text file under `paths`. Files of other types are listed in `skipped`.
    pub fn collect(paths: &[PathBuf], prefix: Option<&str>) -> Result<(Vec<SourceDoc>, Vec<String>), KnowledgeError> {
        let mut c = Collector { prefix: prefix.unwrap_or(""), docs: Vec::new(), skipped: Vec::new() };
        for root in paths {
            let meta = std::fs::metadata(root).map_err(|e| KnowledgeError::io(root, e))?;
            if meta.is_dir() {
                c.walk(root, root)?;
            } else {
                let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                c.read_one(root, &name)?;
            }
        }
        Ok((c.docs, c.skipped))
    }
}

struct Collector<'a> {
    prefix: &'a str,
    docs: Vec<SourceDoc>,
    skipped: Vec<String>,
}

impl Collector<'_> {
    fn walk(&mut self, root: &Path, dir: &Path) -> Result<(), KnowledgeError> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| KnowledgeError::io(dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| KnowledgeError::io(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = e.file_type().map_err(|err| KnowledgeError::io(&path, err))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            if kind.is_symlink() {
                self.skipped.push(format!("{rel}: symbolic link"));
            } else if kind.is_dir() {
                self.walk(root, &path)?;
            } else {
                self.read_one(&path, &rel)?;
            }
        }
        Ok(())
    }

    fn read_one(&mut self, path: &Path, rel: &str) -> Result<(), KnowledgeError> {
        let Some(format) = Format::from_path(path) else {
            self.skipped.push(format!("{rel}: not Markdown, HTML or text"));
            return Ok(());
        };
        let len = std::fs::metadata(path).map_err(|e| KnowledgeError::io(path, e))?.len();
        if len > MAX_FILE_BYTES {
            self.skipped.push(format!("{rel}: {len} bytes (limit {MAX_FILE_BYTES})"));
            return Ok(());
        }
        let bytes = std::fs::read(path).map_err(|e| KnowledgeError::io(path, e))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.docs.push(SourceDoc { source: format!("{}{rel}", self.prefix), format, text });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_relative_paths_under_an_optional_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("help/sub")).unwrap();
        std::fs::write(dir.path().join("help/a.md"), "# A").unwrap();
        std::fs::write(dir.path().join("help/sub/b.html"), "<h1>B</h1>").unwrap();
        std::fs::write(dir.path().join("help/c.pdf"), "%PDF").unwrap();
        std::fs::write(dir.path().join("help/.hidden.md"), "# no").unwrap();
        std::fs::write(dir.path().join("d.txt"), "D").unwrap();
        let (docs, skipped) =
            SourceDoc::collect(&[dir.path().join("help"), dir.path().join("d.txt")], Some("kb:")).unwrap();
        let sources: Vec<&str> = docs.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(sources, vec!["kb:a.md", "kb:sub/b.html", "kb:d.txt"]);
        assert_eq!(skipped, vec!["c.pdf: not Markdown, HTML or text"]);
    }
}
