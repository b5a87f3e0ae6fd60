//! Identifiers that validate on construction. Parse, don't validate twice.

use std::fmt;
use std::str::FromStr;

use crate::error::CoreError;

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new time-ordered random id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
            /// The 16 bytes, as the ledger records them.
            pub fn bytes(&self) -> [u8; 16] {
                *self.0.as_bytes()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, CoreError> {
                uuid::Uuid::parse_str(s).map(Self).map_err(|_| CoreError::Invalid {
                    field: $what,
                    reason: "expected a UUID".into(),
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = CoreError;
            fn try_from(s: String) -> Result<Self, CoreError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        /// In the API's OpenAPI document: a UUID string.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(Some(utoipa::openapi::schema::SchemaFormat::Custom("uuid".into())))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

uuid_id!(
    /// A business using smartchat (the controller).
    TenantId,
    "tenant id"
);
uuid_id!(
    /// One of a tenant's customers (a data subject).
    SubjectId,
    "subject id"
);
uuid_id!(
    /// A conversation between a tenant and a subject.
    ConversationId,
    "conversation id"
);
uuid_id!(
    /// A message in a conversation.
    MessageId,
    "message id"
);
uuid_id!(
    /// A member of a tenant (owner, staff, auditor).
    MemberId,
    "member id"
);
uuid_id!(
    /// A lead.
    LeadId,
    "lead id"
);

/// A tenant's public handle: lower-case letters, digits and dashes, 3 to 40 characters.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Handle(String);

impl Handle {
    /// The handle.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Handle {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let ok = (3..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(CoreError::Invalid {
                field: "handle",
                reason: "3 to 40 characters of a-z, 0-9 and '-', not starting or ending with '-'"
                    .into(),
            })
        }
    }
}

impl TryFrom<String> for Handle {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        s.parse()
    }
}

impl From<Handle> for String {
    fn from(h: Handle) -> String {
        h.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.0)
    }
}

/// Meta's id of a WhatsApp business phone number (digits; not the number itself).
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumberId(String);

impl PhoneNumberId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PhoneNumberId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        if (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(CoreError::Invalid {
                field: "phone_number_id",
                reason: "Meta's phone number id is 1 to 32 digits".into(),
            })
        }
    }
}

impl TryFrom<String> for PhoneNumberId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        s.parse()
    }
}

impl From<PhoneNumberId> for String {
    fn from(p: PhoneNumberId) -> String {
        p.0
    }
}

impl fmt::Display for PhoneNumberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 digits (no `+`), 8 to 15 digits. Never printed in full.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// The digits.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl FromStr for PhoneNumber {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let digits: String = s
            .trim()
            .trim_start_matches('+')
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        if (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(Self(digits))
        } else {
            Err(CoreError::Invalid {
                field: "phone number",
                reason: "expected an international number of 8 to 15 digits, e.g. +91 98xxxxxxxx"
                    .into(),
            })
        }
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber(<{} digits>)", self.0.len())
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let t = TenantId::new();
        assert_eq!(t.to_string().parse::<TenantId>().unwrap(), t);
        assert!("not-a-uuid".parse::<TenantId>().is_err());
    }

    #[test]
    fn handles_validate() {
        assert!("glow-salon".parse::<Handle>().is_ok());
        for bad in ["ab", "Glow", "-x-y", "a_b_c", "x".repeat(41).as_str()] {
            assert!(bad.parse::<Handle>().is_err(), "{bad}");
        }
    }

    #[test]
    fn phone_numbers_normalise_and_never_print() {
        let p: PhoneNumber = "+91 98765-43210".parse().unwrap();
        assert_eq!(p.digits(), "919876543210");
        assert!(!format!("{p:?}").contains("98765"));
        assert!("12".parse::<PhoneNumber>().is_err());
        assert!("+91 abc".parse::<PhoneNumber>().is_err());
    }
}
