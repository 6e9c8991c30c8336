//! Gateway configuration. The process settings (listen addresses, credentials, connection limits) come from
//! one TOML file named by `TURNPIKE_GATEWAY_CONFIG`; per-tenant token quotas come from the shared tenants
//! file (`TURNPIKE_TENANTS_CONFIG`, section `gateway`), like every other per-tenant setting.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! metrics_listen = "0.0.0.0:9610"
//! allowed_origins = ["https://chat.example.com"]
//!
//! [auth.jwt]
//! issuer = "https://login.example.com"
//! audience = "turnpike"
//!
//! [[auth.jwt.keys]]
//! alg = "HS256"
//! secret_env = "TURNPIKE_JWT_SECRET"      # the secret itself stays out of the file
//! tenants = ["acme"]                      # this key may only sign for acme (empty: any tenant)
//!
//! [[auth.jwt.keys]]
//! alg = "RS256"
//! kid = "2026-01"
//! public_key_pem_file = "/etc/turnpike/jwt-rs256.pub.pem"
//!
//! [[auth.api_keys]]
//! tenant = "acme"
//! name = "acme-backend"                   # a label for logs, never the key
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!
//! [limits]
//! max_message_bytes = 16384
//! messages_per_second = 5.0
//! ```
//!
//! Every table rejects unknown keys, so a typo fails at start-up instead of silently keeping a default.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole gateway file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Client-facing HTTP listener (WebSocket, SSE, POST).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listener.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// Browser origins allowed to open a WebSocket (exact match, e.g. `https://chat.example.com`). A request
    /// without an `Origin` header is not from a browser and is allowed; a browser page from any other origin
    /// is refused (cross-site WebSocket hijacking).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How clients prove who they are.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Per-connection limits.
    #[serde(default)]
    pub limits: ConnectionLimits,
    /// The per-session reply streams in Redis.
    #[serde(default)]
    pub events: EventsConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9610))
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: default_listen(),
            metrics_listen: default_metrics_listen(),
            allowed_origins: Vec::new(),
            auth: AuthConfig::default(),
            limits: ConnectionLimits::default(),
            events: EventsConfig::default(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read gateway config {path}: {message}")]
    Read { path: String, message: String },
    #[error("gateway config: {0}")]
    Invalid(String),
}

impl GatewayConfig {
    /// The file named by `TURNPIKE_GATEWAY_CONFIG`, or the defaults (no credentials: every request is
    /// refused) when the variable is unset.
    pub fn from_env() -> Result<GatewayConfig, ConfigError> {
        match std::env::var_os("TURNPIKE_GATEWAY_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => Self::load(Path::new(&path)),
            None => Ok(Self::default()),
        }
    }

    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        let cfg: GatewayConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.message().to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Cross-field rules, checked before anything listens.
    pub fn check(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_message_bytes == 0 || l.messages_per_second <= 0.0 || l.burst == 0 {
            return Err(ConfigError::Invalid("limits must be positive".into()));
        }
        if l.idle_timeout_secs <= l.ping_interval_secs {
            return Err(ConfigError::Invalid(format!(
                "idle_timeout_secs ({}) must exceed ping_interval_secs ({}): a live client answers pings",
                l.idle_timeout_secs, l.ping_interval_secs
            )));
        }
        for k in &self.auth.api_keys {
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!("api key `{}`: sha256 must be 64 hex digits", k.name)));
            }
        }
        Ok(())
    }
}

/// Credentials the gateway accepts.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub jwt: JwtConfig,
    /// Per-tenant API keys (server-to-server); only their SHA-256 is stored.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
}

/// JWT validation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss` claim, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Verification keys; a token must verify with one of them.
    #[serde(default)]
    pub keys: Vec<JwtKeyConfig>,
}

fn default_leeway() -> u64 {
    30
}

/// One JWT verification key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// `HS256` or `RS256`.
    pub alg: String,
    /// Key id; when set, a token whose header names another `kid` is not tried with this key.
    #[serde(default)]
    pub kid: Option<String>,
    /// HS256: the shared secret inline (tests, local use).
    #[serde(default)]
    pub secret: Option<String>,
    /// HS256: the name of an environment variable holding the shared secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RS256: the public key, PEM text inline.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// RS256: a file holding the public key in PEM.
    #[serde(default)]
    pub public_key_pem_file: Option<PathBuf>,
    /// Tenants this key may sign for; empty means any tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// One API key of one tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub tenant: String,
    /// A label for logs and metrics; never the key itself.
    pub name: String,
    /// Lower-case hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
}

/// Limits on one client connection.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Longest message text, in bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Sustained messages per second on one WebSocket.
    pub messages_per_second: f64,
    /// Messages allowed in a burst above the sustained rate.
    pub burst: u32,
    /// Conversations one WebSocket may follow at once.
    pub max_conversations_per_socket: usize,
    /// WebSocket ping period.
    pub ping_interval_secs: u64,
    /// A WebSocket with no frame from the client (pongs included) for this long is closed.
    pub idle_timeout_secs: u64,
    /// A client that cannot take a frame for this long is disconnected (it resumes from its last id).
    pub slow_client_timeout_secs: u64,
    /// How long a produce to the inbound topic may take before the message is refused as unavailable.
    pub produce_timeout_secs: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_message_bytes: 16 * 1024,
            messages_per_second: 5.0,
            burst: 10,
            max_conversations_per_socket: 16,
            ping_interval_secs: 20,
            idle_timeout_secs: 60,
            slow_client_timeout_secs: 10,
            produce_timeout_secs: 10,
        }
    }
}

impl ConnectionLimits {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    pub fn slow_client_timeout(&self) -> Duration {
        Duration::from_secs(self.slow_client_timeout_secs)
    }
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_secs(self.produce_timeout_secs)
    }
}

/// The per-session reply streams.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events kept per session (older ones are trimmed; a resume from before them reports `events_expired`).
    pub max_len: u64,
    /// A session's stream expires this long after its last event.
    pub ttl_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { max_len: 1000, ttl_secs: 24 * 3600 }
    }
}

/// Per-tenant token quotas: section `gateway` of the tenants file. 0 means no limit.
///
/// ```toml
/// [defaults.gateway]
/// user_tokens_per_minute = 20000
/// [tenants.acme.gateway]
/// tenant_tokens_per_day = 50000000
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    pub user_tokens_per_minute: u64,
    pub user_tokens_per_day: u64,
    pub tenant_tokens_per_minute: u64,
    pub tenant_tokens_per_day: u64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            user_tokens_per_minute: 20_000,
            user_tokens_per_day: 500_000,
            tenant_tokens_per_minute: 200_000,
            tenant_tokens_per_day: 20_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example_and_rejects_typos() {
        let text = r#"
            listen = "0.0.0.0:8080"
            allowed_origins = ["https://chat.example.com"]
            [auth.jwt]
            issuer = "https://login.example.com"
            [[auth.jwt.keys]]
            alg = "HS256"
            secret_env = "TURNPIKE_JWT_SECRET"
            tenants = ["acme"]
            [[auth.api_keys]]
            tenant = "acme"
            name = "acme-backend"
            sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            [limits]
            max_message_bytes = 100
        "#;
        let cfg = GatewayConfig::parse(text).unwrap();
        assert_eq!(cfg.limits.max_message_bytes, 100);
        assert_eq!(cfg.limits.burst, 10, "unset limits keep their defaults");
        assert_eq!(cfg.auth.jwt.keys[0].tenants, vec!["acme".to_string()]);
        let err = GatewayConfig::parse("[limits]\nmax_mesage_bytes = 1").unwrap_err();
        assert!(err.to_string().contains("max_mesage_bytes"), "{err}");
        let err =
            GatewayConfig::parse("[[auth.api_keys]]\ntenant = \"a\"\nname = \"n\"\nsha256 = \"abc\"").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        let err = GatewayConfig::parse("[limits]\nidle_timeout_secs = 5").unwrap_err();
        assert!(err.to_string().contains("ping_interval_secs"), "{err}");
    }
}
