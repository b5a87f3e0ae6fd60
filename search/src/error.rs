//! The one error type of this crate.

/// Everything that can go wrong in `smartchat-search`.
///
/// Messages name ids and counts only, never message text, subjects or keys.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A file could not be authenticated with the tenant key: wrong key, or a
    /// file that was tampered with or truncated.
    #[error("search index failed authentication (wrong key or tampered file)")]
    Crypto,
    /// The index is unreadable for another reason (missing or broken files).
    #[error("search index is corrupt: {0}")]
    CorruptIndex(String),
    /// The tenant reference is not a plain id (`[A-Za-z0-9_-]{1,64}`).
    #[error("invalid tenant reference")]
    InvalidTenant,
    /// The tenant index has not been opened with [`crate::IndexManager::open`].
    #[error("search index for this tenant is not open")]
    TenantNotOpen,
    /// The query text could not be parsed.
    #[error("query syntax error: {hint}")]
    QuerySyntax {
        /// Byte offset in the query text, when known.
        position: Option<usize>,
        /// A short, user-facing explanation.
        hint: String,
    },
    /// The request is outside the allowed bounds (limit, offset, date range).
    #[error("invalid search request: {0}")]
    InvalidRequest(String),
    /// A document could not be accepted (for example an over-long id).
    #[error("invalid document: {0}")]
    InvalidDocument(&'static str),
    /// An error from tantivy that is not classified above.
    #[error("search engine error: {0}")]
    Engine(String),
    /// A filesystem error outside tantivy.
    #[error("search index I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking task panicked or was cancelled.
    #[error("search background task failed")]
    Task,
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(error: tantivy::TantivyError) -> Self {
        SearchError::Engine(error.to_string())
    }
}
