//! Where the four services live. Defaults match `deploy/local/stack.sh`; every value can be overridden by an
//! environment variable so the same binaries and tests run against an existing cluster.

use serde::{Deserialize, Serialize};

/// Kafka bootstrap servers (`host:port[,host:port]`).
pub const ENV_KAFKA: &str = "TURNPIKE_KAFKA_BOOTSTRAP";
/// Kafka SASL user; unset = no login (a broker without SASL).
pub const ENV_KAFKA_USERNAME: &str = "TURNPIKE_KAFKA_USERNAME";
/// Password of [`ENV_KAFKA_USERNAME`].
pub const ENV_KAFKA_PASSWORD: &str = "TURNPIKE_KAFKA_PASSWORD";
/// SASL mechanism (default `PLAIN`; librdkafka's names).
pub const ENV_KAFKA_SASL_MECHANISM: &str = "TURNPIKE_KAFKA_SASL_MECHANISM";
/// `security.protocol` with a login (default `SASL_PLAINTEXT`).
pub const ENV_KAFKA_SECURITY_PROTOCOL: &str = "TURNPIKE_KAFKA_SECURITY_PROTOCOL";
/// CQL contact points (`host:port[,host:port]`) of ScyllaDB or Cassandra.
pub const ENV_CQL: &str = "TURNPIKE_CQL_NODES";
/// Base URL of the Confluent-compatible schema registry API (for Apicurio: `.../apis/ccompat/v7`).
pub const ENV_REGISTRY: &str = "TURNPIKE_SCHEMA_REGISTRY_URL";
/// Schema registry user (HTTP basic authentication); unset = no login.
pub const ENV_REGISTRY_USERNAME: &str = "TURNPIKE_SCHEMA_REGISTRY_USERNAME";
/// Password of [`ENV_REGISTRY_USERNAME`].
pub const ENV_REGISTRY_PASSWORD: &str = "TURNPIKE_SCHEMA_REGISTRY_PASSWORD";
/// Redis URL (`redis://[:password@]host:port[/db]`).
pub const ENV_REDIS: &str = "TURNPIKE_REDIS_URL";
/// CQL keyspace holding transcripts, sessions and tickets.
pub const ENV_KEYSPACE: &str = "TURNPIKE_CQL_KEYSPACE";
/// CQL role to log in as (PasswordAuthenticator); unset = no login.
pub const ENV_CQL_USERNAME: &str = "TURNPIKE_CQL_USERNAME";
/// Password of [`ENV_CQL_USERNAME`].
pub const ENV_CQL_PASSWORD: &str = "TURNPIKE_CQL_PASSWORD";

/// Addresses of the services Turnpike depends on.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// Kafka SASL login, when the brokers authenticate clients. Never log the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_login: Option<KafkaLogin>,
    /// CQL contact points.
    pub cql_nodes: Vec<String>,
    /// CQL keyspace.
    pub keyspace: String,
    /// CQL login (role, password), when the cluster authenticates clients. Never log the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cql_credentials: Option<(String, String)>,
    /// Confluent-compatible schema registry base URL, without a trailing slash.
    pub schema_registry_url: String,
    /// Schema registry login (HTTP basic), when the registry authenticates clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_login: Option<BasicLogin>,
    /// Redis URL. May carry a password: never log it as is (see [`Endpoints::redacted_redis_url`]).
    pub redis_url: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            kafka_bootstrap: "127.0.0.1:9092".into(),
            kafka_login: None,
            cql_nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "turnpike".into(),
            cql_credentials: None,
            schema_registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            registry_login: None,
            redis_url: "redis://127.0.0.1:6379".into(),
        }
    }
}

/// Shows the Kafka, CQL and registry user names but no password (Redis's is redacted from its URL), so a logged `{:?}`
/// never leaks one.
impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("kafka_bootstrap", &self.kafka_bootstrap)
            .field("kafka_username", &self.kafka_login.as_ref().map(|l| &l.username))
            .field("cql_nodes", &self.cql_nodes)
            .field("keyspace", &self.keyspace)
            .field("cql_username", &self.cql_credentials.as_ref().map(|(user, _)| user))
            .field("schema_registry_url", &self.schema_registry_url)
            .field("registry_username", &self.registry_login.as_ref().map(|l| &l.username))
            .field("redis_url", &self.redacted_redis_url())
            .finish()
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
        if let Some(username) = get(ENV_KAFKA_USERNAME) {
            e.kafka_login = Some(KafkaLogin {
                username,
                password: get(ENV_KAFKA_PASSWORD).unwrap_or_default(),
                mechanism: get(ENV_KAFKA_SASL_MECHANISM).unwrap_or_else(|| "PLAIN".into()),
                security_protocol: get(ENV_KAFKA_SECURITY_PROTOCOL).unwrap_or_else(|| "SASL_PLAINTEXT".into()),
            });
        }
        if let Some(v) = get(ENV_CQL) {
            e.cql_nodes = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = get(ENV_KEYSPACE) {
            e.keyspace = v;
        }
        if let Some(user) = get(ENV_CQL_USERNAME) {
            e.cql_credentials = Some((user, get(ENV_CQL_PASSWORD).unwrap_or_default()));
        }
        if let Some(v) = get(ENV_REGISTRY) {
            e.schema_registry_url = v.trim_end_matches('/').to_string();
        }
        if let Some(username) = get(ENV_REGISTRY_USERNAME) {
            e.registry_login = Some(BasicLogin { username, password: get(ENV_REGISTRY_PASSWORD).unwrap_or_default() });
        }
        if let Some(v) = get(ENV_REDIS) {
            e.redis_url = v;
        }
        e
    }

    /// The librdkafka properties every Kafka client of Turnpike sets: the bootstrap servers and, with a
    /// login, the SASL settings. Every client is made from these, so none connects unauthenticated.
    /// (`rdkafka::ClientConfig` collects them: `ep.kafka_properties().into_iter().collect()`.)
    pub fn kafka_properties(&self) -> Vec<(String, String)> {
        let mut props = vec![("bootstrap.servers".to_string(), self.kafka_bootstrap.clone())];
        if let Some(l) = &self.kafka_login {
            props.extend(l.properties());
        }
        props
    }

    /// The Redis URL with any password replaced by `***`, safe for logs.
    pub fn redacted_redis_url(&self) -> String {
        redact_url_password(&self.redis_url)
    }
}

/// A SASL login to the Kafka brokers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaLogin {
    pub username: String,
    pub password: String,
    /// librdkafka's `sasl.mechanism` (`PLAIN`; the SCRAM ones need a TLS-enabled librdkafka build).
    pub mechanism: String,
    /// librdkafka's `security.protocol` (`SASL_PLAINTEXT`, or `SASL_SSL` with a TLS-enabled build).
    pub security_protocol: String,
}

impl KafkaLogin {
    /// The librdkafka properties of this login.
    pub fn properties(&self) -> Vec<(String, String)> {
        [
            ("security.protocol", &self.security_protocol),
            ("sasl.mechanism", &self.mechanism),
            ("sasl.username", &self.username),
            ("sasl.password", &self.password),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }
}

/// Without the password.
impl std::fmt::Debug for KafkaLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLogin")
            .field("username", &self.username)
            .field("mechanism", &self.mechanism)
            .field("security_protocol", &self.security_protocol)
            .finish_non_exhaustive()
    }
}

/// A user name and password for HTTP basic authentication (the schema registry's).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicLogin {
    pub username: String,
    pub password: String,
}

/// Without the password.
impl std::fmt::Debug for BasicLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicLogin").field("username", &self.username).finish_non_exhaustive()
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
            ENV_CQL_USERNAME => Some("turnpike".into()),
            ENV_CQL_PASSWORD => Some("pw".into()),
            ENV_REGISTRY_USERNAME => Some("reg".into()),
            ENV_REGISTRY_PASSWORD => Some("rpw".into()),
            _ => None,
        });
        assert_eq!(e.cql_credentials, Some(("turnpike".into(), "pw".into())));
        assert_eq!(e.registry_login, Some(BasicLogin { username: "reg".into(), password: "rpw".into() }));
        assert_eq!(Endpoints::from_lookup(|_| None).registry_login, None, "no user, no registry login");
        assert_eq!(e.kafka_properties(), vec![("bootstrap.servers".into(), Endpoints::default().kafka_bootstrap)]);
        assert_eq!(Endpoints::from_lookup(|_| None).cql_credentials, None, "no role, no login");
        assert_eq!(e.cql_nodes, vec!["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(e.schema_registry_url, "http://r:8081/apis/ccompat/v7");
        assert_eq!(e.kafka_bootstrap, Endpoints::default().kafka_bootstrap, "blank values keep the default");
    }

    #[test]
    fn redis_password_is_redacted() {
        assert_eq!(redact_url_password("redis://:s3cret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact_url_password("redis://h:6379"), "redis://h:6379");
        let e = Endpoints {
            redis_url: "redis://:s3cret@h:6379".into(),
            cql_credentials: Some(("turnpike".into(), "s3cret".into())),
            registry_login: Some(BasicLogin { username: "reg".into(), password: "s3cret".into() }),
            ..Endpoints::default()
        };
        assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
        assert!(format!("{e:?}").contains("turnpike"), "the role is shown: {e:?}");
    }

    #[test]
    fn a_kafka_login_becomes_sasl_properties_of_every_client() {
        let e = Endpoints::from_lookup(|k| match k {
            ENV_KAFKA_USERNAME => Some("turnpike".into()),
            ENV_KAFKA_PASSWORD => Some("s3cret".into()),
            _ => None,
        });
        let props = e.kafka_properties();
        let get = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        assert_eq!(get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(get("sasl.username"), Some("turnpike"));
        assert_eq!(get("sasl.password"), Some("s3cret"));
        assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
    }
}
