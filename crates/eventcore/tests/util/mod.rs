//! The contract-test harness: every scenario is written once, as a function of
//! the backend, and [`contract_tests!`] instantiates it for every backend this
//! target has (`epoll`, `io_uring` and io_uring tuned on Linux, `winapi` on
//! Windows).
//! Each instance runs with a watchdog, so a hang fails the test instead of the
//! whole run.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, Driver, ExitReason, Result, Status};

pub mod net;
pub mod rt;
#[cfg(windows)]
pub mod windows;

/// Instantiates scenario functions `fn name(kind: BackendKind)` as one `#[test]`
/// per backend, in a module per backend: `epoll::name`, `uring::name`,
/// `winapi::name`. The io_uring instances skip themselves (with a notice)
/// where the kernel has no usable io_uring.
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(target_os = "linux")]
        mod epoll {
            $(
                #[test]
                fn $name() {
                    $crate::util::run(eventcore::BackendKind::Epoll, stringify!($name), super::$name);
                }
            )*
        }
        #[cfg(target_os = "linux")]
        mod uring {
            $(
                #[test]
                fn $name() {
                    if $crate::util::io_uring_missing(stringify!($name)) {
                        return;
                    }
                    $crate::util::run(eventcore::BackendKind::IoUring, stringify!($name), super::$name);
                }
            )*
        }
        /// io_uring with its tuning on: a submission-queue thread,
        /// multishot accepts and multishot receives (`util::driver` builds
        /// such drivers on this thread).
        #[cfg(target_os = "linux")]
        mod uring_tuned {
            $(
                #[test]
                fn $name() {
                    if $crate::util::io_uring_missing(stringify!($name)) {
                        return;
                    }
                    $crate::util::run_tuned(stringify!($name), super::$name);
                }
            )*
        }
        #[cfg(windows)]
        mod winapi {
            $(
                #[test]
                fn $name() {
                    $crate::util::run(eventcore::BackendKind::WinApi, stringify!($name), super::$name);
                }
            )*
        }
    };
}

/// Whether io_uring is missing here (too old a kernel, or disabled by
/// `/proc/sys/kernel/io_uring_disabled` or seccomp); then prints that the
/// io_uring instance of `scenario` is skipped.
pub fn io_uring_missing(scenario: &str) -> bool {
    let missing = !BackendKind::available().contains(&BackendKind::IoUring);
    if missing {
        eprintln!("SKIPPED {scenario} on io_uring: io_uring is not available on this kernel");
    }
    missing
}

/// How long one scenario may take before the watchdog fails it.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// Runs a scenario under a watchdog: if it has not finished after
/// [`WATCHDOG`], the process aborts with the scenario's name.
pub fn run(kind: BackendKind, name: &'static str, scenario: fn(BackendKind)) {
    let done = abort_unless_done(WATCHDOG, move || {
        format!("watchdog: {} on {} hung for {:?}", name, kind.name(), WATCHDOG)
    });
    scenario(kind);
    done.store(true, Ordering::Release);
}

/// A watchdog thread: unless the returned flag is set within `limit`, it
/// prints `report()` and aborts the process (a hang fails the run with a
/// line that says where, instead of stalling it).
pub fn abort_unless_done(limit: Duration, report: impl FnOnce() -> String + Send + 'static) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if flag.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{}", report());
        std::process::abort();
    });
    done
}

/// [`TUNED`]: io_uring drivers poll their submission queue (`SQPOLL`).
const TUNED_SQPOLL: u8 = 1;
/// [`TUNED`]: io_uring drivers accept with one multishot accept.
const TUNED_MULTISHOT: u8 = 2;
/// [`TUNED`]: io_uring drivers receive on stream sockets with one multishot
/// receive each, into a ring of [`TUNED_RECV_BUFFERS`] small buffers (so
/// that data spans buffers and busy tests run the ring dry).
const TUNED_RECV: u8 = 4;
/// The provided buffers of a [`TUNED_RECV`] driver: count and size.
pub const TUNED_RECV_BUFFERS: (u16, u32) = (16, 1024);

thread_local! {
    /// How [`driver`] tunes io_uring drivers on this thread ([`run_tuned`]).
    static TUNED: Cell<u8> = const { Cell::new(0) };
}

/// Scenarios that lower the process's descriptor limit run their tuned
/// instance without `SQPOLL`: once, under AddressSanitizer, an accept on an
/// `SQPOLL` ring found a free descriptor with the table full (not
/// explained; the kernel's polling thread shares the descriptor table).
/// Multishot accepts stay on.
pub fn without_sqpoll() {
    TUNED.with(|t| t.set(t.get() & !TUNED_SQPOLL));
}

/// Runs an io_uring scenario as [`run`] does, with every driver that
/// [`driver`] makes on this thread tuned: a submission-queue polling thread
/// (sleeping after 1 ms idle, so that parallel tests do not starve the
/// machine), multishot accepts and multishot receives.
pub fn run_tuned(name: &'static str, scenario: fn(BackendKind)) {
    TUNED.with(|t| t.set(TUNED_SQPOLL | TUNED_MULTISHOT | TUNED_RECV));
    run(BackendKind::IoUring, name, scenario);
}

/// Whether the drivers of this scenario refuse signal listeners (io_uring
/// with `SQPOLL`, under [`run_tuned`]; `tests/signals.rs` checks the
/// refusal); then prints that the scenario is skipped.
pub fn signals_refused(kind: BackendKind, scenario: &str) -> bool {
    let refused = kind == BackendKind::IoUring && TUNED.with(|t| t.get()) & TUNED_SQPOLL != 0;
    if refused {
        eprintln!("SKIPPED {scenario} on tuned io_uring: SQPOLL drivers refuse signal listeners");
    }
    refused
}

/// A fresh driver on `kind` (tuned under [`run_tuned`]).
pub fn driver(kind: BackendKind) -> Driver {
    let tuned = TUNED.with(|t| t.get());
    if kind == BackendKind::IoUring && tuned != 0 {
        let mut builder = Driver::builder()
            .backend(kind)
            .io_uring_multishot_accept(tuned & TUNED_MULTISHOT != 0);
        if tuned & TUNED_RECV != 0 {
            let (buffers, size) = TUNED_RECV_BUFFERS;
            builder = builder.io_uring_multishot_recv(buffers, size);
        }
        if tuned & TUNED_SQPOLL != 0 {
            builder = builder.io_uring_sqpoll(Duration::from_millis(1));
        }
        return builder.build().expect("tuned io_uring driver");
    }
    Driver::with_backend(kind).expect("driver")
}

/// Processes events until `process_events` returns something other than
/// `Idle`, with an overall limit; returns that reason.
pub fn run_until_not_idle(drv: &mut Driver, limit: Duration) -> ExitReason {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = drv.process_events(Some(left)).expect("process_events");
        if r != ExitReason::Idle {
            return r;
        }
        if Instant::now() >= deadline {
            return ExitReason::Timeout;
        }
    }
}

/// Processes events until `done()` holds; panics after `limit`.
pub fn run_until(drv: &mut Driver, limit: Duration, mut done: impl FnMut(&mut Driver) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(drv) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "condition not reached within {limit:?}");
        let r = drv
            .process_events(Some(left.min(Duration::from_millis(100))))
            .expect("process_events");
        assert_ne!(
            r,
            ExitReason::OutOfWaiters,
            "the loop ran out of waiters before the condition held"
        );
    }
}

/// Processes events until a callback's panic comes out of `process_events`
/// (caught here, as a server that survives a bad connection would); returns
/// its message. Fails if the loop runs out of waiters or `limit` passes
/// first.
pub fn run_until_panic(drv: &mut Driver, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no panic came out of process_events within {limit:?}");
        let step = left.min(Duration::from_millis(100));
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drv.process_events(Some(step)))) {
            Ok(Ok(ExitReason::OutOfWaiters)) => panic!("the loop ran out of waiters before a callback panicked"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("process_events: {e}"),
            Err(payload) => {
                return payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            }
        }
    }
}

/// Asserts that the driver has no live handles and no pending operations.
pub fn assert_no_leaks(drv: &Driver) {
    let report = drv.leak_report();
    assert!(report.is_empty(), "leaked: {report}");
}

/// How long [`assert_out_of_waiters`] lets the loop drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The loop must drain to `OutOfWaiters`, with no waiter left.
#[track_caller]
pub fn assert_out_of_waiters(drv: &mut Driver) {
    assert_eq!(run_until_not_idle(drv, DRAIN_LIMIT), ExitReason::OutOfWaiters);
    assert_eq!(drv.waiter_count(), 0);
}

/// Asserts that `r` failed with `status`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(r: &Result<T>, status: Status) {
    match r {
        Ok(v) => panic!("expected Err({status:?}), got Ok({v:?})"),
        Err(e) => assert_eq!(e.status(), status, "unexpected error {e}"),
    }
}

/// Where a callback leaves its outcome.
pub type Slot<T> = Rc<RefCell<Option<T>>>;

/// An empty [`Slot`].
pub fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

/// Counts how often it was dropped: a callback that never runs must still be
/// freed, exactly once.
pub struct DropCounter(pub Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Runs `f` on the loop after `delay`, through a one-shot timer it releases.
pub fn after(drv: &mut Driver, delay: Duration, f: impl FnOnce(&mut Driver) + 'static) {
    let t = drv.timers().create();
    drv.timers().set(t, delay, Duration::ZERO).expect("timer set");
    drv.timers()
        .wait(t, move |drv, t, fired| {
            assert!(fired, "the helper timer was stopped");
            assert_eq!(drv.release_ref(t), Ok(false));
            f(drv);
        })
        .expect("timer wait");
}

/// A blocking OS pipe made with `pipe2` (close-on-exec): (read end, write end).
#[cfg(unix)]
pub fn os_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors on success.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Whether the test runs inside the network namespace `cargo xtask test`
/// creates (loopback with multicast, and a black-hole route for 192.0.2.0/24).
/// Scenarios that need it print why they skip when it is missing.
pub fn in_test_netns(scenario: &str) -> bool {
    let yes = std::env::var_os("EVENTCORE_TEST_NETNS").is_some();
    if !yes {
        eprintln!("SKIPPED {scenario}: needs the test network namespace (run `cargo xtask test`)");
    }
    yes
}

/// A unique temporary directory for one scenario, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("eventcore-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the test runs under Wine rather than on Windows (or not on
/// Windows at all). Tests use it only to say where Wine differs from Windows
/// and why — never to weaken what they check on Windows.
pub fn under_wine() -> bool {
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
        // SAFETY: looks up an export of the always-loaded ntdll by name.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }
    #[cfg(not(windows))]
    false
}
