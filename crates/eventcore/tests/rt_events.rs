//! The async layer's events and notifications: FIFO waiters, notify-one and
//! notify-all, a wait registered before its first poll, triggers from another
//! thread, `Notify` permits in both orders and across threads, and waits
//! dropped at each state (registered, woken but not polled).

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use eventcore::rt::{self, Event, Notify};
use eventcore::BackendKind;
use util::rt::{assert_no_leaks, executor, pending_ops, poll_once};

/// Waiters are woken in the order they started waiting, one per
/// `notify_one`; `notify_all` wakes everyone waiting at that moment.
fn event_fifo_and_notify_all(kind: BackendKind) {
    let mut ex = executor(kind);
    let log: Rc<RefCell<Vec<u32>>> = Rc::default();
    ex.block_on({
        let log = log.clone();
        async move {
            let ev = Rc::new(Event::new());
            let mut tasks = Vec::new();
            for i in 0..3 {
                let (ev, log) = (ev.clone(), log.clone());
                tasks.push(rt::spawn(async move {
                    ev.wait().await;
                    log.borrow_mut().push(i);
                }));
                // Let the task register its wait before the next one.
                rt::yield_now().await;
            }
            ev.notify_one();
            rt::sleep(Duration::from_millis(5)).await;
            assert_eq!(*log.borrow(), vec![0]);
            ev.notify_all();
            for t in tasks {
                t.await.expect("task");
            }
            assert_eq!(*log.borrow(), vec![0, 1, 2]);
        }
    });
    assert_no_leaks(&ex);
}

/// `Event::wait` registers at the call: a notification sent before the first
/// poll is not missed.
fn event_wait_registers_at_call(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let ev = Event::new();
        let w = ev.wait();
        ev.notify_one();
        rt::timeout(Duration::from_secs(5), w)
            .await
            .expect("the early notification reached the wait");
    });
    assert_no_leaks(&ex);
}

/// Another thread notifies through an `EventTrigger`: each single
/// notification wakes one waiter.
fn event_trigger_from_other_thread(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let ev = Rc::new(Event::new());
        let waits: Vec<_> = (0..2)
            .map(|_| {
                let ev = ev.clone();
                rt::spawn(async move { ev.wait().await })
            })
            .collect();
        rt::yield_now().await;
        let trigger = ev.trigger_handle();
        let t = std::thread::spawn(move || {
            trigger.notify_one().unwrap();
            trigger.notify_one().unwrap();
        });
        for w in waits {
            rt::timeout(Duration::from_secs(5), w)
                .await
                .expect("woken by the other thread")
                .expect("task");
        }
        t.join().unwrap();
    });
    assert_no_leaks(&ex);
}

/// `Notify` keeps permits: a notification before the wait is not lost, and
/// each permit releases exactly one `notified`.
fn notify_permits(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let n = Notify::new();
        n.notify_one();
        n.notify_one();
        n.notified().await;
        n.notified().await;
        assert_eq!(n.permits(), 0);
        let mut third = Box::pin(n.notified());
        assert!(poll_once(&mut third).await.is_pending());
        n.notify_one();
        rt::timeout(Duration::from_secs(5), third).await.expect("notified");
    });
    assert_no_leaks(&ex);
}

/// Many notifications from another thread release as many waits, whatever
/// the interleaving of sending and waiting.
fn notify_across_threads(kind: BackendKind) {
    const N: usize = 200;
    let mut ex = executor(kind);
    ex.block_on(async {
        let n = Notify::new();
        let handle = n.handle();
        let t = std::thread::spawn(move || {
            for i in 0..N {
                handle.notify_one().unwrap();
                if i % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        for _ in 0..N {
            rt::timeout(Duration::from_secs(5), n.notified())
                .await
                .expect("every notification arrives");
        }
        t.join().unwrap();
        assert_eq!(n.permits(), 0);
    });
    assert_no_leaks(&ex);
}

/// An event wait dropped at each state: registered but never polled,
/// polled and pending (both withdraw the wait: a later notification goes to
/// the next waiter), and chosen by a notification but not polled (the
/// notification is consumed with it).
fn event_wait_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let ev = Event::new();
        // Registered at the call, never polled.
        let w = ev.wait();
        assert_eq!(pending_ops(), 1);
        drop(w);
        assert_eq!(pending_ops(), 0);
        // Polled, pending.
        let mut w = ev.wait();
        assert!(poll_once(&mut w).await.is_pending());
        drop(w);
        assert_eq!(pending_ops(), 0);
        // The withdrawn waits do not swallow the next notification.
        let w = ev.wait();
        ev.notify_one();
        rt::timeout(Duration::from_secs(5), w).await.expect("woken");
        // Chosen, not polled.
        let w = ev.wait();
        ev.notify_one();
        rt::sleep(Duration::from_millis(5)).await;
        assert!(w.is_notified());
        assert_eq!(pending_ops(), 0);
        drop(w);
    });
    assert_no_leaks(&ex);
}

/// A `notified` that a notification woke but that is dropped before it is
/// polled passes the wake-up on: the permit reaches the next waiter.
fn notified_dropped_after_wake_passes_it_on(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let n = Rc::new(Notify::new());
        let mut first = Box::pin(n.notified());
        assert!(poll_once(&mut first).await.is_pending());
        let n2 = n.clone();
        let second = rt::spawn(async move { n2.notified().await });
        rt::yield_now().await;
        n.notify_one();
        rt::sleep(Duration::from_millis(5)).await;
        // The trigger chose `first`; it is dropped without taking the permit.
        drop(first);
        rt::timeout(Duration::from_secs(5), second)
            .await
            .expect("the permit went to the second waiter")
            .expect("task");
        assert_eq!(n.permits(), 0);
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    event_fifo_and_notify_all,
    event_wait_registers_at_call,
    event_trigger_from_other_thread,
    notify_permits,
    notify_across_threads,
    event_wait_dropped_at_each_state,
    notified_dropped_after_wake_passes_it_on,
}
