//! Contract tests for signal listeners: the upstream scenario `0-signal.d`
//! (which never ran upstream: its `version (Linux)` guard is misspelled),
//! several listeners of one signal, two different signals, the blocked state
//! restored on release, and invalid signal numbers.
//!
//! Every signal is sent with `raise`, which targets the calling thread — the
//! one that listens, where the driver has the signal blocked — so a signal
//! can never reach another test thread of this binary (whose default action
//! would kill the process). The scenarios still run one at a time (a static
//! lock) because they share the process's signal dispositions, and each one
//! lets every raised signal be consumed before it releases its listeners.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use eventcore::{BackendKind, Driver, ExitReason, SignalListener, Status};
use util::{assert_no_leaks, driver, run_until, run_until_not_idle};

const LIMIT: Duration = Duration::from_secs(10);

/// Serializes the scenarios of this file.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `signo` to this thread.
fn raise(signo: i32) {
    // SAFETY: raise only sends a signal to the calling thread.
    assert_eq!(unsafe { libc::raise(signo) }, 0, "raise({signo})");
}

/// Whether `signo` is blocked in this thread.
fn is_blocked(signo: i32) -> bool {
    // SAFETY: a query (null new set) of this thread's mask into `old`.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut old);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old), 0);
        libc::sigismember(&old, signo) == 1
    }
}

/// Blocks (`true`) or unblocks `signo` in this thread.
fn set_blocked(signo: i32, blocked: bool) {
    // SAFETY: initialised sets; only this thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signo);
        let how = if blocked { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
        assert_eq!(libc::pthread_sigmask(how, &set, std::ptr::null_mut()), 0);
    }
}

/// Whether `signo` is pending for this thread or the process.
fn is_pending(signo: i32) -> bool {
    // SAFETY: sigpending fills the initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        assert_eq!(libc::sigpending(&mut set), 0);
        libc::sigismember(&set, signo) == 1
    }
}

/// Listens to `signo`, logging (listener, signal) pairs into `log`.
fn listen(drv: &mut Driver, signo: i32, log: &Rc<RefCell<Vec<(SignalListener, i32)>>>) -> SignalListener {
    let l = log.clone();
    drv.signals()
        .listen(signo, move |_, id, s| l.borrow_mut().push((id, s)))
        .expect("listen")
}

/// Upstream `0-signal.d`: listen to SIGUSR1; a timer callback raises it; the
/// listener's callback gets the signal number (from `process_events`, not
/// inside `raise`), releases its own listener, and the loop then ends
/// `OutOfWaiters`. Afterwards SIGUSR1 is unblocked again and not pending.
fn signal_raised_from_timer_callback(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    assert!(!is_blocked(libc::SIGUSR1), "precondition: SIGUSR1 unblocked");
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let listener = drv
        .signals()
        .listen(libc::SIGUSR1, move |drv, id, signo| {
            assert_eq!(signo, libc::SIGUSR1);
            c.set(c.get() + 1);
            assert!(!drv.release_ref(id).unwrap(), "last reference");
        })
        .expect("listen");
    assert_eq!(drv.signals().signal_of(listener).unwrap(), libc::SIGUSR1);
    assert!(is_blocked(libc::SIGUSR1), "listening blocks the signal");
    assert_eq!(drv.waiter_count(), 1, "an active listener is a waiter");

    let timer = drv.timers().create();
    drv.timers()
        .set(timer, Duration::from_millis(50), Duration::ZERO)
        .unwrap();
    let raised = Rc::new(Cell::new(false));
    let (r, c) = (raised.clone(), calls.clone());
    drv.timers()
        .wait(timer, move |drv, t, fired| {
            assert!(fired);
            raise(libc::SIGUSR1);
            assert_eq!(c.get(), 0, "the signal callback ran inside raise()");
            r.set(true);
            drv.release_ref(t).unwrap();
        })
        .unwrap();

    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert!(raised.get());
    assert_eq!(calls.get(), 1, "one callback for one signal");
    assert!(!drv.is_valid(listener));
    assert!(!is_blocked(libc::SIGUSR1), "release restores the mask");
    assert!(!is_pending(libc::SIGUSR1));
    assert_no_leaks(&drv);
}

/// Several listeners of one signal are all called for each arrival (each
/// with its own id); after one is released only the others are.
fn signal_several_listeners_all_called(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    let a = listen(&mut drv, libc::SIGUSR2, &log);
    let b = listen(&mut drv, libc::SIGUSR2, &log);
    let c = listen(&mut drv, libc::SIGUSR2, &log);
    assert_eq!(drv.waiter_count(), 3);

    raise(libc::SIGUSR2);
    assert!(log.borrow().is_empty(), "callbacks ran inside raise()");
    run_until(&mut drv, LIMIT, |_| log.borrow().len() >= 3);
    let mut got: Vec<_> = log.borrow_mut().drain(..).collect();
    got.sort_by_key(|(id, _)| [a, b, c].iter().position(|x| x == id));
    assert_eq!(got, [(a, libc::SIGUSR2), (b, libc::SIGUSR2), (c, libc::SIGUSR2)]);

    assert!(!drv.release_ref(b).unwrap());
    assert!(is_blocked(libc::SIGUSR2), "still listened to");
    raise(libc::SIGUSR2);
    run_until(&mut drv, LIMIT, |_| log.borrow().len() >= 2);
    // Nothing more may come.
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::Timeout
    );
    let mut ids: Vec<_> = log.borrow().iter().map(|(id, _)| *id).collect();
    ids.sort_by_key(|id| [a, c].iter().position(|x| x == id));
    assert_eq!(ids, [a, c], "the released listener is not called");

    assert!(!drv.release_ref(a).unwrap());
    assert!(!drv.release_ref(c).unwrap());
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert!(!is_blocked(libc::SIGUSR2));
    assert_no_leaks(&drv);
}

/// Listeners of two different signals each get only their own signal.
fn signal_two_different_signals(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    let usr1 = listen(&mut drv, libc::SIGUSR1, &log);
    let usr2 = listen(&mut drv, libc::SIGUSR2, &log);

    raise(libc::SIGUSR2);
    run_until(&mut drv, LIMIT, |_| !log.borrow().is_empty());
    raise(libc::SIGUSR1);
    run_until(&mut drv, LIMIT, |_| log.borrow().len() >= 2);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::Timeout,
        "nothing more"
    );
    assert_eq!(*log.borrow(), [(usr2, libc::SIGUSR2), (usr1, libc::SIGUSR1)]);

    assert!(!drv.release_ref(usr1).unwrap());
    assert!(!is_blocked(libc::SIGUSR1));
    assert!(is_blocked(libc::SIGUSR2));
    assert!(!drv.release_ref(usr2).unwrap());
    assert!(!is_blocked(libc::SIGUSR2));
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// Releasing the last listener of a signal restores its previous blocked
/// state: a signal that was unblocked is unblocked again (only after the
/// last of two listeners goes); a signal the program had blocked itself
/// stays blocked.
fn signal_release_restores_blocked_state(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));

    assert!(!is_blocked(libc::SIGUSR1), "precondition: SIGUSR1 unblocked");
    let a = listen(&mut drv, libc::SIGUSR1, &log);
    let b = listen(&mut drv, libc::SIGUSR1, &log);
    assert!(is_blocked(libc::SIGUSR1));
    assert!(!drv.release_ref(a).unwrap());
    assert!(is_blocked(libc::SIGUSR1), "b still listens");
    assert!(!drv.release_ref(b).unwrap());
    assert!(!is_blocked(libc::SIGUSR1), "unblocked again");

    // Blocked by the program before: stays blocked.
    assert!(!is_blocked(libc::SIGUSR2), "precondition: SIGUSR2 unblocked");
    set_blocked(libc::SIGUSR2, true);
    let c = listen(&mut drv, libc::SIGUSR2, &log);
    raise(libc::SIGUSR2);
    run_until(&mut drv, LIMIT, |_| !log.borrow().is_empty());
    assert_eq!(*log.borrow(), [(c, libc::SIGUSR2)]);
    assert!(!drv.release_ref(c).unwrap());
    let still = is_blocked(libc::SIGUSR2);
    set_blocked(libc::SIGUSR2, false);
    assert!(still, "a signal blocked before listening stays blocked");

    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// Numbers that are not catchable signals are `InvalidArgument` from
/// `listen`: 0, negative, SIGKILL, SIGSTOP, 1000. Nothing is created or
/// blocked, and the loop has no waiter.
fn signal_invalid_numbers_are_invalid_argument(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    let blocked_before: Vec<bool> = (1..32).map(is_blocked).collect();
    for signo in [0, -1, libc::SIGKILL, libc::SIGSTOP, 1000] {
        let r = drv.signals().listen(signo, |_, _, _| panic!("never"));
        match r {
            Ok(_) => panic!("listen({signo}) must fail"),
            Err(e) => assert_eq!(e.status(), Status::InvalidArgument, "{signo}: {e}"),
        }
    }
    let blocked_after: Vec<bool> = (1..32).map(is_blocked).collect();
    assert_eq!(blocked_before, blocked_after, "the mask is unchanged");
    assert_eq!(drv.waiter_count(), 0);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(10))).unwrap(),
        ExitReason::OutOfWaiters
    );
    assert_no_leaks(&drv);
}

/// An active listener keeps the loop alive (`Timeout`, not `OutOfWaiters`)
/// without a callback; after release the handle is stale.
fn signal_listener_is_a_waiter_until_released(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = listen(&mut drv, libc::SIGUSR1, &log);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::Timeout
    );
    assert!(log.borrow().is_empty());
    assert!(!drv.release_ref(l).unwrap());
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::OutOfWaiters
    );
    assert_eq!(drv.signals().signal_of(l).unwrap_err().status(), Status::InvalidHandle);
    assert_eq!(drv.release_ref(l).unwrap_err().status(), Status::InvalidHandle);
    assert_no_leaks(&drv);
}

/// After the last listener is gone, listening again works: the new listener
/// gets the next signal.
fn signal_listen_again_after_release(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    for round in 0..3 {
        let l = listen(&mut drv, libc::SIGUSR1, &log);
        raise(libc::SIGUSR1);
        run_until(&mut drv, LIMIT, |_| log.borrow().len() > round);
        assert_eq!(log.borrow()[round], (l, libc::SIGUSR1));
        assert!(!drv.release_ref(l).unwrap());
        assert!(!is_blocked(libc::SIGUSR1));
    }
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// Dropping a driver with an active listener restores the signal's blocked
/// state too.
fn signal_driver_drop_restores_blocked_state(kind: BackendKind) {
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    let _l = listen(&mut drv, libc::SIGUSR2, &log);
    assert!(is_blocked(libc::SIGUSR2));
    drop(drv);
    assert!(!is_blocked(libc::SIGUSR2), "drop restores the mask");
}

contract_tests! {
    signal_raised_from_timer_callback,
    signal_several_listeners_all_called,
    signal_two_different_signals,
    signal_release_restores_blocked_state,
    signal_invalid_numbers_are_invalid_argument,
    signal_listener_is_a_waiter_until_released,
    signal_listen_again_after_release,
    signal_driver_drop_restores_blocked_state,
}
