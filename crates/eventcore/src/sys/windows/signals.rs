//! Console control events as signals, mapped like libuv:
//!
//! | event              | signal          |
//! |--------------------|-----------------|
//! | `CTRL_C_EVENT`     | `SIGINT` (2)    |
//! | `CTRL_BREAK_EVENT` | `SIGBREAK` (21) |
//! | `CTRL_CLOSE_EVENT` | `SIGHUP` (1)    |
//!
//! (Log-off and shut-down events reach services only and are not mapped.)
//!
//! One handler per process, installed with `SetConsoleCtrlHandler` when the
//! first driver listens. The OS runs it on a thread of its own; it only
//! records the signal for every driver that listens to it (a process-wide
//! registry of sets behind a mutex) and calls each one's notify closure,
//! which queues the delivery as the driver's internal work through its own
//! `Remote`. It never runs user code. It returns `TRUE` (handled) if some
//! driver listens to the signal; otherwise `FALSE`, so the default action
//! (ending the process on Ctrl+C) still happens when nobody listens.
//!
//! Windows ends the process once the handler of a close event returns. As
//! libuv does, the handler then does not return: it sleeps, so the loops have
//! the time the OS grants (about five seconds) to run their `SIGHUP`
//! callbacks and end the program themselves.
//!
//! Wine cannot generate console events for a process without a console, so
//! the tests call [`dispatch`] — what the handler does, minus that sleep —
//! through `eventcore::__simulate_console_ctrl_event`.

use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};

use windows_sys::core::BOOL;
use windows_sys::Win32::System::Console::{SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT};
use windows_sys::Win32::System::Threading::{Sleep, INFINITE};

use crate::sys::signal_numbers::{SIGBREAK, SIGHUP, SIGINT, SIGKILL};
use crate::Status;

/// Wakes the driver when a signal it listens to has been recorded.
pub(crate) type SignalNotify = Box<dyn Fn() + Send + Sync>;

/// One driver's entry in the registry.
struct Listening {
    id: u64,
    signals: Vec<i32>,
    arrived: Arc<Mutex<Vec<i32>>>,
    notify: SignalNotify,
}

static REGISTRY: Mutex<Vec<Listening>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Locks a mutex whose data stays consistent whatever panics (each critical
/// section is a push, a retain or a drain), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The signal a console control event stands for.
fn signal_of(ctrl_type: u32) -> Option<i32> {
    match ctrl_type {
        CTRL_C_EVENT => Some(SIGINT),
        CTRL_BREAK_EVENT => Some(SIGBREAK),
        CTRL_CLOSE_EVENT => Some(SIGHUP),
        _ => None,
    }
}

/// Records the event's signal for every driver that listens to it and wakes
/// them. Returns whether any did (the event is then handled).
pub(crate) fn dispatch(ctrl_type: u32) -> bool {
    let Some(signo) = signal_of(ctrl_type) else {
        return false;
    };
    let registry = lock(&REGISTRY);
    let mut handled = false;
    for driver in registry.iter().filter(|d| d.signals.contains(&signo)) {
        lock(&driver.arrived).push(signo);
        (driver.notify)();
        handled = true;
    }
    handled
}

/// The console control handler (on a thread the OS creates).
unsafe extern "system" fn console_handler(ctrl_type: u32) -> BOOL {
    let handled = dispatch(ctrl_type);
    if handled && ctrl_type == CTRL_CLOSE_EVENT {
        // The OS ends the process when this returns: give the loops the
        // time it allows instead (see the module documentation).
        // SAFETY: Sleep has no preconditions.
        unsafe { Sleep(INFINITE) };
    }
    BOOL::from(handled)
}

/// Installs the handler once per process.
fn install() -> io::Result<()> {
    static INSTALL: Once = Once::new();
    static FAILED: Mutex<Option<i32>> = Mutex::new(None);
    INSTALL.call_once(|| {
        // SAFETY: registers a handler function that lives for the whole program.
        if unsafe { SetConsoleCtrlHandler(Some(console_handler), 1) } == 0 {
            *lock(&FAILED) = io::Error::last_os_error().raw_os_error();
        }
    });
    match *lock(&FAILED) {
        Some(code) => Err(io::Error::from_raw_os_error(code)),
        None => Ok(()),
    }
}

/// The signals one driver listens to, and their arrivals.
pub(crate) struct SignalSet {
    id: u64,
    arrived: Arc<Mutex<Vec<i32>>>,
}

impl SignalSet {
    /// Joins the registry with an empty set; `notify` is called (from the
    /// handler's thread) after each arrival of a signal in the set.
    pub fn new(notify: SignalNotify) -> io::Result<SignalSet> {
        install()?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let arrived = Arc::new(Mutex::new(Vec::new()));
        lock(&REGISTRY).push(Listening {
            id,
            signals: Vec::new(),
            arrived: arrived.clone(),
            notify,
        });
        Ok(SignalSet { id, arrived })
    }

    /// `SIGINT`, `SIGBREAK` and `SIGHUP` can be listened to. Other signal
    /// numbers (1–64) are never delivered on Windows: `NotSupported`; 0,
    /// negative numbers, `SIGKILL` and larger numbers: `InvalidArgument`.
    pub fn check(signo: i32) -> Result<(), Status> {
        match signo {
            SIGINT | SIGBREAK | SIGHUP => Ok(()),
            SIGKILL => Err(Status::InvalidArgument),
            1..=64 => Err(Status::NotSupported),
            _ => Err(Status::InvalidArgument),
        }
    }

    fn with_signals(&self, f: impl FnOnce(&mut Vec<i32>)) {
        if let Some(me) = lock(&REGISTRY).iter_mut().find(|d| d.id == self.id) {
            f(&mut me.signals);
        }
    }

    /// Starts recording `signo`.
    pub fn add(&mut self, signo: i32) -> io::Result<()> {
        self.with_signals(|s| {
            if !s.contains(&signo) {
                s.push(signo);
            }
        });
        Ok(())
    }

    /// Stops recording `signo`.
    pub fn remove(&mut self, signo: i32) {
        self.with_signals(|s| s.retain(|&x| x != signo));
    }

    /// Nothing for the wait set: arrivals come through the notify closure.
    pub fn source(&self) -> Option<&OwnedHandle> {
        None
    }

    /// Moves the recorded arrivals, oldest first, into `out`.
    pub fn take_arrived(&mut self, out: &mut Vec<i32>) {
        out.append(&mut lock(&self.arrived));
    }
}

impl Drop for SignalSet {
    fn drop(&mut self) {
        // The entry (and its notify closure) leaves the registry; a handler
        // that already took the lock finishes first.
        let gone = {
            let mut registry = lock(&REGISTRY);
            let at = registry.iter().position(|d| d.id == self.id);
            at.map(|i| registry.swap_remove(i))
        };
        drop(gone);
    }
}
