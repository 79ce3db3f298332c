//! Stress tests of the cross-thread wake-up, on every backend: many threads
//! calling `Remote::trigger` and `Remote::run_in_owner_thread` at once, and a
//! ping-pong where the loop is idle in its wait for every single message.
//!
//! Every wake-up must arrive exactly once and within [`BOUND`]. The loop waits
//! longer than that ([`LOOP_WAIT`]) in each `process_events`, so a lost
//! wake-up is not hidden by a timeout that takes the queue anyway. Each
//! scenario prints how long the wake-ups took (median, 99th percentile,
//! worst); run with `--nocapture` to see the figures.

mod util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, Driver, EventId, ExitReason, Remote};
use util::{assert_no_leaks, driver, under_wine};

/// Every message must reach the loop within this.
const BOUND: Duration = Duration::from_secs(2);

/// How long one `process_events` may wait: longer than [`BOUND`], so that a
/// lost wake-up makes a message late instead of being covered by the
/// timeout's own turn of the loop.
const LOOP_WAIT: Duration = Duration::from_secs(3);

/// Sender threads of [`remote_stress_many_threads`].
const THREADS: usize = 8;

/// Rounds per sender thread, and ping-pong rounds. Wine's wait and thread
/// switches are much slower than the native ones, so it does fewer.
fn rounds() -> (usize, usize) {
    if under_wine() {
        (500, 1500)
    } else {
        (2500, 5000)
    }
}

/// What the senders and the loop share: the latency of every wake-up, whether
/// a sender gave up, and how many senders the loop knows to be done.
#[derive(Default)]
struct Shared {
    latencies: Mutex<Vec<Duration>>,
    failed: AtomicBool,
    done: AtomicUsize,
}

impl Shared {
    fn record(&self, sent: Instant) {
        self.latencies.lock().unwrap().push(sent.elapsed());
    }
}

/// One sender's slot: when its trigger was sent. The waiter takes it, so a
/// second wake-up for one trigger finds it empty.
type Slot = Arc<Mutex<Option<(usize, Instant)>>>;

/// Registers a waiter on `e` that takes the trigger's slot, records the
/// latency, registers the next waiter and answers round `round` on `ack`.
fn arm(drv: &mut Driver, e: EventId, slot: Slot, shared: Arc<Shared>, ack: mpsc::Sender<usize>) {
    drv.events()
        .wait(e, move |drv, e| {
            let (round, sent) = slot
                .lock()
                .unwrap()
                .take()
                .expect("a waiter was woken without a trigger (a trigger delivered twice?)");
            shared.record(sent);
            arm(drv, e, slot, shared, ack.clone());
            let _ = ack.send(round);
        })
        .unwrap();
}

/// A sender's rounds: even rounds trigger the sender's event (whose waiter
/// answers), odd ones run a closure on the loop's thread (which answers);
/// every round waits for its answer, at most [`BOUND`].
fn sender(
    remote: Remote,
    e: EventId,
    slot: Slot,
    ack: (mpsc::Sender<usize>, mpsc::Receiver<usize>),
    shared: Arc<Shared>,
    rounds: usize,
    idle_every: usize,
) -> Result<(), String> {
    let (ack_tx, ack_rx) = ack;
    let owner = remote_owner_thread(&remote, &ack_rx)?;
    for round in 0..rounds {
        if idle_every > 0 && round % idle_every == idle_every - 1 {
            // Long enough for the loop to be back in its wait.
            thread::sleep(Duration::from_micros(300));
        }
        let sent = Instant::now();
        if round % 2 == 0 {
            *slot.lock().unwrap() = Some((round, sent));
            remote.trigger(e, false).map_err(|err| format!("trigger: {err}"))?;
        } else {
            let (shared, ack) = (shared.clone(), ack_tx.clone());
            remote
                .run_in_owner_thread(move |_| {
                    assert_eq!(thread::current().id(), owner, "ran off the loop's thread");
                    shared.record(sent);
                    let _ = ack.send(round);
                })
                .map_err(|err| format!("run_in_owner_thread: {err}"))?;
        }
        match ack_rx.recv_timeout(BOUND) {
            Ok(r) if r == round => {}
            Ok(r) => return Err(format!("round {round} was answered as round {r}")),
            Err(_) => return Err(format!("round {round} was not answered within {BOUND:?}")),
        }
    }
    Ok(())
}

/// The loop's thread id, asked of the loop itself (answered on `ack`).
fn remote_owner_thread(remote: &Remote, ack: &mpsc::Receiver<usize>) -> Result<thread::ThreadId, String> {
    let (tx, rx) = mpsc::channel();
    remote
        .run_in_owner_thread(move |_| {
            let _ = tx.send(thread::current().id());
        })
        .map_err(|err| format!("run_in_owner_thread: {err}"))?;
    let id = rx
        .recv_timeout(BOUND)
        .map_err(|_| "the loop's thread id was not answered".to_owned())?;
    // Nothing else may have been answered yet.
    assert!(ack.try_recv().is_err());
    Ok(id)
}

/// Runs `threads` senders of `rounds` rounds each against a loop on `kind`,
/// and prints the latencies as `label`.
fn stress(kind: BackendKind, label: &str, threads: usize, rounds: usize, idle_every: usize) {
    let mut drv = driver(kind);
    let shared = Arc::new(Shared::default());
    let mut turns = 0;
    let mut events = Vec::new();
    let mut handles = Vec::new();
    let started = Instant::now();
    for _ in 0..threads {
        let e = drv.events().create();
        let slot: Slot = Arc::default();
        let (ack_tx, ack_rx) = mpsc::channel();
        arm(&mut drv, e, slot.clone(), shared.clone(), ack_tx.clone());
        let (remote, shared) = (drv.remote(), shared.clone());
        handles.push(thread::spawn(move || {
            let result = sender(
                remote.clone(),
                e,
                slot,
                (ack_tx, ack_rx),
                shared.clone(),
                rounds,
                idle_every,
            );
            if result.is_err() {
                shared.failed.store(true, Ordering::Release);
            }
            // Tells the loop, on its thread, that this sender is done.
            let _ = remote.run_in_owner_thread(move |_| {
                shared.done.fetch_add(1, Ordering::AcqRel);
            });
            result
        }));
        events.push(e);
    }
    // The loop: runs until every sender is done or one gave up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while shared.done.load(Ordering::Acquire) < threads && !shared.failed.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "{label}: the senders did not finish");
        let reason = drv.process_events(Some(LOOP_WAIT)).expect("process_events");
        assert_ne!(reason, ExitReason::OutOfWaiters);
        turns += 1;
    }
    let elapsed = started.elapsed();
    let mut failures = Vec::new();
    for h in handles {
        // A sender still waiting for an answer gives up after BOUND.
        if let Err(err) = h.join().expect("sender thread panicked") {
            failures.push(err);
        }
    }
    // Run what is still queued, then clean up.
    while drv.process_events(Some(Duration::ZERO)).expect("process_events") == ExitReason::Idle {}
    for e in events {
        assert!(!drv.release_ref(e).unwrap());
    }
    assert_no_leaks(&drv);
    assert!(failures.is_empty(), "{label} on {}: {failures:?}", kind.name());

    let mut latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    assert_eq!(latencies.len(), threads * rounds, "every round answered once");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let worst = *latencies.last().unwrap();
    println!(
        "remote_stress {} {label}: {} wake-ups ({threads} threads x {rounds}) in {:.2} s, {} loop turns; \
         latency median {:?}, p99 {:?}, worst {worst:?}",
        kind.name(),
        latencies.len(),
        elapsed.as_secs_f64(),
        turns,
        at(0.5),
        at(0.99),
    );
    assert!(worst < BOUND, "{label} on {}: a wake-up took {worst:?}", kind.name());
}

/// [`THREADS`] threads trigger their own event (whose waiter answers) and run
/// closures on the loop's thread, all at once: wake-ups coalesce, and every
/// message must still be taken exactly once.
fn remote_stress_many_threads(kind: BackendKind) {
    stress(kind, "many threads", THREADS, rounds().0, 0);
}

/// One thread, one message at a time, each sent only once the previous one
/// was answered (and every fourth after a pause, when the loop is surely
/// asleep): the loop is idle for each, so every message is the first since the
/// loop last took the queue and must wake it on its own.
fn remote_stress_ping_pong(kind: BackendKind) {
    stress(kind, "ping-pong", 1, rounds().1, 4);
}

contract_tests! {
    remote_stress_many_threads,
    remote_stress_ping_pong,
}
