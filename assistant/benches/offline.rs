//! Offline assistant throughput: intent detection alone, and full replies (intent +
//! answer, including the time-zone conversion for hours questions), over a mix of
//! English, Hindi and romanized-Hindi messages.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smartchat_assistant::{
    BookingLink, BusinessProfile, ClockTime, Interval, OfflineAssistant, Pseudonym, ReplyRequest,
    Service, StaffMember, WeeklyHours, detect_intent,
};
use std::hint::black_box;

const MESSAGES: &[&str] = &[
    "What time do you open on Saturday?",
    "are you open now?",
    "How do I book?",
    "booking kaise karu",
    "how much is a haircut?",
    "what services do you offer",
    "kab khulte ho",
    "शनिवार को कब खुलते हैं?",
    "मेरा डेटा हटाओ",
    "talk to a human",
    "Hello!! 👋",
    "can you recommend something for dry frizzy hair after a swim?",
];

fn profile() -> BusinessProfile {
    let iv = |a: &str, b: &str| {
        Interval::new(ClockTime::parse(a).unwrap(), ClockTime::parse(b).unwrap()).unwrap()
    };
    let split = vec![iv("10:00", "13:00"), iv("14:00", "19:00")];
    BusinessProfile {
        name: "Glow Salon".into(),
        business_type: "hair salon".into(),
        timezone: "Asia/Kolkata".into(),
        hours: WeeklyHours {
            tuesday: split.clone(),
            wednesday: split.clone(),
            thursday: split.clone(),
            friday: split,
            saturday: vec![iv("09:00", "14:00")],
            ..WeeklyHours::default()
        },
        services: [
            "Haircut",
            "Hair colour",
            "Facial",
            "Hair spa",
            "Manicure",
            "Pedicure",
        ]
        .iter()
        .map(|n| Service {
            name: (*n).into(),
            description: "A popular service".into(),
            price: Some("₹500".into()),
            duration_minutes: Some(45),
        })
        .collect(),
        staff: vec![
            StaffMember {
                name: "Asha".into(),
                role: "senior stylist".into(),
            },
            StaffMember {
                name: "Ravi".into(),
                role: "colour specialist".into(),
            },
        ],
        booking_links: vec![BookingLink {
            label: "Book online".into(),
            url: "https://book.example.com/glow".into(),
        }],
        greeting: None,
        handoff_message: "A member of our team will reply shortly.".into(),
        languages: vec!["en".into(), "hi".into()],
        location: Some("12 MG Road, Pune".into()),
        contact: None,
    }
}

fn bench(c: &mut Criterion) {
    let now = time::macros::datetime!(2026-11-28 11:00 +05:30);
    let pseudonym = Pseudonym::parse("3f9a0c7e5b1d24681f9a0c7e5b1d2468").unwrap();
    let requests: Vec<ReplyRequest> = MESSAGES
        .iter()
        .map(|m| ReplyRequest::new(profile(), Vec::new(), *m, pseudonym.clone(), now).unwrap())
        .collect();
    let n = u64::try_from(MESSAGES.len()).unwrap();

    let mut g = c.benchmark_group("offline");
    g.throughput(Throughput::Elements(n));
    g.bench_function("detect_intent_x12", |b| {
        b.iter(|| {
            for m in MESSAGES {
                black_box(detect_intent(black_box(m)));
            }
        })
    });
    g.bench_function("reply_x12", |b| {
        b.iter(|| {
            for r in &requests {
                black_box(OfflineAssistant.answer(black_box(r)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
