//! Rule-extractor throughput: single messages (a mix of English, Hindi and romanized
//! Hindi lead messages) and a 10-turn conversation, against a profile with 8 services.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smartchat_assistant::{BusinessProfile, ConversationTurn, Role, RuleExtractor, Service};
use std::hint::black_box;

const MESSAGES: &[&str] = &[
    "My name is Asha, I want a haircut tomorrow at 5pm",
    "main Asha hoon, kal shaam 5 baje baal katwana hai",
    "मेरा नाम आशा है, परसों सुबह 10 बजे फेशियल करवाना है",
    "Saturday morning for hair colour? budget 5000 tak",
    "Can I come on 14th Dec? under 2000 please",
    "next Monday evening, manicure and pedicure",
    "Rs 1500 is fine",
    "nahi chahiye, thanks",
    "done, see you",
    "do you have parking near the salon?",
    "हेयरकट कल दोपहर 3 बजे, 1000 रुपये तक",
    "hello",
];

fn profile() -> BusinessProfile {
    let mut p: BusinessProfile = serde_json::from_value(serde_json::json!({
        "name": "Glow Salon", "business_type": "hair salon", "timezone": "Asia/Kolkata",
        "handoff_message": "A member of our team will reply shortly.",
        "booking_links": [{"label": "Book online", "url": "https://book.example.com/glow"}]
    }))
    .unwrap();
    p.services = [
        "Haircut",
        "Hair colour",
        "Facial",
        "Hair spa",
        "Manicure",
        "Pedicure",
        "Beard trim",
        "Bridal makeup",
    ]
    .iter()
    .map(|n| Service {
        name: (*n).into(),
        description: String::new(),
        price: Some("₹500".into()),
        duration_minutes: Some(45),
    })
    .collect();
    p.validate().unwrap();
    p
}

fn bench(c: &mut Criterion) {
    let now = time::macros::datetime!(2026-11-28 11:00 +05:30);
    let p = profile();
    let singles: Vec<Vec<ConversationTurn>> = MESSAGES
        .iter()
        .map(|m| {
            vec![ConversationTurn {
                role: Role::Customer,
                text: (*m).into(),
                at: now,
            }]
        })
        .collect();
    let conversation: Vec<ConversationTurn> = MESSAGES[..10]
        .iter()
        .enumerate()
        .map(|(i, m)| ConversationTurn {
            role: if i % 3 == 2 {
                Role::Assistant
            } else {
                Role::Customer
            },
            text: (*m).into(),
            at: now,
        })
        .collect();

    let mut g = c.benchmark_group("leads");
    g.throughput(Throughput::Elements(u64::try_from(MESSAGES.len()).unwrap()));
    g.bench_function("rules_single_message_x12", |b| {
        b.iter(|| {
            for turns in &singles {
                black_box(RuleExtractor::extract(&p, black_box(turns), now));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("rules_conversation_10_turns", |b| {
        b.iter(|| black_box(RuleExtractor::extract(&p, black_box(&conversation), now)))
    });
    // Worst case the extractor reads: one turn of MAX_RULE_CHARS characters.
    let long: String = MESSAGES
        .iter()
        .cycle()
        .flat_map(|m| m.chars().chain(std::iter::once(' ')))
        .take(smartchat_assistant::leads::MAX_RULE_CHARS)
        .collect();
    let long_turn = vec![ConversationTurn {
        role: Role::Customer,
        text: long,
        at: now,
    }];
    g.bench_function("rules_one_8000_char_turn", |b| {
        b.iter(|| black_box(RuleExtractor::extract(&p, black_box(&long_turn), now)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
