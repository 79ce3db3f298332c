//! The async layer's DNS lookups: `localhost`, address literals, a failing
//! name (only inside the test namespace, where nothing answers), many lookups
//! at once, and a lookup dropped at each state.

mod util;

use std::net::IpAddr;

use eventcore::rt::{self};
use eventcore::BackendKind;
use util::rt::{assert_no_leaks, executor, pending_ops, poll_once, until, LIMIT};

/// `localhost` resolves to loopback addresses; literals to themselves.
fn lookup_localhost_and_literals(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addrs = rt::timeout(LIMIT, rt::lookup("localhost"))
            .await
            .expect("in time")
            .expect("localhost resolves");
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(IpAddr::is_loopback), "{addrs:?}");
        let v6 = rt::lookup("::1").await.expect("literal");
        assert_eq!(v6, vec!["::1".parse::<IpAddr>().unwrap()]);
    });
    assert_no_leaks(&ex);
}

/// A name under `.invalid` fails with the resolver's code (in the test
/// namespace, where it fails at once instead of asking the network).
fn lookup_invalid_name_fails(kind: BackendKind) {
    if !util::in_test_netns("lookup_invalid_name_fails") {
        return;
    }
    let mut ex = executor(kind);
    ex.block_on(async {
        let err = rt::lookup("no-such-host.invalid").await.expect_err("fails");
        assert!(err.resolver_code().is_some(), "{err}");
    });
    assert_no_leaks(&ex);
}

/// Fifty lookups from fifty tasks all complete.
fn many_concurrent_lookups(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let tasks: Vec<_> = (0..50).map(|_| rt::spawn(rt::lookup("localhost"))).collect();
        for t in tasks {
            assert!(!t.await.expect("task").expect("resolves").is_empty());
        }
    });
    assert_no_leaks(&ex);
}

/// A lookup dropped at each state: never polled (nothing started), pending
/// (withdrawn: its callback never runs, the worker's answer is dropped),
/// completed but not polled (the answer is dropped).
fn lookup_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        drop(rt::lookup("localhost"));
        assert_eq!(pending_ops(), 0);

        let mut l = Box::pin(rt::lookup("localhost"));
        assert!(poll_once(&mut l).await.is_pending());
        assert_eq!(pending_ops(), 1);
        drop(l);
        assert_eq!(pending_ops(), 0, "withdrawn at once");

        let mut l = Box::pin(rt::lookup("127.0.0.1"));
        assert!(poll_once(&mut l).await.is_pending());
        until("the lookup finished", || pending_ops() == 0).await;
        drop(l);
        // A later lookup still works (the worker pool is fine).
        assert!(!rt::lookup("localhost").await.unwrap().is_empty());
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    lookup_localhost_and_literals,
    lookup_invalid_name_fails,
    many_concurrent_lookups,
    lookup_dropped_at_each_state,
}
