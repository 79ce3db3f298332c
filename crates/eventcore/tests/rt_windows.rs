//! The async layer's child processes and console signals on Windows (the
//! POSIX versions, with `sh`, `cat` and `raise`, are rt_process.rs and
//! rt_signals.rs).

#![cfg(windows)]

mod util;

use eventcore::rt::{self, Child, Signal};
use eventcore::{signal_numbers, BackendKind, Command, Stdio};
use futures_util::io::AsyncReadExt;
use util::rt::{assert_no_leaks, executor, LIMIT};

/// A child's exit code comes back through `wait().await`.
fn rt_child_exit_code(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let child = Child::spawn(Command::new("cmd").args(["/C", "exit 3"])).expect("spawn cmd");
        let status = rt::timeout(LIMIT, child.wait()).await.expect("in time").expect("wait");
        assert_eq!(status.code(), Some(3));
    });
    assert_no_leaks(&ex);
}

/// A child's piped stdout reads through `AsyncRead` to the end of stream.
fn rt_child_piped_stdout(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut child =
            Child::spawn(Command::new("cmd").args(["/C", "echo async-hello"]).stdout(Stdio::Pipe)).expect("spawn cmd");
        let mut out = child.stdout.take().expect("piped stdout");
        let mut text = Vec::new();
        rt::timeout(LIMIT, out.read_to_end(&mut text))
            .await
            .expect("in time")
            .expect("read");
        assert!(String::from_utf8_lossy(&text).contains("async-hello"), "{text:?}");
        let status = rt::timeout(LIMIT, child.wait()).await.expect("in time").expect("wait");
        assert!(status.success());
    });
    assert_no_leaks(&ex);
}

/// A console Ctrl+C arrives on a `Signal` stream as `SIGINT`. Wine cannot
/// raise console events without a console: the handler is called directly.
fn rt_console_ctrl_c_arrives_as_sigint(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut sigint = Signal::listen(signal_numbers::SIGINT).expect("listen");
        assert!(
            eventcore::__simulate_console_ctrl_event(0),
            "a listener takes CTRL_C_EVENT"
        );
        let got = rt::timeout(LIMIT, sigint.recv()).await.expect("in time");
        assert_eq!(got, signal_numbers::SIGINT);
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    rt_child_exit_code,
    rt_child_piped_stdout,
    rt_console_ctrl_c_arrives_as_sigint,
}
