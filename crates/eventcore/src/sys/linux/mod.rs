//! Linux mechanisms: the epoll and io_uring backends (one chosen per driver at
//! run time), signalfd, inotify, pidfd and the eventfd waker.

use std::io;
use std::time::Duration;

use crate::sys::{AsSource, Backend, BackendKind, Completion, Request, SourceId, SourceKind, Waker};

pub(crate) mod bufring;
pub(crate) mod epoll;
pub(crate) mod inotify;
pub(crate) mod process;
pub(crate) mod signals;
pub(crate) mod uring;
pub(crate) mod waker;
pub(crate) mod watch;

/// The backend of one driver: epoll or io_uring, chosen when the driver is
/// created. Each call forwards through one `match`.
pub(crate) enum LinuxBackend {
    /// Readiness turned into completions ([`epoll`]).
    Epoll(epoll::Backend),
    /// Kernel completions ([`uring`]).
    Uring(Box<uring::Backend>),
}

/// Forwards a method call to whichever backend this is.
macro_rules! forward {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            LinuxBackend::Epoll(b) => b.$method($($arg),*),
            LinuxBackend::Uring(b) => b.$method($($arg),*),
        }
    };
}

impl LinuxBackend {
    /// A backend of `kind` with `tuning` (`Unsupported` for a kind Linux
    /// does not have).
    pub fn new(kind: BackendKind, tuning: &super::Tuning) -> io::Result<LinuxBackend> {
        match kind {
            BackendKind::Epoll => Ok(LinuxBackend::Epoll(epoll::Backend::new()?)),
            BackendKind::IoUring => Ok(LinuxBackend::Uring(Box::new(uring::Backend::with_tuning(tuning)?))),
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

impl Backend for LinuxBackend {
    fn waker(&self) -> Waker {
        forward!(self.waker())
    }

    fn add_source(&mut self, source: &impl AsSource, kind: SourceKind) -> io::Result<SourceId> {
        forward!(self.add_source(source, kind))
    }

    fn remove_source(&mut self, id: SourceId) {
        forward!(self.remove_source(id))
    }

    fn forget_source(&mut self, id: SourceId) {
        forward!(self.forget_source(id))
    }

    fn has_descriptor(&self, fd: std::os::fd::RawFd) -> bool {
        forward!(self.has_descriptor(fd))
    }

    fn thread_signals(&self) -> bool {
        forward!(self.thread_signals())
    }

    #[inline]
    fn submit(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion> {
        forward!(self.submit(id, token, req))
    }

    fn flush(&mut self) {
        forward!(self.flush())
    }

    #[inline]
    fn attempt(&mut self, id: SourceId, token: u64, req: Request) -> Completion {
        forward!(self.attempt(id, token, req))
    }

    fn cancel(&mut self, id: SourceId, token: u64) -> Option<usize> {
        forward!(self.cancel(id, token))
    }

    #[inline]
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        requests: &mut dyn FnMut(u64) -> Option<Request>,
    ) -> io::Result<bool> {
        forward!(self.poll(timeout, out, requests))
    }
}
