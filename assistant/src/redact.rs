//! Helpers that keep message text and names out of `Debug` output.

use std::fmt;

/// Formats a piece of text as `<redacted N chars>` so `Debug` output never carries it.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} chars>", self.0.chars().count())
    }
}

/// Formats an optional piece of text as `None` or `Some(<redacted N chars>)`.
pub(crate) struct RedactedOpt<'a>(pub(crate) Option<&'a str>);

impl fmt::Debug for RedactedOpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(s) => write!(f, "Some({:?})", Redacted(s)),
        }
    }
}

/// Formats a list as `[N items]`.
pub(crate) struct Count(pub(crate) usize);

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} items]", self.0)
    }
}

/// Cuts `s` to at most `max` characters (on a character boundary).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
