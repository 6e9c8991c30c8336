//! Where the four services live. Defaults match `deploy/local/stack.sh`; every value can be overridden by an
//! environment variable so the same binaries and tests run against an existing cluster.

use serde::{Deserialize, Serialize};

/// Kafka bootstrap servers (`host:port[,host:port]`).
pub const ENV_KAFKA: &str = "TURNPIKE_KAFKA_BOOTSTRAP";
/// CQL contact points (`host:port[,host:port]`) of ScyllaDB or Cassandra.
pub const ENV_CQL: &str = "TURNPIKE_CQL_NODES";
/// Base URL of the Confluent-compatible schema registry API (for Apicurio: `.../apis/ccompat/v7`).
pub const ENV_REGISTRY: &str = "TURNPIKE_SCHEMA_REGISTRY_URL";
/// Redis URL (`redis://[:password@]host:port[/db]`).
pub const ENV_REDIS: &str = "TURNPIKE_REDIS_URL";
/// CQL keyspace holding transcripts, sessions and tickets.
pub const ENV_KEYSPACE: &str = "TURNPIKE_CQL_KEYSPACE";

/// Addresses of the services Turnpike depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// CQL contact points.
    pub cql_nodes: Vec<String>,
    /// CQL keyspace.
    pub keyspace: String,
    /// Confluent-compatible schema registry base URL, without a trailing slash.
    pub schema_registry_url: String,
    /// Redis URL. May carry a password: never log it as is (see [`Endpoints::redacted_redis_url`]).
    pub redis_url: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            kafka_bootstrap: "127.0.0.1:9092".into(),
            cql_nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "turnpike".into(),
            schema_registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
        }
    }
}

impl Endpoints {
    /// Defaults overridden by the `TURNPIKE_*` environment variables that are set and non-empty.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Same as [`Endpoints::from_env`] with an injectable lookup, for tests.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut e = Endpoints::default();
        if let Some(v) = get(ENV_KAFKA) {
            e.kafka_bootstrap = v;
        }
        if let Some(v) = get(ENV_CQL) {
            e.cql_nodes = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = get(ENV_KEYSPACE) {
            e.keyspace = v;
        }
        if let Some(v) = get(ENV_REGISTRY) {
            e.schema_registry_url = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = get(ENV_REDIS) {
            e.redis_url = v;
        }
        e
    }

    /// The Redis URL with any password replaced by `***`, safe for logs.
    pub fn redacted_redis_url(&self) -> String {
        redact_url_password(&self.redis_url)
    }
}

/// Replaces the user-info part of a URL (`scheme://user:secret@host`) with `***`.
pub fn redact_url_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_splits_nodes() {
        let e = Endpoints::from_lookup(|k| match k {
            ENV_CQL => Some("10.0.0.1:9042, 10.0.0.2:9042".into()),
            ENV_REGISTRY => Some("http://r:8081/apis/ccompat/v7/".into()),
            ENV_KAFKA => Some("  ".into()),
            _ => None,
        });
        assert_eq!(e.cql_nodes, vec!["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(e.schema_registry_url, "http://r:8081/apis/ccompat/v7");
        assert_eq!(e.kafka_bootstrap, Endpoints::default().kafka_bootstrap, "blank values keep the default");
    }

    #[test]
    fn redis_password_is_redacted() {
        assert_eq!(redact_url_password("redis://:s3cret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact_url_password("redis://h:6379"), "redis://h:6379");
    }
}
