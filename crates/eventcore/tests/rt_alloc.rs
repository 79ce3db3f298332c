//! What spawning a local task costs in heap allocations: at most one per
//! spawn in the steady state (the task's slot and its waker recycled, the
//! executor's queues grown to size), for a future that allocates nothing
//! itself. Counted by a `#[global_allocator]` that counts the allocations
//! (and reallocations) of the current thread only, while a section is being
//! measured, so the other tests' threads and the watchdog add nothing.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;

use eventcore::rt;
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

/// The same through `Executor::spawn`, between `block_on` calls.
fn executor_spawn_between_block_ons(kind: BackendKind) {
    let mut ex = executor(kind);
    for _ in 0..64 {
        let h = ex.spawn(async { 2u64 });
        assert_eq!(ex.block_on(h).expect("the task"), 2);
    }
    let mut total = 0;
    start_counting();
    for _ in 0..ROUNDS {
        let h = ex.spawn(async { 2u64 });
        total += ex.block_on(h).expect("the task");
    }
    let n = stop_counting();
    println!("{kind:?}: Executor::spawn, then block_on: {n} allocations for {ROUNDS} spawns");
    assert_eq!(total, 2 * ROUNDS);
    // `block_on` itself allocates its own waker: one more per round.
    assert!(n <= 2 * ROUNDS, "{kind:?}: {n} allocations for {ROUNDS} spawns and block_ons");
    assert_no_leaks(&ex);
}

contract_tests! {
    spawn_then_await,
    spawn_batches_detached,
    executor_spawn_between_block_ons,
}
