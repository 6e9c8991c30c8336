//! Authentication of every request and connection. Guarantee: the tenant and user a message is produced for
//! come from a verified credential only — a JWT signed by a configured key (HS256 or RS256; `exp`, and `iss`
//! / `aud` when configured, checked) or a per-tenant API key (stored as SHA-256 only) plus the user it acts
//! for. Nothing in a message body can change them. A key restricted to some tenants cannot sign for others,
//! and a client that asserts a tenant (header or query) must hold a credential of that tenant.

use crate::config::{AuthConfig, ConfigError, JwtKeyConfig};
use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// Who is calling, as proven by the credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub user: String,
}

/// Why a credential is refused. `code()` is the protocol's error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("{0}")]
    WrongTenant(&'static str),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "missing_credential",
            AuthError::Invalid(_) => "invalid_credential",
            AuthError::Expired => "expired_credential",
            AuthError::WrongTenant(_) => "wrong_tenant",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::WrongTenant(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The credentials a request carries, gathered from headers and the query string.
#[derive(Clone, Debug, Default)]
pub struct Presented {
    pub bearer: Option<String>,
    pub api_key: Option<String>,
    pub user_header: Option<String>,
    pub asserted_tenant: Option<String>,
}

impl Presented {
    /// `Authorization: Bearer`, `X-Api-Key`, `X-Turnpike-User`, `X-Turnpike-Tenant`, and the query
    /// parameters `access_token` and `tenant` (browsers cannot set headers on WebSocket or EventSource).
    pub fn from_parts(headers: &HeaderMap, query: &HashMap<String, String>) -> Presented {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).map(String::from);
        let bearer = header("authorization")
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
            })
            .or_else(|| query.get("access_token").cloned());
        Presented {
            bearer: bearer.filter(|t| !t.is_empty()),
            api_key: header("x-api-key").filter(|k| !k.is_empty()),
            user_header: header("x-turnpike-user").filter(|u| !u.is_empty()),
            asserted_tenant: header("x-turnpike-tenant").or_else(|| query.get("tenant").cloned()),
        }
    }
}

struct JwtKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
    tenants: HashSet<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
}

/// Verifies credentials. Built once from the configuration; cheap to share.
pub struct Authenticator {
    keys: Vec<JwtKey>,
    hs256: Validation,
    rs256: Validation,
    /// SHA-256 of the key → (tenant, label).
    api_keys: HashMap<[u8; 32], (String, String)>,
}

/// Lower-case hex SHA-256 of an API key, as the configuration stores it.
pub fn api_key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        *out.get_mut(i)? = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    (hex.len() == 64).then_some(out)
}

fn load_key(k: &JwtKeyConfig) -> Result<JwtKey, ConfigError> {
    let bad = |m: String| ConfigError::Invalid(format!("jwt key {}: {m}", k.kid.as_deref().unwrap_or(&k.alg)));
    let (alg, key) = match k.alg.as_str() {
        "HS256" => {
            let secret = match (&k.secret, &k.secret_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => {
                    std::env::var(var).map_err(|_| bad(format!("environment variable {var} is not set")))?
                }
                _ => return Err(bad("HS256 needs exactly one of `secret`, `secret_env`".into())),
            };
            if secret.len() < 32 {
                return Err(bad("an HS256 secret must be at least 32 bytes".into()));
            }
            (Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes()))
        }
        "RS256" => {
            let pem = match (&k.public_key_pem, &k.public_key_pem_file) {
                (Some(p), None) => p.clone(),
                (None, Some(path)) => {
                    std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?
                }
                _ => return Err(bad("RS256 needs exactly one of `public_key_pem`, `public_key_pem_file`".into())),
            };
            (Algorithm::RS256, DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?)
        }
        other => return Err(bad(format!("algorithm {other} is not supported (HS256, RS256)"))),
    };
    Ok(JwtKey { kid: k.kid.clone(), alg, key, tenants: k.tenants.iter().cloned().collect() })
}

/// An id from a credential must be usable as part of Redis keys and Kafka keys.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(|c| c.is_control() || c == '{' || c == '}')
}

/// A tenant id must also be free of `:`, the separator of `tenant:user:conversation` in the gateway's
/// Redis keys: tenant `acme:u1` with user `x` would otherwise share the event stream of acme's user `u1:x`.
fn valid_tenant(id: &str) -> bool {
    valid_id(id) && !id.contains(':')
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Result<Authenticator, ConfigError> {
        let keys = cfg.jwt.keys.iter().map(load_key).collect::<Result<Vec<_>, _>>()?;
        let validation = |alg| {
            let mut v = Validation::new(alg);
            v.leeway = cfg.jwt.leeway_secs;
            // Off by default in jsonwebtoken: a token whose `nbf` is in the future was accepted.
            v.validate_nbf = true;
            let mut required = vec!["exp", "sub"];
            if let Some(iss) = &cfg.jwt.issuer {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            match &cfg.jwt.audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    required.push("aud");
                }
                None => v.validate_aud = false,
            }
            v.set_required_spec_claims(&required);
            v
        };
        let mut api_keys = HashMap::new();
        for k in &cfg.api_keys {
            let hash = decode_hex32(&k.sha256.to_ascii_lowercase())
                .ok_or_else(|| ConfigError::Invalid(format!("api key `{}`: sha256 must be 64 hex digits", k.name)))?;
            api_keys.insert(hash, (k.tenant.clone(), k.name.clone()));
        }
        Ok(Authenticator { keys, hs256: validation(Algorithm::HS256), rs256: validation(Algorithm::RS256), api_keys })
    }

    /// The principal proven by `p`, or why not.
    pub fn authenticate(&self, p: &Presented) -> Result<Principal, AuthError> {
        let from_jwt = p.bearer.as_deref().map(|t| self.verify_jwt(t)).transpose()?;
        let from_key = p.api_key.as_deref().map(|k| self.verify_api_key(k, p.user_header.as_deref())).transpose()?;
        let principal = match (from_jwt, from_key) {
            (None, None) => return Err(AuthError::Missing("send a bearer token or an API key")),
            (Some(j), Some(k)) if j.tenant != k.tenant => {
                return Err(AuthError::WrongTenant("the token and the API key belong to different tenants"))
            }
            // The end user's own token names the user more directly than a server's header.
            (Some(j), _) => j,
            (None, Some(k)) => k,
        };
        if p.asserted_tenant.as_deref().is_some_and(|t| t != principal.tenant) {
            return Err(AuthError::WrongTenant("the credential belongs to another tenant"));
        }
        Ok(principal)
    }

    fn verify_jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed token"))?;
        let validation = match header.alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::RS256 => &self.rs256,
            _ => return Err(AuthError::Invalid("token algorithm not accepted (HS256, RS256)")),
        };
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid));
        let mut outcome = Err(AuthError::Invalid("no key verifies the token's signature"));
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
                Ok(data) => {
                    let c = data.claims;
                    if !valid_id(&c.sub) || !valid_tenant(&c.tenant) {
                        return Err(AuthError::Invalid("claims `sub` and `tenant` must be non-empty ids"));
                    }
                    if !key.tenants.is_empty() && !key.tenants.contains(&c.tenant) {
                        return Err(AuthError::WrongTenant("the token's key may not sign for its tenant"));
                    }
                    return Ok(Principal { tenant: c.tenant, user: c.sub });
                }
                // Another key may still verify it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => {
                    outcome = Err(match e.kind() {
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer"),
                        ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience"),
                        ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("a required claim is missing"),
                        ErrorKind::ImmatureSignature => AuthError::Invalid("token not valid yet"),
                        _ => AuthError::Invalid("malformed token or claims"),
                    });
                    // Signature checks precede claim checks: this key verified the token, no other will.
                    break;
                }
            }
        }
        outcome
    }

    fn verify_api_key(&self, key: &str, user: Option<&str>) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let (tenant, _label) = self.api_keys.get(&digest).ok_or(AuthError::Invalid("unknown API key"))?;
        let user = user.ok_or(AuthError::Missing("an API key must name the user in X-Turnpike-User"))?;
        if !valid_id(user) {
            return Err(AuthError::Invalid("X-Turnpike-User must be a non-empty id without control characters"));
        }
        Ok(Principal { tenant: tenant.clone(), user: user.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyConfig, JwtConfig};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// The HS256 test key, allowed to sign for `tenants` (none: for every tenant).
    fn hs256_key(tenants: Vec<String>) -> JwtKeyConfig {
        JwtKeyConfig {
            alg: "HS256".into(),
            kid: None,
            secret: Some(SECRET.into()),
            secret_env: None,
            public_key_pem: None,
            public_key_pem_file: None,
            tenants,
        }
    }

    fn auth() -> Authenticator {
        Authenticator::new(&AuthConfig {
            jwt: JwtConfig {
                issuer: Some("iss".into()),
                audience: Some("aud".into()),
                leeway_secs: 0,
                keys: vec![hs256_key(vec!["acme".into()])],
            },
            api_keys: vec![ApiKeyConfig { tenant: "beta".into(), name: "b".into(), sha256: api_key_hash("k-beta") }],
        })
        .unwrap()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn claims(tenant: &str, exp_offset: i64) -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        json!({"sub": "u1", "tenant": tenant, "iss": "iss", "aud": "aud", "exp": now + exp_offset})
    }

    fn bearer(t: String) -> Presented {
        Presented { bearer: Some(t), ..Default::default() }
    }

    #[test]
    fn accepts_a_valid_token_and_refuses_broken_ones_with_the_right_code() {
        let a = auth();
        assert_eq!(
            a.authenticate(&bearer(token(claims("acme", 600), SECRET))),
            Ok(Principal { tenant: "acme".into(), user: "u1".into() })
        );
        let code = |p: &Presented| a.authenticate(p).unwrap_err().code();
        assert_eq!(code(&Presented::default()), "missing_credential");
        assert_eq!(code(&bearer(token(claims("acme", -600), SECRET))), "expired_credential");
        assert_eq!(code(&bearer(token(claims("acme", 600), "another-secret-another-secret-xx"))), "invalid_credential");
        assert_eq!(code(&bearer("not.a.token".into())), "invalid_credential");
        let mut wrong_iss = claims("acme", 600);
        wrong_iss["iss"] = json!("evil");
        assert_eq!(code(&bearer(token(wrong_iss, SECRET))), "invalid_credential");
        // The key may only sign for acme.
        assert_eq!(code(&bearer(token(claims("beta", 600), SECRET))), "wrong_tenant");
        // A tenant assertion that the credential does not back.
        let mut p = bearer(token(claims("acme", 600), SECRET));
        p.asserted_tenant = Some("beta".into());
        assert_eq!(a.authenticate(&p).unwrap_err().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn api_keys_name_their_tenant_and_need_a_user() {
        let a = auth();
        let p = Presented { api_key: Some("k-beta".into()), user_header: Some("bob".into()), ..Default::default() };
        assert_eq!(a.authenticate(&p), Ok(Principal { tenant: "beta".into(), user: "bob".into() }));
        let p = Presented { api_key: Some("k-beta".into()), ..Default::default() };
        assert_eq!(a.authenticate(&p).unwrap_err().code(), "missing_credential");
        let p = Presented { api_key: Some("k-other".into()), user_header: Some("bob".into()), ..Default::default() };
        assert_eq!(a.authenticate(&p).unwrap_err().code(), "invalid_credential");
        // acme's token with beta's key: refused, whichever the gateway would have believed.
        let p = Presented {
            bearer: Some(token(claims("acme", 600), SECRET)),
            api_key: Some("k-beta".into()),
            user_header: Some("bob".into()),
            ..Default::default()
        };
        assert_eq!(a.authenticate(&p).unwrap_err().code(), "wrong_tenant");
    }

    #[test]
    fn credentials_come_from_headers_or_the_query() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        h.insert("x-turnpike-tenant", "acme".parse().unwrap());
        let p = Presented::from_parts(&h, &HashMap::new());
        assert_eq!((p.bearer.as_deref(), p.asserted_tenant.as_deref()), (Some("abc"), Some("acme")));
        let q = HashMap::from([("access_token".to_string(), "xyz".to_string())]);
        assert_eq!(Presented::from_parts(&HeaderMap::new(), &q).bearer.as_deref(), Some("xyz"));
        assert_eq!(api_key_hash("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    }

    fn code_of(a: &Authenticator, header: Header, claims: serde_json::Value) -> &'static str {
        let t = encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        a.authenticate(&bearer(t)).map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn not_yet_valid_wrong_audience_and_missing_claims_are_refused() {
        let a = auth();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut early = claims("acme", 600);
        early["nbf"] = json!(now + 300);
        assert_eq!(code_of(&a, Header::new(Algorithm::HS256), early), "invalid_credential");
        let mut started = claims("acme", 600);
        started["nbf"] = json!(now - 10);
        assert_eq!(code_of(&a, Header::new(Algorithm::HS256), started), "ok");
        let mut wrong_aud = claims("acme", 600);
        wrong_aud["aud"] = json!("another-service");
        assert_eq!(code_of(&a, Header::new(Algorithm::HS256), wrong_aud), "invalid_credential");
        for missing in ["exp", "sub", "iss", "aud", "tenant"] {
            let mut c = claims("acme", 600);
            c.as_object_mut().unwrap().remove(missing);
            assert_eq!(code_of(&a, Header::new(Algorithm::HS256), c), "invalid_credential", "without {missing}");
        }
    }

    #[test]
    fn alg_none_and_algorithm_confusion_are_refused() {
        use base64::Engine;
        let a = auth();
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let unsigned = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(claims("acme", 600)));
        assert_eq!(a.authenticate(&bearer(unsigned)).unwrap_err().code(), "invalid_credential");
        // A valid HS256 signature under a header that claims another algorithm.
        let good = token(claims("acme", 600), SECRET);
        let (_, rest) = good.split_once('.').unwrap();
        for alg in ["none", "HS512", "RS256", "ES256"] {
            let forged = format!("{}.{rest}", b64(json!({"alg": alg, "typ": "JWT"})));
            assert_eq!(a.authenticate(&bearer(forged)).unwrap_err().code(), "invalid_credential", "alg {alg}");
        }
        assert_eq!(code_of(&a, Header::new(Algorithm::HS384), claims("acme", 600)), "invalid_credential");
    }

    #[test]
    fn a_removed_tenants_api_key_and_a_tenant_with_the_key_separator_are_refused() {
        // The configuration after beta left: its key is no longer listed.
        let mut cfg_without_beta = AuthConfig::default();
        // An identity provider trusted for every tenant: the claim alone names the tenant.
        cfg_without_beta.jwt.keys = vec![hs256_key(vec![])];
        let a = Authenticator::new(&cfg_without_beta).unwrap();
        let p = Presented { api_key: Some("k-beta".into()), user_header: Some("bob".into()), ..Default::default() };
        assert_eq!(a.authenticate(&p).unwrap_err().code(), "invalid_credential");
        let mut c = claims("acme:u1", 600);
        c.as_object_mut().unwrap().retain(|k, _| k != "iss" && k != "aud");
        assert_eq!(code_of(&a, Header::new(Algorithm::HS256), c), "invalid_credential");
        let mut c = claims("acme", 600);
        c.as_object_mut().unwrap().retain(|k, _| k != "iss" && k != "aud");
        c["sub"] = json!("u1:x");
        assert_eq!(code_of(&a, Header::new(Algorithm::HS256), c), "ok", "a user id may hold a colon");
    }
}
