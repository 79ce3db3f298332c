//! The worker pool: blocking work (file I/O, `getaddrinfo`, directory walks)
//! done off the loop thread.
//!
//! Jobs are closures that return a boxed result. A finished job's result is
//! queued with its token and the driver's waker is woken; the driver turns it
//! into a ready record, like any other completion. Cancelling a job is the
//! driver's business: it forgets the token, and the result is dropped when it
//! arrives. A job owns everything it touches (buffers are moved in and moved
//! back out in the result), so nothing the caller got back is ever written.
//!
//! Threads are started lazily, up to [`MAX_THREADS`] (libuv's default size),
//! and block every signal the OS lets them block, so a signal the driver
//! listens to is never delivered to a worker. When the driver is dropped the
//! pool is closed: idle workers exit, busy ones exit after their job.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::sys::Waker;

/// Most threads a pool starts.
pub(crate) const MAX_THREADS: usize = 4;

/// What a job returns; the submitting subsystem downcasts it.
pub(crate) type JobOutput = Box<dyn Any + Send>;
type Job = Box<dyn FnOnce() -> JobOutput + Send>;

struct State {
    queue: VecDeque<(u64, Job)>,
    threads: usize,
    idle: usize,
    open: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Mutex<Vec<(u64, JobOutput)>>,
    /// Set after a job's output is pushed; cleared by the driver before it
    /// takes the outputs.
    finished: AtomicBool,
    waker: Waker,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Jobs run outside the locks, so a poisoned lock only means a panic
    // between two plain field updates; the data is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    pub fn new(waker: Waker) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    open: true,
                }),
                work: Condvar::new(),
                done: Mutex::new(Vec::new()),
                finished: AtomicBool::new(false),
                waker,
            }),
        }
    }

    /// Queues `job`; its output comes back from [`Pool::take_done`] with `token`.
    pub fn submit(&self, token: u64, job: impl FnOnce() -> JobOutput + Send + 'static) {
        let mut state = lock(&self.shared.state);
        state.queue.push_back((token, Box::new(job)));
        if state.idle == 0 && state.threads < MAX_THREADS {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("eventcore-worker".into())
                .spawn(move || worker(shared));
            // If no thread can be started, the queued job waits for a running
            // worker; with none at all it is reported as failed by the caller's
            // next poll (the job never runs, so its token never completes).
            if spawned.is_ok() {
                state.threads += 1;
                state.idle += 1;
            }
        }
        drop(state);
        self.shared.work.notify_one();
    }

    /// Moves finished jobs into `out`.
    pub fn take_done(&self, out: &mut Vec<(u64, JobOutput)>) {
        // Most loop turns find nothing: look without taking the lock.
        if !self.shared.finished.load(Ordering::Acquire) || !self.shared.finished.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut done = lock(&self.shared.done);
        if !done.is_empty() {
            out.append(&mut done);
        }
    }

    /// Whether the pool has at least one thread (false if none could be started).
    pub fn has_threads(&self) -> bool {
        lock(&self.shared.state).threads > 0
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.open = false;
        state.queue.clear();
        drop(state);
        self.shared.work.notify_all();
    }
}

fn worker(shared: Arc<Shared>) {
    crate::sys::block_signals_in_worker();
    let mut state = lock(&shared.state);
    loop {
        if !state.open {
            state.threads -= 1;
            return;
        }
        let Some((token, job)) = state.queue.pop_front() else {
            state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        state.idle -= 1;
        drop(state);
        let output = job();
        lock(&shared.done).push((token, output));
        shared.finished.store(true, Ordering::Release);
        shared.waker.wake();
        state = lock(&shared.state);
        state.idle += 1;
    }
}
