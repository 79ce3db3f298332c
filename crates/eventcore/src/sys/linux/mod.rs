//! Linux mechanisms: the epoll and io_uring backends (one chosen per driver at
//! run time), signalfd, inotify, pidfd and the eventfd waker.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::sys::BackendKind;
use crate::sys::{Completion, Request, SourceId, SourceKind, Waker};

pub(crate) mod epoll;
pub(crate) mod inotify;
pub(crate) mod process;
pub(crate) mod signals;
pub(crate) mod uring;
pub(crate) mod waker;

/// The backend of one driver: epoll or io_uring, chosen when the driver is
/// created. Each call forwards through one `match`.
pub(crate) enum Backend {
    /// Readiness turned into completions ([`epoll`]).
    Epoll(epoll::Backend),
    /// Kernel completions ([`uring`]).
    Uring(Box<uring::Backend>),
}

/// Forwards a method call to whichever backend this is.
macro_rules! forward {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Backend::Epoll(b) => b.$method($($arg),*),
            Backend::Uring(b) => b.$method($($arg),*),
        }
    };
}

impl Backend {
    /// A backend of `kind` (`Unsupported` for a kind Linux does not have).
    pub fn new(kind: BackendKind) -> io::Result<Backend> {
        match kind {
            BackendKind::Epoll => Ok(Backend::Epoll(epoll::Backend::new()?)),
            BackendKind::IoUring => Ok(Backend::Uring(Box::new(uring::Backend::new()?))),
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// A waker that interrupts `poll` from any thread.
    pub fn waker(&self) -> Waker {
        forward!(self.waker())
    }

    /// Registers a descriptor.
    pub fn add_source(&mut self, source: &impl AsRawFd, kind: SourceKind) -> io::Result<SourceId> {
        forward!(self.add_source(source, kind))
    }

    /// Forgets a descriptor and whatever is still parked on it.
    pub fn remove_source(&mut self, id: SourceId) {
        forward!(self.remove_source(id))
    }

    /// Starts one operation.
    #[inline]
    pub fn submit(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion> {
        forward!(self.submit(id, token, req))
    }

    /// Hands queued requests to the kernel now.
    pub fn flush(&mut self) {
        forward!(self.flush())
    }

    /// One non-blocking try that never parks.
    #[inline]
    pub fn attempt(&mut self, id: SourceId, token: u64, req: Request) -> Completion {
        forward!(self.attempt(id, token, req))
    }

    /// Withdraws a parked operation (see the contract in `sys`).
    pub fn cancel(&mut self, id: SourceId, token: u64) -> Option<usize> {
        forward!(self.cancel(id, token))
    }

    /// A `WM_QUIT` exit code: always `None`, Linux has no message queue.
    pub fn take_quit(&mut self) -> Option<i32> {
        forward!(self.take_quit())
    }

    /// Waits for completions (see the contract in `sys`).
    #[inline]
    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        requests: &mut dyn FnMut(u64) -> Option<Request>,
    ) -> io::Result<bool> {
        forward!(self.poll(timeout, out, requests))
    }
}
