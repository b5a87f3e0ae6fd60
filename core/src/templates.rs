//! Message templates: the only messages WhatsApp delivers outside the 24-hour customer
//! service window. A tenant's templates come from Meta (synced from the Graph API, their
//! status kept current by `message_template_status_update` webhooks routed by the
//! WhatsApp Business Account id) or, for a tenant without Meta credentials, are registered
//! by hand for the sandbox. A template is the business's own wording with numbered
//! variables (`{{1}}`, `{{2}}`, ...); the values, which may be personal data, are never
//! stored here.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, Purpose};

use crate::audit;
use crate::db::now_micros;
use crate::db::schema::{message_templates, phone_numbers};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{PhoneNumberId, TenantId};
use crate::store::Store;

/// Most variables a template body may hold (Meta's practical limit is far lower).
pub const MAX_PARAMS: i32 = 20;

/// A template and the values of its variables, in order (`{{1}}` first). In a follow-up
/// rule each value is a fixed text or one of
/// [`crate::follow_ups::TEMPLATE_VARIABLES`]; on an outbound message they are the values
/// sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateUse {
    /// Template name.
    pub name: String,
    /// Its language code.
    pub language: String,
    /// One value per variable.
    #[serde(default)]
    pub params: Vec<String>,
}

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    /// Synced from Meta's Graph API.
    Meta,
    /// Registered by hand for the sandbox (no Meta credentials).
    Sandbox,
}

impl TemplateSource {
    fn as_str(self) -> &'static str {
        match self {
            TemplateSource::Meta => "meta",
            TemplateSource::Sandbox => "sandbox",
        }
    }
    fn ledger_reason(self) -> u32 {
        match self {
            TemplateSource::Meta => 1,
            TemplateSource::Sandbox => 2,
        }
    }
}

/// A template as the business (or Meta) describes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    /// Meta's template name: lower-case letters, digits and `_`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9_]{1,512}$"))]
    pub name: String,
    /// Language code, e.g. `en`, `en_US`, `hi`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z_]{2,15}$"))]
    pub language: String,
    /// `marketing`, `utility` or `authentication`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(marketing|utility|authentication)$")
    )]
    pub category: String,
    /// The body text with `{{1}}`-style variables.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub body: String,
    /// Meta's review status (`approved`, `pending`, `rejected`, `paused`, `disabled`, ...);
    /// lower-cased when stored.
    #[serde(default = "approved")]
    pub status: String,
}

fn approved() -> String {
    "approved".into()
}

/// A stored template.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Template {
    /// Name.
    pub name: String,
    /// Language code.
    pub language: String,
    /// Category.
    pub category: String,
    /// Review status, lower case.
    pub status: String,
    /// Body with `{{n}}` variables.
    pub body: String,
    /// How many variables the body has.
    pub params: i32,
    /// `meta` or `sandbox`.
    pub source: String,
    /// Last change, unix micros.
    pub updated_at: i64,
}

impl Template {
    /// Whether WhatsApp will deliver it now: approved, or flagged for low quality (still
    /// sendable until Meta pauses or disables it).
    pub fn is_approved(&self) -> bool {
        matches!(self.status.as_str(), "approved" | "flagged")
    }
}

/// The highest `{{n}}` in `body` (0 without variables). Variables must be numbered 1..=n
/// without gaps; anything else is an error naming what is wrong.
pub fn count_params(body: &str) -> Result<i32, String> {
    let mut seen: Vec<i32> = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("a `{{` without its `}}`".into());
        };
        let n: i32 = after[..end]
            .trim()
            .parse()
            .map_err(|_| format!("`{{{{{}}}}}` is not a numbered variable", &after[..end]))?;
        if !(1..=MAX_PARAMS).contains(&n) {
            return Err(format!("variables are numbered 1 to {MAX_PARAMS}"));
        }
        if !seen.contains(&n) {
            seen.push(n);
        }
        rest = &after[end + 2..];
    }
    let max = seen.iter().copied().max().unwrap_or(0);
    if usize::try_from(max).unwrap_or(0) != seen.len() {
        return Err(format!(
            "variables must be numbered 1 to {max} without gaps"
        ));
    }
    Ok(max)
}

/// The body with `{{n}}` replaced by `values[n - 1]`.
pub fn render(body: &str, values: &[String]) -> String {
    let mut out = body.to_owned();
    for (i, v) in values.iter().enumerate().rev() {
        out = out.replace(&format!("{{{{{}}}}}", i + 1), v);
    }
    out
}

impl NewTemplate {
    /// Checks the name, language, category and body; returns the variable count.
    pub fn validate(&self) -> Result<i32, CoreError> {
        let bad = |reason: String| CoreError::Invalid {
            field: "template",
            reason,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 512
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(bad(
                "name: lower-case letters, digits and _ (1 to 512)".into()
            ));
        }
        let lang_ok = (2..=15).contains(&self.language.len())
            && self
                .language
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !lang_ok {
            return Err(bad("language: a code such as en, en_US or hi".into()));
        }
        if !["marketing", "utility", "authentication"]
            .contains(&self.category.to_ascii_lowercase().as_str())
        {
            return Err(bad("category: marketing, utility or authentication".into()));
        }
        let chars = self.body.chars().count();
        if chars == 0 || chars > 1024 {
            return Err(bad("body: 1 to 1024 characters".into()));
        }
        count_params(&self.body).map_err(|e| bad(format!("body: {e}")))
    }
}

type TemplateRow = (String, String, String, String, String, i32, String, i64);

fn to_template(r: TemplateRow) -> Template {
    Template {
        name: r.0,
        language: r.1,
        category: r.2,
        status: r.3,
        body: r.4,
        params: r.5,
        source: r.6,
        updated_at: r.7,
    }
}

fn template_call_context(tenant: &str, message_id: &str) -> String {
    format!("messages.template_ct|{tenant}|{message_id}")
}

impl Store {
    /// Attaches the template call (name, language, the values sent) to an outbound
    /// message, sealed under the subject's key like its body.
    pub async fn set_message_template(
        &self,
        tx: &mut crate::db::Tx,
        key: &crate::crypto::TenantKey,
        conv: &crate::store::ConversationRow,
        message: crate::ids::MessageId,
        call: &TemplateUse,
    ) -> Result<(), CoreError> {
        use crate::db::schema::messages;
        let tid = conv.tenant_id.to_string();
        let mid = message.to_string();
        let skey = self
            .subject_key_in(tx, &tid, &conv.subject_id.to_string(), key)
            .await?;
        let json = serde_json::to_vec(call).map_err(|e| CoreError::Internal(e.to_string()))?;
        let ct = skey.seal(&template_call_context(&tid, &mid), &json)?;
        db_run!(tx, |c| diesel::update(messages::table.find(&mid))
            .set(messages::template_ct.eq(Some(&ct)))
            .execute(c)
            .await)?;
        Ok(())
    }

    /// The template call of an outbound template message, opened.
    pub async fn message_template(
        &self,
        c: &mut crate::db::Conn,
        key: &crate::crypto::TenantKey,
        row: &crate::store::MessageRow,
    ) -> Result<TemplateUse, CoreError> {
        use crate::db::schema::messages;
        let ct: Option<Vec<u8>> = db_run!(c, |c| messages::table
            .find(&row.id)
            .select(messages::template_ct)
            .first(c)
            .await)?;
        let ct = ct.ok_or(CoreError::NotFound {
            what: "template of the message",
        })?;
        let skey = self
            .subject_key_in(c, &row.tenant_id, &row.subject_id, key)
            .await?;
        serde_json::from_slice(&skey.open(&template_call_context(&row.tenant_id, &row.id), &ct)?)
            .map_err(|_| CoreError::Crypto("template call is not JSON".into()))
    }

    /// Writes `templates` for `tenant` (inserting or replacing by name and language),
    /// ledgered once. Each is validated first; one bad template writes nothing.
    pub async fn put_templates(
        &self,
        tenant: TenantId,
        templates: &[NewTemplate],
        source: TemplateSource,
        actor: Actor,
    ) -> Result<usize, CoreError> {
        let counted: Vec<i32> = templates
            .iter()
            .map(NewTemplate::validate)
            .collect::<Result<_, _>>()?;
        let tid = tenant.to_string();
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        for (t, params) in templates.iter().zip(counted) {
            let status = t.status.to_ascii_lowercase();
            let category = t.category.to_ascii_lowercase();
            db_run!(tx, |c| diesel::delete(
                message_templates::table
                    .filter(message_templates::tenant_id.eq(&tid))
                    .filter(message_templates::name.eq(&t.name))
                    .filter(message_templates::language.eq(&t.language))
            )
            .execute(c)
            .await)?;
            db_run!(tx, |c| diesel::insert_into(message_templates::table)
                .values((
                    message_templates::tenant_id.eq(&tid),
                    message_templates::name.eq(&t.name),
                    message_templates::language.eq(&t.language),
                    message_templates::category.eq(&category),
                    message_templates::status.eq(&status),
                    message_templates::body.eq(&t.body),
                    message_templates::params.eq(params),
                    message_templates::source.eq(source.as_str()),
                    message_templates::updated_at.eq(now),
                ))
                .execute(c)
                .await)?;
        }
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::TEMPLATES_CHANGED, actor)
                .tenant(tenant.bytes())
                .purpose(Purpose::ADMINISTRATION)
                .attr(AttrKey::REASON, AttrValue::Code(source.ledger_reason()))
                .attr(
                    AttrKey::RECORD_COUNT,
                    AttrValue::U64(templates.len() as u64),
                ),
        )
        .await?;
        tx.commit().await?;
        Ok(templates.len())
    }

    /// The tenant's templates, by name and language.
    pub async fn templates(&self, tenant: TenantId) -> Result<Vec<Template>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let rows: Vec<TemplateRow> = db_run!(c, |c| message_templates::table
            .filter(message_templates::tenant_id.eq(&tid))
            .order((message_templates::name, message_templates::language))
            .select(template_columns())
            .load(c)
            .await)?;
        Ok(rows.into_iter().map(to_template).collect())
    }

    /// One template of the tenant.
    pub async fn template(
        &self,
        tenant: TenantId,
        name: &str,
        language: &str,
    ) -> Result<Template, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let row: Option<TemplateRow> = db_run!(c, |c| message_templates::table
            .filter(message_templates::tenant_id.eq(&tid))
            .filter(message_templates::name.eq(name))
            .filter(message_templates::language.eq(language))
            .select(template_columns())
            .first(c)
            .await
            .optional())?;
        row.map(to_template)
            .ok_or(CoreError::NotFound { what: "template" })
    }

    /// Records a status Meta reported for a template of a WhatsApp Business Account, for
    /// every tenant with a number in that account; a template we do not know is ignored.
    /// Returns how many rows changed.
    pub async fn set_template_status_in(
        &self,
        tx: &mut crate::db::Tx,
        tenant: TenantId,
        name: &str,
        language: &str,
        status: &str,
    ) -> Result<usize, CoreError> {
        let tid = tenant.to_string();
        // A reinstated template is approved again.
        let status = match status.to_ascii_lowercase().as_str() {
            "reinstated" => "approved".to_owned(),
            other => other.to_owned(),
        };
        let now = now_micros();
        let n = db_run!(tx, |c| diesel::update(
            message_templates::table
                .filter(message_templates::tenant_id.eq(&tid))
                .filter(message_templates::name.eq(name))
                .filter(message_templates::language.eq(language))
        )
        .set((
            message_templates::status.eq(&status),
            message_templates::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
        if n > 0 {
            audit::enqueue(
                tx,
                &EntryDraft::new(EventKind::TEMPLATES_CHANGED, Actor::Meta)
                    .tenant(tenant.bytes())
                    .purpose(Purpose::ADMINISTRATION)
                    .attr(AttrKey::REASON, AttrValue::Code(3))
                    .attr(AttrKey::RECORD_COUNT, AttrValue::U64(n as u64)),
            )
            .await?;
        }
        Ok(n)
    }

    /// Tenants with a number in the WhatsApp Business Account `waba_id`.
    pub async fn tenants_for_waba(&self, waba_id: &str) -> Result<Vec<TenantId>, CoreError> {
        let mut c = self.db.conn().await?;
        let ids: Vec<String> = db_run!(c, |c| phone_numbers::table
            .filter(phone_numbers::waba_id.eq(waba_id))
            .select(phone_numbers::tenant_id)
            .distinct()
            .load(c)
            .await)?;
        ids.iter().map(|s| s.parse()).collect()
    }

    /// Sets the WhatsApp Business Account of one of the tenant's numbers.
    pub async fn set_waba_id(
        &self,
        tenant: TenantId,
        pnid: &PhoneNumberId,
        waba_id: &str,
    ) -> Result<(), CoreError> {
        if waba_id.is_empty() || waba_id.len() > 64 || !waba_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(CoreError::Invalid {
                field: "waba_id",
                reason: "a WhatsApp Business Account id is digits".into(),
            });
        }
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let n = db_run!(c, |c| diesel::update(
            phone_numbers::table
                .filter(phone_numbers::phone_number_id.eq(pnid.as_str()))
                .filter(phone_numbers::tenant_id.eq(&tid))
        )
        .set(phone_numbers::waba_id.eq(waba_id))
        .execute(c)
        .await)?;
        if n == 0 {
            return Err(CoreError::NotFound {
                what: "phone number",
            });
        }
        Ok(())
    }

    /// The WhatsApp Business Account ids of the tenant's numbers, with the number.
    pub async fn wabas(&self, tenant: TenantId) -> Result<Vec<(String, String)>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let rows: Vec<(String, Option<String>)> = db_run!(c, |c| phone_numbers::table
            .filter(phone_numbers::tenant_id.eq(&tid))
            .select((phone_numbers::phone_number_id, phone_numbers::waba_id))
            .load(c)
            .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(p, w)| w.map(|w| (p, w)))
            .collect())
    }
}

#[allow(clippy::type_complexity)]
fn template_columns() -> (
    message_templates::name,
    message_templates::language,
    message_templates::category,
    message_templates::status,
    message_templates::body,
    message_templates::params,
    message_templates::source,
    message_templates::updated_at,
) {
    (
        message_templates::name,
        message_templates::language,
        message_templates::category,
        message_templates::status,
        message_templates::body,
        message_templates::params,
        message_templates::source,
        message_templates::updated_at,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn variables_are_counted_and_checked() {
        assert_eq!(count_params("Hello"), Ok(0));
        assert_eq!(count_params("Hi {{1}}, {{2}} awaits; {{1}}!"), Ok(2));
        assert!(
            count_params("Hi {{2}}")
                .unwrap_err()
                .contains("without gaps")
        );
        assert!(
            count_params("Hi {{name}}")
                .unwrap_err()
                .contains("numbered")
        );
        assert!(count_params("Hi {{1").unwrap_err().contains("}}"));
        assert!(count_params("{{0}}").is_err());
    }

    #[test]
    fn rendering_fills_every_occurrence() {
        let v = vec!["Asha".to_string(), "Glow Salon".to_string()];
        assert_eq!(
            render("Hi {{1}}, {{2}} misses you, {{1}}.", &v),
            "Hi Asha, Glow Salon misses you, Asha."
        );
    }
}
