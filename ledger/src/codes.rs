//! Stable numeric codes: event kinds, purposes, outcomes, reference kinds,
//! attribute keys and the enumerations used as attribute values.
//!
//! Every code is part of the ledger format (`docs/ledger-format.md`): a code,
//! once published, keeps its meaning forever. Unknown codes decode fine (a
//! verifier older than the writer still checks every hash); `name()` returns
//! `None` for them.

macro_rules! code_type {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty) {
            $( $(#[$cmeta:meta])* $konst:ident = $value:expr, $label:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: Self = Self($value); )*

            /// Every code this version of the crate knows, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$konst),*];

            /// The stable snake_case name of a known code.
            #[must_use]
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($label), )*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}

code_type! {
    /// What happened. Codes are grouped by hundreds (1xx messaging, 2xx assistant,
    /// 3xx data-subject rights, 4xx keys, 5xx tenancy and administration, 6xx the ledger itself).
    EventKind(u16) {
        /// An inbound WhatsApp message was accepted.
        MESSAGE_RECEIVED = 100, "message_received";
        /// An outbound message was handed to Meta.
        MESSAGE_SENT = 101, "message_sent";
        /// Meta reported a delivery status (attr `message_status`).
        MESSAGE_STATUS = 102, "message_status";
        /// A webhook delivery was rejected (attr `reason`).
        WEBHOOK_REJECTED = 103, "webhook_rejected";
        /// A webhook named a phone number id no tenant owns.
        UNKNOWN_PHONE_NUMBER = 104, "unknown_phone_number";
        /// Another subscribed webhook field (template status, quality, account update) or a
        /// webhook-level error was recorded (ref `record_digest` of the field name).
        WEBHOOK_EVENT = 105, "webhook_event";
        /// A member took a conversation over from the assistant (actor member).
        CONVERSATION_TAKEN_OVER = 110, "conversation_taken_over";
        /// A member handed a conversation back to the assistant (actor member).
        CONVERSATION_HANDED_BACK = 111, "conversation_handed_back";
        /// A member wrote a reply by hand; it is queued for sending (actor member).
        HUMAN_REPLY = 112, "human_reply";
        /// The assistant decided what to do with a message (attr `decision`).
        ASSISTANT_DECISION = 200, "assistant_decision";
        /// An AI provider was called (attrs provider, model, data categories, digests, tokens, latency).
        AI_PROVIDER_CALL = 201, "ai_provider_call";
        /// A lead was captured.
        LEAD_CAPTURED = 202, "lead_captured";
        /// A lead moved to another stage (attr `stage`).
        LEAD_STAGE_CHANGED = 203, "lead_stage_changed";
        /// A follow-up was scheduled (attr `scheduled_for_micros`).
        FOLLOW_UP_SCHEDULED = 210, "follow_up_scheduled";
        /// A follow-up was sent.
        FOLLOW_UP_SENT = 211, "follow_up_sent";
        /// A follow-up was skipped (attr `reason`).
        FOLLOW_UP_SKIPPED = 212, "follow_up_skipped";
        /// A follow-up was cancelled (attr `reason`).
        FOLLOW_UP_CANCELLED = 213, "follow_up_cancelled";
        /// A customer opened a tracked booking link (refs lead, conversation).
        BOOKING_LINK_CLICKED = 214, "booking_link_clicked";
        /// A member searched conversations (attrs `query_digest`, `result_count`).
        SEARCH_PERFORMED = 220, "search_performed";
        /// A data-subject request arrived (attr `right`).
        DSR_RECEIVED = 300, "dsr_received";
        /// The requester's identity was verified (attr `right`).
        DSR_VERIFIED = 301, "dsr_verified";
        /// The request was fulfilled (attr `right`).
        DSR_COMPLETED = 302, "dsr_completed";
        /// The request was rejected (attrs `right`, `reason`).
        DSR_REJECTED = 303, "dsr_rejected";
        /// Personal data was corrected.
        CORRECTION = 310, "correction";
        /// A legal hold was placed on a tenant or a subject: their deletion waits.
        LEGAL_HOLD_PLACED = 320, "legal_hold_placed";
        /// A legal hold was released.
        LEGAL_HOLD_RELEASED = 321, "legal_hold_released";
        /// An encryption key was created (attr `key_id`).
        KEY_CREATED = 400, "key_created";
        /// An encryption key was rotated.
        KEY_ROTATED = 401, "key_rotated";
        /// An encryption key was destroyed (crypto-shredding).
        KEY_SHREDDED = 402, "key_shredded";
        /// A tenant set or replaced its own API key for an AI provider (attr `provider`,
        /// `reason` 1 set, 2 replaced); never the key.
        PROVIDER_KEY_SET = 403, "provider_key_set";
        /// A tenant removed its own API key for an AI provider (attr `provider`).
        PROVIDER_KEY_REMOVED = 404, "provider_key_removed";
        /// A tenant was created.
        TENANT_CREATED = 500, "tenant_created";
        /// A tenant's contract ended.
        TENANT_TERMINATED = 501, "tenant_terminated";
        /// A tenant's data was purged.
        TENANT_PURGED = 502, "tenant_purged";
        /// Messages older than the tenant's retention were deleted (attr `record_count`).
        RETENTION_EXPIRED = 505, "retention_expired";
        /// A tenant's assistant settings changed (attr `provider`, repeated in chain order).
        ASSISTANT_SETTINGS_CHANGED = 503, "assistant_settings_changed";
        /// A tenant's business profile was replaced (ref `record_digest` of the sealed profile).
        TENANT_PROFILE_UPDATED = 506, "tenant_profile_updated";
        /// A WhatsApp number was connected (ref `record_digest` of the phone number id; `reason`
        /// 1 with a Meta access token, 2 a sandbox number without one).
        PHONE_NUMBER_CONNECTED = 507, "phone_number_connected";
        /// A WhatsApp number was disconnected (ref `record_digest` of the phone number id).
        PHONE_NUMBER_DISCONNECTED = 508, "phone_number_disconnected";
        /// A tenant's message templates changed (attrs `reason`: 1 synced from Meta,
        /// 2 registered for the sandbox, 3 a status webhook; `record_count`).
        TEMPLATES_CHANGED = 504, "templates_changed";
        /// A member logged in.
        MEMBER_LOGIN = 510, "member_login";
        /// A member's role changed (attr `role`).
        MEMBER_ROLE_CHANGED = 511, "member_role_changed";
        /// A member was removed from the team, their sessions ended (ref member).
        MEMBER_REMOVED = 512, "member_removed";
        /// A data export was made (attrs `export_digest`, `record_count`).
        EXPORT_MADE = 520, "export_made";
        /// The processing policy version changed (entry `policy_version`, attr `old_policy_version`).
        POLICY_VERSION_CHANGED = 530, "policy_version_changed";
        /// Tenants were notified of a sub-processor change (attr `sub_processor`).
        SUB_PROCESSOR_CHANGE_NOTIFIED = 540, "sub_processor_change_notified";
        /// A tenant objected to a sub-processor change (attr `sub_processor`).
        SUB_PROCESSOR_CHANGE_OBJECTED = 541, "sub_processor_change_objected";
        /// A ledger bundle was exported (attrs `from_seq`, `to_seq`, `export_digest`).
        LEDGER_EXPORTED = 600, "ledger_exported";
    }
}

code_type! {
    /// Why the processing happened (the purpose of processing).
    Purpose(u16) {
        /// No processing of personal data (platform events).
        NONE = 0, "none";
        /// Answering and serving the tenant's customers.
        SERVICE_DELIVERY = 1, "service_delivery";
        /// Capturing and managing leads.
        LEAD_MANAGEMENT = 2, "lead_management";
        /// Follow-up messages.
        FOLLOW_UP = 3, "follow_up";
        /// Fulfilling a data-subject request.
        DSR_FULFILMENT = 4, "dsr_fulfilment";
        /// Security, abuse and fraud prevention.
        SECURITY = 5, "security";
        /// Billing the tenant.
        BILLING = 6, "billing";
        /// A legal obligation.
        LEGAL_OBLIGATION = 7, "legal_obligation";
        /// Administering the tenant account.
        ADMINISTRATION = 8, "administration";
        /// Audit and accountability.
        AUDIT = 9, "audit";
    }
}

code_type! {
    /// How the event ended.
    Outcome(u8) {
        /// It succeeded.
        SUCCESS = 0, "success";
        /// It failed (an error).
        FAILURE = 1, "failure";
        /// It was refused (a policy, a check).
        REJECTED = 2, "rejected";
        /// It partly succeeded.
        PARTIAL = 3, "partial";
        /// It was deliberately not done.
        SKIPPED = 4, "skipped";
    }
}

code_type! {
    /// What a [`crate::Reference`] points at.
    RefKind(u16) {
        /// A message (id: UUID).
        MESSAGE = 1, "message";
        /// A conversation (id: UUID).
        CONVERSATION = 2, "conversation";
        /// A lead (id: UUID).
        LEAD = 3, "lead";
        /// A follow-up (id: UUID).
        FOLLOW_UP = 4, "follow_up";
        /// A data-subject request (id: UUID).
        DSR = 5, "dsr";
        /// An encryption key (id: UUID or key fingerprint).
        KEY = 6, "key";
        /// A member (id: UUID).
        MEMBER = 7, "member";
        /// An export (id: UUID).
        EXPORT = 8, "export";
        /// A digest of a record (32 bytes, blake3 of the record's canonical bytes).
        RECORD_DIGEST = 9, "record_digest";
        /// A background job (id: UUID).
        JOB = 10, "job";
        /// A Meta message id (wamid), as a blake3 digest.
        WAMID_DIGEST = 11, "wamid_digest";
    }
}

code_type! {
    /// The key of a typed attribute. The value type each key expects is documented.
    AttrKey(u16) {
        /// `Code`: the AI provider ([`ProviderCode`]).
        PROVIDER = 1, "provider";
        /// `Digest`: blake3 of the provider's model identifier string.
        MODEL_DIGEST = 2, "model_digest";
        /// `Code`: a category of personal data sent ([`DataCategory`]); repeat for each.
        DATA_CATEGORY = 3, "data_category";
        /// `Digest`: blake3 of the request sent.
        REQUEST_DIGEST = 4, "request_digest";
        /// `Digest`: blake3 of the response received.
        RESPONSE_DIGEST = 5, "response_digest";
        /// `U64`: input tokens.
        TOKENS_IN = 6, "tokens_in";
        /// `U64`: output tokens.
        TOKENS_OUT = 7, "tokens_out";
        /// `U64`: latency in microseconds.
        LATENCY_MICROS = 8, "latency_micros";
        /// `Code`: the data-subject right ([`Right`]).
        RIGHT = 9, "right";
        /// `Code`: a message delivery status (1 sent, 2 delivered, 3 read, 4 failed).
        MESSAGE_STATUS = 10, "message_status";
        /// `Code`: an assistant decision (1 answer, 2 hand over, 3 ignore, 4 capture lead, 5 refuse).
        DECISION = 11, "decision";
        /// `Code`: a member role (1 owner, 2 admin, 3 agent, 4 viewer, 5 auditor).
        ROLE = 12, "role";
        /// `Digest`: the previous policy version.
        OLD_POLICY_VERSION = 13, "old_policy_version";
        /// `Code`: a sub-processor (registry kept with the policy documents).
        SUB_PROCESSOR = 14, "sub_processor";
        /// `U64`: number of records affected.
        RECORD_COUNT = 15, "record_count";
        /// `Code`: a machine reason code (documented by the emitting component).
        REASON = 16, "reason";
        /// `Id`: a key id.
        KEY_ID = 17, "key_id";
        /// `I64`: a scheduled time, microseconds since the Unix epoch.
        SCHEDULED_FOR_MICROS = 18, "scheduled_for_micros";
        /// `U64`: number of results.
        RESULT_COUNT = 19, "result_count";
        /// `Digest`: blake3 of a search query.
        QUERY_DIGEST = 20, "query_digest";
        /// `Digest`: blake3 of an exported file.
        EXPORT_DIGEST = 21, "export_digest";
        /// `U64`: first sequence number covered.
        FROM_SEQ = 22, "from_seq";
        /// `U64`: sequence number after the last one covered.
        TO_SEQ = 23, "to_seq";
        /// `Digest`: keyed digest of a phone number (never the number).
        PHONE_DIGEST = 24, "phone_digest";
        /// `Code`: an HTTP status code.
        HTTP_STATUS = 25, "http_status";
        /// `U64`: a size in bytes.
        BYTES = 26, "bytes";
        /// `Code`: a field, by name only: lead fields 1 name, 2 service, 3 preferred_date,
        /// 4 preferred_time, 5 budget, 6 stage_hint, 7 notes; contact fields 101
        /// profile_name, 102 phone; repeat for each.
        FIELD = 27, "field";
        /// `Code`: a lead stage (1 new, 2 engaged, 3 booked, 4 lost).
        STAGE = 28, "stage";
    }
}

code_type! {
    /// AI providers and other external processors (value of `AttrKey::PROVIDER`, `Actor::Provider`).
    ProviderCode(u16) {
        /// OpenAI.
        OPENAI = 1, "openai";
        /// Anthropic.
        ANTHROPIC = 2, "anthropic";
        /// Google (Gemini).
        GOOGLE = 3, "google";
        /// Mistral AI.
        MISTRAL = 4, "mistral";
        /// Azure OpenAI.
        AZURE_OPENAI = 5, "azure_openai";
        /// A self-hosted model.
        SELF_HOSTED = 6, "self_hosted";
        /// DeepSeek.
        DEEPSEEK = 7, "deepseek";
        /// Meta (WhatsApp Business Cloud API).
        META = 8, "meta";
        /// Another OpenAI-compatible endpoint.
        COMPATIBLE = 9, "compatible";
    }
}

code_type! {
    /// Data-subject rights (value of `AttrKey::RIGHT`).
    Right(u16) {
        /// Access (GDPR Art. 15).
        ACCESS = 1, "access";
        /// Correction / rectification (Art. 16).
        CORRECTION = 2, "correction";
        /// Deletion / erasure (Art. 17).
        DELETION = 3, "deletion";
        /// Objection (Art. 21).
        OBJECTION = 4, "objection";
        /// Portability (Art. 20).
        PORTABILITY = 5, "portability";
    }
}

code_type! {
    /// Categories of personal data (value of `AttrKey::DATA_CATEGORY`).
    DataCategory(u16) {
        /// Message text.
        MESSAGE_TEXT = 1, "message_text";
        /// Contact name.
        CONTACT_NAME = 2, "contact_name";
        /// Phone number.
        PHONE_NUMBER = 3, "phone_number";
        /// Conversation history.
        CONVERSATION_HISTORY = 4, "conversation_history";
        /// Lead details.
        LEAD_DETAILS = 5, "lead_details";
        /// Media (images, audio, documents).
        MEDIA = 6, "media";
    }
}
