//! CQL session set-up and the store error type.

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError, MetadataError,
    NewSessionError, PrepareError, RequestAttemptError,
};
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
    /// The cluster refused our login (wrong or missing credentials): configuration, not an outage.
    #[error("cql login refused: {0}")]
    CqlLogin(String),
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
            StoreError::Cql(_) | StoreError::CqlLogin(_) | StoreError::Migration { .. } => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            StoreError::CqlUnavailable(_) => "cql_unavailable",
            StoreError::Cql(_) => "cql_statement",
            StoreError::CqlLogin(_) => "cql_login",
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
    builder.build().await.map_err(|e| {
        if login_refused(&e) {
            StoreError::CqlLogin(e.to_string())
        } else {
            StoreError::CqlUnavailable(e.to_string())
        }
    })
}

/// Whether the session failed because the node refused our credentials (or wanted some and we had none):
/// waiting for the cluster would only delay that report. Anything else at connection time (refused,
/// reset, timed out, a node still starting) is the cluster not being there yet.
fn login_refused(e: &NewSessionError) -> bool {
    let NewSessionError::MetadataError(MetadataError::ConnectionPoolError(ConnectionPoolError::Broken {
        last_connection_error: ConnectionError::ConnectionSetupRequestError(setup),
    })) = e
    else {
        return false;
    };
    matches!(
        setup.error,
        ConnectionSetupRequestErrorKind::DbError(DbError::AuthenticationError, _)
            | ConnectionSetupRequestErrorKind::MissingAuthentication
            | ConnectionSetupRequestErrorKind::StartAuthSessionError(_)
            | ConnectionSetupRequestErrorKind::AuthChallengeEvaluationError(_)
            | ConnectionSetupRequestErrorKind::AuthFinishError(_)
    )
}

/// Prepares `cql` and marks it idempotent: every statement of the stores is an upsert or a read, so the
/// driver may retry and speculate on it.
pub(crate) async fn prepare_idempotent(
    session: &Session,
    cql: String,
) -> Result<scylla::statement::prepared::PreparedStatement, StoreError> {
    let mut p = session.prepare(cql).await.map_err(|e| classified(prepare_retryable(&e), e))?;
    p.set_is_idempotent(true);
    Ok(p)
}

/// Classifies a request error: the database being down, slow or overloaded is retryable; a statement the
/// database refuses (syntax, unknown table, bad types) is a bug or a missing migration, and retrying it
/// would only hide that.
pub(crate) fn request_error(e: ExecutionError) -> StoreError {
    let retryable = match &e {
        ExecutionError::BadQuery(_) | ExecutionError::UseKeyspaceError(_) => false,
        // Preparing while the node is down or restarting fails on the connection, not on the statement.
        ExecutionError::PrepareError(p) => prepare_retryable(p),
        ExecutionError::LastAttemptError(a) => attempt_retryable(a),
        _ => true,
    };
    classified(retryable, e)
}

fn classified(retryable: bool, e: impl std::fmt::Display) -> StoreError {
    if retryable {
        StoreError::CqlUnavailable(e.to_string())
    } else {
        StoreError::Cql(e.to_string())
    }
}

/// A preparation fails retryably when no connection could carry it (the node is down, restarting or the
/// pool is reconnecting), fatally when the database refused the statement itself.
fn prepare_retryable(e: &PrepareError) -> bool {
    match e {
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_retryable(first_attempt),
        _ => true,
    }
}

/// One request attempt: an error the database returned is retryable only for its availability and load
/// codes; a lost connection or an exhausted stream-id pool is retryable; a request the driver could not
/// even serialize is a bug.
fn attempt_retryable(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::DbError(db, _) => matches!(
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
        RequestAttemptError::SerializationError(_) | RequestAttemptError::CqlRequestSerialization(_) => false,
        _ => true,
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

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::ConnectionPoolError;
    use turnpike_core::ErrorClass;

    fn class(e: StoreError) -> ErrorClass {
        e.class()
    }

    #[test]
    fn preparing_without_a_connection_is_retryable() {
        // What a stage sees while Cassandra is down or restarting: no connection in the pool.
        let down = PrepareError::ConnectionPoolError(ConnectionPoolError::Initializing);
        assert!(prepare_retryable(&down));
        assert_eq!(class(request_error(ExecutionError::PrepareError(down))), ErrorClass::Retryable);
        assert_eq!(
            class(request_error(ExecutionError::ConnectionPoolError(ConnectionPoolError::Initializing))),
            ErrorClass::Retryable
        );
        let overloaded = RequestAttemptError::DbError(DbError::Overloaded, "busy".into());
        assert!(prepare_retryable(&PrepareError::AllAttemptsFailed { first_attempt: overloaded }));
    }

    #[test]
    fn a_statement_the_database_refuses_is_fatal() {
        // A keyspace the database does not know (a missing migration, or a schema lost by the server) is not
        // going to appear by retrying.
        let refused = RequestAttemptError::DbError(DbError::Invalid, "keyspace turnpike does not exist".into());
        let prepare = PrepareError::AllAttemptsFailed { first_attempt: refused.clone() };
        assert!(!prepare_retryable(&prepare));
        assert_eq!(class(request_error(ExecutionError::PrepareError(prepare))), ErrorClass::Fatal);
        assert_eq!(class(request_error(ExecutionError::LastAttemptError(refused))), ErrorClass::Fatal);
    }
}
