//! The async layer's timers: `sleep` on time (never early), `sleep_until`,
//! `reset`, `interval` ticks and late consumers, `timeout` both ways, and a
//! `Sleep` dropped at each of its states — never polled, armed, fired but not
//! yet polled — with the driver's leak report empty afterwards.

mod util;

use std::time::{Duration, Instant};

use eventcore::rt::{self, Elapsed};
use eventcore::BackendKind;
use util::rt::{assert_no_leaks, executor, pending_ops, poll_once};

/// How late a timer may complete on a loaded machine. Early is never allowed.
const LATE: Duration = Duration::from_millis(300);

#[track_caller]
fn assert_on_time(start: Instant, due: Duration) {
    let took = start.elapsed();
    assert!(took >= due, "early: after {took:?}, due at {due:?}");
    assert!(took < due + LATE, "late: after {took:?}, due at {due:?}");
}

/// `sleep` and `sleep_until` complete on time; concurrent sleeps complete in
/// deadline order.
fn sleep_on_time(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let start = Instant::now();
        rt::sleep(Duration::from_millis(30)).await;
        assert_on_time(start, Duration::from_millis(30));
        let start = Instant::now();
        rt::sleep_until(start + Duration::from_millis(20)).await;
        assert_on_time(start, Duration::from_millis(20));
        let start = Instant::now();
        let long = rt::spawn(async move {
            rt::sleep(Duration::from_millis(40)).await;
            Instant::now()
        });
        let short = rt::spawn(async move {
            rt::sleep(Duration::from_millis(10)).await;
            Instant::now()
        });
        let (l, s) = (long.await.expect("task"), short.await.expect("task"));
        assert!(s < l);
        assert!(s.duration_since(start) >= Duration::from_millis(10));
        assert!(l.duration_since(start) >= Duration::from_millis(40));
    });
    assert_no_leaks(&ex);
}

/// A deadline already past completes at the first poll, without a timer.
fn past_deadline_is_immediate(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut s = rt::sleep(Duration::ZERO);
        assert!(poll_once(&mut s).await.is_ready());
        assert!(s.is_elapsed());
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 0);
    });
    assert_no_leaks(&ex);
}

/// `reset` moves an armed sleep's deadline, and re-arms one that has
/// completed.
fn sleep_reset(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let start = Instant::now();
        let mut s = rt::sleep(Duration::from_secs(10));
        assert!(poll_once(&mut s).await.is_pending());
        s.reset(start + Duration::from_millis(20));
        (&mut s).await;
        assert_on_time(start, Duration::from_millis(20));
        let again = Instant::now();
        s.reset(again + Duration::from_millis(20));
        (&mut s).await;
        assert_on_time(again, Duration::from_millis(20));
    });
    assert_no_leaks(&ex);
}

/// An interval ticks once per period, the first time one period after it
/// was created; a consumer that comes late gets the count of firings it
/// missed in one tick.
fn interval_ticks(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let period = Duration::from_millis(20);
        let start = Instant::now();
        let mut iv = rt::interval(period);
        let mut fired = 0u32;
        while fired < 3 {
            // One firing per tick, unless this task was late (a loaded machine).
            fired += iv.tick().await as u32;
            assert!(start.elapsed() >= period * fired, "{fired} firings early");
        }
        rt::sleep(period * 3 + period / 2).await;
        let missed = iv.tick().await;
        assert!(missed >= 2, "a late consumer sees the firings it missed ({missed})");
    });
    assert_no_leaks(&ex);
}

/// `timeout` gives the output of a future that is in time, and `Elapsed`
/// (dropping the future, which releases its timer) for one that is not.
fn timeout_both_ways(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let r = rt::timeout(Duration::from_millis(200), async {
            rt::sleep(Duration::from_millis(10)).await;
            5
        })
        .await;
        assert_eq!(r, Ok(5));
        let start = Instant::now();
        let r = rt::timeout(Duration::from_millis(20), rt::sleep(Duration::from_secs(10))).await;
        assert_eq!(r, Err(Elapsed));
        assert_on_time(start, Duration::from_millis(20));
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 0);
    });
    assert_no_leaks(&ex);
}

/// A `Sleep` dropped at each state: never polled (no timer exists), armed
/// (its timer and wait are released: the callback never runs), fired but not
/// polled (the completed wait is dropped with its timer).
fn sleep_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        // Never polled.
        let s = rt::sleep(Duration::from_millis(5));
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 0);
        drop(s);

        // Armed: one timer, one pending wait.
        let mut s = rt::sleep(Duration::from_millis(5));
        assert!(poll_once(&mut s).await.is_pending());
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 1);
        assert_eq!(pending_ops(), 1);
        drop(s);
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 0);
        assert_eq!(pending_ops(), 0);

        // Fired, not polled: the callback ran (no pending op), the timer lives.
        let mut s = rt::sleep(Duration::from_millis(5));
        assert!(poll_once(&mut s).await.is_pending());
        rt::sleep(Duration::from_millis(30)).await;
        assert_eq!(pending_ops(), 0, "the wait completed");
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 1);
        drop(s);
    });
    assert_no_leaks(&ex);
}

/// An interval dropped while its wait is registered releases the timer.
fn interval_dropped(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut iv = rt::interval(Duration::from_millis(5));
        iv.tick().await;
        let mut tick = Box::pin(iv.tick());
        assert!(poll_once(&mut tick).await.is_pending());
        drop(tick);
        drop(iv);
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    sleep_on_time,
    past_deadline_is_immediate,
    sleep_reset,
    interval_ticks,
    timeout_both_ways,
    sleep_dropped_at_each_state,
    interval_dropped,
}
