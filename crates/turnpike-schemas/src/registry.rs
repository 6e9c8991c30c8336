//! Registration of Turnpike's schemas in a Confluent-compatible registry, with BACKWARD compatibility per
//! subject, so a consumer upgraded first can always read what older producers write.

use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use turnpike_core::{Classify, ErrorClass};

use crate::records::ALL_SCHEMAS;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Errors from registry administration.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Transport failure or a 5xx: try again later.
    #[error("schema registry at {url} is unavailable: {detail}")]
    Unavailable { url: String, detail: String },
    /// The registry answered with an error for a request we made.
    #[error("schema registry refused {what}: HTTP {status}: {body}")]
    Refused { what: String, status: u16, body: String },
    /// The new schema breaks compatibility with the registered versions.
    #[error("schema for subject {subject} is not BACKWARD compatible with its registered versions: {body}")]
    Incompatible { subject: String, body: String },
    /// A topic names a schema this build does not have.
    #[error("no schema named `{0}` is compiled into this build")]
    UnknownSchema(String),
}

impl Classify for RegistryError {
    fn class(&self) -> ErrorClass {
        match self {
            RegistryError::Unavailable { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            RegistryError::Unavailable { .. } => "registry_unavailable",
            RegistryError::Refused { .. } => "registry_refused",
            RegistryError::Incompatible { .. } => "schema_incompatible",
            RegistryError::UnknownSchema(_) => "unknown_schema",
        }
    }
}

/// A small client for the administrative endpoints of the Confluent REST API.
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    login: Option<turnpike_core::BasicLogin>,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

impl RegistryClient {
    /// A client for the registry API rooted at `base` (for Apicurio: `.../apis/ccompat/v7`), logging in
    /// with `login` (HTTP basic) when given.
    pub fn new(
        base: &str,
        login: Option<&turnpike_core::BasicLogin>,
        timeout: Duration,
    ) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RegistryError::Unavailable { url: base.to_string(), detail: e.to_string() })?;
        Ok(RegistryClient { base: base.trim_end_matches('/').to_string(), http, login: login.cloned() })
    }

    /// [`RegistryClient::new`] with the registry URL and login of `endpoints`.
    pub fn for_endpoints(
        endpoints: &turnpike_core::Endpoints,
        timeout: Duration,
    ) -> Result<RegistryClient, RegistryError> {
        RegistryClient::new(&endpoints.schema_registry_url, endpoints.registry_login.as_ref(), timeout)
    }

    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response, RegistryError> {
        let req = match &self.login {
            Some(l) => req.basic_auth(&l.username, Some(&l.password)),
            None => req,
        };
        let resp = req
            .header("Content-Type", CONTENT_TYPE)
            .header("Accept", CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable { url: self.base.clone(), detail: e.to_string() })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            return Err(RegistryError::Unavailable {
                url: self.base.clone(),
                detail: format!("HTTP {status}: {body}"),
            });
        }
        Err(RegistryError::Refused { what: what.to_string(), status: status.as_u16(), body })
    }

    /// Lists the registered subjects.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let resp = self.send("listing subjects", self.http.get(format!("{}/subjects", self.base))).await?;
        resp.json().await.map_err(|e| RegistryError::Unavailable { url: self.base.clone(), detail: e.to_string() })
    }

    /// The schema id of the latest version under `subject` (a subject listing may be capped by the
    /// registry — Apicurio lists at most 1,000 — so this asks for the one subject).
    pub async fn latest_id(&self, subject: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions/latest", self.base);
        let resp = self.send(&format!("reading the latest version of {subject}"), self.http.get(url)).await?;
        let r: IdResponse = resp
            .json()
            .await
            .map_err(|e| RegistryError::Unavailable { url: self.base.clone(), detail: e.to_string() })?;
        Ok(r.id)
    }

    /// Sets the compatibility level of one subject.
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let req = self.http.put(format!("{}/config/{subject}", self.base)).json(&json!({ "compatibility": level }));
        self.send(&format!("setting compatibility of {subject}"), req).await?;
        Ok(())
    }

    /// Registers `schema` under `subject` (idempotent: an identical schema returns its existing id).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let req = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .json(&json!({ "schema": schema, "schemaType": "AVRO" }));
        match self.send(&format!("registering {subject}"), req).await {
            Ok(resp) => {
                let r: IdResponse = resp
                    .json()
                    .await
                    .map_err(|e| RegistryError::Unavailable { url: self.base.clone(), detail: e.to_string() })?;
                Ok(r.id)
            }
            Err(RegistryError::Refused { status: 409, body, .. }) => {
                Err(RegistryError::Incompatible { subject: subject.to_string(), body })
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches the schema text registered under `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct S {
            schema: String,
        }
        let resp = self
            .send(&format!("fetching schema {id}"), self.http.get(format!("{}/schemas/ids/{id}", self.base)))
            .await?;
        let s: S = resp
            .json()
            .await
            .map_err(|e| RegistryError::Unavailable { url: self.base.clone(), detail: e.to_string() })?;
        Ok(s.schema)
    }
}

/// Text of a compiled-in schema by name.
pub fn schema_text(name: &str) -> Option<&'static str> {
    ALL_SCHEMAS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Sets BACKWARD compatibility and registers the schema of every `(topic, schema name)` pair under
/// `<topic>-value`. Returns `(subject, id)` per topic. Safe to run on every start.
pub async fn register_all(
    client: &RegistryClient,
    topics: &[(String, String)],
) -> Result<Vec<(String, u32)>, RegistryError> {
    let mut out = Vec::with_capacity(topics.len());
    for (topic, schema_name) in topics {
        let schema = schema_text(schema_name).ok_or_else(|| RegistryError::UnknownSchema(schema_name.clone()))?;
        let subject = format!("{topic}-value");
        client.set_compatibility(&subject, "BACKWARD").await?;
        let id = client.register(&subject, schema).await?;
        out.push((subject, id));
    }
    Ok(out)
}
