//! Shared fixtures for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use smartchat_assistant::{
    BookingLink, BusinessProfile, ClockTime, ConversationTurn, Interval, Pseudonym, ReplyRequest,
    Role, Service, StaffMember, WeeklyHours,
};
use time::OffsetDateTime;
use time::macros::datetime;

pub const PSEUDONYM: &str = "3f9a0c7e5b1d24681f9a0c7e5b1d2468";

fn iv(open: &str, close: &str) -> Interval {
    Interval::new(
        ClockTime::parse(open).unwrap(),
        ClockTime::parse(close).unwrap(),
    )
    .unwrap()
}

/// Glow Salon, Pune: closed Sunday and Monday; Tue-Fri 10-13 and 14-19; Sat 9-14.
pub fn salon() -> BusinessProfile {
    let split = vec![iv("10:00", "13:00"), iv("14:00", "19:00")];
    let hours = WeeklyHours {
        monday: vec![],
        tuesday: split.clone(),
        wednesday: split.clone(),
        thursday: split.clone(),
        friday: split,
        saturday: vec![iv("09:00", "14:00")],
        sunday: vec![],
    };
    let p = BusinessProfile {
        name: "Glow Salon".into(),
        business_type: "hair salon".into(),
        timezone: "Asia/Kolkata".into(),
        hours,
        services: vec![
            Service {
                name: "Haircut".into(),
                description: "Wash, cut and style".into(),
                price: Some("₹300".into()),
                duration_minutes: Some(30),
            },
            Service {
                name: "Hair colour".into(),
                description: "Full colour with ammonia-free dye".into(),
                price: Some("₹1,200".into()),
                duration_minutes: Some(90),
            },
            Service {
                name: "Facial".into(),
                description: "Cleanse and glow facial".into(),
                price: Some("₹800".into()),
                duration_minutes: Some(45),
            },
        ],
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
        greeting: Some("Hello from Glow Salon! 💇".into()),
        handoff_message: "Sure, a member of our team will reply here shortly.".into(),
        languages: vec!["en".into(), "hi".into()],
        location: Some("12 MG Road, Pune".into()),
        contact: Some("hello@glow.example.com".into()),
    };
    p.validate().unwrap();
    p
}

/// Saturday 28 Nov 2026, 11:00 in Pune.
pub fn saturday_11() -> OffsetDateTime {
    datetime!(2026-11-28 11:00 +05:30)
}

pub fn request_at(message: &str, now: OffsetDateTime) -> ReplyRequest {
    let history = vec![
        ConversationTurn {
            role: Role::Customer,
            text: "hi".into(),
            at: now,
        },
        ConversationTurn {
            role: Role::Assistant,
            text: "Hello from Glow Salon!".into(),
            at: now,
        },
    ];
    ReplyRequest::new(
        salon(),
        history,
        message,
        Pseudonym::parse(PSEUDONYM).unwrap(),
        now,
    )
    .unwrap()
}

pub fn request(message: &str) -> ReplyRequest {
    request_at(message, saturday_11())
}
