//! Shared vocabulary of Turnpike: how errors say whether to retry, and where the services live.
//!
//! Every crate that talks to Kafka, the schema registry, Cassandra/ScyllaDB or Redis classifies its errors
//! with [`ErrorClass`], so the stage runner can decide between backing off, dead-lettering and exiting
//! without knowing which library failed.

pub mod endpoints;
pub mod error;
pub mod metric_labels;
pub mod priority;
pub mod tenants;

pub use endpoints::{BasicLogin, Endpoints, KafkaLogin};
pub use error::{Classify, ErrorClass};
pub use metric_labels::tenant_label;
pub use priority::Priority;
pub use tenants::{PerTenant, TenantsConfig};
