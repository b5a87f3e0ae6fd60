//! Parsing of everything Meta posts to the webhook, and a flat view of it as events.
//!
//! Meta batches: `entry[]`, `changes[]`, `messages[]` and `statuses[]` may each hold several
//! items. [`WebhookPayload::events`] walks all of them. Parsing is lenient where Meta evolves
//! (unknown fields are ignored, unknown message types become [`MessageKind::Unsupported`],
//! unknown statuses keep their raw name, identifiers that are neither a wa_id nor a BSUID are
//! dropped) and strict where our idempotency depends on it (wamids, phone number ids and
//! timestamps must be valid or the payload is rejected).

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::ids::{Bsuid, PhoneNumberId, Recipient, WaId, Wamid};
use crate::pii::Pii;
use crate::verify::WebhookError;

/// Parses a webhook body. Call only after [`crate::verify_signature`] accepted the same bytes.
pub fn parse_payload(raw_body: &[u8]) -> Result<WebhookPayload, WebhookError> {
    Ok(serde_json::from_slice(raw_body)?)
}

/// A whole webhook POST body.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookPayload {
    /// `whatsapp_business_account` for WhatsApp.
    pub object: String,
    /// Every entry (one per WABA and batch); never read only the first.
    #[serde(default)]
    pub entry: Vec<Entry>,
}

impl WebhookPayload {
    /// Parses a webhook body (same as [`parse_payload`]).
    pub fn from_slice(raw_body: &[u8]) -> Result<Self, WebhookError> {
        parse_payload(raw_body)
    }

    /// True if `object` is `whatsapp_business_account`.
    pub fn is_whatsapp(&self) -> bool {
        self.object == "whatsapp_business_account"
    }

    /// Every message, status, value-level error and other change across all entries and
    /// changes, in payload order.
    pub fn events(&self) -> Events<'_> {
        Events {
            entries: &self.entry,
            entry: 0,
            change: 0,
            phase: 0,
            item: 0,
        }
    }
}

/// One `entry[]` element.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// The WhatsApp Business Account id.
    #[serde(default)]
    pub id: String,
    /// Every change of this entry.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One `changes[]` element, by its `field`.
#[derive(Debug, Clone)]
pub enum Change {
    /// `field = "messages"`: inbound messages, statuses and errors.
    Messages(MessagesValue),
    /// Any other field (`message_template_status_update`, `phone_number_quality_update`,
    /// `account_update`, `template_category_update`, `security`, `flows`, ...), kept raw.
    Other(OtherChange),
}

/// A change whose `field` is not `messages`, kept as raw JSON.
#[derive(Debug, Clone)]
pub struct OtherChange {
    /// The `field` name.
    pub field: String,
    /// `value.metadata.phone_number_id`, when the value carries one.
    pub phone_number_id: Option<PhoneNumberId>,
    /// The whole `value` object.
    pub value: serde_json::Value,
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct RawChange {
            field: String,
            value: Box<RawValue>,
        }
        let raw = RawChange::deserialize(d)?;
        if raw.field == "messages" {
            let v: MessagesValue =
                serde_json::from_str(raw.value.get()).map_err(serde::de::Error::custom)?;
            return Ok(Self::Messages(v));
        }
        let value: serde_json::Value =
            serde_json::from_str(raw.value.get()).map_err(serde::de::Error::custom)?;
        let phone_number_id = value
            .get("metadata")
            .and_then(|m| m.get("phone_number_id"))
            .and_then(|p| p.as_str())
            .and_then(|p| PhoneNumberId::new(p).ok());
        Ok(Self::Other(OtherChange {
            field: raw.field,
            phone_number_id,
            value,
        }))
    }
}

/// The `value` of a `messages` change.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesValue {
    /// Which business number this is for: route tenants by `metadata.phone_number_id`.
    pub metadata: Metadata,
    /// Profiles of the users in `messages` (absent for system messages and statuses).
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Inbound messages.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Status callbacks for messages we sent.
    #[serde(default)]
    pub statuses: Vec<Status>,
    /// Out-of-band errors.
    #[serde(default, deserialize_with = "api_errors")]
    pub errors: Vec<ApiError>,
}

impl MessagesValue {
    /// The contact entry describing `from`: same wa_id or BSUID, else the only contact.
    pub fn contact_for(&self, from: &UserIdentity) -> Option<&Contact> {
        self.contacts
            .iter()
            .find(|c| c.identity.same_user(from))
            .or(match self.contacts.as_slice() {
                [only] => Some(only),
                _ => None,
            })
    }
}

/// `value.metadata`.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// The business number as displayed (the business's own number).
    #[serde(default)]
    pub display_phone_number: Option<String>,
    /// The Graph id of the business number: the tenant routing key.
    pub phone_number_id: PhoneNumberId,
}

/// How a user is identified: phone-based wa_id and/or business-scoped user id. Since 2026 the
/// wa_id may be withheld (users with usernames), so both are optional; at least one is
/// normally present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UserIdentity {
    /// The phone-based WhatsApp id.
    pub wa_id: Option<WaId>,
    /// The business-scoped user id.
    pub user_id: Option<Bsuid>,
    /// The parent (enterprise) BSUID, when enabled.
    pub parent_user_id: Option<Bsuid>,
}

impl UserIdentity {
    /// Builds an identity from a `from`/`wa_id`/`recipient_id` value (a wa_id, or a BSUID
    /// when the phone is withheld) and explicit BSUID fields. Values of neither shape are
    /// dropped.
    pub fn from_parts(primary: Option<&str>, user_id: Option<&str>, parent: Option<&str>) -> Self {
        let mut id = Self::default();
        if let Some(p) = primary {
            if Bsuid::looks_like(p) {
                id.user_id = Bsuid::new(p).ok();
            } else {
                id.wa_id = WaId::new(p).ok();
            }
        }
        if let Some(u) = user_id.and_then(|u| Bsuid::new(u).ok()) {
            id.user_id = Some(u);
        }
        id.parent_user_id = parent.and_then(|p| Bsuid::new(p).ok());
        id
    }

    /// True if neither a wa_id nor a BSUID is known.
    pub fn is_empty(&self) -> bool {
        self.wa_id.is_none() && self.user_id.is_none()
    }

    /// True if both name the same user (same wa_id or same BSUID).
    pub fn same_user(&self, other: &Self) -> bool {
        matches!((&self.wa_id, &other.wa_id), (Some(a), Some(b)) if a == b)
            || matches!((&self.user_id, &other.user_id), (Some(a), Some(b)) if a == b)
    }

    /// Where to send a reply: the wa_id if known, else the BSUID.
    pub fn recipient(&self) -> Option<Recipient> {
        self.wa_id
            .clone()
            .map(Recipient::WaId)
            .or_else(|| self.user_id.clone().map(Recipient::Bsuid))
    }
}

/// One `contacts[]` element: the sender's profile.
#[derive(Clone, Debug)]
pub struct Contact {
    /// `profile.name`.
    pub name: Option<Pii>,
    /// `profile.username`, for users who adopted a username.
    pub username: Option<Pii>,
    /// `wa_id` (may be withheld) and `user_id` (BSUID).
    pub identity: UserIdentity,
    /// `identity_key_hash`, when identity change checks are enabled.
    pub identity_key_hash: Option<String>,
}

impl<'de> Deserialize<'de> for Contact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        struct Profile {
            name: Option<String>,
            username: Option<String>,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            profile: Option<Profile>,
            wa_id: Option<String>,
            user_id: Option<String>,
            parent_user_id: Option<String>,
            identity_key_hash: Option<String>,
        }
        let r = Raw::deserialize(d)?;
        let profile = r.profile.unwrap_or_default();
        Ok(Self {
            name: profile.name.map(Pii::from),
            username: profile.username.map(Pii::from),
            identity: UserIdentity::from_parts(
                r.wa_id.as_deref(),
                r.user_id.as_deref(),
                r.parent_user_id.as_deref(),
            ),
            identity_key_hash: r.identity_key_hash,
        })
    }
}

/// An error object as Meta puts it in `value.errors[]`, `statuses[].errors[]` and
/// `messages[].errors[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Numeric error code (e.g. 131047); 0 if absent.
    pub code: i64,
    /// Short title.
    pub title: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// `error_data.details` (may quote request parameters, so redacted in `Debug`).
    pub details: Option<Pii>,
    /// Link to Meta's error documentation.
    pub href: Option<String>,
}

#[derive(Deserialize)]
struct RawApiError {
    #[serde(default)]
    code: Option<i64>,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<RawErrorData>,
    href: Option<String>,
}

#[derive(Deserialize)]
struct RawErrorData {
    details: Option<String>,
}

impl From<RawApiError> for ApiError {
    fn from(r: RawApiError) -> Self {
        Self {
            code: r.code.unwrap_or(0),
            title: r.title,
            message: r.message,
            details: r.error_data.and_then(|d| d.details).map(Pii::from),
            href: r.href,
        }
    }
}

fn api_errors<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ApiError>, D::Error> {
    let raw: Option<Vec<RawApiError>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(ApiError::from)
        .collect())
}

/// Meta's unix-seconds timestamps arrive as strings (`"1749416383"`); numbers are accepted too.
fn unix_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("unix seconds as a string or integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("timestamp out of range"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
            v.parse::<i64>()
                .map_err(|_| E::custom("timestamp is not unix seconds"))
        }
    }
    let secs = d.deserialize_any(V)?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| serde::de::Error::custom("timestamp out of range"))
}

/// An inbound message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The message id: the idempotency key.
    pub id: Wamid,
    /// The sender (`from`, `from_user_id`, `from_parent_user_id`).
    pub from: UserIdentity,
    /// When the user sent it.
    pub timestamp: OffsetDateTime,
    /// The content by type.
    pub kind: MessageKind,
    /// Reply-to / forwarded information.
    pub context: Option<MessageContext>,
    /// Click-to-WhatsApp ad referral.
    pub referral: Option<Referral>,
    /// Group id for group messages.
    pub group_id: Option<String>,
    /// Message-level errors (with `unsupported` messages).
    pub errors: Vec<ApiError>,
}

/// The content of an inbound message, by `type`.
#[derive(Debug, Clone)]
pub enum MessageKind {
    /// `text`.
    Text {
        /// The text.
        body: Pii,
    },
    /// `image`.
    Image(Media),
    /// `audio` (including voice notes).
    Audio(Media),
    /// `video`.
    Video(Media),
    /// `document`.
    Document(Media),
    /// `sticker`.
    Sticker(Media),
    /// `location`.
    Location(Location),
    /// `contacts`: shared vCards, kept as raw JSON objects.
    Contacts(SharedContacts),
    /// `interactive`: replies to buttons, lists and flows.
    Interactive(Interactive),
    /// `button`: a template quick-reply.
    Button {
        /// Developer-defined payload of the button.
        payload: Option<Pii>,
        /// Button label.
        text: Option<Pii>,
    },
    /// `reaction`; `emoji` is `None` when the user removed the reaction.
    Reaction {
        /// The message reacted to.
        message_id: Option<Wamid>,
        /// The emoji.
        emoji: Option<Pii>,
    },
    /// `order` from a catalog.
    Order {
        /// Catalog id.
        catalog_id: Option<String>,
        /// Text sent with the order.
        text: Option<Pii>,
        /// Ordered items.
        product_items: Vec<OrderItem>,
    },
    /// `system`: the user changed number (`user_changed_number`) or BSUID
    /// (`user_changed_user_id`).
    System {
        /// `system.type`.
        system_type: Option<String>,
        /// Human-readable body (names numbers).
        body: Option<Pii>,
        /// The new wa_id, for a number change.
        new_wa_id: Option<WaId>,
        /// The new BSUID, for a BSUID change.
        new_user_id: Option<Bsuid>,
    },
    /// `request_welcome`: the user opened the chat for the first time.
    RequestWelcome,
    /// `unsupported`, `unknown`, or a type this crate does not know, or a known type whose
    /// content object is missing. Never an error.
    Unsupported {
        /// The `type` (or, for `unsupported`, its sub-type such as `poll` or `edit`).
        original_type: String,
    },
}

impl MessageKind {
    /// The wire name of the type (`text`, `image`, ..., or the unsupported original type).
    pub fn type_name(&self) -> &str {
        match self {
            Self::Text { .. } => "text",
            Self::Image(_) => "image",
            Self::Audio(_) => "audio",
            Self::Video(_) => "video",
            Self::Document(_) => "document",
            Self::Sticker(_) => "sticker",
            Self::Location(_) => "location",
            Self::Contacts(_) => "contacts",
            Self::Interactive(_) => "interactive",
            Self::Button { .. } => "button",
            Self::Reaction { .. } => "reaction",
            Self::Order { .. } => "order",
            Self::System { .. } => "system",
            Self::RequestWelcome => "request_welcome",
            Self::Unsupported { original_type } => original_type,
        }
    }

    /// The media object of image/audio/video/document/sticker messages.
    pub fn media(&self) -> Option<&Media> {
        match self {
            Self::Image(m)
            | Self::Audio(m)
            | Self::Video(m)
            | Self::Document(m)
            | Self::Sticker(m) => Some(m),
            _ => None,
        }
    }
}

/// A media attachment: Meta's media id (valid 30 days, fetch with the bearer token) and its
/// metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Media {
    /// Meta's media id.
    pub id: String,
    /// MIME type.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// SHA-256 of the file as given by Meta.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Caption (image, video, document).
    #[serde(default)]
    pub caption: Option<Pii>,
    /// File name (document).
    #[serde(default)]
    pub filename: Option<Pii>,
    /// True for voice notes (audio).
    #[serde(default)]
    pub voice: Option<bool>,
    /// True for animated stickers.
    #[serde(default)]
    pub animated: Option<bool>,
}

/// A shared location. Coordinates are personal data: `Debug` redacts everything.
#[derive(Clone, Deserialize)]
pub struct Location {
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
    /// Place name.
    #[serde(default)]
    pub name: Option<Pii>,
    /// Address.
    #[serde(default)]
    pub address: Option<Pii>,
    /// URL.
    #[serde(default)]
    pub url: Option<Pii>,
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Location(<redacted>)")
    }
}

/// Shared contact cards (raw JSON objects, full of personal data): `Debug` prints the count.
#[derive(Clone)]
pub struct SharedContacts(pub Vec<serde_json::Value>);

impl fmt::Debug for SharedContacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedContacts(<redacted {} cards>)", self.0.len())
    }
}

/// An `interactive` reply.
#[derive(Debug, Clone)]
pub enum Interactive {
    /// Reply button tapped.
    ButtonReply {
        /// Developer-defined button id.
        id: String,
        /// Button title.
        title: Pii,
    },
    /// List row chosen.
    ListReply {
        /// Developer-defined row id.
        id: String,
        /// Row title.
        title: Pii,
        /// Row description.
        description: Option<Pii>,
    },
    /// A WhatsApp Flow response.
    NfmReply {
        /// Flow name.
        name: Option<String>,
        /// Body text.
        body: Option<Pii>,
        /// The flow's response as a JSON string.
        response_json: Option<Pii>,
    },
    /// Another interactive sub-type, or a sub-type without its object.
    Other {
        /// `interactive.type`.
        interactive_type: String,
    },
}

/// One ordered product.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderItem {
    /// Product retailer id.
    #[serde(default)]
    pub product_retailer_id: Option<String>,
    /// Quantity (number or string as sent).
    #[serde(default)]
    pub quantity: Option<serde_json::Value>,
    /// Unit price (number or string as sent).
    #[serde(default)]
    pub item_price: Option<serde_json::Value>,
    /// Currency.
    #[serde(default)]
    pub currency: Option<String>,
}

/// `messages[].context`: reply-to and forwarding.
#[derive(Debug, Clone, Default)]
pub struct MessageContext {
    /// The wamid replied to.
    pub id: Option<Wamid>,
    /// Sender of the replied-to message (usually the business number).
    pub from: Option<String>,
    /// Forwarded.
    pub forwarded: bool,
    /// Forwarded many times.
    pub frequently_forwarded: bool,
    /// Product the user asked about, raw.
    pub referred_product: Option<serde_json::Value>,
}

/// `messages[].referral`: the click-to-WhatsApp ad the user came from.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Referral {
    /// URL of the ad or post.
    #[serde(default)]
    pub source_url: Option<String>,
    /// Ad or post id.
    #[serde(default)]
    pub source_id: Option<String>,
    /// `ad` or `post`.
    #[serde(default)]
    pub source_type: Option<String>,
    /// Ad headline.
    #[serde(default)]
    pub headline: Option<String>,
    /// Ad body.
    #[serde(default)]
    pub body: Option<String>,
    /// `image` or `video`.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Ad image URL.
    #[serde(default)]
    pub image_url: Option<String>,
    /// Ad video URL.
    #[serde(default)]
    pub video_url: Option<String>,
    /// Ad thumbnail URL.
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    /// Click id of a click-to-WhatsApp ad.
    #[serde(default)]
    pub ctwa_clid: Option<String>,
}

#[derive(Deserialize)]
struct RawContext {
    id: Option<String>,
    from: Option<String>,
    #[serde(default)]
    forwarded: Option<bool>,
    #[serde(default)]
    frequently_forwarded: Option<bool>,
    referred_product: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawText {
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
struct RawInteractive {
    #[serde(rename = "type", default)]
    kind: String,
    button_reply: Option<RawReply>,
    list_reply: Option<RawReply>,
    nfm_reply: Option<RawNfm>,
}

#[derive(Deserialize)]
struct RawReply {
    #[serde(default)]
    id: String,
    #[serde(default)]
    title: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct RawNfm {
    name: Option<String>,
    body: Option<String>,
    response_json: Option<String>,
}

#[derive(Deserialize)]
struct RawButton {
    payload: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct RawReaction {
    message_id: Option<String>,
    emoji: Option<String>,
}

#[derive(Deserialize)]
struct RawOrder {
    catalog_id: Option<String>,
    text: Option<String>,
    #[serde(default)]
    product_items: Vec<OrderItem>,
}

#[derive(Deserialize)]
struct RawSystem {
    body: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    wa_id: Option<String>,
    new_wa_id: Option<String>,
    user_id: Option<String>,
    new_user_id: Option<String>,
}

#[derive(Deserialize)]
struct RawUnsupported {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    id: Wamid,
    from: Option<String>,
    from_user_id: Option<String>,
    from_parent_user_id: Option<String>,
    #[serde(deserialize_with = "unix_timestamp")]
    timestamp: OffsetDateTime,
    #[serde(rename = "type", default)]
    kind: String,
    context: Option<RawContext>,
    referral: Option<Referral>,
    group_id: Option<String>,
    #[serde(default, deserialize_with = "api_errors")]
    errors: Vec<ApiError>,
    text: Option<RawText>,
    image: Option<Media>,
    audio: Option<Media>,
    video: Option<Media>,
    document: Option<Media>,
    sticker: Option<Media>,
    location: Option<Location>,
    contacts: Option<Vec<serde_json::Value>>,
    interactive: Option<RawInteractive>,
    button: Option<RawButton>,
    reaction: Option<RawReaction>,
    order: Option<RawOrder>,
    system: Option<RawSystem>,
    unsupported: Option<RawUnsupported>,
}

fn pii(s: Option<String>) -> Option<Pii> {
    s.map(Pii::from)
}

impl RawMessage {
    fn into_kind(self) -> (MessageKind, Self) {
        let mut r = self;
        let unsupported = |t: &str| MessageKind::Unsupported {
            original_type: t.to_owned(),
        };
        let kind = match r.kind.as_str() {
            "text" => match r.text.take() {
                Some(t) => MessageKind::Text {
                    body: Pii::from(t.body),
                },
                None => unsupported("text"),
            },
            "image" => r
                .image
                .take()
                .map_or_else(|| unsupported("image"), MessageKind::Image),
            "audio" => r
                .audio
                .take()
                .map_or_else(|| unsupported("audio"), MessageKind::Audio),
            "video" => r
                .video
                .take()
                .map_or_else(|| unsupported("video"), MessageKind::Video),
            "document" => r
                .document
                .take()
                .map_or_else(|| unsupported("document"), MessageKind::Document),
            "sticker" => r
                .sticker
                .take()
                .map_or_else(|| unsupported("sticker"), MessageKind::Sticker),
            "location" => r
                .location
                .take()
                .map_or_else(|| unsupported("location"), MessageKind::Location),
            "contacts" => r.contacts.take().map_or_else(
                || unsupported("contacts"),
                |c| MessageKind::Contacts(SharedContacts(c)),
            ),
            "interactive" => match r.interactive.take() {
                Some(i) => MessageKind::Interactive(interactive(i)),
                None => unsupported("interactive"),
            },
            "button" => match r.button.take() {
                Some(b) => MessageKind::Button {
                    payload: pii(b.payload),
                    text: pii(b.text),
                },
                None => unsupported("button"),
            },
            "reaction" => match r.reaction.take() {
                Some(x) => MessageKind::Reaction {
                    message_id: x.message_id.and_then(|m| Wamid::new(m).ok()),
                    emoji: pii(x.emoji.filter(|e| !e.is_empty())),
                },
                None => unsupported("reaction"),
            },
            "order" => match r.order.take() {
                Some(o) => MessageKind::Order {
                    catalog_id: o.catalog_id,
                    text: pii(o.text),
                    product_items: o.product_items,
                },
                None => unsupported("order"),
            },
            "system" => match r.system.take() {
                Some(s) => MessageKind::System {
                    system_type: s.kind,
                    body: pii(s.body),
                    new_wa_id: s.new_wa_id.or(s.wa_id).and_then(|w| WaId::new(w).ok()),
                    new_user_id: s.new_user_id.or(s.user_id).and_then(|u| Bsuid::new(u).ok()),
                },
                None => unsupported("system"),
            },
            "request_welcome" => MessageKind::RequestWelcome,
            "unsupported" => MessageKind::Unsupported {
                original_type: r
                    .unsupported
                    .take()
                    .and_then(|u| u.kind)
                    .unwrap_or_else(|| "unsupported".to_owned()),
            },
            "" => unsupported("missing"),
            other => unsupported(other),
        };
        (kind, r)
    }
}

fn interactive(i: RawInteractive) -> Interactive {
    match i.kind.as_str() {
        "button_reply" => match i.button_reply {
            Some(b) => Interactive::ButtonReply {
                id: b.id,
                title: Pii::from(b.title),
            },
            None => Interactive::Other {
                interactive_type: i.kind,
            },
        },
        "list_reply" => match i.list_reply {
            Some(l) => Interactive::ListReply {
                id: l.id,
                title: Pii::from(l.title),
                description: pii(l.description),
            },
            None => Interactive::Other {
                interactive_type: i.kind,
            },
        },
        "nfm_reply" => match i.nfm_reply {
            Some(n) => Interactive::NfmReply {
                name: n.name,
                body: pii(n.body),
                response_json: pii(n.response_json),
            },
            None => Interactive::Other {
                interactive_type: i.kind,
            },
        },
        _ => Interactive::Other {
            interactive_type: i.kind,
        },
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawMessage::deserialize(d)?;
        let (kind, r) = raw.into_kind();
        Ok(Self {
            id: r.id,
            from: UserIdentity::from_parts(
                r.from.as_deref(),
                r.from_user_id.as_deref(),
                r.from_parent_user_id.as_deref(),
            ),
            timestamp: r.timestamp,
            kind,
            context: r.context.map(|c| MessageContext {
                id: c.id.and_then(|i| Wamid::new(i).ok()),
                from: c.from,
                forwarded: c.forwarded.unwrap_or(false),
                frequently_forwarded: c.frequently_forwarded.unwrap_or(false),
                referred_product: c.referred_product,
            }),
            referral: r.referral,
            group_id: r.group_id,
            errors: r.errors,
        })
    }
}

/// The delivery state of a message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusKind {
    /// Accepted into Meta's systems.
    Sent,
    /// On the user's device.
    Delivered,
    /// Read (only if the user has read receipts on).
    Read,
    /// Failed; see the status errors. Final.
    Failed,
}

impl StatusKind {
    /// Parses Meta's lowercase status name; other names (`deleted`, `warning`, `played`, ...)
    /// give `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// Whether a stored state `from` should be replaced by a newly arrived `to`.
    ///
    /// `sent < delivered < read`; steps may be skipped (`read` implies delivered) but never go
    /// backwards, duplicates do not advance, and `failed` is final (reachable from any
    /// non-failed state, left by none). `from = None` means nothing stored yet.
    pub fn advances(from: Option<Self>, to: Self) -> bool {
        match from {
            None => true,
            Some(Self::Failed) => false,
            Some(_) if to == Self::Failed => true,
            Some(f) => to > f,
        }
    }
}

/// One `statuses[]` element.
#[derive(Debug, Clone)]
pub struct Status {
    /// The wamid of the message we sent.
    pub id: Wamid,
    /// The raw status name (`sent`, `delivered`, `read`, `failed`, or newer ones).
    pub status: String,
    /// The parsed status, `None` for names this crate does not rank.
    pub kind: Option<StatusKind>,
    /// When Meta recorded it (order of arrival may differ; use this).
    pub timestamp: OffsetDateTime,
    /// The recipient: `recipient_id` (wa_id, or BSUID when withheld) and `recipient_user_id`.
    pub recipient: UserIdentity,
    /// Errors of a `failed` status (e.g. 131047).
    pub errors: Vec<ApiError>,
    /// Conversation object (now mostly omitted).
    pub conversation: Option<Conversation>,
    /// Pricing object.
    pub pricing: Option<Pricing>,
    /// Our own `biz_opaque_callback_data`, echoed.
    pub biz_opaque_callback_data: Option<String>,
}

/// `statuses[].conversation`.
#[derive(Debug, Clone, Deserialize)]
pub struct Conversation {
    /// Conversation id.
    #[serde(default)]
    pub id: Option<String>,
    /// Expiry (unix seconds as sent).
    #[serde(default)]
    pub expiration_timestamp: Option<serde_json::Value>,
    /// `origin.type` (e.g. `service`, `referral_conversion`).
    #[serde(default, deserialize_with = "origin_type")]
    pub origin: Option<String>,
}

fn origin_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Origin {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    Ok(Option::<Origin>::deserialize(d)?.and_then(|o| o.kind))
}

/// `statuses[].pricing`.
#[derive(Debug, Clone, Deserialize)]
pub struct Pricing {
    /// Billable (deprecated by Meta, still sent).
    #[serde(default)]
    pub billable: Option<bool>,
    /// `PMP` or `CBP`.
    #[serde(default)]
    pub pricing_model: Option<String>,
    /// `marketing`, `utility`, `authentication`, `service`, ...
    #[serde(default)]
    pub category: Option<String>,
    /// `regular`, `free_customer_service`, `free_entry_point`.
    #[serde(default, rename = "type")]
    pub pricing_type: Option<String>,
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            id: Wamid,
            status: String,
            #[serde(deserialize_with = "unix_timestamp")]
            timestamp: OffsetDateTime,
            recipient_id: Option<String>,
            recipient_user_id: Option<String>,
            recipient_parent_user_id: Option<String>,
            #[serde(default, deserialize_with = "api_errors")]
            errors: Vec<ApiError>,
            conversation: Option<Conversation>,
            pricing: Option<Pricing>,
            biz_opaque_callback_data: Option<String>,
        }
        let r = Raw::deserialize(d)?;
        Ok(Self {
            id: r.id,
            kind: StatusKind::parse(&r.status),
            status: r.status,
            timestamp: r.timestamp,
            recipient: UserIdentity::from_parts(
                r.recipient_id.as_deref(),
                r.recipient_user_id.as_deref(),
                r.recipient_parent_user_id.as_deref(),
            ),
            errors: r.errors,
            conversation: r.conversation,
            pricing: r.pricing,
            biz_opaque_callback_data: r.biz_opaque_callback_data,
        })
    }
}

/// One thing that happened, flattened out of the batch structure.
#[derive(Debug, Clone, Copy)]
pub enum InboundEvent<'a> {
    /// An inbound message.
    Message {
        /// The business number it was sent to.
        phone_number_id: &'a PhoneNumberId,
        /// The sender's profile, if the change carried one for this sender.
        contact: Option<&'a Contact>,
        /// The message.
        message: &'a Message,
    },
    /// A status callback for a message we sent.
    Status {
        /// The business number that sent the message.
        phone_number_id: &'a PhoneNumberId,
        /// The status.
        status: &'a Status,
    },
    /// A change of another field (template status, quality, account updates, ...).
    Other {
        /// `entry.id`: the WhatsApp Business Account id (template status updates name the
        /// account, not a number).
        account_id: &'a str,
        /// `value.metadata.phone_number_id`, if present.
        phone_number_id: Option<&'a PhoneNumberId>,
        /// The `field` name.
        field: &'a str,
        /// The raw `value`.
        value: &'a serde_json::Value,
    },
    /// A value-level error (`value.errors[]`).
    Error {
        /// The business number concerned.
        phone_number_id: &'a PhoneNumberId,
        /// The error.
        error: &'a ApiError,
    },
}

/// Iterator over every event of a payload; see [`WebhookPayload::events`].
#[derive(Debug, Clone)]
pub struct Events<'a> {
    entries: &'a [Entry],
    entry: usize,
    change: usize,
    /// 0 messages, 1 statuses, 2 errors, 3 done with this change.
    phase: u8,
    item: usize,
}

impl<'a> Events<'a> {
    fn next_change(&mut self) {
        self.change += 1;
        self.phase = 0;
        self.item = 0;
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = InboundEvent<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = self.entries.get(self.entry)?;
            let Some(change) = entry.changes.get(self.change) else {
                self.entry += 1;
                self.change = 0;
                self.phase = 0;
                self.item = 0;
                continue;
            };
            match change {
                Change::Other(o) => {
                    self.next_change();
                    return Some(InboundEvent::Other {
                        account_id: &entry.id,
                        phone_number_id: o.phone_number_id.as_ref(),
                        field: &o.field,
                        value: &o.value,
                    });
                }
                Change::Messages(v) => {
                    let pn = &v.metadata.phone_number_id;
                    let i = self.item;
                    self.item += 1;
                    match self.phase {
                        0 => match v.messages.get(i) {
                            Some(m) => {
                                return Some(InboundEvent::Message {
                                    phone_number_id: pn,
                                    contact: v.contact_for(&m.from),
                                    message: m,
                                });
                            }
                            None => {
                                self.phase = 1;
                                self.item = 0;
                            }
                        },
                        1 => match v.statuses.get(i) {
                            Some(s) => {
                                return Some(InboundEvent::Status {
                                    phone_number_id: pn,
                                    status: s,
                                });
                            }
                            None => {
                                self.phase = 2;
                                self.item = 0;
                            }
                        },
                        _ => match v.errors.get(i) {
                            Some(e) => {
                                return Some(InboundEvent::Error {
                                    phone_number_id: pn,
                                    error: e,
                                });
                            }
                            None => self.next_change(),
                        },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn status_ordering() {
        use StatusKind::*;
        assert!(StatusKind::advances(None, Sent));
        assert!(StatusKind::advances(Some(Sent), Delivered));
        assert!(StatusKind::advances(Some(Sent), Read));
        assert!(StatusKind::advances(Some(Delivered), Read));
        assert!(!StatusKind::advances(Some(Read), Delivered));
        assert!(!StatusKind::advances(Some(Delivered), Sent));
        assert!(!StatusKind::advances(Some(Read), Read));
        assert!(StatusKind::advances(Some(Read), Failed));
        assert!(StatusKind::advances(Some(Sent), Failed));
        for to in [Sent, Delivered, Read, Failed] {
            assert!(!StatusKind::advances(Some(Failed), to));
        }
    }

    #[test]
    fn minimal_text() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"metadata":{"phone_number_id":"42"},"messages":[{"from":"16505551234","id":"wamid.A","timestamp":"1749416383","type":"text","text":{"body":"hello there"}}]},"field":"messages"}]}]}"#;
        let p = parse_payload(body).unwrap();
        let ev: Vec<_> = p.events().collect();
        assert_eq!(ev.len(), 1);
        let InboundEvent::Message { message, .. } = ev[0] else {
            panic!("not a message")
        };
        assert_eq!(message.timestamp.unix_timestamp(), 1_749_416_383);
        let dbg = format!("{message:?}");
        assert!(dbg.contains("Text { body: <redacted 11 bytes> }"), "{dbg}");
        assert!(!dbg.contains("hello") && !dbg.contains("5551234"), "{dbg}");
    }

    #[test]
    fn bad_timestamp_is_error_without_echo() {
        let body = br#"{"object":"x","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"42"},"messages":[{"id":"wamid.A","timestamp":"secret-text","type":"text"}]}}]}]}"#;
        let e = parse_payload(body).unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }
}
