//! Storage, keys and crypto-shredding on both backends (issue 2).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_core::CoreError;
use smartchat_core::crypto::{BlindKind, MasterKey};
use smartchat_core::db::Schema;
use smartchat_core::db::schema::{keystore, messages, subjects, tenants};
use smartchat_core::db_run;
use smartchat_core::ids::{Handle, PhoneNumberId, SubjectId, TenantId};
use smartchat_core::store::{NewMessage, NewTenant, Profile, Store, SubjectContact};
use smartchat_ledger::Actor;
use smartchat_tests::{TestEnv, both_backends};

fn new_tenant(handle: &str, pnid: Option<&str>) -> NewTenant {
    NewTenant {
        handle: handle.parse::<Handle>().unwrap(),
        profile: Profile(serde_json::json!({
            "name": format!("Business {handle}"),
            "staff": [{"name": "Priya Staffname", "role": "stylist"}],
        })),
        phone_number_id: pnid.map(|p| p.parse::<PhoneNumberId>().unwrap()),
        access_token: pnid.map(|_| smartchat_core::config::Secret::new("EAAG-token-secret")),
    }
}

fn contact(wa: &str, name: &str) -> SubjectContact {
    SubjectContact {
        wa_id: Some(wa.to_owned()),
        bsuid: None,
        phone: None,
        profile_name: Some(name.to_owned()),
    }
}

/// Stores `texts` as inbound messages of a new subject; returns the subject.
async fn seed_subject(
    store: &Store,
    tenant: TenantId,
    wa: &str,
    name: &str,
    texts: &[&str],
) -> SubjectId {
    let key = store.tenant_key(tenant).await.unwrap();
    let pnid: PhoneNumberId = "1000001".parse().unwrap();
    let mut tx = store.db.begin().await.unwrap();
    let (sid, _) = store
        .upsert_subject(&mut tx, tenant, &key, &contact(wa, name))
        .await
        .unwrap();
    let conv = store
        .conversation_for(&mut tx, tenant, sid, &pnid)
        .await
        .unwrap();
    for (i, t) in texts.iter().enumerate() {
        let wamid = format!(
            "wamid.HBgM{}",
            blake3::hash(format!("{wa}/{i}").as_bytes()).to_hex()
        );
        store
            .insert_message(
                &mut tx,
                tenant,
                &key,
                sid,
                conv,
                &NewMessage {
                    direction: "in",
                    kind: "text",
                    status: "received",
                    wamid: Some(&wamid),
                    body: Some(t),
                    author: "customer",
                },
                1_700_000_000_000_000 + i as i64,
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    sid
}

async fn tenant_round_trip(env: TestEnv) {
    let s = &env.store;
    let id = s
        .create_tenant(new_tenant("glow-salon", Some("1000001")))
        .await
        .unwrap();
    let view = s.tenant(id).await.unwrap();
    assert_eq!(view.summary.handle, "glow-salon");
    assert_eq!(view.summary.name.as_deref(), Some("Business glow-salon"));
    assert_eq!(view.summary.phone_number_ids, vec!["1000001".to_owned()]);
    assert_eq!(view.profile.0["staff"][0]["name"], "Priya Staffname");
    assert_eq!(
        s.tenant_by_handle(&"glow-salon".parse().unwrap())
            .await
            .unwrap(),
        id
    );
    assert_eq!(
        s.tenant_for_number(&"1000001".parse().unwrap())
            .await
            .unwrap(),
        id
    );
    let list = s.list_tenants().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(matches!(
        s.tenant(TenantId::new()).await,
        Err(CoreError::NotFound { what: "tenant" })
    ));
    assert!(matches!(
        s.tenant_for_number(&"999".parse().unwrap()).await,
        Err(CoreError::NotFound {
            what: "phone number"
        })
    ));
}

async fn failed_create_writes_nothing(env: TestEnv) {
    let s = &env.store;
    s.create_tenant(new_tenant("first", Some("1000001")))
        .await
        .unwrap();
    // Same handle: conflict.
    let e = s
        .create_tenant(new_tenant("first", None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::Conflict {
                what: "tenant handle"
            }
        ),
        "{e}"
    );
    // New handle but a phone number id already connected: the tenant row must roll back too.
    let e = s
        .create_tenant(new_tenant("second", Some("1000001")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::Conflict {
                what: "phone number id"
            }
        ),
        "{e}"
    );
    let list = s.list_tenants().await.unwrap();
    assert_eq!(
        list.iter().map(|t| t.handle.as_str()).collect::<Vec<_>>(),
        vec!["first"]
    );
    // ... and no orphan key was left in the key store.
    assert_eq!(s.keys.list_tenant_keys().await.unwrap().len(), 1);
    // The ledger holds entries for the one tenant that exists, none for the failures.
    let mut c = s.db.conn().await.unwrap();
    let pending: i64 = db_run!(c, |c| smartchat_core::db::schema::ledger_pending::table
        .count()
        .get_result(c)
        .await)
    .unwrap();
    assert_eq!(
        pending, 2,
        "tenant_created + key_created of the first tenant only"
    );
}

async fn dropped_transaction_rolls_back(env: TestEnv) {
    let s = &env.store;
    let id = s.create_tenant(new_tenant("rollback", None)).await.unwrap();
    let tid = id.to_string();
    {
        let mut tx = s.db.begin().await.unwrap();
        db_run!(tx, |c| diesel::update(tenants::table.find(&tid))
            .set(tenants::status.eq("terminated"))
            .execute(c)
            .await)
        .unwrap();
        // dropped without commit
    }
    assert_eq!(s.tenant(id).await.unwrap().summary.status, "active");
    // The pool still works afterwards.
    assert_eq!(s.list_tenants().await.unwrap().len(), 1);
}

async fn subjects_are_found_by_blind_index_and_linked(env: TestEnv) {
    let s = &env.store;
    let t = s
        .create_tenant(new_tenant("blind", Some("1000001")))
        .await
        .unwrap();
    let key = s.tenant_key(t).await.unwrap();
    let mut tx = s.db.begin().await.unwrap();
    let (a, created) = s
        .upsert_subject(&mut tx, t, &key, &contact("919800000001", "Asha"))
        .await
        .unwrap();
    assert!(created);
    // Meta later sends both ids: linked to the same subject.
    let both = SubjectContact {
        wa_id: Some("919800000001".into()),
        bsuid: Some("IN.1234567890abcdef".into()),
        phone: None,
        profile_name: Some("Asha K".into()),
    };
    let (a2, created2) = s.upsert_subject(&mut tx, t, &key, &both).await.unwrap();
    assert_eq!(a, a2);
    assert!(!created2);
    // Then only the BSUID (a user who adopted a username): still the same subject.
    let only_bsuid = SubjectContact {
        bsuid: Some("IN.1234567890abcdef".into()),
        ..SubjectContact::default()
    };
    let (a3, _) = s
        .upsert_subject(&mut tx, t, &key, &only_bsuid)
        .await
        .unwrap();
    assert_eq!(a, a3);
    let e = s
        .upsert_subject(&mut tx, t, &key, &SubjectContact::default())
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::Invalid { .. }));
    tx.commit().await.unwrap();
    assert_eq!(
        s.find_subject(t, BlindKind::WaId, "919800000001")
            .await
            .unwrap(),
        Some(a)
    );
    assert_eq!(
        s.find_subject(t, BlindKind::Bsuid, "IN.1234567890abcdef")
            .await
            .unwrap(),
        Some(a)
    );
    assert_eq!(
        s.find_subject(t, BlindKind::Phone, "919800000001")
            .await
            .unwrap(),
        Some(a)
    );
    assert_eq!(
        s.find_subject(t, BlindKind::WaId, "919800000002")
            .await
            .unwrap(),
        None
    );
    let c = s.subject_contact(t, a).await.unwrap();
    assert_eq!(c.bsuid.as_deref(), Some("IN.1234567890abcdef"));
    assert_eq!(c.profile_name.as_deref(), Some("Asha K"));
    // The same wa_id at another tenant is another subject, under another blind key.
    let t2 = s.create_tenant(new_tenant("other", None)).await.unwrap();
    assert_eq!(
        s.find_subject(t2, BlindKind::WaId, "919800000001")
            .await
            .unwrap(),
        None
    );
}

async fn messages_are_sealed_and_duplicates_refused(env: TestEnv) {
    let s = &env.store;
    let t = s
        .create_tenant(new_tenant("sealed", Some("1000001")))
        .await
        .unwrap();
    let marker = "zanzibarmarker7731";
    let sid = seed_subject(
        s,
        t,
        "919800000003",
        "Ravi Plainname",
        &[&format!("hello {marker}"), "second"],
    )
    .await;
    let msgs = s.subject_messages(t, sid).await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0].body.as_deref(),
        Some(format!("hello {marker}").as_str())
    );
    // The same wamid again is a conflict and the transaction leaves nothing behind.
    let key = s.tenant_key(t).await.unwrap();
    let mut tx = s.db.begin().await.unwrap();
    let conv = s
        .conversation_for(&mut tx, t, sid, &"1000001".parse().unwrap())
        .await
        .unwrap();
    let e = s
        .insert_message(
            &mut tx,
            t,
            &key,
            sid,
            conv,
            &NewMessage {
                direction: "in",
                kind: "text",
                status: "received",
                wamid: Some(&format!(
                    "wamid.HBgM{}",
                    blake3::hash(b"919800000003/0").to_hex()
                )),
                body: Some("dup"),
                author: "customer",
            },
            1,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::Conflict { what: "message" }));
    drop(tx);
    assert_eq!(s.subject_messages(t, sid).await.unwrap().len(), 2);
    // A ciphertext moved to another row does not open (context-bound).
    let mut c = s.db.conn().await.unwrap();
    let rows: Vec<(String, Option<Vec<u8>>)> = db_run!(c, |c| messages::table
        .select((messages::id, messages::body_ct))
        .order(messages::created_at)
        .load(c)
        .await)
    .unwrap();
    let (id0, ct0) = (&rows[0].0, rows[0].1.clone());
    let id1 = rows[1].0.clone();
    db_run!(c, |c| diesel::update(messages::table.find(&id1))
        .set(messages::body_ct.eq(&ct0))
        .execute(c)
        .await)
    .unwrap();
    assert!(
        matches!(s.subject_messages(t, sid).await, Err(CoreError::Crypto(_))),
        "moved ciphertext must not open"
    );
    assert_ne!(id0, &id1);
    // No plaintext in the database files or a dump.
    smartchat_tests::assert_no_plaintext(
        &env,
        &[
            marker,
            "Ravi Plainname",
            "Priya Staffname",
            "919800000003",
            "EAAG-token-secret",
        ],
    );
}

async fn shredded_subject_fails_closed_and_dump_cannot_recover(env: TestEnv) {
    let s = &env.store;
    let t = s
        .create_tenant(new_tenant("shred", Some("1000001")))
        .await
        .unwrap();
    let gone_text = "secret-of-the-shredded-subject-4411";
    let kept_text = "message-of-a-kept-subject-8822";
    let gone = seed_subject(s, t, "919800000010", "Gone Person", &[gone_text, "more"]).await;
    let kept = seed_subject(s, t, "919800000011", "Kept Person", &[kept_text]).await;
    s.shred_subject(t, gone, Actor::System).await.unwrap();
    // Idempotent.
    s.shred_subject(t, gone, Actor::System).await.unwrap();
    assert!(matches!(
        s.subject_messages(t, gone).await,
        Err(CoreError::Shredded {
            what: "subject key"
        })
    ));
    assert!(matches!(
        s.subject_contact(t, gone).await,
        Err(CoreError::Shredded { .. })
    ));
    assert!(matches!(
        s.shred_subject(t, SubjectId::new(), Actor::System).await,
        Err(CoreError::NotFound { .. })
    ));
    assert_eq!(
        s.subject_messages(t, kept).await.unwrap()[0]
            .body
            .as_deref(),
        Some(kept_text)
    );

    // The attacker holds a full dump of both databases and the master key.
    let recovered = smartchat_tests::recover_with_dump_and_master(&env).await;
    assert!(
        recovered.iter().any(|p| p.contains(kept_text)),
        "the attack works on data that was not shredded"
    );
    assert!(
        !recovered.iter().any(|p| p.contains(gone_text)),
        "shredded text recovered"
    );
    // And a fresh process with the master key reads the same: shredded.
    let again = env.reopen(&env.master_secret).await.unwrap();
    assert!(matches!(
        again.subject_messages(t, gone).await,
        Err(CoreError::Shredded { .. })
    ));
}

/// Everything an attacker with both databases and the master key can decrypt: every tenant
/// identity, every subject key under it, every message body under those.
async fn shredded_tenant_fails_closed(env: TestEnv) {
    let s = &env.store;
    let t = s
        .create_tenant(new_tenant("gone-tenant", Some("1000001")))
        .await
        .unwrap();
    let other = s.create_tenant(new_tenant("stays", None)).await.unwrap();
    let sid = seed_subject(
        s,
        t,
        "919800000020",
        "Tenant Customer",
        &["tenant-level-secret-5151"],
    )
    .await;
    s.shred_tenant(t, Actor::System).await.unwrap();
    assert!(matches!(
        s.tenant(t).await,
        Err(CoreError::Shredded { what: "tenant key" })
    ));
    assert!(matches!(
        s.subject_messages(t, sid).await,
        Err(CoreError::Shredded { what: "tenant key" })
    ));
    let list = s.list_tenants().await.unwrap();
    let row = list.iter().find(|x| x.id == t).unwrap();
    assert_eq!(row.name, None, "a shredded tenant's name cannot be shown");
    assert!(s.tenant(other).await.is_ok());
    // Several keys at once (the webhook's batches) answer as one at a time does.
    let unknown = smartchat_core::ids::TenantId::new().to_string();
    let mut many = s
        .keys
        .tenant_keys(&[t.to_string(), other.to_string(), unknown.clone()])
        .await
        .unwrap();
    assert!(matches!(
        many.remove(&t.to_string()),
        Some(Err(CoreError::Shredded { what: "tenant key" }))
    ));
    assert!(matches!(
        many.remove(&unknown),
        Some(Err(CoreError::NotFound { what: "tenant key" }))
    ));
    let theirs = many.remove(&other.to_string()).unwrap().unwrap();
    assert_eq!(
        theirs.recipient(),
        s.tenant_key(other).await.unwrap().recipient(),
        "the same key as the one-at-a-time lookup"
    );
    let recovered = smartchat_tests::recover_with_dump_and_master(&env).await;
    assert!(
        !recovered
            .iter()
            .any(|p| p.contains("tenant-level-secret-5151"))
    );
}

async fn wrong_master_key_is_refused_and_changes_nothing(env: TestEnv) {
    let s = &env.store;
    let t = s.create_tenant(new_tenant("mkey", None)).await.unwrap();
    let wrong = smartchat_tests::secret_text(&MasterKey::generate());
    let e = env.reopen(&wrong).await.unwrap_err();
    assert!(matches!(e, CoreError::MasterKeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("master key does not match"));
    // Still opens with the right key and reads everything.
    let again = env.reopen(&env.master_secret).await.unwrap();
    assert_eq!(again.tenant(t).await.unwrap().summary.handle, "mkey");
}

async fn rotate_master_rewraps_and_is_atomic(env: TestEnv) {
    let s = &env.store;
    let t1 = s.create_tenant(new_tenant("rot-one", None)).await.unwrap();
    let t2 = s.create_tenant(new_tenant("rot-two", None)).await.unwrap();
    let sid = seed_subject(s, t1, "919800000030", "Rot Person", &["rotation-survives"]).await;
    let old = MasterKey::parse(&env.master_secret).unwrap();
    let ks = s.keys.store().clone();

    // An interrupted rotation: one wrapped identity is unreadable, so the rotation fails
    // half-way; the transaction rolls back and the old key still opens everything.
    let t2s = t2.to_string();
    let mut kc = ks.conn().await.unwrap();
    let good: Vec<u8> = db_run!(kc, |c| keystore::tenant_keys::table
        .find(&t2s)
        .select(keystore::tenant_keys::wrapped_identity.assume_not_null())
        .first(c)
        .await)
    .unwrap();
    db_run!(kc, |c| diesel::update(
        keystore::tenant_keys::table.find(&t2s)
    )
    .set(keystore::tenant_keys::wrapped_identity.eq(Some(b"garbage".to_vec())))
    .execute(c)
    .await)
    .unwrap();
    let new = MasterKey::generate();
    assert!(
        smartchat_core::crypto::keyring::Keyring::rotate_master(&ks, &old, &new)
            .await
            .is_err()
    );
    db_run!(kc, |c| diesel::update(
        keystore::tenant_keys::table.find(&t2s)
    )
    .set(keystore::tenant_keys::wrapped_identity.eq(Some(&good)))
    .execute(c)
    .await)
    .unwrap();
    let reopened = env.reopen(&env.master_secret).await.unwrap();
    assert_eq!(
        reopened.subject_messages(t1, sid).await.unwrap()[0]
            .body
            .as_deref(),
        Some("rotation-survives")
    );

    // A real rotation.
    let n = smartchat_core::crypto::keyring::Keyring::rotate_master(&ks, &old, &new)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(matches!(
        env.reopen(&env.master_secret).await,
        Err(CoreError::MasterKeyMismatch { .. })
    ));
    let with_new = env
        .reopen(&smartchat_tests::secret_text(&new))
        .await
        .unwrap();
    assert_eq!(
        with_new.subject_messages(t1, sid).await.unwrap()[0]
            .body
            .as_deref(),
        Some("rotation-survives")
    );
    assert!(with_new.tenant(t2).await.is_ok());
}

async fn migrations_are_applied_once_and_rerun_is_a_no_op(env: TestEnv) {
    // Already migrated by the harness: nothing pending, a second run applies nothing.
    assert_eq!(
        env.store.db.pending_migrations(Schema::Main).await.unwrap(),
        0
    );
    assert_eq!(env.store.db.migrate(Schema::Main).await.unwrap(), 0);
    assert_eq!(
        env.store
            .keys
            .store()
            .pending_migrations(Schema::Keystore)
            .await
            .unwrap(),
        0
    );
    let mut c = env.store.db.conn().await.unwrap();
    let n: i64 = db_run!(c, |c| subjects::table.count().get_result(c).await).unwrap();
    assert_eq!(n, 0);
}

both_backends!(
    tenant_round_trip,
    failed_create_writes_nothing,
    dropped_transaction_rolls_back,
    subjects_are_found_by_blind_index_and_linked,
    messages_are_sealed_and_duplicates_refused,
    shredded_subject_fails_closed_and_dump_cannot_recover,
    shredded_tenant_fails_closed,
    wrong_master_key_is_refused_and_changes_nothing,
    rotate_master_rewraps_and_is_atomic,
    migrations_are_applied_once_and_rerun_is_a_no_op,
);

/// `keys rotate-master` stages the new key at `<file>.new`, commits the key store, then
/// renames. A crash between the commit and the rename must leave every key readable: the
/// next start finds the staged key, installs it and opens everything.
async fn an_interrupted_master_rotation_is_finished_at_start(env: TestEnv) {
    let s = &env.store;
    let t = s.create_tenant(new_tenant("rotated", None)).await.unwrap();
    let sid = seed_subject(s, t, "919800000040", "Rota Person", &["still-readable"]).await;
    let key_file = env.dir.path().join("master.key");
    let old = MasterKey::parse(&env.master_secret).unwrap();
    smartchat_api::boot::write_key_file(&key_file, &old).unwrap();
    let new = MasterKey::generate();
    smartchat_api::boot::write_key_file(&key_file.with_extension("new"), &new).unwrap();
    smartchat_core::crypto::keyring::Keyring::rotate_master(s.keys.store(), &old, &new)
        .await
        .unwrap();
    // "Crash" here: master.key still holds the old key.
    let mut config = env.config();
    config.master_key = None;
    config.master_key_file = key_file.clone();
    let mut report = smartchat_api::boot::BootReport::default();
    let loaded = smartchat_api::boot::load_master_key(&config, s.keys.store(), &mut report)
        .await
        .unwrap();
    assert_eq!(
        loaded.recipient(),
        new.recipient(),
        "the staged key was installed"
    );
    assert!(!key_file.with_extension("new").exists());
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        MasterKey::parse(&text).unwrap().recipient(),
        new.recipient()
    );
    let reopened = env
        .reopen(&smartchat_tests::secret_text(&new))
        .await
        .unwrap();
    assert_eq!(
        reopened.subject_messages(t, sid).await.unwrap()[0]
            .body
            .as_deref(),
        Some("still-readable")
    );
}

both_backends!(an_interrupted_master_rotation_is_finished_at_start);

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    v: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

const PREPARED_PROBE: &str =
    "SELECT v FROM unnest($1::int4[]) AS u(v) WHERE v > $2 OR v = $2 ORDER BY v";

/// A raw statement of the webhook's batch ([`stmt`]) stays prepared on its PostgreSQL
/// connection after the first run (diesel's `sql_query` text is parsed anew each time), a
/// placeholder may be used again, a statement whose values do not match its placeholders is
/// an error before anything runs, and `begin_planned` plans a transaction's statements for
/// their values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_statements_stay_prepared_on_postgres() {
    use diesel::sql_types::{Array, Integer, Text};
    use smartchat_core::db::prepared::stmt;
    let env = TestEnv::new(smartchat_tests::Backend::Postgres).await;
    let mut conn = env.store.db.conn().await.unwrap();
    let smartchat_core::db::Raw::Pg(c) = conn.raw() else {
        panic!("a PostgreSQL connection")
    };
    let prepared = async |c: &mut diesel_async::AsyncPgConnection| {
        diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1")
            .bind::<Text, _>(PREPARED_PROBE)
            .get_result::<Count>(c)
            .await
            .unwrap()
            .n
    };
    assert_eq!(prepared(c).await, 0);
    for (threshold, want) in [(2, vec![2, 3, 5]), (4, vec![5])] {
        let got: Vec<i32> = stmt(PREPARED_PROBE)
            .bind::<Array<Integer>, _>(vec![1, 5, 3, 2])
            .bind::<Integer, _>(threshold)
            .load::<Value>(c)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.v)
            .collect();
        assert_eq!(got, want);
        assert_eq!(prepared(c).await, 1, "kept prepared, once");
    }
    // The same text through `sql_query` is prepared for its run and closed after it.
    let rows = diesel::sql_query(PREPARED_PROBE.replace("ORDER BY v", "ORDER BY v DESC"))
        .bind::<Array<Integer>, _>(vec![1, 5])
        .bind::<Integer, _>(1)
        .load::<Value>(c)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.v).collect::<Vec<_>>(), vec![5, 1]);
    let uncached: i64 = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE '%v DESC'",
    )
    .get_result::<Count>(c)
    .await
    .unwrap()
    .n;
    assert_eq!(uncached, 0);

    // Values and placeholders that do not match: an error, never a panic or a wrong query.
    let too_few = stmt(PREPARED_PROBE)
        .bind::<Array<Integer>, _>(vec![1])
        .load::<Value>(c)
        .await;
    assert!(
        matches!(&too_few, Err(diesel::result::Error::QueryBuilderError(e)) if e.to_string().contains("more placeholders")),
        "{:?}",
        too_few.err()
    );
    let too_many = stmt("SELECT $1::int4 AS v")
        .bind::<Integer, _>(1)
        .bind::<Integer, _>(2)
        .load::<Value>(c)
        .await;
    assert!(
        matches!(&too_many, Err(diesel::result::Error::QueryBuilderError(e)) if e.to_string().contains("no such placeholder")),
        "{:?}",
        too_many.err()
    );
    let out_of_order = stmt("SELECT $2::int4 AS v, $1::int4")
        .bind::<Integer, _>(1)
        .bind::<Integer, _>(2)
        .load::<Value>(c)
        .await;
    assert!(
        matches!(&out_of_order, Err(diesel::result::Error::QueryBuilderError(e)) if e.to_string().contains("$2 found where $1")),
        "{:?}",
        out_of_order.err()
    );
    // The connection is still usable after those errors.
    assert_eq!(prepared(c).await, 1);
    drop(conn);

    // Transactions that run such statements plan them for their values; others keep
    // PostgreSQL's default, and the setting ends with the transaction.
    #[derive(QueryableByName)]
    struct Mode {
        #[diesel(sql_type = Text)]
        plan_cache_mode: String,
    }
    let mode = async |tx: &mut smartchat_core::db::Tx| {
        let smartchat_core::db::Raw::Pg(c) = tx.raw() else {
            panic!("a PostgreSQL connection")
        };
        diesel::sql_query("SHOW plan_cache_mode")
            .get_result::<Mode>(c)
            .await
            .unwrap()
            .plan_cache_mode
    };
    let mut tx = env.store.db.begin_planned().await.unwrap();
    assert_eq!(mode(&mut tx).await, "force_custom_plan");
    tx.commit().await.unwrap();
    let mut tx = env.store.db.begin().await.unwrap();
    assert_eq!(mode(&mut tx).await, "auto");
    tx.commit().await.unwrap();
}
