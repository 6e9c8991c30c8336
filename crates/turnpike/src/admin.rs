//! Administration commands: each is safe to run repeatedly.

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use turnpike_core::Endpoints;
use turnpike_schemas::RegistryClient;
use turnpike_topology::Topology;

/// Loads and validates the topology; every later command starts from a valid one.
pub fn load_valid(topology: &Path, schemas: &Path, prefix: Option<&str>) -> anyhow::Result<Topology> {
    let topo = Topology::load(topology)?;
    topo.validate(schemas)?;
    Ok(match prefix.filter(|p| !p.is_empty()) {
        Some(p) => topo.prefixed(p),
        None => topo,
    })
}

pub fn validate(topology: &Path, schemas: &Path, prefix: Option<&str>) -> anyhow::Result<()> {
    let topo = load_valid(topology, schemas, prefix)?;
    println!(
        "topology `{}` v{} is valid: {} topics, {} stages",
        topo.name,
        topo.version,
        topo.topics.len(),
        topo.stages.len()
    );
    Ok(())
}

pub async fn apply(topology: &Path, schemas: &Path, prefix: Option<&str>, endpoints: &Endpoints) -> anyhow::Result<()> {
    let topo = load_valid(topology, schemas, prefix)?;
    let report = turnpike_topology::apply::apply(&topo, &endpoints.kafka_properties(), Duration::from_secs(30))
        .await
        .with_context(|| format!("applying topology to Kafka at {}", endpoints.kafka_bootstrap))?;
    println!("topics: {} created, {} already present", report.created.len(), report.existing.len());
    Ok(())
}

pub async fn register(
    topology: &Path,
    schemas: &Path,
    prefix: Option<&str>,
    endpoints: &Endpoints,
) -> anyhow::Result<()> {
    let topo = load_valid(topology, schemas, prefix)?;
    let client = RegistryClient::for_endpoints(endpoints, Duration::from_secs(10))?;
    let pairs: Vec<(String, String)> = topo.topics.iter().map(|t| (t.name.clone(), t.schema.clone())).collect();
    let registered = turnpike_schemas::register_all(&client, &pairs)
        .await
        .with_context(|| format!("registering schemas at {}", endpoints.schema_registry_url))?;
    println!("schemas: {} subjects registered with BACKWARD compatibility", registered.len());
    Ok(())
}

pub async fn migrate(endpoints: &Endpoints, replication: &str) -> anyhow::Result<()> {
    let session = turnpike_store::connect_cql(endpoints)
        .await
        .with_context(|| format!("connecting to CQL at {}", endpoints.cql_nodes.join(",")))?;
    let session = Arc::new(session);
    let applied = turnpike_store::migrate(&session, &endpoints.keyspace, replication).await?;
    println!("migrations: {} applied to keyspace {} ({:?})", applied.len(), endpoints.keyspace, applied);
    Ok(())
}
