//! The driver: the loop, the waiter count, callback storage and dispatch.
//!
//! Every pending callback lives in one table, `ops`, whose slots are reused
//! (a timer's wait lives in the timer's own slot instead). Operations finish
//! by pushing a [`Ready`] record (the op's key and its outcome) onto the ready
//! queue; only `process_events` pops that queue and calls callbacks, from
//! ordinary Rust frames. Cancelling an operation removes its slot, so a ready
//! record that was already queued for it is skipped: a cancelled callback
//! never runs (a timer's queued completion carries an epoch that
//! `cancel_wait` moves past, to the same effect).

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys::Backend as _;
use crate::handle::{Handle, HandleKind, Key, Table};
use crate::kinds::{LeakReport, Tables};
use crate::remote::{Message, Remote, RemoteShared};
use crate::sys::{self, BackendKind};
use crate::{Error, Result};

/// Why [`Driver::process_events`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// At least one callback ran.
    Idle,
    /// The timeout elapsed and no callback ran.
    Timeout,
    /// Nothing can ever complete: no pending operation, armed timer, active
    /// listener or queued cross-thread work is left. Checked before waiting, so
    /// a fresh driver returns this at once. Windows: not while the thread owns
    /// a top-level window (message-only windows do not count) and the driver
    /// pumps messages — the loop then waits for the window's messages, and a
    /// GUI program's loop ends with [`ExitReason::Quit`] — nor while a
    /// `WM_QUIT` is in the thread's queue.
    OutOfWaiters,
    /// [`Driver::exit`] (or [`Remote::exit`]) was called; the request is consumed.
    Exited,
    /// Windows: the thread's message queue delivered `WM_QUIT` (posted by the
    /// program with `PostQuitMessage`, whenever and from wherever — the last
    /// callback included) with this exit code. The message was taken off the
    /// queue; a program that goes on to run its own `GetMessage` loop should
    /// post it again. Never returned elsewhere.
    Quit(i32),
}

/// A pending callback and what it waits for.
pub(crate) enum Op {
    Dns(crate::dns::DnsOp),
    Event(crate::events::EventOp),
    Io(crate::io::IoOp),
    Remote(Box<dyn FnOnce(&mut Driver) + Send>),
    /// The driver's own work sent through its `Remote` (not a waiter); says
    /// whether a user callback ran.
    Internal(Box<dyn FnOnce(&mut Driver) -> bool + Send>),
    ProcessWait(crate::processes::ProcessWaitOp),
    File(crate::files::FileOp),
    Walk(crate::watchers::WalkOp),
    /// A wait for a foreign descriptor or (Windows) kernel object.
    Poll(crate::poll::PollOp),
}

/// The outcome of an operation, queued for dispatch.
pub(crate) enum Outcome {
    /// A timer wait ended (`fired`: the timer fired rather than being
    /// stopped); the record's key is the timer's, the callback travels here.
    Timer {
        fired: bool,
        epoch: std::num::NonZeroU32,
        callback: crate::timers::TimerFn,
    },
    /// An event was triggered.
    Event,
    /// The backend finished an I/O operation.
    Sys(sys::Completion),
    /// The operation failed before it reached the backend.
    Failed(Error),
    /// A closure sent by a [`Remote`].
    Remote,
    /// A worker-pool job finished with this output.
    Job(crate::pool::JobOutput),
}

pub(crate) struct Ready {
    pub op: Key,
    pub outcome: Outcome,
}

static NEXT_DRIVER_ID: AtomicU32 = AtomicU32::new(1);

/// Most batches of already-queued callbacks run before the OS is polled again.
const POLL_EVERY: u32 = 16;

/// Posts a taken `WM_QUIT` again if dropped, that is, if the dispatch that
/// followed it unwinds (Windows; elsewhere there is no quit to take).
struct QuitOnUnwind(#[cfg_attr(not(windows), allow(dead_code))] i32);

impl Drop for QuitOnUnwind {
    fn drop(&mut self) {
        #[cfg(windows)]
        sys::post_quit(self.0);
    }
}

/// The state of each subsystem besides its handle table (`kinds.rs`): one
/// component per subsystem, each defined in that subsystem's file. The
/// driver's own fields are the core: the op table, the ready queue, waiter
/// accounting, the backend, the worker pool and `Remote`.
pub(crate) struct Subsystems {
    /// The timer queue and the count of timer waits (`timers.rs`).
    pub(crate) timers: crate::timers::TimerComponent,
    /// The signal source, once a listener exists (`signals.rs`).
    pub(crate) signals: crate::signals::SignalComponent,
    /// Released processes still being watched until they exit (`processes.rs`).
    pub(crate) processes: crate::processes::ProcessComponent,
    /// The directory watch engine and its reads in flight (`watchers.rs`).
    pub(crate) watches: crate::watchers::WatchComponent,
    /// The foreign descriptors registered with `polls()`, by raw value (`poll.rs`).
    pub(crate) polls: crate::poll::PollRegistry,
}

/// A per-thread event driver.
///
/// All operations are started through the subsystem views ([`Driver::timers`],
/// [`Driver::events`], [`Driver::sockets`]) and complete through callbacks that
/// only [`Driver::process_events`] calls. `Driver` is `!Send`: use
/// [`Driver::remote`] to reach it from other threads.
///
/// # Panics in callbacks
///
/// A panic in a callback propagates out of the `process_events` call that ran
/// it, and the driver stays fully usable: a program may catch it
/// (`std::panic::catch_unwind`) and go on calling `process_events`. The
/// driver finishes its own bookkeeping first, so a repeating callback (a
/// listener's accept, a signal or watcher listener) stays registered and
/// armed, waiter counts stay true, and no callback runs twice or is lost:
/// callbacks queued behind the panicking one run in the next call. Where one
/// event is delivered to several repeating callbacks (a signal with several
/// listeners, a batch of directory changes), all of them get it; if more than
/// one panics, each later `process_events` call resumes the next panic before
/// doing anything else.
pub struct Driver {
    pub(crate) id: u32,
    pub(crate) sys: sys::Native,
    pub(crate) ops: Table<Op>,
    pub(crate) ready: VecDeque<Ready>,
    completions: Vec<sys::Completion>,
    jobs_done: Vec<(u64, crate::pool::JobOutput)>,
    pool: Option<crate::pool::Pool>,
    inbox: Vec<Message>,
    /// The table of every handle kind (`kinds.rs`).
    pub(crate) tables: Tables,
    /// What each subsystem keeps besides its handle table.
    pub(crate) subsystems: Subsystems,
    /// The user data of handles ([`Driver::set_user_data`]): kept aside, as
    /// few handles carry any, so that a handle's slot does not pay for it.
    user_data: std::collections::HashMap<(HandleKind, Key), Box<dyn std::any::Any>>,
    /// Ops in `ops` that are the driver's own (not waiters).
    pub(crate) internal_ops: usize,
    /// Batches dispatched from the ready queue without polling the OS.
    batches_without_poll: u32,
    remote: Arc<RemoteShared>,
    exit_requested: bool,
    /// Panics caught in callbacks, resumed by `process_events` once the
    /// driver's state is whole again (see "Panics in callbacks").
    panics: VecDeque<Box<dyn Any + Send>>,
    backend: BackendKind,
    _not_send: PhantomData<*const ()>,
}

/// How to make a [`Driver`]: which backend, and the backend's tuning.
/// Options of a backend the driver does not use are ignored, so one
/// builder serves every platform.
///
/// ```no_run
/// use std::time::Duration;
/// use eventcore::{BackendKind, Driver};
///
/// # fn main() -> eventcore::Result<()> {
/// let backend = *BackendKind::available().last().unwrap(); // io_uring where there is one
/// let drv = Driver::builder()
///     .backend(backend)
///     .io_uring_sqpoll(Duration::from_millis(50))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DriverBuilder {
    backend: BackendKind,
    tuning: sys::Tuning,
}

impl DriverBuilder {
    /// The backend (the platform's default, `BackendKind::available()[0]`,
    /// unless set).
    pub fn backend(mut self, kind: BackendKind) -> DriverBuilder {
        self.backend = kind;
        self
    }

    /// io_uring: a kernel thread takes the submission queue
    /// (`IORING_SETUP_SQPOLL`), so starting an operation needs no system
    /// call while the thread is awake; it sleeps after `idle` without work
    /// and is woken by the next loop turn that queues something (rounded
    /// to whole milliseconds, at least one). The thread spins on a CPU of
    /// its own while awake: it pays where the machine has cores to spare,
    /// and loses where the loops already use them all (see the
    /// benchmarks). Waiting for completions is still one `io_uring_enter`.
    /// Such a driver cannot listen to signals ([`Signals::listen`](crate::Signals::listen)
    /// is `NotSupported`): a signalfd is ready only for the thread that
    /// polls it, and here that is the kernel's. Off by default.
    pub fn io_uring_sqpoll(mut self, idle: Duration) -> DriverBuilder {
        self.tuning.uring_sqpoll = Some(idle);
        self
    }

    /// io_uring: one multishot accept per listener (Linux 5.19+; ignored
    /// before) instead of one accept request per connection. The kernel
    /// then takes every connection as it comes, and the peer's address is
    /// asked with `getpeername`. Fewer system calls per connection, but a
    /// wake-up for every connection even while the loop is busy: in the
    /// `pound` benchmark (100 concurrent connections) it was slower, so it
    /// is off by default.
    pub fn io_uring_multishot_accept(mut self, enable: bool) -> DriverBuilder {
        self.tuning.uring_multishot_accept = enable;
        self
    }

    /// io_uring: stream sockets receive through one multishot receive each
    /// (Linux 6.0+; ignored before), into a ring of `buffers` provided
    /// buffers of `size` bytes that all sockets of the driver share. The
    /// kernel then receives whenever data comes, without a request per
    /// read; a read takes what has come (copied out of the provided
    /// buffers into its own) or waits for the next data. The buffers are
    /// anonymous memory (`buffers × size` bytes of address space, paged in
    /// as the kernel fills them); data that no read has taken yet holds its
    /// buffer, and a read that finds the ring empty receives by itself
    /// instead. A read that is cancelled leaves the data for the next one.
    /// `buffers` must be a power of two up to 32768 and `size` at least 1
    /// ([`Status::InvalidArgument`](crate::Status::InvalidArgument)
    /// otherwise, from [`build`](DriverBuilder::build)). Off by default.
    pub fn io_uring_multishot_recv(mut self, buffers: u16, size: u32) -> DriverBuilder {
        self.tuning.uring_recv_buffers = Some((buffers, size));
        self
    }

    /// The driver; [`Status::NotSupported`](crate::Status::NotSupported) if
    /// this build or kernel does not have the backend, or the OS error if
    /// it refuses the tuning (a kernel that cannot poll the submission
    /// queue, for one).
    pub fn build(self) -> Result<Driver> {
        Driver::build(self.backend, &self.tuning)
    }
}

impl Driver {
    /// A driver on the platform's default backend.
    pub fn new() -> Result<Driver> {
        Driver::with_backend(BackendKind::available()[0])
    }

    /// A driver on a chosen backend; [`Status::NotSupported`](crate::Status::NotSupported)
    /// if this build or kernel does not have it.
    pub fn with_backend(kind: BackendKind) -> Result<Driver> {
        Driver::builder().backend(kind).build()
    }

    /// A [`DriverBuilder`]: a driver with a chosen backend and that
    /// backend's tuning.
    pub fn builder() -> DriverBuilder {
        DriverBuilder {
            backend: BackendKind::available()[0],
            tuning: sys::Tuning::default(),
        }
    }

    fn build(kind: BackendKind, tuning: &sys::Tuning) -> Result<Driver> {
        if !BackendKind::available().contains(&kind) {
            return Err(Error::new(crate::Status::NotSupported));
        }
        if let Some((buffers, size)) = tuning.uring_recv_buffers {
            // A power of two in a `u16` is at most 32768, the kernel's limit.
            if !buffers.is_power_of_two() || size == 0 {
                return Err(Error::new(crate::Status::InvalidArgument));
            }
        }
        let sys = sys::Native::new(kind, tuning)?;
        let id = NEXT_DRIVER_ID.fetch_add(1, Ordering::Relaxed);
        let remote = Arc::new(RemoteShared::new(sys.waker()));
        Ok(Driver {
            id,
            sys,
            ops: Table::new(id),
            ready: VecDeque::new(),
            completions: Vec::new(),
            jobs_done: Vec::new(),
            pool: None,
            inbox: Vec::new(),
            tables: Tables::new(id),
            subsystems: Subsystems {
                timers: Default::default(),
                signals: Default::default(),
                processes: Default::default(),
                watches: crate::watchers::WatchComponent::new(),
                polls: Default::default(),
            },
            user_data: Default::default(),
            internal_ops: 0,
            batches_without_poll: 0,
            remote,
            exit_requested: false,
            panics: VecDeque::new(),
            backend: kind,
            _not_send: PhantomData,
        })
    }

    /// The backend this driver runs on.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// A `Send + Sync` handle for other threads.
    pub fn remote(&self) -> Remote {
        Remote::new(self.remote.clone())
    }

    /// Asks the loop to stop: the current (or next) `process_events` returns
    /// [`ExitReason::Exited`] once the callbacks of its batch have run.
    pub fn exit(&mut self) {
        self.exit_requested = true;
    }

    /// Forgets an exit request that has not been consumed yet.
    pub fn clear_exit_flag(&mut self) {
        self.exit_requested = false;
    }

    /// Pending one-shot operations, armed timers, active repeating listeners and
    /// queued cross-thread work. Zero means nothing can ever complete.
    pub fn waiter_count(&self) -> usize {
        self.pending_ops() + self.subsystems.timers.queue.len() + self.remote.pending() + self.listener_count()
    }

    /// Callbacks of one-shot operations that have not run.
    fn pending_ops(&self) -> usize {
        self.ops.len() - self.internal_ops + self.subsystems.timers.waits
    }

    /// Active repeating listeners that are not an op of their own.
    fn listener_count(&self) -> usize {
        self.tables.signals.len() + self.tables.watchers.len()
    }

    /// Runs one batch: waits (at most `timeout`; `None` = without limit, zero =
    /// poll) until something completes, then runs the callbacks that are ready.
    ///
    /// # Panics
    ///
    /// Resumes a panic of a callback it ran, after the driver's own state is
    /// whole again; see [Panics in callbacks](Driver#panics-in-callbacks).
    pub fn process_events(&mut self, timeout: Option<Duration>) -> Result<ExitReason> {
        if !self.panics.is_empty() {
            self.resume_panic();
        }
        let reason = self.turn(timeout);
        if !self.panics.is_empty() {
            self.resume_panic();
        }
        reason
    }

    /// Resumes the oldest panic caught in a repeating callback.
    #[cold]
    #[inline(never)]
    fn resume_panic(&mut self) {
        if let Some(payload) = self.panics.pop_front() {
            std::panic::resume_unwind(payload);
        }
    }

    /// Runs a user callback whose caller has bookkeeping to finish after it
    /// (re-arming, putting a repeating callback back): a panic is kept for
    /// `process_events` to resume instead of unwinding through that caller.
    pub(crate) fn guarded(&mut self, f: impl FnOnce(&mut Driver)) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            self.panics.push_back(payload);
        }
    }

    /// `process_events` without the panic hand-over.
    fn turn(&mut self, timeout: Option<Duration>) -> Result<ExitReason> {
        if self.exit_requested {
            self.exit_requested = false;
            return Ok(ExitReason::Exited);
        }
        if let Some(reason) = self.nothing_left() {
            return Ok(reason);
        }
        // Callbacks already queued (operations that finished at once) run
        // without asking the OS first — a chain of immediate completions then
        // costs no syscall per link — but the OS is still polled at least
        // every `POLL_EVERY` batches, so I/O and timers are never starved.
        if !self.ready.is_empty() && self.batches_without_poll < POLL_EVERY {
            self.batches_without_poll += 1;
            self.drain_remote();
            if let Some(reason) = self.run_batch(false) {
                return Ok(reason);
            }
        }
        self.batches_without_poll = 0;
        // The clock is read only where it is needed: before the wait for a
        // deadline, or for an armed timer that bounds a wait that is not
        // already zero; after it for the timers and the deadline check (that
        // reading also serves the next wait). A loop with neither (a server
        // waiting on sockets) reads no clock at all, and a zero-timeout poll
        // with armed timers reads it once.
        let poll_once = timeout == Some(Duration::ZERO);
        let mut now = match timeout {
            Some(t) if !t.is_zero() => Some(Instant::now()),
            _ => None,
        };
        let deadline = match (timeout, now) {
            (Some(t), Some(now)) => now.checked_add(t),
            _ => None,
        };
        loop {
            let mut wait = if !self.ready.is_empty() || poll_once {
                Some(Duration::ZERO)
            } else {
                deadline.zip(now).map(|(d, now)| d.saturating_duration_since(now))
            };
            if wait != Some(Duration::ZERO) {
                if let Some(next) = self.subsystems.timers.queue.next_deadline() {
                    let now = *now.get_or_insert_with(Instant::now);
                    let until = next.saturating_duration_since(now);
                    wait = Some(wait.map_or(until, |w| w.min(until)));
                }
            }
            let mut completions = std::mem::take(&mut self.completions);
            let (id, ops) = (self.id, &mut self.ops);
            let polled = self.sys.poll(
                wait,
                &mut completions,
                &mut |token| match ops.get_mut(Key::from_u64(token, id)) {
                    Some(Op::Io(op)) => op.parked_request(),
                    Some(Op::Poll(op)) => Some(op.request()),
                    _ => None,
                },
            );
            let mut activity = false;
            if !completions.is_empty() {
                for c in completions.drain(..) {
                    self.ready.push_back(Ready {
                        op: Key::from_u64(c.token, self.id),
                        outcome: Outcome::Sys(c),
                    });
                }
            }
            self.completions = completions;
            activity |= polled?;
            if let Some(code) = self.sys.take_quit() {
                // If a callback of this batch panics, the panic goes first and
                // the quit waits in the queue for the next call.
                let requeue = QuitOnUnwind(code);
                self.dispatch();
                std::mem::forget(requeue);
                #[cfg(windows)]
                if !self.panics.is_empty() {
                    sys::post_quit(code);
                }
                return Ok(ExitReason::Quit(code));
            }
            self.drain_pool();
            self.drain_remote();
            if deadline.is_some() || self.subsystems.timers.queue.len() != 0 {
                let at = Instant::now();
                now = Some(at);
                self.expire_timers(at);
            }

            if let Some(reason) = self.run_batch(activity) {
                return Ok(reason);
            }
            if poll_once || deadline.zip(now).is_some_and(|(d, now)| now >= d) {
                return Ok(ExitReason::Timeout);
            }
        }
    }

    /// Runs the queued batch, then says whether `process_events` is done:
    /// `Exited` if a callback asked to exit, `Idle` if a callback ran (or the
    /// backend had `activity`: Windows dispatched window messages),
    /// `OutOfWaiters` if nothing is left at all; `None` to go on waiting.
    #[inline]
    fn run_batch(&mut self, activity: bool) -> Option<ExitReason> {
        let ran = !self.ready.is_empty() && self.dispatch();
        if !self.panics.is_empty() {
            // A callback panicked: return, so that the panic is resumed.
            return Some(ExitReason::Idle);
        }
        if self.exit_requested {
            self.exit_requested = false;
            return Some(ExitReason::Exited);
        }
        if ran || activity {
            return Some(ExitReason::Idle);
        }
        self.nothing_left()
    }

    /// With no waiter and nothing queued: `Quit` for a `WM_QUIT` still in
    /// the thread's queue, `OutOfWaiters` unless the thread owns a window
    /// whose messages keep the loop going (WinAPI); `None` to go on.
    fn nothing_left(&mut self) -> Option<ExitReason> {
        if !self.ready.is_empty() || self.waiter_count() != 0 {
            return None;
        }
        if let Some(code) = self.sys.take_queued_quit() {
            return Some(ExitReason::Quit(code));
        }
        if self.sys.keeps_loop_alive() {
            return None;
        }
        Some(ExitReason::OutOfWaiters)
    }

    /// Runs the callbacks queued before this call; returns whether any ran.
    /// Records queued while they run wait for the next batch, so a callback that
    /// keeps re-arming itself cannot starve the wait for new events.
    fn dispatch(&mut self) -> bool {
        let mut ran = false;
        let n = self.ready.len();
        for _ in 0..n {
            let Some(Ready { op, outcome }) = self.ready.pop_front() else {
                break;
            };
            // A one-shot operation is out of every table before its callback
            // runs, and nothing of the driver is taken apart during
            // dispatch, so a panic may unwind from here to the caller of
            // `process_events`; the records behind it stay queued.
            ran |= self.complete(op, outcome);
            if !self.panics.is_empty() {
                // A repeating callback panicked (kept by `guarded`).
                return true;
            }
        }
        ran
    }

    /// Finishes one operation; returns whether a user callback ran.
    #[inline]
    fn complete(&mut self, key: Key, outcome: Outcome) -> bool {
        // I/O, the common case, is taken out of the table in the look-up
        // that finds it.
        if matches!(outcome, Outcome::Sys(_) | Outcome::Failed(_)) {
            if let Some(Op::Io(op)) = self.ops.remove_if(key, |op| matches!(op, Op::Io(_))) {
                return self.complete_io(key, op, outcome);
            }
        }
        self.complete_other(key, outcome)
    }

    /// Finishes an operation that is not I/O (or an I/O outcome whose
    /// operation is gone).
    #[inline(never)]
    fn complete_other(&mut self, key: Key, outcome: Outcome) -> bool {
        if let Outcome::Timer { fired, epoch, callback } = outcome {
            return self.complete_timer(key, fired, epoch, callback);
        }
        // Otherwise the op's kind picks the subsystem that completes it; the
        // op itself is taken out of the table by that subsystem.
        match self.ops.get(key) {
            Some(Op::Io(_)) => unreachable!("taken above"),
            Some(Op::Event(_)) => self.complete_event(key),
            Some(Op::Dns(_)) => self.complete_dns(key, outcome),
            Some(Op::ProcessWait(_)) => self.complete_process_wait(key),
            Some(Op::File(_)) => self.complete_file(key, outcome),
            Some(Op::Walk(_)) => self.complete_walk(key, outcome),
            Some(Op::Poll(_)) => self.complete_poll(key, outcome),
            Some(Op::Remote(_)) => {
                if let Some(Op::Remote(f)) = self.ops.remove(key) {
                    f(self);
                }
                true
            }
            Some(Op::Internal(_)) => match self.ops.remove(key) {
                Some(Op::Internal(f)) => f(self),
                _ => false,
            },
            // Cancelled (or its handle released) after the record was queued.
            None => false,
        }
    }

    /// Queues an outcome for an operation.
    pub(crate) fn push_ready(&mut self, op: Key, outcome: Outcome) {
        self.ready.push_back(Ready { op, outcome });
    }

    /// Stores a callback-carrying operation and returns its key.
    pub(crate) fn add_op(&mut self, op: Op) -> Key {
        self.ops.insert(op)
    }

    /// Runs `job` on the worker pool; its output completes operation `op`.
    pub(crate) fn submit_job(&mut self, op: Key, job: impl FnOnce() -> crate::pool::JobOutput + Send + 'static) {
        let waker = &self.sys;
        let pool = self.pool.get_or_insert_with(|| crate::pool::Pool::new(waker.waker()));
        pool.submit(op.to_u64(), job);
        if !pool.has_threads() {
            self.push_ready(op, Outcome::Failed(Error::new(crate::Status::ResourceExhausted)));
        }
    }

    /// Queues the outcomes of finished worker-pool jobs.
    #[inline]
    fn drain_pool(&mut self) {
        if self.pool.is_some() {
            self.drain_pool_jobs();
        }
    }

    #[inline(never)]
    fn drain_pool_jobs(&mut self) {
        let Some(pool) = &self.pool else {
            return;
        };
        let mut done = std::mem::take(&mut self.jobs_done);
        pool.take_done(&mut done);
        if done.is_empty() {
            self.jobs_done = done;
            return;
        }
        for (token, output) in done.drain(..) {
            self.ready.push_back(Ready {
                op: Key::from_u64(token, self.id),
                outcome: Outcome::Job(output),
            });
        }
        self.jobs_done = done;
    }

    /// Takes what other threads sent; most turns find nothing, and cost a
    /// load.
    #[inline]
    fn drain_remote(&mut self) {
        if self.remote.has_messages() {
            self.drain_remote_messages();
        }
    }

    #[inline(never)]
    fn drain_remote_messages(&mut self) {
        self.remote.take_messages(&mut self.inbox);
        if self.inbox.is_empty() {
            return;
        }
        let mut inbox = std::mem::take(&mut self.inbox);
        for msg in inbox.drain(..) {
            match msg {
                Message::Trigger { event, notify_all } => {
                    self.trigger_event(event, notify_all);
                }
                Message::Run(f) => {
                    let key = self.add_op(Op::Remote(f));
                    self.push_ready(key, Outcome::Remote);
                }
                Message::RunInternal(f) => {
                    let key = self.add_op(Op::Internal(f));
                    self.push_ready(key, Outcome::Remote);
                }
                Message::Exit => self.exit_requested = true,
            }
        }
        self.inbox = inbox;
    }

    // ---- reference counting and user data, the same for every handle kind ----

    fn refs_mut(&mut self, kind: HandleKind, key: Key) -> Option<&mut u32> {
        self.tables.refs_mut(kind, key)
    }

    /// Whether `h` names a live resource of this driver.
    pub fn is_valid<H: Handle>(&mut self, h: H) -> bool {
        self.refs_mut(h.kind(), h.key()).is_some()
    }

    /// Adds a reference to `h`.
    pub fn add_ref<H: Handle>(&mut self, h: H) -> Result<()> {
        let refs = self.refs_mut(h.kind(), h.key()).ok_or_else(Error::invalid_handle)?;
        *refs += 1;
        Ok(())
    }

    /// Drops a reference to `h`. At zero the OS resource is closed, pending
    /// operations are cancelled (their callbacks never run) and the handle
    /// becomes invalid. Returns whether the resource still lives; a stale handle
    /// (a double release) gives `Err(InvalidHandle)`.
    pub fn release_ref<H: Handle>(&mut self, h: H) -> Result<bool> {
        let refs = self.refs_mut(h.kind(), h.key()).ok_or_else(Error::invalid_handle)?;
        *refs -= 1;
        if *refs > 0 {
            return Ok(true);
        }
        let key = h.key();
        self.destroy(h.kind(), key);
        self.forget_user_data(h.kind(), key);
        Ok(false)
    }

    /// Drops the user data of a handle that is going away.
    pub(crate) fn forget_user_data(&mut self, kind: HandleKind, key: Key) {
        if !self.user_data.is_empty() {
            self.user_data.remove(&(kind, key));
        }
    }

    /// Attaches user data to `h`, replacing (and dropping) what was there.
    /// Dropped with the handle.
    pub fn set_user_data<H: Handle, T: 'static>(&mut self, h: H, data: T) -> Result<()> {
        self.refs_mut(h.kind(), h.key()).ok_or_else(Error::invalid_handle)?;
        self.user_data.insert((h.kind(), h.key()), Box::new(data));
        Ok(())
    }

    /// The user data of `h`, if it is set and of type `T`.
    pub fn user_data<H: Handle, T: 'static>(&mut self, h: H) -> Option<&mut T> {
        self.refs_mut(h.kind(), h.key())?;
        self.user_data.get_mut(&(h.kind(), h.key()))?.downcast_mut::<T>()
    }

    /// What is still open: a count of live handles and pending operations per kind.
    pub fn leak_report(&self) -> LeakReport {
        LeakReport::of(&self.tables, self.pending_ops())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.remote.shut_down();
        let report = self.leak_report();
        if !report.is_empty() {
            eprintln!(
                "eventcore: driver {} dropped with live resources: {report}; closing them",
                self.id
            );
        }
        // Close sockets through the backend first (it must forget their
        // registrations before the descriptors are closed); the tables then drop
        // the callbacks and buffers.
        self.close_all();
        self.drop_signals_and_processes();
        self.close_watches();
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.id)
            .field("backend", &self.backend)
            .field("waiters", &self.waiter_count())
            .finish_non_exhaustive()
    }
}

impl Driver {
    fn drop_signals_and_processes(&mut self) {
        self.drop_orphans();
        if let Some(source) = self.subsystems.signals.source.take() {
            if let Some(src) = source.src {
                self.sys.remove_source(src);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Driver;

    /// A handle whose slot's generation ran out cannot name the resource
    /// that would otherwise reuse the slot: the slot is retired.
    #[test]
    fn a_stale_handle_stays_stale_when_its_slot_runs_out_of_generations() {
        let mut drv = Driver::new().unwrap();
        let first = drv.timers().create();
        drv.release_ref(first).unwrap();
        // As if the slot had been reused 2^32 - 1 times since.
        drv.tables.timers.set_generation(first.0.index, u32::MAX);
        let last = drv.timers().create();
        assert_eq!(last.0.index, first.0.index);
        drv.release_ref(last).unwrap();
        let next = drv.timers().create();
        assert!(!drv.is_valid(first) && !drv.is_valid(last), "stale handles stay stale");
        assert!(drv.release_ref(first).is_err() && drv.release_ref(last).is_err());
        assert!(drv.is_valid(next));
        assert!(!drv.release_ref(next).unwrap());
    }

    /// Every pending operation is one slot of `ops` and every finished one a
    /// ready record: keep them small (a `SockAddr` inline once made an op
    /// 248 bytes and a request 160).
    #[test]
    fn operation_records_stay_small() {
        use std::mem::size_of;
        // A `bytes::Bytes` buffer is kept inline: 16 bytes more per op.
        let limit = if cfg!(feature = "bytes") { 144 } else { 128 };
        assert!(size_of::<super::Op>() <= limit, "Op is {} bytes", size_of::<super::Op>());
        assert!(
            size_of::<super::Ready>() <= 96,
            "Ready is {} bytes",
            size_of::<super::Ready>()
        );
        assert!(
            size_of::<crate::sys::Request>() <= 40,
            "Request is {} bytes",
            size_of::<crate::sys::Request>()
        );
        assert!(
            size_of::<crate::sys::Completion>() <= 72,
            "Completion is {} bytes",
            size_of::<crate::sys::Completion>()
        );
    }
}
