//! Waiting on a condition: poll it, pausing a little longer each time, until it holds or the
//! deadline passes — then fail with what was awaited and, where the probe said, why it did not
//! hold. Tests wait this way instead of sleeping for a guessed time.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// The first pause between two probes; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two probes.
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// What a probe answers: whether the condition holds and, if so, the value the wait returns.
///
/// - `bool`: holds when `true`; the wait returns `()`.
/// - `Option<T>`: holds when `Some(t)`; the wait returns `t`.
/// - `Result<T, E>`: holds when `Ok(t)`; the wait returns `t`, and a timeout reports the last
///   error, so a probe can say why the condition does not hold yet.
pub trait Condition {
    /// What the wait returns once the condition holds.
    type Output;
    /// `Ok` when the condition holds; otherwise why not, if the probe said.
    fn check(self) -> Result<Self::Output, Option<String>>;
}

impl Condition for bool {
    type Output = ();
    fn check(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Condition for Option<T> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Condition for Result<T, E> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

fn timed_out(timeout: Duration, what: &dyn Display, last: Option<String>) -> ! {
    match last {
        Some(last) => panic!("timed out after {timeout:?} waiting for {what}; last: {last}"),
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Calls `probe` until its answer says the condition holds and returns that answer's value;
/// panics naming `what` if it still does not hold after `timeout`. Blocks the thread between
/// probes: in async code use [`eventually_async`].
///
/// ```
/// # use std::time::{Duration, Instant};
/// let start = Instant::now();
/// let waited = kpages_testsupport::eventually(Duration::from_secs(5), "20 ms to pass", || {
///     let elapsed = start.elapsed();
///     (elapsed >= Duration::from_millis(20)).then_some(elapsed)
/// });
/// assert!(waited >= Duration::from_millis(20));
/// ```
pub fn eventually<C: Condition>(
    timeout: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> C,
) -> C::Output {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let why_not = match probe().check() {
            Ok(value) => return value,
            Err(why_not) => why_not,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out(timeout, &what, why_not);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// [`eventually`] for async probes, pausing on tokio's clock (so a test with paused time
/// advances it instead of waiting). A probe still running at the deadline fails the wait too.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use std::time::Duration;
/// let (tx, rx) = tokio::sync::watch::channel(0);
/// tokio::spawn(async move { for i in 1..=3 { tx.send(i).unwrap(); tokio::task::yield_now().await; } });
/// kpages_testsupport::eventually_async(Duration::from_secs(5), "the third value", || {
///     let v = *rx.borrow();
///     async move { v == 3 }
/// })
/// .await;
/// # }
/// ```
pub async fn eventually_async<C, F>(
    timeout: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> F,
) -> C::Output
where
    C: Condition,
    F: Future<Output = C>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let why_not = match tokio::time::timeout_at(deadline, probe()).await {
            Ok(answer) => match answer.check() {
                Ok(value) => return value,
                Err(why_not) => why_not,
            },
            Err(_) => Some("the probe itself was still running".into()),
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            timed_out(timeout, &what, why_not);
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), "the third call", || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        });
        assert_eq!(value, 30);
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for nothing; last: still no")]
    fn a_timeout_names_what_was_awaited_and_the_last_reason() {
        eventually(Duration::from_millis(50), "nothing", || {
            Err::<(), _>("still no")
        });
    }

    #[test]
    #[should_panic(expected = "timed out after 30ms waiting for a false bool")]
    fn a_bool_that_stays_false_times_out() {
        eventually(Duration::from_millis(30), "a false bool", || false);
    }

    #[tokio::test]
    async fn the_async_wait_returns_the_value() {
        let mut calls = 0;
        let value = eventually_async(Duration::from_secs(5), "the second call", || {
            calls += 1;
            let n = calls;
            async move { if n == 2 { Ok(n) } else { Err("first") } }
        })
        .await;
        assert_eq!(value, 2);
    }

    #[tokio::test]
    #[should_panic(expected = "the probe itself was still running")]
    async fn a_probe_that_hangs_fails_at_the_deadline() {
        eventually_async(Duration::from_millis(50), "a hanging probe", || {
            std::future::pending::<bool>()
        })
        .await;
    }
}
