//! Scheduling the background below the webhook.
//!
//! The webhook's 200 waits only for its own commit; everything else (pipeline jobs,
//! ledger sequencer, search indexer, follow-ups, retention) works from durable queues and
//! may fall behind in a burst. The API crate runs that work on a runtime of its own whose
//! threads are lowered here, and [`crate::db::DbPool::twin`] lowers the PostgreSQL server
//! processes of its connections when they run on this host. Linux only: there a thread's
//! policy and `nice` value are its own; elsewhere they would apply to the whole process, so
//! nothing is changed. Those rank threads within one scheduling group only; against
//! PostgreSQL on the same host, in a group of its own, [`lower_own_autogroup`] lowers the
//! whole process's group.

/// How the background is scheduled against the webhook and the API
/// (`SMARTCHAT_BACKGROUND_PRIORITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackgroundPriority {
    /// `SCHED_IDLE`: the background runs only on CPU time nothing else wants, and a waking
    /// request thread takes the CPU from it at once. The default.
    #[default]
    Idle,
    /// `nice` + 10: about a tenth of a core against a busy request thread.
    Low,
    /// The same priority as requests.
    Normal,
}

impl BackgroundPriority {
    /// Parses `idle`, `low` or `normal`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "idle" => Some(Self::Idle),
            "low" => Some(Self::Low),
            "normal" => Some(Self::Normal),
            _ => None,
        }
    }
}

/// The `nice` increment of [`BackgroundPriority::Low`].
pub const LOW_NICE: i32 = 10;

/// Lowers the calling thread to `p` (threads it starts later inherit it). Never raises.
pub fn lower_current_thread(p: BackgroundPriority) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        lower(linux_thread_id(), p)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = p;
        Ok(())
    }
}

/// Lowers process (or thread) `pid` to `p`. Never raises.
#[cfg(target_os = "linux")]
pub(crate) fn lower(pid: i32, p: BackgroundPriority) -> Result<(), String> {
    match p {
        BackgroundPriority::Normal => Ok(()),
        BackgroundPriority::Idle => scheduler::set_policy(pid, scheduler::Policy::Idle, 0)
            .map_err(|()| "sched_setscheduler(SCHED_IDLE) was refused".to_owned()),
        BackgroundPriority::Low => {
            let target =
                rustix::process::Pid::from_raw(pid).ok_or_else(|| format!("no process {pid}"))?;
            let now = rustix::process::getpriority_process(Some(target)).unwrap_or(0);
            if now >= LOW_NICE {
                return Ok(());
            }
            rustix::process::setpriority_process(Some(target), LOW_NICE)
                .map_err(|e| format!("setpriority: {e}"))
        }
    }
}

/// How process (or thread) `pid` is scheduled: `(SCHED_IDLE?, nice)`, as this host's
/// process table says (tests and diagnostics).
pub fn scheduling_of(pid: i32) -> Option<(bool, i32)> {
    #[cfg(target_os = "linux")]
    {
        let idle = matches!(scheduler::get_policy(pid), Ok(scheduler::Policy::Idle));
        let nice = rustix::process::getpriority_process(Some(rustix::process::Pid::from_raw(pid)?))
            .ok()?;
        Some((idle, nice))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// The calling thread's id (Linux), for [`scheduling_of`].
pub fn current_thread_id() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        Some(linux_thread_id())
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(target_os = "linux")]
fn linux_thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// The `nice` value `smartchat serve` gives its scheduling autogroup unless configured
/// otherwise (`SMARTCHAT_AUTOGROUP_NICE`; [`lower_own_autogroup`]).
pub const AUTOGROUP_NICE: u64 = 10;

/// Lowers the weight of this process's scheduling autogroup (its session's; Linux with
/// autogroups on, `kernel.sched_autogroup_enabled=1`, for a process in the root cgroup) to
/// `nice` (at most 19), never raising it, and says what it found.
///
/// Why: `SCHED_IDLE` and `nice` rank threads only against threads of the same group, and
/// PostgreSQL on the same host runs in a group of its own (its session's autogroup, or its
/// service's cgroup). The background's lowered threads yield to the server's request
/// threads, but whenever they burn CPU (the search indexer tokenizing and writing segments,
/// a rebuild, a catch-up after a burst) this process's group competes with PostgreSQL's at
/// equal weight, and the webhook waits on PostgreSQL. Measured with the webhook benchmark on
/// a 2-vCPU VM (PostgreSQL on the same host, 2,000 deliveries/s) with two `SCHED_IDLE` busy
/// loops in the server's session standing for such a background: p99 141 and 156 ms at
/// `nice` 0 (the loops took half the machine, PostgreSQL a fifth), 22.6 and 18.0 ms at 10.
/// With only the real background (indexer, workers) back to back on the same machine, no
/// difference beyond the noise (p99 9.6 to 14.7 ms at 0, 8.9 to 27.8 ms at 10). Under
/// systemd (a cgroup per service) autogroups do not apply: give the service a lower
/// `CPUWeight=` than PostgreSQL's instead (README).
///
/// An autogroup is a session's: a process that does not lead its own session (started from
/// an interactive shell) shares it with the shell and whatever else runs there, so it is left
/// as it is ([`Autogroup::Shared`]); `setsid smartchat serve`, or a service manager, gives
/// the server a session of its own.
pub fn lower_own_autogroup(nice: u64) -> Result<Autogroup, String> {
    #[cfg(target_os = "linux")]
    {
        if !leads_own_session() {
            return Ok(Autogroup::Shared);
        }
        let nice = i32::try_from(nice.min(19)).unwrap_or(19);
        Ok(
            match lower_autogroup(std::path::Path::new("/proc/self/autogroup"), nice)? {
                Some(n) => Autogroup::Own(n),
                None => Autogroup::Unsupported,
            },
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Ok(Autogroup::Unsupported)
    }
}

/// Whether this process leads its session, from `/proc/self/stat`.
///
/// Not getsid(2) through rustix: a process whose session leader is outside its PID namespace
/// (one started by a VM's init, which leads no session, or in some containers) has session
/// id 0, which rustix's `Pid` cannot hold (a failed assertion in a debug build, undefined
/// behaviour in a release one).
#[cfg(target_os = "linux")]
fn leads_own_session() -> bool {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| pid_and_session(&stat))
        .is_some_and(|(pid, session)| pid == session)
}

/// The process id and session id of a `/proc/<pid>/stat` line (`pid (comm) state ppid pgrp
/// session …`; the command name may hold spaces and parentheses, so the fields after it are
/// counted from its last `)`).
fn pid_and_session(stat: &str) -> Option<(i32, i32)> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let session = after_comm.split_whitespace().nth(3)?.parse().ok()?;
    Some((pid, session))
}

/// What [`lower_own_autogroup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autogroup {
    /// The process leads its session: its autogroup, at this `nice` afterwards.
    Own(i32),
    /// The autogroup is a session's this process does not lead (a shell's): left alone.
    Shared,
    /// No autogroup to lower here (another OS, a kernel without them, or a process in the
    /// root group, whose `/proc/self/autogroup` is empty).
    Unsupported,
}

/// [`lower_own_autogroup`] on the autogroup file at `path`.
#[cfg(target_os = "linux")]
fn lower_autogroup(path: &std::path::Path, nice: i32) -> Result<Option<i32>, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    if text.trim().is_empty() {
        // The root group's (a process of init's session, which the kernel prints as
        // nothing): its weight is not an autogroup's to change.
        return Ok(None);
    }
    let now = parse_autogroup_nice(&text)
        .ok_or_else(|| format!("unexpected autogroup line {:?}", text.trim()))?;
    if now >= nice {
        return Ok(Some(now));
    }
    std::fs::write(path, nice.to_string())
        .map_err(|e| format!("cannot set the autogroup's nice value: {e}"))?;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_autogroup_nice(&text)
        .map(Some)
        .ok_or_else(|| format!("unexpected autogroup line {:?}", text.trim()))
}

/// The `nice` of an autogroup line (`/autogroup-85 nice 10`).
fn parse_autogroup_nice(text: &str) -> Option<i32> {
    let mut words = text.split_whitespace();
    words.next()?.strip_prefix("/autogroup-")?;
    (words.next()? == "nice").then_some(())?;
    words.next()?.parse().ok()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn reads_an_autogroup_line() {
        assert_eq!(parse_autogroup_nice("/autogroup-85 nice 10\n"), Some(10));
        assert_eq!(parse_autogroup_nice("/autogroup-3 nice -5"), Some(-5));
        assert_eq!(parse_autogroup_nice("/autogroup-3 weight 10"), None);
        assert_eq!(parse_autogroup_nice("autogroup nice 1"), None);
        assert_eq!(parse_autogroup_nice(""), None);
    }

    #[test]
    fn reads_pid_and_session_from_a_stat_line() {
        assert_eq!(
            pid_and_session("4402 (bash) S 4401 4402 4402 34816 4402 4194560 1 2"),
            Some((4402, 4402))
        );
        // A session led outside the PID namespace reads 0; a command name with spaces and
        // parentheses does not shift the fields.
        assert_eq!(
            pid_and_session("8 (a) b (c)) S 1 0 0 0 -1 4194560"),
            Some((8, 0))
        );
        assert_eq!(pid_and_session("8 (smartchat) S 1"), None);
        assert_eq!(pid_and_session(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn knows_whether_it_leads_its_session() {
        // The test harness is started by cargo or a shell, never as a session leader.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (pid, session) = pid_and_session(&stat).unwrap();
        assert_eq!(pid, i32::try_from(std::process::id()).unwrap());
        assert_ne!(pid, session);
        assert!(!leads_own_session());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowers_an_autogroup_and_never_raises_it() {
        // A file in the kernel's format stands in for /proc/self/autogroup (changing the test
        // process's own would lower every process of the session running the tests).
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("autogroup");
        std::fs::write(&f, "/autogroup-7 nice 0\n").unwrap();
        // A plain file reads back what was written, not the kernel's line: an error.
        assert!(lower_autogroup(&f, 10).is_err());
        std::fs::write(&f, "/autogroup-7 nice 15\n").unwrap();
        assert_eq!(lower_autogroup(&f, 10).unwrap(), Some(15));
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "/autogroup-7 nice 15\n"
        );
        assert_eq!(
            lower_autogroup(&dir.path().join("absent"), 10).unwrap(),
            None
        );
        // The root group prints nothing; nothing is written to it.
        std::fs::write(&f, "").unwrap();
        assert_eq!(lower_autogroup(&f, 10).unwrap(), None);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "");
    }

    #[test]
    fn parses_the_three_settings_and_nothing_else() {
        assert_eq!(
            BackgroundPriority::parse("idle"),
            Some(BackgroundPriority::Idle)
        );
        assert_eq!(
            BackgroundPriority::parse(" LOW "),
            Some(BackgroundPriority::Low)
        );
        assert_eq!(
            BackgroundPriority::parse("normal"),
            Some(BackgroundPriority::Normal)
        );
        assert_eq!(BackgroundPriority::parse("high"), None);
        assert_eq!(BackgroundPriority::parse(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowers_only_the_calling_thread() {
        let main = current_thread_id().unwrap();
        let before = scheduling_of(main).unwrap();
        let (idle, low) = std::thread::spawn(move || {
            lower_current_thread(BackgroundPriority::Idle).unwrap();
            let me = current_thread_id().unwrap();
            let idle = scheduling_of(me).unwrap();
            // A thread started by a lowered one inherits its policy.
            let child = std::thread::spawn(|| scheduling_of(current_thread_id().unwrap()))
                .join()
                .unwrap()
                .unwrap();
            assert!(child.0, "child thread not SCHED_IDLE");
            let low = std::thread::spawn(|| {
                lower_current_thread(BackgroundPriority::Low).unwrap();
                scheduling_of(current_thread_id().unwrap()).unwrap()
            })
            .join()
            .unwrap();
            (idle, low)
        })
        .join()
        .unwrap();
        assert!(idle.0, "thread not SCHED_IDLE: {idle:?}");
        assert!(low.1 >= LOW_NICE, "nice not raised: {low:?}");
        // The thread that asked nothing is as it was.
        assert_eq!(scheduling_of(main).unwrap(), before);
        assert!(!before.0);
    }
}
