//! Data-subject rights on both backends (issue 6): the owner API carries out access,
//! portability, correction, objection and deletion with deadlines, extensions, rejection,
//! legal holds and idempotence; a subject proves their number with a one-time code sent
//! through the business's WhatsApp sender (the sandbox here); requests in the chat; after
//! a deletion nothing of the subject is left in the API, the exports, the ledger or a dump
//! read with the master key, and the same number is a new customer.

use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_core::db_run;

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_core::CoreError;
use smartchat_core::crypto::BlindKind;
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, SubjectId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EventKind};
use smartchat_tests::{Session, TestEnv, both_backends};

const PNID: &str = "8200001";
const HANDLE: &str = "glow-rights";

struct World {
    env: TestEnv,
    pipeline: Pipeline,
    ledger: Ledger,
    tenant: TenantId,
    session: Session,
}

async fn world(env: TestEnv) -> World {
    let tenant = env
        .store
        .create_tenant(NewTenant {
            handle: HANDLE.parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({
                "name": "Glow Salon", "business_type": "salon", "timezone": "Asia/Kolkata",
                "services": [{"name": "Haircut"}],
            })),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new("")),
        })
        .await
        .unwrap();
    let config = smartchat_core::config::Config::load_from(None, &Default::default()).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config)
        .unwrap()
        .with_analytics(env.analytics().await);
    let (otl, token) = OneTimeLogin::generate();
    let state = AppState::new(
        Services {
            store: env.store.clone(),
            ledger: ledger.clone(),
        },
        pipeline.clone(),
        AuthState::local(env.store.clone(), otl),
        &config,
    );
    let session = Session::start(router(state), &token, tenant).await;
    World {
        env,
        pipeline,
        ledger,
        tenant,
        session,
    }
}

impl World {
    /// The owner ends the account (`POST /api/v1/account/terminate`, confirmed).
    async fn terminate(&self) -> (u16, serde_json::Value) {
        self.session
            .post(
                "/api/v1/account/terminate",
                Some(serde_json::json!({"confirm": HANDLE})),
            )
            .await
    }

    async fn says(&self, from: &str, text: &str) {
        let from: PhoneNumber = from.parse().unwrap();
        let payload = pipeline::sandbox_payload(PNID, &from, text).unwrap();
        pipeline::ingest(&self.pipeline, &payload).await.unwrap();
        pipeline::drain(&self.pipeline).await.unwrap();
    }

    async fn subject(&self, number: &str) -> Option<SubjectId> {
        self.env
            .store
            .find_subject(self.tenant, BlindKind::WaId, number)
            .await
            .unwrap()
    }

    /// Bodies of the subject's messages, as (author, body).
    async fn thread(&self, number: &str) -> Vec<(String, String)> {
        let sid = self.subject(number).await.unwrap();
        self.env
            .store
            .subject_messages(self.tenant, sid)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.row.author, m.body.unwrap_or_default()))
            .collect()
    }

    async fn rights(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.session.post("/api/v1/rights", Some(body)).await
    }

    /// `DELETE /api/v1/legal-holds/{id}` for a hold as its creation answered it.
    async fn release_hold(&self, hold: &serde_json::Value) -> (u16, serde_json::Value) {
        self.session
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/legal-holds/{}", hold["id"].as_str().unwrap()),
                None,
                true,
            )
            .await
    }

    async fn raw(&self, path: &str) -> (u16, Vec<u8>) {
        let res = self
            .session
            .http
            .get(format!("{}{path}", self.session.base))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.bytes().await.unwrap().to_vec())
    }

    async fn events(&self, kind: EventKind) -> Vec<smartchat_ledger::EntryDraft> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger
            .entries(0, self.ledger.size().await.unwrap())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.entry.draft.kind == kind)
            .map(|e| e.entry.draft)
            .collect()
    }

    async fn public(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.session.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Everything our crates log in this test binary, at every level.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "smartchat_api=trace,smartchat_core=trace,smartchat_search=trace,smartchat_assistant=trace,smartchat_whatsapp=trace",
            ))
            .with_writer(move || W(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

async fn verify_ledger(ledger: &Ledger) {
    ledger.sequence_all().await.unwrap();
    let (_, _, bytes) = ledger.export(0, None, Vec::new()).await.unwrap();
    let opts = smartchat_ledger::VerifyOptions {
        trusted_key: Some(ledger.vkey()),
        ..smartchat_ledger::VerifyOptions::default()
    };
    smartchat_ledger::verify_bundle(&bytes[..], &opts).unwrap();
}

fn right_of(d: &smartchat_ledger::EntryDraft) -> u32 {
    d.attrs
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (&AttrKey::RIGHT, AttrValue::Code(c)) => Some(*c),
            _ => None,
        })
        .unwrap_or(0)
}

async fn owners_answer_access_portability_correction_and_objection(env: TestEnv) {
    let w = world(env).await;
    let asha = "919833300001";
    let marker = "saffron-highlights-7781";
    w.says(asha, &format!("Hi, how much for {marker} and a haircut?"))
        .await;

    // Access: carried out at once, due within the policy's 30 days (and one month).
    let (status, req) = w
        .rights(serde_json::json!({"right": "access", "wa_id": asha}))
        .await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["status"], "completed");
    assert!(req["record_count"].as_i64().unwrap() >= 2, "{req}");
    let received = req["received_at"].as_i64().unwrap();
    let due = req["due_at"].as_i64().unwrap();
    let days = (due - received) as f64 / 86_400e6;
    assert!((28.0..=30.0).contains(&days), "{days}");
    let id = req["id"].as_str().unwrap().to_owned();
    let (status, json) = w.raw(&format!("/api/v1/rights/{id}/report")).await;
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(report["contact"]["wa_id"], asha);
    assert_eq!(report["business"], "Glow Salon");
    let texts: Vec<&str> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(texts.iter().any(|t| t.contains(marker)), "{texts:?}");
    assert!(texts.len() >= 2, "the customer's message and the reply");
    assert!(!report["retention"].as_array().unwrap().is_empty());
    assert!(!report["recipients"].as_array().unwrap().is_empty());
    let (status, md) = w
        .raw(&format!("/api/v1/rights/{id}/report?format=markdown"))
        .await;
    assert_eq!(status, 200);
    let md = String::from_utf8(md).unwrap();
    assert!(
        md.contains(marker) && md.contains("## How long it is kept"),
        "{md}"
    );

    // Portability: a zip whose manifest lists every file with its SHA-256.
    let (status, req) = w
        .rights(serde_json::json!({"right": "portability", "wa_id": asha}))
        .await;
    assert_eq!(status, 201, "{req}");
    let (status, bytes) = w
        .raw(&format!(
            "/api/v1/rights/{}/report",
            req["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["format"], "smartchat-portability/1");
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 4);
    for f in files {
        let mut data = Vec::new();
        zip.by_name(f["name"].as_str().unwrap())
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        use sha2::Digest;
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            hex_lower(&sha2::Sha256::digest(&data)),
            "{}",
            f["name"]
        );
        assert_eq!(f["bytes"].as_u64().unwrap(), data.len() as u64);
    }
    let mut csv = String::new();
    zip.by_name("messages.csv")
        .unwrap()
        .read_to_string(&mut csv)
        .unwrap();
    assert!(csv.starts_with("id,at,direction,author,kind,status,text\r\n") && csv.contains(marker));
    assert_eq!(w.events(EventKind::EXPORT_MADE).await.len(), 3);

    // Correction: the contact and lead fields change; the ledger names no value.
    let (status, req) = w
        .rights(serde_json::json!({
            "right": "correction", "wa_id": asha,
            "details": {"contact": {"profile_name": "Asha Corrected"}, "lead": {"name": "Asha Corrected"}}
        }))
        .await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["status"], "completed");
    assert_eq!(req["record_count"], 2);
    let sid = w.subject(asha).await.unwrap();
    let contact = w.env.store.subject_contact(w.tenant, sid).await.unwrap();
    assert_eq!(contact.profile_name.as_deref(), Some("Asha Corrected"));
    assert!(!w.events(EventKind::CORRECTION).await.is_empty());
    let (status, v) = w
        .rights(serde_json::json!({"right": "correction", "wa_id": asha, "details": {"contact": {"wa_id": "1"}}}))
        .await;
    assert_eq!(status, 422, "{v}");
    let (status, _) = w
        .rights(serde_json::json!({"right": "correction", "wa_id": asha}))
        .await;
    assert_eq!(status, 422, "a correction needs its values");

    // Objection: no AI processing until withdrawn.
    let (status, req) = w
        .rights(serde_json::json!({"right": "objection", "wa_id": asha}))
        .await;
    assert_eq!((status, req["status"].as_str()), (201, Some("completed")));
    let mut c = w.env.store.db.conn().await.unwrap();
    assert!(
        w.env
            .store
            .subject_flags(&mut c, sid)
            .await
            .unwrap()
            .objected
    );
    drop(c);
    let (status, _) = w
        .rights(
            serde_json::json!({"right": "objection", "wa_id": asha, "details": {"withdraw": true}}),
        )
        .await;
    assert_eq!(status, 201);
    let mut c = w.env.store.db.conn().await.unwrap();
    assert!(
        !w.env
            .store
            .subject_flags(&mut c, sid)
            .await
            .unwrap()
            .objected
    );
    drop(c);

    // A number that is no customer: an honest, empty answer.
    let (status, req) = w
        .rights(serde_json::json!({"right": "access", "wa_id": "919833300099"}))
        .await;
    assert_eq!((status, req["record_count"].as_i64()), (201, Some(0)));
    let (_, body) = w
        .raw(&format!(
            "/api/v1/rights/{}/report",
            req["id"].as_str().unwrap()
        ))
        .await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["held"], false);

    // Bad input.
    for (body, code) in [
        (serde_json::json!({"right": "forget", "wa_id": asha}), 422),
        (serde_json::json!({"right": "access", "wa_id": "12"}), 422),
        (serde_json::json!({"right": "access"}), 422),
        (
            serde_json::json!({"right": "access", "wa_id": asha, "regime": "ccpa"}),
            422,
        ),
    ] {
        assert_eq!(w.rights(body.clone()).await.0, code, "{body}");
    }
    // Every request ledgered received, verified and completed, with its right.
    let completed = w.events(EventKind::DSR_COMPLETED).await;
    let mut rights: Vec<u32> = completed.iter().map(right_of).collect();
    rights.sort_unstable();
    assert_eq!(
        rights,
        [1, 1, 2, 4, 4, 5],
        "access ×2, correction, objection ×2, portability"
    );
    assert_eq!(w.events(EventKind::DSR_RECEIVED).await.len(), 6);
    smartchat_tests::assert_no_plaintext(&w.env, &[marker, "Asha Corrected"]);
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn deletion_waits_for_a_legal_hold_then_leaves_nothing(env: TestEnv) {
    let logs = captured_logs();
    let w = world(env).await;
    let ravi = "919833300002";
    let keep = "919833300003";
    let gone_text = "ravi-secret-appointment-4417";
    let kept_text = "kept-customer-message-9903";
    w.says(ravi, &format!("I want a haircut, {gone_text}"))
        .await;
    w.says(keep, &format!("Hello {kept_text}")).await;
    let old_sid = w.subject(ravi).await.unwrap();

    // A hold on the customer: the deletion waits, visibly.
    let (status, hold) = w
        .session
        .post(
            "/api/v1/legal-holds",
            Some(serde_json::json!({"reason": "case 2026/114", "wa_id": ravi})),
        )
        .await;
    assert_eq!(status, 201, "{hold}");
    let (status, req) = w
        .rights(serde_json::json!({"right": "deletion", "wa_id": ravi}))
        .await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["status"], "on_hold");
    assert_eq!(req["reason"], "legal_hold");
    assert!(
        w.thread(ravi)
            .await
            .iter()
            .any(|(_, b)| b.contains(gone_text))
    );
    // The same request again is the same request.
    let (status, again) = w
        .rights(serde_json::json!({"right": "deletion", "wa_id": ravi}))
        .await;
    assert_eq!((status, &again["id"]), (200, &req["id"]));
    let id = req["id"].as_str().unwrap().to_owned();
    // The queue shows it open, with its urgency; it may be extended once, with reasons.
    let (_, list) = w.session.get("/api/v1/rights").await;
    assert_eq!(list["requests"][0]["id"], id.as_str());
    assert_eq!(list["requests"][0]["urgency"], "on_track");
    let (status, ext) = w
        .session
        .post(
            &format!("/api/v1/rights/{id}/extend"),
            Some(serde_json::json!({"reason": "a court order is pending"})),
        )
        .await;
    assert_eq!(status, 200, "{ext}");
    let months =
        (ext["due_at"].as_i64().unwrap() - ext["received_at"].as_i64().unwrap()) as f64 / 86_400e6;
    assert!((88.0..=93.0).contains(&months), "{months}");
    let (status, v) = w
        .session
        .post(
            &format!("/api/v1/rights/{id}/extend"),
            Some(serde_json::json!({"reason": "again"})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("already extended"));

    // Released: the deletion goes ahead.
    let (status, v) = w.release_hold(&hold).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resumed"][0]["status"], "completed");
    assert!(matches!(
        w.env.store.subject_messages(w.tenant, old_sid).await,
        Err(CoreError::Shredded { .. })
    ));
    assert!(w.subject(ravi).await.is_none(), "unlinked from the number");
    // The physical clean-up runs as a job.
    pipeline::drain(&w.pipeline).await.unwrap();
    assert!(matches!(
        w.env.store.subject_contact(w.tenant, old_sid).await,
        Err(CoreError::NotFound { .. })
    ));
    // Nothing of them in the API, a dump read with the master key, or the files.
    let (_, convs) = w.session.get("/api/v1/conversations").await;
    assert_eq!(
        convs["conversations"].as_array().unwrap().len(),
        1,
        "{convs}"
    );
    let recovered = smartchat_tests::recover_with_dump_and_master(&w.env).await;
    assert!(
        recovered.iter().any(|p| p.contains(kept_text)),
        "the attack works"
    );
    assert!(!recovered.iter().any(|p| p.contains(gone_text)));
    smartchat_tests::assert_no_plaintext(&w.env, &[gone_text, ravi]);
    // The ledger still verifies and kept its pseudonymous entries.
    w.ledger.sequence_all().await.unwrap();
    let (_, _, bundle) = w.ledger.export(0, None, Vec::new()).await.unwrap();
    assert!(!String::from_utf8_lossy(&bundle).contains(ravi));
    assert!(!String::from_utf8_lossy(&bundle).contains(gone_text));
    verify_ledger(&w.ledger).await;
    // The logs of all of it: written (the purge reports its progress), and free of them.
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("subject purge"),
        "the purge logs its progress"
    );
    for secret in [ravi, gone_text, kept_text] {
        assert!(!logged.contains(secret), "{secret} in the logs");
    }
    // Writing again later: a new customer.
    w.says(ravi, "hello again").await;
    let new_sid = w.subject(ravi).await.unwrap();
    assert_ne!(new_sid, old_sid);
    assert!(
        !w.thread(ravi)
            .await
            .iter()
            .any(|(_, b)| b.contains(gone_text))
    );
    // Deleting twice deletes nothing twice.
    let (status, second) = w
        .rights(serde_json::json!({"right": "deletion", "subject_id": old_sid.to_string()}))
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["record_count"], 0);
    assert_eq!(w.events(EventKind::KEY_SHREDDED).await.len(), 1);

    // Rejection of an open request, with its reason; then it is closed.
    let (_, hold) = w
        .session
        .post(
            "/api/v1/legal-holds",
            Some(serde_json::json!({"reason": "tenant-wide audit"})),
        )
        .await;
    let (_, req) = w
        .rights(serde_json::json!({"right": "deletion", "wa_id": keep, "regime": "dpdp"}))
        .await;
    assert_eq!(req["status"], "on_hold");
    let rid = req["id"].as_str().unwrap();
    let (status, v) = w
        .session
        .post(
            &format!("/api/v1/rights/{rid}/extend"),
            Some(serde_json::json!({"reason": "x"})),
        )
        .await;
    assert_eq!(status, 422, "DPDP has no extension: {v}");
    let (status, v) = w
        .session
        .post(
            &format!("/api/v1/rights/{rid}/reject"),
            Some(serde_json::json!({"reason": "manifestly_unfounded"})),
        )
        .await;
    assert_eq!((status, v["status"].as_str()), (200, Some("rejected")));
    let (status, _) = w
        .session
        .post(
            &format!("/api/v1/rights/{rid}/reject"),
            Some(serde_json::json!({"reason": "manifestly_unfounded"})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(w.events(EventKind::DSR_REJECTED).await.len(), 1);
    assert_eq!(w.events(EventKind::LEGAL_HOLD_PLACED).await.len(), 2);
    assert_eq!(w.events(EventKind::LEGAL_HOLD_RELEASED).await.len(), 1);
    let _ = hold;
}

/// The 6-digit code in the customer's thread (what they read on WhatsApp).
async fn code_sent_to(w: &World, number: &str) -> String {
    let (_, body) = w
        .thread(number)
        .await
        .into_iter()
        .rev()
        .find(|(a, _)| a == "system")
        .expect("a code message");
    body.split_whitespace()
        .map(|t| t.trim_end_matches('.'))
        .find(|t| t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_owned()
}

async fn subjects_prove_their_number_with_a_code(env: TestEnv) {
    let w = world(env).await;
    let mina = "919833300004";
    let marker = "mina-bridal-trial-5521";
    w.says(mina, &format!("Do you do a {marker}?")).await;
    let path = format!("/rights/{HANDLE}/requests");

    // Bad input.
    let (status, v) = w
        .public(
            "/rights/no-such-salon/requests",
            serde_json::json!({"number": mina, "right": "access"}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("unknown_business"))
    );
    let (status, v) = w
        .public(
            &path,
            serde_json::json!({"number": "call me", "right": "access"}),
        )
        .await;
    assert_eq!((status, v["code"].as_str()), (400, Some("invalid_number")));
    let (status, _) = w
        .public(
            &path,
            serde_json::json!({"number": mina, "right": "correction"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        w.public(&path, serde_json::json!({"number": mina})).await.0,
        422,
        "a missing field"
    );

    // A stranger's number and a customer's get the same answer, neither sooner than the
    // floor (so the time taken does not tell them apart either).
    let t0 = std::time::Instant::now();
    let (s1, stranger) = w
        .public(
            &path,
            serde_json::json!({"number": "919833300077", "right": "access"}),
        )
        .await;
    let stranger_took = t0.elapsed();
    let t0 = std::time::Instant::now();
    let (s2, first) = w
        .public(
            &path,
            serde_json::json!({"number": mina, "right": "access"}),
        )
        .await;
    let customer_took = t0.elapsed();
    assert_eq!((s1, s2), (202, 202));
    for took in [stranger_took, customer_took] {
        assert!(
            took >= smartchat_api::rights::PUBLIC_ANSWER_FLOOR,
            "{took:?}"
        );
    }
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&stranger), keys(&first));
    assert_eq!(
        stranger["message"]
            .as_str()
            .unwrap()
            .replace(stranger["challenge"].as_str().unwrap(), ""),
        first["message"]
            .as_str()
            .unwrap()
            .replace(first["challenge"].as_str().unwrap(), "")
    );
    let code = code_sent_to(&w, mina).await;
    let confirm = format!(
        "/rights/challenges/{}",
        first["challenge"].as_str().unwrap()
    );
    // Wrong codes: counted, then locked.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, v) = w.public(&confirm, serde_json::json!({"code": wrong})).await;
    assert_eq!((status, v["attempts_left"].as_i64()), (400, Some(4)));
    for _ in 0..4 {
        w.public(&confirm, serde_json::json!({"code": wrong})).await;
    }
    let (status, _) = w.public(&confirm, serde_json::json!({"code": code})).await;
    assert_eq!(
        status, 429,
        "locked after 5 wrong codes, even with the right one"
    );

    // A new code, confirmed: the request is carried out and a download is granted.
    let (_, second) = w
        .public(
            &path,
            serde_json::json!({"number": mina, "right": "access"}),
        )
        .await;
    let code = code_sent_to(&w, mina).await;
    let confirm = format!(
        "/rights/challenges/{}",
        second["challenge"].as_str().unwrap()
    );
    let (status, v) = w.public(&confirm, serde_json::json!({"code": code})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["request"]["status"], "completed");
    let download = v["download"].as_str().unwrap().to_owned();
    let (status, _) = w.public(&confirm, serde_json::json!({"code": code})).await;
    assert_eq!(status, 409, "a code works once");
    let res = reqwest::get(format!("{}{download}", w.session.base))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let report: serde_json::Value = res.json().await.unwrap();
    assert!(report.to_string().contains(marker));
    let res = reqwest::get(format!("{}{download}?format=markdown", w.session.base))
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains(marker));
    let bogus = format!("{}/rights/downloads/{}", w.session.base, "ab".repeat(32));
    assert_eq!(reqwest::get(bogus).await.unwrap().status().as_u16(), 404);
    // The request is in the owner's queue as a public one.
    let (_, list) = w.session.get("/api/v1/rights").await;
    assert!(
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["channel"] == "public" && r["status"] == "completed")
    );
    // An expired code is refused.
    let (_, third) = w
        .public(
            &path,
            serde_json::json!({"number": mina, "right": "deletion"}),
        )
        .await;
    let cid = third["challenge"].as_str().unwrap().to_owned();
    let mut c = w.env.store.db.conn().await.unwrap();
    db_run!(c, |c| diesel::update(
        smartchat_core::db::schema::dsr_challenges::table.find(&cid)
    )
    .set(smartchat_core::db::schema::dsr_challenges::expires_at.eq(0i64))
    .execute(c)
    .await)
    .unwrap();
    drop(c);
    let code = code_sent_to(&w, mina).await;
    let (status, v) = w
        .public(
            &format!("/rights/challenges/{cid}"),
            serde_json::json!({"code": code}),
        )
        .await;
    assert_eq!((status, v["code"].as_str()), (410, Some("code_expired")));
    assert!(w.subject(mina).await.is_some(), "nothing was deleted");
    // Three codes per number per hour: that was the third.
    let (status, v) = w
        .public(
            &path,
            serde_json::json!({"number": mina, "right": "deletion"}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    smartchat_tests::assert_no_plaintext(&w.env, &[marker, &code]);

    // Outside the 24-hour window the code goes as the approved authentication template.
    let late = "919833300009";
    says_long_ago(&w, late, "old question", 30).await;
    let (status, v) = w
        .session
        .send(
            reqwest::Method::PUT,
            "/api/v1/templates",
            Some(serde_json::json!({"templates": [{
                "name": "rights_code", "language": "en", "category": "authentication",
                "body": "{{1}} is your verification code."
            }]})),
            true,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, ch) = w
        .public(
            &path,
            serde_json::json!({"number": late, "right": "access"}),
        )
        .await;
    let sid = w.subject(late).await.unwrap();
    let last = w
        .env
        .store
        .subject_messages(w.tenant, sid)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.row.kind.as_str(), last.row.author.as_str()),
        ("template", "system")
    );
    let code = last
        .body
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (status, v) = w
        .public(
            &format!("/rights/challenges/{}", ch["challenge"].as_str().unwrap()),
            serde_json::json!({"code": code}),
        )
        .await;
    assert_eq!(
        (status, v["request"]["status"].as_str()),
        (200, Some("completed")),
        "{v}"
    );
}

async fn says_long_ago(w: &World, from: &str, text: &str, hours: i64) {
    let ts = (time::OffsetDateTime::now_utc() - time::Duration::hours(hours)).unix_timestamp();
    let payload = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "0", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "0", "phone_number_id": PNID },
            "contacts": [{ "profile": { "name": "Late Customer" }, "wa_id": from }],
            "messages": [{
                "from": from, "id": format!("wamid.r{}", uuid::Uuid::new_v4().simple()),
                "timestamp": ts.to_string(), "type": "text", "text": { "body": text }
            }]
        }}]}]
    });
    let parsed = smartchat_whatsapp::parse_payload(payload.to_string().as_bytes()).unwrap();
    pipeline::ingest(&w.pipeline, &parsed).await.unwrap();
    pipeline::drain(&w.pipeline).await.unwrap();
}

async fn requests_in_the_chat_are_carried_out(env: TestEnv) {
    let w = world(env).await;
    let tara = "919833300005";
    let marker = "tara-keratin-question-3308";
    w.says(tara, &format!("Is {marker} available?")).await;
    // Export in the chat: a download link arrives in the chat.
    w.says(tara, "please export my data").await;
    let link = w
        .thread(tara)
        .await
        .into_iter()
        .find_map(|(a, b)| (a == "system").then(|| b.split_whitespace().last().unwrap().to_owned()))
        .expect("a download link in the chat");
    let path = &link[link.find("/rights/downloads/").unwrap()..];
    let res = reqwest::get(format!("{}{path}", w.session.base))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.text().await.unwrap().contains(marker));

    // Deletion in the chat: confirmed in the chat first, carried out after.
    w.says(tara, "delete my data").await;
    let thread = w.thread(tara).await;
    assert!(
        thread.last().unwrap().1.contains("delete your data"),
        "{thread:?}"
    );
    let (_, list) = w.session.get("/api/v1/rights").await;
    let req = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["right"] == "deletion")
        .unwrap()
        .clone();
    assert_eq!(
        (req["channel"].as_str(), req["status"].as_str()),
        (Some("chat"), Some("verified"))
    );
    let sid = w.subject(tara).await.unwrap();
    // Its job waits a minute so the confirmation goes out first; run it now.
    let done = smartchat_api::rights::carry_out(
        &w.pipeline,
        w.tenant,
        req["id"].as_str().unwrap(),
        Actor::DataSubject,
    )
    .await
    .unwrap();
    assert_eq!(done.status, "completed");
    pipeline::drain(&w.pipeline).await.unwrap();
    assert!(matches!(
        w.env.store.subject_contact(w.tenant, sid).await,
        Err(CoreError::NotFound { .. })
    ));
    // The download granted before the deletion reveals nothing now.
    let res = reqwest::get(format!("{}{path}", w.session.base))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 410);
    let deleted: Vec<u32> = w
        .events(EventKind::DSR_COMPLETED)
        .await
        .iter()
        .map(right_of)
        .collect();
    assert_eq!(deleted, [1, 3], "access, then deletion");
}

async fn termination_opens_an_export_window_then_deletes_everything(env: TestEnv) {
    let w = world(env).await;
    let other = w
        .env
        .store
        .create_tenant(NewTenant {
            handle: "other-salon".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Other Salon"})),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap();
    let dev = "919833300006";
    let marker = "dev-party-makeup-6620";
    w.says(dev, &format!("Can I book {marker}?")).await;
    let sid = w.subject(dev).await.unwrap();

    let (status, v) = w
        .session
        .post(
            "/api/v1/account/terminate",
            Some(serde_json::json!({"confirm": "wrong"})),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (422, Some("confirmation_mismatch"))
    );
    let (status, account) = w.terminate().await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["status"], "terminated");
    let window = (account["purge_after"].as_i64().unwrap()
        - account["terminated_at"].as_i64().unwrap()) as f64
        / 86_400e6;
    assert!((window - 30.0).abs() < 0.01, "{window}");
    // Processing stopped: the number is disconnected, a webhook for it stores nothing.
    let from: PhoneNumber = dev.parse().unwrap();
    let out = pipeline::ingest(
        &w.pipeline,
        &pipeline::sandbox_payload(PNID, &from, "are you there?").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!((out.messages, out.unknown_numbers), (0, 1));
    // The export window: the full export holds every customer's data.
    let (status, bytes) = w.raw("/api/v1/account/export").await;
    assert_eq!(status, 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut customer = String::new();
    zip.by_name(&format!("customers/{sid}.json"))
        .unwrap()
        .read_to_string(&mut customer)
        .unwrap();
    assert!(customer.contains(marker));
    assert!(zip.by_name("manifest.json").is_ok() && zip.by_name("business.json").is_ok());

    // Within the window the retention pass leaves it alone; a hold makes it wait after.
    let now = time::OffsetDateTime::now_utc();
    // The jobs that answered the customer (reply, lead, send) are done; a pass keeps them a
    // week, then deletes them (and only them).
    let done = || smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, "done");
    let answered = done().await.unwrap();
    assert!(answered >= 3, "{answered}");
    let r = smartchat_api::account::run_retention(&w.pipeline, now)
        .await
        .unwrap();
    assert_eq!((r.purged_tenants, r.pruned_jobs), (0, 0));
    assert_eq!(done().await.unwrap(), answered);
    // An operator who keeps them 30 days (SMARTCHAT_DONE_JOBS_KEPT_DAYS) still has them.
    let month = smartchat_core::config::Config::load_from(
        None,
        &[("SMARTCHAT_DONE_JOBS_KEPT_DAYS".to_owned(), "30".to_owned())]
            .into_iter()
            .collect(),
    )
    .unwrap();
    let keeps_a_month = Pipeline::new(w.env.store.clone(), &month).unwrap();
    assert_eq!(keeps_a_month.done_jobs_kept().as_secs(), 30 * 86_400);
    let r = smartchat_api::account::run_retention(&keeps_a_month, now + time::Duration::days(29))
        .await
        .unwrap();
    assert_eq!((r.purged_tenants, r.pruned_jobs), (0, 0));
    assert_eq!(done().await.unwrap(), answered);
    let r = smartchat_api::account::run_retention(&w.pipeline, now + time::Duration::days(29))
        .await
        .unwrap();
    assert_eq!(r.purged_tenants, 0);
    assert_eq!(r.pruned_jobs, u64::try_from(answered).unwrap());
    assert_eq!(done().await.unwrap(), 0);
    let hold = w
        .env
        .store
        .place_hold(w.tenant, None, "tax inspection", Actor::System)
        .await
        .unwrap();
    let later = now + time::Duration::days(31);
    let r = smartchat_api::account::run_retention(&w.pipeline, later)
        .await
        .unwrap();
    assert_eq!((r.purged_tenants, r.held_tenants), (0, 1));
    let (_, account) = w.session.get("/api/v1/account").await;
    assert_eq!(account["held"], true);
    assert!(w.thread(dev).await.iter().any(|(_, b)| b.contains(marker)));
    w.env
        .store
        .release_hold(w.tenant, &hold, Actor::System)
        .await
        .unwrap();
    let r = smartchat_api::account::run_retention(&w.pipeline, later)
        .await
        .unwrap();
    assert_eq!(r.purged_tenants, 1);
    assert!(r.purged_rows >= 3, "{r:?}");
    // Gone: the key, the rows, the sessions; the other tenant and the ledger remain.
    assert!(matches!(
        w.env.store.tenant(w.tenant).await,
        Err(CoreError::Shredded { .. })
    ));
    assert_eq!(
        w.env.store.account(w.tenant).await.unwrap().status,
        "purged"
    );
    assert_eq!(w.session.get("/api/v1/conversations").await.0, 401);
    assert!(w.env.store.tenant(other).await.is_ok());
    assert!(
        smartchat_tests::recover_with_dump_and_master(&w.env)
            .await
            .is_empty()
    );
    smartchat_tests::assert_no_plaintext(&w.env, &[marker, dev]);
    assert_eq!(w.events(EventKind::TENANT_TERMINATED).await.len(), 1);
    let purged = w.events(EventKind::TENANT_PURGED).await;
    assert_eq!(purged.len(), 1);
    assert!(!w.events(EventKind::KEY_SHREDDED).await.is_empty());
    // Running it again finds nothing to do.
    let r = smartchat_api::account::run_retention(&w.pipeline, later)
        .await
        .unwrap();
    assert_eq!(r, Default::default());
}

async fn conversations_past_their_retention_expire(env: TestEnv) {
    let w = world(env).await;
    w.env
        .store
        .policy
        .set_overrides(
            w.tenant,
            &smartchat_policies::TenantOverrides::from_toml_str(
                "[retention.conversations]\nwhile_active_days = 7\n",
                "t.toml",
            )
            .unwrap(),
            Actor::System,
        )
        .await
        .unwrap();
    let old = "919833300008";
    w.says(old, "an old question about haircuts").await;
    let sid = w.subject(old).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let r = smartchat_api::account::run_retention(&w.pipeline, now + time::Duration::days(6))
        .await
        .unwrap();
    assert_eq!(r.expired_messages, 0);
    let r = smartchat_api::account::run_retention(&w.pipeline, now + time::Duration::days(8))
        .await
        .unwrap();
    assert!(r.expired_messages >= 2, "{r:?}");
    assert!(
        w.env
            .store
            .subject_messages(w.tenant, sid)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(w.events(EventKind::RETENTION_EXPIRED).await.len(), 1);
}

/// The whole-day cell of a metric today, as the API shows it.
async fn today(w: &World, metric: &str, dimension: &str) -> Option<serde_json::Value> {
    let (status, v) = w.session.get("/api/v1/analytics").await;
    assert_eq!(status, 200, "{v}");
    v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == metric && c["dimension"] == dimension && c["hour"] == 24)
        .map(|c| c["value"].clone())
}

async fn analytics_are_anonymous_and_outlive_deletion(env: TestEnv) {
    let w = world(env).await;
    let numbers: Vec<String> = (0..6).map(|i| format!("91983330010{i}")).collect();
    let text = "analytics-probe-haircut-3319";
    for n in &numbers[..4] {
        w.says(n, &format!("hello {text}")).await;
    }
    // Four customers: the cells exist but are suppressed.
    assert_eq!(
        today(&w, "messages_in", "").await,
        Some(serde_json::Value::Null)
    );
    for n in &numbers[4..] {
        w.says(n, &format!("hello {text}")).await;
    }
    assert_eq!(
        today(&w, "messages_in", "").await,
        Some(serde_json::json!(6))
    );
    assert_eq!(
        today(&w, "messages_out", "assistant").await,
        Some(serde_json::json!(6))
    );
    assert_eq!(
        today(&w, "response_time", "under_5s").await,
        Some(serde_json::json!(6))
    );
    assert_eq!(
        w.session.get("/api/v1/analytics?from=2026-13-01").await.0,
        400
    );

    // Deleting a customer leaves the counts as they are.
    let (_, req) = w
        .rights(serde_json::json!({"right": "deletion", "wa_id": numbers[0]}))
        .await;
    assert_eq!(req["status"], "completed");
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(
        today(&w, "messages_in", "").await,
        Some(serde_json::json!(6))
    );

    // So does the end of the account.
    let sids: Vec<SubjectId> = futures_subjects(&w, &numbers[1..]).await;
    w.terminate().await;
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(31);
    let r = smartchat_api::account::run_retention(&w.pipeline, later)
        .await
        .unwrap();
    assert_eq!(r.purged_tenants, 1);
    let analytics = w.pipeline.analytics().unwrap();
    let cells = analytics
        .cells(w.tenant, "2000-01-01", "2100-01-01")
        .await
        .unwrap();
    let day_in = cells
        .iter()
        .find(|c| c.metric == "messages_in" && c.hour == 24)
        .unwrap();
    assert_eq!(day_in.value, Some(6));

    // Nothing identifying in the store: no number, text, subject id or pseudonym.
    let mut secrets: Vec<String> = numbers.clone();
    secrets.push(text.into());
    for sid in &sids {
        secrets.push(sid.to_string());
    }
    let dump = serde_json::to_string(&cells).unwrap();
    for s in &secrets {
        assert!(!dump.contains(s.as_str()), "{s} in analytics");
    }
    if let Some(smartchat_core::db::DbUrl::Sqlite(path)) = w.env.analytics_url().await {
        let bytes = std::fs::read(&path).unwrap();
        let raw = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(!raw.contains(s.as_str()), "{s} in the analytics file");
        }
    }
}

async fn futures_subjects(w: &World, numbers: &[String]) -> Vec<SubjectId> {
    let mut out = Vec::new();
    for n in numbers {
        out.push(w.subject(n).await.unwrap());
    }
    out
}

#[test]
fn the_address_limiter_allows_ten_an_hour() {
    let l = smartchat_api::rights::IpLimiter::default();
    let ip: std::net::IpAddr = "127.0.0.9".parse().unwrap();
    for i in 0..10 {
        assert!(l.allow(ip), "{i}");
    }
    assert!(!l.allow(ip));
    assert!(l.allow("127.0.0.10".parse().unwrap()), "another address");
}

/// The status of request `id` as the owner's queue shows it.
async fn request_status(w: &World, id: &str) -> String {
    let (_, list) = w.session.get("/api/v1/rights").await;
    list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no request {id} in {list}"))
}

/// The id of the newest request of the owner's queue.
async fn newest_request(w: &World) -> String {
    let (_, list) = w.session.get("/api/v1/rights").await;
    let all = list["requests"].as_array().unwrap();
    all.iter()
        .max_by_key(|r| r["received_at"].as_i64().unwrap())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no request in {list}"))
}

async fn requests_left_open_half_way_are_finished_by_the_retention_pass(env: TestEnv) {
    let w = world(env).await;
    let ravi = "919833300012";
    let asha = "919833300013";
    w.says(ravi, "please book me in").await;
    w.says(asha, "hello there").await;
    let ravi_sid = w.subject(ravi).await.unwrap();
    let asha_sid = w.subject(asha).await.unwrap();

    // A deletion fails after the key is shredded and before its clean-up is queued (the
    // database refuses new jobs): an error, and the request left `verified`.
    let refusal = smartchat_tests::refuse_writes(&w.env, "INSERT ON jobs").await;
    let (status, v) = w
        .rights(serde_json::json!({"right": "deletion", "wa_id": ravi}))
        .await;
    assert!((500..600).contains(&status), "{status} {v}");
    refusal.lift().await;
    let stranded = newest_request(&w).await;
    assert_eq!(request_status(&w, &stranded).await, "verified");
    assert!(matches!(
        w.env.store.subject_messages(w.tenant, ravi_sid).await,
        Err(CoreError::Shredded { .. })
    ));

    // A hold is released and carrying out the deletion it held fails the same way: the
    // hold is gone, the request left `on_hold`.
    let (_, hold) = w
        .session
        .post(
            "/api/v1/legal-holds",
            Some(serde_json::json!({"reason": "case 2026/200", "wa_id": asha})),
        )
        .await;
    let (_, held) = w
        .rights(serde_json::json!({"right": "deletion", "wa_id": asha}))
        .await;
    assert_eq!(held["status"], "on_hold");
    let held = held["id"].as_str().unwrap().to_owned();
    let refusal = smartchat_tests::refuse_writes(&w.env, "INSERT ON jobs").await;
    let (status, v) = w.release_hold(&hold).await;
    assert!((500..600).contains(&status), "{status} {v}");
    refusal.lift().await;
    assert_eq!(request_status(&w, &held).await, "on_hold");

    // The retention pass leaves a request young enough to be under way, resumes the
    // stranded ones once, and the jobs finish them where they stopped.
    let now = time::OffsetDateTime::now_utc();
    let r = smartchat_api::account::run_retention(&w.pipeline, now)
        .await
        .unwrap();
    assert_eq!(r.resumed_requests, 1, "only the one whose hold is gone");
    let later = now + time::Duration::hours(1);
    let r = smartchat_api::account::run_retention(&w.pipeline, later)
        .await
        .unwrap();
    assert_eq!(
        r.resumed_requests, 1,
        "the verified one; the other's job is queued"
    );
    let r = smartchat_api::account::run_retention(&w.pipeline, later)
        .await
        .unwrap();
    assert_eq!(r.resumed_requests, 0, "nothing twice");
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(request_status(&w, &stranded).await, "completed");
    assert_eq!(request_status(&w, &held).await, "completed");
    // The clean-up the failure had not queued ran: nothing of either is left.
    for sid in [ravi_sid, asha_sid] {
        assert!(matches!(
            w.env.store.subject_contact(w.tenant, sid).await,
            Err(CoreError::NotFound { .. })
        ));
    }
    assert_eq!(w.events(EventKind::KEY_SHREDDED).await.len(), 2);
    assert_eq!(w.events(EventKind::DSR_COMPLETED).await.len(), 2);
    let r = smartchat_api::account::run_retention(&w.pipeline, later + time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(r.resumed_requests, 0, "finished requests are not stranded");
    verify_ledger(&w.ledger).await;
}

async fn a_tenant_shred_whose_record_was_lost_is_recorded_by_the_next_pass(env: TestEnv) {
    let w = world(env).await;
    w.says("919833300014", "hello, are you open?").await;
    let (status, v) = w.terminate().await;
    assert_eq!(status, 200, "{v}");
    let tenant_shreds = || async {
        w.events(EventKind::KEY_SHREDDED)
            .await
            .into_iter()
            .filter(|d| d.subject.is_none())
            .count()
    };
    // Past the window the pass shreds the key (the key store commits), then its record in
    // the main database fails (the ledger refuses): the pass fails with the key gone and
    // nothing recorded.
    let after = time::OffsetDateTime::now_utc() + time::Duration::days(31);
    let refusal = smartchat_tests::refuse_writes(&w.env, "INSERT ON ledger_pending").await;
    assert!(
        smartchat_api::account::run_retention(&w.pipeline, after)
            .await
            .is_err()
    );
    refusal.lift().await;
    assert!(matches!(
        w.env.store.tenant_key(w.tenant).await,
        Err(CoreError::Shredded { .. })
    ));
    assert_eq!(tenant_shreds().await, 0);
    // The next pass writes the lost record, then purges.
    let r = smartchat_api::account::run_retention(&w.pipeline, after)
        .await
        .unwrap();
    assert_eq!(r.purged_tenants, 1);
    assert_eq!(tenant_shreds().await, 1);
    assert_eq!(w.events(EventKind::TENANT_PURGED).await.len(), 1);
    // The search index's drop is queued (the purge keeps it for the indexer).
    assert_eq!(
        smartchat_core::search_feed::backlog(&w.env.store.db)
            .await
            .unwrap(),
        1
    );
    // Once only.
    let r = smartchat_api::account::run_retention(&w.pipeline, after)
        .await
        .unwrap();
    assert_eq!(r.purged_tenants, 0);
    assert_eq!(tenant_shreds().await, 1);
    verify_ledger(&w.ledger).await;
}

async fn a_code_that_could_not_be_sent_does_not_count_against_the_number(env: TestEnv) {
    let w = world(env).await;
    let lata = "919833300015";
    w.says(lata, "hello, do you do facials?").await;
    let path = format!("/rights/{HANDLE}/requests");
    // The code's message cannot be queued (the database refuses new jobs): each attempt
    // fails, and keeps no challenge to count against the number's codes per hour.
    let refusal = smartchat_tests::refuse_writes(&w.env, "INSERT ON jobs").await;
    for _ in 0..smartchat_api::rights::CODES_PER_NUMBER_PER_HOUR {
        let (status, v) = w
            .public(
                &path,
                serde_json::json!({"number": lata, "right": "access"}),
            )
            .await;
        assert!((500..600).contains(&status), "{status} {v}");
    }
    refusal.lift().await;
    let (status, v) = w
        .public(
            &path,
            serde_json::json!({"number": lata, "right": "access"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(code_sent_to(&w, lata).await.len(), 6);
}

async fn concurrent_requests_for_one_number_get_three_codes_an_hour(env: TestEnv) {
    let w = world(env).await;
    let ravi = "919833300016";
    w.says(ravi, "hi, I want to know what you hold about me")
        .await;
    let path = format!("/rights/{HANDLE}/requests");
    let asks = (0..8).map(|_| {
        w.public(
            &path,
            serde_json::json!({"number": ravi, "right": "access"}),
        )
    });
    let mut statuses: Vec<u16> = futures::future::join_all(asks)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [202, 202, 202, 429, 429, 429, 429, 429],
        "three codes an hour, however many ask at once"
    );
    let codes = w
        .thread(ravi)
        .await
        .into_iter()
        .filter(|(a, _)| a == "system")
        .count();
    assert_eq!(codes, 3);
}

async fn a_download_that_could_not_be_granted_is_granted_on_the_same_code(env: TestEnv) {
    let w = world(env).await;
    let nina = "919833300017";
    let marker = "nina-keratin-7731";
    w.says(nina, &format!("Do you do a {marker}?")).await;
    let path = format!("/rights/{HANDLE}/requests");
    let (status, asked) = w
        .public(
            &path,
            serde_json::json!({"number": nina, "right": "access"}),
        )
        .await;
    assert_eq!(status, 202, "{asked}");
    let code = code_sent_to(&w, nina).await;
    let confirm = format!(
        "/rights/challenges/{}",
        asked["challenge"].as_str().unwrap()
    );
    // The request is carried out, then its download cannot be granted (the database
    // refuses new challenges): the code is spent and the customer got no link.
    let refusal = smartchat_tests::refuse_writes(&w.env, "INSERT ON dsr_challenges").await;
    let (status, v) = w.public(&confirm, serde_json::json!({"code": code})).await;
    assert!((500..600).contains(&status), "{status} {v}");
    refusal.lift().await;
    let id = newest_request(&w).await;
    assert_eq!(request_status(&w, &id).await, "completed");

    // A wrong code is still refused and counted; the right one gets the download, once.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, v) = w.public(&confirm, serde_json::json!({"code": wrong})).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("wrong_code")),
        "{v}"
    );
    let (status, v) = w.public(&confirm, serde_json::json!({"code": code})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["request"]["id"].as_str(), Some(id.as_str()), "{v}");
    let download = v["download"].as_str().unwrap().to_owned();
    let (status, v) = w.public(&confirm, serde_json::json!({"code": code})).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("code_used")),
        "{v}"
    );
    let res = reqwest::get(format!("{}{download}", w.session.base))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.text().await.unwrap().contains(marker));

    // The same request, not a second one.
    let (_, list) = w.session.get("/api/v1/rights").await;
    assert_eq!(list["requests"].as_array().unwrap().len(), 1, "{list}");
    verify_ledger(&w.ledger).await;
}

both_backends!(
    a_download_that_could_not_be_granted_is_granted_on_the_same_code,
    concurrent_requests_for_one_number_get_three_codes_an_hour,
    a_code_that_could_not_be_sent_does_not_count_against_the_number,
    a_tenant_shred_whose_record_was_lost_is_recorded_by_the_next_pass,
    requests_left_open_half_way_are_finished_by_the_retention_pass,
    owners_answer_access_portability_correction_and_objection,
    deletion_waits_for_a_legal_hold_then_leaves_nothing,
    subjects_prove_their_number_with_a_code,
    requests_in_the_chat_are_carried_out,
    termination_opens_an_export_window_then_deletes_everything,
    conversations_past_their_retention_expire,
    analytics_are_anonymous_and_outlive_deletion,
);
