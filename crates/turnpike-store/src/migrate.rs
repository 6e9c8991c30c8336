//! CQL migrations owned by the project, applied in order, each at most once.
//!
//! Every statement is written to be idempotent on its own (`IF NOT EXISTS`), and each applied migration is
//! recorded in `schema_migrations` with a checksum, so running `turnpike migrate` twice is a no-op and an
//! edited, already-applied migration is refused instead of silently diverging.

use crate::cql::{request_error, StoreError};
use scylla::client::session::Session;

/// One migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Ordered id, the file stem (`0001_core`).
    pub id: &'static str,
    /// CQL statements separated by `;`. `--` comments are allowed; `{keyspace}` names the keyspace.
    pub cql: &'static str,
}

/// All migrations, in order. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration { id: "0001_core", cql: include_str!("../migrations/0001_core.cql") },
    Migration { id: "0002_summaries", cql: include_str!("../migrations/0002_summaries.cql") },
    Migration { id: "0003_helpdesk", cql: include_str!("../migrations/0003_helpdesk.cql") },
];

/// Creates the keyspace if needed and applies pending migrations. Returns the ids applied by this call.
///
/// `replication` is the CQL replication map, e.g. `{'class': 'SimpleStrategy', 'replication_factor': 1}`
/// locally or `{'class': 'NetworkTopologyStrategy', 'dc1': 3}` in production.
pub async fn migrate(session: &Session, keyspace: &str, replication: &str) -> Result<Vec<&'static str>, StoreError> {
    check_identifier(keyspace)?;
    let ddl = |id: &str, stmt: String| {
        let id = id.to_string();
        async move {
            session
                .query_unpaged(stmt, ())
                .await
                .map(|_| ())
                .map_err(|e| StoreError::Migration { id, detail: request_error(e).to_string() })
        }
    };
    ddl("keyspace", format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")).await?;
    ddl(
        "schema_migrations",
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations \
             (id text PRIMARY KEY, checksum text, applied_at timestamp)"
        ),
    )
    .await?;

    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let sum = checksum(m.cql);
        let existing = session
            .query_unpaged(format!("SELECT checksum FROM {keyspace}.schema_migrations WHERE id = ?"), (m.id,))
            .await
            .map_err(request_error)?
            .into_rows_result()
            .map_err(|e| StoreError::Cql(e.to_string()))?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(|e| StoreError::Cql(e.to_string()))?;
        match existing {
            Some((Some(recorded),)) if recorded == sum => continue,
            Some((recorded,)) => {
                return Err(StoreError::Migration {
                    id: m.id.to_string(),
                    detail: format!(
                        "already applied with checksum {recorded:?} but the file now has {sum}: migrations are \
                         append-only, add a new one instead of editing an applied one"
                    ),
                })
            }
            None => {}
        }
        for stmt in statements(m.cql) {
            ddl(m.id, stmt.replace("{keyspace}", keyspace)).await?;
        }
        session
            .query_unpaged(
                format!("INSERT INTO {keyspace}.schema_migrations (id, checksum, applied_at) VALUES (?, ?, currentTimestamp())"),
                (m.id, sum.as_str()),
            )
            .await
            .map_err(request_error)?;
        applied.push(m.id);
    }
    Ok(applied)
}

/// Splits a migration into statements, dropping `--` comments and blank pieces.
pub fn statements(cql: &str) -> Vec<String> {
    let without_comments: String = cql
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments.split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// FNV-1a 64 of the text, hex. Detects edits; not a security boundary.
fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Keyspace names are interpolated into DDL, so only plain identifiers are accepted.
fn check_identifier(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Migration {
            id: "keyspace".into(),
            detail: format!(
                "`{name}` is not a valid keyspace name (letter first, then letters, digits, `_`; at most 48)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_drops_comments() {
        let s = statements(
            "-- a; comment\nCREATE TABLE a (x int PRIMARY KEY);\n\nCREATE TABLE b (y int PRIMARY KEY); -- tail",
        );
        assert_eq!(s, vec!["CREATE TABLE a (x int PRIMARY KEY)", "CREATE TABLE b (y int PRIMARY KEY)"]);
        assert_eq!(statements(MIGRATIONS[0].cql).len(), 3);
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(check_identifier("turnpike_test_1").is_ok());
        assert!(check_identifier("x; DROP KEYSPACE y").is_err());
        assert!(check_identifier("1abc").is_err());
    }
}
