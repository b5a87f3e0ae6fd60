//! Validated identifiers of the Cloud API.
//!
//! Every type validates on construction (and on deserialisation), so code holding one never
//! re-checks it. Identifiers that point at a person ([`WaId`], [`Bsuid`], [`Wamid`], which
//! embeds the sender's phone number in base64) redact themselves in `Debug`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier. Never carries the rejected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} is empty")]
    Empty {
        /// Identifier type.
        kind: &'static str,
    },
    /// The string was longer than the type allows.
    #[error("{kind} is longer than {max} bytes")]
    TooLong {
        /// Identifier type.
        kind: &'static str,
        /// Maximum length in bytes.
        max: usize,
    },
    /// The string contained characters or a layout the type does not allow.
    #[error("{kind} has an invalid format")]
    Format {
        /// Identifier type.
        kind: &'static str,
    },
}

fn check_len(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    Ok(())
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The identifier as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A WhatsApp message id (`wamid.…`), the idempotency key of inbound messages and statuses.
///
/// Non-empty, at most [`Wamid::MAX_LEN`] bytes, printable ASCII without spaces. A wamid
/// embeds the user's phone number (base64), so `Debug` redacts it; log a digest instead.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Wamid(String);

impl Wamid {
    /// Longest accepted wamid in bytes (real ones are about 60).
    pub const MAX_LEN: usize = 512;

    /// Validates a wamid.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_len("wamid", &s, Self::MAX_LEN)?;
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdError::Format { kind: "wamid" });
        }
        Ok(Self(s))
    }
}
string_newtype!(Wamid);

impl fmt::Debug for Wamid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wamid(<redacted {} bytes>)", self.0.len())
    }
}

/// The Graph id of a business phone number (`metadata.phone_number_id`): digits only.
///
/// It identifies the business, not a person, so it prints in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumberId(String);

impl PhoneNumberId {
    /// Validates digits only, 1 to 32 of them.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_len("phone_number_id", &s, 32)?;
        if !all_digits(&s) {
            return Err(IdError::Format {
                kind: "phone_number_id",
            });
        }
        Ok(Self(s))
    }
}
string_newtype!(PhoneNumberId);

impl fmt::Display for PhoneNumberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WhatsApp user id (`wa_id`): the user's phone number in digits, without `+`.
///
/// Personal data: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WaId(String);

impl WaId {
    /// Validates digits only, 1 to 20 of them (E.164 allows 15; Meta test numbers are shorter).
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_len("wa_id", &s, 20)?;
        if !all_digits(&s) {
            return Err(IdError::Format { kind: "wa_id" });
        }
        Ok(Self(s))
    }

    /// Accepts an E.164 number (`+15551234567`), spaces and dashes removed, as a wa_id.
    pub fn from_e164(s: &str) -> Result<Self, IdError> {
        let digits: String = s
            .trim()
            .trim_start_matches('+')
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        Self::new(digits)
    }
}
string_newtype!(WaId);

impl fmt::Debug for WaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WaId(<redacted {} digits>)", self.0.len())
    }
}

/// A business-scoped user id (BSUID, `user_id`), sent by Meta since 2026.
///
/// Format: ISO 3166 alpha-2 country code, a dot, optionally `ENT.` (a parent BSUID), then 1
/// to 128 ASCII alphanumerics, e.g. `US.13491208655302741918`. Pseudonymous personal data:
/// `Debug` shows the country prefix only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bsuid(String);

impl Bsuid {
    /// Longest accepted BSUID in bytes: `CC.ENT.` plus 128 alphanumerics.
    pub const MAX_LEN: usize = 3 + 4 + 128;

    /// Validates the BSUID layout.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_len("bsuid", &s, Self::MAX_LEN)?;
        if !Self::looks_like(&s) {
            return Err(IdError::Format { kind: "bsuid" });
        }
        Ok(Self(s))
    }

    /// True if `s` has the BSUID layout (cheap check, no allocation).
    pub fn looks_like(s: &str) -> bool {
        let b = s.as_bytes();
        if b.len() < 4 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() || b[2] != b'.' {
            return false;
        }
        let rest = &s[3..];
        let rest = rest.strip_prefix("ENT.").unwrap_or(rest);
        !rest.is_empty() && rest.len() <= 128 && rest.bytes().all(|c| c.is_ascii_alphanumeric())
    }

    /// True for a parent (enterprise) BSUID (`CC.ENT.…`).
    pub fn is_parent(&self) -> bool {
        self.0.get(3..7) == Some("ENT.")
    }

    /// The ISO country code prefix.
    pub fn country(&self) -> &str {
        self.0.get(..2).unwrap_or("")
    }
}
string_newtype!(Bsuid);

impl fmt::Debug for Bsuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bsuid({}.<redacted>)", self.country())
    }
}

/// Who an outbound message goes to: a phone-based `wa_id` or a BSUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// The user's phone number as a wa_id.
    WaId(WaId),
    /// The user's business-scoped user id.
    Bsuid(Bsuid),
}

impl Recipient {
    /// Parses a wa_id (digits, optionally E.164 with `+`) or a BSUID.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if Bsuid::looks_like(s) {
            return Bsuid::new(s).map(Self::Bsuid);
        }
        WaId::from_e164(s)
            .map(Self::WaId)
            .map_err(|_| IdError::Format { kind: "recipient" })
    }

    /// The value for the `to` field of a send request.
    pub fn as_str(&self) -> &str {
        match self {
            Self::WaId(w) => w.as_str(),
            Self::Bsuid(b) => b.as_str(),
        }
    }
}

impl From<WaId> for Recipient {
    fn from(w: WaId) -> Self {
        Self::WaId(w)
    }
}

impl From<Bsuid> for Recipient {
    fn from(b: Bsuid) -> Self {
        Self::Bsuid(b)
    }
}

/// A Graph API version path segment such as `v23.0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiVersion(String);

impl ApiVersion {
    /// Validates `v<major>.<minor>`.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_len("api version", &s, 16)?;
        let ok = s
            .strip_prefix('v')
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && all_digits(a) && all_digits(b));
        if !ok {
            return Err(IdError::Format {
                kind: "api version",
            });
        }
        Ok(Self(s))
    }

    /// The version as it appears in the URL path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn wamid_rules() {
        assert!(
            Wamid::new("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=").is_ok()
        );
        assert_eq!(Wamid::new(""), Err(IdError::Empty { kind: "wamid" }));
        assert!(matches!(Wamid::new("a b"), Err(IdError::Format { .. })));
        assert!(matches!(
            Wamid::new("x".repeat(513)),
            Err(IdError::TooLong { .. })
        ));
        let w = Wamid::new("wamid.SECRET16505551234").unwrap();
        assert!(!format!("{w:?}").contains("SECRET"));
    }

    #[test]
    fn digit_ids() {
        assert!(PhoneNumberId::new("106540352242922").is_ok());
        assert!(PhoneNumberId::new("10654a").is_err());
        assert!(WaId::new("16505551234").is_ok());
        assert!(WaId::new("+16505551234").is_err());
        assert_eq!(
            WaId::from_e164("+1 650-555-1234").unwrap().as_str(),
            "16505551234"
        );
        assert!(!format!("{:?}", WaId::new("16505551234").unwrap()).contains("555"));
    }

    #[test]
    fn bsuid_rules() {
        let b = Bsuid::new("US.13491208655302741918").unwrap();
        assert!(!b.is_parent());
        assert_eq!(b.country(), "US");
        assert_eq!(format!("{b:?}"), "Bsuid(US.<redacted>)");
        assert!(Bsuid::new("HK.ENT.abc123").unwrap().is_parent());
        for bad in ["", "US.", "us.123", "US123", "US.12-3", "U.123", "US.ENT."] {
            assert!(Bsuid::new(bad).is_err(), "{bad}");
        }
        assert!(Bsuid::new(format!("US.{}", "a".repeat(129))).is_err());
        assert!(Bsuid::new(format!("US.ENT.{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn recipient_parse() {
        assert!(matches!(
            Recipient::parse("US.123"),
            Ok(Recipient::Bsuid(_))
        ));
        assert!(matches!(
            Recipient::parse("+4915123"),
            Ok(Recipient::WaId(_))
        ));
        assert!(Recipient::parse("hello").is_err());
    }

    #[test]
    fn api_version() {
        assert!(ApiVersion::new("v23.0").is_ok());
        for bad in ["23.0", "v23", "v.0", "v23.", "vx.0", "v23.0/../x"] {
            assert!(ApiVersion::new(bad).is_err(), "{bad}");
        }
    }
}
