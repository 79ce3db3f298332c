//! `Remote`: the `Send + Sync` door into a driver from other threads.
//!
//! Messages go into a locked queue and the driver's wait is woken through the
//! backend's waker (an eventfd on Linux). Each message is kept separately, so
//! two single-waiter triggers wake two waiters even when the OS coalesces the
//! wake-ups. When the driver is dropped the queue is closed: later calls fail
//! with [`Status::DriverGone`] and nothing crashes.
//!
//! # The wake-up protocol
//!
//! A sender pushes its message and sets `queued` under the queue's lock; only
//! the sender that turns `queued` from false to true wakes the backend. The
//! driver clears `queued` before it locks the queue to take it, and after a
//! backend wait it resets the waker before it takes. A message a take misses
//! was pushed after that take cleared `queued`, so the first such sender found
//! the flag false and writes the waker after the clear, hence after the reset:
//! the next wait returns, and the take after it finds the message. The model
//! in `loom_tests` (unit tests built with `--cfg loom`) checks this with an
//! eventfd-like waker and an io_uring-like one-shot poll.

use std::sync::Arc;

#[cfg(all(test, loom))]
mod loom_tests;
mod sync;

use crate::sys::Waker;
use crate::{Driver, Error, EventId, Result, Status};
use sync::{AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering};

/// What the queue needs of the backend's waker: make the driver's wait
/// return, from any thread. Implemented by the backends' [`Waker`], and by the
/// loom model's wakers.
pub(crate) trait Wake {
    fn wake(&self);
}

impl Wake for Waker {
    fn wake(&self) {
        Waker::wake(self);
    }
}

pub(crate) enum Message {
    Trigger {
        event: EventId,
        notify_all: bool,
    },
    Run(Box<dyn FnOnce(&mut Driver) + Send>),
    /// Work of the driver itself (not a waiter), e.g. a process watcher
    /// thread's news; returns whether a user callback ran.
    RunInternal(Box<dyn FnOnce(&mut Driver) -> bool + Send>),
    Exit,
}

impl Message {
    fn is_waiter(&self) -> bool {
        !matches!(self, Message::RunInternal(_))
    }
}

struct Queue {
    open: bool,
    messages: Vec<Message>,
}

pub(crate) struct RemoteShared<W: Wake = Waker> {
    queue: Mutex<Queue>,
    /// Messages queued and not yet taken by the driver; part of the waiter count.
    pending: AtomicUsize,
    /// Set with every message (under the lock), cleared by the driver before
    /// it takes them: lets an empty loop turn skip the lock, and lets every
    /// sender but the first after a take skip the waker.
    queued: AtomicBool,
    waker: W,
}

impl<W: Wake> RemoteShared<W> {
    pub fn new(waker: W) -> RemoteShared<W> {
        RemoteShared {
            queue: Mutex::new(Queue {
                open: true,
                messages: Vec::new(),
            }),
            pending: AtomicUsize::new(0),
            queued: AtomicBool::new(false),
            waker,
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every critical section is a push or a move of the whole queue), so
        // poisoning is ignored.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, msg: Message) -> Result<()> {
        let first = {
            let mut q = self.lock();
            if !q.open {
                return Err(Error::new(Status::DriverGone));
            }
            if msg.is_waiter() {
                self.pending.fetch_add(1, Ordering::AcqRel);
            }
            q.messages.push(msg);
            !self.queued.swap(true, Ordering::AcqRel)
        };
        // A message already queued since the loop last took them has woken
        // (or is about to wake) the loop, which takes this one with it: only
        // the first message after a take writes the eventfd (libuv's
        // `uv_async_send` skips the write the same way).
        if first {
            self.waker.wake();
        }
        Ok(())
    }

    /// Whether messages may be queued (a plain load: most loop turns find
    /// nothing, without a locked instruction).
    #[inline]
    pub fn has_messages(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Moves every queued message to the end of `out` (on the owner thread).
    #[inline]
    pub fn take_messages(&self, out: &mut Vec<Message>) {
        // Most loop turns find nothing: look without taking the lock, and
        // without a locked instruction.
        if self.queued.load(Ordering::Acquire) {
            self.take_queued(out);
        }
    }

    #[inline(never)]
    fn take_queued(&self, out: &mut Vec<Message>) {
        if !self.queued.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut q = self.lock();
        if q.messages.is_empty() {
            return;
        }
        let n = q.messages.iter().filter(|m| m.is_waiter()).count();
        // Appended, not swapped: a swap would put whatever `out` held back
        // into the queue, behind a cleared `queued`, never to be taken. Both
        // vectors keep their capacity either way.
        out.append(&mut q.messages);
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    /// Closes the queue (the driver is being dropped); queued work is dropped.
    pub fn shut_down(&self) {
        let dropped = {
            let mut q = self.lock();
            q.open = false;
            self.pending.store(0, Ordering::Release);
            std::mem::take(&mut q.messages)
        };
        drop(dropped);
    }
}

/// Reaches a [`Driver`] from any thread: trigger its events, run closures on
/// its thread, wake it, ask it to exit. `Send + Sync + Clone`; every call
/// returns `Err(DriverGone)` once the driver has been dropped.
#[derive(Clone)]
pub struct Remote {
    shared: Arc<RemoteShared>,
}

impl Remote {
    pub(crate) fn new(shared: Arc<RemoteShared>) -> Remote {
        Remote { shared }
    }

    /// Triggers `event` on the driver's thread: wakes its first waiter, or all
    /// its waiters if `notify_all`. Each call wakes a waiter of its own, also
    /// when several calls arrive before the driver wakes up.
    pub fn trigger(&self, event: EventId, notify_all: bool) -> Result<()> {
        self.shared.send(Message::Trigger { event, notify_all })
    }

    /// Runs `f` on the driver's thread, from `process_events`. Until it has run
    /// it counts as a waiter, so the loop does not report `OutOfWaiters`.
    pub fn run_in_owner_thread(&self, f: impl FnOnce(&mut Driver) + Send + 'static) -> Result<()> {
        self.shared.send(Message::Run(Box::new(f)))
    }

    /// Runs `f` on the driver's thread as the driver's own work: it does not
    /// count as a waiter, and `process_events` counts it as activity only if
    /// it returns `true` (a user callback ran).
    pub(crate) fn run_internal(&self, f: impl FnOnce(&mut Driver) -> bool + Send + 'static) -> Result<()> {
        self.shared.send(Message::RunInternal(Box::new(f)))
    }

    /// Asks the loop to stop (see [`Driver::exit`]).
    pub fn exit(&self) -> Result<()> {
        self.shared.send(Message::Exit)
    }

    /// Wakes the driver's wait without queueing work.
    pub fn wake(&self) -> Result<()> {
        if !self.shared.lock().open {
            return Err(Error::new(Status::DriverGone));
        }
        self.shared.waker.wake();
        Ok(())
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("pending", &self.shared.pending())
            .finish()
    }
}
