//! The one error type of `smartchat-core`. Messages never contain personal data or key
//! material; `api` maps each variant to one HTTP status and problem code.

use std::path::PathBuf;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A configuration value is missing or malformed.
    #[error("configuration: {key}: {reason}")]
    Config {
        /// The configuration key (TOML key or environment variable).
        key: String,
        /// What was expected.
        reason: String,
    },
    /// The database could not be reached or refused the operation.
    #[error("database: {0}")]
    Database(String),
    /// A query failed.
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The master key given does not open the key store.
    #[error(
        "master key does not match: the key store was sealed with master recipient {expected}, \
         but the configured master key is {found}; nothing was changed"
    )]
    MasterKeyMismatch {
        /// The recipient recorded in the key store.
        expected: String,
        /// The recipient of the configured key.
        found: String,
    },
    /// A key was crypto-shredded; the data it protected is gone for good.
    #[error("{what} was shredded: the data it protected can no longer be read")]
    Shredded {
        /// What was shredded ("tenant key", "subject key").
        what: &'static str,
    },
    /// Decryption failed for another reason than shredding (tampered ciphertext, wrong key).
    #[error("decryption failed: {0}")]
    Crypto(String),
    /// A thing that does not exist (or is not visible to the caller).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for ("tenant", "phone number").
        what: &'static str,
    },
    /// A thing that exists already.
    #[error("{what} already exists")]
    Conflict {
        /// What conflicts.
        what: &'static str,
    },
    /// Input that breaks a rule, with the rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The ledger refused an operation.
    #[error("ledger: {0}")]
    Ledger(String),
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<std::io::Error> for CoreError {
    fn from(e: std::io::Error) -> Self {
        Self::Io {
            path: PathBuf::new(),
            reason: e.to_string(),
        }
    }
}

impl CoreError {
    /// Whether the failure is the database being busy or briefly unreachable (SQLite's
    /// "database is locked", a PostgreSQL serialization failure or a closed connection): the
    /// same request may succeed if tried again, so callers answer "unavailable", not
    /// "internal error".
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            Self::Database(_) => true,
            Self::Query(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection
                ) || {
                    let m = info.message();
                    m.contains("database is locked") || m.contains("database table is locked")
                }
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CoreError;
    use diesel::result::{DatabaseErrorKind, Error};

    fn db(kind: DatabaseErrorKind, msg: &str) -> CoreError {
        CoreError::Query(Error::DatabaseError(kind, Box::new(msg.to_owned())))
    }

    #[test]
    fn busy_and_lost_databases_are_transient_and_nothing_else() {
        assert!(db(DatabaseErrorKind::Unknown, "database is locked").is_transient());
        assert!(
            db(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize"
            )
            .is_transient()
        );
        assert!(db(DatabaseErrorKind::ClosedConnection, "gone").is_transient());
        assert!(CoreError::Database("pool timeout".into()).is_transient());
        assert!(!db(DatabaseErrorKind::UniqueViolation, "duplicate key").is_transient());
        assert!(!db(DatabaseErrorKind::Unknown, "no such table: x").is_transient());
        assert!(!CoreError::Query(Error::NotFound).is_transient());
        assert!(!CoreError::Internal("x".into()).is_transient());
    }
}
