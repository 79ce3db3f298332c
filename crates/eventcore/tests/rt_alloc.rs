//! What spawning a local task costs in heap allocations: at most one per
//! spawn in the steady state (the task's slot and its waker recycled, the
//! executor's queues grown to size), for a future that allocates nothing
//! itself. Counted by a `#[global_allocator]` that counts the allocations
//! (and reallocations) of the current thread only, while a section is being
//! measured, so the other tests' threads and the watchdog add nothing.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use eventcore::rt::{self, Executor};
use eventcore::BackendKind;
use util::rt::{assert_no_leaks, executor};

struct Counting;

thread_local! {
    /// Counting on this thread (const-initialised without a destructor, so
    /// reading it never allocates).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's guarantees for `alloc` are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's guarantees for `realloc` are passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees for `dealloc` are passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts counting this thread's allocations (from zero).
fn start_counting() {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
}

/// Stops counting; the allocations since [`start_counting`].
fn stop_counting() -> u64 {
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

/// Spawns measured after the warm-up.
const ROUNDS: u64 = 1000;

/// Spawns and awaits one task at a time from `block_on`'s future: each
/// spawn reuses the slot (and waker) the previous task left. Counted while
/// the loop runs, so everything the executor and the driver do for the
/// spawns (polling, waking, joining, the loop's turns) is counted with them.
fn spawn_then_await(kind: BackendKind) {
    let mut ex = executor(kind);
    let (total, n) = ex.block_on(async {
        for _ in 0..64 {
            assert_eq!(rt::spawn(async { 1u64 }).await.expect("the task"), 1);
        }
        start_counting();
        let mut total = 0;
        for _ in 0..ROUNDS {
            total += rt::spawn(async { 1u64 }).await.expect("the task");
        }
        (total, stop_counting())
    });
    println!("{kind:?}: spawn, then await: {n} allocations for {ROUNDS} spawns");
    assert_eq!(total, ROUNDS);
    assert!(n <= ROUNDS, "{kind:?}: {n} allocations for {ROUNDS} spawns");
    assert_no_leaks(&ex);
}

/// Spawns a batch of detached tasks, then lets them all run (each yields
/// once first), round after round: the slots freed by one round serve the
/// next.
fn spawn_batches_detached(kind: BackendKind) {
    const BATCH: u64 = 100;
    let mut ex = executor(kind);
    let done = Rc::new(Cell::new(0u64));
    let round = |done: &Rc<Cell<u64>>| {
        let target = done.get() + BATCH;
        for _ in 0..BATCH {
            let done = done.clone();
            drop(rt::spawn(async move {
                rt::yield_now().await;
                done.set(done.get() + 1);
            }));
        }
        target
    };
    let n = ex.block_on(async {
        for _ in 0..3 {
            let target = round(&done);
            while done.get() < target {
                rt::yield_now().await;
            }
        }
        start_counting();
        for _ in 0..ROUNDS / BATCH {
            let target = round(&done);
            while done.get() < target {
                rt::yield_now().await;
            }
        }
        stop_counting()
    });
    println!("{kind:?}: detached batches: {n} allocations for {ROUNDS} spawns");
    assert_eq!(done.get(), ROUNDS + 3 * BATCH);
    assert!(n <= ROUNDS, "{kind:?}: {n} allocations for {ROUNDS} spawns");
    assert_no_leaks(&ex);
}

/// The same through `Executor::spawn`, from outside the loop, each task
/// then run by a `block_on` of its handle: `block_on` adds no allocation of
/// its own.
///
/// A spawn from outside the loop also sends the driver's `Remote` an empty
/// closure (the wake-up a loop parked on another thread would need); the
/// `block_on` here finishes without a driver turn, so one `turn` per round
/// takes it — else those messages pile up in the `Remote`'s queue until the
/// next driver turn, and its vector grows (a doubling now and then).
fn executor_spawn_between_block_ons(kind: BackendKind) {
    let mut ex = executor(kind);
    let round = |ex: &mut Executor| {
        let h = ex.spawn(async { 2u64 });
        let out = ex.block_on(h).expect("the task");
        ex.turn(Some(Duration::ZERO)).expect("a turn");
        out
    };
    for _ in 0..64 {
        assert_eq!(round(&mut ex), 2);
    }
    let mut total = 0;
    start_counting();
    for _ in 0..ROUNDS {
        total += round(&mut ex);
    }
    let n = stop_counting();
    println!("{kind:?}: Executor::spawn, then block_on: {n} allocations for {ROUNDS} spawns");
    assert_eq!(total, 2 * ROUNDS);
    assert!(n <= ROUNDS, "{kind:?}: {n} allocations for {ROUNDS} spawns");
    assert_no_leaks(&ex);
}

/// A slot's waker is reused only when nobody holds a clone of it: a waker
/// of a finished task kept (and woken later, from another thread) reaches
/// neither the task that took the slot next nor that task's waker; once
/// the last clone is gone the slot's next spawn allocates only its task.
fn stale_waker_reaches_nobody(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let kept: Rc<RefCell<Option<Waker>>> = Rc::default();
        let first = rt::spawn({
            let kept = kept.clone();
            std::future::poll_fn(move |cx| {
                *kept.borrow_mut() = Some(cx.waker().clone());
                Poll::Ready(())
            })
        });
        first.await.expect("the first task");
        let stale = kept.borrow_mut().take().expect("the first task's waker");

        // The next task takes the freed slot (and, the old waker being
        // alive, a waker of its own); it counts its polls and never ends.
        let polls = Rc::new(Cell::new(0u32));
        let second = rt::spawn({
            let polls = polls.clone();
            std::future::poll_fn(move |_| {
                polls.set(polls.get() + 1);
                Poll::<()>::Pending
            })
        });
        for _ in 0..3 {
            rt::yield_now().await;
        }
        assert_eq!(polls.get(), 1);
        std::thread::spawn(move || stale.wake())
            .join()
            .expect("the waking thread");
        for _ in 0..3 {
            rt::yield_now().await;
        }
        assert_eq!(polls.get(), 1, "the stale waker polled the slot's next task");
        second.abort();

        // No clone of the slot's waker is left now: reused, not allocated.
        start_counting();
        let third = rt::spawn(async { 3u8 });
        let n = stop_counting();
        assert_eq!(third.await.expect("the third task"), 3);
        println!("{kind:?}: a spawn into a recycled slot: {n} allocation(s)");
        assert!(n <= 1, "{kind:?}: {n} allocations for one spawn");
    });
    assert_no_leaks(&ex);
}

/// Sets its flag when dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// The task's one block outlives its future: the future is dropped as soon
/// as the task ends (finished, or aborted — by itself, once its poll
/// returns), while the handle keeps the output; a detached task's output is
/// dropped when the task ends.
fn future_and_output_are_dropped_when_the_task_ends(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        // Finished, handle alive: the future is gone, the output is not.
        let future_gone = Rc::new(Cell::new(false));
        let output_gone = Rc::new(Cell::new(false));
        let handle = rt::spawn({
            let guard = DropFlag(future_gone.clone());
            let output = DropFlag(output_gone.clone());
            async move {
                rt::yield_now().await;
                let _guard = &guard;
                output
            }
        });
        while !handle.is_finished() {
            rt::yield_now().await;
        }
        assert!(future_gone.get(), "the finished task's future is still alive");
        assert!(!output_gone.get());
        let output = handle.await.expect("the task");
        assert!(!output_gone.get());
        drop(output);
        assert!(output_gone.get());

        // Detached: the output goes with the task.
        let output_gone = Rc::new(Cell::new(false));
        let ended = Rc::new(Cell::new(false));
        drop(rt::spawn({
            let output = DropFlag(output_gone.clone());
            let ended = ended.clone();
            async move {
                rt::yield_now().await;
                ended.set(true);
                output
            }
        }));
        while !ended.get() {
            rt::yield_now().await;
        }
        rt::yield_now().await;
        assert!(output_gone.get(), "a detached task's output outlived it");

        // Aborted by itself: dropped once the poll that aborted returns.
        let future_gone = Rc::new(Cell::new(false));
        let own: Rc<RefCell<Option<rt::JoinHandle<()>>>> = Rc::default();
        let handle = rt::spawn({
            let guard = DropFlag(future_gone.clone());
            let own = own.clone();
            let gone = future_gone.clone();
            async move {
                let _guard = &guard;
                rt::yield_now().await;
                own.borrow_mut().take().expect("its own handle").abort();
                assert!(!gone.get(), "dropped inside its own poll");
                std::future::pending::<()>().await;
            }
        });
        *own.borrow_mut() = Some(handle);
        for _ in 0..4 {
            rt::yield_now().await;
        }
        assert!(future_gone.get(), "the aborted task's future is still alive");
    });
    assert_no_leaks(&ex);
}

/// Owned-buffer round trips over a loopback TCP connection, one task per
/// end: in the steady state a read or a write allocates nothing (its
/// result slot is the one the stream's previous operation in that
/// direction used; the buffers travel back and forth).
fn owned_transfers_allocate_nothing(kind: BackendKind) {
    const WARM_UP: usize = 64;
    let mut ex = executor(kind);
    let n = ex.block_on(async {
        let listener =
            rt::TcpListener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>().expect("literal")).expect("bind");
        let addr = listener
            .local_addr()
            .expect("address")
            .as_inet()
            .expect("an IP address");
        let client = rt::spawn(async move {
            let conn = rt::TcpStream::connect(addr).await.expect("connect");
            let (mut msg, mut reply) = (b"ping".to_vec(), Vec::with_capacity(4));
            let mut counted = 0;
            for i in 0..WARM_UP + ROUNDS as usize {
                if i == WARM_UP {
                    start_counting();
                }
                let (res, m) = conn.write_all_owned(msg).await;
                res.expect("write");
                let (res, mut r) = conn.read_exact_owned(reply).await;
                res.expect("read");
                assert_eq!(r, b"ping");
                r.clear();
                (msg, reply) = (m, r);
            }
            counted += stop_counting();
            counted
        });
        let (conn, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::with_capacity(4);
        for _ in 0..WARM_UP + ROUNDS as usize {
            let (res, b) = conn.read_exact_owned(buf).await;
            res.expect("server read");
            let (res, mut b) = conn.write_all_owned(b).await;
            res.expect("server write");
            b.clear();
            buf = b;
        }
        client.await.expect("the client task")
    });
    println!("{kind:?}: {n} allocations for {ROUNDS} round trips (4 operations each)");
    assert!(n <= ROUNDS / 10, "{kind:?}: {n} allocations for {ROUNDS} round trips");
    assert_no_leaks(&ex);
}

/// The same round trips through the `futures-io` traits (`write_all` +
/// `flush`, `read_exact`), whose reads and writes go through the stream's
/// internal buffers: no allocation per operation either.
fn futures_io_transfers_allocate_nothing(kind: BackendKind) {
    use futures_util::io::{AsyncReadExt, AsyncWriteExt};
    const WARM_UP: usize = 64;
    let mut ex = executor(kind);
    let n = ex.block_on(async {
        let listener =
            rt::TcpListener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>().expect("literal")).expect("bind");
        let addr = listener
            .local_addr()
            .expect("address")
            .as_inet()
            .expect("an IP address");
        let client = rt::spawn(async move {
            let mut conn = rt::TcpStream::connect(addr).await.expect("connect");
            let mut reply = [0u8; 4];
            for i in 0..WARM_UP + ROUNDS as usize {
                if i == WARM_UP {
                    start_counting();
                }
                conn.write_all(b"ping").await.expect("write");
                conn.flush().await.expect("flush");
                conn.read_exact(&mut reply).await.expect("read");
                assert_eq!(&reply, b"ping");
            }
            stop_counting()
        });
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 4];
        for _ in 0..WARM_UP + ROUNDS as usize {
            conn.read_exact(&mut buf).await.expect("server read");
            conn.write_all(&buf).await.expect("server write");
            conn.flush().await.expect("server flush");
        }
        client.await.expect("the client task")
    });
    println!("{kind:?}: {n} allocations for {ROUNDS} futures-io round trips");
    assert!(n <= ROUNDS / 10, "{kind:?}: {n} allocations for {ROUNDS} round trips");
    assert_no_leaks(&ex);
}

contract_tests! {
    owned_transfers_allocate_nothing,
    futures_io_transfers_allocate_nothing,
    future_and_output_are_dropped_when_the_task_ends,
    stale_waker_reaches_nobody,
    spawn_then_await,
    spawn_batches_detached,
    executor_spawn_between_block_ons,
}
