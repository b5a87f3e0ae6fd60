#![doc = include_str!("../README.md")]

pub mod assistant;
pub mod clock;
pub mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod intent;
pub mod leads;
pub mod offline;
pub mod profile;
pub mod prompt;
pub mod provider;
mod redact;
pub mod retry;
pub mod types;

pub use assistant::Assistant;
pub use clock::{Clock, ManualClock, TokioClock};
pub use error::{ApiError, ProfileError, ProviderError, RequestError};
pub use intent::{HoursQuery, Intent, detect_intent};
pub use leads::{
    Budget, BudgetBound, Currency, Extractor, FallbackReason, FieldName, LeadExtraction,
    LeadFields, LeadRequest, LeadSignals, PreferredTime, ProviderExtractor, RuleExtractor,
    StageHint, TimeWindow,
};
pub use offline::{Lang, OfflineAnswer, OfflineAssistant};
pub use profile::{
    BookingLink, BusinessProfile, ClockTime, Interval, Service, StaffMember, Weekday, WeeklyHours,
};
pub use prompt::build_system_prompt;
pub use provider::{ChatProvider, Completion, ProviderKind, ProviderRun};
pub use retry::RetryPolicy;
pub use secrecy::SecretString;
pub use types::{
    AttemptOutcome, AttemptRecord, ConversationTurn, Pseudonym, Reply, ReplyRequest, ReplySource,
    RequestFlags, Role, TokenUsage, UserIdField,
};
