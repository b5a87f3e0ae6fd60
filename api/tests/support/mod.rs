//! What the tests that run the `smartchat` binary share.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};

use anyhow::{Context as _, bail, ensure};

/// Runs `smartchat <args>` on data directory `data` (the embedded default), environment
/// cleared but for `PATH`.
pub fn smartchat(data: &std::path::Path, args: &[&str]) -> anyhow::Result<Output> {
    smartchat_with(data, args, &[])
}

/// [`smartchat`] with the variables `extra` set too.
pub fn smartchat_with(
    data: &std::path::Path,
    args: &[&str],
    extra: &[(&str, &str)],
) -> anyhow::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_smartchat"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SMARTCHAT_DATA_DIR", data)
        .envs(extra.iter().copied())
        .output()
        .context("run smartchat")
}

/// A command's standard output and error, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `smartchat tenant create` for the sandboxed "Glow Salon" (handle `glow-salon`).
pub fn create_glow_salon(data: &std::path::Path) -> anyhow::Result<()> {
    let o = smartchat(
        data,
        &[
            "tenant",
            "create",
            "--name",
            "Glow Salon",
            "--phone-number-id",
            "6000001",
        ],
    )?;
    ensure!(o.status.success(), "{}", text(&o));
    Ok(())
}

/// A `smartchat serve` child on the embedded default, killed when dropped.
pub struct Server {
    pub child: Child,
    /// Where it listens (`http://127.0.0.1:…`).
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `smartchat serve` on data directory `data` with the settings `extra`, through the
/// command `launcher` when there is one (`setsid` for a session of its own, `unshare …` for
/// a PID namespace), and waits until it listens.
pub fn serve(
    data: &std::path::Path,
    launcher: &[&str],
    extra: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let bin = env!("CARGO_BIN_EXE_smartchat");
    let mut cmd = match launcher.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .arg("serve")
        .env_clear()
        .envs(extra.iter().copied())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SMARTCHAT_DATA_DIR", data)
        .env("SMARTCHAT_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn smartchat serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut server = Server {
        child,
        base: String::new(),
    };
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let Some(line) = lines.next() else {
            bail!("smartchat serve exited before listening");
        };
        if let Some(base) = line?.strip_prefix("smartchat listening on ") {
            server.base = base.trim().to_owned();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(server)
}
