//! Contract tests for events: FIFO waiters, notify-one and notify-all,
//! triggers from the owner thread and through `Remote`, cancellation, release
//! and stale handles.
//!
//! Ports `0-event.d` from vibe.d's eventcore (for both `notify_all` values),
//! and checks the fix the contract asks for: a cross-thread single
//! notification wakes exactly one waiter, however the OS coalesces wake-ups.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use eventcore::{BackendKind, Driver, EventId, ExitReason, Status};
use util::{assert_no_leaks, driver, run_until, run_until_not_idle, DropCounter};

/// A shared log of which waiters ran, in order.
type Log = Rc<RefCell<Vec<usize>>>;

/// Registers a waiter on `e` that appends `id` to `log`.
fn wait_logging(drv: &mut Driver, e: EventId, log: &Log, id: usize) -> eventcore::EventWait {
    let log = log.clone();
    drv.events().wait(e, move |_, _| log.borrow_mut().push(id)).unwrap()
}

/// Triggers `e`, runs the loop until it runs out of waiters, checks that the
/// log then reads `want`, and releases `e`, with nothing left.
#[track_caller]
fn trigger_to_the_end(drv: &mut Driver, e: EventId, notify_all: bool, log: &Log, want: &[usize]) {
    drv.events().trigger(e, notify_all).unwrap();
    assert_eq!(
        run_until_not_idle(drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(*log.borrow(), want);
    assert!(!drv.release_ref(e).unwrap());
    assert_no_leaks(drv);
}

/// Upstream `0-event.d` for one `notify_all` value. Waiter 1 registers
/// waiter 2 from inside its callback. A local trigger from a timer callback
/// must call waiter 1 only — waiter 2 was added while that trigger was being
/// delivered, so it is not called by it, not even for notify-all. 100 ms later
/// (500 ms upstream) another thread triggers the event through `Remote`, which
/// must call waiter 2. Waiter 2 withdraws the watchdog timer's wait and stops
/// it, and the loop then runs out of waiters.
fn upstream_0_event(kind: BackendKind, notify_all: bool) {
    const REMOTE_DELAY: Duration = Duration::from_millis(100);
    let mut drv = driver(kind);
    let e = drv.events().create();
    let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let remote_sent = Arc::new(AtomicBool::new(false));
    let sender: Rc<RefCell<Option<JoinHandle<()>>>> = Rc::default();
    let triggered_at: Rc<Cell<Option<Instant>>> = Rc::default();

    // The watchdog: fails the test if nothing ends it within 10 s.
    let watchdog = drv.timers().create();
    drv.timers()
        .set(watchdog, Duration::from_secs(10), Duration::ZERO)
        .unwrap();
    let l = log.clone();
    drv.timers()
        .wait(watchdog, move |_, _, fired| {
            assert!(!fired, "test hung");
            l.borrow_mut().push("watchdog stopped");
        })
        .unwrap();

    // Waiter 1.
    let (l, rs, snd, at) = (log.clone(), remote_sent.clone(), sender.clone(), triggered_at.clone());
    drv.events()
        .wait(e, move |drv, e| {
            l.borrow_mut().push("waiter 1");
            // Waiter 2, registered while the local trigger is delivered.
            let (l, rs2) = (l.clone(), rs.clone());
            drv.events()
                .wait(e, move |drv, _| {
                    l.borrow_mut().push("waiter 2");
                    assert!(rs2.load(Ordering::SeqCst), "waiter 2 was called by the local trigger");
                    let since = at.get().expect("triggered").elapsed();
                    assert!(since >= REMOTE_DELAY, "waiter 2 ran after {since:?}");
                    assert!(drv.timers().cancel_wait(watchdog));
                    drv.timers().stop(watchdog).unwrap();
                })
                .unwrap();
            let remote = drv.remote();
            *snd.borrow_mut() = Some(thread::spawn(move || {
                thread::sleep(REMOTE_DELAY);
                rs.store(true, Ordering::SeqCst);
                remote.trigger(e, notify_all).unwrap();
            }));
        })
        .unwrap();

    // The local trigger, from a timer callback.
    let trigger_timer = drv.timers().create();
    drv.timers()
        .set(trigger_timer, Duration::from_millis(20), Duration::ZERO)
        .unwrap();
    let (l, at) = (log.clone(), triggered_at.clone());
    drv.timers()
        .wait(trigger_timer, move |drv, _, fired| {
            assert!(fired);
            at.set(Some(Instant::now()));
            drv.events().trigger(e, notify_all).unwrap();
            l.borrow_mut().push("local trigger");
        })
        .unwrap();

    let reason = run_until_not_idle(&mut drv, Duration::from_secs(15));
    if let Some(t) = sender.borrow_mut().take() {
        t.join().unwrap();
    }
    assert_eq!(reason, ExitReason::OutOfWaiters);
    assert_eq!(*log.borrow(), ["local trigger", "waiter 1", "waiter 2"]);

    for h in [watchdog, trigger_timer] {
        assert!(!drv.release_ref(h).unwrap());
    }
    assert!(!drv.release_ref(e).unwrap());
    assert_no_leaks(&drv);
}

/// [`upstream_0_event`] with single notifications.
fn event_upstream_0_event_notify_one(kind: BackendKind) {
    upstream_0_event(kind, false);
}

/// [`upstream_0_event`] with notify-all: a waiter added during a notify-all
/// is still not called by it.
fn event_upstream_0_event_notify_all(kind: BackendKind) {
    upstream_0_event(kind, true);
}

/// Single notifications wake waiters in the order they registered, one per
/// trigger: four triggers, each processed on its own, wake waiters 0, 1, 2, 3
/// in turn.
fn event_waiters_woken_in_fifo_order_one_per_trigger(kind: BackendKind) {
    let mut drv = driver(kind);
    let e = drv.events().create();
    let log: Log = Rc::default();
    for id in 0..4 {
        wait_logging(&mut drv, e, &log, id);
    }
    for round in 0..4 {
        drv.events().trigger(e, false).unwrap();
        assert_eq!(
            drv.process_events(Some(Duration::from_secs(5))).unwrap(),
            ExitReason::Idle
        );
        let expected: Vec<usize> = (0..=round).collect();
        assert_eq!(*log.borrow(), expected, "after trigger {round}");
    }
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert!(!drv.release_ref(e).unwrap());
    assert_no_leaks(&drv);
}

/// A notify-all trigger wakes every current waiter, in FIFO order, each once;
/// the event stays usable for new waiters afterwards.
fn event_notify_all_wakes_every_current_waiter(kind: BackendKind) {
    let mut drv = driver(kind);
    let e = drv.events().create();
    let log: Log = Rc::default();
    for id in 0..3 {
        wait_logging(&mut drv, e, &log, id);
    }
    drv.events().trigger(e, true).unwrap();
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(*log.borrow(), [0, 1, 2]);

    wait_logging(&mut drv, e, &log, 3);
    trigger_to_the_end(&mut drv, e, true, &log, &[0, 1, 2, 3]);
}

/// A waiter registered from inside a callback of a notify-all trigger is not
/// woken by that trigger: it stays pending (the loop times out) until the next
/// trigger.
fn event_waiter_added_during_notify_all_waits_for_next_trigger(kind: BackendKind) {
    let mut drv = driver(kind);
    let e = drv.events().create();
    let log: Log = Rc::default();
    let l = log.clone();
    drv.events()
        .wait(e, move |drv, e| {
            l.borrow_mut().push(0);
            wait_logging(drv, e, &l, 2);
        })
        .unwrap();
    wait_logging(&mut drv, e, &log, 1);

    drv.events().trigger(e, true).unwrap();
    run_until(&mut drv, Duration::from_secs(5), |_| log.borrow().len() >= 2);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(100))).unwrap(),
        ExitReason::Timeout
    );
    assert_eq!(*log.borrow(), [0, 1]);

    trigger_to_the_end(&mut drv, e, true, &log, &[0, 1, 2]);
}

/// Two single notifications sent through `Remote` back to back, both before
/// the loop wakes, wake exactly two of three waiters (the first two): the
/// coalesced OS wake-up must turn them neither into one notification nor into
/// a notify-all.
fn event_two_remote_single_triggers_wake_exactly_two(kind: BackendKind) {
    two_remote_single_triggers_wake_exactly_two(kind, false);
}

/// The same with the loop already blocked in `process_events` when the two
/// notifications arrive back to back from another thread: exactly two of the
/// three waiters run.
fn event_two_remote_single_triggers_into_blocked_loop_wake_exactly_two(kind: BackendKind) {
    two_remote_single_triggers_wake_exactly_two(kind, true);
}

/// Two single notifications through `Remote`, back to back, sent before the
/// loop looks or (`into_blocked_loop`) while it is blocked: exactly the first
/// two of three waiters run.
fn two_remote_single_triggers_wake_exactly_two(kind: BackendKind, into_blocked_loop: bool) {
    let mut drv = driver(kind);
    let e = drv.events().create();
    let log: Log = Rc::default();
    let waits: Vec<_> = (0..3).map(|id| wait_logging(&mut drv, e, &log, id)).collect();

    let remote = drv.remote();
    let send_two = move || {
        remote.trigger(e, false).unwrap();
        remote.trigger(e, false).unwrap();
    };
    if into_blocked_loop {
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            send_two();
        });
        run_until(&mut drv, Duration::from_secs(5), |_| log.borrow().len() >= 2);
        sender.join().unwrap();
    } else {
        thread::spawn(send_two).join().unwrap();
        assert_eq!(
            drv.process_events(Some(Duration::from_secs(5))).unwrap(),
            ExitReason::Idle
        );
        run_until(&mut drv, Duration::from_secs(5), |_| log.borrow().len() >= 2);
    }
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(100))).unwrap(),
        ExitReason::Timeout,
        "the third waiter must still be waiting"
    );
    assert_eq!(*log.borrow(), [0, 1]);

    assert!(drv.events().cancel_wait(e, waits[2]));
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_eq!(*log.borrow(), [0, 1]);
    assert!(!drv.release_ref(e).unwrap());
    assert_no_leaks(&drv);
}

/// `cancel_wait` of a waiter that a trigger has already chosen but whose
/// callback has not been dispatched yet: it reports the wait as withdrawn and
/// the callback never runs (it is dropped). With notify-all, cancelling one
/// chosen waiter leaves the others to run.
fn event_cancel_wait_after_trigger_before_dispatch_never_runs(kind: BackendKind) {
    let mut drv = driver(kind);
    let e = drv.events().create();
    let ran = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(0usize));
    let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
    let w = drv
        .events()
        .wait(e, move |_, _| {
            let _g = g;
            r.set(true);
        })
        .unwrap();
    drv.events().trigger(e, false).unwrap();
    assert!(drv.events().cancel_wait(e, w), "the wait had not run yet");
    assert_eq!(dropped.get(), 1);
    assert!(!drv.events().cancel_wait(e, w));
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert!(!ran.get());

    let log: Log = Rc::default();
    let w0 = wait_logging(&mut drv, e, &log, 0);
    wait_logging(&mut drv, e, &log, 1);
    drv.events().trigger(e, true).unwrap();
    assert!(drv.events().cancel_wait(e, w0));
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(*log.borrow(), [1]);
    assert!(!drv.release_ref(e).unwrap());
    assert_no_leaks(&drv);
}

/// `cancel_wait` with the `EventWait` of another event returns `false` and
/// changes nothing: both waits still run when their events are triggered.
fn event_cancel_wait_with_wait_of_other_event_is_harmless(kind: BackendKind) {
    let mut drv = driver(kind);
    let e1 = drv.events().create();
    let e2 = drv.events().create();
    let log: Log = Rc::default();
    let w1 = wait_logging(&mut drv, e1, &log, 1);
    let w2 = wait_logging(&mut drv, e2, &log, 2);

    assert!(!drv.events().cancel_wait(e1, w2));
    assert!(!drv.events().cancel_wait(e2, w1));

    drv.events().trigger(e1, false).unwrap();
    drv.events().trigger(e2, false).unwrap();
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(*log.borrow(), [1, 2]);
    // Waits that already ran cannot be cancelled either.
    assert!(!drv.events().cancel_wait(e1, w1));
    assert!(!drv.release_ref(e1).unwrap());
    assert!(!drv.release_ref(e2).unwrap());
    assert_no_leaks(&drv);
}

/// `trigger` only queues: no callback runs inside the call, for notify-one or
/// notify-all; they run from the next `process_events`.
fn event_trigger_never_runs_callbacks_inside_call(kind: BackendKind) {
    let mut drv = driver(kind);
    let e = drv.events().create();
    let log: Log = Rc::default();
    for id in 0..3 {
        wait_logging(&mut drv, e, &log, id);
    }
    drv.events().trigger(e, false).unwrap();
    assert!(log.borrow().is_empty(), "ran inside trigger(notify_one)");
    drv.events().trigger(e, true).unwrap();
    assert!(log.borrow().is_empty(), "ran inside trigger(notify_all)");
    assert_eq!(
        drv.process_events(Some(Duration::from_secs(5))).unwrap(),
        ExitReason::Idle
    );
    assert_eq!(*log.borrow(), [0, 1, 2]);
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert!(!drv.release_ref(e).unwrap());
    assert_no_leaks(&drv);
}

/// Releasing an event with waiters cancels them: their callbacks never run
/// (they are dropped at the release), the loop runs out of waiters, and
/// nothing leaks.
fn event_release_with_waiters_runs_no_callbacks(kind: BackendKind) {
    let mut drv = driver(kind);
    let e = drv.events().create();
    let ran = Rc::new(Cell::new(0usize));
    let dropped = Rc::new(Cell::new(0usize));
    let mut waits = Vec::new();
    for _ in 0..2 {
        let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
        waits.push(
            drv.events()
                .wait(e, move |_, _| {
                    let _g = g;
                    r.set(r.get() + 1);
                })
                .unwrap(),
        );
    }
    assert!(!drv.release_ref(e).unwrap());
    assert_eq!(dropped.get(), 2);
    assert_eq!(drv.waiter_count(), 0);
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(ran.get(), 0);
    for w in waits {
        assert!(!drv.events().cancel_wait(e, w));
    }
    assert_no_leaks(&drv);
}

/// A trigger chooses a waiter, then the event is released before the loop
/// dispatches it: the chosen wait is still pending, so the release cancels it
/// and its callback never runs (it would see a released event).
fn event_release_after_trigger_before_dispatch_runs_no_callback(kind: BackendKind) {
    let mut drv = driver(kind);
    let ran: Rc<RefCell<Vec<bool>>> = Rc::default();
    let dropped = Rc::new(Cell::new(0usize));
    for notify_all in [false, true] {
        let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
        let ev = drv.events().create();
        drv.events()
            .wait(ev, move |drv, ev| {
                let _g = g;
                r.borrow_mut().push(drv.is_valid(ev));
            })
            .unwrap();
        drv.events().trigger(ev, notify_all).unwrap();
        assert!(!drv.release_ref(ev).unwrap());
    }

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert!(
        ran.borrow().is_empty(),
        "callbacks ran after their event was released (handle valid: {:?})",
        ran.borrow()
    );
    assert_eq!(dropped.get(), 2);
    assert_no_leaks(&drv);
}

/// A trigger of a released event fails with `InvalidHandle`, and so does a
/// wait on it; neither reaches the new event that reuses its slot, whose
/// waiter runs only when the new event itself is triggered.
fn event_trigger_of_stale_event_is_invalid_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let old = drv.events().create();
    assert!(!drv.release_ref(old).unwrap());
    let new = drv.events().create();
    let log: Log = Rc::default();
    wait_logging(&mut drv, new, &log, 1);

    for notify_all in [false, true] {
        match drv.events().trigger(old, notify_all) {
            Err(e) => assert_eq!(e.status(), Status::InvalidHandle),
            Ok(()) => panic!("trigger of a released event succeeded"),
        }
    }
    let l = log.clone();
    match drv.events().wait(old, move |_, _| l.borrow_mut().push(0)) {
        Err(e) => assert_eq!(e.status(), Status::InvalidHandle),
        Ok(_) => panic!("wait on a released event succeeded"),
    }
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::Timeout
    );
    assert!(log.borrow().is_empty(), "the stale trigger reached the new event");

    trigger_to_the_end(&mut drv, new, false, &log, &[1]);
}

/// A `Remote` trigger of an event released in the meantime is harmless: the
/// loop takes it, wakes nobody — not the waiter of the new event that reuses
/// the slot — and, with nothing else to wait for, runs out of waiters.
fn event_remote_trigger_of_released_event_is_harmless(kind: BackendKind) {
    let mut drv = driver(kind);
    let old = drv.events().create();
    assert!(!drv.release_ref(old).unwrap());

    let send_stale = |drv: &Driver| {
        let remote = drv.remote();
        thread::spawn(move || {
            for notify_all in [false, true] {
                if let Err(e) = remote.trigger(old, notify_all) {
                    // A Remote may not be able to tell; if it can, the only
                    // fitting error is InvalidHandle.
                    assert_eq!(e.status(), Status::InvalidHandle);
                }
            }
        })
        .join()
        .unwrap();
    };

    // Nothing else alive: the loop takes the messages and runs out of waiters.
    send_stale(&drv);
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );

    // A new event in the same slot is not woken by the stale handle.
    let new = drv.events().create();
    let log: Log = Rc::default();
    wait_logging(&mut drv, new, &log, 1);
    send_stale(&drv);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(100))).unwrap(),
        ExitReason::Timeout
    );
    assert!(log.borrow().is_empty(), "the stale trigger reached the new event");

    trigger_to_the_end(&mut drv, new, true, &log, &[1]);
}

contract_tests! {
    event_upstream_0_event_notify_one,
    event_upstream_0_event_notify_all,
    event_waiters_woken_in_fifo_order_one_per_trigger,
    event_notify_all_wakes_every_current_waiter,
    event_waiter_added_during_notify_all_waits_for_next_trigger,
    event_two_remote_single_triggers_wake_exactly_two,
    event_two_remote_single_triggers_into_blocked_loop_wake_exactly_two,
    event_cancel_wait_after_trigger_before_dispatch_never_runs,
    event_cancel_wait_with_wait_of_other_event_is_harmless,
    event_trigger_never_runs_callbacks_inside_call,
    event_release_with_waiters_runs_no_callbacks,
    event_release_after_trigger_before_dispatch_runs_no_callback,
    event_trigger_of_stale_event_is_invalid_handle,
    event_remote_trigger_of_released_event_is_harmless,
}
