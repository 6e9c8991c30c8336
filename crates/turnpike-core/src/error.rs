//! Error classes: the one question every failure must answer is "what should the runner do now?".

use std::fmt;

/// What the caller should do with a failed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A dependency is unavailable or overloaded (registry outage, broker timeout, Cassandra unavailable).
    /// Back off and try the same input again; never dead-letter and never commit past it.
    Retryable,
    /// The input itself is bad (undecodable bytes, a schema violation, a missing required field).
    /// Trying again gives the same answer: dead-letter it with the reason and move on.
    Poison,
    /// The process cannot go on (bad configuration, fenced producer, authentication refused).
    /// Exit non-zero and let the supervisor restart it.
    Fatal,
}

impl ErrorClass {
    /// Stable lower-case label, used in metrics (`error_type`) and dead-letter headers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Poison => "poison",
            ErrorClass::Fatal => "fatal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every error type that can reach the stage runner.
pub trait Classify {
    /// The class that decides retry, dead-letter or exit.
    fn class(&self) -> ErrorClass;

    /// A short, stable, machine-readable code (`registry_unavailable`, `avro_decode`, ...) for metrics
    /// labels and dead-letter headers. Bounded cardinality: never include values from the input.
    fn code(&self) -> &'static str;
}
