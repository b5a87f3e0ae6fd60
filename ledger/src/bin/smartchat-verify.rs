//! `smartchat-verify`: the auditor's tool. Verifies a smartchat ledger — an exported bundle
//! file or the database itself, read-only — with nothing but the log's public key. It never
//! needs or reads a secret, and never writes to what it verifies.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use smartchat_ledger::{
    Report, TenantReport, TlogProof, VerifierKey, VerifyOptions, verify_bundle,
    verify_tenant_bundle,
};

/// Verify a smartchat audit ledger: every entry hash and chain link, sequence numbers and
/// times, every checkpoint signature and root, consistency between consecutive checkpoints.
///
/// Exit status: 0 verified, 1 verification failed, 2 usage or I/O error.
#[derive(Parser, Debug)]
#[command(
    name = "smartchat-verify",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// A bundle file (from the ledger export), or a database URL: sqlite://PATH or
    /// postgres://USER@HOST/DB (opened read-only).
    source: Option<String>,

    /// The log's public key as published by the processor (C2SP vkey:
    /// name+hexid+base64key). Required for a database; for a bundle, the bundle's key must
    /// equal it (a replaced key is detected).
    #[arg(long, env = "SMARTCHAT_LEDGER_KEY")]
    key: Option<String>,

    /// Also check that entry N is included in the latest checkpoint (Merkle inclusion proof).
    #[arg(long, value_name = "N")]
    prove_seq: Option<u64>,

    /// Verify an offline inclusion proof (c2sp.org/tlog-proof@v1 file) for the entry whose
    /// hash is given with --entry-hash. Needs --key.
    #[arg(long, value_name = "FILE", requires_all = ["entry_hash", "key"])]
    tlog_proof: Option<std::path::PathBuf>,

    /// Hex entry hash for --tlog-proof.
    #[arg(long, value_name = "HEX")]
    entry_hash: Option<String>,

    /// A signed checkpoint you obtained earlier (a file with the signed note); repeatable.
    /// The ledger must still contain its entries and reproduce its root, which detects a
    /// truncated log even if its later checkpoints were removed too.
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<std::path::PathBuf>,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,

    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    progress: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify one tenant's bundle (GET /api/v1/ledger/export): each of its entries with its
    /// inclusion proof against one signed checkpoint; no other tenant's entry is needed.
    /// It proves the entries are unaltered and in the signed log, not that none is missing.
    TenantBundle {
        /// The tenant bundle file (JSON).
        file: std::path::PathBuf,
        /// The log's public key as published by the processor; the bundle's key must equal
        /// it. Without it the bundle's own key is used, which proves nothing about who
        /// signed.
        #[arg(long, env = "SMARTCHAT_LEDGER_KEY")]
        key: Option<String>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::TenantBundle { file, key, json }) => run_tenant(file, key.as_deref(), *json),
        None => run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("smartchat-verify: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    if args.source.is_none() && args.tlog_proof.is_none() {
        return Err(
            "nothing to verify: give a bundle file or database URL, or --tlog-proof".into(),
        );
    }
    let mut ok = true;
    let mut json = serde_json::Map::new();
    if let Some(path) = &args.tlog_proof {
        let (good, text) = check_tlog_proof(args, path)?;
        ok &= good;
        json.insert(
            "tlog_proof".into(),
            serde_json::json!({ "ok": good, "detail": text }),
        );
        if !args.json {
            let _ = writeln!(std::io::stdout(), "tlog-proof {}: {}", path.display(), text);
        }
    }
    if let Some(source) = &args.source {
        let bar = progress_bar();
        let mut opts = VerifyOptions {
            trusted_key: args.key.clone(),
            prove_seq: args.prove_seq,
            progress: None,
            trusted_checkpoints: args
                .checkpoints
                .iter()
                .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
                .collect::<Result<_, _>>()?,
        };
        if let Some(b) = bar.clone() {
            opts.progress = Some(Arc::new(move |done, total| {
                if total > 0 {
                    b.set_length(total);
                }
                b.set_position(done);
            }));
        } else if args.progress {
            // stderr is not a terminal (a log file, CI): plain lines, at most one a second.
            let last = std::sync::Mutex::new(None::<std::time::Instant>);
            opts.progress = Some(Arc::new(move |done, total| {
                if let Ok(mut l) = last.lock() {
                    if l.is_none_or(|t| t.elapsed().as_secs() >= 1) || done == total {
                        *l = Some(std::time::Instant::now());
                        let _ = writeln!(std::io::stderr(), "verified {done}/{total} entries");
                    }
                }
            }));
        }
        let report = verify_source(source, &opts).map_err(|e| e.to_string())?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        ok &= report.ok();
        if args.json {
            json.insert("ok".into(), serde_json::Value::Bool(report.ok()));
            json.insert(
                "report".into(),
                serde_json::to_value(&report).map_err(|e| e.to_string())?,
            );
        } else {
            print_summary(source, &report);
        }
    }
    if args.json {
        json.insert("ok".into(), serde_json::Value::Bool(ok));
        let _ = writeln!(std::io::stdout(), "{}", serde_json::Value::Object(json));
    }
    Ok(ok)
}

fn run_tenant(path: &std::path::Path, key: Option<&str>, json: bool) -> Result<bool, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let report = verify_tenant_bundle(&bytes, key).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({ "ok": report.ok(), "report": report });
        let _ = writeln!(out, "{v}");
    } else {
        let _ = write_tenant_summary(&mut out, &path.display().to_string(), &report, key);
    }
    Ok(report.ok())
}

fn write_tenant_summary(
    out: &mut impl std::io::Write,
    source: &str,
    r: &TenantReport,
    key: Option<&str>,
) -> std::io::Result<()> {
    let status = if r.ok() { "OK" } else { "FAILED" };
    writeln!(out, "smartchat-verify: {status}  (tenant bundle {source})")?;
    writeln!(out, "  log           {}", r.origin)?;
    writeln!(out, "  public key    {}", r.vkey)?;
    if key.is_none() {
        writeln!(
            out,
            "  WARNING       no --key given: the bundle's own key was trusted"
        )?;
    }
    writeln!(out, "  tenant        {}", r.tenant)?;
    writeln!(
        out,
        "  checkpoint    size {}, root {}",
        r.checkpoint_size, r.checkpoint_root
    )?;
    writeln!(
        out,
        "  entries       {} verified, each included in the signed tree",
        r.entries
    )?;
    if let Some(f) = &r.first_failure {
        match f.seq {
            Some(s) => writeln!(out, "  FIRST BAD SEQ {s}: {}", f.what),
            None => writeln!(out, "  FAILURE       {}", f.what),
        }?;
    }
    Ok(())
}

fn verify_source(
    source: &str,
    opts: &VerifyOptions,
) -> Result<Report, smartchat_ledger::LedgerError> {
    if source.starts_with("sqlite:")
        || source.starts_with("postgres://")
        || source.starts_with("postgresql://")
    {
        #[cfg(feature = "db")]
        return smartchat_ledger::verify_database(source, opts);
        #[cfg(not(feature = "db"))]
        return Err(smartchat_ledger::LedgerError::Invalid(
            "this build has no database support (feature `db`)".into(),
        ));
    }
    let file = std::fs::File::open(source)?;
    verify_bundle(file, opts)
}

fn check_tlog_proof(args: &Args, path: &std::path::Path) -> Result<(bool, String), String> {
    let key =
        VerifierKey::parse(args.key.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let hash: [u8; 32] = hex::decode(args.entry_hash.as_deref().unwrap_or_default())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or("--entry-hash must be 64 hex digits")?;
    let proof = match TlogProof::parse(&text) {
        Ok(p) => p,
        Err(e) => return Ok((false, format!("FAILED: {e}"))),
    };
    Ok(match proof.verify(&hash, &key) {
        Ok(cp) => (
            true,
            format!(
                "OK: entry {} is in the signed tree of size {}",
                proof.index, cp.size
            ),
        ),
        Err(e) => (false, format!("FAILED: {e}")),
    })
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    // indicatif draws only on a terminal; --progress elsewhere prints plain lines instead.
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} entries ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

fn print_summary(source: &str, r: &Report) {
    // Write errors (a closed pipe) are ignored: the exit status carries the verdict.
    let mut out = std::io::stdout().lock();
    let _ = write_summary(&mut out, source, r);
}

fn write_summary(out: &mut impl std::io::Write, source: &str, r: &Report) -> std::io::Result<()> {
    let status = if r.ok() { "OK" } else { "FAILED" };
    writeln!(out, "smartchat-verify: {status}  ({source})")?;
    writeln!(out, "  log           {}", r.origin)?;
    writeln!(out, "  public key    {}", r.vkey)?;
    writeln!(
        out,
        "  entries       {} verified, from seq {}",
        r.entries, r.from_seq
    )?;
    writeln!(
        out,
        "  checkpoints   {} signatures verified, {} roots recomputed, {} consistency proofs checked",
        r.checkpoints, r.roots_checked, r.consistency_checked
    )?;
    if let Some((size, root)) = &r.latest_checkpoint {
        writeln!(out, "  latest        size {size}, root {root}")?;
    }
    if let Some(size) = r.inclusion_proven_in {
        writeln!(out, "  inclusion     proven in the tree of size {size}")?;
    }
    if let Some(f) = &r.first_failure {
        match f.seq {
            Some(s) => writeln!(out, "  FIRST BAD SEQ {s}: {}", f.what),
            None => writeln!(out, "  FAILURE       {}", f.what),
        }?;
    }
    Ok(())
}
