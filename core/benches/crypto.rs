//! Crypto costs of the key hierarchy: one 300-byte message sealed and opened under a subject
//! key (XChaCha20-Poly1305), the same with plain age per message (the alternative we did not
//! choose), a subject-key unwrap (one age X25519 decryption), and a 10,000-message history
//! opened the way `Store::subject_messages` does (one unwrap, then one AEAD open each).
#![expect(clippy::unwrap_used, reason = "bench")]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use smartchat_core::crypto::{SubjectKey, TenantKey};

fn message() -> Vec<u8> {
    "Hi! I'd like to book a bridal makeup trial for Saturday 14th around 11am. Is Priya free then? \
     Also what does the gold facial cost, and do you do home visits in Indiranagar? My sister wants \
     to come along for a haircut too, so two slots if possible. Thanks so much, looking forward!!"
        .bytes()
        .cycle()
        .take(300)
        .collect()
}

fn bench(c: &mut Criterion) {
    let tenant = TenantKey::generate();
    let subject = SubjectKey::generate();
    let wrapped = tenant.wrap_subject_key(&subject).unwrap();
    let msg = message();
    let sealed = subject.seal("messages.body_ct|t|m", &msg).unwrap();

    c.bench_function("seal 300 B (subject key, XChaCha20-Poly1305)", |b| {
        b.iter(|| subject.seal("messages.body_ct|t|m", &msg).unwrap())
    });
    c.bench_function("open 300 B (subject key, XChaCha20-Poly1305)", |b| {
        b.iter(|| subject.open("messages.body_ct|t|m", &sealed).unwrap())
    });
    let recipient = age::x25519::Identity::generate();
    let age_ct = age::encrypt(&recipient.to_public(), &msg).unwrap();
    c.bench_function("age encrypt 300 B (per-message age, not used)", |b| {
        b.iter(|| age::encrypt(&recipient.to_public(), &msg).unwrap())
    });
    c.bench_function("age decrypt 300 B (per-message age, not used)", |b| {
        b.iter(|| age::decrypt(&recipient, &age_ct).unwrap())
    });
    c.bench_function("unwrap subject key (age X25519)", |b| {
        b.iter(|| tenant.unwrap_subject_key(&wrapped).unwrap())
    });
    let history: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|i| {
            let ctx = format!("messages.body_ct|t|{i}");
            let ct = subject.seal(&ctx, &msg).unwrap();
            (ctx, ct)
        })
        .collect();
    let mut g = c.benchmark_group("history");
    g.sample_size(10);
    g.bench_function(
        "open 10,000-message history (1 unwrap + 10,000 AEAD)",
        |b| {
            b.iter_batched(
                || (),
                |()| {
                    let k = tenant.unwrap_subject_key(&wrapped).unwrap();
                    history
                        .iter()
                        .map(|(ctx, ct)| k.open(ctx, ct).unwrap().len())
                        .sum::<usize>()
                },
                BatchSize::SmallInput,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
