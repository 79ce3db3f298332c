//! The async layer's signals: arrivals of a raised signal come through the
//! stream in order, a `recv` dropped while pending loses nothing, and a
//! dropped `Signal` stops listening.
//!
//! Signals are sent with `raise`, which targets the calling thread — the
//! executor's, where the driver blocks them — so they never reach another
//! test thread. The scenarios run one at a time (they share the process's
//! signal dispositions).

#![cfg(unix)]

mod util;

use std::sync::{Mutex, MutexGuard};

use eventcore::rt::{self, Signal};
use eventcore::{BackendKind, Status};
use util::rt::{assert_no_leaks, executor, poll_once, LIMIT};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn raise(signo: i32) {
    // SAFETY: raise only sends a signal to the calling thread.
    assert_eq!(unsafe { libc::raise(signo) }, 0, "raise({signo})");
}

/// Two different signals raised in turn arrive on their own streams.
fn signals_arrive_on_their_streams(kind: BackendKind) {
    if crate::util::signals_refused(kind, "signals_arrive_on_their_streams") {
        return;
    }
    let _serial = serial();
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut usr1 = Signal::listen(libc::SIGUSR1).expect("listen");
        let mut usr2 = Signal::listen(libc::SIGUSR2).expect("listen");
        raise(libc::SIGUSR1);
        assert_eq!(rt::timeout(LIMIT, usr1.recv()).await.expect("in time"), libc::SIGUSR1);
        raise(libc::SIGUSR2);
        assert_eq!(rt::timeout(LIMIT, usr2.recv()).await.expect("in time"), libc::SIGUSR2);
        assert_eq!(usr1.try_recv(), None);
        let err = Signal::listen(libc::SIGKILL).expect_err("not catchable");
        assert_eq!(err.status(), Status::InvalidArgument);
    });
    assert_no_leaks(&ex);
}

/// `recv` is cancel-safe: a `recv` dropped while pending does not take the
/// arrival that comes after it.
fn recv_dropped_while_pending(kind: BackendKind) {
    if crate::util::signals_refused(kind, "recv_dropped_while_pending") {
        return;
    }
    let _serial = serial();
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut usr1 = Signal::listen(libc::SIGUSR1).expect("listen");
        {
            let mut r = Box::pin(usr1.recv());
            assert!(poll_once(&mut r).await.is_pending());
        }
        raise(libc::SIGUSR1);
        assert_eq!(rt::timeout(LIMIT, usr1.recv()).await.expect("in time"), libc::SIGUSR1);
        drop(usr1);
        assert_eq!(rt::with_driver(|d| d.leak_report().signals), 0);
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    signals_arrive_on_their_streams,
    recv_dropped_while_pending,
}
