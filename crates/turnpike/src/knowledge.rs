//! `turnpike knowledge`: ingest a tenant's help pages into its retrieval index, try searches, remove pages.
//!
//! Guarantee: ingest is idempotent (a document is replaced by its source path, see `turnpike_knowledge`) and
//! commits once, so a running pipeline sees either the previous knowledge base or the new one; `search`
//! applies the tenant's `knowledge` settings from `TURNPIKE_TENANTS_CONFIG`, exactly as assemble does.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use turnpike_knowledge::{KnowledgeBase, KnowledgePolicy, SourceDoc};

#[derive(clap::Subcommand)]
pub enum KnowledgeAction {
    /// Add or replace Markdown, HTML and text files (folders are walked) in the tenant's index.
    Ingest {
        #[command(flatten)]
        at: Where,
        /// Prefix of every document's source, e.g. the help centre's URL (`https://help.acme.com/`).
        #[arg(long)]
        source_prefix: Option<String>,
        /// Also remove every document of the tenant that is not among these files.
        #[arg(long)]
        replace_all: bool,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show what a question retrieves for the tenant.
    Search {
        #[command(flatten)]
        at: Where,
        /// Passages to show (default: the tenant's `k`).
        #[arg(long)]
        k: Option<usize>,
        query: String,
    },
    /// Remove documents by source.
    Remove {
        #[command(flatten)]
        at: Where,
        #[arg(required = true)]
        sources: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct Where {
    #[arg(long)]
    tenant: String,
    /// Root of the per-tenant indexes.
    #[arg(long, env = "TURNPIKE_KNOWLEDGE_DIR")]
    index_dir: PathBuf,
}

pub fn run(action: &KnowledgeAction) -> anyhow::Result<()> {
    match action {
        KnowledgeAction::Ingest { at, source_prefix, replace_all, paths } => {
            let started = Instant::now();
            let (docs, skipped) = SourceDoc::collect(paths, source_prefix.as_deref())?;
            for s in &skipped {
                eprintln!("skipped {s}");
            }
            let kb = KnowledgeBase::new(&at.index_dir);
            let r = kb.ingest(&at.tenant, &docs, *replace_all).context("ingest")?;
            println!(
                "tenant {}: {} documents, {} chunks (~{} tokens) in {:.2?}; index holds {} chunks",
                at.tenant,
                r.documents,
                r.chunks,
                r.tokens,
                started.elapsed(),
                kb.chunk_count(&at.tenant)?
            );
            Ok(())
        }
        KnowledgeAction::Search { at, k, query } => {
            let cfg = turnpike_core::TenantsConfig::from_env()?;
            let mut policy = cfg.section::<KnowledgePolicy>("knowledge")?.get(&at.tenant).clone();
            if let Some(k) = k {
                policy.k = *k;
            }
            let kb = KnowledgeBase::new(&at.index_dir);
            let started = Instant::now();
            let r = kb.retrieve(&at.tenant, query, None, &policy)?;
            let took = started.elapsed();
            println!(
                "{:?}: {} passage(s) in the prompt, {} cited ({took:.2?})",
                r.mode,
                r.passages.len(),
                r.cited.len()
            );
            for (i, p) in r.cited.iter().enumerate() {
                println!("\n[{}] {:.2}  {}  {}", i + 1, p.score, p.source, p.location());
                for line in p.text.lines() {
                    println!("    {line}");
                }
            }
            Ok(())
        }
        KnowledgeAction::Remove { at, sources } => {
            let removed = KnowledgeBase::new(&at.index_dir).remove(&at.tenant, sources)?;
            println!("tenant {}: {removed} chunks removed", at.tenant);
            Ok(())
        }
    }
}
