//! Follow-ups on both backends (issue 9), with the evaluator's clock controlled by the test:
//! rules fire when due and not in quiet hours, limits hold, objection, opt-out and a reply
//! stop them, a late follow-up of a rule without catch-up is skipped, a restart neither
//! loses nor duplicates one, two evaluators on one database schedule it once; bad rules are
//! refused at save.

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::follow_ups::evaluate;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_core::crypto::BlindKind;
use smartchat_core::follow_ups::{RuleSpec, Trigger};
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewTenant, Profile, SubjectFlags};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EventKind};
use smartchat_tests::{Session, TestEnv, both_backends};
use time::{Duration, OffsetDateTime, UtcOffset};

const PNID: &str = "8000001";
const MESSAGE: &str = "Hi! Still thinking about that haircut? Reply here to book.";

struct World {
    env: TestEnv,
    config: smartchat_core::config::Config,
    pipeline: Pipeline,
    ledger: Ledger,
    tenant: TenantId,
}

fn open_hours() -> serde_json::Value {
    let day = serde_json::json!([{"open": "09:00", "close": "19:00"}]);
    serde_json::json!({
        "monday": day, "tuesday": day, "wednesday": day, "thursday": day,
        "friday": day, "saturday": day, "sunday": day
    })
}

async fn world(env: TestEnv) -> World {
    let tenant = env
        .store
        .create_tenant(NewTenant {
            handle: "glow-follow".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({
                "name": "Glow Salon", "business_type": "salon", "timezone": "Asia/Kolkata",
                "hours": open_hours(),
                "services": [{"name": "Haircut"}],
            })),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new("")),
        })
        .await
        .unwrap();
    env.store
        .set_provider_chain(tenant, Some(&[]), Actor::System)
        .await
        .unwrap();
    let config = smartchat_core::config::Config::load_from(None, &Default::default()).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    World {
        env,
        config,
        pipeline,
        ledger,
        tenant,
    }
}

fn rule(after_minutes: i64, max: i32, gap: i64) -> RuleSpec {
    RuleSpec {
        name: "nudge".into(),
        trigger: Trigger::NoReply,
        after_minutes,
        message: MESSAGE.into(),
        template: None,
        max_per_lead: max,
        min_gap_minutes: gap,
        respect_hours: true,
        catch_up: true,
        enabled: true,
    }
}

/// The first instant at or after `from` whose local time (India, +05:30) is `hour`:00.
fn next_local(from: OffsetDateTime, hour: u8) -> OffsetDateTime {
    let ist = UtcOffset::from_hms(5, 30, 0).unwrap();
    let local = from.to_offset(ist);
    let mut t = local.replace_time(time::Time::from_hms(hour, 0, 0).unwrap());
    if t < local {
        t += Duration::days(1);
    }
    t.to_offset(UtcOffset::UTC)
}

impl World {
    async fn says(&self, from: &str, text: &str) {
        let from: PhoneNumber = from.parse().unwrap();
        let payload = pipeline::sandbox_payload(PNID, &from, text).unwrap();
        pipeline::ingest(&self.pipeline, &payload).await.unwrap();
        pipeline::drain(&self.pipeline).await.unwrap();
    }

    /// Messages of `from`, as (author, body).
    async fn thread(&self, from: &str) -> Vec<(String, String)> {
        let sid = self
            .env
            .store
            .find_subject(self.tenant, BlindKind::WaId, from)
            .await
            .unwrap()
            .unwrap();
        self.env
            .store
            .subject_messages(self.tenant, sid)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.row.author, m.body.unwrap_or_default()))
            .collect()
    }

    async fn follow_ups(&self) -> Vec<(String, Option<String>)> {
        self.env
            .store
            .tenant_follow_ups(self.tenant, 100)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|f| (f.status, f.reason))
            .collect()
    }

    async fn ledgered(&self, kind: EventKind) -> Vec<Vec<u32>> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger
            .entries(0, self.ledger.size().await.unwrap())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.entry.draft.kind == kind)
            .map(|e| {
                e.entry
                    .draft
                    .attrs
                    .iter()
                    .filter_map(|(k, v)| match v {
                        AttrValue::Code(c) if *k == AttrKey::REASON => Some(*c),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    async fn set_flags(&self, from: &str, flags: SubjectFlags) {
        let sid = self
            .env
            .store
            .find_subject(self.tenant, BlindKind::WaId, from)
            .await
            .unwrap()
            .unwrap();
        let mut c = self.env.store.db.conn().await.unwrap();
        self.env
            .store
            .set_subject_flags(&mut c, sid, flags)
            .await
            .unwrap();
    }
}

async fn rules_fire_when_due_outside_quiet_hours_within_limits(env: TestEnv) {
    let w = world(env).await;
    w.env
        .store
        .create_rule(w.tenant, &rule(120, 2, 24 * 60), Actor::System)
        .await
        .unwrap();
    let customer = "919811100001";
    w.says(customer, "how much is a haircut?").await;
    let now = OffsetDateTime::now_utc();
    let due = now + Duration::minutes(120);
    // Not yet due.
    assert_eq!(
        evaluate(&w.pipeline, now + Duration::minutes(60))
            .await
            .unwrap(),
        0
    );
    // Due, but at 23:00 in the business's time zone: quiet hours.
    let quiet = next_local(due, 23);
    assert_eq!(evaluate(&w.pipeline, quiet).await.unwrap(), 0);
    // Due and open (10:00 local): scheduled once, sent once.
    let open = next_local(due, 10);
    assert_eq!(evaluate(&w.pipeline, open).await.unwrap(), 1);
    assert_eq!(
        evaluate(&w.pipeline, open).await.unwrap(),
        0,
        "scheduled once"
    );
    assert_eq!(
        pipeline::drain(&w.pipeline).await.unwrap(),
        2,
        "follow-up, then send"
    );
    let thread = w.thread(customer).await;
    assert_eq!(
        thread.last().unwrap(),
        &("follow_up".to_owned(), MESSAGE.to_owned())
    );
    assert_eq!(w.follow_ups().await, [("sent".to_owned(), None)]);
    // At least 24 hours apart: not the same day again.
    assert_eq!(
        evaluate(&w.pipeline, open + Duration::hours(3))
            .await
            .unwrap(),
        0
    );
    // The next day, within hours: the second and last one.
    let next = next_local(open + Duration::hours(24), 11);
    assert_eq!(evaluate(&w.pipeline, next).await.unwrap(), 1);
    pipeline::drain(&w.pipeline).await.unwrap();
    // The limit of 2 holds.
    let later = next_local(next + Duration::hours(24), 12);
    assert_eq!(evaluate(&w.pipeline, later).await.unwrap(), 0);
    assert_eq!(
        w.thread(customer)
            .await
            .iter()
            .filter(|(a, _)| a == "follow_up")
            .count(),
        2
    );
    assert_eq!(w.ledgered(EventKind::FOLLOW_UP_SCHEDULED).await.len(), 2);
    assert_eq!(w.ledgered(EventKind::FOLLOW_UP_SENT).await.len(), 2);
    smartchat_tests::assert_no_plaintext(&w.env, &[MESSAGE]);
}

async fn objection_opt_out_and_a_reply_stop_follow_ups(env: TestEnv) {
    let w = world(env).await;
    w.env
        .store
        .create_rule(w.tenant, &rule(60, 3, 0), Actor::System)
        .await
        .unwrap();
    let (objects, opts_out, replies, says_stop) = (
        "919811100011",
        "919811100012",
        "919811100013",
        "919811100014",
    );
    for c in [objects, opts_out, replies] {
        w.says(c, "haircut price?").await;
    }
    let open = next_local(OffsetDateTime::now_utc() + Duration::minutes(61), 10);
    assert_eq!(evaluate(&w.pipeline, open).await.unwrap(), 3);
    // Before the jobs run: one objects, one opts out, one writes again.
    w.set_flags(
        objects,
        SubjectFlags {
            objected: true,
            opted_out: false,
        },
    )
    .await;
    w.set_flags(
        opts_out,
        SubjectFlags {
            objected: false,
            opted_out: true,
        },
    )
    .await;
    let from: PhoneNumber = replies.parse().unwrap();
    pipeline::ingest(
        &w.pipeline,
        &pipeline::sandbox_payload(PNID, &from, "yes, tomorrow please").unwrap(),
    )
    .await
    .unwrap();
    pipeline::drain(&w.pipeline).await.unwrap();
    let mut outcomes = w.follow_ups().await;
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("cancelled".to_owned(), Some("customer_replied".to_owned())),
            ("skipped".to_owned(), Some("objected".to_owned())),
            ("skipped".to_owned(), Some("opted_out".to_owned())),
        ]
    );
    for c in [objects, opts_out] {
        assert!(
            !w.thread(c).await.iter().any(|(a, _)| a == "follow_up"),
            "{c}"
        );
    }
    let mut skipped = w.ledgered(EventKind::FOLLOW_UP_SKIPPED).await;
    skipped.sort();
    assert_eq!(skipped, [vec![1], vec![2]], "objected, opted out");
    assert_eq!(w.ledgered(EventKind::FOLLOW_UP_CANCELLED).await, [vec![5]]);

    // Saying "stop" in the chat opts out of follow-ups.
    w.says(says_stop, "haircut price?").await;
    w.says(says_stop, "stop sending me messages").await;
    let open2 = next_local(open + Duration::hours(24), 10);
    evaluate(&w.pipeline, open2).await.unwrap();
    pipeline::drain(&w.pipeline).await.unwrap();
    assert!(
        !w.thread(says_stop)
            .await
            .iter()
            .any(|(a, _)| a == "follow_up")
    );
    assert!(
        w.ledgered(EventKind::FOLLOW_UP_SKIPPED)
            .await
            .contains(&vec![2])
    );
}

async fn late_follow_ups_without_catch_up_are_skipped(env: TestEnv) {
    let w = world(env).await;
    let mut spec = rule(60, 1, 0);
    spec.catch_up = false;
    w.env
        .store
        .create_rule(w.tenant, &spec, Actor::System)
        .await
        .unwrap();
    w.says("919811100021", "price?").await;
    // The server was down for two days.
    let late = next_local(OffsetDateTime::now_utc() + Duration::hours(49), 10);
    assert_eq!(evaluate(&w.pipeline, late).await.unwrap(), 0);
    assert_eq!(
        w.follow_ups().await,
        [("skipped".to_owned(), Some("missed".to_owned()))]
    );
    assert_eq!(w.ledgered(EventKind::FOLLOW_UP_SKIPPED).await, [vec![7]]);
    assert_eq!(
        evaluate(&w.pipeline, late).await.unwrap(),
        0,
        "not reconsidered"
    );
}

async fn a_restart_and_a_second_process_neither_lose_nor_duplicate(env: TestEnv) {
    let w = world(env).await;
    w.env
        .store
        .create_rule(w.tenant, &rule(30, 1, 0), Actor::System)
        .await
        .unwrap();
    for i in 0..5 {
        w.says(&format!("9198111003{i:02}"), "price?").await;
    }
    // Two processes evaluate at the same moment on the same databases.
    let other =
        Pipeline::new(w.env.reopen(&w.env.master_secret).await.unwrap(), &w.config).unwrap();
    let at = next_local(OffsetDateTime::now_utc() + Duration::minutes(31), 10);
    let (a, b) = tokio::join!(evaluate(&w.pipeline, at), evaluate(&other, at));
    assert_eq!(
        a.unwrap() + b.unwrap(),
        5,
        "each follow-up scheduled by one of them"
    );
    // The first process stops before running the jobs; the second runs them.
    drop(w.pipeline.clone());
    pipeline::drain(&other).await.unwrap();
    assert_eq!(evaluate(&other, at).await.unwrap(), 0);
    let outcomes = w.follow_ups().await;
    assert_eq!(outcomes.len(), 5);
    assert!(outcomes.iter().all(|(s, _)| s == "sent"), "{outcomes:?}");
    for i in 0..5 {
        let n = w
            .thread(&format!("9198111003{i:02}"))
            .await
            .iter()
            .filter(|(a, _)| a == "follow_up")
            .count();
        assert_eq!(n, 1);
    }
}

async fn bad_rules_are_refused_at_save(env: TestEnv) {
    let w = world(env).await;
    let (otl, token) = OneTimeLogin::generate();
    let state = AppState::new(
        Services {
            store: w.env.store.clone(),
            ledger: w.ledger.clone(),
        },
        w.pipeline.clone(),
        AuthState::local(w.env.store.clone(), otl),
        &w.config,
    );
    let session = Session::start(router(state), &token, w.tenant).await;
    let (http, base, csrf) = (
        session.http.clone(),
        session.base.clone(),
        session.csrf.clone(),
    );
    let post = |body: serde_json::Value| {
        let http = http.clone();
        let (base, csrf) = (base.clone(), csrf.clone());
        async move {
            let res = http
                .post(format!("{base}/api/v1/follow-up-rules"))
                .header("x-csrf-token", csrf)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }
    };
    let good = serde_json::json!({
        "name": "nudge", "trigger": {"kind": "no_reply"}, "after_minutes": 120,
        "message": "Still interested?", "max_per_lead": 2
    });
    let (status, v) = post(good.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["message"], "Still interested?");
    for (patch, why) in [
        (serde_json::json!({"after_minutes": 0}), "after_minutes"),
        (serde_json::json!({"after_minutes": 1440}), "24-hour window"),
        (
            serde_json::json!({"trigger": {"kind": "stage_for", "stage": "won"}}),
            "stage",
        ),
        (serde_json::json!({"max_per_lead": 0}), "max_per_lead"),
        (serde_json::json!({"message": ""}), "message"),
    ] {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = post(body).await;
        assert_eq!(status, 422, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    let mut unknown = good.clone();
    unknown["template"] = "promo".into();
    assert_eq!(post(unknown).await.0, 422);
    let rules = w.env.store.rules(w.tenant).await.unwrap();
    assert_eq!(rules.len(), 1, "only the good rule was stored");
}

async fn quiet_hours_that_never_open_are_refused(env: TestEnv) {
    let w = world(env).await;
    let closed = w
        .env
        .store
        .create_tenant(NewTenant {
            handle: "never-open".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Never Open", "business_type": "salon"})),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap();
    let (otl, token) = OneTimeLogin::generate();
    let state = AppState::new(
        Services {
            store: w.env.store.clone(),
            ledger: w.ledger.clone(),
        },
        w.pipeline.clone(),
        AuthState::local(w.env.store.clone(), otl),
        &w.config,
    );
    let session = Session::start(router(state), &token, closed).await;
    let (status, v) = session
        .post(
            "/api/v1/follow-up-rules",
            Some(serde_json::json!({
                "name": "nudge", "trigger": {"kind": "no_reply"}, "after_minutes": 60,
                "message": "Still interested?"
            })),
        )
        .await;
    assert_eq!(status, 422);

    assert!(
        v["detail"].as_str().unwrap().contains("opening hours"),
        "{v}"
    );
    assert!(w.env.store.rules(closed).await.unwrap().is_empty());
}

both_backends!(
    rules_fire_when_due_outside_quiet_hours_within_limits,
    objection_opt_out_and_a_reply_stop_follow_ups,
    late_follow_ups_without_catch_up_are_skipped,
    a_restart_and_a_second_process_neither_lose_nor_duplicate,
    bad_rules_are_refused_at_save,
    quiet_hours_that_never_open_are_refused,
);
