//! Lead extraction: the rule extractor over English, Hindi and romanized Hindi, and the
//! provider extractor against the fake OpenAI-compatible server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PSEUDONYM, salon, saturday_11};
use jiff::civil::{Date, Time, date};
use proptest::prelude::*;
use serde_json::{Value, json};
use smartchat_assistant::fake::{Failure, FakeLlm};
use smartchat_assistant::leads::{LEAD_SCHEMA_NAME, parse_lead_json};
use smartchat_assistant::{
    AttemptOutcome, Budget, BudgetBound, ChatProvider, ConversationTurn, Currency, Extractor,
    FallbackReason, FieldName, LeadRequest, LeadSignals, ManualClock, PreferredTime,
    ProviderExtractor, ProviderKind, Pseudonym, RequestFlags, RetryPolicy, Role, RuleExtractor,
    SecretString, StageHint, TimeWindow,
};
use time::OffsetDateTime;

fn customer(text: &str) -> ConversationTurn {
    turn(Role::Customer, text, saturday_11())
}

fn turn(role: Role, text: &str, at: OffsetDateTime) -> ConversationTurn {
    ConversationTurn {
        role,
        text: text.into(),
        at,
    }
}

fn at(h: i8, m: i8) -> Option<PreferredTime> {
    Some(PreferredTime::At(Time::new(h, m, 0, 0).unwrap()))
}

fn window(w: TimeWindow) -> Option<PreferredTime> {
    Some(PreferredTime::Window(w))
}

fn inr(rupees: u64, bound: BudgetBound) -> Option<Budget> {
    Some(Budget {
        amount_minor: rupees * 100,
        currency: Currency::Inr,
        bound,
    })
}

use BudgetBound::{Around, AtMost};
use StageHint::{Booked, Engaged, Lost, New};

struct Case {
    text: &'static str,
    name: Option<&'static str>,
    service: Option<&'static str>,
    date: Option<Date>,
    time: Option<PreferredTime>,
    budget: Option<Budget>,
    stage: StageHint,
}

const fn case(text: &'static str) -> Case {
    Case {
        text,
        name: None,
        service: None,
        date: None,
        time: None,
        budget: None,
        stage: New,
    }
}

impl Case {
    fn name(mut self, n: &'static str) -> Self {
        self.name = Some(n);
        self
    }
    fn service(mut self, s: &'static str) -> Self {
        self.service = Some(s);
        self.stage = if self.stage == New {
            Engaged
        } else {
            self.stage
        };
        self
    }
    fn date(mut self, d: Date) -> Self {
        self.date = Some(d);
        self.stage = if self.stage == New {
            Engaged
        } else {
            self.stage
        };
        self
    }
    fn time(mut self, t: Option<PreferredTime>) -> Self {
        self.time = t;
        self.stage = if self.stage == New {
            Engaged
        } else {
            self.stage
        };
        self
    }
    fn budget(mut self, b: Option<Budget>) -> Self {
        self.budget = b;
        self.stage = if self.stage == New {
            Engaged
        } else {
            self.stage
        };
        self
    }
    fn stage(mut self, s: StageHint) -> Self {
        self.stage = s;
        self
    }
}

// Today is Saturday 28 Nov 2026, 11:00 in Asia/Kolkata.
const SAT: Date = date(2026, 11, 28);
const SUN: Date = date(2026, 11, 29);
const MON: Date = date(2026, 11, 30);

fn cases() -> Vec<Case> {
    vec![
        // English
        case("My name is Asha, I want a haircut tomorrow at 5pm")
            .name("Asha")
            .service("Haircut")
            .date(SUN)
            .time(at(17, 0)),
        case("Saturday morning for hair colour?")
            .service("Hair colour")
            .date(SAT)
            .time(window(TimeWindow::Morning)),
        case("Can I come on 14th Dec?").date(date(2026, 12, 14)),
        case("next Monday evening, facial")
            .service("Facial")
            .date(MON)
            .time(window(TimeWindow::Evening)),
        case("under 2000 please").budget(inr(2000, AtMost)),
        case("Rs 1500 is fine").budget(inr(1500, Around)),
        case("₹3k").budget(inr(3000, Around)),
        case("₹ 2,500 max").budget(inr(2500, AtMost)),
        case("$50 ok?").budget(Some(Budget {
            amount_minor: 5000,
            currency: Currency::Usd,
            bound: Around,
        })),
        case("1.5k budget").budget(inr(1500, AtMost)),
        case("my budget is 4000").budget(inr(4000, AtMost)),
        case("hair color on 5/12")
            .service("Hair colour")
            .date(date(2026, 12, 5)),
        case("facials at 11:30").service("Facial").time(at(11, 30)),
        case("I'm Ravi. Any slot at 17:30 on Dec 2nd?")
            .name("Ravi")
            .date(date(2026, 12, 2))
            .time(at(17, 30)),
        case("Do you do pedicures?"),
        case("hello"),
        case("31st feb at 4pm").time(at(16, 0)),
        case("on the 30th").date(MON),
        case("good evening, haircut please").service("Haircut"),
        case("I booked").stage(Booked),
        case("Booking done for Sunday").date(SUN).stage(Booked),
        case("are you fully booked on Sunday?").date(SUN),
        case("under 5 minutes away"),
        case("14/12/2026 at 10am")
            .date(date(2026, 12, 14))
            .time(at(10, 0)),
        case("haircut next week").service("Haircut"),
        case("my number is [PHONE]"),
        case("my name is [NAME]"),
        case("appointment for hair colur").service("Hair colour"),
        case("HAIRCUT TOMORROW 6 PM")
            .service("Haircut")
            .date(SUN)
            .time(at(18, 0)),
        case("can i come at 7").time(at(19, 0)),
        case("this is Priya").name("Priya"),
        case("I am looking for a facial").service("Facial"),
        case("It is Saturday, right?").date(SAT),
        case("I'm Asha").name("Asha"),
        case("Asha here, want a trim")
            .name("Asha")
            .service("Haircut"),
        case("not interested").stage(Lost),
        case("No thanks, not interested in the facial")
            .service("Facial")
            .stage(Lost),
        case("please cancel my booking").stage(Lost),
        case("14 December 2027 works").date(date(2027, 12, 14)),
        case("Dec 14th").date(date(2026, 12, 14)),
        case("tmrw 4:30").date(SUN).time(at(16, 30)),
        case("tonight?").date(SAT).time(window(TimeWindow::Night)),
        case("day after tomorrow noon").date(MON).time(at(12, 0)),
        case("next Sunday").date(date(2026, 12, 6)),
        case("hair cut wednesday 3 pm")
            .service("Haircut")
            .date(date(2026, 12, 2))
            .time(at(15, 0)),
        case("I am free on Sunday").date(SUN),
        case("see you soon"),
        case("what is the price of facial?").service("Facial"),
        case("Can I come at 5?").time(at(17, 0)),
        case("10 am tomorrow").date(SUN).time(at(10, 0)),
        case("morning 9:30").time(at(9, 30)),
        case("Sunday 2pm").date(SUN).time(at(14, 0)),
        case("my name is Asha and I want a facial")
            .name("Asha")
            .service("Facial"),
        case("a hair spa please"),
        // romanized Hindi
        case("main Asha hoon, kal shaam 5 baje baal katwana hai")
            .name("Asha")
            .service("Haircut")
            .date(SUN)
            .time(at(17, 0)),
        case("Mera naam Rahul Sharma hai").name("Rahul Sharma"),
        case("mera naam rahul hai, budget 5000 tak")
            .name("Rahul")
            .budget(inr(5000, AtMost)),
        case("haircut ka kya rate hai").service("Haircut"),
        case("colour karwana hai shanivar dopahar 2 baje")
            .service("Hair colour")
            .date(SAT)
            .time(at(14, 0)),
        case("aaj raat 9 baje").date(SAT).time(at(21, 0)),
        case("15 tarikh ko aana hai").date(date(2026, 12, 15)),
        case("kal 11 baje").date(SUN).time(at(11, 0)),
        case("kal subah")
            .date(SUN)
            .time(window(TimeWindow::Morning)),
        case("parso sava 6 baje").date(MON).time(at(18, 15)),
        case("agle mangalvar facial")
            .service("Facial")
            .date(date(2026, 12, 1)),
        case("baal katwana hai 500 rupaye tak")
            .service("Haircut")
            .budget(inr(500, AtMost)),
        case("2 hazar ke andar").budget(inr(2000, AtMost)),
        case("lagbhag 1200 rs").budget(inr(1200, Around)),
        case("nahi chahiye, thanks").stage(Lost),
        case("rehne do bhaiya").stage(Lost),
        case("book kar diya").stage(Booked),
        case("main aa raha hoon"),
        case("mai pune mein hu"),
        case("main ghar par hoon"),
        case("मैं कल आ सकती हूं").date(SUN),
        case("haircut 2 logo ke liye").service("Haircut"),
        // Hindi (Devanagari)
        case("मेरा नाम आशा है, परसों सुबह 10 बजे फेशियल करवाना है")
            .name("आशा")
            .service("Facial")
            .date(MON)
            .time(at(10, 0)),
        case("मैं रवि हूं").name("रवि"),
        case("हेयरकट कल दोपहर 3 बजे, 1000 रुपये तक")
            .service("Haircut")
            .date(SUN)
            .time(at(15, 0))
            .budget(inr(1000, AtMost)),
        case("बाल कटवाने हैं अगले सोमवार शाम ७ बजे")
            .service("Haircut")
            .date(MON)
            .time(at(19, 0)),
        case("साढ़े 4 बजे आ सकती हूं").time(at(16, 30)),
        case("शनिवार को").date(SAT),
        case("14 दिसंबर").date(date(2026, 12, 14)),
        case("बजट 3000").budget(inr(3000, AtMost)),
        case("नहीं चाहिए").stage(Lost),
        case("बुक कर दिया").stage(Booked),
        case("रात 8 बजे").time(at(20, 0)),
    ]
}

#[test]
fn table_of_single_messages() {
    let profile = salon();
    let mut failures = Vec::new();
    let all = cases();
    for c in &all {
        let x = RuleExtractor::extract(&profile, &[customer(c.text)], saturday_11());
        let f = &x.fields;
        let got = (
            f.name.as_deref(),
            f.service.as_deref(),
            f.preferred_date,
            f.preferred_time,
            f.budget,
            f.stage_hint,
        );
        let want = (c.name, c.service, c.date, c.time, c.budget, Some(c.stage));
        if got != want {
            failures.push(format!("{:?}\n   got  {got:?}\n   want {want:?}", c.text));
        }
        assert_eq!(x.extractor, Extractor::Rules);
        assert_eq!(x.fields_found, f.found());
        assert!(x.attempts.is_empty() && x.fallback.is_none());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn fields_found_names_fields_never_values() {
    let x = RuleExtractor::extract(
        &salon(),
        &[customer("My name is Asha, haircut tomorrow 5pm under 2000")],
        saturday_11(),
    );
    assert_eq!(
        x.fields_found,
        [
            FieldName::Name,
            FieldName::Service,
            FieldName::PreferredDate,
            FieldName::PreferredTime,
            FieldName::Budget,
            FieldName::StageHint
        ]
    );
    let ledger = serde_json::to_string(&x.fields_found).unwrap();
    assert_eq!(
        ledger,
        r#"["name","service","preferred_date","preferred_time","budget","stage_hint"]"#
    );
    let dbg = format!("{x:?}");
    for secret in ["Asha", "Haircut", "2026", "17:00", "200000", "2000"] {
        assert!(!dbg.contains(secret), "{secret} in {dbg}");
    }
    // The fields themselves serialize for storage.
    let stored = serde_json::to_value(&x.fields).unwrap();
    assert_eq!(
        stored,
        json!({
            "name": "Asha", "service": "Haircut", "preferred_date": "2026-11-29",
            "preferred_time": "17:00",
            "budget": {"amount_minor": 200000, "currency": "INR", "bound": "at_most"},
            "stage_hint": "engaged"
        })
    );
    let back: smartchat_assistant::LeadFields = serde_json::from_value(stored).unwrap();
    assert_eq!(back, x.fields);
}

fn link_turn(text: &str) -> ConversationTurn {
    turn(Role::Assistant, text, saturday_11())
}

#[test]
fn confirmation_after_a_booking_link_is_booked() {
    let p = salon();
    let conv = |reply: &str| {
        vec![
            customer("haircut tomorrow?"),
            link_turn(reply),
            customer("done, see you"),
        ]
    };
    let x = RuleExtractor::extract(
        &p,
        &conv("Book here: https://book.example.com/glow"),
        saturday_11(),
    );
    assert_eq!(x.fields.stage_hint, Some(Booked));
    // Without a link "done, see you" is not a booking.
    let x = RuleExtractor::extract(&p, &conv("Sure, we are open."), saturday_11());
    assert_eq!(x.fields.stage_hint, Some(Engaged));
    // The caller may report the link itself.
    let signals = LeadSignals {
        booking_link_sent: true,
        ..LeadSignals::default()
    };
    let x = RuleExtractor::extract_with(&p, &conv("Sure."), saturday_11(), &signals);
    assert_eq!(x.fields.stage_hint, Some(Booked));
    // "confirm?" as a question is not a confirmation.
    let x = RuleExtractor::extract(
        &p,
        &[
            link_turn("https://book.example.com/glow"),
            customer("can you confirm?"),
        ],
        saturday_11(),
    );
    assert_eq!(x.fields.stage_hint, Some(New));
}

#[test]
fn click_signal_books_unless_lost() {
    let p = salon();
    let clicked = LeadSignals {
        booking_link_clicked: true,
        ..LeadSignals::default()
    };
    let x = RuleExtractor::extract_with(&p, &[customer("facial?")], saturday_11(), &clicked);
    assert_eq!(x.fields.stage_hint, Some(Booked));
    let x = RuleExtractor::extract_with(
        &p,
        &[customer("facial?"), customer("not interested")],
        saturday_11(),
        &clicked,
    );
    assert_eq!(x.fields.stage_hint, Some(Lost));
}

#[test]
fn later_turns_override_and_assistant_turns_are_ignored() {
    let p = salon();
    let turns = vec![
        customer("haircut on Monday under 1000"),
        link_turn("Haircut is ₹300. Colour is ₹1,200. My name is Glow bot."),
        customer("actually hair colour, Tuesday 4pm"),
    ];
    let x = RuleExtractor::extract(&p, &turns, saturday_11());
    assert_eq!(x.fields.service.as_deref(), Some("Hair colour"));
    assert_eq!(x.fields.preferred_date, Some(date(2026, 12, 1)));
    assert_eq!(x.fields.preferred_time, at(16, 0));
    assert_eq!(x.fields.budget, inr(1000, AtMost));
    assert_eq!(x.fields.name, None);
    assert_eq!(x.fields.stage_hint, Some(Engaged));
}

#[test]
fn asking_again_after_lost_is_engaged() {
    let p = salon();
    let x = RuleExtractor::extract(
        &p,
        &[
            customer("nahi chahiye"),
            customer("acha facial kitne ka hai"),
        ],
        saturday_11(),
    );
    assert_eq!(x.fields.stage_hint, Some(Engaged));
    let x = RuleExtractor::extract(&p, &[customer("hi"), customer("ok")], saturday_11());
    assert_eq!(x.fields.stage_hint, Some(Engaged));
    let x = RuleExtractor::extract(&p, &[], saturday_11());
    assert_eq!(x.fields.stage_hint, None);
    assert!(x.fields_found.is_empty());
}

#[test]
fn profile_name_is_the_fallback() {
    let p = salon();
    let signals = LeadSignals {
        profile_name: Some("  Asha  R ".into()),
        ..LeadSignals::default()
    };
    let x = RuleExtractor::extract_with(&p, &[customer("hi")], saturday_11(), &signals);
    assert_eq!(x.fields.name.as_deref(), Some("Asha R"));
    let x = RuleExtractor::extract_with(&p, &[customer("this is Meera")], saturday_11(), &signals);
    assert_eq!(x.fields.name.as_deref(), Some("Meera"));
    let phone = LeadSignals {
        profile_name: Some("+91 98765 43210".into()),
        ..LeadSignals::default()
    };
    let x = RuleExtractor::extract_with(&p, &[customer("hi")], saturday_11(), &phone);
    assert_eq!(x.fields.name, None);
}

#[test]
fn relative_dates_use_the_turn_time_and_the_business_zone() {
    let p = salon();
    // Said yesterday (Friday): "tomorrow" is today, Saturday.
    let yesterday = saturday_11() - time::Duration::days(1);
    let x = RuleExtractor::extract(
        &p,
        &[turn(Role::Customer, "tomorrow please", yesterday)],
        saturday_11(),
    );
    assert_eq!(x.fields.preferred_date, Some(SAT));
    // A turn time from the far past or the future is ignored: `now` is used.
    let ancient = saturday_11() - time::Duration::days(400);
    let x = RuleExtractor::extract(
        &p,
        &[turn(Role::Customer, "tomorrow please", ancient)],
        saturday_11(),
    );
    assert_eq!(x.fields.preferred_date, Some(SUN));
    // 23:30 UTC on Friday is already Saturday 05:00 in Pune.
    let utc = time::macros::datetime!(2026-11-27 23:30 UTC);
    let x = RuleExtractor::extract(&p, &[turn(Role::Customer, "today", utc)], utc);
    assert_eq!(x.fields.preferred_date, Some(SAT));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_unicode(texts in proptest::collection::vec(any::<String>(), 0..5)) {
        let turns: Vec<_> = texts.iter().map(|t| customer(t)).collect();
        let x = RuleExtractor::extract(&salon(), &turns, saturday_11());
        prop_assert_eq!(x.fields_found, x.fields.found());
    }

    #[test]
    fn never_panics_on_lead_like_text(
        words in proptest::collection::vec(
            prop_oneof![
                Just("kal".to_owned()), Just("5".to_owned()), Just("baje".to_owned()),
                Just("₹".to_owned()), Just("3k".to_owned()), Just("tak".to_owned()),
                Just("31/02".to_owned()), Just("14th".to_owned()), Just("dec".to_owned()),
                Just("my name is".to_owned()), Just("मैं".to_owned()), Just("हूं".to_owned()),
                Just("next".to_owned()), Just("monday".to_owned()), Just("साढ़े".to_owned()),
                Just("[PHONE]".to_owned()), Just("99999999999k".to_owned()), Just("at".to_owned()),
                Just("24:60".to_owned()), Just("0pm".to_owned()), Just("9999-99-99".to_owned()),
                "\\PC{0,12}",
            ],
            0..30,
        ),
        role_assistant in any::<bool>(),
    ) {
        let text = words.join(" ");
        let mut turns = vec![customer(&text)];
        if role_assistant {
            turns.insert(0, link_turn(&text));
        }
        let x = RuleExtractor::extract(&salon(), &turns, saturday_11());
        if let Some(d) = x.fields.preferred_date {
            prop_assert!(d >= SAT);
        }
        if let Some(b) = x.fields.budget {
            prop_assert!(b.amount_minor > 0 && b.amount_minor <= 100_000_000_000);
        }
        if let Some(s) = &x.fields.service {
            prop_assert!(salon().services.iter().any(|p| &p.name == s));
        }
    }

    #[test]
    fn parse_lead_json_never_panics(s in any::<String>()) {
        let _ = parse_lead_json(&s, &salon(), SAT);
    }
}

// ------------------------------------------------------------------ provider extractor

fn key(k: &str) -> SecretString {
    SecretString::from(k.to_owned())
}

fn openai(fake: &FakeLlm) -> ChatProvider {
    ChatProvider::new(
        ProviderKind::OpenAi,
        &fake.base_url,
        key(&fake.api_key),
        "gpt-test",
    )
    .unwrap()
    .with_retry(RetryPolicy::default())
}

fn deepseek(fake: &FakeLlm) -> ChatProvider {
    ChatProvider::new(
        ProviderKind::DeepSeek,
        &fake.root_url,
        key(&fake.api_key),
        "deepseek-v4-flash",
    )
    .unwrap()
}

fn extractor(chain: Vec<ChatProvider>) -> (ProviderExtractor, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    (
        ProviderExtractor::new(chain).with_clock(clock.clone()),
        clock,
    )
}

fn lead_request(texts: &[&str]) -> LeadRequest {
    LeadRequest::new(
        salon(),
        texts.iter().map(|t| customer(t)).collect(),
        Pseudonym::parse(PSEUDONYM).unwrap(),
        saturday_11(),
    )
    .unwrap()
}

const CONVERSATION: &[&str] = &["hi, main Asha hoon", "kal shaam 5 baje haircut, 2000 tak"];

fn good_json() -> Value {
    json!({
        "name": "Asha", "service": "haircut", "preferred_date": "2026-11-29",
        "preferred_time": "17:00", "budget_inr": 2000, "budget_bound": "at_most",
        "stage": "engaged"
    })
}

#[tokio::test]
async fn openai_structured_output_round_trip() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_json_reply(&good_json());
    let (ex, clock) = extractor(vec![openai(&fake)]);
    let x = ex.extract(&lead_request(CONVERSATION)).await;

    assert_eq!(
        x.extractor,
        Extractor::Provider {
            provider: ProviderKind::OpenAi,
            model: "gpt-test".into()
        }
    );
    assert_eq!(x.fallback, None);
    let f = &x.fields;
    assert_eq!(f.name.as_deref(), Some("Asha"));
    assert_eq!(
        f.service.as_deref(),
        Some("Haircut"),
        "canonical profile name"
    );
    assert_eq!(f.preferred_date, Some(SUN));
    assert_eq!(f.preferred_time, at(17, 0));
    assert_eq!(f.budget, inr(2000, AtMost));
    assert_eq!(f.stage_hint, Some(Engaged));
    assert_eq!(x.fields_found.len(), 6);
    assert!(clock.sleeps().is_empty());

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let b = &reqs[0].body;
    assert_eq!(b["store"], false);
    assert_eq!(b["safety_identifier"], PSEUDONYM);
    assert!(b.get("user_id").is_none());
    assert_eq!(b["temperature"], 0.0);
    assert_eq!(b["stream"], false);
    let rf = &b["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["name"], LEAD_SCHEMA_NAME);
    assert_eq!(rf["json_schema"]["strict"], true);
    let schema = &rf["json_schema"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["service"]["enum"],
        json!(["Haircut", "Hair colour", "Facial", null])
    );
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.contains("Today is Saturday 2026-11-28 in Asia/Kolkata"));
    let user = messages[1]["content"].as_str().unwrap();
    assert!(user.contains("Customer: kal shaam 5 baje haircut, 2000 tak"));

    let a = &x.attempts;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].outcome, AttemptOutcome::Success);
    assert_eq!(a[0].request_digest, *blake3::hash(&reqs[0].raw).as_bytes());
    // The ledger record carries no value.
    let rec = serde_json::to_string(&(&x.attempts, &x.fields_found, &x.extractor)).unwrap();
    assert!(!rec.contains("Asha") && !rec.contains("Haircut") && !rec.contains("2026-11-29"));
}

#[tokio::test]
async fn deepseek_gets_json_object_and_the_schema_in_the_prompt() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_json_reply(&good_json());
    let (ex, _) = extractor(vec![deepseek(&fake)]);
    let x = ex.extract(&lead_request(CONVERSATION)).await;
    assert!(matches!(
        x.extractor,
        Extractor::Provider {
            provider: ProviderKind::DeepSeek,
            ..
        }
    ));
    let b = &fake.requests()[0].body;
    assert_eq!(b["response_format"], json!({"type": "json_object"}));
    assert!(b.get("store").is_none());
    assert_eq!(b["user_id"], PSEUDONYM);
    assert_eq!(b["thinking"], json!({"type": "disabled"}));
    let system = b["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("json") && system.contains("\"additionalProperties\":false"));
}

#[tokio::test]
async fn fake_rejects_json_object_without_the_word_json() {
    let fake = FakeLlm::start().await.unwrap();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/chat/completions", fake.base_url))
        .bearer_auth(&fake.api_key)
        .json(&json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(format!("{}/chat/completions", fake.base_url))
        .bearer_auth(&fake.api_key)
        .json(&json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "bad name!"}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn invalid_json_falls_back_to_rules() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_reply("Sure! The customer is Asha and wants a haircut.");
    let (ex, _) = extractor(vec![openai(&fake)]);
    let req = lead_request(CONVERSATION);
    let x = ex.extract(&req).await;
    assert_eq!(x.extractor, Extractor::Rules);
    assert_eq!(x.fallback, Some(FallbackReason::InvalidOutput));
    assert_eq!(x.attempts.len(), 1);
    assert_eq!(x.attempts[0].outcome, AttemptOutcome::InvalidResponse);
    assert_eq!(x.attempts[0].http_status, Some(200));
    // The rules' answer.
    assert_eq!(x.fields, RuleExtractor::extract_request(&req).fields);
    assert_eq!(x.fields.name.as_deref(), Some("Asha"));
    assert_eq!(x.fields.budget, inr(2000, AtMost));
}

#[tokio::test]
async fn invalid_output_tries_the_next_provider() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_json_reply(&json!({"name": "Asha", "surprise": true}));
    fake.script_json_reply(&good_json());
    let (ex, _) = extractor(vec![openai(&fake), deepseek(&fake)]);
    let x = ex.extract(&lead_request(CONVERSATION)).await;
    assert!(matches!(
        x.extractor,
        Extractor::Provider {
            provider: ProviderKind::DeepSeek,
            ..
        }
    ));
    let outcomes: Vec<_> = x.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::InvalidResponse, AttemptOutcome::Success]
    );
}

#[tokio::test]
async fn provider_values_are_validated() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_json_reply(&json!({
        "name": null, "service": "Massage", "preferred_date": "2026-02-30",
        "preferred_time": "evening", "budget_inr": null, "budget_bound": null, "stage": "engaged"
    }));
    let (ex, _) = extractor(vec![openai(&fake)]);
    let x = ex
        .extract(&lead_request(&["massage on 30 feb evening"]))
        .await;
    assert!(matches!(x.extractor, Extractor::Provider { .. }));
    assert_eq!(x.fields.service, None, "not a profile service");
    assert_eq!(x.fields.preferred_date, None, "impossible date");
    assert_eq!(x.fields.preferred_time, window(TimeWindow::Evening));
    assert_eq!(
        x.fields_found,
        [FieldName::PreferredTime, FieldName::StageHint]
    );
}

#[tokio::test]
async fn provider_down_falls_back_to_rules() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let dead = ChatProvider::new(
        ProviderKind::OpenAi,
        &format!("http://{addr}/v1"),
        key("k"),
        "gpt-test",
    )
    .unwrap();
    let (ex, clock) = extractor(vec![dead]);
    let req = lead_request(CONVERSATION);
    let x = ex.extract(&req).await;
    assert_eq!(x.extractor, Extractor::Rules);
    assert_eq!(x.fallback, Some(FallbackReason::ProviderFailed));
    // Connection errors are retried per the policy (3 attempts, 2 backoff sleeps).
    assert_eq!(x.attempts.len(), 3);
    assert!(
        x.attempts
            .iter()
            .all(|a| a.outcome == AttemptOutcome::ConnectError)
    );
    assert_eq!(clock.sleeps().len(), 2);
    assert_eq!(x.fields, RuleExtractor::extract_request(&req).fields);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_next(
        1,
        Failure::RateLimited {
            retry_after_secs: 2,
        },
    );
    fake.script_json_reply(&good_json());
    let (ex, clock) = extractor(vec![openai(&fake)]);
    let x = ex.extract(&lead_request(CONVERSATION)).await;
    assert!(matches!(x.extractor, Extractor::Provider { .. }));
    assert_eq!(clock.sleeps(), [Duration::from_secs(2)]);
    let outcomes: Vec<_> = x.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::RateLimited, AttemptOutcome::Success]
    );
    // Both attempts sent the same body.
    assert_eq!(x.attempts[0].request_digest, x.attempts[1].request_digest);
}

#[tokio::test]
async fn quota_exhaustion_is_not_retried() {
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_next(1, Failure::InsufficientQuota);
    let (ex, _) = extractor(vec![openai(&fake)]);
    let x = ex.extract(&lead_request(CONVERSATION)).await;
    assert_eq!(x.fallback, Some(FallbackReason::ProviderFailed));
    assert_eq!(x.attempts.len(), 1);
    assert_eq!(x.attempts[0].outcome, AttemptOutcome::QuotaExhausted);
}

#[tokio::test]
async fn providers_not_allowed_makes_no_request() {
    let fake = FakeLlm::start().await.unwrap();
    let (ex, _) = extractor(vec![openai(&fake)]);
    let req = lead_request(CONVERSATION).with_flags(RequestFlags {
        allow_providers: false,
        ..RequestFlags::default()
    });
    let x = ex.extract(&req).await;
    assert_eq!(fake.request_count(), 0);
    assert_eq!(x.extractor, Extractor::Rules);
    assert_eq!(x.fallback, Some(FallbackReason::ProvidersNotAllowed));
    assert!(x.attempts.is_empty());
    let (none, _) = extractor(Vec::new());
    assert_eq!(
        none.extract(&lead_request(CONVERSATION)).await.fallback,
        Some(FallbackReason::NoProvider)
    );
}

#[tokio::test]
async fn flags_and_history_bound_apply() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_json_reply(&good_json());
    let (ex, _) = extractor(vec![openai(&fake)]);
    let req = lead_request(&["first message", "second", "third"]).with_flags(RequestFlags {
        store: Some(true),
        user_field: smartchat_assistant::UserIdField::None,
        max_history_turns: 2,
        ..RequestFlags::default()
    });
    let _ = ex.extract(&req).await;
    let b = &fake.requests()[0].body;
    assert_eq!(b["store"], true);
    assert!(b.get("safety_identifier").is_none());
    let user = b["messages"][1]["content"].as_str().unwrap();
    assert!(!user.contains("first message") && user.contains("third"));
}

#[tokio::test]
async fn click_signal_applies_to_provider_results() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_json_reply(&good_json());
    let (ex, _) = extractor(vec![openai(&fake)]);
    let req = lead_request(CONVERSATION).with_signals(LeadSignals {
        booking_link_clicked: true,
        ..LeadSignals::default()
    });
    let x = ex.extract(&req).await;
    assert_eq!(x.fields.stage_hint, Some(Booked));
    assert!(!format!("{req:?} {x:?}").contains("Asha"));
}
