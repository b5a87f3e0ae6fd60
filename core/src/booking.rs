//! Tracked booking links. When a message to a customer carries one of the business's
//! booking URLs, the copy sent to WhatsApp carries `<public_url>/b/<token>` instead; the
//! token is a keyed digest of the message and the link's place in it, so a retried send
//! reuses it and nobody can guess another. Opening the link redirects to the booking URL;
//! the first opening moves the conversation's lead to `booked` (ledgered). The stored
//! message keeps the business's own URL.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use smartchat_ledger::{Actor, EntryDraft, EventKind, Purpose, RefKind, Reference};

use crate::crypto::TenantKey;
use crate::db::now_micros;
use crate::db::schema::{booking_links, leads};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{ConversationId, LeadId, MessageId, TenantId};
use crate::store::Store;

/// Hex characters of a token (128 bits).
pub const TOKEN_CHARS: usize = 32;

/// A link to track: its token and the business's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedLink {
    /// The token in `/b/<token>`.
    pub token: String,
    /// Where it leads.
    pub url: String,
}

/// The token of the `index`-th booking link of `message`.
pub fn token(key: &TenantKey, message: MessageId, index: usize) -> String {
    let d = key.keyed_digest("booking-link", format!("{message}|{index}").as_bytes());
    d[..TOKEN_CHARS / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces every booking URL of `urls` found in `text` with its tracked link under
/// `public_url`; returns the new text and the links to record. Longer URLs are replaced
/// first, so one that extends another is not cut in two.
pub fn rewrite(
    key: &TenantKey,
    message: MessageId,
    public_url: &str,
    urls: &[String],
    text: &str,
) -> (String, Vec<TrackedLink>) {
    let mut sorted: Vec<&String> = urls.iter().filter(|u| !u.is_empty()).collect();
    sorted.sort_by_key(|u| std::cmp::Reverse(u.len()));
    sorted.dedup();
    let mut out = text.to_owned();
    let mut links = Vec::new();
    for (i, url) in sorted.into_iter().enumerate() {
        if out.contains(url.as_str()) {
            let t = token(key, message, i);
            out = out.replace(url.as_str(), &format!("{public_url}/b/{t}"));
            links.push(TrackedLink {
                token: t,
                url: url.clone(),
            });
        }
    }
    (out, links)
}

impl Store {
    /// Records the tracked links of a message (again for a retried send: no change).
    pub async fn track_links(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        message: MessageId,
        links: &[TrackedLink],
    ) -> Result<(), CoreError> {
        if links.is_empty() {
            return Ok(());
        }
        let (tid, cid, mid) = (
            tenant.to_string(),
            conversation.to_string(),
            message.to_string(),
        );
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        for l in links {
            db_run!(tx, |c| diesel::insert_into(booking_links::table)
                .values((
                    booking_links::token.eq(&l.token),
                    booking_links::tenant_id.eq(&tid),
                    booking_links::conversation_id.eq(&cid),
                    booking_links::message_id.eq(&mid),
                    booking_links::url.eq(&l.url),
                    booking_links::created_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(c)
                .await)?;
        }
        tx.commit().await
    }

    /// Opens a tracked link: the business's URL to redirect to, `None` for an unknown token
    /// (or a stored URL that is not a web address).
    ///
    /// The first opening is recorded, and moves the conversation's newest lead to `booked`
    /// (ledgered as a stage change by the data subject) and is ledgered as
    /// `booking_link_clicked`, all in one transaction: if any of it fails, none of it is
    /// kept and the next opening is the first again. A shredded tenant's link still
    /// redirects; only the opening is recorded.
    pub async fn open_link(&self, token: &str) -> Result<Option<String>, CoreError> {
        if token.len() != TOKEN_CHARS || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut c = self.db.conn().await?;
        let row: Option<(String, String, String)> = db_run!(c, |c| booking_links::table
            .find(token)
            .select((
                booking_links::url,
                booking_links::tenant_id,
                booking_links::conversation_id
            ))
            .first(c)
            .await
            .optional())?;
        drop(c);
        let Some((url, tid, cid)) = row else {
            return Ok(None);
        };
        // Only web addresses are followed, whatever a profile once held.
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Ok(None);
        }
        let tenant: TenantId = tid.parse()?;
        let conversation: ConversationId = cid.parse()?;
        let key = match self.tenant_key(tenant).await {
            Ok(k) => Some(k),
            Err(CoreError::Shredded { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut tx = self.db.begin().await?;
        let now = now_micros();
        let first = db_run!(tx, |c| diesel::update(booking_links::table.find(token))
            .filter(booking_links::clicked_at.is_null())
            .set(booking_links::clicked_at.eq(now))
            .execute(c)
            .await)?
            == 1;
        if first && let Some(key) = key {
            let lead: Option<(String, String, String)> = db_run!(tx, |c| leads::table
                .filter(leads::tenant_id.eq(&tid))
                .filter(leads::conversation_id.eq(&cid))
                .order(leads::created_at.desc())
                .select((leads::id, leads::stage, leads::subject_id))
                .first(c)
                .await
                .optional())?;
            if let Some((lid, stage, sid)) = lead {
                let id: LeadId = lid.parse()?;
                if stage != "booked" {
                    crate::leads::set_stage_in(
                        &mut tx,
                        &key,
                        tenant,
                        id,
                        &sid,
                        "booked",
                        Actor::DataSubject,
                    )
                    .await?;
                }
                let d = EntryDraft::new(EventKind::BOOKING_LINK_CLICKED, Actor::DataSubject)
                    .tenant(tenant.bytes())
                    .subject(key.pseudonym(&sid))
                    .purpose(Purpose::LEAD_MANAGEMENT)
                    .reference(Reference::id(RefKind::LEAD, id.bytes()))
                    .reference(Reference::id(RefKind::CONVERSATION, conversation.bytes()));
                crate::audit::enqueue(&mut tx, &d).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(url))
    }
}
