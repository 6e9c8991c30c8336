//! Confluent wire format: `0x00`, a 4-byte big-endian schema id, then the Avro binary datum.
//!
//! Writing: the record's compiled-in schema is registered (or found) under `<topic>-value` once, then every
//! record is encoded with it. Reading: the writer schema is fetched by id (cached) and the datum is resolved
//! into the reader's compiled-in schema, so compatible schema evolution is transparent; a datum whose writer
//! schema has the reader's canonical form (the usual case) is read straight into the record type.
//!
//! Error classes matter here more than anywhere: a registry that is down, slow or answering 5xx makes a
//! message *temporarily* unreadable, which is [`ErrorClass::Retryable`] and must never dead-letter it. Only
//! bytes that can never be read (no magic byte, a datum that does not match its writer schema, an id the
//! registry positively does not know) are [`ErrorClass::Poison`].

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use turnpike_core::{Classify, ErrorClass};

use crate::records::Record;

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The registry could not be reached or answered with a server error.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The registry refused our credentials.
    #[error("schema registry refused access: {0}")]
    RegistryAccess(String),
    /// The registry does not know the schema id in the message header.
    #[error("schema id {id} is unknown to the registry: {detail}")]
    UnknownSchemaId { id: u32, detail: String },
    /// The registry refused to register our schema (usually a compatibility violation).
    #[error("schema registry rejected schema for subject {subject}: {detail}")]
    Rejected { subject: String, detail: String },
    /// The payload is not in the Confluent wire format.
    #[error("not a Confluent wire-format payload: {0}")]
    BadFraming(String),
    /// The datum does not match its writer schema or cannot be resolved to ours.
    #[error("cannot decode Avro datum (writer schema id {id}): {detail}")]
    Decode { id: u32, detail: String },
    /// A record does not fit its own schema: a bug in the producing code.
    #[error("cannot encode record as {schema}: {detail}")]
    Encode { schema: &'static str, detail: String },
}

impl Classify for CodecError {
    fn class(&self) -> ErrorClass {
        match self {
            CodecError::RegistryUnavailable(_) => ErrorClass::Retryable,
            CodecError::RegistryAccess(_) | CodecError::Rejected { .. } => ErrorClass::Fatal,
            CodecError::UnknownSchemaId { .. }
            | CodecError::BadFraming(_)
            | CodecError::Decode { .. }
            | CodecError::Encode { .. } => ErrorClass::Poison,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CodecError::RegistryUnavailable(_) => "registry_unavailable",
            CodecError::RegistryAccess(_) => "registry_access",
            CodecError::UnknownSchemaId { .. } => "unknown_schema_id",
            CodecError::Rejected { .. } => "schema_rejected",
            CodecError::BadFraming(_) => "bad_framing",
            CodecError::Decode { .. } => "avro_decode",
            CodecError::Encode { .. } => "avro_encode",
        }
    }
}

/// Maps a registry client error to our classes. The library marks only 502/503 and transport errors as
/// retriable; we also treat every other 5xx, 408 and 429 as an outage, because dead-lettering on a registry
/// hiccup loses ordering for no reason.
fn classify_registry(e: &SRCError, id: Option<u32>) -> CodecError {
    let text = format!("{} {}", e.error, e.cause.as_deref().unwrap_or(""));
    let status = http_status(&e.error);
    match status {
        _ if e.retriable => CodecError::RegistryUnavailable(text),
        Some(401 | 403) => CodecError::RegistryAccess(text),
        Some(404) => match id {
            Some(id) => CodecError::UnknownSchemaId { id, detail: text },
            None => CodecError::RegistryUnavailable(text),
        },
        Some(422 | 409) => CodecError::Rejected { subject: String::new(), detail: text },
        _ => CodecError::RegistryUnavailable(text),
    }
}

/// Extracts `NNN` from "... failed with status NNN Reason".
fn http_status(message: &str) -> Option<u16> {
    let rest = &message[message.find("status ")? + 7..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A registered writer schema: its registry id, parsed form, and whether it is the record type's own schema
/// (the usual case: this codec registered it).
type Writer = (u32, Arc<Schema>, bool);

/// A record type's own schema with a datum writer and reader for it, built once per process: building them
/// resolves the schema's names, which cost a few percent of the pipeline's CPU when done per record.
struct Compiled {
    schema: &'static Schema,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

/// The [`Compiled`] form of `R`'s schema. Kept for the process's lifetime: one per record type (a dozen).
fn compiled<R: Record>() -> Result<&'static Compiled, CodecError> {
    static TYPES: Mutex<BTreeMap<&'static str, &'static Compiled>> = Mutex::new(BTreeMap::new());
    let mut types = TYPES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = types.get(R::SCHEMA_NAME) {
        return Ok(c);
    }
    let bad = |e: apache_avro::Error| CodecError::Encode { schema: R::SCHEMA_NAME, detail: e.to_string() };
    let schema: &'static Schema = Box::leak(Box::new(Schema::parse_str(R::SCHEMA).map_err(bad)?));
    let compiled = Compiled {
        schema,
        writer: GenericDatumWriter::builder(schema).build().map_err(bad)?,
        reader: GenericDatumReader::builder(schema).build().map_err(bad)?,
    };
    let compiled: &'static Compiled = Box::leak(Box::new(compiled));
    types.insert(R::SCHEMA_NAME, compiled);
    Ok(compiled)
}

/// Encodes and decodes records of any [`Record`] type. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Codec {
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
    /// Writer schema id and parsed schema by topic.
    writers: Arc<Mutex<HashMap<String, Writer>>>,
    /// Whether the writer schema with this id is the reader schema of that record type (the usual case:
    /// Turnpike's own stages wrote it), so decoding needs no resolution from one to the other.
    same: Arc<Mutex<HashMap<(u32, &'static str), bool>>>,
}

impl Codec {
    /// A codec talking to the Confluent-compatible registry at `url` (e.g. `.../apis/ccompat/v7`), logging
    /// in with `login` (HTTP basic) when given.
    pub fn new(url: &str, login: Option<&turnpike_core::BasicLogin>, timeout: Duration) -> Result<Codec, CodecError> {
        let mut settings = SrSettings::new_builder(url.trim_end_matches('/').to_string());
        settings.set_timeout(timeout);
        if let Some(l) = login {
            settings.set_basic_authorization(&l.username, Some(&l.password));
        }
        let settings = settings.build().map_err(|e| CodecError::RegistryUnavailable(e.to_string()))?;
        Ok(Codec {
            encoder: Arc::new(AvroEncoder::new(settings.clone())),
            decoder: Arc::new(AvroDecoder::new(settings)),
            writers: Arc::default(),
            same: Arc::default(),
        })
    }

    /// [`Codec::new`] with the registry URL and login of `endpoints`.
    pub fn for_endpoints(endpoints: &turnpike_core::Endpoints, timeout: Duration) -> Result<Codec, CodecError> {
        Codec::new(&endpoints.schema_registry_url, endpoints.registry_login.as_ref(), timeout)
    }

    /// The id and parsed schema `R` is written with on `topic`, registering it under `<topic>-value` on
    /// first use. Cached per topic, so the registry is asked once per process and topic.
    async fn writer<R: Record>(&self, topic: &str) -> Result<Writer, CodecError> {
        if let Some(w) = self.writers.lock().unwrap_or_else(|p| p.into_inner()).get(topic) {
            return Ok(w.clone());
        }
        let subject = format!("{topic}-value");
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_string(),
            false,
            SuppliedSchema::new(None, SchemaType::Avro, R::SCHEMA.to_string()),
        );
        let registered = match self.encoder.get_schema_and_id(&subject, strategy).await {
            Ok(s) => s,
            Err(e) => {
                // Non-retriable errors are cached by the library: clear them so the next try asks again.
                self.encoder.remove_errors_from_cache();
                return Err(match classify_registry(&e, None) {
                    CodecError::Rejected { detail, .. } => CodecError::Rejected { subject, detail },
                    other => other,
                });
            }
        };
        let same = registered.parsed.canonical_form() == compiled::<R>()?.schema.canonical_form();
        let w = (registered.id, Arc::new(registered.parsed.clone()), same);
        self.writers.lock().unwrap_or_else(|p| p.into_inner()).insert(topic.to_string(), w.clone());
        Ok(w)
    }

    /// Encodes `record` for `topic` in the Confluent wire format.
    pub async fn encode<R: Record>(&self, topic: &str, record: &R) -> Result<Vec<u8>, CodecError> {
        let (id, schema, same) = self.writer::<R>(topic).await?;
        // Serialized straight from the record against the schema: no intermediate `Value` to build and
        // resolve (a twentieth of the pipeline's CPU at full load). The bytes are the same as through a
        // resolved `Value` (tests/records_match_schemas.rs checks every record type).
        let bad = |e: apache_avro::Error| CodecError::Encode { schema: R::SCHEMA_NAME, detail: e.to_string() };
        let datum = if same {
            compiled::<R>()?.writer.write_ser_to_vec(record).map_err(bad)?
        } else {
            GenericDatumWriter::builder(&schema).build().and_then(|w| w.write_ser_to_vec(record)).map_err(bad)?
        };
        let mut out = Vec::with_capacity(5 + datum.len());
        out.push(0u8);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes a Confluent wire-format payload into `R`, resolving from the writer schema to `R`'s schema.
    pub async fn decode<R: Record>(&self, payload: &[u8]) -> Result<R, CodecError> {
        let (id, datum) = split_header(payload)?;
        let writer = match self.decoder.get_schema(id).await {
            Ok(s) => s,
            Err(e) => {
                self.decoder.remove_errors_from_cache();
                return Err(classify_registry(&e, Some(id)));
            }
        };
        let own = compiled::<R>()?;
        let same = *self
            .same
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((id, R::SCHEMA_NAME))
            .or_insert_with(|| writer.parsed.canonical_form() == own.schema.canonical_form());
        decode_datum(id, &writer.parsed, same, datum)
    }
}

/// Decodes the Avro datum of a record written with `writer` (registry id `id`) into `R`; `same` says the
/// writer schema has `R`'s canonical form. The registry-free half of [`Codec::decode`], which the fuzz
/// targets call: whatever the bytes, this returns an error and never panics.
pub fn decode_datum<R: Record>(id: u32, writer: &Schema, same: bool, mut datum: &[u8]) -> Result<R, CodecError> {
    let own = compiled::<R>()?;
    let bad = |e: apache_avro::Error| CodecError::Decode { id, detail: e.to_string() };
    let record = if same {
        // Straight into the record, no intermediate `Value` (tests/records_match_schemas.rs checks it
        // reads every record type as the resolving path does), with the type's own compiled schema:
        // the same canonical form is the same binary layout.
        own.reader.read_deser::<R>(&mut datum).map_err(bad)?
    } else {
        let value = GenericDatumReader::builder(writer)
            .reader_schema(own.schema)
            .build()
            .and_then(|r| r.read_value(&mut datum))
            .map_err(bad)?;
        apache_avro::from_value::<R>(&value).map_err(bad)?
    };
    if !datum.is_empty() {
        return Err(CodecError::Decode { id, detail: format!("{} trailing bytes after the datum", datum.len()) });
    }
    Ok(record)
}

/// Splits the 5-byte Confluent header from the datum.
pub fn split_header(payload: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match payload {
        [] => Err(CodecError::BadFraming("empty payload".into())),
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [0, ..] => {
            Err(CodecError::BadFraming(format!("payload of {} bytes is shorter than the 5-byte header", payload.len())))
        }
        [m, ..] => Err(CodecError::BadFraming(format!("magic byte is {m:#04x}, expected 0x00"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_checked() {
        assert!(matches!(split_header(&[]), Err(CodecError::BadFraming(_))));
        assert!(matches!(split_header(&[0, 0, 1]), Err(CodecError::BadFraming(_))));
        assert!(matches!(split_header(b"{\"json\":1}"), Err(CodecError::BadFraming(_))));
        assert_eq!(split_header(&[0, 0, 0, 1, 2, 9]).unwrap(), (258, &[9u8][..]));
    }

    #[test]
    fn registry_errors_are_classified() {
        let unavailable = SRCError::non_retryable_without_cause(
            "HTTP request to schema registry failed with status 500 Internal Server Error",
        );
        assert_eq!(classify_registry(&unavailable, Some(1)).class(), ErrorClass::Retryable);
        let missing =
            SRCError::non_retryable_without_cause("HTTP request to schema registry failed with status 404 Not Found");
        assert_eq!(classify_registry(&missing, Some(7)).class(), ErrorClass::Poison);
        let denied = SRCError::non_retryable_without_cause(
            "HTTP request to schema registry failed with status 401 Unauthorized",
        );
        assert_eq!(classify_registry(&denied, Some(7)).class(), ErrorClass::Fatal);
        let transport = SRCError::retryable_with_cause("connection refused", "http call to schema registry failed");
        assert_eq!(classify_registry(&transport, Some(7)).class(), ErrorClass::Retryable);
    }
}
