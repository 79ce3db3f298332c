//! Signals: a repeating callback for each arrival of a signal.
//!
//! The OS side lives in `sys::signals` behind one small interface (a
//! `SignalSet` per driver: check, add, remove, take the arrivals), and reaches
//! the loop one of two ways: a source in the wait set that is readable while
//! signals are pending, or a notify closure that another thread calls, which
//! queues the delivery as the driver's internal work through its own
//! [`Remote`](crate::Remote). Either way the callbacks run from
//! `process_events` only. Active listeners count as waiters.
//!
//! **Linux**: one signalfd per driver (the source); the listened signals are
//! blocked in the driver's thread and in the worker pool, so they are not
//! delivered to a handler elsewhere in those threads. Releasing the last
//! listener of a signal restores its previous blocked state. Signals that
//! are sent to the whole process may still be taken by another thread of
//! the program that does not block them; block them there too (or listen
//! from the main thread before starting others).
//!
//! **Windows**: console control events, mapped like libuv — Ctrl+C is
//! `SIGINT`, Ctrl+Break `SIGBREAK`, closing the console window `SIGHUP`
//! (see [`signal_numbers`]). One console control handler serves the
//! process (`SetConsoleCtrlHandler`); it only records the event and wakes
//! every driver that listens to its signal. An event nobody listens to gets
//! the default action (Ctrl+C ends the program). Other signal numbers are
//! never delivered there: `listen` refuses them with `NotSupported`.

use crate::sys::Backend as _;
use crate::handle::{define_handle, Key};
use crate::io::{Internal, IoCallback, IoMode, IoOp, Owner};
use crate::sys::signals::SignalSet;
use crate::sys::{SourceId, SourceKind};
use crate::{Driver, Error, Result};

pub use crate::sys::signal_numbers;

define_handle!(
    /// A signal listener of a [`Driver`].
    SignalListener,
    Signal
);

type SignalCallback = Box<dyn FnMut(&mut Driver, SignalListener, i32)>;

pub(crate) struct SignalState {
    signo: i32,
    callback: Option<SignalCallback>,
}

/// The signal subsystem's state besides its listeners' table.
#[derive(Default)]
pub(crate) struct SignalComponent {
    /// The OS signal source, once a listener exists.
    pub(crate) source: Option<SignalSource>,
}

/// The driver's signal set, the registration of its source (if it has one)
/// and the pending internal read on it.
pub(crate) struct SignalSource {
    set: SignalSet,
    pub(crate) src: Option<SourceId>,
    op: Option<Key>,
}

/// The signal view of a driver (see [`Driver::signals`]).
pub struct Signals<'a> {
    drv: &'a mut Driver,
}

fn internal_owner(drv: &Driver) -> Owner {
    // Internal sources have no handle; the key is never looked up.
    Owner {
        kind: crate::handle::HandleKind::Signal,
        key: Key {
            index: u32::MAX,
            gen: u32::MAX,
            driver: drv.id,
        },
    }
}

impl Driver {
    /// Signals: listen for POSIX signals (Windows: console control events).
    pub fn signals(&mut self) -> Signals<'_> {
        Signals { drv: self }
    }

    fn arm_signal_read(&mut self) {
        let owner = internal_owner(self);
        let Some(source) = &self.subsystems.signals.source else {
            return;
        };
        let Some(src) = source.src else {
            return;
        };
        if source.op.is_some() || self.tables.signals.len() == 0 {
            return;
        }
        let mut op = IoOp::new(owner, IoCallback::Internal(Internal::Signals), crate::sys::buf::AnyBuf::empty(), IoMode::Once);
        op.src = src;
        let key = self.start_io(op, false);
        if let Some(source) = &mut self.subsystems.signals.source {
            source.op = Some(key);
        }
    }

    /// Signals arrived (the source is readable, or the OS side notified):
    /// deliver each to its listeners; returns whether a callback ran.
    pub(crate) fn signals_ready(&mut self) -> bool {
        let mut arrived = Vec::new();
        if let Some(source) = &mut self.subsystems.signals.source {
            if source.src.is_some() {
                // Called from the completion of the internal read.
                source.op = None;
            }
            source.set.take_arrived(&mut arrived);
        }
        let mut ran = false;
        for signo in arrived {
            for key in self.tables.signals.keys() {
                let Some(state) = self.tables.signals.get_mut(key) else {
                    continue;
                };
                if state.signo != signo {
                    continue;
                }
                let Some(mut callback) = state.callback.take() else {
                    continue;
                };
                self.guarded(|drv| callback(drv, SignalListener(key), signo));
                ran = true;
                if let Some(state) = self.tables.signals.get_mut(key) {
                    if state.callback.is_none() {
                        state.callback = Some(callback);
                    }
                }
            }
        }
        self.arm_signal_read();
        ran
    }

    pub(crate) fn destroy_signal(&mut self, key: Key) {
        let Some(entry) = self.tables.signals.remove(key) else {
            return;
        };
        let signo = entry.signo;
        let still_listened = self
            .tables.signals
            .keys()
            .into_iter()
            .any(|k| self.tables.signals.get(k).is_some_and(|s| s.signo == signo));
        let nobody = self.tables.signals.len() == 0;
        if let Some(source) = &mut self.subsystems.signals.source {
            if !still_listened {
                source.set.remove(signo);
            }
            if nobody {
                if let Some(op) = source.op.take() {
                    let _ = self.cancel_io(op);
                }
            }
        }
    }
}

impl Signals<'_> {
    /// Calls `callback` with the signal number each time `signo` arrives, until
    /// the listener is released. Several listeners of one signal are all
    /// called. `InvalidArgument` for a number that is not a catchable signal
    /// (`SIGKILL`, `SIGSTOP`, 0, out of range). Windows: `SIGINT`, `SIGBREAK`
    /// and `SIGHUP` (see [`signal_numbers`]); other signals are
    /// `NotSupported` there. `NotSupported` on an io_uring driver built with
    /// [`io_uring_sqpoll`](crate::DriverBuilder::io_uring_sqpoll), where
    /// the kernel's polling thread, not the driver's, would look for them.
    pub fn listen(
        &mut self,
        signo: i32,
        callback: impl FnMut(&mut Driver, SignalListener, i32) + 'static,
    ) -> Result<SignalListener> {
        SignalSet::check(signo).map_err(Error::new)?;
        if !self.drv.sys.thread_signals() {
            // io_uring with SQPOLL: the signals would never be seen.
            return Err(Error::new(crate::Status::NotSupported));
        }
        if self.drv.subsystems.signals.source.is_none() {
            let remote = self.drv.remote();
            let notify = Box::new(move || {
                // If the driver is gone there is nobody to tell.
                let _ = remote.run_internal(|drv| drv.signals_ready());
            });
            let set = SignalSet::new(notify)?;
            let src = match set.source() {
                Some(fd) => Some(self.drv.sys.add_source(fd, SourceKind::Fd)?),
                None => None,
            };
            self.drv.subsystems.signals.source = Some(SignalSource { set, src, op: None });
        }
        let source = self.drv.subsystems.signals.source.as_mut().expect("created above");
        source.set.add(signo)?;
        let key = self.drv.tables.signals.insert(SignalState {
            signo,
            callback: Some(Box::new(callback)),
        });
        self.drv.arm_signal_read();
        Ok(SignalListener(key))
    }

    /// The signal a listener listens to.
    pub fn signal_of(&self, listener: SignalListener) -> Result<i32> {
        self.drv
            .tables.signals
            .get(listener.0)
            .map(|s| s.signo)
            .ok_or_else(Error::invalid_handle)
    }
}
