//! Helpers for the async layer's tests (`rt_*.rs`): an executor on a given
//! backend, polling a future once from inside a task, the driver's pending
//! operations, waiting inside a task, and leak checks.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use eventcore::rt::{self, Executor};
use eventcore::BackendKind;

/// How long a step of an async scenario may take.
pub const LIMIT: Duration = Duration::from_secs(10);

/// An executor on a fresh driver of `kind`.
pub fn executor(kind: BackendKind) -> Executor {
    Executor::new(super::driver(kind))
}

/// Polls `f` once, from inside a task.
pub async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

/// Pending operations in the current executor's driver.
pub fn pending_ops() -> usize {
    rt::with_driver(|d| d.leak_report().operations)
}

/// Lets the loop run (from inside a task) until `cond` holds; fails with
/// `what` after [`LIMIT`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not reached");
        rt::sleep(Duration::from_millis(1)).await;
    }
}

/// Asserts that the executor's driver has no live handles and no pending
/// operations.
#[track_caller]
pub fn assert_no_leaks(ex: &Executor) {
    let report = ex.leak_report();
    assert!(report.is_empty(), "leaked: {report}");
}

/// Some resources (files, accepted sockets) are closed off the loop thread
/// after their handle is dropped: lets the loop run until the driver has
/// nothing open, then asserts it.
pub fn assert_settled(ex: &mut Executor) {
    ex.block_on(async {
        let deadline = Instant::now() + LIMIT;
        loop {
            let report = rt::with_driver(|d| d.leak_report());
            if report.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "leaked: {report}");
            rt::sleep(Duration::from_millis(1)).await;
        }
    });
}
