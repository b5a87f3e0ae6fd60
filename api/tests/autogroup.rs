//! `smartchat serve` lowers its scheduling autogroup (`SMARTCHAT_AUTOGROUP_NICE`, 10 by
//! default) when it leads its own session, so PostgreSQL on the same host wins the CPU over
//! the server's background (`smartchat_core::priority::lower_own_autogroup`), and never
//! touches the autogroup of a session it shares (a shell's, here the test's).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail, ensure};

/// A `smartchat serve` child on the embedded default, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `smartchat serve` (through `setsid`, in a session of its own, when `own_session`)
/// and waits until it listens (it lowers its autogroup before that).
fn serve(
    data: &std::path::Path,
    own_session: bool,
    extra: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let bin = env!("CARGO_BIN_EXE_smartchat");
    let mut cmd = if own_session {
        let mut c = Command::new("setsid");
        c.arg(bin);
        c
    } else {
        Command::new(bin)
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
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let Some(line) = lines.next() else {
            bail!("smartchat serve exited before listening");
        };
        if line?.starts_with("smartchat listening on ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(server)
}

/// Starts `smartchat serve` as [`serve`] does, reads its autogroup's `nice` while it
/// listens, and stops it.
fn served_nice(
    data: &std::path::Path,
    own_session: bool,
    extra: &[(&str, &str)],
) -> anyhow::Result<i32> {
    let s = serve(data, own_session, extra)?;
    let pid = s.0.id().to_string();
    ensure!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))?.trim() == "smartchat",
        "pid {pid} is not the server (setsid forked?)"
    );
    autogroup_nice(&pid)
}

/// The `nice` of process `pid`'s autogroup (`/autogroup-85 nice 10`).
fn autogroup_nice(pid: &str) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/autogroup"))?;
    let nice = text
        .split_whitespace()
        .nth(2)
        .with_context(|| format!("autogroup line {text:?}"))?;
    Ok(nice.parse()?)
}

#[test]
fn serve_lowers_its_own_autogroup_and_not_a_shared_one() -> anyhow::Result<()> {
    ensure!(
        std::path::Path::new("/proc/self/autogroup").exists(),
        "this kernel has no scheduling autogroups (CONFIG_SCHED_AUTOGROUP): nothing to test"
    );
    let dir = tempfile::tempdir()?;
    let mine = autogroup_nice("self")?;

    // In a session of its own (setsid does not fork: the child is not a group leader, so
    // the pid is the server's).
    let n = served_nice(dir.path(), true, &[])?;
    ensure!(n == 10, "default: nice 10, got {n}");
    let n = served_nice(dir.path(), true, &[("SMARTCHAT_AUTOGROUP_NICE", "15")])?;
    ensure!(n == 15, "configured 15, got {n}");
    let n = served_nice(dir.path(), true, &[("SMARTCHAT_AUTOGROUP_NICE", "0")])?;
    ensure!(n == 0, "0 leaves it, got {n}");

    // Started in this test's session: the session's autogroup is left as it was (asked for
    // 19, which the session would show had the server lowered it, unless already at 19).
    ensure!(
        mine < 19,
        "the test's session is already at nice 19: nothing to tell"
    );
    let n = served_nice(dir.path(), false, &[("SMARTCHAT_AUTOGROUP_NICE", "19")])?;
    ensure!(n == mine, "shared autogroup changed to {n}");
    ensure!(
        autogroup_nice("self")? == mine,
        "the test's own autogroup changed"
    );

    // A value out of range is refused at start.
    let o = Command::new(env!("CARGO_BIN_EXE_smartchat"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SMARTCHAT_DATA_DIR", dir.path())
        .env("SMARTCHAT_BIND", "127.0.0.1:0")
        .env("SMARTCHAT_AUTOGROUP_NICE", "20")
        .output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    ensure!(
        !o.status.success() && err.contains("SMARTCHAT_AUTOGROUP_NICE"),
        "status {:?}: {err}",
        o.status
    );
    Ok(())
}
