//! The one stage runner. A stage implements [`Stage`]; [`run`] owns subscribe, poll, Avro decode and
//! encode, produce, offsets, rebalance, dead-lettering, back-pressure, shutdown and metrics. Stage code
//! never imports rdkafka. The guarantees are stated in [`runner`].

mod config;
mod consumer;
mod dlq_cap;
pub mod metrics_exporter;
mod runner;
mod stage;
pub mod trace;
mod tracker;
mod txn;

pub use config::{ConfigError, RunnerConfig};
pub use runner::{check_input_schema, now_ms, run, run_with, RunnerError, SharedProducer};
pub use stage::{Emitter, Source, Stage, StageError};
pub use tracker::{Admit, PartitionTracker};
