//! The `smartchat` binary's commands added for the conversation, provider-chain and search
//! features, run as an operator would, on the embedded default (SQLite files in a fresh
//! data directory).

mod support;

use std::process::Command;

use anyhow::{Context as _, ensure};
use support::{create_glow_salon, smartchat, text};

#[test]
fn providers_chat_and_reindex_from_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    create_glow_salon(data)?;

    // The provider chain: shown, set, refused when unknown, reset.
    let o = smartchat(data, &["tenant", "providers", "glow-salon"])?;
    ensure!(text(&o).contains("platform's default"), "{}", text(&o));
    let o = smartchat(
        data,
        &[
            "tenant",
            "providers",
            "glow-salon",
            "--set",
            "deepseek,openai",
        ],
    )?;
    ensure!(
        o.status.success() && text(&o).contains("providers: deepseek, openai, then offline"),
        "{}",
        text(&o)
    );
    let o = smartchat(
        data,
        &["tenant", "providers", "glow-salon", "--set", "anthropic"],
    )?;
    ensure!(
        !o.status.success() && text(&o).contains("unknown provider"),
        "{}",
        text(&o)
    );
    let o = smartchat(data, &["tenant", "providers", "glow-salon", "--set", ""])?;
    ensure!(text(&o).contains("offline assistant only"), "{}", text(&o));

    // The sandbox chat: a question in, the offline assistant's answer out.
    let mut child = Command::new(env!("CARGO_BIN_EXE_smartchat"))
        .args(["chat", "--tenant", "glow-salon", "--from", "919000000042"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SMARTCHAT_DATA_DIR", data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(b"zebracorn hello, are you open?\n\n")?;
    }
    let o = child.wait_with_output()?;
    ensure!(
        o.status.success() && text(&o).contains("assistant> "),
        "{}",
        text(&o)
    );

    // Reindex: the message and the reply are indexed from the database, with progress.
    let o = smartchat(data, &["search", "reindex", "--tenant", "glow-salon"])?;
    ensure!(o.status.success(), "{}", text(&o));
    ensure!(text(&o).contains("2 messages indexed"), "{}", text(&o));
    // The index on disk holds no plaintext.
    let mut stack = vec![data.join("search")];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p)?;
                ensure!(
                    !bytes.windows(9).any(|w| w == b"zebracorn"),
                    "{}",
                    p.display()
                );
            }
        }
    }
    ensure!(files > 0, "the index was written");
    let o = smartchat(data, &["search", "reindex", "--tenant", "no-such-shop"])?;
    ensure!(!o.status.success(), "{}", text(&o));
    Ok(())
}

#[test]
fn an_unknown_smartchat_variable_is_named_with_its_likely_setting_and_its_value_is_not()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let o = support::smartchat_with(
        dir.path(),
        &["status"],
        &[
            ("SMARTCHAT_OPENAI_APIKEY", "sk-not-to-be-printed"),
            ("SMARTCHAT_NOT_A_THING_AT_ALL", "x"),
        ],
    )?;
    let err = String::from_utf8_lossy(&o.stderr);
    ensure!(o.status.success(), "{}", text(&o));
    ensure!(
        err.contains("SMARTCHAT_OPENAI_APIKEY")
            && err.contains("did you mean SMARTCHAT_OPENAI_API_KEY?"),
        "{err}"
    );
    ensure!(
        err.lines()
            .any(|l| l.contains("SMARTCHAT_NOT_A_THING_AT_ALL") && !l.contains("did you mean")),
        "{err}"
    );
    ensure!(!text(&o).contains("sk-not-to-be-printed"), "{}", text(&o));

    // Known names alone: no warning.
    let o = smartchat(dir.path(), &["status"])?;
    ensure!(
        o.status.success() && !text(&o).contains("not a smartchat setting"),
        "{}",
        text(&o)
    );
    Ok(())
}

#[test]
fn status_prints_the_backlogs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    create_glow_salon(data)?;
    let o = smartchat(data, &["status"])?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in [
        "jobs (pipeline): 0 due, 0 later, 0 running, 0 dead, 0 done (pruned after 7 days)",
        "oldest due job waiting: none due",
        "ledger drafts to sequence: 0",
        "newest signed checkpoint: none yet",
        "search feed rows to index: 0",
    ] {
        ensure!(out.lines().any(|l| l == line), "{line:?} missing:\n{out}");
    }
    // `tenant create` sequenced its entries (created, key created).
    let entries: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("ledger entries: "))
        .with_context(|| out.clone())?
        .parse()?;
    ensure!(entries >= 2, "{out}");
    let o = smartchat(data, &["ledger", "checkpoint"])?;
    ensure!(o.status.success(), "{}", text(&o));
    let o = smartchat(data, &["status"])?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    ensure!(
        out.contains(&format!("ledger entries: {entries}\n")),
        "{out}"
    );
    ensure!(
        out.lines()
            .any(|l| l.starts_with("newest signed checkpoint: ") && l.ends_with(" s old")),
        "{out}"
    );
    Ok(())
}
