//! Webhook signatures, each vendor's documented scheme (../shared/notes/integrations.md §1.5, §2.5, §3.4),
//! computed over the raw body bytes and compared in constant time (`Mac::verify_slice`).
//!
//! - Zendesk: `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(secret, timestamp ‖ body)), with
//!   `X-Zendesk-Webhook-Signature-Timestamp` (ISO-8601). The secret is used as its literal string bytes.
//! - Intercom: `X-Hub-Signature` = `sha1=` + hex(HMAC-SHA1(client_secret, body)).
//! - Freshdesk signs nothing: its automation rule sends a long random token in a custom header
//!   (`X-Turnpike-Token`), compared in constant time.
//! - The generic webhook (ours, both ways): `X-Turnpike-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//!   "<t>." ‖ body)>`, the timestamp inside the MAC so a captured request cannot be replayed later.
//!
//! The fake helpdesk signs with the same functions the endpoint verifies with, so the two cannot drift
//! apart silently; the Zendesk and Intercom functions are also checked against independently computed
//! vectors in the tests below.

use base64::Engine;
use hmac::{Hmac, Mac};

/// The Freshdesk shared-token header (the name is ours: Freshdesk lets the rule set any header).
pub const FRESHDESK_TOKEN_HEADER: &str = "x-turnpike-token";
pub const ZENDESK_SIGNATURE_HEADER: &str = "x-zendesk-webhook-signature";
pub const ZENDESK_TIMESTAMP_HEADER: &str = "x-zendesk-webhook-signature-timestamp";
pub const INTERCOM_SIGNATURE_HEADER: &str = "x-hub-signature";
pub const GENERIC_SIGNATURE_HEADER: &str = "x-turnpike-signature";

fn hmac256(secret: &[u8]) -> Hmac<sha2::Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// Zendesk's signature header value for `body` sent at `timestamp`.
pub fn zendesk_sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = hmac256(secret.as_bytes());
    mac.update(timestamp.as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn zendesk_verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
    let mut mac = hmac256(secret.as_bytes());
    mac.update(timestamp.as_bytes());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Intercom's `X-Hub-Signature` value for `body`.
pub fn intercom_sign(client_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(client_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha1={}", hex_encode(&mac.finalize().into_bytes()))
}

pub fn intercom_verify(client_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(expected) = header.trim().strip_prefix("sha1=").and_then(hex_decode) else { return false };
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(client_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Constant-time comparison of Freshdesk's shared token (through HMAC, so equal-length and timing-safe).
pub fn token_verify(expected: &str, got: &str) -> bool {
    let mut mac = hmac256(b"turnpike-token-compare");
    mac.update(expected.as_bytes());
    let want = mac.finalize().into_bytes();
    let mut mac = hmac256(b"turnpike-token-compare");
    mac.update(got.as_bytes());
    mac.verify_slice(&want).is_ok() && !expected.is_empty()
}

/// The generic webhook's signature header for `body` at unix second `t`.
pub fn generic_sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = hmac256(secret.as_bytes());
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex_encode(&mac.finalize().into_bytes()))
}

/// Verifies a generic signature and returns its timestamp (the caller checks its age).
pub fn generic_verify(secret: &str, body: &[u8], header: &str) -> Option<i64> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex_decode(value),
            _ => {}
        }
    }
    let (t, v1) = (t?, v1?);
    let mut mac = hmac256(secret.as_bytes());
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok().then_some(t)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zendesk_signature_is_timestamp_then_body() {
        // Recomputed with `printf '%s' "$TS$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64`.
        let (secret, ts, body) =
            ("dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==", "2021-07-25T10:00:00Z", b"{\"say\": \"hello\"}");
        let sig = zendesk_sign(secret, ts, body);
        assert_eq!(sig, "gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0=");
        assert!(zendesk_verify(secret, ts, body, &sig));
        assert!(!zendesk_verify(secret, "2021-07-25T10:00:01Z", body, &sig), "the timestamp is signed");
        assert!(!zendesk_verify(secret, ts, b"{\"say\": \"hellO\"}", &sig), "the body is signed");
        assert!(!zendesk_verify("other", ts, body, &sig));
        assert!(!zendesk_verify(secret, ts, body, "not base64!"));
    }

    #[test]
    fn intercom_signature_is_sha1_hex_of_the_raw_body() {
        let sig = intercom_sign("client-secret", b"{\"topic\":\"ping\"}");
        // `printf '%s' "$BODY" | openssl dgst -sha1 -hmac client-secret`
        assert_eq!(sig, "sha1=83f283f5997678fbf9b02534c0762a8eacaf2d8d");
        assert!(intercom_verify("client-secret", b"{\"topic\":\"ping\"}", &sig));
        assert!(!intercom_verify("client-secret", b"{\"topic\": \"ping\"}", &sig), "re-serialised JSON fails");
        assert!(!intercom_verify("client-secret", b"{\"topic\":\"ping\"}", &sig[5..]), "the prefix is required");
    }

    #[test]
    fn generic_signature_binds_the_timestamp() {
        let sig = generic_sign("s3cret", 1_700_000_000, b"{}");
        assert_eq!(generic_verify("s3cret", b"{}", &sig), Some(1_700_000_000));
        let replayed = sig.replace("t=1700000000", "t=1800000000");
        assert_eq!(generic_verify("s3cret", b"{}", &replayed), None);
        assert_eq!(generic_verify("s3cret", b"{}", ""), None);
    }

    #[test]
    fn shared_token_needs_the_exact_value() {
        assert!(token_verify("abc", "abc"));
        assert!(!token_verify("abc", "abd"));
        assert!(!token_verify("", ""), "an unset token never matches");
    }
}
