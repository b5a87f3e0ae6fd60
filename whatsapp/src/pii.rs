//! [`Pii`]: a string of personal data whose `Debug` prints only its size.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Personal data (a name, a message body, a caption, an address): `Debug` prints
/// `<redacted N bytes>`, never the content, so a stray `{:?}` cannot leak it into logs.
/// `Display` is deliberately not implemented; read the content with [`Pii::as_str`].
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pii(String);

impl Pii {
    /// Wraps personal data.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The content.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unwraps the content.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl Deref for Pii {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl From<String> for Pii {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Pii {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let p = Pii::new("Sheena Nelson");
        assert_eq!(format!("{p:?}"), "<redacted 13 bytes>");
        assert_eq!(
            format!("{:?}", Some(p.clone())),
            "Some(<redacted 13 bytes>)"
        );
        assert_eq!(p.as_str(), "Sheena Nelson");
    }
}
