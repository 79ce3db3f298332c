//! The async layer's child processes: piped standard streams (owned buffers
//! and `futures-io`), exit codes, kill, and a wait dropped at each state.

#![cfg(unix)]

mod util;

use std::time::Duration;

use eventcore::rt::{self, Child};
use eventcore::{BackendKind, Command, Status, Stdio};
use futures_util::io::AsyncReadExt;
use util::rt::{assert_no_leaks, executor, pending_ops, poll_once, until, LIMIT};

/// `cat` with piped stdin and stdout: what goes in comes out; closing stdin
/// ends it with code 0.
fn child_cat_piped(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut child = Child::spawn(Command::new("cat").stdin(Stdio::Pipe).stdout(Stdio::Pipe)).expect("spawn cat");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let (n, _) = stdin.write_all_owned(b"echo me\n".to_vec()).await;
        assert_eq!(n.unwrap(), 8);
        drop(stdin);
        let mut out = String::new();
        rt::timeout(LIMIT, stdout.read_to_string(&mut out))
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(out, "echo me\n");
        let status = rt::timeout(LIMIT, child.wait()).await.expect("in time").unwrap();
        assert!(status.success(), "{status:?}");
    });
    assert_no_leaks(&ex);
}

/// Exit codes and standard error come through; a killed child reports the
/// signal.
fn child_exit_code_stderr_and_kill(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut child = Child::spawn(
            Command::new("sh")
                .args(["-c", "echo oops >&2; exit 3"])
                .stderr(Stdio::Pipe),
        )
        .expect("spawn sh");
        let mut err = String::new();
        child.stderr.as_mut().unwrap().read_to_string(&mut err).await.unwrap();
        assert_eq!(err, "oops\n");
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(3));

        let sleeper = Child::spawn(Command::new("sleep").arg("10")).expect("spawn sleep");
        assert!(sleeper.id().unwrap() > 0);
        assert_eq!(sleeper.try_wait().unwrap(), None);
        sleeper.kill(libc::SIGTERM).unwrap();
        let status = rt::timeout(LIMIT, sleeper.wait()).await.expect("in time").unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert_eq!(sleeper.kill(libc::SIGTERM).unwrap_err().status(), Status::NotFound);
    });
    assert_no_leaks(&ex);
}

/// A wait dropped at each state: never polled, pending (withdrawn: a later
/// wait still gets the status), completed but not polled (the status stays
/// with the child, for `try_wait` and the next `wait`).
fn wait_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let child = Child::spawn(Command::new("sleep").arg("10")).expect("spawn");
        drop(child.wait());
        assert_eq!(pending_ops(), 0);
        let mut w = Box::pin(child.wait());
        assert!(poll_once(&mut w).await.is_pending());
        assert_eq!(pending_ops(), 1);
        drop(w);
        assert_eq!(pending_ops(), 0);

        let mut w = Box::pin(child.wait());
        assert!(poll_once(&mut w).await.is_pending());
        child.kill(libc::SIGKILL).unwrap();
        until("the wait completed", || pending_ops() == 0).await;
        drop(w);
        let status = child.try_wait().unwrap().expect("exited");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(child.wait().await.unwrap(), status);
    });
    assert_no_leaks(&ex);
}

/// A child dropped while it runs is neither killed nor leaked: the driver
/// reaps it when it exits.
fn child_dropped_while_running(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let child = Child::spawn(Command::new("sleep").arg("0.05")).expect("spawn");
        drop(child);
        assert_eq!(rt::with_driver(|d| d.leak_report().processes), 0);
        rt::sleep(Duration::from_millis(100)).await;
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    child_cat_piped,
    child_exit_code_stderr_and_kill,
    wait_dropped_at_each_state,
    child_dropped_while_running,
}
