//! `smartchat serve` lowers its scheduling autogroup (`SMARTCHAT_AUTOGROUP_NICE`, 10 by
//! default) when it leads its own session, so PostgreSQL on the same host wins the CPU over
//! the server's background (`smartchat_core::priority::lower_own_autogroup`), and never
//! touches the autogroup of a session it shares (a shell's, here the test's).

mod support;

use anyhow::{Context as _, ensure};
use support::serve;

/// Starts `smartchat serve` as [`serve`] does (through `setsid` when `own_session`), reads
/// its autogroup line while it listens, and stops it.
fn served_autogroup(
    data: &std::path::Path,
    own_session: bool,
    extra: &[(&str, &str)],
) -> anyhow::Result<String> {
    let launcher: &[&str] = if own_session { &["setsid"] } else { &[] };
    let s = serve(data, launcher, extra)?;
    let pid = s.child.id().to_string();
    ensure!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))?.trim() == "smartchat",
        "pid {pid} is not the server (setsid forked?)"
    );
    autogroup_line(&pid)
}

/// Process `pid`'s autogroup line (`/autogroup-85 nice 10`; empty for the root group, where
/// a process of init's session is, as a CI runner's may be).
fn autogroup_line(pid: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/autogroup"))?)
}

/// The `nice` of an autogroup line.
fn nice_of(line: &str) -> anyhow::Result<i32> {
    let nice = line
        .split_whitespace()
        .nth(2)
        .with_context(|| format!("autogroup line {line:?}"))?;
    Ok(nice.parse()?)
}

#[test]
fn serve_lowers_its_own_autogroup_and_not_a_shared_one() -> anyhow::Result<()> {
    ensure!(
        std::path::Path::new("/proc/self/autogroup").exists(),
        "this kernel has no scheduling autogroups (CONFIG_SCHED_AUTOGROUP): nothing to test"
    );
    let dir = tempfile::tempdir()?;
    let mine = autogroup_line("self")?;

    // In a session of its own (setsid does not fork: the child is not a group leader, so
    // the pid is the server's).
    let n = nice_of(&served_autogroup(dir.path(), true, &[])?)?;
    ensure!(n == 10, "default: nice 10, got {n}");
    let n = nice_of(&served_autogroup(
        dir.path(),
        true,
        &[("SMARTCHAT_AUTOGROUP_NICE", "15")],
    )?)?;
    ensure!(n == 15, "configured 15, got {n}");
    let n = nice_of(&served_autogroup(
        dir.path(),
        true,
        &[("SMARTCHAT_AUTOGROUP_NICE", "0")],
    )?)?;
    ensure!(n == 0, "0 leaves it, got {n}");

    // Started in this test's session: the session's autogroup is left as it was (asked for
    // 19, which the session would show had the server lowered it, unless already at 19).
    // In the root group (the test run from init's session, as a CI runner may be) the line
    // is empty and must stay so.
    if !mine.trim().is_empty() {
        let n = nice_of(&mine)?;
        ensure!(
            n < 19,
            "the test's session is already at nice 19: nothing to tell"
        );
    }
    let line = served_autogroup(dir.path(), false, &[("SMARTCHAT_AUTOGROUP_NICE", "19")])?;
    ensure!(
        line == mine,
        "shared autogroup changed from {mine:?} to {line:?}"
    );
    ensure!(
        autogroup_line("self")? == mine,
        "the test's own autogroup changed"
    );

    // In a PID namespace of its own, where its session's leader is outside and its session
    // id reads 0 (as for anything a VM's init starts, which leads no session: a CI runner's
    // children): it serves (it panicked reading its session before), and the shared
    // autogroup is left as it was.
    let s = serve(
        dir.path(),
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        &[("SMARTCHAT_AUTOGROUP_NICE", "19")],
    )?;
    let unshare = s.child.id();
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))?;
    let server = children
        .split_whitespace()
        .next()
        .context("unshare's child")?;
    ensure!(
        std::fs::read_to_string(format!("/proc/{server}/comm"))?.trim() == "smartchat",
        "pid {server} is not the server"
    );
    let stat = std::fs::read_to_string(format!("/proc/{server}/root/proc/1/stat"))?;
    ensure!(
        stat.split_whitespace().nth(5) == Some("0"),
        "the server's session id inside its namespace: {stat}"
    );
    let line = autogroup_line(server)?;
    ensure!(
        line == mine,
        "shared autogroup changed from {mine:?} to {line:?}"
    );
    drop(s);

    // A value out of range is refused at start.
    let o = support::smartchat_with(
        dir.path(),
        &["serve"],
        &[
            ("SMARTCHAT_BIND", "127.0.0.1:0"),
            ("SMARTCHAT_AUTOGROUP_NICE", "20"),
        ],
    )?;
    let err = String::from_utf8_lossy(&o.stderr);
    ensure!(
        !o.status.success() && err.contains("SMARTCHAT_AUTOGROUP_NICE"),
        "status {:?}: {err}",
        o.status
    );
    Ok(())
}
