//! The async layer's executor: `block_on`, local tasks and their join
//! handles, abort, yielding, `Send` futures spawned from other threads through
//! a `Spawner`, cross-thread wakers that must wake a parked loop, `turn`, and
//! what dropping the executor does to unfinished tasks.

mod util;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use eventcore::rt::{self, Executor};
use eventcore::{BackendKind, ExitReason, Status};
use util::rt::{assert_no_leaks, executor};

/// `block_on` returns the future's output; a future that needs no driver
/// completes without the loop waiting.
fn block_on_returns_output(kind: BackendKind) {
    let mut ex = executor(kind);
    assert_eq!(ex.block_on(async { 6 * 7 }), 42);
    let start = Instant::now();
    ex.block_on(rt::sleep(Duration::from_millis(20)));
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_no_leaks(&ex);
}

/// Spawned tasks run concurrently with the main future; their join handles
/// are futures of their outputs, in any order.
fn spawned_tasks_join(kind: BackendKind) {
    let mut ex = executor(kind);
    let log: Rc<RefCell<Vec<u32>>> = Rc::default();
    let total = ex.block_on({
        let log = log.clone();
        async move {
            let mut handles = Vec::new();
            for i in 0..5u32 {
                let log = log.clone();
                handles.push(rt::spawn(async move {
                    rt::sleep(Duration::from_millis(u64::from(50 - 10 * i))).await;
                    log.borrow_mut().push(i);
                    i * 10
                }));
            }
            let mut total = 0;
            for h in handles {
                total += h.await.expect("task");
            }
            total
        }
    });
    assert_eq!(total, 100);
    // The shortest sleep finished first.
    assert_eq!(*log.borrow(), vec![4, 3, 2, 1, 0]);
    assert_no_leaks(&ex);
}

/// A task whose handle was dropped keeps running; it finishes during a later
/// `block_on` if the first one returns before it.
fn detached_task_keeps_running(kind: BackendKind) {
    let mut ex = executor(kind);
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    drop(ex.spawn(async move {
        rt::sleep(Duration::from_millis(30)).await;
        d.set(true);
    }));
    ex.block_on(async {});
    assert!(!done.get(), "the task cannot have slept yet");
    ex.block_on(rt::sleep(Duration::from_millis(100)));
    assert!(done.get());
    assert_no_leaks(&ex);
}

/// Aborting a task drops its future at once: the timer it waited on is
/// released and its code after the await never runs.
fn abort_drops_the_task(kind: BackendKind) {
    let mut ex = executor(kind);
    let reached = Rc::new(Cell::new(false));
    let r = reached.clone();
    ex.block_on(async move {
        let task = rt::spawn(async move {
            rt::sleep(Duration::from_secs(10)).await;
            r.set(true);
        });
        rt::sleep(Duration::from_millis(10)).await;
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 1);
        task.abort();
        assert_eq!(rt::with_driver(|d| d.leak_report().timers), 0);
    });
    assert!(!reached.get());
    assert_no_leaks(&ex);
}

/// `yield_now` lets the other runnable tasks go first.
fn yield_now_interleaves(kind: BackendKind) {
    let mut ex = executor(kind);
    let log: Rc<RefCell<Vec<&str>>> = Rc::default();
    ex.block_on({
        let log = log.clone();
        async move {
            let l = log.clone();
            let a = rt::spawn(async move {
                for _ in 0..3 {
                    l.borrow_mut().push("a");
                    rt::yield_now().await;
                }
            });
            let l = log.clone();
            let b = rt::spawn(async move {
                for _ in 0..3 {
                    l.borrow_mut().push("b");
                    rt::yield_now().await;
                }
            });
            a.await.expect("task");
            b.await.expect("task");
        }
    });
    assert_eq!(*log.borrow(), vec!["a", "b", "a", "b", "a", "b"]);
}

/// A worker thread running an executor of `kind` until `stop` is notified:
/// its spawner, the stop handle and the thread (which checks for leaks).
fn worker(kind: BackendKind) -> (rt::Spawner, rt::NotifyHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut ex = Executor::new(util::driver(kind));
        ex.block_on(async move {
            let stop = rt::Notify::new();
            tx.send((rt::spawner(), stop.handle())).unwrap();
            stop.notified().await;
        });
        assert!(ex.leak_report().is_empty(), "worker leaked");
    });
    let (spawner, stop) = rx.recv().unwrap();
    (spawner, stop, worker)
}

/// A `Send` future spawned from this thread onto another thread's executor
/// runs there (on that thread, with that driver), and its handle delivers
/// the output back here, waking this loop.
fn spawner_runs_send_future_on_other_thread(kind: BackendKind) {
    let (spawner, stop, worker) = worker(kind);
    let mut ex = executor(kind);
    let here = std::thread::current().id();
    let (there, slept) = ex.block_on(async {
        // A plain Send future…
        let plain = spawner.spawn(async { std::thread::current().id() });
        assert_ne!(plain.expect("spawn").await.expect("output"), here);
        // …and one made on the worker, using the worker's driver.
        let h = spawner
            .spawn_with(|| async {
                let start = Instant::now();
                rt::sleep(Duration::from_millis(20)).await;
                (std::thread::current().id(), start.elapsed())
            })
            .expect("spawn");
        // The main thread's loop has nothing of its own to wait for: it must
        // park and be woken by the worker's wake through the Remote.
        h.await.expect("output")
    });
    assert_ne!(there, here);
    assert!(slept >= Duration::from_millis(20));
    stop.notify_one().unwrap();
    worker.join().unwrap();
    assert_no_leaks(&ex);
}

/// A spawner whose executor is gone refuses work with `DriverGone`; a task
/// that was queued but never ran reports `DriverGone` through its handle.
fn spawner_of_dropped_executor(kind: BackendKind) {
    let ex = executor(kind);
    let spawner = ex.spawner();
    let queued = spawner.spawn(async { 1 }).expect("queued");
    drop(ex);
    let err = spawner.spawn(async { 2 }).expect_err("refused");
    assert_eq!(err.status(), Status::DriverGone);
    let mut ex2 = executor(kind);
    let r = ex2.block_on(queued);
    assert_eq!(r.expect_err("dropped").status(), Status::DriverGone);
}

/// A minimal cross-thread one-shot: the value and the waker under a mutex.
#[derive(Default)]
struct OneShot {
    value: Mutex<(Option<u32>, Option<Waker>)>,
}

struct Recv(Arc<OneShot>);

impl Future for Recv {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        let mut g = self.0.value.lock().unwrap();
        if let Some(v) = g.0.take() {
            return Poll::Ready(v);
        }
        g.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A waker used from another thread wakes the loop, even though the driver
/// has nothing to wait for (the executor parks and the wake comes through
/// the driver's Remote).
fn cross_thread_waker_wakes_parked_loop(kind: BackendKind) {
    let mut ex = executor(kind);
    let shot = Arc::new(OneShot::default());
    let s = shot.clone();
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        // Wake only once the task waits (under load it may start late).
        let waker = loop {
            let mut g = s.value.lock().unwrap();
            if let Some(w) = g.1.take() {
                g.0 = Some(7);
                break w;
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(1));
        };
        waker.wake();
    });
    assert_eq!(ex.block_on(Recv(shot)), 7);
    assert!(start.elapsed() >= Duration::from_millis(50));
    sender.join().unwrap();
    assert_no_leaks(&ex);
}

/// `turn` runs tasks without `block_on`, for loops that are not the
/// executor's own.
fn turn_runs_tasks(kind: BackendKind) {
    let mut ex = executor(kind);
    let done = Rc::new(Cell::new(0));
    let d = done.clone();
    let _task = ex.spawn(async move {
        rt::sleep(Duration::from_millis(10)).await;
        d.set(1);
        rt::sleep(Duration::from_millis(10)).await;
        d.set(2);
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while done.get() < 2 {
        assert!(Instant::now() < deadline, "the task did not finish");
        ex.turn(Some(Duration::from_millis(50))).expect("turn");
    }
    assert_eq!(ex.turn(Some(Duration::ZERO)).expect("turn"), ExitReason::OutOfWaiters);
    assert_no_leaks(&ex);
}

struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Dropping the executor drops its unfinished tasks (and what they hold);
/// awaiting such a task's handle elsewhere gives `JoinError::Cancelled`
/// rather than hanging.
fn dropping_executor_drops_tasks(kind: BackendKind) {
    let ex = executor(kind);
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let handle = ex.spawn(async move {
        let _flag = flag;
        rt::sleep(Duration::from_secs(10)).await;
    });
    drop(ex);
    assert!(dropped.get(), "the task's future was dropped with the executor");
    let mut ex2 = executor(kind);
    let r = ex2.block_on(handle);
    assert!(r.expect_err("the task was dropped").is_cancelled());
}

/// A handle that outlives its executor still releases its driver resource
/// when dropped (the driver lives until its last handle is gone).
fn handle_outlives_executor(kind: BackendKind) {
    let mut ex = executor(kind);
    let ev = ex.block_on(async { rt::Event::new() });
    assert_eq!(ex.leak_report().events, 1);
    drop(ex);
    drop(ev);
}

/// Many threads spawn onto one executor at once, each waiting for its
/// results on an executor of its own; every task runs exactly once, on the
/// target thread.
fn spawner_from_many_threads(kind: BackendKind) {
    const THREADS: usize = 4;
    const TASKS: usize = 50;
    let mut ex = executor(kind);
    let spawner = ex.spawner();
    let target = std::thread::current().id();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let spawner = spawner.clone();
            std::thread::spawn(move || {
                let mut own = Executor::new(util::driver(kind));
                own.block_on(async move {
                    let handles: Vec<_> = (0..TASKS)
                        .map(|i| {
                            spawner
                                .spawn_with(move || async move {
                                    rt::yield_now().await;
                                    (std::thread::current().id(), t * TASKS + i)
                                })
                                .expect("spawn")
                        })
                        .collect();
                    let mut sum = 0;
                    for h in handles {
                        let (thread, n) = h.await.expect("output");
                        assert_eq!(thread, target);
                        sum += n;
                    }
                    sum
                })
            })
        })
        .collect();
    ex.block_on(async {
        // Keep the target loop running until every sender is done.
        while !senders.iter().all(|s| s.is_finished()) {
            rt::sleep(Duration::from_millis(1)).await;
        }
    });
    let total: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
    let n = THREADS * TASKS;
    assert_eq!(total, n * (n - 1) / 2);
    assert_no_leaks(&ex);
}

/// The cross-thread handles are `Send + Sync`.
#[allow(dead_code)]
fn cross_thread_handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<rt::Spawner>();
    check::<rt::RemoteJoinHandle<u32>>();
    check::<rt::EventTrigger>();
    check::<rt::NotifyHandle>();
}

/// A panicking task is reported through its `JoinHandle` (with its
/// payload); `block_on`, the other tasks and the executor go on.
fn task_panic_is_reported_through_its_handle(kind: BackendKind) {
    let mut ex = executor(kind);
    let out = ex.block_on(async {
        let bad = rt::spawn(async {
            rt::sleep(Duration::from_millis(2)).await;
            panic!("task panics");
        });
        let good = rt::spawn(async {
            rt::sleep(Duration::from_millis(10)).await;
            5
        });
        let as_io = rt::spawn(async { panic!("another panic") });
        let io: std::io::Error = as_io.await.unwrap_err().into();
        assert_eq!(io.to_string(), "the task panicked: another panic");
        let err = bad.await.expect_err("the task panicked");
        assert!(err.is_panic() && !err.is_cancelled());
        assert_eq!(err.to_string(), "the task panicked: task panics");
        let payload = err.into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task panics"));
        good.await.expect("the other task finished")
    });
    assert_eq!(out, 5);
    assert_eq!(
        ex.block_on(async { rt::spawn(async { 6 }).await.unwrap() }),
        6,
        "the executor goes on"
    );
    assert_no_leaks(&ex);
}

/// A task spawned through a `Spawner` that panics does not take its
/// executor down: the worker runs the next task, and the panic is resumed
/// where the handle is awaited (here inside a task, whose handle reports
/// it).
fn remote_task_panic_reaches_the_awaiting_side(kind: BackendKind) {
    let (spawner, stop, worker) = worker(kind);
    let mut ex = executor(kind);
    ex.block_on(async {
        let bad = spawner.spawn(async { panic!("remote task panics") }).expect("spawn");
        let err = rt::spawn(bad).await.expect_err("the panic reached this side");
        assert!(err.is_panic());
        assert_eq!(err.to_string(), "the task panicked: remote task panics");
        let good = spawner.spawn(async { 3 }).expect("spawn");
        assert_eq!(good.await.expect("the worker goes on"), 3);
    });
    stop.notify_one().unwrap();
    worker.join().expect("the worker thread did not panic");
}

/// `block_on` inside `block_on` on the same thread is refused with a clear
/// message, at the caller's line; the outer executor is usable afterwards.
fn nested_block_on_is_refused(kind: BackendKind) {
    let mut ex = executor(kind);
    let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ex.block_on(async {
            let mut inner = executor(kind);
            inner.block_on(async {});
        })
    }));
    let payload = nested.expect_err("a nested block_on panics");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains("block_on called inside block_on"), "{message}");
    assert_eq!(ex.block_on(async { 1 }), 1);
    assert_no_leaks(&ex);
}

contract_tests! {
    task_panic_is_reported_through_its_handle,
    remote_task_panic_reaches_the_awaiting_side,
    nested_block_on_is_refused,
    spawner_from_many_threads,
    block_on_returns_output,
    spawned_tasks_join,
    detached_task_keeps_running,
    abort_drops_the_task,
    yield_now_interleaves,
    spawner_runs_send_future_on_other_thread,
    spawner_of_dropped_executor,
    cross_thread_waker_wakes_parked_loop,
    turn_runs_tasks,
    dropping_executor_drops_tasks,
    handle_outlives_executor,
}
