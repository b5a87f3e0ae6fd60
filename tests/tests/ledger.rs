//! The audit ledger on both backends (issue 3): same-transaction appends, one total order
//! under concurrent writers and sequencers, checkpoints, proofs, export and verification,
//! and no personal data in any entry.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_core::audit;
use smartchat_core::db::schema::{ledger_entries, ledger_pending};
use smartchat_core::db_run;
use smartchat_core::ids::{Handle, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewMessage, NewTenant, Profile, Store, SubjectContact};
use smartchat_ledger::{Actor, EntryDraft, EventKind, VerifyOptions, verify_bundle};
use smartchat_tests::{TestEnv, both_backends, open_store};

async fn ledger_for(store: &Store) -> Ledger {
    Ledger::open(store.db.clone(), &store.keys, "test.smartchat/ledger")
        .await
        .unwrap()
}

async fn tenant(store: &Store, handle: &str) -> TenantId {
    store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Meera Beauty Parlour", "staff": [{"name": "Sunita Verma"}]})),
            phone_number_id: Some("2000001".parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new("EAAG-ledger-token")),
        })
        .await
        .unwrap()
}

async fn verify(ledger: &Ledger) -> smartchat_ledger::Report {
    let (_, _, bytes) = ledger.export(0, None, Vec::new()).await.unwrap();
    let opts = VerifyOptions {
        trusted_key: Some(ledger.vkey()),
        ..VerifyOptions::default()
    };
    verify_bundle(&bytes[..], &opts).unwrap()
}

async fn data_and_entry_commit_together(env: TestEnv) {
    let s = &env.store;
    let ledger = ledger_for(s).await;
    let t = tenant(s, "atomic").await;
    assert_eq!(
        ledger.sequence_all().await.unwrap(),
        2,
        "tenant_created and key_created"
    );
    // A transaction that enqueues an entry and is then dropped leaves neither.
    {
        let mut tx = s.db.begin().await.unwrap();
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::EXPORT_MADE, Actor::System).tenant(t.bytes()),
        )
        .await
        .unwrap();
    }
    assert_eq!(ledger.pending().await.unwrap(), 0);
    assert_eq!(ledger.sequence_all().await.unwrap(), 0);
    assert_eq!(ledger.size().await.unwrap(), 2);
    // A failed data change (duplicate handle) leaves no entry either.
    let dup = s
        .create_tenant(NewTenant {
            handle: "atomic".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "x"})),
            phone_number_id: None,
            access_token: None,
        })
        .await;
    assert!(dup.is_err());
    assert_eq!(ledger.pending().await.unwrap(), 0);
    assert_eq!(ledger.size().await.unwrap(), 2);
}

async fn concurrent_writers_and_sequencers_make_one_order(env: TestEnv) {
    let s = env.store.clone();
    let t = tenant(&s, "busy").await;
    // A second "process": its own pools and keyring on the same databases.
    let other = open_store(
        &env.db_url,
        &env.keystore_url,
        smartchat_core::crypto::MasterKey::parse(&env.master_secret).unwrap(),
    )
    .await
    .unwrap();
    let l1 = ledger_for(&s).await;
    let l2 = ledger_for(&other).await;
    assert_eq!(
        l1.vkey(),
        l2.vkey(),
        "both processes sign with the one key from the key store"
    );
    let writers = 16;
    let per_writer = 15;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = if w % 2 == 0 { s.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let mut tx = store.db.begin().await.unwrap();
                let draft = EntryDraft::new(EventKind::EXPORT_MADE, Actor::System)
                    .tenant(t.bytes())
                    .attr(
                        smartchat_ledger::AttrKey::RECORD_COUNT,
                        smartchat_ledger::AttrValue::U64((w * 1000 + i) as u64),
                    );
                audit::enqueue(&mut tx, &draft).await.unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    // Two sequencers race the writers.
    let seqs: Vec<_> = [l1.clone(), l2.clone()]
        .into_iter()
        .map(|l| {
            tokio::spawn(async move {
                let mut n = 0;
                for _ in 0..40 {
                    n += l.sequence_all().await.unwrap();
                    tokio::task::yield_now().await;
                }
                n
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut sequenced = 0;
    for h in seqs {
        sequenced += h.await.unwrap();
    }
    sequenced += l1.sequence_all().await.unwrap();
    let expected = 2 + writers * per_writer;
    assert_eq!(sequenced, expected, "every draft sequenced exactly once");
    assert_eq!(l1.size().await.unwrap() as usize, expected);
    // Sequence numbers are exactly 0..n: no gaps, no duplicates.
    let mut c = s.db.conn().await.unwrap();
    let seqs: Vec<i64> = db_run!(c, |c| ledger_entries::table
        .select(ledger_entries::seq)
        .order(ledger_entries::seq)
        .load(c)
        .await)
    .unwrap();
    assert_eq!(seqs, (0..expected as i64).collect::<Vec<_>>());
    // Every writer's entries are all there.
    let entries = l1.entries(0, expected as u64).await.unwrap();
    let mut counts: Vec<u64> = entries
        .iter()
        .filter_map(|e| {
            e.entry.draft.attrs.iter().find_map(|(k, v)| match (k, v) {
                (k, smartchat_ledger::AttrValue::U64(x))
                    if *k == smartchat_ledger::AttrKey::RECORD_COUNT =>
                {
                    Some(*x)
                }
                _ => None,
            })
        })
        .collect();
    counts.sort_unstable();
    let mut want: Vec<u64> = (0..writers)
        .flat_map(|w| (0..per_writer).map(move |i| (w * 1000 + i) as u64))
        .collect();
    want.sort_unstable();
    assert_eq!(counts, want);
    // Checkpoints from both processes extend one another; the whole ledger verifies.
    l2.checkpoint().await.unwrap().unwrap();
    let report = verify(&l1).await;
    assert!(report.first_failure.is_none(), "{:?}", report.first_failure);
    assert_eq!(report.entries as usize, expected);
}

async fn checkpoints_proofs_and_export_verify(env: TestEnv) {
    let s = &env.store;
    let ledger = ledger_for(s).await;
    let t = tenant(s, "proofs").await;
    ledger.sequence_all().await.unwrap();
    let cp1 = ledger.checkpoint().await.unwrap().unwrap();
    assert_eq!(cp1.size, 2);
    // Signing again without growth returns the same checkpoint (never two of one size).
    assert_eq!(ledger.checkpoint().await.unwrap().unwrap(), cp1);
    for _ in 0..5 {
        let mut tx = s.db.begin().await.unwrap();
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::SEARCH_PERFORMED, Actor::System).tenant(t.bytes()),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    ledger.sequence_all().await.unwrap();
    let cp2 = ledger.checkpoint().await.unwrap().unwrap();
    assert_eq!(cp2.size, 7);
    let proof = ledger.tlog_proof(3).await.unwrap();
    let text = proof.render();
    assert!(
        text.starts_with("c2sp.org/tlog-proof@v1\nindex 3\n"),
        "{text}"
    );
    let report = verify(&ledger).await;
    assert!(report.first_failure.is_none(), "{:?}", report.first_failure);
    assert_eq!(report.checkpoints, 2);
    // A bundle checked against another key is rejected.
    let (_, _, bytes) = ledger.export(0, None, Vec::new()).await.unwrap();
    let other_key = smartchat_ledger::CheckpointSigner::new(
        "test.smartchat/ledger",
        ed25519_from_seed([7; 32]),
    )
    .unwrap()
    .vkey();
    let bad = verify_bundle(
        &bytes[..],
        &VerifyOptions {
            trusted_key: Some(other_key),
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(bad.first_failure.is_some());
}

fn ed25519_from_seed(seed: [u8; 32]) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

async fn tampering_in_the_database_is_refused_at_checkpoint(env: TestEnv) {
    let s = &env.store;
    let ledger = ledger_for(s).await;
    let t = tenant(s, "tamper").await;
    ledger.sequence_all().await.unwrap();
    ledger.checkpoint().await.unwrap().unwrap();
    let mut tx = s.db.begin().await.unwrap();
    audit::enqueue(
        &mut tx,
        &EntryDraft::new(EventKind::SEARCH_PERFORMED, Actor::System).tenant(t.bytes()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ledger.sequence_all().await.unwrap();
    // Rewrite history under the signed checkpoint of size 2: the stored Merkle hashes of
    // its two leaves and of the node above them (storage indexes 0, 1, 2).
    let mut c = s.db.conn().await.unwrap();
    db_run!(c, |c| diesel::update(
        smartchat_core::db::schema::ledger_tree::table
            .filter(smartchat_core::db::schema::ledger_tree::id.le(2i64))
    )
    .set(smartchat_core::db::schema::ledger_tree::hash.eq(vec![9u8; 32]))
    .execute(c)
    .await)
    .unwrap();
    let e = ledger.checkpoint().await.unwrap_err();
    assert!(
        e.to_string().contains("inconsistent") || e.to_string().contains("not an extension"),
        "{e}"
    );
    // And an entry changed in place is caught by the verifier, naming its sequence number.
    let mut c = s.db.conn().await.unwrap();
    let bytes: Vec<u8> = db_run!(c, |c| ledger_entries::table
        .find(1i64)
        .select(ledger_entries::entry)
        .first(c)
        .await)
    .unwrap();
    // One byte of the entry's time field (bytes 9..17 of the v1 encoding): still well-formed,
    // no longer what was hashed.
    let mut changed = bytes.clone();
    changed[12] ^= 0x01;
    db_run!(c, |c| diesel::update(ledger_entries::table.find(1i64))
        .set(ledger_entries::entry.eq(&changed))
        .execute(c)
        .await)
    .unwrap();
    let (_, _, bundle) = ledger.export(0, Some(2), Vec::new()).await.unwrap();
    let report = verify_bundle(&bundle[..], &VerifyOptions::default()).unwrap();
    let f = report.first_failure.expect("tampering detected");
    assert_eq!(f.seq, Some(1), "{f:?}");
}

async fn entries_hold_no_personal_data(env: TestEnv) {
    let s = &env.store;
    let ledger = ledger_for(s).await;
    let t = tenant(s, "nopii").await;
    let key = s.tenant_key(t).await.unwrap();
    let phone = "919811122233";
    let name = "Kavya Ramaswamy";
    let text = "my card is 4111 1111 1111 1111 please book bridal package";
    let mut tx = s.db.begin().await.unwrap();
    let contact = SubjectContact {
        wa_id: Some(phone.into()),
        bsuid: Some("IN.77aa88bb99cc".into()),
        phone: Some(phone.into()),
        profile_name: Some(name.into()),
    };
    let (sid, _) = s.upsert_subject(&mut tx, t, &key, &contact).await.unwrap();
    let conv = s
        .conversation_for(&mut tx, t, sid, &"2000001".parse().unwrap())
        .await
        .unwrap();
    s.insert_message(
        &mut tx,
        t,
        &key,
        sid,
        conv,
        &NewMessage {
            direction: "in",
            kind: "text",
            status: "received",
            wamid: Some("wamid.HBgMOTE5ODExMTIyMjMzFQIAEhgg"),
            body: Some(text),
            author: "customer",
        },
        1,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    s.shred_subject(t, sid, Actor::System).await.unwrap();
    s.shred_tenant(t, Actor::System).await.unwrap();
    ledger.sequence_all().await.unwrap();
    let n = ledger.size().await.unwrap();
    assert!(
        n >= 6,
        "created, key, subject key, message, two shreds: {n}"
    );
    let mut c = s.db.conn().await.unwrap();
    let pending: i64 = db_run!(c, |c| ledger_pending::table.count().get_result(c).await).unwrap();
    assert_eq!(pending, 0);
    let (_, _, bundle) = ledger.export(0, Some(n), Vec::new()).await.unwrap();
    let entries = ledger.entries(0, n).await.unwrap();
    for needle in [
        phone,
        "9811122233",
        name,
        "Kavya",
        "4111 1111",
        "bridal",
        "IN.77aa88bb99cc",
        "Sunita",
        "EAAG-ledger-token",
    ] {
        assert!(
            !bundle.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} in the export bundle"
        );
        for e in &entries {
            assert!(
                !e.bytes
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes()),
                "{needle:?} in entry {}",
                e.entry.seq
            );
        }
    }
    // After the tenant shred the ledger still verifies end to end.
    ledger.checkpoint().await.unwrap();
    let report = verify(&ledger).await;
    assert!(report.first_failure.is_none(), "{:?}", report.first_failure);
}

async fn the_auditor_tool_reads_our_database(env: TestEnv) {
    let s = &env.store;
    let ledger = ledger_for(s).await;
    let t = tenant(s, "auditor").await;
    for _ in 0..3 {
        let mut tx = s.db.begin().await.unwrap();
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::SEARCH_PERFORMED, Actor::System).tenant(t.bytes()),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    ledger.sequence_all().await.unwrap();
    ledger.checkpoint().await.unwrap().unwrap();
    let url = smartchat_tests::url_string(&env.db_url);
    let key = ledger.vkey();
    let run = |url: String, key: String| {
        tokio::task::spawn_blocking(move || {
            smartchat_ledger::verify_database(
                &url,
                &VerifyOptions {
                    trusted_key: Some(key),
                    ..VerifyOptions::default()
                },
            )
        })
    };
    let report = run(url.clone(), key.clone()).await.unwrap().unwrap();
    assert!(report.first_failure.is_none(), "{:?}", report.first_failure);
    assert_eq!(report.entries, 5);
    // Change the kind column of entry 3 (the canonical bytes still say otherwise).
    let mut c = s.db.conn().await.unwrap();
    db_run!(c, |c| diesel::update(ledger_entries::table.find(3i64))
        .set(ledger_entries::kind.eq(999))
        .execute(c)
        .await)
    .unwrap();
    let report = run(url, key).await.unwrap().unwrap();
    assert_eq!(report.first_failure.expect("detected").seq, Some(3));
}

both_backends!(
    the_auditor_tool_reads_our_database,
    data_and_entry_commit_together,
    concurrent_writers_and_sequencers_make_one_order,
    checkpoints_proofs_and_export_verify,
    tampering_in_the_database_is_refused_at_checkpoint,
    entries_hold_no_personal_data,
);
