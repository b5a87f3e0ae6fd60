//! The offline assistant and intent detection, table-driven.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{request, request_at, salon};
use proptest::prelude::*;
use smartchat_assistant::{
    BusinessProfile, ClockTime, HoursQuery, Intent, Lang, OfflineAssistant, ProfileError,
    Pseudonym, Weekday, detect_intent,
};
use time::macros::datetime;

#[test]
fn intents_table() {
    use HoursQuery::*;
    use Intent::*;
    let cases: &[(&str, Intent)] = &[
        // hours
        (
            "What time do you open on Saturday?",
            OpeningHours(Day(Weekday::Saturday)),
        ),
        (
            "what time do u open on saturday??? 🙏",
            OpeningHours(Day(Weekday::Saturday)),
        ),
        ("Are you open now?", OpeningHours(Now)),
        ("r u open", OpeningHours(Now)),
        ("are you open today", OpeningHours(Today)),
        ("What time do you close today?", OpeningHours(Today)),
        ("open tomorrow?", OpeningHours(Tomorrow)),
        ("opening hours please", OpeningHours(Week)),
        ("TIMINGS", OpeningHours(Week)),
        ("sunday?", OpeningHours(Day(Weekday::Sunday))),
        ("kab khulte ho", OpeningHours(Week)),
        ("kal khule ho?", OpeningHours(Tomorrow)),
        (
            "shanivar ko kab tak khula hai",
            OpeningHours(Day(Weekday::Saturday)),
        ),
        ("abhi khule ho kya", OpeningHours(Now)),
        ("समय क्या है", OpeningHours(Week)),
        ("आप कब खुलते हैं?", OpeningHours(Week)),
        ("रविवार को खुले हैं?", OpeningHours(Day(Weekday::Sunday))),
        ("क्या आप अभी खुले हैं?", OpeningHours(Now)),
        // booking
        ("How do I book?", Booking),
        ("I want to book an appointment for Saturday", Booking),
        ("booking kaise karu", Booking),
        ("Can I reserve a slot", Booking),
        ("बुक करना है", Booking),
        ("मुझे अपॉइंटमेंट चाहिए", Booking),
        // services
        ("What services do you offer?", Services),
        ("how much is a haircut", Services),
        ("price list pls", Services),
        ("haircut kitne ka hai", Services),
        ("आपकी सेवाएं क्या हैं", Services),
        ("दाम बताओ", Services),
        // staff
        ("Who are your stylists?", Staff),
        ("staff?", Staff),
        // location / contact
        ("Where are you located?", Location),
        ("address?", Location),
        ("salon kahan hai", Location),
        ("what's your email", Contact),
        ("phone number?", Contact),
        // greeting / thanks
        ("hi", Greeting),
        ("Hello!! 👋", Greeting),
        ("namaste", Greeting),
        ("नमस्ते 🙏", Greeting),
        ("good morning", Greeting),
        ("thanks a lot", Thanks),
        ("धन्यवाद", Thanks),
        // hand-off
        ("talk to a human", Handoff),
        ("I want to speak to an AGENT!!", Handoff),
        ("get me the manager", Handoff),
        ("kisi insaan se baat karni hai", Handoff),
        ("मैनेजर से बात करनी है", Handoff),
        // opt-out
        ("stop", OptOut),
        ("STOP!!!", OptOut),
        ("please stop", OptOut),
        ("unsubscribe", OptOut),
        ("stop messaging me", OptOut),
        ("band karo", OptOut),
        ("message band karo", OptOut),
        ("बंद करो", OptOut),
        ("मैसेज मत भेजो", OptOut),
        // erasure
        ("delete my data", DeleteMyData),
        ("Please DELETE all my personal data.", DeleteMyData),
        ("erase my information", DeleteMyData),
        ("forget me", DeleteMyData),
        ("mera data delete karo", DeleteMyData),
        ("mera data hata do", DeleteMyData),
        ("मेरा डेटा हटाओ", DeleteMyData),
        ("मेरी जानकारी मिटा दो", DeleteMyData),
        ("stop and delete my data", DeleteMyData),
        // access
        ("send me a copy of my data", ExportMyData),
        ("I want to export my data", ExportMyData),
        ("what data do you have about me", ExportMyData),
        ("mera data bhejo", ExportMyData),
        ("मेरा डेटा भेजो", ExportMyData),
        // mixed, everyday phrasing
        ("Kitne baje khulta hai?", OpeningHours(Week)),
        ("Sunday ko open ho?", OpeningHours(Day(Weekday::Sunday))),
        ("helo kya aap aaj khule ho", OpeningHours(Today)),
        ("mujhe haircut book karna hai", Booking),
        ("I want to cancel my appointment", Booking),
        ("rate kya hai", Services),
        ("बाल कटवाने का कितना लगेगा", Services),
        ("aapka address kya hai", Location),
        ("hlo", Greeting),
        // other
        ("ok 👍", Other),
        ("asdf qwerty", Other),
        ("🙂🙂🙂", Other),
        ("", Other),
    ];
    let mut failures = Vec::new();
    for (msg, want) in cases {
        let got = detect_intent(msg);
        if got != *want {
            failures.push(format!("{msg:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn not_opt_out_when_stop_is_part_of_a_question() {
    assert_ne!(
        detect_intent("what time do you stop taking walk-ins?"),
        Intent::OptOut
    );
    assert_ne!(detect_intent("my facebook"), Intent::Booking);
    assert_ne!(detect_intent("kab band hote ho"), Intent::OptOut);
    assert_eq!(
        detect_intent("kab band hote ho"),
        Intent::OpeningHours(HoursQuery::Week)
    );
}

fn answer(msg: &str) -> (String, Intent, Lang) {
    let a = OfflineAssistant.answer(&request(msg));
    (a.text, a.intent, a.lang)
}

fn answer_at(msg: &str, now: time::OffsetDateTime) -> String {
    OfflineAssistant.answer(&request_at(msg, now)).text
}

#[test]
fn saturday_hours_are_saturdays_actual_hours() {
    let (text, intent, _) = answer("What time do you open on Saturday?");
    assert_eq!(
        intent,
        Intent::OpeningHours(HoursQuery::Day(Weekday::Saturday))
    );
    assert_eq!(text, "On Saturday we're open 9 AM – 2 PM.");
    let (text, _, _) = answer("open on tuesday?");
    assert_eq!(text, "On Tuesday we're open 10 AM – 1 PM and 2 PM – 7 PM.");
}

#[test]
fn closed_day_says_closed() {
    assert_eq!(
        answer("are you open on sunday?").0,
        "We're closed on Sunday."
    );
    assert_eq!(answer("Monday timings").0, "We're closed on Monday.");
}

#[test]
fn open_now_depends_on_local_time() {
    // Saturday 11:00 IST: open until 2 PM.
    assert_eq!(
        answer("are you open now?").0,
        "Yes, we're open now until 2 PM."
    );
    // The same instant expressed in UTC gives the same local answer.
    assert_eq!(
        answer_at("are you open now?", datetime!(2026-11-28 05:30 UTC)),
        "Yes, we're open now until 2 PM."
    );
    // Saturday 15:00: closed; Sunday and Monday closed, so Tuesday 10 AM.
    assert_eq!(
        answer_at("open now?", datetime!(2026-11-28 15:00 +05:30)),
        "We're closed right now. We open on Tuesday at 10 AM."
    );
    // Monday: tomorrow.
    assert_eq!(
        answer_at("open now?", datetime!(2026-11-30 10:00 +05:30)),
        "We're closed right now. We open tomorrow (Tuesday) at 10 AM."
    );
    // Tuesday lunch break: later today.
    assert_eq!(
        answer_at("open now?", datetime!(2026-12-01 13:30 +05:30)),
        "We're closed right now. We open again today at 2 PM."
    );
    // Closing time itself is closed (intervals are half-open).
    assert_eq!(
        answer_at("open now?", datetime!(2026-11-28 14:00 +05:30)),
        "We're closed right now. We open on Tuesday at 10 AM."
    );
}

#[test]
fn today_and_tomorrow() {
    assert_eq!(
        answer("open today?").0,
        "Today (Saturday) we're open 9 AM – 2 PM."
    );
    assert_eq!(
        answer("open tomorrow?").0,
        "Tomorrow (Sunday) we're closed."
    );
}

#[test]
fn week_lists_every_day() {
    let (text, _, _) = answer("what are your opening hours");
    for d in [
        "Monday: closed",
        "Saturday: 9 AM – 2 PM",
        "Sunday: closed",
        "Friday: 10 AM – 1 PM and 2 PM – 7 PM",
    ] {
        assert!(text.contains(d), "{d} missing in {text}");
    }
}

#[test]
fn booking_returns_the_link() {
    for msg in [
        "How do I book?",
        "booking kaise karu",
        "appointment chahiye",
    ] {
        let (text, intent, _) = answer(msg);
        assert_eq!(intent, Intent::Booking, "{msg}");
        assert!(
            text.contains("https://book.example.com/glow"),
            "{msg}: {text}"
        );
    }
    let mut p = salon();
    p.booking_links.push(smartchat_assistant::BookingLink {
        label: "Call-back form".into(),
        url: "https://forms.example.com/glow".into(),
    });
    let mut req = request("how do i book");
    req.profile = p;
    let text = OfflineAssistant.answer(&req).text;
    assert!(text.contains("Book online: https://book.example.com/glow"));
    assert!(text.contains("Call-back form: https://forms.example.com/glow"));
}

#[test]
fn services_and_prices() {
    let (text, _, _) = answer("what services do you have?");
    assert!(text.contains("Haircut — ₹300 (30 min)"), "{text}");
    assert!(text.contains("Hair colour — ₹1,200 (90 min)"), "{text}");
    assert!(text.contains("Facial — ₹800 (45 min)"), "{text}");
    let (text, _, _) = answer("How much is a facial?");
    assert!(
        text.starts_with("Facial: Cleanse and glow facial"),
        "{text}"
    );
    assert!(text.contains("Price: ₹800"));
    // Naming a service alone is enough.
    let (text, intent, _) = answer("haircut?");
    assert_eq!(intent, Intent::Services);
    assert!(text.contains("₹300"));
}

#[test]
fn staff_answers() {
    let (text, _, _) = answer("who is on your team?");
    assert!(text.contains("Asha — senior stylist") && text.contains("Ravi — colour specialist"));
    let (text, intent, _) = answer("is Asha available?");
    assert_eq!(intent, Intent::Staff);
    assert_eq!(text, "Asha is our senior stylist.");
}

#[test]
fn greeting_location_contact_handoff_fallback() {
    let (text, _, _) = answer("Hi!");
    assert!(text.starts_with("Hello from Glow Salon! 💇"));
    assert!(text.contains("opening hours"));
    assert_eq!(
        answer("where are you?").0,
        "You can find us at: 12 MG Road, Pune"
    );
    assert_eq!(
        answer("email?").0,
        "You can reach us at: hello@glow.example.com"
    );
    assert_eq!(
        answer("talk to a human").0,
        "Sure, a member of our team will reply here shortly."
    );
    let (text, intent, _) = answer("xyzzy plugh");
    assert_eq!(intent, Intent::Other);
    assert!(text.contains(
        "opening hours, services and prices, booking, our team, location, contact details"
    ));
    assert!(text.contains("\"human\""));
}

#[test]
fn hindi_in_devanagari_gets_hindi() {
    let (text, intent, lang) = answer("शनिवार को कब खुलते हैं?");
    assert_eq!(
        intent,
        Intent::OpeningHours(HoursQuery::Day(Weekday::Saturday))
    );
    assert_eq!(lang, Lang::Hindi);
    assert_eq!(text, "शनिवार को हम 9 AM – 2 PM खुले रहते हैं।");
    let (text, _, lang) = answer("बुक कैसे करें?");
    assert_eq!(lang, Lang::Hindi);
    assert!(text.contains("https://book.example.com/glow"));
    let (text, _, _) = answer("रविवार को खुले हैं?");
    assert_eq!(text, "रविवार को हम बंद रहते हैं।");
    let (text, intent, _) = answer("मेरा डेटा हटाओ");
    assert_eq!(intent, Intent::DeleteMyData);
    assert!(text.contains("डेटा हटाने"));
    // Romanized Hindi is answered in English (no Devanagari).
    let (_, _, lang) = answer("kab khulte ho");
    assert_eq!(lang, Lang::English);
}

#[test]
fn hindi_only_when_business_speaks_it() {
    let mut req = request("शनिवार को कब खुलते हैं?");
    req.profile.languages = vec!["en".into()];
    let a = OfflineAssistant.answer(&req);
    assert_eq!(a.lang, Lang::English);
    assert_eq!(a.text, "On Saturday we're open 9 AM – 2 PM.");
}

#[test]
fn rights_acknowledgements_name_the_business() {
    for (msg, intent) in [
        ("stop", Intent::OptOut),
        ("delete my data", Intent::DeleteMyData),
        ("send me a copy of my data", Intent::ExportMyData),
    ] {
        let (text, got, _) = answer(msg);
        assert_eq!(got, intent);
        assert!(got.is_rights_request() && got.is_handled_locally());
        assert!(text.contains("Glow Salon"), "{text}");
    }
}

#[test]
fn no_hours_listed() {
    let mut req = request("are you open on saturday");
    req.profile.hours = Default::default();
    let text = OfflineAssistant.answer(&req).text;
    assert!(text.contains("haven't listed our opening hours"));
}

#[test]
fn deterministic() {
    let a = OfflineAssistant.answer(&request("what are your hours"));
    let b = OfflineAssistant.answer(&request("what are your hours"));
    assert_eq!(a, b);
}

#[test]
fn profile_validation() {
    let ok = salon();
    let mut p = ok.clone();
    p.timezone = "Mars/Olympus".into();
    assert_eq!(p.validate(), Err(ProfileError::UnknownTimeZone));
    let mut p = ok.clone();
    p.name = "  ".into();
    assert_eq!(p.validate(), Err(ProfileError::Empty("name")));
    let mut p = ok.clone();
    p.booking_links[0].url = "javascript:alert(1)".into();
    assert_eq!(p.validate(), Err(ProfileError::InvalidUrl));
    let mut p = ok.clone();
    p.services.push(p.services[0].clone());
    assert_eq!(p.validate(), Err(ProfileError::DuplicateService));
    let mut p = ok.clone();
    p.hours.saturday.push(p.hours.saturday[0]);
    assert_eq!(p.validate(), Err(ProfileError::OverlappingIntervals));
    let mut p = ok.clone();
    p.languages = vec!["english language".into()];
    assert_eq!(p.validate(), Err(ProfileError::InvalidLanguage));
    let mut p = ok;
    p.handoff_message = String::new();
    assert_eq!(p.validate(), Err(ProfileError::Empty("handoff_message")));
}

#[test]
fn clock_time_parsing() {
    assert_eq!(ClockTime::parse("9:05").unwrap().minutes(), 545);
    assert_eq!(ClockTime::parse("24:00").unwrap().to_12h(), "midnight");
    assert_eq!(ClockTime::parse("12:00").unwrap().to_12h(), "12 PM");
    assert_eq!(ClockTime::parse("00:30").unwrap().to_12h(), "12:30 AM");
    for bad in ["24:01", "7", "07:5", "aa:bb", "-1:00", "25:00", "", "07:60"] {
        assert!(ClockTime::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn profile_json_round_trip_and_validation() {
    let json = serde_json::to_string(&salon()).unwrap();
    assert!(json.contains(r#""open":"09:00""#));
    let back = BusinessProfile::from_json(&json).unwrap();
    assert_eq!(back, salon());
    let bad = json.replace("Asia/Kolkata", "Nowhere/City");
    assert_eq!(
        BusinessProfile::from_json(&bad),
        Err(ProfileError::UnknownTimeZone)
    );
    let bad = json.replace(r#""open":"09:00""#, r#""open":"9am""#);
    assert!(matches!(
        BusinessProfile::from_json(&bad),
        Err(ProfileError::Json(_))
    ));
}

#[test]
fn debug_output_carries_no_names_or_text() {
    let req = request("my name is Priya, book me with Asha");
    let dbg = format!("{req:?} {:?}", OfflineAssistant.answer(&req));
    for secret in [
        "Priya",
        "Asha",
        "Glow Salon",
        "MG Road",
        "hello@glow",
        "Haircut",
    ] {
        assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
    }
}

#[test]
fn pseudonym_is_hex_never_a_phone_number() {
    assert!(Pseudonym::parse("+919876543210").is_err());
    assert!(Pseudonym::parse("919876543210").is_err()); // too short
    assert!(Pseudonym::parse("3F9A0C7E5B1D24681F9A0C7E5B1D2468").is_err()); // upper case
    assert!(Pseudonym::parse(common::PSEUDONYM).is_ok());
}

proptest! {
    #[test]
    fn any_text_gets_a_nonempty_answer(msg in "\\PC{1,200}") {
        let mut req = request("x");
        req.customer_message = msg;
        let a = OfflineAssistant.answer(&req);
        prop_assert!(!a.text.trim().is_empty());
    }

    #[test]
    fn intent_ignores_case_and_decoration(idx in 0usize..6, deco in "[!?. 🙂🙏]{0,5}") {
        let msgs = ["how do i book", "delete my data", "stop", "talk to a human", "opening hours", "namaste"];
        let base = detect_intent(msgs[idx]);
        let decorated = format!("{deco}{}{deco}", msgs[idx].to_uppercase());
        prop_assert_eq!(detect_intent(&decorated), base);
    }
}
