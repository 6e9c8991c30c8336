//! CQL session set-up and the store error type.

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use std::time::Duration;
use turnpike_core::{Classify, Endpoints, ErrorClass};

/// Errors from the stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The CQL cluster could not be reached or a request timed out.
    #[error("cql cluster unavailable: {0}")]
    CqlUnavailable(String),
    /// A CQL statement was refused (syntax, schema mismatch): a bug or a missing migration.
    #[error("cql statement failed: {0}")]
    Cql(String),
    /// Redis could not be reached or refused a command.
    #[error("redis error: {0}")]
    Redis(String),
    /// A migration failed.
    #[error("migration {id} failed: {detail}")]
    Migration { id: String, detail: String },
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::CqlUnavailable(_) | StoreError::Redis(_) => ErrorClass::Retryable,
            StoreError::Cql(_) | StoreError::Migration { .. } => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            StoreError::CqlUnavailable(_) => "cql_unavailable",
            StoreError::Cql(_) => "cql_statement",
            StoreError::Redis(_) => "redis",
            StoreError::Migration { .. } => "migration",
        }
    }
}

/// Connects to the CQL cluster without selecting a keyspace (migrations create it), logging in when the
/// endpoints carry credentials.
pub async fn connect_cql(endpoints: &Endpoints) -> Result<Session, StoreError> {
    let mut builder =
        SessionBuilder::new().known_nodes(&endpoints.cql_nodes).connection_timeout(Duration::from_secs(5));
    if let Some((user, password)) = &endpoints.cql_credentials {
        builder = builder.user(user, password);
    }
    builder.build().await.map_err(|e| StoreError::CqlUnavailable(e.to_string()))
}

/// Prepares `cql` and marks it idempotent: every statement of the stores is an upsert or a read, so the
/// driver may retry and speculate on it.
pub(crate) async fn prepare_idempotent(
    session: &Session,
    cql: String,
) -> Result<scylla::statement::prepared::PreparedStatement, StoreError> {
    let mut p = session.prepare(cql).await.map_err(|e| StoreError::Cql(e.to_string()))?;
    p.set_is_idempotent(true);
    Ok(p)
}

/// Classifies a request error: the database being down, slow or overloaded is retryable; a statement the
/// database refuses (syntax, unknown table, bad types) is a bug or a missing migration, and retrying it
/// would only hide that.
pub(crate) fn request_error(e: ExecutionError) -> StoreError {
    let retryable = match &e {
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) | ExecutionError::UseKeyspaceError(_) => false,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
                | DbError::ServerError
                | DbError::TruncateError
                | DbError::RateLimitReached { .. }
        ),
        ExecutionError::LastAttemptError(
            RequestAttemptError::SerializationError(_) | RequestAttemptError::CqlRequestSerialization(_),
        ) => false,
        _ => true,
    };
    if retryable {
        StoreError::CqlUnavailable(e.to_string())
    } else {
        StoreError::Cql(e.to_string())
    }
}

/// Runs a prepared SELECT page by page and collects its rows (a session's partition: bounded).
pub(crate) async fn collect_rows<T>(
    session: &Session,
    stmt: &scylla::statement::prepared::PreparedStatement,
    values: impl scylla::serialize::row::SerializeRow,
) -> Result<Vec<T>, StoreError>
where
    T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    use futures::TryStreamExt;
    let pager =
        session.execute_iter(stmt.clone(), values).await.map_err(|e| StoreError::CqlUnavailable(e.to_string()))?;
    pager
        .rows_stream::<T>()
        .map_err(|e| StoreError::Cql(e.to_string()))?
        .try_collect()
        .await
        .map_err(|e| StoreError::CqlUnavailable(e.to_string()))
}
