//! Ledger benchmarks (run with `cargo bench -p smartchat-ledger --bench verify_throughput`):
//!
//! 1. generates a bundle of `LEDGER_BENCH_N` entries (default 10,000,000) of 200 to 400 bytes,
//!    with checkpoints at 10 %, 50 % and 100 % of the size;
//! 2. times `verify_bundle` over it (best of 3), beside `b3sum` and `sha256sum` over the same
//!    file in the same run;
//! 3. times inclusion and consistency proof generation at that size (stored hashes in memory,
//!    the same code path the database-backed store uses after its single read).
//!
//! The bundle is cached next to the target directory and regenerated when missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use smartchat_ledger::merkle;
use smartchat_ledger::*;

const ORIGIN: &str = "bench.smartchat.test/log";

fn draft(i: u64) -> EntryDraft {
    let mut d = EntryDraft::new(
        EventKind::AI_PROVIDER_CALL,
        Actor::Provider(ProviderCode::OPENAI.0),
    )
    .tenant([(i % 97) as u8; 16])
    .subject(*blake3::hash(&(i % 10_007).to_le_bytes()).as_bytes())
    .purpose(Purpose::SERVICE_DELIVERY)
    .policy_version([3; 32])
    .reference(Reference::id(RefKind::MESSAGE, [(i % 251) as u8; 16]))
    .reference(Reference::digest(
        RefKind::RECORD_DIGEST,
        [(i % 13) as u8; 32],
    ))
    .attr(AttrKey::PROVIDER, AttrValue::Code(1))
    .attr(AttrKey::DATA_CATEGORY, AttrValue::Code(1))
    .attr(AttrKey::TOKENS_IN, AttrValue::U64(i % 4000))
    .attr(AttrKey::TOKENS_OUT, AttrValue::U64(i % 700))
    .attr(AttrKey::LATENCY_MICROS, AttrValue::U64(i % 900_000));
    // 0 to 4 digests: entries of 242 to 382 bytes.
    for k in 0..(i % 5) {
        d = d.attr(
            AttrKey::REQUEST_DIGEST,
            AttrValue::Digest([(k + i) as u8; 32]),
        );
    }
    d
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[11; 32])).unwrap()
}

/// Generates the bundle; returns the stored tree hashes (for the proof benchmarks).
fn generate(n: u64, path: &Path) -> (Vec<Hash>, u64) {
    let t0 = Instant::now();
    let cps = [n / 10, n / 2, n];
    let entries_path = path.with_extension("entries.tmp");
    let mut ew =
        std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(&entries_path).unwrap());
    let mut tree: Vec<Hash> = Vec::with_capacity((2 * n + 64) as usize);
    let mut prev = [0u8; 32];
    let mut time = 1_790_000_000_000_000i64;
    let mut bytes_total = 0u64;
    for seq in 0..n {
        let e = Entry {
            seq,
            time_micros: time,
            prev,
            draft: draft(seq),
        };
        let b = e.encode().unwrap();
        let h = entry_hash(&b);
        ew.write_all(&(b.len() as u32).to_be_bytes()).unwrap();
        ew.write_all(&b).unwrap();
        ew.write_all(&h).unwrap();
        bytes_total += b.len() as u64;
        for (id, sh) in merkle::stored_hashes_for_leaf::<LedgerError>(seq, &h, |ids| {
            Ok(ids.iter().map(|&i| tree[i as usize]).collect())
        })
        .unwrap()
        {
            debug_assert_eq!(id as usize, tree.len());
            tree.push(sh);
        }
        prev = h;
        if seq % 64 == 63 {
            time += 1;
        }
    }
    ew.flush().unwrap();
    drop(ew);
    let s = signer();
    let read = |ids: &[u64]| -> Result<Vec<Hash>, LedgerError> {
        Ok(ids.iter().map(|&i| tree[i as usize]).collect())
    };
    let mut checkpoints = Vec::new();
    let mut last = 0u64;
    for &size in &cps {
        let root = merkle::tree_root(size, read).unwrap();
        let note = s
            .sign_note(&Checkpoint {
                origin: ORIGIN.into(),
                size,
                root,
            })
            .unwrap();
        let proof = if last == 0 {
            vec![]
        } else {
            merkle::consistency_proof(last, size, read).unwrap()
        };
        checkpoints.push(BundleCheckpoint {
            note,
            proof_from_previous: proof,
        });
        last = size;
    }
    let header = BundleHeader {
        vkey: s.vkey(),
        from: 0,
        to: n,
        prefix: vec![],
        checkpoints,
    };
    // Header, then the entries section, then the trailer.
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    // An empty bundle is header + 16-byte trailer; keep the header and set its `to`.
    let mut head = write_bundle(&BundleHeader { to: 0, ..header }, &[]).unwrap();
    head.truncate(head.len() - 16);
    // Patch `to` (the header's to field sits right before the prefix count).
    let vlen = u16::from_be_bytes([head[9], head[10]]) as usize;
    let to_at = 8 + 1 + 2 + vlen + 8;
    head[to_at..to_at + 8].copy_from_slice(&n.to_be_bytes());
    out.write_all(&head).unwrap();
    std::io::copy(&mut std::fs::File::open(&entries_path).unwrap(), &mut out).unwrap();
    out.write_all(TRAILER_MAGIC).unwrap();
    out.write_all(&n.to_be_bytes()).unwrap();
    out.flush().unwrap();
    std::fs::remove_file(&entries_path).unwrap();
    println!(
        "generated {n} entries ({:.1} MB of entry encodings, avg {:.0} B/entry) in {:.1} s",
        bytes_total as f64 / 1e6,
        bytes_total as f64 / n as f64,
        t0.elapsed().as_secs_f64()
    );
    (tree, bytes_total)
}

fn time_cmd(cmd: &str, file: &Path) -> Option<Duration> {
    let t = Instant::now();
    let out = Command::new(cmd).arg(file).output().ok()?;
    out.status.success().then(|| t.elapsed())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes --bench; as a test (cargo test --all-targets) only a smoke run.
    let default_n = if std::env::args().any(|a| a == "--bench") {
        10_000_000
    } else {
        10_000
    };
    let n: u64 = std::env::var("LEDGER_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_n);
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("ledger-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("bench-{n}.bundle"));
    let (tree, _) = generate(n, &path);
    let file_len = std::fs::metadata(&path).unwrap().len();
    println!(
        "bundle: {} ({:.1} MB)",
        path.display(),
        file_len as f64 / 1e6
    );
    println!("threads: rayon {}", rayon::current_num_threads());

    // Warm the page cache once, as every tool below reads the same cached file.
    let _ = time_cmd("cat", &path);
    let opts = VerifyOptions {
        trusted_key: Some(signer().vkey()),
        ..VerifyOptions::default()
    };
    let mut best = Duration::MAX;
    for run in 0..3 {
        let t = Instant::now();
        let r = verify_bundle(std::fs::File::open(&path).unwrap(), &opts).unwrap();
        let el = t.elapsed();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.entries, n);
        assert_eq!(r.roots_checked, 3);
        println!("verify run {run}: {:.3} s", el.as_secs_f64());
        best = best.min(el);
    }
    let secs = best.as_secs_f64();
    println!(
        "VERIFY  {n} entries in {secs:.3} s = {:.0} entries/s, {:.0} MB/s of bundle",
        n as f64 / secs,
        file_len as f64 / 1e6 / secs
    );
    for tool in ["b3sum", "sha256sum"] {
        match (0..2).filter_map(|_| time_cmd(tool, &path)).min() {
            Some(d) => println!(
                "{tool:<9} same file: {:.3} s = {:.0} MB/s (verify takes {:.2}x its time)",
                d.as_secs_f64(),
                file_len as f64 / 1e6 / d.as_secs_f64(),
                secs / d.as_secs_f64()
            ),
            None => println!("{tool}: not available"),
        }
    }

    // Proof generation at size n, from the stored hashes.
    let read = |ids: &[u64]| -> Result<Vec<Hash>, LedgerError> {
        Ok(ids.iter().map(|&i| tree[i as usize]).collect())
    };
    let mut rng = StdRng::seed_from_u64(1);
    let k = 10_000;
    let idx: Vec<u64> = (0..k).map(|_| rng.gen_range(0..n)).collect();
    let t = Instant::now();
    let mut total_hashes = 0usize;
    for &i in &idx {
        total_hashes += merkle::inclusion_proof(i, n, read).unwrap().len();
    }
    let incl = t.elapsed() / k as u32;
    let p = merkle::inclusion_proof(idx[0], n, read).unwrap();
    let leaf_read = merkle::inclusion_proof_ids(idx[0], n).unwrap().len();
    let ms: Vec<u64> = (0..k).map(|_| rng.gen_range(1..n)).collect();
    let t = Instant::now();
    for &m in &ms {
        total_hashes += merkle::consistency_proof(m, n, read).unwrap().len();
    }
    let cons = t.elapsed() / k as u32;
    let cp = merkle::consistency_proof(ms[0], n, read).unwrap();
    let t = Instant::now();
    for _ in 0..1000 {
        merkle::tree_root(n, read).unwrap();
    }
    let root_t = t.elapsed() / 1000;
    println!(
        "PROOFS  at size {n}: inclusion {:.1} us ({} hashes, {} stored hashes read), consistency {:.1} us ({} hashes), root {:.1} us  [{total_hashes}]",
        incl.as_secs_f64() * 1e6,
        p.len(),
        leaf_read,
        cons.as_secs_f64() * 1e6,
        cp.len(),
        root_t.as_secs_f64() * 1e6
    );
    // Appending through the generic appender into the in-memory store (batches of 1,000),
    // and signing a checkpoint after each batch (consistency proof checked before signing).
    let m = (n / 10).max(1000);
    let mut store = MemStore::new();
    let s = signer();
    let t = Instant::now();
    let mut signed = 0u32;
    let mut sign_time = Duration::ZERO;
    for b in 0..m / 1000 {
        let drafts = (b * 1000..(b + 1) * 1000).map(draft).collect();
        futures::executor::block_on(append_batch(&mut store, b as i64, drafts)).unwrap();
        if b % 100 == 99 {
            let ts = Instant::now();
            futures::executor::block_on(sign_checkpoint(&mut store, &s, b as i64)).unwrap();
            sign_time += ts.elapsed();
            signed += 1;
        }
    }
    let el = t.elapsed() - sign_time;
    println!(
        "APPEND  {m} entries in batches of 1,000 into MemStore: {:.0} entries/s; sign_checkpoint with consistency check: {:.0} us each ({signed} signed)",
        m as f64 / el.as_secs_f64(),
        sign_time.as_secs_f64() * 1e6 / f64::from(signed.max(1))
    );

    if std::env::var_os("LEDGER_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_file(&path);
    }
}
