//! Contract tests for DNS lookups: `localhost`, address literals, a name
//! that cannot resolve, a name with a NUL byte, cancellation, and 1,000
//! lookups at once.
//!
//! Ports `0-dns.d` without its network access: no query may leave the
//! machine. `localhost` (answered from `/etc/hosts`), address literals and
//! names rejected before the resolver runs are safe anywhere; a name under
//! `.invalid` and the burst of lookups run only inside the test network
//! namespace, where the resolver points at a closed port on loopback.

mod util;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, Driver, ExitReason, LookupId, Result, Status};
use util::{assert_no_leaks, driver, in_test_netns, run_until_not_idle, DropCounter};

const LIMIT: Duration = Duration::from_secs(20);

type Answer = Rc<RefCell<Vec<(LookupId, Result<Vec<IpAddr>>)>>>;

/// Looks `name` up, checks that the callback runs from `process_events`
/// (exactly once, with the id `lookup` returned) and that the loop then ends
/// `OutOfWaiters` with nothing left; returns the result.
fn lookup(drv: &mut Driver, name: &str) -> Result<Vec<IpAddr>> {
    let answers: Answer = Rc::default();
    let a = answers.clone();
    let id = drv.dns().lookup(name, move |_, id, r| a.borrow_mut().push((id, r)));
    assert!(answers.borrow().is_empty(), "callback ran inside lookup()");
    assert_eq!(drv.waiter_count(), 1, "a pending lookup is a waiter");
    assert_eq!(run_until_not_idle(drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(drv);
    let mut answers = answers.borrow_mut();
    assert_eq!(answers.len(), 1, "exactly one callback");
    let (got_id, r) = answers.pop().unwrap();
    assert_eq!(got_id, id, "the callback gets the lookup's id");
    r
}

/// `localhost` resolves (from `/etc/hosts`) to loopback addresses only,
/// 127.0.0.1 among them. Inside the test namespace that is all it resolves
/// to; outside, `::1` may come too. The loop then reaches `OutOfWaiters`.
fn dns_lookup_localhost(kind: BackendKind) {
    let mut drv = driver(kind);
    let addrs = lookup(&mut drv, "localhost").expect("localhost resolves");
    assert!(
        addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "localhost → {addrs:?}"
    );
    assert!(addrs.iter().all(|a| a.is_loopback()), "only loopback: {addrs:?}");
    let mut sorted = addrs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), addrs.len(), "no duplicates: {addrs:?}");
}

/// Address literals resolve to themselves, IPv4 and IPv6, without a query.
fn dns_literal_addresses_resolve_to_themselves(kind: BackendKind) {
    let mut drv = driver(kind);
    assert_eq!(
        lookup(&mut drv, "127.0.0.1").unwrap(),
        [IpAddr::V4(Ipv4Addr::LOCALHOST)]
    );
    assert_eq!(lookup(&mut drv, "::1").unwrap(), [IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    assert_eq!(
        lookup(&mut drv, "127.1.2.3").unwrap(),
        [IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3))]
    );
}

/// A name under `.invalid` (RFC 6761: never resolves) fails with an error
/// that keeps the resolver's code (or the OS code). Namespace only: outside
/// it the query could leave the machine.
fn dns_invalid_name_fails_with_resolver_code(kind: BackendKind) {
    if !in_test_netns("dns_invalid_name_fails_with_resolver_code") {
        return;
    }
    let mut drv = driver(kind);
    let start = Instant::now();
    let e = lookup(&mut drv, "no-such-host.eventcore-test.invalid").expect_err("a .invalid name must not resolve");
    eprintln!("lookup of .invalid failed after {:?}: {e}", start.elapsed());
    assert!(
        e.resolver_code().is_some() || e.raw_os_error().is_some(),
        "the error keeps the resolver's or the OS's code: {e}"
    );
    assert_ne!(e.status(), Status::InvalidHandle);
}

/// A name with a NUL byte is `InvalidArgument`, reported through the
/// callback from `process_events` — never from inside `lookup`, never a panic.
fn dns_name_with_nul_byte_is_invalid_argument(kind: BackendKind) {
    let mut drv = driver(kind);
    let e = lookup(&mut drv, "local\0host").expect_err("a NUL byte is invalid");
    assert_eq!(e.status(), Status::InvalidArgument, "{e}");
}

/// A cancelled lookup's callback never runs (and is freed at once); the loop
/// ends `OutOfWaiters` right away, and the worker's late result is dropped
/// silently. A second cancel, or a cancel of a finished lookup, returns
/// false. Uses an address literal so it is safe anywhere.
fn dns_cancel_lookup(kind: BackendKind) {
    let mut drv = driver(kind);
    let ran = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(0));
    let (r, d) = (ran.clone(), DropCounter(dropped.clone()));
    let id = drv.dns().lookup("127.0.0.1", move |_, _, _| {
        let _d = &d;
        r.set(true);
    });
    assert!(drv.dns().cancel_lookup(id), "the lookup was pending");
    assert_eq!(dropped.get(), 1, "the cancelled callback is freed");
    assert!(!drv.dns().cancel_lookup(id), "nothing left to cancel");
    assert_eq!(drv.waiter_count(), 0);
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);

    // Keep the loop alive long enough for the worker's result to come back.
    let keep = drv.timers().create();
    drv.timers()
        .set(keep, Duration::from_millis(200), Duration::ZERO)
        .unwrap();
    while drv.timers().is_pending(keep) {
        drv.process_events(Some(Duration::from_millis(250))).unwrap();
    }
    assert!(!drv.dns().cancel_lookup(id));
    drv.release_ref(keep).unwrap();
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert!(!ran.get(), "a cancelled lookup's callback must never run");

    // A finished lookup cannot be cancelled.
    let done = Rc::new(Cell::new(0));
    let d = done.clone();
    let id = drv.dns().lookup("::1", move |_, _, _| d.set(d.get() + 1));
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_eq!(done.get(), 1);
    assert!(!drv.dns().cancel_lookup(id));
    assert_no_leaks(&drv);
}

/// Cancelling one of several lookups leaves the others alone: they complete,
/// each exactly once, and only the cancelled one stays silent.
fn dns_cancel_one_of_several(kind: BackendKind) {
    let mut drv = driver(kind);
    let answers: Answer = Rc::default();
    let mut ids = Vec::new();
    for name in ["127.0.0.1", "::1", "127.0.0.2", "127.0.0.3"] {
        let a = answers.clone();
        ids.push(drv.dns().lookup(name, move |_, id, r| a.borrow_mut().push((id, r))));
    }
    assert!(drv.dns().cancel_lookup(ids[1]));
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    let answers = answers.borrow();
    let got: Vec<LookupId> = answers.iter().map(|(id, _)| *id).collect();
    assert_eq!(got.len(), 3, "three callbacks: {got:?}");
    for id in [ids[0], ids[2], ids[3]] {
        assert!(got.contains(&id), "lookup {id:?} completed");
    }
    assert!(!got.contains(&ids[1]), "the cancelled lookup stayed silent");
    assert!(answers.iter().all(|(_, r)| r.is_ok()));
    assert_no_leaks(&drv);
}

/// 1,000 lookups of `localhost` at once all complete, each exactly once and
/// with the id `lookup` returned, none inside `lookup`; the loop ends
/// `OutOfWaiters`. Namespace only, so that not even a misconfigured resolver
/// can send a query out.
fn dns_thousand_concurrent_lookups(kind: BackendKind) {
    if !in_test_netns("dns_thousand_concurrent_lookups") {
        return;
    }
    const N: usize = 1000;
    let mut drv = driver(kind);
    let calls: Rc<RefCell<HashMap<LookupId, usize>>> = Rc::default();
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        let c = calls.clone();
        ids.push(drv.dns().lookup("localhost", move |_, id, r| {
            let addrs = r.expect("localhost resolves");
            assert!(addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
            *c.borrow_mut().entry(id).or_default() += 1;
        }));
    }
    assert!(calls.borrow().is_empty(), "no callback inside lookup()");
    assert_eq!(drv.waiter_count(), N);
    let start = Instant::now();
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    eprintln!("{N} lookups took {:?}", start.elapsed());
    let calls = calls.borrow();
    assert_eq!(calls.len(), N, "every lookup completed");
    for id in &ids {
        assert_eq!(calls.get(id), Some(&1), "lookup {id:?} ran exactly once");
    }
    assert_no_leaks(&drv);
}

/// Dropping the driver with lookups in flight neither crashes nor hangs;
/// their callbacks never run.
fn dns_driver_dropped_with_lookups_in_flight(kind: BackendKind) {
    let ran = Rc::new(Cell::new(0));
    {
        let mut drv = driver(kind);
        for name in ["127.0.0.1", "::1", "localhost"] {
            let r = ran.clone();
            drv.dns().lookup(name, move |_, _, _| r.set(r.get() + 1));
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ran.get(), 0);
}

/// A lookup started from another lookup's callback completes too.
fn dns_lookup_from_callback(kind: BackendKind) {
    let mut drv = driver(kind);
    let got: Rc<RefCell<Vec<IpAddr>>> = Rc::default();
    let g = got.clone();
    drv.dns().lookup("127.0.0.1", move |drv, _, r| {
        g.borrow_mut().extend(r.unwrap());
        let g = g.clone();
        drv.dns()
            .lookup("::1", move |_, _, r| g.borrow_mut().extend(r.unwrap()));
    });
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_eq!(
        *got.borrow(),
        [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
    );
    assert_no_leaks(&drv);
}

contract_tests! {
    dns_lookup_localhost,
    dns_literal_addresses_resolve_to_themselves,
    dns_invalid_name_fails_with_resolver_code,
    dns_name_with_nul_byte_is_invalid_argument,
    dns_cancel_lookup,
    dns_cancel_one_of_several,
    dns_thousand_concurrent_lookups,
    dns_lookup_from_callback,
    dns_driver_dropped_with_lookups_in_flight,
}
