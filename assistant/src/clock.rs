//! Injectable time: the orchestrator sleeps and measures deadlines through [`Clock`],
//! so tests can run retry schedules without real waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// A boxed sleep future.
pub type SleepFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Monotonic time and sleeping.
pub trait Clock: Send + Sync {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> SleepFuture<'_>;
}

/// Real time through tokio (so `tokio::time::pause()` also works).
#[derive(Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> SleepFuture<'_> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A test clock: `sleep` returns at once, advancing virtual time and recording the
/// requested duration. `now` is real elapsed time plus all virtual sleeps.
#[derive(Debug)]
pub struct ManualClock {
    origin: std::time::Instant,
    slept: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        ManualClock {
            origin: std::time::Instant::now(),
            slept: Mutex::new(Vec::new()),
        }
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        let virtual_time: Duration = self
            .slept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .sum();
        self.origin.elapsed() + virtual_time
    }
    fn sleep(&self, d: Duration) -> SleepFuture<'_> {
        self.slept.lock().unwrap_or_else(|e| e.into_inner()).push(d);
        Box::pin(std::future::ready(()))
    }
}
