//! POSIX signals as a stream of arrivals.

use std::rc::Rc;

use super::executor::{current, Owned};
use super::op::Queue;
use crate::{Result, SignalListener};

/// Arrivals of one signal (see [`Signal::listen`]).
///
/// While it lives, the signal is blocked in the driver's thread and taken
/// through the driver (see [`Signals`](crate::Signals) for what that means
/// for other threads). Arrivals are queued until [`Signal::recv`] takes them;
/// dropping the `Signal` stops listening.
pub struct Signal {
    h: Owned<SignalListener>,
    queue: Rc<Queue<i32>>,
}

impl Signal {
    /// Listens for `signo` (`libc::SIGUSR1`, `SIGINT` …; on Windows the
    /// console control events `SIGINT`, `SIGBREAK`, `SIGHUP`, see
    /// [`signal_numbers`](crate::signal_numbers)). `InvalidArgument` for a
    /// number that is not a catchable signal; `NotSupported` where
    /// [`Signals::listen`](crate::Signals::listen) says.
    pub fn listen(signo: i32) -> Result<Signal> {
        let core = current();
        let queue = Queue::new();
        let q = queue.clone();
        let listener = core.with_driver(|drv| drv.signals().listen(signo, move |_, _, s| q.push(s)))?;
        Ok(Signal {
            h: Owned::new(core, listener),
            queue,
        })
    }

    /// Waits for the next arrival; returns the signal number. (The stream
    /// never ends; `next` would always be `Some`.)
    ///
    /// **Cancel safety:** cancel-safe: an arrival is only taken by the poll
    /// that returns it.
    pub async fn recv(&mut self) -> i32 {
        std::future::poll_fn(|cx| self.queue.poll_next(cx)).await
    }

    /// The next arrival, or registers the task to be woken by one.
    pub(crate) fn poll_recv(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<i32> {
        self.queue.poll_next(cx)
    }

    /// An arrival that is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<i32> {
        self.queue.try_next()
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> SignalListener {
        self.h.handle
    }
}


impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Signal").field(&self.h.handle).finish()
    }
}
