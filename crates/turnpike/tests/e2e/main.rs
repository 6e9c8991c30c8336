//! The tests against the real local stack, in one test binary: each file used to link a binary of its own
//! (~60 MB apiece), which cost CI minutes and gigabytes. Each module is one former file; every test still
//! runs on topics of its own, so tests of different modules may run side by side.
//!
//! `memory.rs` stays a binary of its own: it points the process's `TURNPIKE_TENANTS_CONFIG` at a file of its
//! own, which would change the tenant policies of every other in-process pipeline here.

#[path = "../common/mod.rs"]
mod common;

mod crashes;
mod db_outage;
mod desk;
mod desk_gateway;
mod desk_vendors;
mod failures;
mod fenced;
mod guardrails;
mod handoff;
mod knowledge;
mod llm_failover;
mod observability;
mod pipeline;
mod processes;
mod prometheus;
mod python_client;
mod registry_outage;
mod resume;
mod routing;
mod stack;
mod vip_crm;
