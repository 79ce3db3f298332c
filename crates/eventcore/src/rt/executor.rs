//! The per-thread executor: tasks, wakers, `block_on`, and the door for
//! `Send` futures from other threads.
//!
//! One [`Executor`] owns one [`Driver`]. Its loop alternates between polling
//! the tasks that were woken and one batch of [`Driver::process_events`]:
//! without a woken task it waits in the driver as long as it takes; with one,
//! it only polls the driver (a zero timeout), so I/O completions are never
//! starved by busy tasks.
//!
//! **Tasks** live in a slab of slots, addressed by a key (slot index and the
//! slot's generation). A task is one `Rc::pin` allocation, [`TaskCell`]: its
//! join state, which the [`JoinHandle`] shares, and its future, polled where
//! it lies and dropped in place when the task finishes or is cancelled (the
//! pin projection is `sys::pin_cell`). In the steady state a spawn allocates
//! that block and nothing else; see [`spawn`] for what the steady state is.
//!
//! **Wakers** are `Arc`s of a small record (task key + the executor's shared
//! queue), built with [`std::task::Wake`], so they are `Send + Sync` as the
//! standard library requires. There is one per slot, made by the slot's
//! first task and kept for the next ones while nobody else holds a clone
//! (see [`TaskWaker`]); `block_on` has one of its own, made with the
//! executor. Waking pushes the task's key onto a mutex-guarded
//! queue. A wake from the loop's own thread needs nothing else: the loop looks
//! at the queue before it waits, and a wake from inside a driver callback makes
//! `process_events` return anyway (a callback ran). A wake from any other
//! thread also sends an empty closure through the driver's [`Remote`]
//! (`run_in_owner_thread`), which wakes the driver's wait — but only for the
//! first key since the loop last emptied the queue.
//!
//! **Driver access.** Futures reach the driver through the executor's
//! [`Core`], an `Rc` held by every handle and every started operation, and
//! found through a thread-local while the executor runs. The driver lives in a
//! `RefCell`: it is borrowed for the length of one driver call and never across
//! user code. Driver callbacks, which receive `&mut Driver` while the loop holds
//! that borrow, only store results into shared slots and wake tasks.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::sys::pin_cell::PinCell;
use crate::{Driver, Error, ExitReason, Handle, LeakReport, Remote, Result, Status};

/// A task as its slot holds it (see [`TaskCell`]).
type TaskRef = Pin<Rc<dyn Task>>;
/// A task sent from another thread: makes its future on the executor's thread.
type Injected = Box<dyn FnOnce() -> TaskRef + Send>;
type Deferred = Box<dyn FnOnce(&mut Driver)>;

/// The key of `block_on`'s own future in the wake queue.
const MAIN: u64 = u64::MAX;

/// How long the executor's keep-alive timer waits while it parks (see
/// [`Core::park`]); when it expires the executor simply parks again.
const PARK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Transfers a batch of task polls may finish at once, without the driver
/// (a stream's `futures-io` reads and flushes that the socket answers
/// immediately); after that they go through the driver, which makes the
/// task wait for the next turn — so a task that reads or writes in a loop
/// on a stream that is always ready still lets the other tasks and the
/// driver run (tokio's cooperative budget does the same).
const SYNC_BUDGET: u32 = 128;

static NEXT_EXECUTOR_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The executor whose `block_on` (or `turn`) runs on this thread.
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    /// The id of that executor (0 = none): wakers compare it with their own.
    static RUNNING: Cell<u64> = const { Cell::new(0) };
}

// ------------------------------------------------------------------ wakers

/// What wakers and [`Spawner`]s on any thread share with the executor.
struct Shared {
    id: u64,
    state: Mutex<SharedState>,
    /// Whether `state` holds woken keys or injected work: set under the
    /// lock by whoever queues, cleared under it by the loop that takes them,
    /// so the loop looks without locking (most turns find nothing there:
    /// its own thread's wake-ups go to the core's local queue).
    filled: AtomicBool,
    remote: Remote,
}

struct SharedState {
    /// Keys of woken tasks, in the order they were woken.
    woken: Vec<u64>,
    /// Work sent by a [`Spawner`], not yet turned into tasks.
    injected: Vec<Injected>,
    /// The executor is gone: spawning fails.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SharedState> {
        // Every critical section is a push, a swap or a flag: a panic cannot
        // leave the state inconsistent, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues work with `push` and, if the loop may be waiting in the driver
    /// on another thread, wakes it.
    fn notify(&self, push: impl FnOnce(&mut SharedState)) {
        let was_empty = {
            let mut s = self.lock();
            let was_empty = s.woken.is_empty() && s.injected.is_empty();
            push(&mut s);
            self.filled.store(true, Ordering::Release);
            was_empty
        };
        if was_empty && RUNNING.with(Cell::get) != self.id {
            // The loop empties the queue before it waits, so only the first
            // item since then needs a wake-up. The closure is zero-sized (no
            // allocation); running it makes `process_events` return. If the
            // driver is gone there is nobody left to wake.
            let _ = self.remote.run_in_owner_thread(|_| {});
        }
    }
}

/// A task's waker: its key and the queue to push it onto.
///
/// One per task slot, kept when the slot is freed and reused by the slot's
/// next task when no clone of it is left (`Arc::get_mut`: no other strong or
/// weak reference, on any thread); only then is `key` rewritten, through
/// that exclusive borrow, so a waker never changes under a holder of it.
struct TaskWaker {
    key: u64,
    /// Set while the key is in the queue, so a task is queued at most once.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.key == MAIN && RUNNING.with(Cell::get) == self.shared.id {
            // `block_on`'s own future, woken on the thread that runs it:
            // the loop reads the flag itself, no queue needed.
            return;
        }
        // On the thread whose loop is running this executor (the common
        // case: a driver callback completing a task's operation), the key
        // goes to the core's own queue: no lock, no wake-up.
        // `try_`: a waker may run while the thread's executor is being
        // swapped or dropped; it then takes the shared queue.
        let key = self.key;
        let local = CURRENT.with(|c| match c.try_borrow().as_deref() {
            Ok(Some(core)) if core.shared.id == self.shared.id => match core.local_woken.try_borrow_mut() {
                Ok(mut queue) => {
                    queue.push(key);
                    true
                }
                Err(_) => false,
            },
            _ => false,
        });
        if local {
            return;
        }
        self.shared.notify(|s| s.woken.push(self.key));
    }
}

// ------------------------------------------------------------------- tasks

/// One spawned task: its join state (the head, which the [`JoinHandle`]
/// reads) and its future (the body, pinned in place and dropped — set to
/// `None` — when the task finishes or is cancelled), in one `Rc::pin`
/// allocation shared by the slot and the handle.
type TaskCell<F> = PinCell<RefCell<JoinState<<F as Future>::Output>>, Option<F>>;

/// What the executor does with a task, whatever its future's type.
trait Task {
    /// Polls the future once, inside `catch_unwind`. `Ready` once the task
    /// is done: its output (or panic payload) is in its join state, its
    /// handle has been woken, and its future has been dropped.
    fn poll_task(self: Pin<&Self>, cx: &mut Context<'_>) -> Poll<()>;

    /// Drops the future of an unfinished task (aborted, its executor
    /// dropped, or its poll unwound) and tells its handle. Nothing if the
    /// task has finished, or if its future is being polled (re-entrant).
    fn cancel(self: Pin<&Self>);
}

/// What a [`JoinHandle`] reads, whatever its task's future's type.
trait Join<T> {
    fn state(&self) -> &RefCell<JoinState<T>>;
}

impl<T, B> Join<T> for PinCell<RefCell<JoinState<T>>, B> {
    fn state(&self) -> &RefCell<JoinState<T>> {
        self.head()
    }
}

impl<F: Future> Task for TaskCell<F> {
    fn poll_task(self: Pin<&Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(mut body) = self.try_borrow_mut() else {
            // Polled from inside its own poll: the executor never does.
            return Poll::Pending;
        };
        let Some(future) = body.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        // A panic stops at the task: it is reported through the handle and
        // the executor goes on with the other tasks.
        let outcome = match catch_poll(future, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(outcome) => outcome,
        };
        let waker = {
            let mut s = self.head().borrow_mut();
            match outcome {
                Ok(output) => s.output = Some(output),
                Err(payload) => s.panic = Some(payload),
            }
            s.finished = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        // Dropped in place, after the output is out (as a future that ends
        // drops its locals last).
        body.set(None);
        Poll::Ready(())
    }

    fn cancel(self: Pin<&Self>) {
        let Some(mut body) = self.try_borrow_mut() else {
            return;
        };
        if body.is_none() {
            return;
        }
        let waker = {
            let mut s = self.head().borrow_mut();
            // Finished, with the future still there: a poll that unwound
            // after the output was stored (in the handle's waker).
            if s.finished {
                None
            } else {
                s.dropped = true;
                s.waker.take()
            }
        };
        // Dropped in place; its handles release their driver resources.
        body.set(None);
        drop(body);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Polls `future` inside `catch_unwind`: `Ready(Err(payload))` if it panicked.
fn catch_poll<F: Future + ?Sized>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<std::thread::Result<F::Output>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(cx))) {
        Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(payload) => Poll::Ready(Err(payload)),
    }
}

/// A task's one allocation: the join state and the future together.
fn new_task<F: Future>(future: F) -> Pin<Rc<TaskCell<F>>> {
    Rc::pin(PinCell::new(
        RefCell::new(JoinState {
            output: None,
            panic: None,
            output_gone: false,
            waker: None,
            finished: false,
            dropped: false,
        }),
        Some(future),
    ))
}

enum TaskState {
    Free,
    Idle(TaskRef),
    /// Taken out for polling; `aborted` if its JoinHandle aborted it meanwhile.
    Running {
        aborted: bool,
    },
}

struct TaskSlot {
    gen: u32,
    state: TaskState,
    /// The slot's waker: kept while the slot is free, for its next task.
    waker: Option<Arc<TaskWaker>>,
}

#[derive(Default)]
struct Tasks {
    slots: Vec<TaskSlot>,
    free: Vec<u32>,
}

fn task_key(index: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(index)
}

fn split_key(key: u64) -> (usize, u32) {
    ((key & 0xffff_ffff) as usize, (key >> 32) as u32)
}

impl Tasks {
    fn slot(&mut self, key: u64) -> Option<&mut TaskSlot> {
        let (index, gen) = split_key(key);
        self.slots.get_mut(index).filter(|s| s.gen == gen)
    }

    /// Frees a slot for reuse (its task already taken out of it), unless its
    /// generation is used up: a slot is retired rather than let its
    /// generation wrap, so a stale task key (a waker of a finished task) can
    /// never reach a later task. A freed slot keeps its waker for its next
    /// task (see [`TaskWaker`]).
    fn free(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        debug_assert!(!matches!(slot.state, TaskState::Idle(_)), "a task dropped under the borrow");
        slot.state = TaskState::Free;
        if let Some(next) = slot.gen.checked_add(1) {
            slot.gen = next;
            self.free.push(index as u32);
        } else {
            slot.waker = None;
        }
    }
}

// ------------------------------------------------------------------- owned

/// A driver handle owned by an `rt` value: released when the value is
/// dropped, which cancels what is still pending on it (now, or after the
/// driver callback that is running, see [`Core::run_or_defer`]).
pub(crate) struct Owned<H: Handle + 'static> {
    pub(crate) core: Rc<Core>,
    pub(crate) handle: H,
}

impl<H: Handle + 'static> Owned<H> {
    pub(crate) fn new(core: Rc<Core>, handle: H) -> Owned<H> {
        Owned { core, handle }
    }
}

impl<H: Handle + 'static> Drop for Owned<H> {
    fn drop(&mut self) {
        self.core.release(self.handle);
    }
}

impl<H: Handle + 'static> std::fmt::Debug for Owned<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handle.fmt(f)
    }
}

// -------------------------------------------------------------------- core

/// The executor's state that handles and futures share: the driver, the
/// tasks, and the queue wakers push onto.
pub(crate) struct Core {
    driver: RefCell<Driver>,
    tasks: RefCell<Tasks>,
    shared: Arc<Shared>,
    /// `block_on`'s waker (key [`MAIN`]), made once: a `block_on` costs no
    /// allocation of its own.
    main: Arc<TaskWaker>,
    /// The loop's batch of woken keys, kept between `block_on`s and turns
    /// with its capacity (it trades places with the queue's vector).
    batch: Cell<Vec<u64>>,
    /// What is left of [`SYNC_BUDGET`] in this batch of task polls.
    sync_budget: Cell<u32>,
    /// Keys of tasks woken on this thread while this executor runs (see
    /// `TaskWaker::wake_by_ref`); other threads use `shared`.
    local_woken: RefCell<Vec<u64>>,
    /// Driver work that came up while the driver was borrowed (a handle
    /// dropped from inside a driver callback); run before the next poll.
    deferred: RefCell<Vec<Deferred>>,
    /// `WM_QUIT` seen by the driver (Windows), and who waits for it.
    quit: RefCell<QuitState>,
    /// A panic caught in a turn the thread's message loop ran (Windows,
    /// attached): resumed by the next `Executor` call.
    #[cfg_attr(not(windows), allow(dead_code))]
    pump_panic: RefCell<Option<Box<dyn std::any::Any + Send>>>,
    /// A turn is running (the message loop must not start another inside it).
    #[cfg_attr(not(windows), allow(dead_code))]
    in_turn: Cell<bool>,
}

#[derive(Default)]
struct QuitState {
    code: Option<i32>,
    wakers: Vec<Waker>,
}

impl Core {
    /// Takes one unit of the batch's budget for a transfer finished at once;
    /// `false` once it is spent (the transfer then goes through the driver).
    pub(crate) fn take_sync_budget(&self) -> bool {
        let left = self.sync_budget.get();
        if left == 0 {
            return false;
        }
        self.sync_budget.set(left - 1);
        true
    }

    /// Runs `f` with the driver. Panics if the driver is already borrowed,
    /// which only happens when this is called from inside a driver callback
    /// (that callback already has the `&mut Driver` to use).
    #[inline]
    #[track_caller]
    pub(crate) fn with_driver<R>(&self, f: impl FnOnce(&mut Driver) -> R) -> R {
        let mut drv = self.driver.try_borrow_mut().expect(
            "eventcore::rt: the driver is in use: an async operation was started from inside a \
             driver callback (use the callback's `&mut Driver` there)",
        );
        f(&mut drv)
    }

    /// Runs `f` with the driver now, or — if the driver is borrowed (a drop
    /// from inside a driver callback) — right after the current driver call.
    pub(crate) fn run_or_defer(&self, f: impl FnOnce(&mut Driver) + 'static) {
        match self.driver.try_borrow_mut() {
            Ok(mut drv) => f(&mut drv),
            Err(_) => self.deferred.borrow_mut().push(Box::new(f)),
        }
    }

    /// Drops one reference to `h` (now or deferred, see [`Core::run_or_defer`]).
    pub(crate) fn release<H: Handle + 'static>(&self, h: H) {
        self.run_or_defer(move |drv| {
            // A handle the driver already closed (a pipe closed by `close`)
            // is InvalidHandle here: nothing left to release.
            let _ = drv.release_ref(h);
        });
    }

    #[inline]
    fn run_deferred(&self) {
        if self.deferred.borrow().is_empty() {
            return;
        }
        self.run_deferred_work();
    }

    #[inline(never)]
    fn run_deferred_work(&self) {
        loop {
            let work = std::mem::take(&mut *self.deferred.borrow_mut());
            if work.is_empty() {
                return;
            }
            let mut drv = self.driver.borrow_mut();
            for f in work {
                f(&mut drv);
            }
        }
    }

    /// One turn: the woken tasks, one batch of driver events (waiting at
    /// most `timeout`, or not at all if tasks are runnable), the tasks that
    /// woke.
    fn turn_once(self: &Rc<Core>, timeout: Option<Duration>) -> Result<ExitReason> {
        let _enter = Enter::new(self);
        self.in_turn.set(true);
        struct Done<'a>(&'a Cell<bool>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _done = Done(&self.in_turn);
        let mut batch = self.batch.take();
        self.run_deferred();
        self.take_woken(&mut batch);
        self.run_batch(&mut batch);
        self.run_deferred();
        let timeout = if self.has_woken() { Some(Duration::ZERO) } else { timeout };
        let r = self.driver.borrow_mut().process_events(timeout);
        if let Ok(ExitReason::Quit(code)) = r {
            self.quit(code);
        }
        self.run_deferred();
        self.take_woken(&mut batch);
        self.run_batch(&mut batch);
        self.run_deferred();
        self.batch.set(batch);
        r
    }

    /// Puts `task` into a free slot (or a new one) and wakes it. In the
    /// steady state — a freed slot whose waker has no clone left — this
    /// allocates nothing.
    fn spawn_task(&self, task: TaskRef) -> u64 {
        let mut tasks = self.tasks.borrow_mut();
        let index = match tasks.free.pop() {
            Some(i) => i as usize,
            None => {
                tasks.slots.push(TaskSlot {
                    gen: 0,
                    state: TaskState::Free,
                    waker: None,
                });
                tasks.slots.len() - 1
            }
        };
        let slot = &mut tasks.slots[index];
        let key = task_key(index as u32, slot.gen);
        // The slot's waker, if nobody else holds it any more (no clone of it
        // is alive on any thread, so none can wake the old key through it).
        let recycled = slot.waker.as_mut().and_then(Arc::get_mut).map(|w| {
            w.key = key;
            *w.queued.get_mut() = false;
        });
        if recycled.is_none() {
            slot.waker = Some(Arc::new(TaskWaker {
                key,
                queued: AtomicBool::new(false),
                shared: self.shared.clone(),
            }));
        }
        slot.state = TaskState::Idle(task);
        let waker = slot.waker.clone().expect("set above");
        drop(tasks);
        waker.wake_by_ref();
        key
    }

    /// Polls one task, if its key is still current.
    fn run_task(&self, key: u64) {
        let (task, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.slot(key) else {
                return;
            };
            match std::mem::replace(&mut slot.state, TaskState::Running { aborted: false }) {
                TaskState::Idle(t) => (t, slot.waker.clone().expect("a live task has a waker")),
                other => {
                    slot.state = other;
                    return;
                }
            }
        };
        waker.queued.store(false, Ordering::Release);
        let waker = Waker::from(waker);
        // If the poll unwinds (the task's own panics are caught: this is a
        // panic while its future is dropped, or in a waker), its slot is
        // freed on the way out (and the panic goes on through `block_on`).
        let guard = FreeOnUnwind {
            core: self,
            key,
            task: &task,
        };
        let done = task.as_ref().poll_task(&mut Context::from_waker(&waker)).is_ready();
        std::mem::forget(guard);
        drop(waker);
        let mut tasks = self.tasks.borrow_mut();
        let (index, _) = split_key(key);
        let aborted = matches!(tasks.slots[index].state, TaskState::Running { aborted: true });
        if done || aborted {
            tasks.free(index);
            drop(tasks);
            // Outside the borrow: the future's handles release their driver
            // resources, and may spawn or abort other tasks; so may the
            // output of a detached task, dropped with the last `Rc`.
            if !done {
                task.as_ref().cancel();
            }
            drop(task);
        } else {
            tasks.slots[index].state = TaskState::Idle(task);
        }
    }

    /// Drops a task's future (see [`JoinHandle::abort`]).
    fn abort(&self, key: u64) {
        let task = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.slot(key) else {
                return;
            };
            match &mut slot.state {
                TaskState::Running { aborted } => {
                    *aborted = true;
                    return;
                }
                TaskState::Free => return,
                TaskState::Idle(_) => {}
            }
            let TaskState::Idle(t) = std::mem::replace(&mut slot.state, TaskState::Free) else {
                unreachable!("checked above")
            };
            let (index, _) = split_key(key);
            tasks.free(index);
            t
        };
        task.as_ref().cancel();
        drop(task);
    }

    /// Moves the woken keys into `batch` (empty, keeping both vectors'
    /// capacity); turns injected work into tasks (which wake themselves, so
    /// they run in the next round).
    fn take_woken(&self, batch: &mut Vec<u64>) {
        {
            let mut local = self.local_woken.borrow_mut();
            if !local.is_empty() {
                std::mem::swap(&mut *local, batch);
            }
        }
        if !self.shared.filled.load(Ordering::Acquire) {
            return;
        }
        let injected = {
            let mut s = self.shared.lock();
            self.shared.filled.store(false, Ordering::Relaxed);
            batch.append(&mut s.woken);
            if s.injected.is_empty() {
                return;
            }
            std::mem::take(&mut s.injected)
        };
        for make in injected {
            self.spawn_task(make());
        }
    }

    /// Polls every task in `batch`, emptying it; returns whether `block_on`'s
    /// own future was among them.
    #[inline]
    fn run_batch(&self, batch: &mut Vec<u64>) -> bool {
        self.sync_budget.set(SYNC_BUDGET);
        // `block_on`'s own future alone, woken by its flag, leaves it empty.
        if batch.is_empty() {
            return false;
        }
        self.run_tasks(batch)
    }

    fn run_tasks(&self, batch: &mut Vec<u64>) -> bool {
        let mut main = false;
        for key in batch.drain(..) {
            if key == MAIN {
                main = true;
            } else {
                self.run_task(key);
            }
        }
        main
    }

    fn has_woken(&self) -> bool {
        !self.local_woken.borrow().is_empty() || self.shared.filled.load(Ordering::Acquire)
    }

    /// One batch of driver events: a poll when tasks are runnable, else a wait.
    fn process(&self, busy: bool) {
        let timeout = if busy { Some(Duration::ZERO) } else { None };
        let r = self.driver.borrow_mut().process_events(timeout);
        let r = match r {
            Ok(ExitReason::OutOfWaiters) if !busy => self.park(),
            r => r,
        };
        match r {
            Ok(ExitReason::Quit(code)) => self.quit(code),
            Ok(_) => {}
            Err(e) => process_events_failed(e),
        }
    }

    /// The thread's message queue delivered `WM_QUIT` (Windows).
    #[cold]
    fn quit(&self, code: i32) {
        let wakers = {
            let mut q = self.quit.borrow_mut();
            q.code = Some(code);
            std::mem::take(&mut q.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Nothing in the driver can complete and no task is runnable: only
    /// another thread (a cross-thread waker, a [`Spawner`], a [`Remote`])
    /// can make progress now. An armed timer keeps the driver's wait alive
    /// until such a wake-up arrives (a future that nobody ever wakes blocks
    /// forever, as on any executor).
    #[cold]
    #[inline(never)]
    fn park(&self) -> Result<ExitReason> {
        let mut drv = self.driver.borrow_mut();
        let keep_alive = drv.timers().create();
        let _ = drv.timers().set(keep_alive, PARK_TIMEOUT, Duration::ZERO);
        let r = drv.process_events(None);
        let _ = drv.release_ref(keep_alive);
        r
    }

    /// Drops every task (the executor is going away).
    fn drop_tasks(&self) {
        loop {
            let cancelled: Vec<TaskRef> = {
                let mut tasks = self.tasks.borrow_mut();
                let mut out = Vec::new();
                for index in 0..tasks.slots.len() {
                    if let TaskState::Idle(_) = tasks.slots[index].state {
                        let TaskState::Idle(t) = std::mem::replace(&mut tasks.slots[index].state, TaskState::Free)
                        else {
                            unreachable!()
                        };
                        tasks.free(index);
                        out.push(t);
                    }
                }
                out
            };
            if cancelled.is_empty() {
                return;
            }
            // Dropping a future may spawn another: loop until none is left.
            for task in &cancelled {
                task.as_ref().cancel();
            }
            drop(cancelled);
            self.run_deferred();
        }
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("executor", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// The driver's wait failed: the executor cannot go on.
#[cold]
#[inline(never)]
fn process_events_failed(e: crate::Error) -> ! {
    panic!("eventcore::rt: process_events failed: {e}")
}

/// Frees a task's slot, and drops its future if it is still there, if its
/// poll unwinds.
struct FreeOnUnwind<'a> {
    core: &'a Core,
    key: u64,
    task: &'a TaskRef,
}

impl Drop for FreeOnUnwind<'_> {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.core.tasks.try_borrow_mut() {
            let (index, _) = split_key(self.key);
            tasks.free(index);
        }
        self.task.as_ref().cancel();
    }
}

/// Makes `core` the current executor of this thread until dropped.
struct Enter {
    prev: Option<Rc<Core>>,
    prev_running: u64,
}

impl Enter {
    fn new(core: &Rc<Core>) -> Enter {
        Enter {
            prev: CURRENT.with(|c| c.replace(Some(core.clone()))),
            prev_running: RUNNING.with(|r| r.replace(core.shared.id)),
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
        RUNNING.with(|r| r.set(self.prev_running));
    }
}

/// The executor running on this thread; panics outside one.
#[track_caller]
pub(crate) fn current() -> Rc<Core> {
    try_current().expect(
        "eventcore::rt: no executor is running on this thread (call this inside \
         Executor::block_on)",
    )
}

fn try_current() -> Option<Rc<Core>> {
    CURRENT.with(|c| c.borrow().clone())
}

// ---------------------------------------------------------------- executor

/// A single-threaded executor over a [`Driver`].
///
/// It runs one future to completion with [`Executor::block_on`], and with it
/// every task [`spawn`](Executor::spawn)ed on it. Tasks are `!Send` futures
/// polled on this thread only; other threads reach the executor through a
/// [`Spawner`] (for `Send` futures) or through wakers, which are `Send + Sync`
/// and wake the driver's wait through its [`Remote`].
///
/// Every async operation of [`rt`](crate::rt) finds the executor of the
/// thread while `block_on` runs, so they must be polled inside it.
///
/// ```
/// use std::time::Duration;
/// use eventcore::{rt, Driver};
///
/// let mut ex = rt::Executor::new(Driver::new()?);
/// let answer = ex.block_on(async {
///     let task = rt::spawn(async {
///         rt::sleep(Duration::from_millis(5)).await;
///         21
///     });
///     task.await.expect("the task") * 2
/// });
/// assert_eq!(answer, 42);
/// assert!(ex.leak_report().is_empty());
/// # Ok::<(), eventcore::Error>(())
/// ```
///
/// Dropping the executor drops every task that has not finished (which
/// cancels their operations) and closes its [`Spawner`]s. The driver itself
/// is dropped once the last handle that uses it is.
pub struct Executor {
    core: Rc<Core>,
    /// A `!Send` marker (the core holds one too; this documents it).
    _not_send: PhantomData<*const ()>,
}

impl Executor {
    /// An executor that owns `driver`.
    pub fn new(driver: Driver) -> Executor {
        let shared = Arc::new(Shared {
            id: NEXT_EXECUTOR_ID.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(SharedState {
                woken: Vec::new(),
                injected: Vec::new(),
                closed: false,
            }),
            remote: driver.remote(),
            filled: AtomicBool::new(false),
        });
        let main = Arc::new(TaskWaker {
            key: MAIN,
            queued: AtomicBool::new(false),
            shared: shared.clone(),
        });
        Executor {
            core: Rc::new(Core {
                driver: RefCell::new(driver),
                tasks: RefCell::new(Tasks::default()),
                shared,
                main,
                batch: Cell::new(Vec::new()),
                local_woken: RefCell::new(Vec::new()),
                sync_budget: Cell::new(SYNC_BUDGET),
                deferred: RefCell::new(Vec::new()),
                quit: RefCell::new(QuitState::default()),
                pump_panic: RefCell::new(None),
                in_turn: Cell::new(false),
            }),
            _not_send: PhantomData,
        }
    }

    /// Runs `future` to completion on this thread, running spawned tasks and
    /// driver callbacks meanwhile; returns its output.
    ///
    /// Tasks that have not finished when `future` completes stay in the
    /// executor and go on at the next `block_on` (or [`Executor::turn`]).
    /// An exit request ([`Driver::exit`], [`Remote::exit`]) does not end
    /// `block_on`. A panic of `future` goes on through `block_on`; a panic
    /// of a spawned task is caught, the task is dropped, and its
    /// [`JoinHandle`] reports it ([`JoinError::is_panic`]) while the other
    /// tasks go on.
    ///
    /// # Panics
    ///
    /// Inside another `block_on` on this thread (a task that blocks its own
    /// thread would stop every other task of it): await the future instead.
    #[track_caller]
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        assert!(
            try_current().is_none(),
            "eventcore::rt: block_on called inside block_on on the same thread; await the future instead"
        );
        self.resume_pump_panic();
        let core = self.core.clone();
        let _enter = Enter::new(&core);
        let mut future = std::pin::pin!(future);
        let main = &core.main;
        // A clone of it from an earlier `block_on` may have left it marked
        // queued: the first poll must not depend on that.
        main.queued.store(false, Ordering::Release);
        let main_waker = Waker::from(main.clone());
        main.wake_by_ref();
        let mut batch = core.batch.take();
        loop {
            core.run_deferred();
            core.take_woken(&mut batch);
            // Woken through the queue from another thread, or by the flag
            // alone on this one (see `TaskWaker::wake_by_ref`).
            if core.run_batch(&mut batch) | main.queued.load(Ordering::Acquire) {
                main.queued.store(false, Ordering::Release);
                if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                    core.run_deferred();
                    core.batch.set(batch);
                    return out;
                }
            }
            core.run_deferred();
            core.process(core.has_woken() || main.queued.load(Ordering::Acquire));
        }
    }

    /// One turn of the loop without blocking on a future: polls the tasks
    /// that are woken, then runs one batch of driver events, waiting at most
    /// `timeout` (`None`: until something happens, zero: not at all) — or not
    /// at all if tasks are runnable. Returns what the driver said.
    ///
    /// This is how a loop that is not the executor's own (a GUI message loop,
    /// a game loop) keeps tasks going: call `turn(Some(Duration::ZERO))` from
    /// it. Unlike `block_on`, it returns [`ExitReason::OutOfWaiters`] instead
    /// of parking when nothing can complete.
    pub fn turn(&mut self, timeout: Option<Duration>) -> Result<ExitReason> {
        self.resume_pump_panic();
        let core = self.core.clone();
        core.turn_once(timeout)
    }

    /// Resumes a panic of a task the thread's message loop ran (Windows,
    /// attached).
    fn resume_pump_panic(&self) {
        if let Some(payload) = self.core.pump_panic.borrow_mut().take() {
            std::panic::resume_unwind(payload);
        }
    }

    /// Windows GUI programs: hands the executor to the thread's own message
    /// loop, as [`Driver::attach_to_message_loop`] does for a driver. From
    /// now on any loop that dispatches messages on this thread — the
    /// program's `GetMessageW` loop, `MessageBoxW`, a window being moved —
    /// runs the executor's tasks and driver callbacks: at once when a task is
    /// woken (from this thread or another, through the driver's `Remote`) or
    /// an I/O request started while attached finishes, and at the latest
    /// every `pump_interval` for timers (and for I/O already in flight at the
    /// attach, or while input messages wait). A panic of
    /// a task run there is resumed by the next call of this executor (`turn`,
    /// `block_on`, `detach_from_message_loop`). Spawn tasks with
    /// [`Executor::spawn`]; do not call `block_on` or `turn` while attached.
    #[cfg(windows)]
    pub fn attach_to_message_loop(&mut self, pump_interval: Duration) {
        let ms = pump_interval.as_millis().clamp(1, u128::from(u32::MAX / 2)) as u32;
        let weak = Rc::downgrade(&self.core);
        let pump = move || {
            let Some(core) = weak.upgrade() else {
                return;
            };
            if core.in_turn.get() || core.driver.try_borrow_mut().is_err() {
                // A modal loop inside a task or a driver callback: the turn
                // that runs it goes on afterwards.
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<ExitReason> {
                // Turns while tasks or callbacks run (what one of them started
                // and finished at once runs now, not at the next pump), within
                // the pump's budget; then another pump if work is left.
                let started = std::time::Instant::now();
                for _ in 0..crate::gui::PUMP_BATCHES {
                    let reason = core.turn_once(Some(Duration::ZERO))?;
                    if reason != ExitReason::Idle {
                        return Ok(reason);
                    }
                    if started.elapsed() >= crate::gui::PUMP_BUDGET {
                        break;
                    }
                }
                core.driver.borrow().sys.request_pump();
                Ok(ExitReason::Idle)
            }));
            if let Ok(mut drv) = core.driver.try_borrow_mut() {
                drv.sys.settle();
            }
            match result {
                Ok(Ok(ExitReason::Quit(code))) => crate::sys::post_quit(code),
                Ok(_) => {}
                Err(payload) => {
                    core.pump_panic.borrow_mut().get_or_insert(payload);
                }
            }
        };
        let mut drv = self.core.driver.borrow_mut();
        drv.sys.set_attached(Some(ms));
        *drv.sys.window_shared().pump.borrow_mut() = Some(Box::new(pump));
        // Tasks woken before the attach run at the first pump.
        drop(drv);
        let _ = self.core.shared.remote.wake();
    }

    /// Takes the executor back from the thread's message loop (see
    /// [`Executor::attach_to_message_loop`]).
    #[cfg(windows)]
    pub fn detach_from_message_loop(&mut self) {
        let mut drv = self.core.driver.borrow_mut();
        *drv.sys.window_shared().pump.borrow_mut() = None;
        drv.sys.set_attached(None);
        drop(drv);
        self.resume_pump_panic();
    }

    /// Starts `future` as a task of this executor; it runs while the executor
    /// runs (`block_on`, `turn`). The [`JoinHandle`] gives its output;
    /// dropping the handle detaches the task.
    ///
    /// Costs one heap allocation in the steady state (see [`spawn`]).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        spawn_on(&self.core, future)
    }

    /// A `Send + Sync` handle through which other threads spawn `Send`
    /// futures onto this executor.
    pub fn spawner(&self) -> Spawner {
        Spawner {
            shared: self.core.shared.clone(),
        }
    }

    /// Runs `f` with the driver, for the callback API (options this layer
    /// does not wrap, handles of its own). Panics if called from inside a
    /// driver callback.
    pub fn with_driver<R>(&self, f: impl FnOnce(&mut Driver) -> R) -> R {
        self.core.with_driver(f)
    }

    /// What is still open in the driver (see [`Driver::leak_report`]).
    ///
    /// Some releases finish in the driver after the handle is dropped (a file
    /// is closed on the worker pool): let the loop run a little — e.g.
    /// `block_on(rt::sleep(..))` — before expecting an empty report.
    pub fn leak_report(&self) -> LeakReport {
        self.core.with_driver(|drv| drv.leak_report())
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let _enter = Enter::new(&self.core);
        let injected = {
            let mut s = self.core.shared.lock();
            s.closed = true;
            std::mem::take(&mut s.injected)
        };
        // Dropped outside the lock: their drop wakes the threads waiting for
        // them, which may be this one.
        drop(injected);
        self.core.drop_tasks();
        self.core.run_deferred();
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("id", &self.core.shared.id)
            .finish_non_exhaustive()
    }
}

// ------------------------------------------------------------ local spawns

struct JoinState<T> {
    output: Option<T>,
    /// The task panicked with this payload.
    panic: Option<Box<dyn std::any::Any + Send>>,
    /// A panic or a cancellation was returned by the handle.
    output_gone: bool,
    waker: Option<Waker>,
    finished: bool,
    /// The task was dropped before it finished (its executor was dropped).
    dropped: bool,
}

fn spawn_on<F>(core: &Rc<Core>, future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let task = new_task(future);
    let key = core.spawn_task(task.clone());
    JoinHandle {
        task,
        core: core.clone(),
        key,
    }
}

/// Starts `future` as a task of the executor running on this thread (see
/// [`Executor::spawn`]). Panics outside an executor.
///
/// **Cost:** one heap allocation in the steady state — the task: its join
/// state and `future` side by side, the future polled in place (the
/// executor does not box it again). The steady state is an executor whose
/// earlier tasks have left what this spawn needs:
///
/// - a free slot: one whose task has finished or was aborted. A spawn that
///   finds none adds a slot (the slab's vector grows now and then) and makes
///   that slot's waker: a second allocation, once per slot;
/// - whose waker nobody holds any more: the slot's waker is reused only when
///   no clone of it is alive (kept by a timer, a channel, another thread, a
///   future of another executor). Otherwise this spawn makes a new one;
/// - and a queue of woken tasks with room: it keeps its capacity, and grows
///   only when more tasks are woken at once than ever before.
///
/// So a program that spawns and finishes tasks at a steady rate allocates
/// once per spawn. The future's own allocations, and the output's, are its
/// own. A spawn from outside the executor's loop (`Executor::spawn` between
/// `block_on`s) also queues a wake-up in the driver's [`Remote`], whose
/// vector keeps its capacity but holds those wake-ups until the next driver
/// turn.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    spawn_on(&current(), future)
}

/// A [`Spawner`] for the executor running on this thread. Panics outside an
/// executor.
#[track_caller]
pub fn spawner() -> Spawner {
    Spawner {
        shared: current().shared.clone(),
    }
}

/// Runs `f` with the driver of the executor running on this thread, for the
/// callback API. Panics outside an executor, and when called from inside a
/// driver callback (which has its own `&mut Driver`).
#[track_caller]
pub fn with_driver<R>(f: impl FnOnce(&mut Driver) -> R) -> R {
    current().with_driver(f)
}

/// Windows GUI programs: completes with the exit code once the driver has
/// taken `WM_QUIT` off the thread's message queue while this thread's
/// executor ran ([`ExitReason::Quit`]; the driver's wait pumps window
/// messages). Elsewhere it never completes. Panics outside an executor.
///
/// **Cancel safety:** cancel-safe; the quit stays recorded.
pub async fn quit_message() -> i32 {
    let core = current();
    std::future::poll_fn(|cx| {
        let mut q = core.quit.borrow_mut();
        if let Some(code) = q.code {
            return Poll::Ready(code);
        }
        if !q.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            q.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    })
    .await
}

/// Yields once to the executor: the task is woken at once and polled again
/// after the other runnable tasks and a poll of the driver.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// The output of a spawned task: a future that completes with it, or with
/// a [`JoinError`] if the task panicked or was dropped unfinished (its
/// executor was dropped).
///
/// Dropping the handle detaches the task (it goes on running); use
/// [`JoinHandle::abort`] to stop it.
pub struct JoinHandle<T> {
    /// The task itself (its join state is read through it).
    task: Pin<Rc<dyn Join<T>>>,
    core: Rc<Core>,
    key: u64,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.task.state().borrow().finished
    }

    /// Whether this handle has returned the task's output (or error) already.
    pub(crate) fn output_taken(&self) -> bool {
        let s = self.task.state().borrow();
        s.output_gone || (s.finished && s.output.is_none() && s.panic.is_none())
    }

    /// Stops the task: its future is dropped (which cancels the operations
    /// it was waiting for) at once — or, if the task is the one calling this,
    /// when its current poll returns.
    pub fn abort(self) {
        if !self.is_finished() {
            self.core.abort(self.key);
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = std::result::Result<T, JoinError>;

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.task.state().borrow_mut();
        if let Some(out) = s.output.take() {
            return Poll::Ready(Ok(out));
        }
        if let Some(payload) = s.panic.take() {
            s.output_gone = true;
            return Poll::Ready(Err(JoinError::Panic(payload)));
        }
        assert!(
            !s.finished && !s.output_gone,
            "eventcore::rt: JoinHandle polled after its output was taken"
        );
        if s.dropped {
            s.output_gone = true;
            return Poll::Ready(Err(JoinError::Cancelled));
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// Why a [`JoinHandle`] has no output: the task panicked, or it was
/// dropped before it finished (its executor was dropped). The panic's
/// payload can be taken back to resume it or look at its message.
pub enum JoinError {
    /// The task panicked with this payload.
    Panic(Box<dyn std::any::Any + Send>),
    /// The task was dropped unfinished.
    Cancelled,
}

impl JoinError {
    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panic(_))
    }

    /// Whether the task was dropped before it finished.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// The panic's payload (for `std::panic::resume_unwind`).
    ///
    /// # Panics
    ///
    /// If the task did not panic.
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn std::any::Any + Send> {
        match self {
            JoinError::Panic(payload) => payload,
            JoinError::Cancelled => panic!("eventcore::rt: JoinError::into_panic on a cancelled task"),
        }
    }

    /// The panic's payload, or the error itself if the task did not panic.
    pub fn try_into_panic(self) -> std::result::Result<Box<dyn std::any::Any + Send>, JoinError> {
        match self {
            JoinError::Panic(payload) => Ok(payload),
            other => Err(other),
        }
    }

    /// The panic's message, where the payload is a string.
    fn message(&self) -> Option<&str> {
        match self {
            JoinError::Panic(p) => p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            JoinError::Cancelled => None,
        }
    }
}

impl std::fmt::Debug for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Panic(_) => f.debug_tuple("Panic").field(&self.message()).finish(),
            JoinError::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self, self.message()) {
            (JoinError::Panic(_), Some(m)) => write!(f, "the task panicked: {m}"),
            (JoinError::Panic(_), None) => f.write_str("the task panicked"),
            (JoinError::Cancelled, _) => f.write_str("the task was dropped before it finished"),
        }
    }
}

impl std::error::Error for JoinError {}

/// A task's failure as an `io::Error` (kind `Other`), so `?` works in an
/// `io::Result` function; the panic's message is kept in its text (the
/// payload itself is not: use `into_panic` to resume it).
impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
}

// ----------------------------------------------------------- remote spawns

/// Spawns tasks onto an executor from any thread (see [`Executor::spawner`]).
/// `Send + Sync + Clone`.
///
/// The work is queued for the executor's thread, whose driver wait is woken
/// through its [`Remote`]; it runs there as a task whenever that thread runs
/// its executor (`block_on`, `turn`).
///
/// The I/O types of this layer are `!Send` (they belong to one driver), so a
/// task that does I/O on the target thread is sent as a `Send` closure that
/// makes its future there: [`Spawner::spawn_with`]. [`Spawner::spawn`] takes
/// a `Send` future as it is.
#[derive(Clone)]
pub struct Spawner {
    shared: Arc<Shared>,
}

impl Spawner {
    /// Queues `future` to run as a task on the spawner's executor.
    /// [`Status::DriverGone`] if that executor has been dropped.
    pub fn spawn<F>(&self, future: F) -> Result<RemoteJoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with(move || future)
    }

    /// Queues `make` to run on the spawner's executor's thread, where it
    /// makes the task's future — which need not be `Send`, so it can create
    /// and use that thread's sockets, files and timers. Only `make` and the
    /// output cross threads. [`Status::DriverGone`] if the executor has been
    /// dropped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventcore::{rt, Driver};
    ///
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let worker = std::thread::spawn(move || {
    ///     let mut ex = rt::Executor::new(Driver::new().unwrap());
    ///     ex.block_on(async move {
    ///         let stop = rt::Notify::new();
    ///         tx.send((rt::spawner(), stop.handle())).unwrap();
    ///         stop.notified().await;
    ///     });
    /// });
    /// let (spawner, stop) = rx.recv().unwrap();
    /// let mut ex = rt::Executor::new(Driver::new()?);
    /// let n = ex.block_on(async {
    ///     let handle = spawner.spawn_with(|| async {
    ///         // Runs on the worker thread, with the worker's driver.
    ///         rt::sleep(Duration::from_millis(1)).await;
    ///         21
    ///     })?;
    ///     Ok::<_, eventcore::Error>(handle.await? * 2)
    /// })?;
    /// assert_eq!(n, 42);
    /// stop.notify_one()?;
    /// worker.join().unwrap();
    /// # Ok::<(), eventcore::Error>(())
    /// ```
    pub fn spawn_with<M, F>(&self, make: M) -> Result<RemoteJoinHandle<F::Output>>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let state = Arc::new(Mutex::new(RemoteJoinState {
            output: None,
            panic: None,
            waker: None,
            finished: false,
            dropped: false,
        }));
        let guard = RemoteGuard { state: state.clone() };
        let injected: Injected = Box::new(move || {
            let future = make();
            new_task(async move {
                let mut future = std::pin::pin!(future);
                // A panic stops at the task (the executor's other tasks go
                // on) and is resumed where the handle is awaited.
                let outcome = std::future::poll_fn(|cx| catch_poll(future.as_mut(), cx)).await;
                guard.finish(outcome);
            })
        });
        let mut refused = None;
        self.shared.notify(|s| {
            if s.closed {
                refused = Some(injected);
            } else {
                s.injected.push(injected);
            }
        });
        if let Some(injected) = refused {
            // Dropped outside the lock; its guard wakes nobody (no one waits yet).
            drop(injected);
            return Err(Error::new(Status::DriverGone));
        }
        Ok(RemoteJoinHandle { state })
    }
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner").field("executor", &self.shared.id).finish()
    }
}

struct RemoteJoinState<T> {
    output: Option<T>,
    /// The task panicked with this payload (resumed where it is awaited).
    panic: Option<Box<dyn std::any::Any + Send>>,
    waker: Option<Waker>,
    finished: bool,
    dropped: bool,
}

fn lock_state<T>(m: &Mutex<RemoteJoinState<T>>) -> MutexGuard<'_, RemoteJoinState<T>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks a remote task as dropped (and wakes its handle) if it goes away
/// before finishing — whether it ever started or not.
struct RemoteGuard<T> {
    state: Arc<Mutex<RemoteJoinState<T>>>,
}

impl<T> RemoteGuard<T> {
    fn finish(&self, outcome: std::thread::Result<T>) {
        let waker = {
            let mut s = lock_state(&self.state);
            match outcome {
                Ok(output) => s.output = Some(output),
                Err(payload) => s.panic = Some(payload),
            }
            s.finished = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for RemoteGuard<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = lock_state(&self.state);
            if s.finished {
                return;
            }
            s.dropped = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The output of a task spawned through a [`Spawner`]; a `Send` future that
/// completes with it, or with [`Status::DriverGone`] if the target executor
/// was dropped before the task finished. If the task panicked, its executor
/// goes on and the panic is resumed where this handle is awaited (inside a
/// spawned task, that task's [`JoinHandle`] then reports it).
///
/// Dropping the handle detaches the task.
pub struct RemoteJoinHandle<T> {
    state: Arc<Mutex<RemoteJoinState<T>>>,
}

impl<T> RemoteJoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        lock_state(&self.state).finished
    }
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut s = lock_state(&self.state);
        if let Some(out) = s.output.take() {
            return Poll::Ready(Ok(out));
        }
        if let Some(payload) = s.panic.take() {
            drop(s);
            std::panic::resume_unwind(payload);
        }
        if s.dropped {
            return Poll::Ready(Err(Error::new(Status::DriverGone)));
        }
        assert!(
            !s.finished,
            "eventcore::rt: RemoteJoinHandle polled after its output was taken"
        );
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJoinHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// The id of the executor whose loop runs on this thread (0: none). A value
/// that may leave its thread (`rt::hyper`'s `Send` sleeps) records it to
/// tell later whether it is back with the executor that owns its driver
/// resources.
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) fn running_executor_id() -> u64 {
    RUNNING.with(Cell::get)
}
