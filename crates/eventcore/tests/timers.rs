//! Contract tests for timers: one-shot and periodic firing on time (never
//! early), `wait` / `stop` / `cancel_wait` semantics, skipped periods, far
//! deadlines, re-arming, release with pending waits, and many timers at once.
//!
//! Ports `0-timer.d` and `issue-25-periodic-timers.d` from vibe.d's eventcore,
//! with the times scaled down to keep the suite fast. Every time is measured
//! from an instant taken *before* the timer was set, so the lower bounds are
//! exact: a timer that fires even a microsecond early fails. The upper bounds
//! allow [`LATE`] for a loaded two-core machine.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, Driver, ExitReason, Status, TimerId};
use util::{assert_no_leaks, driver, run_until_not_idle, DropCounter};

/// How late a timer may fire on a loaded machine. Early is never allowed.
const LATE: Duration = Duration::from_millis(300);

/// Asserts that something due `due` after `start` happened at `at`: never
/// before, and less than [`LATE`] after.
#[track_caller]
fn assert_on_time(what: &str, start: Instant, at: Instant, due: Duration) {
    let took = at.duration_since(start);
    assert!(took >= due, "{what} fired early: after {took:?}, due at {due:?}");
    assert!(took < due + LATE, "{what} fired late: after {took:?}, due at {due:?}");
}

/// Shared state of the periodic scenarios.
struct Ticks {
    start: Instant,
    period: Duration,
    count: Cell<usize>,
    /// Stop after this many firings.
    last: usize,
    /// Extra check run at each firing (number of the firing).
    on_tick: Box<dyn Fn(usize)>,
}

/// The periodic callback of the upstream tests: checks the n-th firing comes
/// n periods after the start, re-waits until the last one, then stops.
fn periodic_tick(drv: &mut Driver, t: TimerId, fired: bool, ticks: Rc<Ticks>) {
    assert!(fired, "a periodic firing must report fired = true");
    let n = ticks.count.get() + 1;
    ticks.count.set(n);
    assert!(n <= ticks.last, "fired {n} times, expected {}", ticks.last);
    assert_on_time(
        &format!("periodic firing {n}"),
        ticks.start,
        Instant::now(),
        ticks.period * n as u32,
    );
    (ticks.on_tick)(n);
    if n == ticks.last {
        drv.timers().stop(t).unwrap();
    } else {
        drv.timers()
            .wait(t, move |drv, t, fired| periodic_tick(drv, t, fired, ticks))
            .unwrap();
    }
}

/// Upstream `0-timer.d`, scaled by 1/4: a one-shot 300 ms timer fires on time;
/// its callback re-arms it as a 150 ms periodic timer, re-waited after each
/// firing, which fires 3 times at n × 150 ms and is then stopped. Meanwhile a
/// second timer checks that `stop` completes a pending wait with
/// `fired = false` (from the loop, not inside `stop`), and that `cancel_wait`
/// followed by `stop` produces no callback at all. The loop then runs out of
/// waiters.
fn timer_one_shot_then_periodic_upstream_0_timer(kind: BackendKind) {
    const ONE_SHOT: Duration = Duration::from_millis(300);
    const PERIOD: Duration = Duration::from_millis(150);
    let mut drv = driver(kind);
    let one_shot_ran = Rc::new(Cell::new(0usize));
    let periodic_count = Rc::new(Cell::new(0usize));

    let tm = drv.timers().create();
    let start = Instant::now();
    drv.timers().set(tm, ONE_SHOT, Duration::ZERO).unwrap();
    let (ran, count) = (one_shot_ran.clone(), periodic_count.clone());
    drv.timers()
        .wait(tm, move |drv, tm, fired| {
            assert!(fired);
            assert_on_time("one-shot timer", start, Instant::now(), ONE_SHOT);
            ran.set(ran.get() + 1);
            let ticks = Rc::new(Ticks {
                start: Instant::now(),
                period: PERIOD,
                count: Cell::new(0),
                last: 3,
                on_tick: Box::new(move |n| count.set(n)),
            });
            drv.timers().set(tm, PERIOD, PERIOD).unwrap();
            drv.timers()
                .wait(tm, move |drv, t, fired| periodic_tick(drv, t, fired, ticks))
                .unwrap();
        })
        .unwrap();

    // stop() produces a callback with fired == false, from the loop.
    let got_event = Rc::new(Cell::new(0usize));
    let tm2 = drv.timers().create();
    drv.timers()
        .set(tm2, Duration::from_millis(100), Duration::ZERO)
        .unwrap();
    let got = got_event.clone();
    drv.timers()
        .wait(tm2, move |_, _, fired| {
            assert!(!fired, "a stopped timer reports fired = false");
            got.set(got.get() + 1);
        })
        .unwrap();
    drv.timers().stop(tm2).unwrap();
    assert_eq!(got_event.get(), 0, "the callback must not run inside stop()");

    // cancel_wait() then stop() produces no callback.
    let cancelled_ran = Rc::new(Cell::new(false));
    drv.timers()
        .set(tm2, Duration::from_millis(100), Duration::ZERO)
        .unwrap();
    let c = cancelled_ran.clone();
    drv.timers().wait(tm2, move |_, _, _| c.set(true)).unwrap();
    assert!(drv.timers().cancel_wait(tm2));
    drv.timers().stop(tm2).unwrap();

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(10)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(one_shot_ran.get(), 1);
    assert_eq!(periodic_count.get(), 3);
    assert_eq!(got_event.get(), 1);
    assert!(!cancelled_ran.get());
    assert!(!drv.timers().is_pending(tm));
    assert!(!drv.release_ref(tm).unwrap());
    assert!(!drv.release_ref(tm2).unwrap());
    assert_no_leaks(&drv);
}

/// A periodic timer set to (300 ms, 300 ms) and re-waited after each firing
/// fires at 300, 600 and 900 ms (never early), and after `stop` the loop runs
/// out of waiters.
fn timer_periodic_rewait_fires_three_times_then_stops(kind: BackendKind) {
    const PERIOD: Duration = Duration::from_millis(300);
    let mut drv = driver(kind);
    let count = Rc::new(Cell::new(0usize));
    let t = drv.timers().create();
    let c = count.clone();
    let ticks = Rc::new(Ticks {
        start: Instant::now(),
        period: PERIOD,
        count: Cell::new(0),
        last: 3,
        on_tick: Box::new(move |n| c.set(n)),
    });
    drv.timers().set(t, PERIOD, PERIOD).unwrap();
    assert!(drv.timers().is_periodic(t));
    drv.timers()
        .wait(t, move |drv, t, fired| periodic_tick(drv, t, fired, ticks))
        .unwrap();

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(10)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(count.get(), 3);
    assert!(!drv.timers().is_pending(t));
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// A wait on a timer that is not armed — never set, stopped, or a one-shot
/// that already fired — completes with `fired = false`, from
/// `process_events` and never inside `wait` itself, exactly once.
fn timer_wait_on_unarmed_timer_reports_not_fired(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    let results: Rc<RefCell<Vec<bool>>> = Rc::default();

    // Never set.
    let r = results.clone();
    drv.timers()
        .wait(t, move |_, _, fired| r.borrow_mut().push(fired))
        .unwrap();
    assert!(results.borrow().is_empty(), "ran inside wait()");
    assert_eq!(
        drv.process_events(Some(Duration::from_secs(5))).unwrap(),
        ExitReason::Idle
    );
    assert_eq!(*results.borrow(), [false]);

    // Set, then stopped.
    drv.timers().set(t, Duration::from_secs(5), Duration::ZERO).unwrap();
    drv.timers().stop(t).unwrap();
    let r = results.clone();
    drv.timers()
        .wait(t, move |_, _, fired| r.borrow_mut().push(fired))
        .unwrap();
    assert_eq!(results.borrow().len(), 1, "ran inside wait()");
    assert_eq!(
        drv.process_events(Some(Duration::from_secs(5))).unwrap(),
        ExitReason::Idle
    );
    assert_eq!(*results.borrow(), [false, false]);

    // A one-shot that already fired (nobody waited) is no longer armed.
    drv.timers().set(t, Duration::from_millis(10), Duration::ZERO).unwrap();
    assert_eq!(
        drv.process_events(Some(Duration::from_secs(5))).unwrap(),
        ExitReason::OutOfWaiters,
        "an expired one-shot without waiter leaves nothing to wait for"
    );
    assert!(!drv.timers().is_pending(t));
    let r = results.clone();
    drv.timers()
        .wait(t, move |_, _, fired| r.borrow_mut().push(fired))
        .unwrap();
    assert_eq!(results.borrow().len(), 2, "ran inside wait()");
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(*results.borrow(), [false, false, false]);

    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// `stop` on a timer with a pending wait disarms it and completes the wait
/// with `fired = false` — from the next `process_events`, promptly (not at
/// the old 5 s deadline), exactly once.
fn timer_stop_completes_pending_wait_with_not_fired(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_secs(5), Duration::ZERO).unwrap();
    let results: Rc<RefCell<Vec<bool>>> = Rc::default();
    let r = results.clone();
    drv.timers()
        .wait(t, move |_, _, fired| r.borrow_mut().push(fired))
        .unwrap();

    drv.timers().stop(t).unwrap();
    assert!(results.borrow().is_empty(), "ran inside stop()");
    assert!(!drv.timers().is_pending(t));

    let start = Instant::now();
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(10)),
        ExitReason::OutOfWaiters
    );
    assert!(start.elapsed() < Duration::from_secs(2), "waited for the old deadline");
    assert_eq!(*results.borrow(), [false]);
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// `cancel_wait` followed by `stop`: the callback never runs (its closure is
/// dropped), a second `cancel_wait` reports nothing pending, and the loop
/// runs out of waiters at once.
fn timer_cancel_wait_then_stop_runs_no_callback(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_secs(2), Duration::ZERO).unwrap();
    let (ran, dropped) = wait_that_must_not_run(&mut drv, t);

    assert!(drv.timers().cancel_wait(t), "a wait was pending");
    assert!(!drv.timers().cancel_wait(t), "nothing is pending any more");
    assert_eq!(dropped.get(), 1, "the cancelled callback is dropped");
    drv.timers().stop(t).unwrap();

    let start = Instant::now();
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert!(start.elapsed() < Duration::from_secs(1), "waited for the deadline");
    assert!(!ran.get());
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// `cancel_wait` withdraws only the wait: the timer stays armed, keeps the
/// loop alive until its deadline and expires without calling anyone.
fn timer_cancel_wait_keeps_timer_armed(kind: BackendKind) {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let mut drv = driver(kind);
    let t = drv.timers().create();
    let start = Instant::now();
    drv.timers().set(t, TIMEOUT, Duration::ZERO).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.timers().wait(t, move |_, _, _| r.set(true)).unwrap();
    assert!(drv.timers().cancel_wait(t));
    assert!(drv.timers().is_pending(t));

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_on_time("the armed timer's expiry", start, Instant::now(), TIMEOUT);
    assert!(!ran.get());
    assert!(!drv.timers().is_pending(t));
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// An armed timer nobody waits on still counts as a waiter: the loop does not
/// report `OutOfWaiters` before the timer has expired.
fn timer_armed_without_wait_keeps_loop_alive(kind: BackendKind) {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let mut drv = driver(kind);
    let t = drv.timers().create();
    let start = Instant::now();
    drv.timers().set(t, TIMEOUT, Duration::ZERO).unwrap();
    assert_eq!(drv.waiter_count(), 1);
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_on_time("OutOfWaiters", start, Instant::now(), TIMEOUT);
    assert_eq!(drv.waiter_count(), 0);
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// Upstream `issue-25-periodic-timers.d`, scaled by 1/2: a periodic 150 ms
/// timer re-waited 5 times must not starve a one-shot 600 ms timer set at the
/// same time, which fires on time and before the 5th periodic firing.
fn timer_periodic_does_not_starve_one_shot_issue_25(kind: BackendKind) {
    const ONE_SHOT: Duration = Duration::from_millis(600);
    const PERIOD: Duration = Duration::from_millis(150);
    let mut drv = driver(kind);
    let start = Instant::now();

    let one_shot_fired = Rc::new(Cell::new(0usize));
    let tm = drv.timers().create();
    drv.timers().set(tm, ONE_SHOT, Duration::ZERO).unwrap();
    let f = one_shot_fired.clone();
    drv.timers()
        .wait(tm, move |_, _, fired| {
            assert!(fired);
            assert_on_time("one-shot timer", start, Instant::now(), ONE_SHOT);
            f.set(f.get() + 1);
        })
        .unwrap();

    let periodic_count = Rc::new(Cell::new(0usize));
    let tm2 = drv.timers().create();
    let (c, f) = (periodic_count.clone(), one_shot_fired.clone());
    let ticks = Rc::new(Ticks {
        start,
        period: PERIOD,
        count: Cell::new(0),
        last: 5,
        on_tick: Box::new(move |n| {
            c.set(n);
            if n == 5 {
                assert_eq!(f.get(), 1, "the one-shot timer did not fire before tick 5");
            }
        }),
    });
    drv.timers().set(tm2, PERIOD, PERIOD).unwrap();
    drv.timers()
        .wait(tm2, move |drv, t, fired| periodic_tick(drv, t, fired, ticks))
        .unwrap();

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(10)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(one_shot_fired.get(), 1);
    assert_eq!(periodic_count.get(), 5);
    assert!(!drv.release_ref(tm).unwrap());
    assert!(!drv.release_ref(tm2).unwrap());
    assert_no_leaks(&drv);
}

/// A periodic timer skips the periods it missed: with a 100 ms period and the
/// thread blocked for 350 ms, the overdue firing is reported once, and the
/// next comes at the next period boundary (400 ms) — not in a burst right
/// away, and not drifted to 350 + 100 ms.
fn timer_periodic_skips_missed_periods(kind: BackendKind) {
    const PERIOD: Duration = Duration::from_millis(100);
    let mut drv = driver(kind);
    let t = drv.timers().create();
    let firings: Rc<RefCell<Vec<Instant>>> = Rc::default();
    let start = Instant::now();
    drv.timers().set(t, PERIOD, PERIOD).unwrap();
    let f = firings.clone();
    drv.timers()
        .wait(t, move |drv, t, fired| {
            assert!(fired);
            f.borrow_mut().push(Instant::now());
            // The next boundary is 400 ms after the start; we are past 350 ms.
            let left = drv.timers().remaining(t).expect("still armed");
            assert!(left <= Duration::from_millis(50), "next firing in {left:?}");
            let f = f.clone();
            drv.timers()
                .wait(t, move |drv, t, fired| {
                    assert!(fired);
                    f.borrow_mut().push(Instant::now());
                    drv.timers().stop(t).unwrap();
                })
                .unwrap();
        })
        .unwrap();

    // Block the thread for three and a half periods.
    thread::sleep(PERIOD * 7 / 2);

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(10)),
        ExitReason::OutOfWaiters
    );
    let firings = firings.borrow();
    assert_eq!(firings.len(), 2);
    assert_on_time("the overdue firing", start, firings[0], PERIOD * 7 / 2);
    assert_on_time("the firing after the gap", start, firings[1], PERIOD * 4);
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// A deadline more than 72 h away (past a timer wheel's range) and even
/// `Duration::MAX` can be set: the timer is pending, `remaining` reports about
/// the right time, it does not fire early (a poll times out), and `stop`
/// disarms it and completes a wait with `fired = false`.
fn timer_far_future_beyond_72_hours(kind: BackendKind) {
    const FAR: Duration = Duration::from_secs(73 * 3600);
    let mut drv = driver(kind);
    let t = drv.timers().create();
    let before = Instant::now();
    drv.timers().set(t, FAR, Duration::ZERO).unwrap();
    let left = drv.timers().remaining(t).expect("armed");
    assert!(left <= FAR, "remaining {left:?} beyond the timeout");
    assert!(
        left + before.elapsed() + Duration::from_secs(1) >= FAR,
        "remaining {left:?} is far less than 73 h"
    );
    assert!(drv.timers().is_pending(t));
    assert_eq!(drv.waiter_count(), 1);

    let results: Rc<RefCell<Vec<bool>>> = Rc::default();
    let r = results.clone();
    drv.timers()
        .wait(t, move |_, _, fired| r.borrow_mut().push(fired))
        .unwrap();
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::Timeout
    );
    assert!(results.borrow().is_empty(), "a 73 h timer fired early");

    drv.timers().stop(t).unwrap();
    assert!(!drv.timers().is_pending(t));
    assert_eq!(drv.timers().remaining(t), None);
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(*results.borrow(), [false]);

    // The largest timeout there is must not overflow into "now".
    drv.timers().set(t, Duration::MAX, Duration::ZERO).unwrap();
    assert!(drv.timers().is_pending(t));
    assert!(drv.timers().remaining(t).unwrap() > FAR);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(20))).unwrap(),
        ExitReason::Timeout
    );
    drv.timers().stop(t).unwrap();
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// Re-arming an armed timer to an earlier deadline moves it: set to 10 s,
/// then to 100 ms, the pending wait fires at 100 ms, once.
fn timer_rearm_to_earlier_deadline(kind: BackendKind) {
    const TIMEOUT: Duration = Duration::from_millis(100);
    rearmed_timer_fires_once_on_time(kind, Duration::from_secs(10), TIMEOUT, |left| assert!(left <= TIMEOUT));
}

/// Re-arming an armed timer to a later deadline moves it: set to 50 ms, then
/// to 300 ms, the pending wait fires at 300 ms — not at 50 ms — once.
fn timer_rearm_to_later_deadline(kind: BackendKind) {
    const TIMEOUT: Duration = Duration::from_millis(300);
    rearmed_timer_fires_once_on_time(kind, Duration::from_millis(50), TIMEOUT, |left| {
        assert!(left > Duration::from_millis(100))
    });
}

/// A timer armed for `first` with a wait pending is re-armed for `then`
/// (`check_remaining` gets its remaining time right after); the wait fires
/// once, on time for `then`.
fn rearmed_timer_fires_once_on_time(
    kind: BackendKind,
    first: Duration,
    then: Duration,
    check_remaining: impl FnOnce(Duration),
) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers().set(t, first, Duration::ZERO).unwrap();
    let fired_at: Rc<RefCell<Vec<Instant>>> = Rc::default();
    let f = fired_at.clone();
    drv.timers()
        .wait(t, move |_, _, fired| {
            assert!(fired);
            f.borrow_mut().push(Instant::now());
        })
        .unwrap();
    let start = Instant::now();
    drv.timers().set(t, then, Duration::ZERO).unwrap();
    check_remaining(drv.timers().remaining(t).unwrap());

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(fired_at.borrow().len(), 1);
    assert_on_time("the re-armed timer", start, fired_at.borrow()[0], then);
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// `is_periodic` follows the last `set`: false for a new timer and a zero
/// repeat, true with a repeat period, false for a released handle.
fn timer_is_periodic_follows_last_set(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    assert!(!drv.timers().is_periodic(t));
    assert!(!drv.timers().is_pending(t));

    drv.timers().set(t, Duration::from_secs(5), Duration::ZERO).unwrap();
    assert!(!drv.timers().is_periodic(t));
    assert!(drv.timers().is_pending(t));

    drv.timers()
        .set(t, Duration::from_secs(5), Duration::from_secs(1))
        .unwrap();
    assert!(drv.timers().is_periodic(t));

    drv.timers().set(t, Duration::from_secs(5), Duration::ZERO).unwrap();
    assert!(!drv.timers().is_periodic(t));

    drv.timers()
        .set(t, Duration::from_secs(5), Duration::from_secs(1))
        .unwrap();
    assert!(!drv.release_ref(t).unwrap());
    assert!(!drv.timers().is_periodic(t));
    assert!(!drv.timers().is_pending(t));
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// One wait per timer: a second `wait` while one is pending fails with
/// `Busy` (its callback never runs), the first still fires exactly once, and
/// once it has run a new wait is accepted again.
fn timer_second_wait_while_pending_is_busy(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_millis(50), Duration::ZERO).unwrap();
    let first: Rc<RefCell<Vec<bool>>> = Rc::default();
    let second_ran = Rc::new(Cell::new(false));
    let third: Rc<RefCell<Vec<bool>>> = Rc::default();

    let (f, th) = (first.clone(), third.clone());
    drv.timers()
        .wait(t, move |drv, t, fired| {
            f.borrow_mut().push(fired);
            // The wait slot is free again inside the callback.
            drv.timers()
                .wait(t, move |_, _, fired| th.borrow_mut().push(fired))
                .unwrap();
        })
        .unwrap();
    let s = second_ran.clone();
    match drv.timers().wait(t, move |_, _, _| s.set(true)) {
        Err(e) => assert_eq!(e.status(), Status::Busy),
        Ok(()) => panic!("a second wait while one is pending must be Busy"),
    }

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(*first.borrow(), [true]);
    assert!(!second_ran.get());
    // The one-shot had fired, so the wait made in its callback saw an
    // unarmed timer.
    assert_eq!(*third.borrow(), [false]);
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// 10,000 timers armed in a shuffled order with deadlines spread over 300 ms
/// all fire exactly once, none early, and in deadline order. The deadline of
/// each timer is only known to lie between the instants taken just before and
/// just after its `set`, so the order check only flags pairs whose order is
/// certain: a timer fired before another whose deadline was surely earlier.
fn timer_ten_thousand_fire_once_in_deadline_order(kind: BackendKind) {
    const N: usize = 10_000;
    let mut drv = driver(kind);
    let timers: Vec<TimerId> = (0..N).map(|_| drv.timers().create()).collect();
    let fired: Rc<RefCell<Vec<(usize, Instant)>>> = Rc::new(RefCell::new(Vec::with_capacity(N)));
    // Bounds of each timer's deadline: (at least, at most).
    let mut bounds: Vec<Option<(Instant, Instant)>> = vec![None; N];

    for k in 0..N {
        // 7919 is prime, so this visits every index once, out of order.
        let i = (k * 7919) % N;
        let timeout = Duration::from_micros(30 * i as u64);
        let before = Instant::now();
        drv.timers().set(timers[i], timeout, Duration::ZERO).unwrap();
        bounds[i] = Some((before + timeout, Instant::now() + timeout));
        let f = fired.clone();
        drv.timers()
            .wait(timers[i], move |_, _, ok| {
                assert!(ok, "timer {i} reported fired = false");
                f.borrow_mut().push((i, Instant::now()));
            })
            .unwrap();
    }
    assert!(drv.waiter_count() >= N, "armed timers are waiters");

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(20)),
        ExitReason::OutOfWaiters
    );

    let fired = fired.borrow();
    let mut count = vec![0usize; N];
    for &(i, _) in fired.iter() {
        count[i] += 1;
    }
    let wrong: Vec<_> = count.iter().enumerate().filter(|(_, &c)| c != 1).take(10).collect();
    assert!(wrong.is_empty(), "(timer, firings) not exactly once: {wrong:?}");

    let mut latest_earliest: Option<(usize, Instant)> = None;
    for &(i, at) in fired.iter() {
        let (lo, hi) = bounds[i].unwrap();
        assert!(at >= lo, "timer {i} fired {:?} early", lo - at);
        if let Some((j, lo_j)) = latest_earliest {
            assert!(lo_j <= hi, "timer {j} (deadline surely later) fired before timer {i}");
        }
        if latest_earliest.is_none_or(|(_, l)| lo > l) {
            latest_earliest = Some((i, lo));
        }
    }

    for t in timers {
        assert!(!drv.release_ref(t).unwrap());
    }
    assert_no_leaks(&drv);
}

/// Releasing a timer whose wait is pending disarms it and cancels the wait:
/// the callback never runs (it is dropped), and the loop runs out of waiters
/// at once instead of waiting for the deadline.
fn timer_release_with_pending_wait_runs_no_callback(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers()
        .set(t, Duration::from_secs(2), Duration::from_secs(2))
        .unwrap();
    let (ran, dropped) = wait_that_must_not_run(&mut drv, t);

    assert!(!drv.release_ref(t).unwrap());
    assert_eq!(dropped.get(), 1, "the cancelled callback is dropped");
    assert_eq!(drv.waiter_count(), 0);
    let start = Instant::now();
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert!(start.elapsed() < Duration::from_secs(1), "the timer stayed armed");
    assert!(!ran.get());
    assert_no_leaks(&drv);
}

/// Two timers fire in the same batch; whichever callback runs first releases
/// the other timer. The other timer's firing is then still pending (its
/// callback has not run), so the release cancels it: exactly one callback
/// runs, and no callback ever sees a released handle.
fn timer_release_after_firing_before_dispatch_runs_no_callback(kind: BackendKind) {
    let mut drv = driver(kind);
    // (which timer ran, whether its handle was valid in the callback)
    let (_, _, ran) = two_timers_fire_in_one_batch(&mut drv, |drv, me, other| {
        let valid = drv.is_valid(me);
        if drv.is_valid(other) {
            assert!(!drv.release_ref(other).unwrap());
        }
        valid
    });
    assert_eq!(
        ran.len(),
        1,
        "the released timer's callback ran after its release: {ran:?}"
    );
    let (survivor, valid) = ran[0];
    assert!(valid);
    assert!(!drv.release_ref(survivor).unwrap());
    assert_no_leaks(&drv);
}

/// `stop` queues the wait's completion (`fired = false`); releasing the timer
/// before the loop has dispatched it cancels that completion like any other
/// pending operation: the callback never runs (it would see a released
/// handle), and the loop runs out of waiters.
fn timer_release_after_stop_before_dispatch_runs_no_callback(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_secs(5), Duration::ZERO).unwrap();
    let ran: Rc<RefCell<Vec<bool>>> = Rc::default();
    let dropped = Rc::new(Cell::new(0usize));
    let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
    drv.timers()
        .wait(t, move |drv, t, _| {
            let _g = g;
            r.borrow_mut().push(drv.is_valid(t));
        })
        .unwrap();
    drv.timers().stop(t).unwrap();
    assert!(!drv.release_ref(t).unwrap());

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert!(
        ran.borrow().is_empty(),
        "the callback ran after the release (handle valid: {:?})",
        ran.borrow()
    );
    assert_eq!(dropped.get(), 1);
    assert_no_leaks(&drv);
}

/// `stop` queues the wait's completion (`fired = false`); a `cancel_wait`
/// before the loop has dispatched it still withdraws it: after `cancel_wait`
/// returns, the callback never runs (the same holds for events, whose chosen
/// but undispatched waiters can be cancelled).
fn timer_cancel_wait_after_stop_before_dispatch_never_runs(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_secs(5), Duration::ZERO).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.timers().wait(t, move |_, _, _| r.set(true)).unwrap();
    drv.timers().stop(t).unwrap();
    let cancelled = drv.timers().cancel_wait(t);

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert!(
        !ran.get(),
        "the callback ran after cancel_wait (which returned {cancelled})"
    );
    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// Two timers fire in the same batch; whichever callback runs first cancels
/// the other's wait, whose firing is queued but not yet dispatched: after
/// `cancel_wait` returns, that callback never runs, so exactly one runs.
fn timer_cancel_wait_after_firing_before_dispatch_never_runs(kind: BackendKind) {
    let mut drv = driver(kind);
    // (which timer ran, what its cancel_wait of the other returned)
    let (a, b, ran) = two_timers_fire_in_one_batch(&mut drv, |drv, _, other| drv.timers().cancel_wait(other));
    assert_eq!(ran.len(), 1, "a callback ran after its wait was cancelled: {ran:?}");
    assert!(!drv.release_ref(a).unwrap());
    assert!(!drv.release_ref(b).unwrap());
    assert_no_leaks(&drv);
}

/// `set_at`: timers armed at absolute deadlines from one clock reading fire
/// in deadline order and never before their deadline; a deadline already
/// past fires from the next `process_events`; a periodic timer armed with
/// `set_at` repeats from its first deadline; a stale handle is an error.
fn timer_set_at_absolute_deadlines(kind: BackendKind) {
    let mut drv = driver(kind);
    let base = Instant::now();
    let fired: Rc<RefCell<Vec<(usize, Instant)>>> = Rc::default();
    // Armed out of order: 40, 10, 30, 20 ms after `base`.
    for (i, ms) in [40u64, 10, 30, 20].into_iter().enumerate() {
        let t = drv.timers().create();
        drv.timers()
            .set_at(t, base + Duration::from_millis(ms), Duration::ZERO)
            .unwrap();
        let fired = fired.clone();
        drv.timers()
            .wait(t, move |drv, t, was| {
                assert!(was, "an armed timer reports fired = true");
                fired.borrow_mut().push((i, Instant::now()));
                drv.release_ref(t).unwrap();
            })
            .unwrap();
    }
    // A deadline in the past: due at once.
    let past = drv.timers().create();
    drv.timers()
        .set_at(
            past,
            base.checked_sub(Duration::from_millis(1)).unwrap_or(base),
            Duration::ZERO,
        )
        .unwrap();
    assert!(drv.timers().is_pending(past));
    let at_once = Rc::new(Cell::new(false));
    let flag = at_once.clone();
    drv.timers().wait(past, move |_, _, was| flag.set(was)).unwrap();
    assert_eq!(drv.process_events(Some(Duration::ZERO)).unwrap(), ExitReason::Idle);
    assert!(at_once.get(), "a passed deadline fires from the next batch");
    while fired.borrow().len() < 4 {
        assert_ne!(
            drv.process_events(Some(Duration::from_secs(5))).unwrap(),
            ExitReason::Timeout
        );
    }
    let order: Vec<usize> = fired.borrow().iter().map(|(i, _)| *i).collect();
    assert_eq!(order, vec![1, 3, 2, 0], "deadline order");
    for (i, at) in fired.borrow().iter() {
        let due = Duration::from_millis([40u64, 10, 30, 20][*i]);
        assert_on_time(&format!("timer {i}"), base, *at, due);
    }
    // Periodic from an absolute first deadline.
    let period = Duration::from_millis(15);
    let start = Instant::now();
    let ticks = Rc::new(Ticks {
        start,
        period,
        count: Cell::new(0),
        last: 3,
        on_tick: Box::new(|_| {}),
    });
    let t = drv.timers().create();
    drv.timers().set_at(t, start + period, period).unwrap();
    assert!(drv.timers().is_periodic(t));
    drv.timers()
        .wait(t, move |drv, t, f| periodic_tick(drv, t, f, ticks))
        .unwrap();
    while drv.timers().is_pending(t) {
        drv.process_events(Some(Duration::from_secs(5))).unwrap();
    }
    drv.release_ref(t).unwrap();
    drv.release_ref(past).unwrap();
    let err = drv.timers().set_at(past, Instant::now(), Duration::ZERO).unwrap_err();
    assert_eq!(err.status(), Status::InvalidHandle);
    assert_no_leaks(&drv);
}

/// A panic in a timer callback comes out of `process_events` and leaves the
/// driver whole: a periodic timer stays armed and a new wait on it fires,
/// the callback of another timer due at the same time runs exactly once
/// (in that call or the next), and nothing runs twice.
fn timer_callback_panic_leaves_the_driver_whole(kind: BackendKind) {
    let mut drv = driver(kind);
    let periodic = drv.timers().create();
    let other = drv.timers().create();
    let due = Instant::now() + Duration::from_millis(20);
    drv.timers().set_at(periodic, due, Duration::from_millis(20)).unwrap();
    drv.timers().set_at(other, due, Duration::ZERO).unwrap();
    drv.timers()
        .wait(periodic, |_, _, _| panic!("timer callback panics"))
        .unwrap();
    let other_calls = Rc::new(Cell::new(0));
    let c = other_calls.clone();
    drv.timers()
        .wait(other, move |_, _, fired| {
            assert!(fired);
            c.set(c.get() + 1);
        })
        .unwrap();
    assert_eq!(util::run_until_panic(&mut drv, LATE * 10), "timer callback panics");
    util::run_until(&mut drv, LATE * 10, |_| other_calls.get() == 1);
    assert!(drv.timers().is_pending(periodic), "the periodic timer stays armed");
    let again = Rc::new(Cell::new(0));
    let a = again.clone();
    drv.timers().wait(periodic, move |_, _, _| a.set(a.get() + 1)).unwrap();
    util::run_until(&mut drv, LATE * 10, |_| again.get() == 1);
    drv.timers().stop(periodic).unwrap();
    drv.release_ref(periodic).unwrap();
    drv.release_ref(other).unwrap();
    assert_eq!(run_until_not_idle(&mut drv, LATE * 10), ExitReason::OutOfWaiters);
    assert_eq!((other_calls.get(), again.get()), (1, 1), "nothing ran twice");
    assert_no_leaks(&drv);
}

/// Waits on `t` with a callback that must not run; returns whether it ran
/// and how often it was dropped.
fn wait_that_must_not_run(drv: &mut Driver, t: TimerId) -> (Rc<Cell<bool>>, Rc<Cell<usize>>) {
    let ran = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(0usize));
    let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
    drv.timers()
        .wait(t, move |_, _, _| {
            let _g = g;
            r.set(true);
        })
        .unwrap();
    (ran, dropped)
}

/// Two one-shot timers whose deadlines both pass before the loop looks, so
/// that both fire in one batch. Each one's callback gets the driver, its own
/// timer and the other one; what it returns is logged with its timer. Runs
/// the loop until it runs out of waiters and returns both timers and the log.
fn two_timers_fire_in_one_batch(
    drv: &mut Driver,
    on_fire: impl Fn(&mut Driver, TimerId, TimerId) -> bool + Clone + 'static,
) -> (TimerId, TimerId, Vec<(TimerId, bool)>) {
    let a = drv.timers().create();
    let b = drv.timers().create();
    let ran: Rc<RefCell<Vec<(TimerId, bool)>>> = Rc::default();
    for (me, other) in [(a, b), (b, a)] {
        drv.timers().set(me, Duration::from_millis(10), Duration::ZERO).unwrap();
        let (r, on_fire) = (ran.clone(), on_fire.clone());
        drv.timers()
            .wait(me, move |drv, me, fired| {
                assert!(fired);
                let logged = on_fire(drv, me, other);
                r.borrow_mut().push((me, logged));
            })
            .unwrap();
    }
    // Both deadlines pass before the loop looks, so both fire in one batch.
    thread::sleep(Duration::from_millis(50));

    assert_eq!(
        run_until_not_idle(drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    let ran = ran.take();
    (a, b, ran)
}

contract_tests! {
    timer_callback_panic_leaves_the_driver_whole,
    timer_set_at_absolute_deadlines,
    timer_one_shot_then_periodic_upstream_0_timer,
    timer_periodic_rewait_fires_three_times_then_stops,
    timer_wait_on_unarmed_timer_reports_not_fired,
    timer_stop_completes_pending_wait_with_not_fired,
    timer_cancel_wait_then_stop_runs_no_callback,
    timer_cancel_wait_keeps_timer_armed,
    timer_armed_without_wait_keeps_loop_alive,
    timer_periodic_does_not_starve_one_shot_issue_25,
    timer_periodic_skips_missed_periods,
    timer_far_future_beyond_72_hours,
    timer_rearm_to_earlier_deadline,
    timer_rearm_to_later_deadline,
    timer_is_periodic_follows_last_set,
    timer_second_wait_while_pending_is_busy,
    timer_ten_thousand_fire_once_in_deadline_order,
    timer_release_with_pending_wait_runs_no_callback,
    timer_release_after_firing_before_dispatch_runs_no_callback,
    timer_release_after_stop_before_dispatch_runs_no_callback,
    timer_cancel_wait_after_stop_before_dispatch_never_runs,
    timer_cancel_wait_after_firing_before_dispatch_never_runs,
}
