//! Signals: a repeating callback for each arrival of a POSIX signal.
//!
//! Linux: one signalfd per driver; the listened signals are blocked in the
//! driver's thread and in the worker pool, so they are not delivered to a
//! handler elsewhere in those threads. Releasing the last listener of a signal
//! restores its previous blocked state. Active listeners count as waiters.
//!
//! Portability: signals that are sent to the whole process may still be taken
//! by another thread of the program that does not block them; block them
//! there too (or listen from the main thread before starting others).

use crate::handle::{define_handle, Key};
use crate::io::{Internal, IoCallback, IoMode, IoOp, Owner};
use crate::sys::{SignalFd, SourceId, SourceKind};
use crate::{Driver, Error, Result, Status};

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

/// The driver's signalfd, its registration and its pending internal read.
pub(crate) struct SignalSource {
    fd: SignalFd,
    pub(crate) src: SourceId,
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
    /// Signals: listen for POSIX signals.
    pub fn signals(&mut self) -> Signals<'_> {
        Signals { drv: self }
    }

    fn arm_signal_read(&mut self) {
        let owner = internal_owner(self);
        let Some(source) = &self.signal_source else {
            return;
        };
        if source.op.is_some() || self.signal_table.len() == 0 {
            return;
        }
        let mut op = IoOp::new(owner, IoCallback::Internal(Internal::Signals), Vec::new(), IoMode::Once);
        op.src = source.src;
        let key = self.start_io(op, false);
        if let Some(source) = &mut self.signal_source {
            source.op = Some(key);
        }
    }

    /// The signalfd is readable: deliver every pending signal to its listeners.
    pub(crate) fn signals_ready(&mut self) -> bool {
        let mut arrived = Vec::new();
        if let Some(source) = &mut self.signal_source {
            source.op = None;
            source.fd.read_all(&mut arrived);
        }
        let mut ran = false;
        for signo in arrived {
            for key in self.signal_table.keys() {
                let Some(state) = self.signal_table.get_mut(key) else {
                    continue;
                };
                if state.signo != signo {
                    continue;
                }
                let Some(mut callback) = state.callback.take() else {
                    continue;
                };
                callback(self, SignalListener(key), signo);
                ran = true;
                if let Some(state) = self.signal_table.get_mut(key) {
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
        let Some(entry) = self.signal_table.remove(key) else {
            return;
        };
        let signo = entry.value.signo;
        let still_listened = self
            .signal_table
            .keys()
            .into_iter()
            .any(|k| self.signal_table.get(k).is_some_and(|s| s.signo == signo));
        let nobody = self.signal_table.len() == 0;
        if let Some(source) = &mut self.signal_source {
            if !still_listened {
                source.fd.remove(signo);
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
    /// (`SIGKILL`, `SIGSTOP`, 0, out of range).
    pub fn listen(
        &mut self,
        signo: i32,
        callback: impl FnMut(&mut Driver, SignalListener, i32) + 'static,
    ) -> Result<SignalListener> {
        if !SignalFd::valid(signo) {
            return Err(Error::new(Status::InvalidArgument));
        }
        if self.drv.signal_source.is_none() {
            let fd = SignalFd::new()?;
            let src = self.drv.sys.add_source(&fd, SourceKind::Fd)?;
            self.drv.signal_source = Some(SignalSource { fd, src, op: None });
        }
        let source = self.drv.signal_source.as_mut().expect("created above");
        source.fd.add(signo)?;
        let key = self.drv.signal_table.insert(SignalState {
            signo,
            callback: Some(Box::new(callback)),
        });
        self.drv.arm_signal_read();
        Ok(SignalListener(key))
    }

    /// The signal a listener listens to.
    pub fn signal_of(&self, listener: SignalListener) -> Result<i32> {
        self.drv
            .signal_table
            .get(listener.0)
            .map(|s| s.signo)
            .ok_or_else(Error::invalid_handle)
    }
}
