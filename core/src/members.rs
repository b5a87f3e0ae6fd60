//! Members of a tenant's team, their portal sessions and OIDC login attempts.
//!
//! A member is one row of `members`: a tenant, a role (owner, staff, auditor) and a login
//! kept only as a blind index (the tenant key's `blind(BlindKind::Login, ..)`) and a sealed
//! value (the tenant key's `seal`, bound to the row). A login is one of:
//!
//! - an OIDC identity, `iss` + `sub` (the stable identifier OIDC promises);
//! - an invited e-mail address, matched once, at the member's first login, when the ID
//!   token says the address is verified; the row is then re-bound to the OIDC identity;
//! - the local operator of the embedded default (one-time login link, no provider).
//!
//! Because blind indexes are per tenant (no key links a login across tenants), finding the
//! tenants of a login computes its blind index under each active tenant's key: O(tenants)
//! keyed hashes and cached key look-ups, or one when the caller names the tenant.
//!
//! Sessions and login attempts store only BLAKE3 digests of the random secrets the browser
//! holds. A login inserts its session and its `MEMBER_LOGIN` ledger draft in one
//! transaction; a role change and its `MEMBER_ROLE_CHANGED` draft likewise.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, RefKind, Reference};

use crate::audit;
use crate::crypto::{BlindKind, TenantKey};
use crate::db::schema::{members, tenants};
use crate::db::schema_auth::{login_attempts, sessions};
use crate::db::{Conn, Tx, is_unique_violation, now_micros};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{MemberId, TenantId};
use crate::store::Store;

/// What a member may do. Stored as its lower-case name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the tenant: settings, members, everything staff and auditors may do.
    Owner,
    /// Works the inbox: conversations, leads, follow-ups.
    Staff,
    /// Reads the ledger and records of processing; changes nothing.
    Auditor,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Staff => "staff",
            Self::Auditor => "auditor",
        }
    }

    /// The ledger's role code (`AttrKey::ROLE`: 1 owner, 3 agent, 5 auditor).
    pub fn ledger_code(self) -> u32 {
        match self {
            Self::Owner => 1,
            Self::Staff => 3,
            Self::Auditor => 5,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "owner" => Ok(Self::Owner),
            "staff" => Ok(Self::Staff),
            "auditor" => Ok(Self::Auditor),
            _ => Err(CoreError::Invalid {
                field: "role",
                reason: "expected owner, staff or auditor".into(),
            }),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a member logs in. Never printed: `Debug` says only which kind.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Login {
    /// An OIDC identity: the provider's issuer URL and the subject it assigned.
    Oidc {
        /// The issuer, exactly as discovered.
        issuer: String,
        /// The `sub` claim.
        subject: String,
        /// The verified e-mail address the member was invited with, kept (sealed) after
        /// the invitation was bound to this identity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
    /// An invited e-mail address, not yet bound to an OIDC identity.
    Email {
        /// The address (compared in lower case).
        email: String,
    },
    /// The local operator of the embedded default (one-time login link).
    Operator,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Oidc { .. } => "Login::Oidc(<redacted>)",
            Self::Email { .. } => "Login::Email(<redacted>)",
            Self::Operator => "Login::Operator",
        })
    }
}

impl Login {
    /// An invitation by e-mail address (trimmed, lower case).
    pub fn email(address: &str) -> Result<Self, CoreError> {
        let email = address.trim().to_lowercase();
        let ok = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
        if ok {
            Ok(Self::Email { email })
        } else {
            Err(CoreError::Invalid {
                field: "login",
                reason: "expected an e-mail address".into(),
            })
        }
    }

    /// An OIDC identity.
    pub fn oidc(issuer: &str, subject: &str) -> Self {
        Self::Oidc {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            email: None,
        }
    }

    /// The string the blind index is computed over; one namespace per kind, so an e-mail
    /// address can never collide with a subject.
    fn index_key(&self) -> String {
        match self {
            Self::Oidc {
                issuer, subject, ..
            } => format!("oidc\n{issuer}\n{subject}"),
            Self::Email { email } => format!("email\n{email}"),
            Self::Operator => "operator\n".to_owned(),
        }
    }

    fn blind(&self, key: &TenantKey) -> Vec<u8> {
        key.blind(BlindKind::Login, &self.index_key()).to_vec()
    }
}

/// Who is logging in, as the authentication layer established it.
#[derive(Clone)]
pub enum Identity {
    /// An OIDC identity from a verified ID token or access token.
    Oidc {
        /// The issuer.
        issuer: String,
        /// The subject.
        subject: String,
        /// The e-mail address, only when the provider says it is verified.
        verified_email: Option<String>,
    },
    /// The local operator (one-time login link).
    Operator,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Oidc { .. } => "Identity::Oidc(<redacted>)",
            Self::Operator => "Identity::Operator",
        })
    }
}

/// A member of one tenant, with the role in force now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The member.
    pub member_id: MemberId,
    /// Their tenant.
    pub tenant_id: TenantId,
    /// Their role.
    pub role: Role,
}

/// A login attempt taken back at the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    /// BLAKE3 of the browser-binding secret.
    pub binding_hash: Vec<u8>,
    /// The tenant asked for at `/auth/login`, if any.
    pub tenant_hint: Option<String>,
    /// Expiry, unix micros.
    pub expires_at: i64,
}

/// The members, sessions and login-attempts repository. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Members {
    store: Store,
}

pub(crate) fn login_context(tenant: &str, member: &str) -> String {
    format!("members.login_ct|{tenant}|{member}")
}

impl Members {
    /// Wraps the store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Adds a member to `tenant` with `role`, ledgered as a role grant. A login already
    /// a member of this tenant is a `Conflict`.
    pub async fn invite_member(
        &self,
        tenant: TenantId,
        login: &Login,
        role: Role,
        actor: Actor,
    ) -> Result<MemberId, CoreError> {
        let key = self.store.tenant_key(tenant).await?;
        let mut tx = self.store.db.begin().await?;
        let id = insert_member(&mut tx, tenant, &key, login, role).await?;
        audit::enqueue(&mut tx, &role_draft(tenant, id, role, actor)).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Changes a member's role, ledgered in the same transaction. `NotFound` for a member
    /// of another tenant; `Conflict` when it would demote the tenant's last owner.
    pub async fn set_role(
        &self,
        tenant: TenantId,
        member: MemberId,
        role: Role,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let mid = member.to_string();
        let mut tx = self.store.db.begin().await?;
        if role != Role::Owner {
            crate::team::keep_an_owner(&mut tx, &tid, &mid).await?;
        }
        let n = db_run!(tx, |c| diesel::update(
            members::table
                .filter(members::id.eq(&mid))
                .filter(members::tenant_id.eq(&tid))
        )
        .set(members::role.eq(role.as_str()))
        .execute(c)
        .await)?;
        if n == 0 {
            return Err(CoreError::NotFound { what: "member" });
        }
        audit::enqueue(&mut tx, &role_draft(tenant, member, role, actor)).await?;
        tx.commit().await
    }

    /// One member of `tenant`; `NotFound` for a member of another tenant.
    pub async fn member(
        &self,
        tenant: TenantId,
        member: MemberId,
    ) -> Result<Membership, CoreError> {
        let mut c = self.store.db.conn().await?;
        membership_in(&mut c, tenant, member)
            .await?
            .ok_or(CoreError::NotFound { what: "member" })
    }

    /// The memberships of `login`, oldest tenant first; only `tenant` when given. Tenants
    /// whose key is shredded are skipped.
    pub async fn find_members_for_login(
        &self,
        login: &Login,
        tenant: Option<TenantId>,
    ) -> Result<Vec<Membership>, CoreError> {
        let candidates = self.blinds_for(&[login], tenant).await?;
        let mut c = self.store.db.conn().await?;
        let mut out = Vec::new();
        for (tid, blinds) in candidates {
            if let Some(m) = find_by_blind(&mut c, &tid, &blinds[0]).await? {
                out.push(m.0);
            }
        }
        Ok(out)
    }

    /// Starts a portal session: resolves `who` to a membership (binding an e-mail
    /// invitation to the OIDC identity on its first use; creating the operator member of
    /// the embedded default), inserts the session row and the `MEMBER_LOGIN` ledger draft in
    /// one transaction. `NotFound { what: "member" }` when `who` is no member.
    pub async fn start_session(
        &self,
        who: &Identity,
        tenant: Option<TenantId>,
        session_hash: &[u8; 32],
        expires_at: i64,
    ) -> Result<Membership, CoreError> {
        let (logins, invite) = identity_logins(who);
        let refs: Vec<&Login> = logins.iter().collect();
        let candidates = self.blinds_for(&refs, tenant).await?;
        let mut tx = self.store.db.begin().await?;
        let mut found = None;
        for (tid, blinds) in &candidates {
            if let Some(m) = find_by_blind(&mut tx, tid, &blinds[0]).await? {
                found = Some(m.0);
                break;
            }
            if let (Some(blind), Some(bound)) = (blinds.get(1), invite.as_ref()) {
                if let Some((m, _)) = find_by_blind(&mut tx, tid, blind).await? {
                    // First login of an invited address: bind the row to the identity.
                    let key = self.store.tenant_key(m.tenant_id).await?;
                    let mid = m.member_id.to_string();
                    let ct = seal_login(&key, tid, &mid, bound)?;
                    let new_blind = bound.blind(&key);
                    db_run!(tx, |c| diesel::update(members::table.find(&mid))
                        .set((
                            members::login_blind.eq(&new_blind),
                            members::login_ct.eq(&ct)
                        ))
                        .execute(c)
                        .await)?;
                    found = Some(m);
                    break;
                }
            }
        }
        if found.is_none() && matches!(who, Identity::Operator) {
            // The embedded default's operator is an owner of the tenant they log into.
            if let Some((tid, _)) = <[_]>::first(&candidates) {
                let tenant: TenantId = tid.parse()?;
                let key = self.store.tenant_key(tenant).await?;
                let id =
                    insert_member(&mut tx, tenant, &key, &Login::Operator, Role::Owner).await?;
                audit::enqueue(&mut tx, &role_draft(tenant, id, Role::Owner, Actor::System))
                    .await?;
                found = Some(Membership {
                    member_id: id,
                    tenant_id: tenant,
                    role: Role::Owner,
                });
            }
        }
        let m = found.ok_or(CoreError::NotFound { what: "member" })?;
        let (tid, mid) = (m.tenant_id.to_string(), m.member_id.to_string());
        let now = now_micros();
        db_run!(tx, |c| diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(session_hash.as_slice()),
                sessions::member_id.eq(&mid),
                sessions::tenant_id.eq(&tid),
                sessions::created_at.eq(now),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(c)
            .await)?;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::MEMBER_LOGIN, Actor::Member(m.member_id.bytes()))
                .tenant(m.tenant_id.bytes())
                .reference(Reference::id(RefKind::MEMBER, m.member_id.bytes())),
        )
        .await?;
        tx.commit().await?;
        Ok(m)
    }

    /// The membership behind a live session (role as it is now), `None` when the session is
    /// unknown, ended or expired.
    pub async fn session(&self, session_hash: &[u8; 32]) -> Result<Option<Membership>, CoreError> {
        let now = now_micros();
        let mut c = self.store.db.conn().await?;
        let row: Option<(String, String)> = db_run!(c, |c| sessions::table
            .filter(sessions::id_hash.eq(session_hash.as_slice()))
            .filter(sessions::expires_at.gt(now))
            .select((sessions::member_id, sessions::tenant_id))
            .first(c)
            .await
            .optional())?;
        let Some((mid, tid)) = row else {
            return Ok(None);
        };
        membership_in(&mut c, tid.parse()?, mid.parse()?).await
    }

    /// Ends a session (its row is deleted). Returns whether it existed.
    pub async fn end_session(&self, session_hash: &[u8; 32]) -> Result<bool, CoreError> {
        let mut c = self.store.db.conn().await?;
        let n = db_run!(c, |c| diesel::delete(
            sessions::table.filter(sessions::id_hash.eq(session_hash.as_slice()))
        )
        .execute(c)
        .await)?;
        Ok(n > 0)
    }

    /// How many sessions exist (for tests and metrics; no personal data).
    pub async fn session_count(&self) -> Result<i64, CoreError> {
        let mut c = self.store.db.conn().await?;
        Ok(db_run!(c, |c| sessions::table.count().get_result(c).await)?)
    }

    /// Deletes expired sessions and login attempts; returns how many rows went.
    pub async fn purge_expired(&self) -> Result<usize, CoreError> {
        let now = now_micros();
        let mut c = self.store.db.conn().await?;
        let a = db_run!(c, |c| diesel::delete(
            sessions::table.filter(sessions::expires_at.le(now))
        )
        .execute(c)
        .await)?;
        let b = db_run!(c, |c| diesel::delete(
            login_attempts::table.filter(login_attempts::expires_at.le(now))
        )
        .execute(c)
        .await)?;
        Ok(a + b)
    }

    /// Records an authorization request in flight.
    pub async fn insert_login_attempt(
        &self,
        state_hash: &[u8; 32],
        binding_hash: &[u8; 32],
        tenant_hint: Option<&str>,
        expires_at: i64,
    ) -> Result<(), CoreError> {
        let now = now_micros();
        let mut c = self.store.db.conn().await?;
        db_run!(c, |c| diesel::insert_into(login_attempts::table)
            .values((
                login_attempts::state_hash.eq(state_hash.as_slice()),
                login_attempts::binding_hash.eq(binding_hash.as_slice()),
                login_attempts::tenant_hint.eq(tenant_hint),
                login_attempts::created_at.eq(now),
                login_attempts::expires_at.eq(expires_at),
            ))
            .execute(c)
            .await)?;
        Ok(())
    }

    /// Takes (deletes and returns) the login attempt of a `state`: each attempt is used
    /// once, so a replayed callback finds nothing. Expired attempts are returned too; the
    /// caller refuses them.
    pub async fn take_login_attempt(
        &self,
        state_hash: &[u8; 32],
    ) -> Result<Option<LoginAttempt>, CoreError> {
        let mut c = self.store.db.conn().await?;
        let row: Option<(Vec<u8>, Option<String>, i64)> = db_run!(c, |c| diesel::delete(
            login_attempts::table.filter(login_attempts::state_hash.eq(state_hash.as_slice()))
        )
        .returning((
            login_attempts::binding_hash,
            login_attempts::tenant_hint,
            login_attempts::expires_at
        ))
        .get_result(c)
        .await
        .optional())?;
        Ok(
            row.map(|(binding_hash, tenant_hint, expires_at)| LoginAttempt {
                binding_hash,
                tenant_hint,
                expires_at,
            }),
        )
    }

    /// The membership of an OIDC identity presenting an access token (no e-mail binding,
    /// no session): the first tenant, or `tenant` when given.
    pub async fn member_for_subject(
        &self,
        issuer: &str,
        subject: &str,
        tenant: Option<TenantId>,
    ) -> Result<Option<Membership>, CoreError> {
        Ok(self
            .find_members_for_login(&Login::oidc(issuer, subject), tenant)
            .await?
            .into_iter()
            .next())
    }

    /// For each candidate tenant (active, key not shredded; only `only` when given), the
    /// blind index of each login under that tenant's key, in the order given.
    async fn blinds_for(
        &self,
        logins: &[&Login],
        only: Option<TenantId>,
    ) -> Result<Vec<(String, Vec<Vec<u8>>)>, CoreError> {
        let tenant_ids: Vec<String> = {
            let mut c = self.store.db.conn().await?;
            match only {
                Some(t) => {
                    let tid = t.to_string();
                    db_run!(c, |c| tenants::table
                        .filter(tenants::id.eq(&tid))
                        .filter(tenants::status.eq("active"))
                        .select(tenants::id)
                        .load(c)
                        .await)?
                }
                None => db_run!(c, |c| tenants::table
                    .filter(tenants::status.eq("active"))
                    .order((tenants::created_at, tenants::id))
                    .select(tenants::id)
                    .load(c)
                    .await)?,
            }
        };
        let mut out = Vec::with_capacity(tenant_ids.len());
        for tid in tenant_ids {
            let key = match self.store.keys.tenant_key(&tid).await {
                Ok(k) => k,
                Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let blinds = logins.iter().map(|l| l.blind(&key)).collect();
            out.push((tid, blinds));
        }
        Ok(out)
    }
}

/// The logins to look up for `who` (its own first, then an invitation), and the login an
/// invitation is re-bound to.
fn identity_logins(who: &Identity) -> (Vec<Login>, Option<Login>) {
    match who {
        Identity::Oidc {
            issuer,
            subject,
            verified_email,
        } => {
            let own = Login::oidc(issuer, subject);
            match verified_email.as_deref().map(Login::email) {
                Some(Ok(invite)) => {
                    let email = match &invite {
                        Login::Email { email } => Some(email.clone()),
                        _ => None,
                    };
                    let bound = Login::Oidc {
                        issuer: issuer.clone(),
                        subject: subject.clone(),
                        email,
                    };
                    (vec![own, invite], Some(bound))
                }
                _ => (vec![own], None),
            }
        }
        Identity::Operator => (vec![Login::Operator], None),
    }
}

fn seal_login(key: &TenantKey, tid: &str, mid: &str, login: &Login) -> Result<Vec<u8>, CoreError> {
    let bytes = serde_json::to_vec(login).map_err(|e| CoreError::Internal(e.to_string()))?;
    key.seal(&login_context(tid, mid), &bytes)
}

async fn insert_member(
    tx: &mut Tx,
    tenant: TenantId,
    key: &TenantKey,
    login: &Login,
    role: Role,
) -> Result<MemberId, CoreError> {
    let id = MemberId::new();
    let (tid, mid) = (tenant.to_string(), id.to_string());
    let blind = login.blind(key);
    let ct = seal_login(key, &tid, &mid, login)?;
    let now = now_micros();
    let res = db_run!(tx, |c| diesel::insert_into(members::table)
        .values((
            members::id.eq(&mid),
            members::tenant_id.eq(&tid),
            members::login_blind.eq(&blind),
            members::login_ct.eq(&ct),
            members::role.eq(role.as_str()),
            members::created_at.eq(now),
        ))
        .execute(c)
        .await);
    match res {
        Ok(_) => Ok(id),
        Err(e) if is_unique_violation(&e) => Err(CoreError::Conflict { what: "member" }),
        Err(e) => Err(e.into()),
    }
}

fn role_draft(tenant: TenantId, member: MemberId, role: Role, actor: Actor) -> EntryDraft {
    EntryDraft::new(EventKind::MEMBER_ROLE_CHANGED, actor)
        .tenant(tenant.bytes())
        .reference(Reference::id(RefKind::MEMBER, member.bytes()))
        .attr(AttrKey::ROLE, AttrValue::Code(role.ledger_code()))
}

async fn find_by_blind(
    c: &mut Conn,
    tid: &str,
    blind: &[u8],
) -> Result<Option<(Membership, Vec<u8>)>, CoreError> {
    let row: Option<(String, String, Vec<u8>)> = db_run!(c, |c| members::table
        .filter(members::tenant_id.eq(tid))
        .filter(members::login_blind.eq(blind))
        .select((members::id, members::role, members::login_ct))
        .first(c)
        .await
        .optional())?;
    row.map(|(mid, role, ct)| {
        Ok((
            Membership {
                member_id: mid.parse()?,
                tenant_id: tid.parse()?,
                role: role.parse()?,
            },
            ct,
        ))
    })
    .transpose()
}

async fn membership_in(
    c: &mut Conn,
    tenant: TenantId,
    member: MemberId,
) -> Result<Option<Membership>, CoreError> {
    let (tid, mid) = (tenant.to_string(), member.to_string());
    let role: Option<String> = db_run!(c, |c| members::table
        .filter(members::id.eq(&mid))
        .filter(members::tenant_id.eq(&tid))
        .select(members::role)
        .first(c)
        .await
        .optional())?;
    role.map(|r| {
        Ok(Membership {
            member_id: member,
            tenant_id: tenant,
            role: r.parse()?,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in [Role::Owner, Role::Staff, Role::Auditor] {
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(r));
        }
        assert!("admin".parse::<Role>().is_err());
    }

    #[test]
    fn login_namespaces_never_collide_and_debug_redacts() {
        let e = Login::email("  Priya@Example.COM ").ok();
        assert_eq!(
            e,
            Some(Login::Email {
                email: "priya@example.com".into()
            })
        );
        assert!(Login::email("not-an-address").is_err());
        let o = Login::oidc("https://id.example", "priya@example.com");
        assert_ne!(
            o.index_key(),
            Login::Email {
                email: "priya@example.com".into()
            }
            .index_key()
        );
        assert!(!format!("{o:?}").contains("priya"));
        assert!(!format!("{e:?}").contains("priya"));
    }
}
