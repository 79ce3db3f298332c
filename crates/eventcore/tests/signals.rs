//! Contract tests for signal listeners: the upstream scenario `0-signal.d`
//! (which never ran upstream: its `version (Linux)` guard is misspelled),
//! several listeners of one signal, two different signals, listening again,
//! invalid signal numbers — and, on Unix, the blocked state restored on
//! release; on Windows, the console control events and their mapping.
//!
//! Unix: every signal is sent with `raise`, which targets the calling
//! thread — the one that listens, where the driver has the signal blocked —
//! so a signal can never reach another test thread of this binary (whose
//! default action would kill the process).
//!
//! Windows: signals are console control events (Ctrl+C → `SIGINT`,
//! Ctrl+Break → `SIGBREAK`, closing the console → `SIGHUP`). Wine cannot
//! generate console events for a process without a console
//! (`GenerateConsoleCtrlEvent` needs one, and the tests run without), so the
//! scenarios "send" a signal by calling the driver's console control handler
//! through `eventcore::__simulate_console_ctrl_event` — the same code the OS
//! thread runs, minus the OS thread. What they cannot check is that the OS
//! calls the handler at all.
//!
//! The scenarios run one at a time (a static lock) because they share the
//! process's signal dispositions (Unix) or console handler (Windows), and
//! each one lets every sent signal be consumed before it releases its
//! listeners.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use eventcore::signal_numbers::SIGKILL;
use eventcore::{BackendKind, Driver, ExitReason, SignalListener, Status};
use util::{assert_no_leaks, driver, run_until, run_until_not_idle};

const LIMIT: Duration = Duration::from_secs(10);

/// Two signals the scenarios listen to: `SIGUSR1` and `SIGUSR2` on Unix,
/// `SIGINT` (Ctrl+C) and `SIGBREAK` (Ctrl+Break) on Windows.
#[cfg(unix)]
const SIG_A: i32 = libc::SIGUSR1;
#[cfg(unix)]
const SIG_B: i32 = libc::SIGUSR2;
#[cfg(windows)]
const SIG_A: i32 = eventcore::signal_numbers::SIGINT;
#[cfg(windows)]
const SIG_B: i32 = eventcore::signal_numbers::SIGBREAK;

/// Serializes the scenarios of this file.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `signo` to this thread.
#[cfg(unix)]
fn raise(signo: i32) {
    // SAFETY: raise only sends a signal to the calling thread.
    assert_eq!(unsafe { libc::raise(signo) }, 0, "raise({signo})");
}

/// Windows: runs the console control handler for the event that stands for
/// `signo` (see the module documentation).
#[cfg(windows)]
fn raise(signo: i32) {
    use eventcore::signal_numbers::{SIGBREAK, SIGHUP, SIGINT};
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT};
    let event = match signo {
        SIGINT => CTRL_C_EVENT,
        SIGBREAK => CTRL_BREAK_EVENT,
        SIGHUP => CTRL_CLOSE_EVENT,
        _ => panic!("no console event stands for signal {signo}"),
    };
    eventcore::__simulate_console_ctrl_event(event);
}

/// Whether `signo` is blocked in this thread.
#[cfg(unix)]
fn is_blocked(signo: i32) -> bool {
    // SAFETY: a query (null new set) of this thread's mask into `old`.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut old);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old), 0);
        libc::sigismember(&old, signo) == 1
    }
}

/// Listens to `signo`, logging (listener, signal) pairs into `log`.
fn listen(drv: &mut Driver, signo: i32, log: &Rc<RefCell<Vec<(SignalListener, i32)>>>) -> SignalListener {
    let l = log.clone();
    drv.signals()
        .listen(signo, move |_, id, s| l.borrow_mut().push((id, s)))
        .expect("listen")
}

/// Upstream `0-signal.d`: listen to a signal; a timer callback raises it;
/// the listener's callback gets the signal number (from `process_events`,
/// not inside `raise`), releases its own listener, and the loop then ends
/// `OutOfWaiters`. Unix: afterwards the signal is unblocked again and not
/// pending.
fn signal_raised_from_timer_callback(kind: BackendKind) {
    if crate::util::signals_refused(kind, "signal_raised_from_timer_callback") {
        return;
    }
    let _serial = serial();
    let mut drv = driver(kind);
    #[cfg(unix)]
    assert!(!is_blocked(SIG_A), "precondition: SIGUSR1 unblocked");
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let listener = drv
        .signals()
        .listen(SIG_A, move |drv, id, signo| {
            assert_eq!(signo, SIG_A);
            c.set(c.get() + 1);
            assert!(!drv.release_ref(id).unwrap(), "last reference");
        })
        .expect("listen");
    assert_eq!(drv.signals().signal_of(listener).unwrap(), SIG_A);
    #[cfg(unix)]
    assert!(is_blocked(SIG_A), "listening blocks the signal");
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
            raise(SIG_A);
            assert_eq!(c.get(), 0, "the signal callback ran inside raise()");
            r.set(true);
            drv.release_ref(t).unwrap();
        })
        .unwrap();

    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert!(raised.get());
    assert_eq!(calls.get(), 1, "one callback for one signal");
    assert!(!drv.is_valid(listener));
    #[cfg(unix)]
    {
        assert!(!is_blocked(SIG_A), "release restores the mask");
        assert!(!unix_only::is_pending(SIG_A));
    }
    assert_no_leaks(&drv);
}

/// Several listeners of one signal are all called for each arrival (each
/// with its own id); after one is released only the others are.
fn signal_several_listeners_all_called(kind: BackendKind) {
    if crate::util::signals_refused(kind, "signal_several_listeners_all_called") {
        return;
    }
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    let a = listen(&mut drv, SIG_B, &log);
    let b = listen(&mut drv, SIG_B, &log);
    let c = listen(&mut drv, SIG_B, &log);
    assert_eq!(drv.waiter_count(), 3);

    raise(SIG_B);
    assert!(log.borrow().is_empty(), "callbacks ran inside raise()");
    run_until(&mut drv, LIMIT, |_| log.borrow().len() >= 3);
    let mut got: Vec<_> = log.borrow_mut().drain(..).collect();
    got.sort_by_key(|(id, _)| [a, b, c].iter().position(|x| x == id));
    assert_eq!(got, [(a, SIG_B), (b, SIG_B), (c, SIG_B)]);

    assert!(!drv.release_ref(b).unwrap());
    #[cfg(unix)]
    assert!(is_blocked(SIG_B), "still listened to");
    raise(SIG_B);
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
    #[cfg(unix)]
    assert!(!is_blocked(SIG_B));
    assert_no_leaks(&drv);
}

/// Listeners of two different signals each get only their own signal.
fn signal_two_different_signals(kind: BackendKind) {
    if crate::util::signals_refused(kind, "signal_two_different_signals") {
        return;
    }
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    let sig_a = listen(&mut drv, SIG_A, &log);
    let sig_b = listen(&mut drv, SIG_B, &log);

    raise(SIG_B);
    run_until(&mut drv, LIMIT, |_| !log.borrow().is_empty());
    raise(SIG_A);
    run_until(&mut drv, LIMIT, |_| log.borrow().len() >= 2);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::Timeout,
        "nothing more"
    );
    assert_eq!(*log.borrow(), [(sig_b, SIG_B), (sig_a, SIG_A)]);

    assert!(!drv.release_ref(sig_a).unwrap());
    #[cfg(unix)]
    {
        assert!(!is_blocked(SIG_A));
        assert!(is_blocked(SIG_B));
    }
    assert!(!drv.release_ref(sig_b).unwrap());
    #[cfg(unix)]
    assert!(!is_blocked(SIG_B));
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// Numbers that are not catchable signals are `InvalidArgument` from
/// `listen`: 0, negative, SIGKILL, SIGSTOP (Unix), 1000. Nothing is created
/// (or blocked), and the loop has no waiter.
fn signal_invalid_numbers_are_invalid_argument(kind: BackendKind) {
    if crate::util::signals_refused(kind, "signal_invalid_numbers_are_invalid_argument") {
        return;
    }
    let _serial = serial();
    let mut drv = driver(kind);
    #[cfg(unix)]
    let blocked_before: Vec<bool> = (1..32).map(is_blocked).collect();
    #[allow(unused_mut)]
    let mut invalid = vec![0, -1, SIGKILL, 1000];
    #[cfg(unix)]
    invalid.push(libc::SIGSTOP);
    for signo in invalid {
        let r = drv.signals().listen(signo, |_, _, _| panic!("never"));
        match r {
            Ok(_) => panic!("listen({signo}) must fail"),
            Err(e) => assert_eq!(e.status(), Status::InvalidArgument, "{signo}: {e}"),
        }
    }
    #[cfg(unix)]
    {
        let blocked_after: Vec<bool> = (1..32).map(is_blocked).collect();
        assert_eq!(blocked_before, blocked_after, "the mask is unchanged");
    }
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
    if crate::util::signals_refused(kind, "signal_listener_is_a_waiter_until_released") {
        return;
    }
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = listen(&mut drv, SIG_A, &log);
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
    if crate::util::signals_refused(kind, "signal_listen_again_after_release") {
        return;
    }
    let _serial = serial();
    let mut drv = driver(kind);
    let log = Rc::new(RefCell::new(Vec::new()));
    for round in 0..3 {
        let l = listen(&mut drv, SIG_A, &log);
        raise(SIG_A);
        run_until(&mut drv, LIMIT, |_| log.borrow().len() > round);
        assert_eq!(log.borrow()[round], (l, SIG_A));
        assert!(!drv.release_ref(l).unwrap());
        #[cfg(unix)]
        assert!(!is_blocked(SIG_A));
    }
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// A panic in a listener's callback comes out of `process_events`, and the
/// driver goes on: the other listener of the same signal still gets that
/// signal, both listeners stay registered (and count as waiters), and the
/// next signal reaches both again, the panicking one included.
fn signal_listener_panic_keeps_listening(kind: BackendKind) {
    if crate::util::signals_refused(kind, "signal_listener_panic_keeps_listening") {
        return;
    }
    let _serial = serial();
    let mut drv = driver(kind);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let panicky = drv
        .signals()
        .listen(SIG_A, move |_, _, _| {
            c.set(c.get() + 1);
            if c.get() == 1 {
                panic!("listener panics once");
            }
        })
        .expect("listen");
    let log = Rc::new(RefCell::new(Vec::new()));
    let other = listen(&mut drv, SIG_A, &log);
    let waiters = drv.waiter_count();
    raise(SIG_A);
    assert_eq!(util::run_until_panic(&mut drv, LIMIT), "listener panics once");
    run_until(&mut drv, LIMIT, |_| log.borrow().len() == 1);
    assert_eq!(drv.waiter_count(), waiters, "both listeners still count as waiters");
    raise(SIG_A);
    run_until(&mut drv, LIMIT, |_| calls.get() == 2 && log.borrow().len() == 2);
    assert_eq!(*log.borrow(), [(other, SIG_A), (other, SIG_A)]);
    drv.release_ref(panicky).unwrap();
    drv.release_ref(other).unwrap();
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

contract_tests! {
    signal_listener_panic_keeps_listening,
    signal_raised_from_timer_callback,
    signal_several_listeners_all_called,
    signal_two_different_signals,
    signal_invalid_numbers_are_invalid_argument,
    signal_listener_is_a_waiter_until_released,
    signal_listen_again_after_release,
}

/// An io_uring driver whose submission queue a kernel thread polls
/// (`SQPOLL`) cannot see signals sent to its thread — a signalfd is ready
/// only for the thread that polls it — so it refuses listeners with
/// `NotSupported`, on the callback API and on `rt`, and leaves the signal's
/// mask alone; the same builder without the option listens.
#[cfg(target_os = "linux")]
#[test]
fn sqpoll_drivers_refuse_signal_listeners() {
    let _serial = serial();
    if util::io_uring_missing("sqpoll_drivers_refuse_signal_listeners") {
        return;
    }
    let mut drv = eventcore::Driver::builder()
        .backend(BackendKind::IoUring)
        .io_uring_sqpoll(Duration::from_millis(1))
        .build()
        .expect("an SQPOLL driver");
    let err = drv.signals().listen(SIG_A, |_, _, _| {}).unwrap_err();
    assert_eq!(err.status(), Status::NotSupported);
    // SAFETY: an initialised set; pthread_sigmask only reads this thread's mask.
    let blocked = unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old);
        libc::sigismember(&old, SIG_A) == 1
    };
    assert!(!blocked, "a refused listener blocks nothing");
    let mut ex = eventcore::rt::Executor::new(drv);
    let refused = ex.block_on(async { eventcore::rt::Signal::listen(SIG_A).map(|_| ()) });
    assert_eq!(refused.unwrap_err().status(), Status::NotSupported);
    drop(ex);

    let mut plain = eventcore::Driver::builder()
        .backend(BackendKind::IoUring)
        .build()
        .expect("a driver");
    let listener = plain
        .signals()
        .listen(SIG_A, |_, _, _| {})
        .expect("listening without SQPOLL");
    plain.release_ref(listener).unwrap();
}

/// Scenarios about the POSIX signal mask.
#[cfg(unix)]
mod unix_only {
    use super::*;

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
    pub(super) fn is_pending(signo: i32) -> bool {
        // SAFETY: sigpending fills the initialised set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            assert_eq!(libc::sigpending(&mut set), 0);
            libc::sigismember(&set, signo) == 1
        }
    }

    /// Releasing the last listener of a signal restores its previous blocked
    /// state: a signal that was unblocked is unblocked again (only after the
    /// last of two listeners goes); a signal the program had blocked itself
    /// stays blocked.
    fn signal_release_restores_blocked_state(kind: BackendKind) {
        if crate::util::signals_refused(kind, "signal_release_restores_blocked_state") {
            return;
        }
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

    /// Dropping a driver with an active listener restores the signal's blocked
    /// state too.
    fn signal_driver_drop_restores_blocked_state(kind: BackendKind) {
        if crate::util::signals_refused(kind, "signal_driver_drop_restores_blocked_state") {
            return;
        }
        let _serial = serial();
        let mut drv = driver(kind);
        let log = Rc::new(RefCell::new(Vec::new()));
        let _l = listen(&mut drv, libc::SIGUSR2, &log);
        assert!(is_blocked(libc::SIGUSR2));
        drop(drv);
        assert!(!is_blocked(libc::SIGUSR2), "drop restores the mask");
    }

    contract_tests! {
        signal_release_restores_blocked_state,
        signal_driver_drop_restores_blocked_state,
    }
}

/// Console control events (see the module documentation for why they are
/// simulated).
#[cfg(windows)]
mod windows_only {
    use eventcore::__simulate_console_ctrl_event as simulate;
    use eventcore::signal_numbers::{SIGBREAK, SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    use windows_sys::Win32::System::Console::{
        CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    };

    use super::*;

    /// The mapping, as libuv's: Ctrl+C → `SIGINT` (2), Ctrl+Break →
    /// `SIGBREAK` (21), close → `SIGHUP` (1). Each event reaches only the
    /// listener of its signal, from `process_events` (not inside the
    /// handler), and the handler reports it handled. Log-off and shut-down
    /// events are not mapped: not handled, nobody called.
    fn signal_console_events_map_like_libuv(kind: BackendKind) {
        let _serial = serial();
        eprintln!(
            "note: console control events are simulated through the handler{}",
            if util::under_wine() {
                " (Wine cannot generate them without a console)"
            } else {
                ""
            }
        );
        assert_eq!((SIGINT, SIGBREAK, SIGHUP), (2, 21, 1));
        let mut drv = driver(kind);
        let log = Rc::new(RefCell::new(Vec::new()));
        let int = listen(&mut drv, SIGINT, &log);
        let brk = listen(&mut drv, SIGBREAK, &log);
        let hup = listen(&mut drv, SIGHUP, &log);
        for (event, want) in [
            (CTRL_C_EVENT, (int, SIGINT)),
            (CTRL_BREAK_EVENT, (brk, SIGBREAK)),
            (CTRL_CLOSE_EVENT, (hup, SIGHUP)),
        ] {
            log.borrow_mut().clear();
            assert!(
                simulate(event),
                "event {event} is handled when its signal is listened to"
            );
            assert!(log.borrow().is_empty(), "the callback ran inside the handler");
            run_until(&mut drv, LIMIT, |_| !log.borrow().is_empty());
            assert_eq!(
                drv.process_events(Some(Duration::from_millis(50))).unwrap(),
                ExitReason::Timeout,
                "nothing more"
            );
            assert_eq!(*log.borrow(), [want]);
        }
        log.borrow_mut().clear();
        for event in [CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT, 77] {
            assert!(!simulate(event), "event {event} is not mapped");
        }
        assert_eq!(
            drv.process_events(Some(Duration::from_millis(50))).unwrap(),
            ExitReason::Timeout
        );
        assert!(log.borrow().is_empty());
        for l in [int, brk, hup] {
            assert!(!drv.release_ref(l).unwrap());
        }
        assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
        assert_no_leaks(&drv);
    }

    /// An event whose signal nobody listens to is not handled (the handler
    /// returns FALSE, so Windows applies the default action — ending the
    /// program on Ctrl+C); once the last listener of `SIGINT` is released,
    /// or its driver dropped, Ctrl+C is no longer handled either.
    fn signal_unlistened_event_is_left_to_the_default_action(kind: BackendKind) {
        let _serial = serial();
        let mut drv = driver(kind);
        let log = Rc::new(RefCell::new(Vec::new()));
        let int = listen(&mut drv, SIGINT, &log);
        assert!(!simulate(CTRL_BREAK_EVENT), "nobody listens to SIGBREAK");
        assert!(!simulate(CTRL_CLOSE_EVENT), "nobody listens to SIGHUP");
        assert!(simulate(CTRL_C_EVENT));
        run_until(&mut drv, LIMIT, |_| !log.borrow().is_empty());
        assert_eq!(*log.borrow(), [(int, SIGINT)]);
        assert!(!drv.release_ref(int).unwrap());
        assert!(!simulate(CTRL_C_EVENT), "the listener is gone");
        assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
        assert_no_leaks(&drv);

        let _again = listen(&mut drv, SIGINT, &log);
        assert!(simulate(CTRL_C_EVENT));
        drop(drv);
        assert!(!simulate(CTRL_C_EVENT), "the driver is gone");
    }

    /// Only `SIGINT`, `SIGBREAK` and `SIGHUP` ever arrive on Windows: other
    /// signals are `NotSupported` (nothing is created), non-signals
    /// `InvalidArgument`.
    fn signal_other_signals_not_supported(kind: BackendKind) {
        let _serial = serial();
        let mut drv = driver(kind);
        for signo in [SIGTERM, SIGQUIT, 10, 64] {
            let r = drv.signals().listen(signo, |_, _, _| panic!("never"));
            assert_eq!(r.unwrap_err().status(), Status::NotSupported, "{signo}");
        }
        let r = drv.signals().listen(65, |_, _, _| panic!("never"));
        assert_eq!(r.unwrap_err().status(), Status::InvalidArgument);
        assert_eq!(drv.waiter_count(), 0);
        assert_no_leaks(&drv);
    }

    /// One console event reaches every driver that listens to its signal,
    /// each on its own thread: a driver on another thread gets Ctrl+C too,
    /// and its callback runs on that thread, not on the handler's.
    fn signal_event_reaches_every_listening_driver(kind: BackendKind) {
        let _serial = serial();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let other = std::thread::spawn(move || {
            let mut drv = driver(kind);
            let me = std::thread::current().id();
            let got = Rc::new(Cell::new(0));
            let g = got.clone();
            let l = drv
                .signals()
                .listen(SIGINT, move |_, _, signo| {
                    assert_eq!(std::thread::current().id(), me, "on the driver's thread");
                    assert_eq!(signo, SIGINT);
                    g.set(g.get() + 1);
                })
                .unwrap();
            ready_tx.send(()).unwrap();
            run_until(&mut drv, LIMIT, |_| got.get() > 0);
            assert_eq!(got.get(), 1);
            drv.release_ref(l).unwrap();
            assert_no_leaks(&drv);
        });
        let mut drv = driver(kind);
        let log = Rc::new(RefCell::new(Vec::new()));
        let int = listen(&mut drv, SIGINT, &log);
        ready_rx.recv().unwrap();
        assert!(simulate(CTRL_C_EVENT));
        run_until(&mut drv, LIMIT, |_| !log.borrow().is_empty());
        assert_eq!(*log.borrow(), [(int, SIGINT)]);
        other.join().expect("the other driver got the event");
        assert!(!drv.release_ref(int).unwrap());
        assert_no_leaks(&drv);
    }

    contract_tests! {
        signal_console_events_map_like_libuv,
        signal_unlistened_event_is_left_to_the_default_action,
        signal_other_signals_not_supported,
        signal_event_reaches_every_listening_driver,
    }
}
