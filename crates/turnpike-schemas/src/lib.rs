//! Avro records of every Turnpike topic and the Confluent wire-format codec.
//!
//! The `.avsc` files in `schemas/` are the source of truth; the Rust types in [`records`] mirror them and a
//! test checks each type against its schema in both directions. Records are written with the compiled-in
//! schema as the writer schema (registered under `<topic>-value`) and read with schema resolution, so a
//! producer on an older or newer compatible schema is read correctly.

pub mod codec;
pub mod records;
pub mod registry;

pub use codec::{decode_datum, split_header, Codec, CodecError};
pub use records::*;
pub use registry::{register_all, RegistryClient, RegistryError};
