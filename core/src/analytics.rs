//! Anonymized analytics, in a database apart from raw data (its own SQLite file on the
//! embedded default; its own PostgreSQL database in production, `SMARTCHAT_ANALYTICS_URL`).
//!
//! Only aggregates: per tenant, UTC day and hour (hour [`WHOLE_DAY`] for the day), a metric
//! and a coarse dimension, the count and how many distinct customers contributed. The
//! caller says whether the customer is new to the hour and to the day (it knows from the raw
//! data at the moment of the event); nothing identifying is written here. Cells built from
//! fewer than [`MIN_SUBJECTS`] customers are suppressed when read. The store is written as
//! events happen and never rebuilt from raw data, so deleting a customer or a tenant leaves
//! it as it is.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{DbPool, OpenOptions, Schema};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::TenantId;

diesel::table! {
    analytics_cells (tenant_id, day, hour, metric, dimension) {
        tenant_id -> Text,
        day -> Text,
        hour -> Integer,
        metric -> Text,
        dimension -> Text,
        value -> BigInt,
        subjects -> BigInt,
    }
}

/// The hour value of a whole-day cell.
pub const WHOLE_DAY: i32 = 24;
/// Cells built from fewer customers than this are suppressed.
pub const MIN_SUBJECTS: i64 = 5;

/// Metrics.
pub mod metric {
    /// A customer message received.
    pub const MESSAGES_IN: &str = "messages_in";
    /// A message sent to a customer (dimension: `assistant`, `human`, `follow_up`, `system`).
    pub const MESSAGES_OUT: &str = "messages_out";
    /// Time from a customer message to the assistant's reply being queued (dimension: a
    /// bucket).
    pub const RESPONSE_TIME: &str = "response_time";
    /// A lead captured.
    pub const LEADS: &str = "leads";
    /// An AI-provider call (dimension: the provider).
    pub const PROVIDER_CALLS: &str = "provider_calls";
    /// Tokens used at an AI provider (dimension: the provider).
    pub const PROVIDER_TOKENS: &str = "provider_tokens";
    /// Estimated cost of AI-provider calls in millionths of a US dollar, at the list price
    /// of the day they were made ([`super::price_per_million_tokens`]; dimension: the
    /// provider).
    pub const PROVIDER_COST: &str = "provider_cost_micro_usd";
    /// A portal page viewed (usage data; dimension: the route template; distinct members
    /// in place of customers).
    pub const PAGE_VIEW: &str = "page_view";
    /// A portal feature used (usage data; dimension: the feature).
    pub const FEATURE_USE: &str = "feature_use";
}

/// List prices in US dollars per million tokens (input, output) used to estimate what a
/// provider call cost; an unknown provider costs nothing rather than a guess. Prices as
/// published by the providers for their default chat models in 2026 (OpenAI gpt-4o-mini,
/// DeepSeek deepseek-chat); the estimate is written when the call is counted, so a later
/// change of price does not rewrite history.
pub fn price_per_million_tokens(provider: &str) -> (f64, f64) {
    match provider {
        "openai" => (0.15, 0.60),
        "deepseek" => (0.27, 1.10),
        _ => (0.0, 0.0),
    }
}

/// The estimated cost of a call in millionths of a dollar.
pub fn cost_micro_usd(provider: &str, tokens_in: u64, tokens_out: u64) -> i64 {
    let (pin, pout) = price_per_million_tokens(provider);
    // $ per million tokens = micro-dollars per token.
    let micro = pin * tokens_in as f64 + pout * tokens_out as f64;
    micro.round() as i64
}

/// The response-time bucket of a delay in milliseconds.
pub fn response_bucket(ms: i64) -> &'static str {
    match ms {
        i64::MIN..=4_999 => "under_5s",
        5_000..=29_999 => "5s_to_30s",
        30_000..=299_999 => "30s_to_5m",
        _ => "over_5m",
    }
}

/// One event to count.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// The business.
    pub tenant: TenantId,
    /// When (UTC).
    pub at: OffsetDateTime,
    /// Metric.
    pub metric: &'a str,
    /// Dimension (`""` for none).
    pub dimension: &'a str,
    /// Amount.
    pub value: i64,
    /// Whether this customer has not yet counted in this metric this hour.
    pub new_in_hour: bool,
    /// Whether this customer has not yet counted in this metric this day.
    pub new_in_day: bool,
}

/// One readable cell.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cell {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Hour (0-23), or [`WHOLE_DAY`].
    pub hour: i32,
    /// Metric.
    pub metric: String,
    /// Dimension.
    pub dimension: String,
    /// The count; `None` when suppressed (fewer than [`MIN_SUBJECTS`] customers).
    pub value: Option<i64>,
}

/// The analytics store.
#[derive(Clone, Debug)]
pub struct Analytics {
    db: DbPool,
}

/// The UTC day of `t` as `YYYY-MM-DD` (the store's day key).
pub fn day_of(t: OffsetDateTime) -> String {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

impl Analytics {
    /// Opens (and migrates) the store at `url`.
    pub async fn open(url: &crate::db::DbUrl, opts: &OpenOptions) -> Result<Self, CoreError> {
        let db = DbPool::open(url, opts).await?;
        db.migrate(Schema::Analytics).await?;
        Ok(Self { db })
    }

    /// The pool (tests read it directly to prove what it holds).
    pub fn db(&self) -> &DbPool {
        &self.db
    }

    /// The same store through a pool of its own ([`DbPool::twin`]), for the background
    /// runtime.
    pub fn twin(&self, priority: crate::priority::BackgroundPriority) -> Result<Self, CoreError> {
        Ok(Self {
            db: self.db.twin(priority)?,
        })
    }

    /// Counts an event in its hour cell and its day cell.
    pub async fn record(&self, ev: &Event<'_>) -> Result<(), CoreError> {
        let tid = ev.tenant.to_string();
        let day = day_of(ev.at);
        let hour = i32::from(ev.at.to_offset(time::UtcOffset::UTC).hour());
        let mut c = self.db.conn().await?;
        for (h, new) in [(hour, ev.new_in_hour), (WHOLE_DAY, ev.new_in_day)] {
            let subjects = i64::from(new);
            db_run!(c, |c| diesel::insert_into(analytics_cells::table)
                .values((
                    analytics_cells::tenant_id.eq(&tid),
                    analytics_cells::day.eq(&day),
                    analytics_cells::hour.eq(h),
                    analytics_cells::metric.eq(ev.metric),
                    analytics_cells::dimension.eq(ev.dimension),
                    analytics_cells::value.eq(ev.value),
                    analytics_cells::subjects.eq(subjects),
                ))
                .on_conflict((
                    analytics_cells::tenant_id,
                    analytics_cells::day,
                    analytics_cells::hour,
                    analytics_cells::metric,
                    analytics_cells::dimension,
                ))
                .do_update()
                .set((
                    analytics_cells::value
                        .eq(analytics_cells::value + excluded(analytics_cells::value)),
                    analytics_cells::subjects
                        .eq(analytics_cells::subjects + excluded(analytics_cells::subjects)),
                ))
                .execute(c)
                .await)?;
        }
        Ok(())
    }

    /// The tenant's cells between two UTC days (inclusive), with suppression applied.
    pub async fn cells(
        &self,
        tenant: TenantId,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<Cell>, CoreError> {
        let tid = tenant.to_string();
        let (from, to) = (from_day.to_owned(), to_day.to_owned());
        let mut c = self.db.conn().await?;
        let rows: Vec<(String, i32, String, String, i64, i64)> =
            db_run!(c, |c| analytics_cells::table
                .filter(analytics_cells::tenant_id.eq(&tid))
                .filter(analytics_cells::day.ge(&from))
                .filter(analytics_cells::day.le(&to))
                .order((
                    analytics_cells::day,
                    analytics_cells::hour,
                    analytics_cells::metric,
                    analytics_cells::dimension,
                ))
                .select((
                    analytics_cells::day,
                    analytics_cells::hour,
                    analytics_cells::metric,
                    analytics_cells::dimension,
                    analytics_cells::value,
                    analytics_cells::subjects,
                ))
                .load(c)
                .await)?;
        Ok(rows
            .into_iter()
            .map(|(day, hour, metric, dimension, value, subjects)| Cell {
                day,
                hour,
                metric,
                dimension,
                value: (subjects >= MIN_SUBJECTS).then_some(value),
            })
            .collect())
    }
}

impl crate::store::Store {
    /// Whether a message of the subject in `direction` at `at_micros` is their first of that
    /// direction in its UTC hour and in its UTC day: what an analytics cell needs to count
    /// distinct customers without storing who they are.
    pub async fn first_in_period(
        &self,
        tenant: TenantId,
        subject: crate::ids::SubjectId,
        direction: &str,
        at_micros: i64,
    ) -> Result<(bool, bool), CoreError> {
        use crate::db::schema::messages;
        let (tid, sid) = (tenant.to_string(), subject.to_string());
        let hour = at_micros - at_micros.rem_euclid(3_600_000_000);
        let day = at_micros - at_micros.rem_euclid(86_400_000_000);
        let direction = direction.to_owned();
        let mut c = self.db.conn().await?;
        let earlier: Vec<i64> = db_run!(c, |c| messages::table
            .filter(messages::subject_id.eq(&sid))
            .filter(messages::created_at.ge(day))
            .filter(messages::created_at.lt(at_micros))
            .filter(messages::tenant_id.eq(&tid))
            .filter(messages::direction.eq(&direction))
            .select(messages::created_at)
            .load(c)
            .await)?;
        Ok((!earlier.iter().any(|t| *t >= hour), earlier.is_empty()))
    }
}
