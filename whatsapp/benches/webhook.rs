//! Inbound hot path: signature verification and parsing of a typical webhook body, and a
//! 100-message batch. Run: `cargo bench -p smartchat-whatsapp --bench webhook`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smartchat_whatsapp::fake::{WebhookBuilder, WebhookUser};
use smartchat_whatsapp::{
    PhoneNumberId, RateLimiter, RateLimiterConfig, Recipient, parse_payload, signature_header,
    verify_signature,
};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn typical() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/text_message.json"
    ))
    .unwrap()
}

fn batch(n: usize) -> Vec<u8> {
    let mut b = WebhookBuilder::new().entry("106540352242922", "15550783881");
    for i in 0..n {
        let u = WebhookUser::both(
            &format!("1650555{i:04}"),
            &format!("US.1349120865530{i:04}"),
        )
        .named("Sheena Nelson");
        b = b.text(
            &u,
            &format!("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAz{i:06}"),
            "Does it come in another color? नमस्ते",
        );
    }
    b.build()
}

fn bench(c: &mut Criterion) {
    let body = typical();
    let sig = signature_header(SECRET, &body);
    let mut g = c.benchmark_group("webhook_typical");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_signature", |b| {
        b.iter(|| verify_signature(black_box(SECRET), black_box(&body), Some(&sig)).unwrap())
    });
    g.bench_function("parse", |b| {
        b.iter(|| parse_payload(black_box(&body)).unwrap())
    });
    g.bench_function("verify_parse_events", |b| {
        b.iter(|| {
            verify_signature(SECRET, black_box(&body), Some(&sig)).unwrap();
            let p = parse_payload(&body).unwrap();
            p.events().count()
        })
    });
    g.finish();

    let big = batch(100);
    let big_sig = signature_header(SECRET, &big);
    let mut g = c.benchmark_group("webhook_batch_100");
    g.throughput(Throughput::Elements(100));
    g.bench_function("verify_parse_events", |b| {
        b.iter(|| {
            verify_signature(SECRET, black_box(&big), Some(&big_sig)).unwrap();
            let p = parse_payload(&big).unwrap();
            p.events().count()
        })
    });
    g.finish();

    let rl = RateLimiter::new(
        RateLimiterConfig {
            per_number_per_second: u32::MAX,
            per_number_burst: u32::MAX,
            ..RateLimiterConfig::default()
        },
        smartchat_whatsapp::ManualClock::new(),
    );
    let pn = PhoneNumberId::new("106540352242922").unwrap();
    let recipients: Vec<_> = (0..1000)
        .map(|i| Recipient::parse(&format!("1650555{i:04}")).unwrap())
        .collect();
    let mut i = 0usize;
    c.bench_function("ratelimit_check", |b| {
        b.iter(|| {
            i = (i + 1) % recipients.len();
            let _ = rl.check(&pn, black_box(&recipients[i]));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
