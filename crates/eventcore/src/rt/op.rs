//! How a driver operation becomes a future, once for every subsystem.
//!
//! A future starts its operation on its first poll, with a callback that
//! only fills a shared [`Slot`] and wakes the task. Dropping the future is
//! cancellation, and [`OpFuture`]'s `Drop` handles its three states the same
//! way everywhere:
//!
//! - **not started**: nothing reached the driver; the future's arguments (the
//!   buffer) are simply dropped;
//! - **pending**: the operation is withdrawn with the subsystem's `cancel_*`
//!   call, so its callback never runs; the driver keeps the buffer for as
//!   long as the OS or a worker may still use it;
//! - **completed, not yet polled**: the result is in the slot; it is
//!   discarded, and resources in it (an accepted socket, an opened file) are
//!   released.
//!
//! Operations without a cancel call (a file `open`, `truncate`) mark the slot
//! abandoned instead: their callback still runs, finds nobody waiting, and
//! releases what it was given.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::executor::{current, Core};
use crate::Driver;

/// Where a driver callback leaves its result for a future.
pub(crate) struct Slot<T> {
    state: RefCell<SlotState<T>>,
}

struct SlotState<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The future is gone: nobody will read a value.
    abandoned: bool,
}

impl<T> Slot<T> {
    pub fn new() -> Rc<Slot<T>> {
        Rc::new(Slot {
            state: RefCell::new(SlotState {
                value: None,
                waker: None,
                abandoned: false,
            }),
        })
    }

    /// Takes the value, or registers the task to be woken when it arrives.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.borrow_mut();
        if let Some(v) = s.value.take() {
            return Poll::Ready(v);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes the value if it has arrived.
    pub fn take(&self) -> Option<T> {
        self.state.borrow_mut().value.take()
    }

    /// Whether a value has arrived and was not taken.
    pub fn is_filled(&self) -> bool {
        self.state.borrow().value.is_some()
    }

    /// Empties a slot that nobody else holds, for another operation. The
    /// waker stays: the next operation of the handle is most often awaited
    /// by the same task, whose poll then finds it in place
    /// (`Waker::will_wake`) instead of cloning it again.
    fn reset(&self) {
        let mut s = self.state.borrow_mut();
        s.value = None;
        s.abandoned = false;
    }

    fn abandon(&self) {
        let mut s = self.state.borrow_mut();
        s.abandoned = true;
        s.waker = None;
    }
}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("filled", &self.is_filled()).finish()
    }
}

/// The slot of a handle direction's last finished operation, kept for its
/// next one: a stream that reads in a loop allocates its slot once, not per
/// read. Any output type fits (a later operation of another type allocates
/// anew); a slot is reused only when nothing else holds it.
#[derive(Default)]
pub(crate) struct SlotCache(Cell<Option<Rc<dyn Any>>>);

impl SlotCache {
    /// The cached slot if it fits and is free, else a new one.
    #[inline]
    pub(crate) fn take<T: 'static>(&self) -> Rc<Slot<T>> {
        if let Some(Ok(slot)) = self.0.take().map(|any| any.downcast::<Slot<T>>()) {
            if Rc::strong_count(&slot) == 1 && Rc::weak_count(&slot) == 0 {
                slot.reset();
                return slot;
            }
        }
        new_slot()
    }

    /// Keeps `slot` (its value taken) for the next operation.
    pub(crate) fn put<T: 'static>(&self, slot: Rc<Slot<T>>) {
        self.0.set(Some(slot));
    }
}

/// A slot for a stream's operation that found none to reuse (out of the
/// reusing path's frame).
#[cold]
#[inline(never)]
fn new_slot<T>() -> Rc<Slot<T>> {
    Slot::new()
}

/// The callback's end of a [`Slot`].
pub(crate) struct Completer<T>(pub Rc<Slot<T>>);

impl<T> Completer<T> {
    /// Stores `v` and wakes the waiting task. If the future was dropped
    /// meanwhile, `v` comes back, for the callback to release what it holds.
    pub fn complete(self, v: T) -> Option<T> {
        let waker = {
            let mut s = self.0.state.borrow_mut();
            if s.abandoned {
                return Some(v);
            }
            s.value = Some(v);
            s.waker.take()
        };
        // Woken outside the borrow (a waker may do anything), and kept for
        // the slot's next operation (see `reset`) unless the future
        // registered another meanwhile.
        if let Some(w) = waker {
            w.wake_by_ref();
            self.0.state.borrow_mut().waker.get_or_insert(w);
        }
        None
    }
}

/// One kind of driver operation, as [`OpFuture`] drives it.
pub(crate) trait Operation: Unpin {
    /// What the callback stores.
    type Output: 'static;
    /// What `cancel`, `ready` and `discard` need to know about the started
    /// operation (its handle, its wait id).
    type Token: Copy + Unpin + 'static;
    /// What the future returns.
    type Ret;

    /// Starts the operation with a callback that calls `done.complete`
    /// exactly once (unless cancelled). `Err` completes the future at once,
    /// without a callback (the operation could not even be started).
    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<Self::Token, Self::Ret>;

    /// Withdraws the pending operation: its callback must never run (or, for
    /// operations without a cancel call, must find the slot abandoned).
    fn cancel(drv: &mut Driver, token: Self::Token);

    /// Turns the stored output into the future's output.
    fn ready(&mut self, core: &Rc<Core>, token: Self::Token, out: Self::Output) -> Self::Ret;

    /// Disposes of an output that arrived after nobody wanted it any more.
    fn discard(core: &Rc<Core>, token: Self::Token, out: Self::Output) {
        let _ = (core, token, out);
    }

    /// The output when the guarding slot is taken (another operation of the
    /// same kind is in flight on the handle).
    fn busy(&mut self) -> Self::Ret {
        unreachable!("only guarded operations are ever busy")
    }
}

enum State<O: Operation> {
    Unstarted,
    Started {
        slot: Rc<Slot<O::Output>>,
        token: O::Token,
    },
    Done,
}

/// The executor an [`OpFuture`] runs on: lent by the handle the operation
/// belongs to, or the thread's current one, taken at the first poll.
enum CoreRef<'a> {
    Unknown,
    Lent(&'a Rc<Core>),
    Current(Rc<Core>),
}

impl CoreRef<'_> {
    /// The executor (the thread's current one if none was lent).
    #[inline]
    fn get(&mut self) -> &Rc<Core> {
        match self {
            CoreRef::Lent(core) => core,
            CoreRef::Current(core) => core,
            CoreRef::Unknown => self.take_current(),
        }
    }

    #[cold]
    #[inline(never)]
    fn take_current(&mut self) -> &Rc<Core> {
        *self = CoreRef::Current(current());
        self.get()
    }
}

/// A future over one driver operation (see the module docs).
///
/// `guard` is the handle's "one operation of this kind at a time" flag: the
/// driver allows one read and one write per handle, and the flag makes a
/// second one fail here with `Busy` without reaching the driver, so that a
/// cancel always names this future's own operation.
pub(crate) struct OpFuture<'a, O: Operation> {
    op: O,
    guard: Option<&'a Cell<bool>>,
    /// Where the slot comes from and goes back to (see [`SlotCache`]).
    cache: Option<&'a SlotCache>,
    owns_guard: bool,
    core: CoreRef<'a>,
    state: State<O>,
}

impl<'a, O: Operation> OpFuture<'a, O> {
    pub fn new(op: O) -> OpFuture<'a, O> {
        OpFuture {
            op,
            guard: None,
            cache: None,
            owns_guard: false,
            core: CoreRef::Unknown,
            state: State::Unstarted,
        }
    }

    pub fn guarded(op: O, guard: &'a Cell<bool>) -> OpFuture<'a, O> {
        OpFuture {
            op,
            guard: Some(guard),
            cache: None,
            owns_guard: false,
            core: CoreRef::Unknown,
            state: State::Unstarted,
        }
    }

    /// [`guarded`](OpFuture::guarded), with the slot taken from and given
    /// back to `cache`, on the executor `core` of the handle.
    pub fn cached(op: O, guard: &'a Cell<bool>, cache: &'a SlotCache, core: &'a Rc<Core>) -> OpFuture<'a, O> {
        OpFuture {
            op,
            guard: Some(guard),
            cache: Some(cache),
            owns_guard: false,
            core: CoreRef::Lent(core),
            state: State::Unstarted,
        }
    }

    fn release_guard(&mut self) {
        if self.owns_guard {
            self.owns_guard = false;
            if let Some(g) = self.guard {
                g.set(false);
            }
        }
    }
}

impl<O: Operation> Future for OpFuture<'_, O> {
    type Output = O::Ret;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Ret> {
        let this = self.get_mut();
        if let State::Unstarted = this.state {
            if let Some(g) = this.guard {
                if g.get() {
                    this.state = State::Done;
                    return Poll::Ready(this.op.busy());
                }
                g.set(true);
                this.owns_guard = true;
            }
            let core = this.core.get();
            let slot = match this.cache {
                Some(cache) => cache.take(),
                None => Slot::new(),
            };
            let done = Completer(slot.clone());
            match core.with_driver(|drv| this.op.start(drv, done)) {
                Ok(token) => this.state = State::Started { slot, token },
                Err(ret) => {
                    this.state = State::Done;
                    this.release_guard();
                    return Poll::Ready(ret);
                }
            }
        }
        let State::Started { slot, .. } = &this.state else {
            panic!("eventcore::rt: an operation future was polled after it completed");
        };
        let out = std::task::ready!(slot.poll(cx));
        let State::Started { token, slot } = std::mem::replace(&mut this.state, State::Done) else {
            unreachable!("matched above")
        };
        if let Some(cache) = this.cache {
            cache.put(slot);
        }
        this.release_guard();
        Poll::Ready(this.op.ready(this.core.get(), token, out))
    }
}

impl<O: Operation> Drop for OpFuture<'_, O> {
    fn drop(&mut self) {
        if let State::Started { slot, token } = std::mem::replace(&mut self.state, State::Done) {
            let core = self.core.get();
            slot.abandon();
            match slot.take() {
                Some(out) => O::discard(core, token, out),
                None => {
                    let cancel: fn(&mut Driver, O::Token) = O::cancel;
                    core.run_or_defer(move |drv| cancel(drv, token));
                    // A completion that was already queued may have been
                    // stored by the time a deferred cancel runs; none is
                    // stored now, and the slot is abandoned, so a late one
                    // comes back to its callback, which releases it.
                }
            }
        }
        self.release_guard();
    }
}

/// An unbounded queue filled by a repeating driver callback (accepted
/// connections, signals, directory changes) and drained by futures.
pub(crate) struct Queue<T> {
    state: RefCell<QueueState<T>>,
}

struct QueueState<T> {
    items: VecDeque<T>,
    wakers: Vec<Waker>,
}

impl<T> Queue<T> {
    pub fn new() -> Rc<Queue<T>> {
        Rc::new(Queue {
            state: RefCell::new(QueueState {
                items: VecDeque::new(),
                wakers: Vec::new(),
            }),
        })
    }

    /// Appends `item` and wakes every task waiting for one.
    pub fn push(&self, item: T) {
        let wakers = {
            let mut s = self.state.borrow_mut();
            s.items.push_back(item);
            std::mem::take(&mut s.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// The next item, or registers the task to be woken when one arrives.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.borrow_mut();
        if let Some(item) = s.items.pop_front() {
            return Poll::Ready(item);
        }
        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.state.borrow().items.is_empty()
    }

    /// The next item, if one is queued.
    pub fn try_next(&self) -> Option<T> {
        self.state.borrow_mut().items.pop_front()
    }

    /// Everything queued.
    pub fn drain(&self) -> Vec<T> {
        self.state.borrow_mut().items.drain(..).collect()
    }
}
