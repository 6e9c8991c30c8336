//! The LLM client's tests against the project's mock providers, in one test binary (each file used to link
//! a binary of its own). Each module is one former file.

mod budget;
mod client_against_mock;
mod continuation;
mod failover;
mod formats_against_mock;
mod tools;
