//! A tenant's team as its owners manage it (issue 8): the list of members with how each
//! logs in, and removing a member (their sessions end in the same transaction). Inviting
//! is [`Members::invite_member`]; changing a role is [`Members::set_role`].
//!
//! The owner sees the e-mail address a member was invited with: it is the owner's own
//! team, so the sealed login is opened here, and only here. The ledger gets the member id,
//! never a login.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use smartchat_ledger::{Actor, EntryDraft, EventKind, RefKind, Reference};

use crate::audit;
use crate::db::schema::{members, tenants};
use crate::db::schema_auth::sessions;
use crate::db::{Raw, Tx};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{MemberId, TenantId};
use crate::members::{Login, Members, Role, login_context};

/// A member as the team page lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamMember {
    /// The member.
    pub member_id: MemberId,
    /// Their role.
    pub role: Role,
    /// How they log in: `oidc`, `email` (invited, not logged in yet) or `operator`.
    pub login: &'static str,
    /// The address they were invited with (an invitation, or one bound at first login).
    pub email: Option<String>,
    /// When they were added, unix micros.
    pub created_at: i64,
}

/// Locks the tenant row for the rest of the transaction (PostgreSQL `FOR UPDATE`; SQLite's
/// `BEGIN IMMEDIATE` already holds the write lock), so that decisions on a count (two owners
/// removing each other, a number's codes an hour) are taken one at a time.
pub(crate) async fn lock_tenant(tx: &mut Tx, tid: &str) -> Result<(), CoreError> {
    match tx.raw() {
        Raw::Pg(c) => {
            tenants::table
                .find(tid)
                .select(tenants::id)
                .for_update()
                .first::<String>(c)
                .await
                .optional()?;
        }
        Raw::Sqlite(_) => {}
    }
    Ok(())
}

impl Members {
    /// The tenant's members, oldest first, with their login kind and invitation address.
    pub async fn list_members(&self, tenant: TenantId) -> Result<Vec<TeamMember>, CoreError> {
        let tid = tenant.to_string();
        let key = self.store().tenant_key(tenant).await?;
        let mut c = self.store().db.conn().await?;
        let rows: Vec<(String, String, Vec<u8>, i64)> = db_run!(c, |c| members::table
            .filter(members::tenant_id.eq(&tid))
            .order((members::created_at, members::id))
            .select((
                members::id,
                members::role,
                members::login_ct,
                members::created_at
            ))
            .load(c)
            .await)?;
        rows.into_iter()
            .map(|(mid, role, ct, created_at)| {
                let bytes = key.open(&login_context(&tid, &mid), &ct)?;
                let login: Login = serde_json::from_slice(&bytes)
                    .map_err(|_| CoreError::Crypto("member login does not parse".into()))?;
                let (kind, email) = match login {
                    Login::Oidc { email, .. } => ("oidc", email),
                    Login::Email { email } => ("email", Some(email)),
                    Login::Operator => ("operator", None),
                };
                Ok(TeamMember {
                    member_id: mid.parse()?,
                    role: role.parse()?,
                    login: kind,
                    email,
                    created_at,
                })
            })
            .collect()
    }

    /// Removes a member of `tenant` and ends their sessions, ledgered as `member_removed`,
    /// in one transaction. `NotFound` for a member of another tenant; `Conflict` when it
    /// would leave the tenant without an owner.
    pub async fn remove_member(
        &self,
        tenant: TenantId,
        member: MemberId,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let (tid, mid) = (tenant.to_string(), member.to_string());
        let mut tx = self.store().db.begin().await?;
        keep_an_owner(&mut tx, &tid, &mid).await?;
        db_run!(tx, |c| diesel::delete(
            sessions::table.filter(sessions::member_id.eq(&mid))
        )
        .execute(c)
        .await)?;
        db_run!(tx, |c| diesel::delete(
            members::table
                .filter(members::id.eq(&mid))
                .filter(members::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::MEMBER_REMOVED, actor)
                .tenant(tenant.bytes())
                .reference(Reference::id(RefKind::MEMBER, member.bytes())),
        )
        .await?;
        tx.commit().await
    }
}

/// Locks the tenant and checks that `member` (of `tenant`) may stop being an owner:
/// `NotFound` for a member of another tenant, `Conflict` when it is the tenant's last owner.
/// Returns its role now. Removal and demotion both call it inside their transaction.
pub(crate) async fn keep_an_owner(tx: &mut Tx, tid: &str, mid: &str) -> Result<Role, CoreError> {
    lock_tenant(tx, tid).await?;
    let role: Option<String> = db_run!(tx, |c| members::table
        .filter(members::id.eq(mid))
        .filter(members::tenant_id.eq(tid))
        .select(members::role)
        .first(c)
        .await
        .optional())?;
    let role: Role = role
        .ok_or(CoreError::NotFound { what: "member" })?
        .parse()?;
    if role == Role::Owner {
        let owners: i64 = db_run!(tx, |c| members::table
            .filter(members::tenant_id.eq(tid))
            .filter(members::role.eq(Role::Owner.as_str()))
            .count()
            .get_result(c)
            .await)?;
        if owners <= 1 {
            return Err(CoreError::Conflict {
                what: "last owner (a tenant keeps at least one owner)",
            });
        }
    }
    Ok(role)
}
