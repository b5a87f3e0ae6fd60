//! The crate's one error type.

use std::convert::Infallible;

/// Everything that can go wrong in this crate.
///
/// `E` is the error type of a [`crate::LedgerStore`] for the operations that
/// touch storage; pure functions use the default `Infallible`. Messages carry
/// sequence numbers, sizes and codes only, never entry contents.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError<E = Infallible>
where
    E: std::error::Error + 'static,
{
    /// A byte string is not a valid encoding (entry, draft, bundle, note, proof).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure was being decoded.
        what: &'static str,
        /// What was wrong, without the data itself.
        detail: String,
    },
    /// A value does not fit the format's limits (too many refs, a ref too long, ...).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// A Merkle proof or root did not verify.
    #[error("proof rejected: {0}")]
    ProofRejected(&'static str),
    /// A signature or key did not verify or parse.
    #[error("signature: {0}")]
    Signature(String),
    /// The stored log is not consistent with what was signed before; nothing was signed.
    #[error("inconsistent log: {0}")]
    Inconsistent(String),
    /// The request refers to entries or tree sizes the log does not have.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Reading or writing a file or stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The storage backend failed.
    #[error("storage: {0}")]
    Store(#[source] E),
}

impl<E: std::error::Error + 'static> LedgerError<E> {
    /// Shorthand for [`LedgerError::Malformed`].
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            detail: detail.into(),
        }
    }
}

/// Converts a storage-free error into one for store `F` (`Infallible` has no values).
pub(crate) fn lift<F: std::error::Error + 'static>(e: LedgerError) -> LedgerError<F> {
    match e {
        LedgerError::Malformed { what, detail } => LedgerError::Malformed { what, detail },
        LedgerError::Invalid(s) => LedgerError::Invalid(s),
        LedgerError::ProofRejected(s) => LedgerError::ProofRejected(s),
        LedgerError::Signature(s) => LedgerError::Signature(s),
        LedgerError::Inconsistent(s) => LedgerError::Inconsistent(s),
        LedgerError::OutOfRange(s) => LedgerError::OutOfRange(s),
        LedgerError::Io(e) => LedgerError::Io(e),
        LedgerError::Store(never) => match never {},
    }
}
