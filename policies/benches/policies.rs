//! Per-call costs: deciding, redacting a chat message, building a tenant's
//! effective policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use smartchat_policies::{Category, Policy, ProcessorId, Purpose, SubjectState, TenantOverrides};

fn benches(c: &mut Criterion) {
    let platform = Policy::platform_default().unwrap();
    let overrides =
        TenantOverrides::from_toml_str("forbid_processors = [\"deepseek\"]\n", "t").unwrap();
    let eff = platform.effective_for(&overrides).unwrap();
    let openai = ProcessorId::new("openai").unwrap();
    let subject = SubjectState::default();
    c.bench_function("may (allow, openai, 2 categories)", |b| {
        b.iter(|| {
            eff.may(
                black_box(&openai),
                black_box(&[Category::Conversations, Category::LeadData]),
                Purpose::RespondToEnquiries,
                &subject,
            )
        })
    });
    let plain = "Hi, I would like to book a haircut for 2 people on 26/11/2026 at 10:30. \
                 Is Rs 1500 the price for both? My booking code was BK-2026-7781, thanks! \
                 Also, do you open on Sunday mornings before 9? We are coming from the station.";
    let with_ids = "Hi, my card is 4111 1111 1111 1111 and PAN ABCPE1234F, mail me at \
                    someone@example.com or call my wife on 98765 43210; booking on 26/11/2026 \
                    at 10:30 for Rs 1500, code BK-2026-7781. Aadhaar 2341 2341 2346 if needed.";
    let r = eff.redactor();
    c.bench_function("redact 300-byte message, no identifiers", |b| {
        b.iter(|| r.redact(black_box(plain), Some("+91 91234 56789")))
    });
    c.bench_function("redact 300-byte message, 5 identifiers", |b| {
        b.iter(|| r.redact(black_box(with_ids), Some("+91 91234 56789")))
    });
    c.bench_function("effective_for (one override)", |b| {
        b.iter(|| platform.effective_for(black_box(&overrides)).unwrap())
    });
    c.bench_function("platform_default (parse, validate, digest)", |b| {
        b.iter(|| Policy::platform_default().unwrap())
    });
}

criterion_group!(policies, benches);
criterion_main!(policies);
