//! Scheduling the background below the webhook.
//!
//! The webhook's 200 waits only for its own commit; everything else (pipeline workers,
//! ledger sequencer, search indexer, follow-ups, retention) works from durable queues and
//! may fall behind in a burst. The API crate runs that work on a runtime of its own whose
//! threads are lowered here, and [`crate::db::DbPool::twin`] lowers the PostgreSQL server
//! processes of its connections when they run on this host. Linux only: there a thread's
//! policy and `nice` value are its own; elsewhere they would apply to the whole process, so
//! nothing is changed.

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

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

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
