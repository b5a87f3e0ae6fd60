//! The `smartchat-verify` binary: exit codes, summary, JSON, key check, tlog-proof files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::executor::block_on;
use smartchat_ledger::*;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smartchat-verify"))
}

#[test]
fn verifies_a_bundle_and_fails_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = build(120, 50, &[100, 120]);
    let good = dir.path().join("good.bundle");
    std::fs::write(&good, export(&store, 0, 120)).unwrap();

    let out = bin()
        .arg(&good)
        .arg("--key")
        .arg(signer().vkey())
        .arg("--prove-seq")
        .arg("5")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("OK") && stdout.contains("120 verified"),
        "{stdout}"
    );

    // --progress off a terminal: plain progress lines on stderr.
    let out = bin().arg(&good).arg("--progress").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("verified 120/120 entries"));

    let out = bin().arg(&good).arg("--json").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["entries"], 120);

    // Replaced key.
    let out = bin()
        .arg(&good)
        .arg("--key")
        .arg(other_signer().vkey())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // One byte changed in entry 0's body (just after the header) fails with exit 1 and a seq.
    let mut bytes = std::fs::read(&good).unwrap();
    let (_, entries) = parse_bundle(&bytes).unwrap();
    let body: usize = entries.iter().map(|(b, _)| 4 + b.len() + 32).sum();
    let first = bytes.len() - 16 - body;
    bytes[first + 4 + 30] ^= 0x40;
    let bad = dir.path().join("bad.bundle");
    std::fs::write(&bad, &bytes).unwrap();
    let out = bin().arg(&bad).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["first_failure"]["seq"], 0);

    // A tlog-proof file.
    let tp = block_on(tlog_proof(&mut store, 42)).unwrap();
    let pf = dir.path().join("e42.tlog-proof");
    std::fs::write(&pf, tp.render()).unwrap();
    let h = hex::encode(store.entries()[42].hash);
    let out = bin()
        .args([
            "--key",
            &signer().vkey(),
            "--entry-hash",
            &h,
            "--tlog-proof",
        ])
        .arg(&pf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let h43 = hex::encode(store.entries()[43].hash);
    let out = bin()
        .args([
            "--key",
            &signer().vkey(),
            "--entry-hash",
            &h43,
            "--tlog-proof",
        ])
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // Usage errors exit 2.
    assert_eq!(bin().output().unwrap().status.code(), Some(2));
    assert_eq!(
        bin()
            .arg(dir.path().join("missing"))
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert!(bin().arg("--help").output().unwrap().status.success());
}
