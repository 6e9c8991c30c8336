//! Fuzz targets of what the gateway reads from the network before anything else (issue 20): credentials
//! (bearer tokens, API keys, the user and tenant headers, the query) and the JSON of POST bodies and
//! WebSocket frames with the ids and event ids in them. Whatever arrives:
//! - nothing panics, and a credential is accepted only as exactly the principal a valid seed names (a
//!   mutated token never verifies as somebody else, nor with a claim changed);
//! - an id that passes validation is one the Redis and Kafka keys can hold; an event id round-trips.
//!
//! Seeds: `tests/corpus/bodies/` and valid tokens minted here.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::collections::HashMap;
use turnpike_fuzz::proptest::prelude::*;
use turnpike_gateway::auth::{api_key_hash, Authenticator, Presented, Principal};
use turnpike_gateway::config::{ApiKeyConfig, AuthConfig, JwtConfig, JwtKeyConfig};
use turnpike_gateway::events::{valid_conversation_id, valid_message_id, EventId};
use turnpike_gateway::ingress::MessageIn;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn authenticator() -> Authenticator {
    let key = JwtKeyConfig {
        alg: "HS256".into(),
        kid: Some("k1".into()),
        secret: Some(SECRET.into()),
        secret_env: None,
        public_key_pem: None,
        public_key_pem_file: None,
        tenants: vec!["acme".into()],
    };
    Authenticator::new(&AuthConfig {
        jwt: JwtConfig { issuer: Some("iss".into()), audience: Some("aud".into()), leeway_secs: 0, keys: vec![key] },
        api_keys: vec![ApiKeyConfig { tenant: "beta".into(), name: "b".into(), sha256: api_key_hash("k-beta") }],
    })
    .unwrap()
}

fn token(alg: Algorithm, kid: Option<&str>) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "u1", "tenant": "acme", "iss": "iss", "aud": "aud", "exp": now + 3600});
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

#[test]
fn fuzz_gateway_credentials() {
    let auth = authenticator();
    let seeds: Vec<Vec<u8>> = vec![
        token(Algorithm::HS256, Some("k1")).into_bytes(),
        token(Algorithm::HS256, None).into_bytes(),
        token(Algorithm::HS512, Some("k1")).into_bytes(),
        b"k-beta".to_vec(),
        b"Bearer ".to_vec(),
        b"bob".to_vec(),
    ];
    let acme = Principal { tenant: "acme".into(), user: "u1".into() };
    let strategy = (
        turnpike_fuzz::bytes_from(seeds.clone()),
        turnpike_fuzz::bytes_from(seeds),
        prop::sample::select(vec!["authorization", "x-api-key", "x-turnpike-user", "x-turnpike-tenant"]),
        any::<bool>(),
    );
    turnpike_fuzz::run("gateway_credentials", 20_000, strategy, |(credential, other, header, in_query)| {
        let mut headers = HeaderMap::new();
        let mut query = HashMap::new();
        let text = String::from_utf8_lossy(&credential).into_owned();
        if in_query {
            query.insert("access_token".to_string(), text.clone());
        } else if let Ok(v) = HeaderValue::from_bytes(&[b"Bearer ", &credential[..]].concat()) {
            headers.insert("authorization", v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&other) {
            headers.insert(HeaderName::from_static(header), v);
        }
        let presented = Presented::from_parts(&headers, &query);
        if let Ok(p) = auth.authenticate(&presented) {
            let beta = Principal { tenant: "beta".into(), user: presented.user_header.clone().unwrap_or_default() };
            prop_assert!(
                p == acme || (p == beta && presented.api_key.as_deref() == Some("k-beta")),
                "accepted as {p:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_gateway_bodies_and_frames() {
    let seeds = turnpike_fuzz::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/bodies"));
    turnpike_fuzz::run("gateway_bodies", 20_000, turnpike_fuzz::text_from(seeds), |body| {
        // The POST body; a WebSocket frame is the same object tagged with `type`.
        let frame = serde_json::from_str::<serde_json::Value>(&body);
        if let Ok(serde_json::Value::Object(mut o)) = frame {
            o.remove("type");
            let _ = serde_json::from_value::<MessageIn>(serde_json::Value::Object(o));
        }
        if let Ok(m) = serde_json::from_str::<MessageIn>(&body) {
            if valid_conversation_id(&m.conversation_id) {
                prop_assert!(
                    !m.conversation_id.contains(':') && !m.conversation_id.contains('{'),
                    "conversation id {:?}",
                    m.conversation_id
                );
            }
            if let Some(id) = m.message_id.filter(|id| valid_message_id(id)) {
                prop_assert!(id.len() <= 128 && id.is_ascii() && !id.contains('{'), "message id {id:?}");
            }
        }
        for word in body.split(|c: char| c == '"' || c.is_whitespace()) {
            if let Ok(id) = word.parse::<EventId>() {
                prop_assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
            }
        }
        Ok(())
    });
}
