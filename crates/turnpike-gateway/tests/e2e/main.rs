//! The gateway's tests against the real local stack, in one test binary (each file used to link a binary
//! of its own, which cost CI minutes and gigabytes). Each module is one former file.

#[path = "../chromium/mod.rs"]
mod chromium;
#[path = "../common/mod.rs"]
mod common;

mod browser;
mod connection_limits;
mod gateway;
mod isolation;
mod redis_scripts;
