//! Fuzz targets of the Avro decoders of every topic and of the Confluent framing (issue 20): whatever bytes
//! arrive on a topic, decoding returns a poison error and never panics, and what does decode encodes back
//! to a datum that decodes to the same record. Seeds: `tests/corpus/avro/` and every record type's encoding.

use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use turnpike_fuzz::proptest::prelude::*;
use turnpike_schemas::*;

/// Calls `$f::<R>($args)?` for every record type `R` of a topic.
macro_rules! each_record {
    ($f:ident($($arg:expr),*)) => {{
        $f::<InboundTurn>($($arg),*)?;
        $f::<AcceptedTurn>($($arg),*)?;
        $f::<GuardedTurn>($($arg),*)?;
        $f::<AssembledPrompt>($($arg),*)?;
        $f::<RoutedPrompt>($($arg),*)?;
        $f::<ReplyChunk>($($arg),*)?;
        $f::<CheckedReplyChunk>($($arg),*)?;
        $f::<OutboundReply>($($arg),*)?;
        $f::<HandoffRequest>($($arg),*)?;
        $f::<TicketEvent>($($arg),*)?;
        $f::<DeskEvent>($($arg),*)?;
        $f::<DeadLetter>($($arg),*)?;
        $f::<GuardAudit>($($arg),*)?;
    }};
}

/// Confluent-framed encodings of each record type's default value, for the mutator to start from.
fn seeds() -> Vec<Vec<u8>> {
    fn framed<R: Record + Default>(out: &mut Vec<Vec<u8>>) -> Result<(), apache_avro::Error> {
        let schema = Schema::parse_str(R::SCHEMA)?;
        let datum = GenericDatumWriter::builder(&schema).build()?.write_ser_to_vec(&R::default())?;
        out.push([&[0u8, 0, 0, 0, 1][..], &datum].concat());
        Ok(())
    }
    let mut out = turnpike_fuzz::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/avro"));
    let mut add = || -> Result<(), apache_avro::Error> {
        each_record!(framed(&mut out));
        Ok(())
    };
    add().unwrap();
    out
}

/// Decodes `payload` as `R` written with `R`'s own schema, through both decoder paths (straight into the
/// type, and resolving a `Value`), and with another type's schema as the writer. Every error must be
/// poison (a dead letter, never a retry loop); what decodes must round-trip.
fn decode_as<R: Record + PartialEq + std::fmt::Debug>(payload: &[u8], other: &Schema) -> Result<(), TestCaseError> {
    use turnpike_core::{Classify, ErrorClass};
    let own = Schema::parse_str(R::SCHEMA).unwrap();
    let Ok((id, datum)) = split_header(payload) else { return Ok(()) };
    let direct = decode_datum::<R>(id, &own, true, datum);
    let resolved = decode_datum::<R>(id, &own, false, datum);
    let foreign = decode_datum::<R>(id, other, false, datum);
    for e in [&direct, &resolved, &foreign].into_iter().filter_map(|r| r.as_ref().err()) {
        prop_assert_eq!(e.class(), ErrorClass::Poison, "{}: {}", R::SCHEMA_NAME, e);
    }
    if let Ok(record) = &direct {
        let again = GenericDatumWriter::builder(&own).build().unwrap().write_ser_to_vec(record);
        let again = again.map_err(|e| TestCaseError::fail(format!("{}: re-encode: {e}", R::SCHEMA_NAME)))?;
        prop_assert_eq!(&decode_datum::<R>(id, &own, true, &again).unwrap(), record);
    }
    Ok(())
}

#[test]
fn fuzz_avro_decoders_of_every_topic() {
    let other = Schema::parse_str(GuardAudit::SCHEMA).unwrap();
    let inbound = Schema::parse_str(InboundTurn::SCHEMA).unwrap();
    turnpike_fuzz::run("avro_decoders", 3_000, turnpike_fuzz::bytes_from(seeds()), |payload| {
        // Resolving from a foreign writer schema: the inbound turn's for every type (itself included).
        each_record!(decode_as(&payload, &inbound));
        decode_as::<InboundTurn>(&payload, &other)
    });
}

#[test]
fn fuzz_confluent_framing() {
    turnpike_fuzz::run("confluent_framing", 20_000, turnpike_fuzz::bytes_from(seeds()), |payload| {
        match split_header(&payload) {
            Ok((id, datum)) => {
                prop_assert_eq!(payload[0], 0);
                prop_assert_eq!(id, u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]));
                prop_assert_eq!(datum, &payload[5..]);
            }
            Err(e) => prop_assert!(payload.len() < 5 || payload[0] != 0, "refused a framed payload: {e}"),
        }
        Ok(())
    });
}
