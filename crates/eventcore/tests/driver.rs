//! Contract tests for the loop itself: the waiter count, `exit`, `Remote`, and
//! handle life cycles (reference counts, stale and foreign handles, user data,
//! dropping a driver that still has work).
//!
//! Ports `0-waitercount.d` and `0-runinownerthread.d` from vibe.d's eventcore,
//! plus the gaps its suite left open (exit from callbacks, `Remote` after the
//! driver is gone).

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, Driver, ExitReason, Status};
use util::{assert_no_leaks, assert_status, driver, run_until_not_idle, DropCounter};

/// The `Send` flavour of [`DropCounter`], for closures sent through `Remote`.
struct SendDropCounter(Arc<AtomicUsize>);

impl Drop for SendDropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Upstream `0-waitercount.d`: a fresh driver has nothing to wait for, so
/// every `process_events` — with a timeout, with none, or polling — returns
/// `OutOfWaiters` at once, never `Timeout` (which would mean it slept) and
/// never `Exited`.
fn fresh_driver_returns_out_of_waiters_at_once(kind: BackendKind) {
    let mut drv = driver(kind);
    assert_eq!(drv.waiter_count(), 0);

    assert_eq!(
        drv.process_events(Some(Duration::from_millis(100))).unwrap(),
        ExitReason::OutOfWaiters
    );
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_eq!(
        drv.process_events(Some(Duration::ZERO)).unwrap(),
        ExitReason::OutOfWaiters
    );
    // Had it waited, a 3 s timeout would show.
    let start = Instant::now();
    assert_eq!(
        drv.process_events(Some(Duration::from_secs(3))).unwrap(),
        ExitReason::OutOfWaiters
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "OutOfWaiters must be decided before waiting, took {:?}",
        start.elapsed()
    );
    assert_eq!(drv.waiter_count(), 0);
    assert_no_leaks(&drv);
}

/// `exit()` before `process_events` makes the next call return `Exited`
/// without waiting, even when a far timer would keep it blocked; the request
/// is consumed, so the call after that behaves normally again.
fn exit_before_process_events_returns_exited_once(kind: BackendKind) {
    let mut drv = driver(kind);

    // On a fresh driver: Exited wins over OutOfWaiters, then the flag is gone.
    drv.exit();
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::Exited);
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);

    // With a far armed timer: Exited comes back at once instead of blocking.
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_secs(20), Duration::ZERO).unwrap();
    drv.exit();
    let start = Instant::now();
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::Exited);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(20))).unwrap(),
        ExitReason::Timeout,
        "the exit request must be consumed by the first Exited"
    );

    assert!(!drv.release_ref(t).unwrap());
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// `exit()` called from inside a callback ends the current `process_events`
/// with `Exited`, although a 20 s timer is still armed; the request is then
/// consumed and the loop can go on.
fn exit_from_callback_returns_exited(kind: BackendKind) {
    let mut drv = driver(kind);
    let far = drv.timers().create();
    drv.timers().set(far, Duration::from_secs(20), Duration::ZERO).unwrap();

    let ran = Rc::new(Cell::new(0usize));
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_millis(20), Duration::ZERO).unwrap();
    let r = ran.clone();
    drv.timers()
        .wait(t, move |drv, _, fired| {
            assert!(fired);
            r.set(r.get() + 1);
            drv.exit();
        })
        .unwrap();

    let start = Instant::now();
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::Exited);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(ran.get(), 1);

    // The request was consumed: the far timer keeps the loop waiting.
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(20))).unwrap(),
        ExitReason::Timeout
    );

    assert!(!drv.release_ref(t).unwrap());
    assert!(!drv.release_ref(far).unwrap());
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_eq!(ran.get(), 1);
    assert_no_leaks(&drv);
}

/// `clear_exit_flag` forgets a request that has not been consumed yet, both
/// when it was made outside the loop and from inside a callback.
fn clear_exit_flag_forgets_exit_request(kind: BackendKind) {
    let mut drv = driver(kind);

    drv.exit();
    drv.clear_exit_flag();
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);

    let ran = Rc::new(Cell::new(false));
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_millis(10), Duration::ZERO).unwrap();
    let r = ran.clone();
    drv.timers()
        .wait(t, move |drv, _, _| {
            drv.exit();
            drv.clear_exit_flag();
            r.set(true);
        })
        .unwrap();
    assert_eq!(
        drv.process_events(Some(Duration::from_secs(5))).unwrap(),
        ExitReason::Idle
    );
    assert!(ran.get());

    assert!(!drv.release_ref(t).unwrap());
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// Upstream `0-runinownerthread.d`: another thread sends a closure through
/// `Remote::run_in_owner_thread`; it runs on the driver's thread with access
/// to the driver, and stores 42. The loop is kept alive only by an armed 1 s
/// timer that nobody waits on, which also shows that armed timers count as
/// waiters: the loop must not end before the timer has expired.
fn remote_run_in_owner_thread_runs_on_owner_thread(kind: BackendKind) {
    let mut drv = driver(kind);
    let owner = thread::current().id();
    let t = drv.timers().create();
    let start = Instant::now();
    drv.timers().set(t, Duration::from_secs(1), Duration::ZERO).unwrap();

    let seen: Arc<Mutex<Option<(thread::ThreadId, i32)>>> = Arc::new(Mutex::new(None));
    let remote = drv.remote();
    let s = seen.clone();
    let sender = thread::spawn(move || {
        let id = 42;
        remote
            .run_in_owner_thread(move |drv: &mut Driver| {
                *s.lock().unwrap() = Some((thread::current().id(), id));
                // The closure really is on the owner thread: it can use the
                // driver and its handles.
                drv.set_user_data(t, id).unwrap();
            })
            .unwrap();
    });

    let reason = run_until_not_idle(&mut drv, Duration::from_secs(10));
    sender.join().unwrap();
    assert_eq!(reason, ExitReason::OutOfWaiters);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "the armed timer must keep the loop alive until it expires"
    );
    assert_eq!(*seen.lock().unwrap(), Some((owner, 42)));
    assert_eq!(drv.user_data::<_, i32>(t).copied(), Some(42));

    assert!(!drv.release_ref(t).unwrap());
    assert_no_leaks(&drv);
}

/// A closure queued by `Remote::run_in_owner_thread` counts as a waiter until
/// it has run: with nothing else to wait for, the loop runs it (`Idle`) and
/// only then reports `OutOfWaiters`.
fn remote_queued_closure_counts_as_waiter(kind: BackendKind) {
    let mut drv = driver(kind);
    let remote = drv.remote();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    thread::spawn(move || {
        remote
            .run_in_owner_thread(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    })
    .join()
    .unwrap();

    assert_eq!(drv.waiter_count(), 1, "a queued closure is a waiter");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "it runs only from the loop");
    assert_eq!(
        drv.process_events(None).unwrap(),
        ExitReason::Idle,
        "the loop must run the queued closure, not report OutOfWaiters"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(drv.waiter_count(), 0);
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "it runs exactly once");
    assert_no_leaks(&drv);
}

/// Every `Remote` call made after the driver was dropped — from another
/// thread — returns `Err(DriverGone)` and nothing crashes; a closure that
/// could not be delivered is dropped, never run.
fn remote_after_driver_dropped_reports_driver_gone(kind: BackendKind) {
    let mut drv = driver(kind);
    let remote = drv.remote();
    let ev = drv.events().create();
    drop(drv);

    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (r, d) = (ran.clone(), dropped.clone());
    thread::spawn(move || {
        let other = remote.clone();
        assert_status(&remote.trigger(ev, false), Status::DriverGone);
        assert_status(&other.trigger(ev, true), Status::DriverGone);
        let guard = SendDropCounter(d);
        assert_status(
            &remote.run_in_owner_thread(move |_| {
                let _guard = guard;
                r.store(true, Ordering::SeqCst);
            }),
            Status::DriverGone,
        );
        assert_status(&remote.exit(), Status::DriverGone);
        assert_status(&remote.wake(), Status::DriverGone);
    })
    .join()
    .unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

/// A thread hammering `Remote::trigger` while the driver is dropped sees
/// `Ok` and then `Err(DriverGone)`, never a crash or a hang; the messages still
/// queued at the drop are discarded.
fn remote_racing_driver_drop_is_harmless(kind: BackendKind) {
    let mut drv = driver(kind);
    let remote = drv.remote();
    let ev = drv.events().create();
    let sent = Arc::new(AtomicUsize::new(0));
    let s = sent.clone();
    let sender = thread::spawn(move || loop {
        match remote.trigger(ev, false) {
            Ok(()) => {
                s.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => return e.status(),
        }
    });
    // Let the sender get going, and the driver consume part of its messages.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.load(Ordering::SeqCst) < 100 {
        assert!(Instant::now() < deadline, "the sender never got through");
        let _ = drv.process_events(Some(Duration::ZERO)).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    drop(drv);
    assert_eq!(sender.join().unwrap(), Status::DriverGone);
}

/// `Remote::exit` from another thread wakes a loop blocked in
/// `process_events(None)` (kept alive by a 10 s timer) and makes it return
/// `Exited` long before the timer.
fn remote_exit_wakes_blocked_loop(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.timers().set(t, Duration::from_secs(10), Duration::ZERO).unwrap();
    let remote = drv.remote();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        remote.exit().unwrap();
    });

    let start = Instant::now();
    let reason = drv.process_events(None).unwrap();
    let took = start.elapsed();
    sender.join().unwrap();
    assert_eq!(reason, ExitReason::Exited);
    assert!(took < Duration::from_secs(5), "woke only after {took:?}");
    assert!(drv.timers().is_pending(t), "exit does not touch the timer");

    assert!(!drv.release_ref(t).unwrap());
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// A timer handle kept after its release stays invalid after a new timer
/// reuses the slot: every call with it fails with `InvalidHandle` (or is a
/// no-op) and none of them reaches the new timer, which fires normally.
fn stale_handle_after_slot_reuse_is_invalid(kind: BackendKind) {
    let mut drv = driver(kind);
    let old = drv.timers().create();
    assert!(!drv.release_ref(old).unwrap());
    // A slab with a free list hands the same slot to the next timer.
    let new = drv.timers().create();
    assert_ne!(old, new, "the new handle must differ from the stale one");

    let fired = Rc::new(Cell::new(0usize));
    let f = fired.clone();
    let start = Instant::now();
    drv.timers()
        .set(new, Duration::from_millis(50), Duration::ZERO)
        .unwrap();
    drv.timers()
        .wait(new, move |_, _, ok| {
            assert!(ok, "the new timer must fire, not be stopped");
            f.set(f.get() + 1);
        })
        .unwrap();

    let stale_ran = Rc::new(Cell::new(false));
    let s = stale_ran.clone();
    assert!(!drv.is_valid(old));
    assert_status(
        &drv.timers().set(old, Duration::from_secs(10), Duration::from_secs(10)),
        Status::InvalidHandle,
    );
    assert_status(&drv.timers().stop(old), Status::InvalidHandle);
    assert_status(
        &drv.timers().wait(old, move |_, _, _| s.set(true)),
        Status::InvalidHandle,
    );
    assert!(!drv.timers().cancel_wait(old));
    assert!(!drv.timers().is_pending(old));
    assert!(!drv.timers().is_periodic(old));
    assert_eq!(drv.timers().remaining(old), None);
    assert_status(&drv.add_ref(old), Status::InvalidHandle);
    assert_status(&drv.release_ref(old), Status::InvalidHandle);
    assert_status(&drv.set_user_data(old, 1u8), Status::InvalidHandle);
    assert!(drv.user_data::<_, u8>(old).is_none());

    // The new timer is untouched: still armed, one shot, one reference.
    assert!(drv.is_valid(new));
    assert!(drv.timers().is_pending(new));
    assert!(!drv.timers().is_periodic(new));
    assert!(drv.user_data::<_, u8>(new).is_none());
    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(fired.get(), 1);
    assert!(!stale_ran.get());
    assert!(!drv.release_ref(new).unwrap(), "new had exactly one reference");
    assert_no_leaks(&drv);
}

/// Releasing a handle twice: the first release frees it (`Ok(false)`), the
/// second is `Err(InvalidHandle)` — for timers and events alike.
fn double_release_is_invalid_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    let e = drv.events().create();
    assert!(!drv.release_ref(t).unwrap());
    assert_status(&drv.release_ref(t), Status::InvalidHandle);
    assert!(!drv.release_ref(e).unwrap());
    assert_status(&drv.release_ref(e), Status::InvalidHandle);
    assert_no_leaks(&drv);
}

/// Reference counting: a new handle has one reference; after two `add_ref`
/// calls, `release_ref` reports `Ok(true)` twice (the resource is alive and
/// usable) and `Ok(false)` at the last reference.
fn add_ref_release_ref_counting(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    drv.add_ref(t).unwrap();
    drv.add_ref(t).unwrap();

    assert!(drv.release_ref(t).unwrap());
    assert!(drv.is_valid(t));
    drv.timers().set(t, Duration::from_secs(5), Duration::ZERO).unwrap();
    assert!(drv.timers().is_pending(t));

    assert!(drv.release_ref(t).unwrap());
    assert!(drv.is_valid(t));
    assert!(drv.timers().is_pending(t));

    assert!(!drv.release_ref(t).unwrap());
    assert!(!drv.is_valid(t));
    assert_eq!(drv.waiter_count(), 0, "the last release disarms the timer");
    assert_eq!(drv.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// A handle of another driver is `InvalidHandle` here, even when it has the
/// same slot index and generation as one of ours: it neither reaches our
/// resource nor changes its own driver's resource.
fn handle_of_another_driver_is_invalid(kind: BackendKind) {
    let mut a = driver(kind);
    let mut b = driver(kind);
    let ta = a.timers().create();
    let tb = b.timers().create();
    let ea = a.events().create();
    let eb = b.events().create();

    let ran = Rc::new(Cell::new(0usize));
    let r = ran.clone();
    b.timers().set(tb, Duration::from_secs(5), Duration::ZERO).unwrap();

    assert!(!b.is_valid(ta));
    assert_status(
        &b.timers().set(ta, Duration::from_millis(1), Duration::ZERO),
        Status::InvalidHandle,
    );
    assert_status(&b.timers().stop(ta), Status::InvalidHandle);
    assert_status(
        &b.timers().wait(ta, move |_, _, _| r.set(r.get() + 1)),
        Status::InvalidHandle,
    );
    assert!(!b.timers().cancel_wait(ta));
    assert!(!b.timers().is_pending(ta));
    assert_status(&b.add_ref(ta), Status::InvalidHandle);
    assert_status(&b.release_ref(ta), Status::InvalidHandle);
    assert_status(&b.set_user_data(ta, 7u32), Status::InvalidHandle);
    assert_status(&b.events().trigger(ea, true), Status::InvalidHandle);
    let r = ran.clone();
    assert_status(
        &b.events().wait(ea, move |_, _| r.set(r.get() + 1)),
        Status::InvalidHandle,
    );
    assert_status(&b.release_ref(ea), Status::InvalidHandle);

    // b's own resources were not touched.
    assert!(b.timers().is_pending(tb));
    assert!(b.user_data::<_, u32>(tb).is_none());
    // a's resources were not touched either: each still has one reference.
    assert!(a.is_valid(ta));
    assert!(!a.timers().is_pending(ta));
    assert!(a.user_data::<_, u32>(ta).is_none());
    assert_eq!(a.process_events(None).unwrap(), ExitReason::OutOfWaiters);

    assert!(!a.release_ref(ta).unwrap());
    assert!(!a.release_ref(ea).unwrap());
    assert!(!b.release_ref(tb).unwrap());
    assert!(!b.release_ref(eb).unwrap());
    assert_eq!(b.process_events(None).unwrap(), ExitReason::OutOfWaiters);
    assert_eq!(ran.get(), 0);
    assert_no_leaks(&a);
    assert_no_leaks(&b);
}

/// Per-handle user data: set, read back by type (a wrong type is `None`),
/// replaced (the old value is dropped at once), and dropped with the handle
/// when its last reference goes — not earlier, not twice.
fn user_data_set_replace_and_dropped_with_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let t = drv.timers().create();
    assert!(drv.user_data::<_, DropCounter>(t).is_none());

    let first = Rc::new(Cell::new(0usize));
    let second = Rc::new(Cell::new(0usize));
    drv.set_user_data(t, DropCounter(first.clone())).unwrap();
    assert!(drv.user_data::<_, DropCounter>(t).is_some());
    assert!(drv.user_data::<_, String>(t).is_none(), "wrong type");
    assert_eq!(first.get(), 0);

    drv.set_user_data(t, DropCounter(second.clone())).unwrap();
    assert_eq!(first.get(), 1, "the replaced value is dropped");
    let got = drv.user_data::<_, DropCounter>(t).unwrap();
    assert!(Rc::ptr_eq(&got.0, &second), "the new value is returned");

    // Changing the data through the reference sticks.
    drv.set_user_data(t, vec![1u8, 2]).unwrap();
    assert_eq!(second.get(), 1);
    drv.user_data::<_, Vec<u8>>(t).unwrap().push(3);
    assert_eq!(drv.user_data::<_, Vec<u8>>(t).unwrap().as_slice(), [1, 2, 3]);

    let third = Rc::new(Cell::new(0usize));
    drv.set_user_data(t, DropCounter(third.clone())).unwrap();
    drv.add_ref(t).unwrap();
    assert!(drv.release_ref(t).unwrap());
    assert_eq!(third.get(), 0, "alive while a reference remains");
    assert!(!drv.release_ref(t).unwrap());
    assert_eq!(third.get(), 1, "dropped with the handle");
    assert!(drv.user_data::<_, DropCounter>(t).is_none());

    // Data of a handle still live when the driver goes is dropped with it.
    let e = drv.events().create();
    let fourth = Rc::new(Cell::new(0usize));
    drv.set_user_data(e, DropCounter(fourth.clone())).unwrap();
    drop(drv);
    assert_eq!(fourth.get(), 1);
    assert_eq!((first.get(), second.get(), third.get()), (1, 1, 1));
}

/// A callback may release its own handle: a periodic timer released from its
/// own wait callback is freed and disarmed, so the loop ends with
/// `OutOfWaiters` instead of ticking forever; the same for an event waiter
/// releasing its event.
fn callback_releases_its_own_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let calls = Rc::new(Cell::new(0usize));

    let t = drv.timers().create();
    drv.timers()
        .set(t, Duration::from_millis(20), Duration::from_millis(20))
        .unwrap();
    let c = calls.clone();
    drv.timers()
        .wait(t, move |drv, t, fired| {
            assert!(fired);
            assert!(drv.is_valid(t), "a callback sees a valid handle");
            c.set(c.get() + 1);
            assert!(!drv.release_ref(t).unwrap());
            assert!(!drv.is_valid(t));
        })
        .unwrap();

    let e = drv.events().create();
    let c = calls.clone();
    drv.events()
        .wait(e, move |drv, e| {
            c.set(c.get() + 1);
            assert!(!drv.release_ref(e).unwrap());
        })
        .unwrap();
    drv.events().trigger(e, false).unwrap();

    assert_eq!(
        run_until_not_idle(&mut drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    assert_eq!(calls.get(), 2);
    assert!(!drv.is_valid(t));
    assert!(!drv.is_valid(e));
    assert_no_leaks(&drv);
}

/// Dropping a driver that still has live handles and pending callbacks — an
/// armed timer's wait, a stopped timer's completion, a triggered but not yet
/// dispatched event waiter, an untriggered waiter, a queued remote closure —
/// runs none of them, drops each exactly once and does not crash.
fn driver_drop_with_pending_callbacks_runs_none(kind: BackendKind) {
    let mut drv = driver(kind);
    let ran = Rc::new(Cell::new(0usize));
    let dropped = Rc::new(Cell::new(0usize));

    let armed = drv.timers().create();
    drv.timers()
        .set(armed, Duration::from_millis(1), Duration::from_millis(1))
        .unwrap();
    let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
    drv.timers()
        .wait(armed, move |_, _, _| {
            let _g = g;
            r.set(r.get() + 1);
        })
        .unwrap();

    let stopped = drv.timers().create();
    drv.timers()
        .set(stopped, Duration::from_secs(5), Duration::ZERO)
        .unwrap();
    let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
    drv.timers()
        .wait(stopped, move |_, _, _| {
            let _g = g;
            r.set(r.get() + 1);
        })
        .unwrap();
    drv.timers().stop(stopped).unwrap();

    let e = drv.events().create();
    for _ in 0..2 {
        let (r, g) = (ran.clone(), DropCounter(dropped.clone()));
        drv.events()
            .wait(e, move |_, _| {
                let _g = g;
                r.set(r.get() + 1);
            })
            .unwrap();
    }
    drv.events().trigger(e, false).unwrap();
    drv.set_user_data(e, DropCounter(dropped.clone())).unwrap();

    let remote = drv.remote();
    let remote_ran = Arc::new(AtomicBool::new(false));
    let remote_dropped = Arc::new(AtomicUsize::new(0));
    let (r, g) = (remote_ran.clone(), SendDropCounter(remote_dropped.clone()));
    remote
        .run_in_owner_thread(move |_| {
            let _g = g;
            r.store(true, Ordering::SeqCst);
        })
        .unwrap();

    // Let the 1 ms timer expire so its firing is due, without processing it.
    thread::sleep(Duration::from_millis(20));
    drop(drv);

    assert_eq!(ran.get(), 0, "no callback may run while the driver drops");
    assert_eq!(dropped.get(), 5, "each callback and the user data dropped once");
    assert!(!remote_ran.load(Ordering::SeqCst));
    assert_eq!(remote_dropped.load(Ordering::SeqCst), 1);
    assert_status(&remote.wake(), Status::DriverGone);
}

/// The multishot-receive tuning checks its buffer ring on every backend
/// (elsewhere than io_uring it is ignored once valid): a count that is not
/// a power of two, above the kernel's 32768, or a size of zero is an
/// invalid argument, not a panic or a silently odd ring.
fn builder_refuses_bad_receive_buffers(kind: BackendKind) {
    for (buffers, size) in [(0, 4096), (3, 4096), (u16::MAX, 4096), (8, 0)] {
        let built = Driver::builder()
            .backend(kind)
            .io_uring_multishot_recv(buffers, size)
            .build();
        assert_status(&built.map(|_| ()), Status::InvalidArgument);
    }
    for (buffers, size) in [(1, 1), (8, 4096), (32768, 16)] {
        let mut drv = Driver::builder()
            .backend(kind)
            .io_uring_multishot_recv(buffers, size)
            .build()
            .unwrap_or_else(|e| panic!("{buffers} buffers of {size} bytes: {e}"));
        assert_eq!(
            drv.process_events(Some(Duration::ZERO)).unwrap(),
            ExitReason::OutOfWaiters
        );
    }
}

contract_tests! {
    builder_refuses_bad_receive_buffers,
    fresh_driver_returns_out_of_waiters_at_once,
    exit_before_process_events_returns_exited_once,
    exit_from_callback_returns_exited,
    clear_exit_flag_forgets_exit_request,
    remote_run_in_owner_thread_runs_on_owner_thread,
    remote_queued_closure_counts_as_waiter,
    remote_after_driver_dropped_reports_driver_gone,
    remote_racing_driver_drop_is_harmless,
    remote_exit_wakes_blocked_loop,
    stale_handle_after_slot_reuse_is_invalid,
    double_release_is_invalid_handle,
    add_ref_release_ref_counting,
    handle_of_another_driver_is_invalid,
    user_data_set_replace_and_dropped_with_handle,
    callback_releases_its_own_handle,
    driver_drop_with_pending_callbacks_runs_none,
}
