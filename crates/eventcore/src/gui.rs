//! Windows GUI integration: the driver and a program's window messages on one
//! thread, in both directions.
//!
//! **The driver in charge.** `process_events` waits with
//! `MsgWaitForMultipleObjectsEx(QS_ALLINPUT, MWMO_ALERTABLE)` and dispatches the
//! thread's window messages after each wait, so windows created on the
//! driver's thread stay responsive while it waits for I/O. A dispatched
//! message counts as activity (`ExitReason::Idle`). `WM_QUIT` ends
//! `process_events` with [`ExitReason::Quit`] and its exit code, whenever
//! it was posted (from the last callback too). The thread's message queue
//! is a source like any other: while the thread owns a top-level window, a
//! loop with no pending driver operation waits for that window's messages
//! instead of returning [`ExitReason::OutOfWaiters`] (message-only windows
//! do not count), so `while drv.process_events(None)? == ExitReason::Idle {}`
//! runs a window program until it quits, using no CPU while it is idle.
//! Messages are dispatched for at most 8 ms (or 512 messages) per loop turn,
//! then I/O and timers get their turn: slow window procedures delay them by
//! that bound plus one handler's run. A
//! [`MessageHook`] sees every message before it is translated and dispatched
//! (for `IsDialogMessageW` and accelerator tables).
//!
//! **The program's loop in charge.** A GUI framework's `GetMessage` loop, a
//! modal dialog, or a window being moved or resized runs its own loop, which
//! neither waits alertably (so completion routines would not run) nor calls
//! `process_events`. [`Driver::attach_to_message_loop`] hands the driver to
//! the thread's message loop: the driver's hidden window then runs its
//! callbacks (zero-timeout `process_events` batches, for at most 8 ms per
//! turn) on every `WM_TIMER` of a pump timer, on every wake-up (a `Remote`
//! call posts a message to the window) and as soon as an I/O request
//! started while attached finishes (the request signals an event instead of
//! queueing a completion routine, and a wait registered on that event posts
//! the message), so I/O callbacks, timers and cross-thread work keep flowing
//! inside any loop that dispatches messages — `MessageBoxW` and `DialogBoxW`
//! included. A loopback echo round trip takes about as long as with the
//! driver in charge (about 0.13 ms under Wine, against 20 ms when
//! completions waited for the pump timer). Timer callbacks, and requests
//! that were already in flight when the driver was attached, are as late as
//! the pump interval at most; so is I/O while input or paint messages wait
//! in the queue (the program's loop takes those first). The async executor
//! attaches the same way
//! ([`rt::Executor::attach_to_message_loop`](crate::rt::Executor::attach_to_message_loop)).
//!
//! Not supported (and reported, never undefined): calling the attached driver
//! from inside one of its own callbacks ([`AttachedDriver::with`] gives
//! [`Status::Busy`]); a modal loop started *inside* a driver callback
//! cannot run further callbacks until that callback returns — completions
//! are still recorded meanwhile and run right after.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use windows_sys::Win32::UI::WindowsAndMessaging::MSG;

use crate::{Driver, Error, ExitReason, Result, Status};

/// A program's look at each window message before the driver translates and
/// dispatches it: return `true` if the message was handled (for example by
/// `IsDialogMessageW` or `TranslateAcceleratorW`) and must not be dispatched.
pub type MessageHook = Box<dyn FnMut(&MSG) -> bool>;

impl Driver {
    /// Installs a hook that sees every message the driver takes off the
    /// thread's queue, before `TranslateMessage` / `DispatchMessageW`.
    pub fn set_message_hook(&mut self, hook: impl FnMut(&MSG) -> bool + 'static) {
        self.sys.set_message_hook(Some(Box::new(hook)));
    }

    /// Removes the message hook.
    pub fn clear_message_hook(&mut self) {
        self.sys.set_message_hook(None);
    }

    /// Hands the driver to the thread's own message loop (see the module
    /// docs): from now on any loop that dispatches messages on this thread
    /// runs the driver's callbacks, at the latest every `pump_interval`, and
    /// at once when a `Remote` wakes it or an I/O request started while
    /// attached finishes. The program reaches the driver
    /// through [`AttachedDriver::with`] and takes it back with
    /// [`AttachedDriver::detach`].
    pub fn attach_to_message_loop(mut self, pump_interval: Duration) -> AttachedDriver {
        let ms = pump_interval.as_millis().clamp(1, u128::from(u32::MAX / 2)) as u32;
        self.sys.set_attached(Some(ms));
        let inner = Rc::new(RefCell::new(self));
        let panic: Rc<RefCell<Option<Box<dyn Any + Send>>>> = Rc::default();
        let weak = Rc::downgrade(&inner);
        let panic_slot = panic.clone();
        let pump = move || {
            let Some(drv) = weak.upgrade() else {
                return;
            };
            let Ok(mut drv) = drv.try_borrow_mut() else {
                // The driver is running (a modal loop inside one of its
                // callbacks): its completions are recorded and run later.
                return;
            };
            let result = catch_unwind(AssertUnwindSafe(|| pump_batches(&mut drv)));
            drv.sys.settle();
            match result {
                Ok(Ok(ExitReason::Quit(code))) => {
                    // The program's own loop must see the quit too.
                    post_quit(code);
                }
                Ok(_) => {}
                Err(payload) => {
                    // Never unwind into the OS's window procedure frames: keep
                    // the panic for the program to resume.
                    panic_slot.borrow_mut().get_or_insert(payload);
                }
            }
        };
        *inner.borrow().sys.window_shared().pump.borrow_mut() = Some(Box::new(pump));
        AttachedDriver { inner, panic }
    }
}

fn post_quit(code: i32) {
    crate::sys::post_quit(code);
}

/// How long one pump of an attached driver runs batches before it yields to
/// the program's loop (the bound the driver's own loop uses for messages).
pub(crate) const PUMP_BUDGET: Duration = Duration::from_millis(8);

/// Most batches per pump.
pub(crate) const PUMP_BATCHES: usize = 64;

/// One pump of an attached driver: zero-timeout batches while callbacks run
/// (a callback's operation that finished at once runs in the next batch, not
/// at the next pump), within [`PUMP_BUDGET`]; if work is left then, another
/// pump is requested. Returns the last batch's reason.
fn pump_batches(drv: &mut Driver) -> Result<ExitReason> {
    let started = std::time::Instant::now();
    for _ in 0..PUMP_BATCHES {
        let reason = drv.process_events(Some(Duration::ZERO))?;
        if reason != ExitReason::Idle {
            return Ok(reason);
        }
        if started.elapsed() >= PUMP_BUDGET {
            break;
        }
    }
    drv.sys.request_pump();
    Ok(ExitReason::Idle)
}

/// A driver attached to the thread's message loop (see
/// [`Driver::attach_to_message_loop`]).
pub struct AttachedDriver {
    inner: Rc<RefCell<Driver>>,
    panic: Rc<RefCell<Option<Box<dyn Any + Send>>>>,
}

impl AttachedDriver {
    /// Runs `f` with the driver (to start operations, create handles …).
    /// [`Status::Busy`] if called from inside one of the driver's callbacks.
    /// A panic caught in a callback run by the message loop is resumed here.
    ///
    /// Afterwards a pump is requested, so that the callbacks of operations
    /// `f` started that finished at once run promptly.
    pub fn with<R>(&self, f: impl FnOnce(&mut Driver) -> R) -> Result<R> {
        self.resume_panic();
        let mut drv = self.inner.try_borrow_mut().map_err(|_| Error::new(Status::Busy))?;
        let r = f(&mut drv);
        drv.sys.request_pump();
        Ok(r)
    }

    /// Runs one zero-timeout batch now (what the pump timer does).
    pub fn pump(&self) -> Result<ExitReason> {
        self.with(|drv| drv.process_events(Some(Duration::ZERO)))?
    }

    /// Takes the driver back from the message loop.
    pub fn detach(self) -> Driver {
        self.resume_panic();
        {
            let drv = self.inner.borrow();
            *drv.sys.window_shared().pump.borrow_mut() = None;
        }
        let inner = match Rc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(_) => unreachable!("only the AttachedDriver holds a strong reference"),
        };
        let mut drv = inner.into_inner();
        drv.sys.set_attached(None);
        drv
    }

    fn resume_panic(&self) {
        if let Some(payload) = self.panic.borrow_mut().take() {
            std::panic::resume_unwind(payload);
        }
    }
}

impl std::fmt::Debug for AttachedDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedDriver").finish_non_exhaustive()
    }
}
