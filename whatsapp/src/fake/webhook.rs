//! Builder of Meta-shaped, signed webhook bodies for tests.

use serde_json::{Value, json};

use crate::verify::signature_header;

/// A WhatsApp user as it appears in a webhook: wa_id and/or BSUID, optional profile name.
#[derive(Debug, Clone, Default)]
pub struct WebhookUser {
    wa_id: Option<String>,
    user_id: Option<String>,
    name: Option<String>,
}

impl WebhookUser {
    /// A user known by phone (wa_id) only, as before 2026.
    pub fn wa_id(wa_id: &str) -> Self {
        Self {
            wa_id: Some(wa_id.to_owned()),
            ..Self::default()
        }
    }

    /// A user with a username whose phone number is withheld: BSUID only.
    pub fn bsuid(user_id: &str) -> Self {
        Self {
            user_id: Some(user_id.to_owned()),
            ..Self::default()
        }
    }

    /// A user with both a wa_id and a BSUID.
    pub fn both(wa_id: &str, user_id: &str) -> Self {
        Self {
            wa_id: Some(wa_id.to_owned()),
            user_id: Some(user_id.to_owned()),
            name: None,
        }
    }

    /// Sets the profile name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    fn contact(&self) -> Value {
        let mut c = json!({ "profile": { "name": self.name.clone().unwrap_or_default() } });
        if let Some(obj) = c.as_object_mut() {
            if let Some(w) = &self.wa_id {
                obj.insert("wa_id".into(), json!(w));
            }
            if let Some(u) = &self.user_id {
                obj.insert("user_id".into(), json!(u));
            }
        }
        c
    }

    fn sender_fields(&self, msg: &mut Value) {
        if let Some(obj) = msg.as_object_mut() {
            if let Some(w) = &self.wa_id {
                obj.insert("from".into(), json!(w));
            }
            if let Some(u) = &self.user_id {
                obj.insert("from_user_id".into(), json!(u));
            }
        }
    }

    fn recipient_fields(&self, st: &mut Value) {
        if let Some(obj) = st.as_object_mut() {
            if let Some(w) = &self.wa_id {
                obj.insert("recipient_id".into(), json!(w));
            }
            if let Some(u) = &self.user_id {
                obj.insert("recipient_user_id".into(), json!(u));
            }
        }
    }
}

#[derive(Debug, Clone)]
struct EntryDraft {
    phone_number_id: String,
    display_phone_number: String,
    contacts: Vec<Value>,
    messages: Vec<Value>,
    statuses: Vec<Value>,
    other: Vec<(String, Value)>,
}

/// Builds webhook bodies shaped like Meta's, batched across entries, and signs them.
///
/// Each [`WebhookBuilder::entry`] starts a new `entry[]` element with one `messages` change;
/// messages and statuses go into the current entry. The body is serialised with non-ASCII
/// escaped as `\uXXXX`, as Meta does, so tests catch code that re-serialises before verifying.
#[derive(Debug, Clone)]
pub struct WebhookBuilder {
    waba_id: String,
    timestamp: i64,
    entries: Vec<EntryDraft>,
}

impl Default for WebhookBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookBuilder {
    /// An empty payload for WABA `102290129340398`, timestamps at 1749416383.
    pub fn new() -> Self {
        Self {
            waba_id: "102290129340398".to_owned(),
            timestamp: 1_749_416_383,
            entries: Vec::new(),
        }
    }

    /// Sets the unix timestamp used for following messages and statuses.
    pub fn at(mut self, unix_seconds: i64) -> Self {
        self.timestamp = unix_seconds;
        self
    }

    /// Starts a new entry for a business number.
    pub fn entry(mut self, phone_number_id: &str, display_phone_number: &str) -> Self {
        self.entries.push(EntryDraft {
            phone_number_id: phone_number_id.to_owned(),
            display_phone_number: display_phone_number.to_owned(),
            contacts: Vec::new(),
            messages: Vec::new(),
            statuses: Vec::new(),
            other: Vec::new(),
        });
        self
    }

    fn current(&mut self) -> &mut EntryDraft {
        if self.entries.is_empty() {
            self.entries.push(EntryDraft {
                phone_number_id: "106540352242922".to_owned(),
                display_phone_number: "15550783881".to_owned(),
                contacts: Vec::new(),
                messages: Vec::new(),
                statuses: Vec::new(),
                other: Vec::new(),
            });
        }
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }

    fn push_message(&mut self, from: &WebhookUser, mut msg: Value) {
        from.sender_fields(&mut msg);
        let contact = from.contact();
        let e = self.current();
        if !e.contacts.contains(&contact) {
            e.contacts.push(contact);
        }
        e.messages.push(msg);
    }

    /// Adds a text message.
    pub fn text(mut self, from: &WebhookUser, wamid: &str, body: &str) -> Self {
        let msg = json!({
            "id": wamid,
            "timestamp": self.timestamp.to_string(),
            "type": "text",
            "text": { "body": body },
        });
        self.push_message(from, msg);
        self
    }

    /// Adds a media message (`image`, `audio`, `video`, `document` or `sticker`).
    pub fn media(
        mut self,
        from: &WebhookUser,
        wamid: &str,
        media_type: &str,
        media_id: &str,
        mime_type: &str,
        caption: Option<&str>,
    ) -> Self {
        let mut media = json!({
            "id": media_id,
            "mime_type": mime_type,
            "sha256": "Sgz0tpwV3cnv3ZqRG8mQ3mqMQv36EjgNeSOUyYyL0UI=",
        });
        if let (Some(c), Some(obj)) = (caption, media.as_object_mut()) {
            obj.insert("caption".into(), json!(c));
        }
        let mut msg = json!({
            "id": wamid,
            "timestamp": self.timestamp.to_string(),
            "type": media_type,
        });
        if let Some(obj) = msg.as_object_mut() {
            obj.insert(media_type.to_owned(), media);
        }
        self.push_message(from, msg);
        self
    }

    /// Adds an arbitrary message object (the sender fields are added).
    pub fn raw_message(mut self, from: &WebhookUser, message: Value) -> Self {
        self.push_message(from, message);
        self
    }

    /// Adds a status (`sent`, `delivered`, `read`, ...) for a message we sent.
    pub fn status(mut self, recipient: &WebhookUser, wamid: &str, status: &str) -> Self {
        let mut st = json!({
            "id": wamid,
            "status": status,
            "timestamp": self.timestamp.to_string(),
            "pricing": { "billable": true, "pricing_model": "PMP", "category": "service", "type": "free_customer_service" },
        });
        recipient.recipient_fields(&mut st);
        self.current().statuses.push(st);
        self
    }

    /// Adds a `failed` status with one error of `code`.
    pub fn failed_status(mut self, recipient: &WebhookUser, wamid: &str, code: i64) -> Self {
        let mut st = json!({
            "id": wamid,
            "status": "failed",
            "timestamp": self.timestamp.to_string(),
            "errors": [{
                "code": code,
                "title": "Scripted failure",
                "message": "Scripted failure",
                "error_data": { "details": "Scripted failure for tests." },
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }],
        });
        recipient.recipient_fields(&mut st);
        self.current().statuses.push(st);
        self
    }

    /// Adds a change of another field (e.g. `message_template_status_update`) to the
    /// current entry.
    pub fn other_change(mut self, field: &str, value: Value) -> Self {
        self.current().other.push((field.to_owned(), value));
        self
    }

    /// The payload as JSON.
    pub fn to_value(&self) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut changes = Vec::new();
                if !(e.messages.is_empty() && e.statuses.is_empty()) {
                    let mut value = json!({
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": e.display_phone_number,
                            "phone_number_id": e.phone_number_id,
                        },
                    });
                    if let Some(obj) = value.as_object_mut() {
                        if !e.messages.is_empty() {
                            obj.insert("contacts".into(), json!(e.contacts));
                            obj.insert("messages".into(), json!(e.messages));
                        }
                        if !e.statuses.is_empty() {
                            obj.insert("statuses".into(), json!(e.statuses));
                        }
                    }
                    changes.push(json!({ "value": value, "field": "messages" }));
                }
                for (field, value) in &e.other {
                    changes.push(json!({ "value": value, "field": field }));
                }
                json!({ "id": self.waba_id, "changes": changes })
            })
            .collect();
        json!({ "object": "whatsapp_business_account", "entry": entries })
    }

    /// The body bytes, non-ASCII escaped as Meta sends them.
    pub fn build(&self) -> Vec<u8> {
        escape_non_ascii(&self.to_value().to_string()).into_bytes()
    }

    /// The body bytes and the matching `X-Hub-Signature-256` header value.
    pub fn signed(&self, app_secret: &[u8]) -> (Vec<u8>, String) {
        let body = self.build();
        let sig = signature_header(app_secret, &body);
        (body, sig)
    }
}

/// Rewrites every non-ASCII character of a JSON text as lowercase `\uXXXX` escapes (UTF-16,
/// surrogate pairs above U+FFFF), the form Meta signs. Non-ASCII can only occur inside JSON
/// strings, so the result parses to the same value.
pub fn escape_non_ascii(json_text: &str) -> String {
    let mut out = String::with_capacity(json_text.len());
    let mut buf = [0u16; 2];
    for c in json_text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}
