//! Turnpike's topology as validated data.
//!
//! `topology/turnpike.toml` declares every topic (partitions, retention or compaction, Avro schema) and every
//! stage (input, outputs, dead-letter topic, consumer group). [`Topology::load`] parses it, [`Topology::validate`]
//! checks the rules that keep per-session order and make every message traceable, and [`apply::apply`] creates
//! the missing topics with the Kafka admin client.

pub mod apply;
mod model;
mod validate;

pub use model::{known_stage, Role, Stage, Topic, Topology, EDGE_STAGE_NAMES, STAGE_NAMES};
pub use validate::{Problem, ValidationError};

use std::path::{Path, PathBuf};

/// Errors while reading a topology file (validation problems are [`ValidationError`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read topology file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML or does not match the topology shape.
    #[error("topology file {path} is malformed: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
}

impl Topology {
    /// Reads and parses a topology file. Does not validate: call [`Topology::validate`].
    pub fn load(path: &Path) -> Result<Topology, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.into(), source })?;
        Topology::parse(&text).map_err(|source| LoadError::Parse { path: path.into(), source })
    }

    /// Parses topology TOML text.
    pub fn parse(text: &str) -> Result<Topology, toml::de::Error> {
        toml::from_str(text)
    }
}
