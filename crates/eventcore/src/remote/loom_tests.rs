//! A loom model of the cross-thread wake-up: the real [`RemoteShared`] (its
//! lock, `pending` and `queued` are loom's types in this build), sender
//! threads calling its `send`, and a driver thread doing what
//! `Driver::process_events` does with it: wait in the backend, reset the
//! waker, take the messages. Two model wakers stand for the backends:
//!
//! - [`EventFd`]: the eventfd as epoll waits on it (level-triggered): `wake`
//!   makes it readable, the wait returns while it is readable, and the backend
//!   then reads it back to zero in a separate step.
//! - [`OneShotPoll`]: the eventfd behind io_uring's one-shot `POLL_ADD`, on a
//!   `DEFER_TASKRUN` ring: a wake fires the armed poll into task work that only
//!   an `io_uring_enter` of the driver runs; the driver reaps the CQE, reads the
//!   eventfd and queues the re-arm, which is submitted by the next enter and
//!   completes at once if the eventfd is readable by then. A zero-timeout poll
//!   skips the enter when nothing is queued and no task work is flagged.
//!
//! (The WinAPI backend's auto-reset event is the eventfd model with the read
//! folded into the wait, a subset of [`EventFd`]'s interleavings.)
//!
//! Every model checks: no lost wake-up (the driver takes every message; a
//! driver that waits forever while the senders are done is a deadlock, which
//! loom reports), no doubled delivery (each message is taken exactly once),
//! and `pending` back at zero. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p eventcore-driver --lib --release --target-dir target/loom loom`;
//! `LOOM_MAX_PREEMPTIONS` bounds the search (`cargo xtask test` uses 2, a
//! few seconds; 3 takes one to two minutes and passes too).

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use super::{Message, RemoteShared, Wake};
use crate::handle::Key;
use crate::EventId;

/// A model of the backend's wait and of the waker's reset.
trait ModelBackend: Wake + Send + Sync + 'static {
    fn new() -> Self;
    /// One backend poll of the driver: waits until woken if `block`, else
    /// looks without waiting; resets the waker when it saw a wake-up.
    fn poll(&self, block: bool);
}

/// The eventfd under epoll.
struct EventFd {
    count: Mutex<u64>,
    readable: Condvar,
}

impl Wake for EventFd {
    fn wake(&self) {
        *self.count.lock().unwrap() += 1;
        self.readable.notify_all();
    }
}

impl ModelBackend for EventFd {
    fn new() -> EventFd {
        EventFd {
            count: Mutex::new(0),
            readable: Condvar::new(),
        }
    }

    fn poll(&self, block: bool) {
        // epoll_wait: returns the eventfd while it is readable.
        let seen = {
            let mut count = self.count.lock().unwrap();
            while block && *count == 0 {
                count = self.readable.wait(count).unwrap();
            }
            *count > 0
        };
        // The backend then reads the counter back to zero: a system call of
        // its own, so a wake may come in between (and is reset with it).
        if seen {
            *self.count.lock().unwrap() = 0;
        }
    }
}

/// The kernel's side of the io_uring waker, and the driver's submission queue.
#[derive(Default)]
struct Ring {
    /// The eventfd's counter.
    count: u64,
    /// The one-shot `POLL_ADD` is armed in the kernel.
    armed: bool,
    /// The poll fired: its completion is deferred task work (`TASKRUN_FLAG`).
    task_work: bool,
    /// Its CQE is in the completion ring.
    cqe: bool,
    /// The driver's re-arm SQE, queued and not yet submitted.
    rearm_queued: bool,
}

/// The eventfd behind io_uring's one-shot poll.
struct OneShotPoll {
    ring: Mutex<Ring>,
    woken: Condvar,
}

impl Wake for OneShotPoll {
    fn wake(&self) {
        let mut ring = self.ring.lock().unwrap();
        ring.count += 1;
        if ring.armed {
            ring.armed = false;
            ring.task_work = true;
            self.woken.notify_all();
        }
    }
}

impl ModelBackend for OneShotPoll {
    fn new() -> OneShotPoll {
        OneShotPoll {
            // `Backend::new` arms the waker's poll.
            ring: Mutex::new(Ring {
                armed: true,
                ..Ring::default()
            }),
            woken: Condvar::new(),
        }
    }

    fn poll(&self, block: bool) {
        {
            let mut ring = self.ring.lock().unwrap();
            // `enter` with a zero timeout: no system call when nothing is
            // queued and no task work is flagged.
            let skip = !block && !ring.rearm_queued && !ring.task_work;
            if !skip {
                // io_uring_enter submits the re-arm: a poll of a readable
                // eventfd completes at once, else it is armed.
                if std::mem::take(&mut ring.rearm_queued) {
                    if ring.count > 0 {
                        ring.cqe = true;
                    } else {
                        ring.armed = true;
                    }
                }
                // Waiting for one CQE runs the deferred task work.
                while block && !ring.task_work && !ring.cqe {
                    ring = self.woken.wait(ring).unwrap();
                }
                if std::mem::take(&mut ring.task_work) {
                    ring.cqe = true;
                }
            }
        }
        // `reap`: the waker's CQE drains the eventfd and queues the re-arm,
        // each a step of its own.
        let cqe = std::mem::take(&mut self.ring.lock().unwrap().cqe);
        if cqe {
            self.ring.lock().unwrap().count = 0;
            self.ring.lock().unwrap().rearm_queued = true;
        }
    }
}

fn message(id: usize) -> Message {
    Message::Trigger {
        event: EventId(Key::from_u64(id as u64, 0)),
        notify_all: false,
    }
}

fn id_of(msg: &Message) -> usize {
    match msg {
        Message::Trigger { event, .. } => event.0.index as usize,
        _ => unreachable!("the model sends triggers only"),
    }
}

/// The driver's loop until it has taken `expected` messages: a turn with
/// callbacks ready takes the queue first and polls without waiting (the fast
/// path of `process_events`), an idle turn waits in the backend; both take the
/// queue after the poll. Each take is handled at once, as `drain_remote` does;
/// `taken` is called with each message's id. Returns how many times each id
/// was taken.
fn drive<B: ModelBackend>(shared: &RemoteShared<B>, expected: usize, mut taken: impl FnMut(usize)) -> Vec<usize> {
    let mut seen = vec![0; expected];
    let mut busy = false;
    while seen.iter().sum::<usize>() < expected {
        let mut got = 0;
        if busy {
            got += take(shared, &mut seen, &mut taken);
        }
        shared.waker.poll(!busy);
        got += take(shared, &mut seen, &mut taken);
        busy = got > 0;
    }
    // Nothing is left to take, and nothing is counted as pending.
    shared.waker.poll(false);
    let mut inbox = Vec::new();
    shared.take_messages(&mut inbox);
    assert!(inbox.is_empty(), "a message was delivered twice");
    assert_eq!(shared.pending(), 0);
    seen
}

/// One `drain_remote`: takes the queue into an empty inbox and handles every
/// message; returns how many there were.
fn take<B: ModelBackend>(shared: &RemoteShared<B>, seen: &mut [usize], taken: &mut impl FnMut(usize)) -> usize {
    let mut inbox = Vec::new();
    shared.take_messages(&mut inbox);
    let got = inbox.len();
    for msg in inbox {
        let id = id_of(&msg);
        seen[id] += 1;
        taken(id);
    }
    let left = seen.len().saturating_sub(seen.iter().sum());
    assert!(shared.pending() <= left, "pending counts more than what is queued");
    got
}

/// `senders` threads each send `per_sender` messages at will; the driver
/// takes them all, each once.
fn burst<B: ModelBackend>(senders: usize, per_sender: usize) {
    loom::model(move || {
        let shared = Arc::new(RemoteShared::new(B::new()));
        let threads: Vec<_> = (0..senders)
            .map(|s| {
                let shared = shared.clone();
                thread::spawn(move || {
                    for i in 0..per_sender {
                        shared.send(message(s * per_sender + i)).unwrap();
                    }
                })
            })
            .collect();
        let seen = drive(&*shared, senders * per_sender, |_| {});
        assert!(seen.iter().all(|&n| n == 1), "taken: {seen:?}");
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(shared.pending(), 0);
    });
}

/// One sender sends `rounds` messages, each only once the driver has taken
/// the one before: the driver is idle in its wait for each, so every message
/// is the first after a take and must wake it on its own.
fn ping_pong<B: ModelBackend>(rounds: usize) {
    loom::model(move || {
        let shared = Arc::new(RemoteShared::new(B::new()));
        let acks = Arc::new((Mutex::new(0usize), Condvar::new()));
        let sender = {
            let (shared, acks) = (shared.clone(), acks.clone());
            thread::spawn(move || {
                for i in 0..rounds {
                    shared.send(message(i)).unwrap();
                    let (taken, cond) = &*acks;
                    let mut taken = taken.lock().unwrap();
                    while *taken <= i {
                        taken = cond.wait(taken).unwrap();
                    }
                }
            })
        };
        let seen = drive(&*shared, rounds, |_| {
            let (taken, cond) = &*acks;
            *taken.lock().unwrap() += 1;
            cond.notify_all();
        });
        assert!(seen.iter().all(|&n| n == 1), "taken: {seen:?}");
        sender.join().unwrap();
    });
}

/// A sender races the driver's shutdown: its message is refused
/// (`DriverGone`) or queued and dropped, and `pending` ends at zero either way.
fn shutdown_race<B: ModelBackend>() {
    loom::model(|| {
        let shared = Arc::new(RemoteShared::new(B::new()));
        let sender = {
            let shared = shared.clone();
            thread::spawn(move || shared.send(message(0)).is_ok())
        };
        shared.shut_down();
        let sent = sender.join().unwrap();
        assert_eq!(shared.pending(), 0);
        // Once shut down, nothing more is accepted.
        assert!(shared.send(message(1)).is_err());
        let mut inbox = Vec::new();
        shared.take_messages(&mut inbox);
        assert!(inbox.is_empty(), "a message survived the shutdown (sent: {sent})");
    });
}

/// The same four models for each wake-up design.
macro_rules! loom_cases {
    ($design:ty: $two:ident, $three:ident, $ping_pong:ident, $shutdown:ident) => {
        #[test]
        fn $two() {
            burst::<$design>(2, 2);
        }

        #[test]
        fn $three() {
            burst::<$design>(3, 1);
        }

        #[test]
        fn $ping_pong() {
            ping_pong::<$design>(3);
        }

        #[test]
        fn $shutdown() {
            shutdown_race::<$design>();
        }
    };
}

loom_cases!(EventFd: loom_eventfd_two_senders, loom_eventfd_three_senders, loom_eventfd_ping_pong, loom_eventfd_shutdown);
loom_cases!(OneShotPoll: loom_uring_two_senders, loom_uring_three_senders, loom_uring_ping_pong, loom_uring_shutdown);
