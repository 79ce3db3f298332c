//! The async layer's sequences as `futures` streams and its one-shot values
//! as fused futures: accepted connections, interval ticks, signal arrivals
//! and directory changes through `StreamExt`; `Sleep` and `JoinHandle`
//! terminated once complete.

mod util;

use std::time::Duration;

use eventcore::rt::{self, DirectoryWatcher, Listener, Signal, TcpStream, UdpSocket};
use eventcore::{BackendKind, ChangeKind};
use futures_core::future::FusedFuture;
use futures_core::stream::FusedStream;
use futures_util::StreamExt;
use util::rt::{assert_settled, executor, LIMIT};
use util::TempDir;

/// Connections arrive through the listener's stream, which is not
/// terminated while it accepts.
fn listener_is_a_stream_of_connections(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut listener = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let clients = rt::spawn(async move {
            let mut kept = Vec::new();
            for _ in 0..3 {
                kept.push(TcpStream::connect(addr).await.unwrap());
            }
            kept
        });
        let accepted: Vec<_> = rt::timeout(LIMIT, listener.by_ref().take(3).collect::<Vec<_>>())
            .await
            .expect("in time");
        assert_eq!(accepted.len(), 3);
        for a in &accepted {
            let (_, peer) = a.as_ref().expect("accepted");
            assert!(peer.as_inet().unwrap().ip().is_loopback());
        }
        assert!(!listener.is_terminated());
        clients.await.expect("the clients connected");
    });
    assert_settled(&mut ex);
}

/// Interval ticks through `StreamExt`: every item counts at least one tick.
fn interval_is_a_stream_of_ticks(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let ticks = rt::interval(Duration::from_millis(5));
        assert!(!ticks.is_terminated());
        let got: Vec<u64> = rt::timeout(LIMIT, ticks.take(3).collect()).await.expect("in time");
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|&n| n >= 1), "{got:?}");
    });
    assert_settled(&mut ex);
}

/// Directory changes through `StreamExt::next`.
fn watcher_is_a_stream_of_changes(kind: BackendKind) {
    let dir = TempDir::new("rt-stream-watch");
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut watcher = DirectoryWatcher::new(dir.path(), false).unwrap();
        rt::sleep(Duration::from_millis(if util::under_wine() { 1500 } else { 100 })).await;
        std::fs::write(dir.path().join("streamed"), b"x").unwrap();
        loop {
            let change = rt::timeout(LIMIT, StreamExt::next(&mut watcher))
                .await
                .expect("a change in time")
                .expect("the stream does not end")
                .expect("a change");
            if change.name == "streamed" {
                assert!(matches!(change.kind, ChangeKind::Added | ChangeKind::Modified));
                break;
            }
        }
        assert!(!watcher.is_terminated());
    });
    assert_settled(&mut ex);
}

/// Signal arrivals through `StreamExt::next`.
fn signal_is_a_stream_of_arrivals(kind: BackendKind) {
    if crate::util::signals_refused(kind, "signal_is_a_stream_of_arrivals") {
        return;
    }
    #[cfg(unix)]
    let signo = libc::SIGUSR2;
    #[cfg(windows)]
    let signo = eventcore::signal_numbers::SIGBREAK;
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut signal = Signal::listen(signo).unwrap();
        #[cfg(unix)]
        // SAFETY: raise sends the signal to this thread, which the driver
        // has it blocked in.
        assert_eq!(unsafe { libc::raise(signo) }, 0);
        #[cfg(windows)]
        // Ctrl+Break (1), as the console would deliver it (Wine cannot
        // without a console; see tests/signals.rs).
        eventcore::__simulate_console_ctrl_event(1);
        let got = rt::timeout(LIMIT, StreamExt::next(&mut signal)).await.expect("in time");
        assert_eq!(got, Some(signo));
        assert!(!signal.is_terminated());
    });
    assert_settled(&mut ex);
}

/// Datagrams arrive through the socket's stream, each truncated to its
/// length, with its sender.
fn datagrams_are_a_stream(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = sender.local_addr().unwrap();
        for word in ["one", "two", "three"] {
            let (sent, _) = sender.send_to(word.as_bytes().to_vec(), to.clone()).await;
            assert_eq!(sent.unwrap(), word.len());
        }
        let stream = receiver.datagrams(64);
        assert!(!stream.is_terminated());
        let got: Vec<_> = rt::timeout(LIMIT, stream.take(3).collect::<Vec<_>>())
            .await
            .expect("in time");
        let got: Vec<_> = got.into_iter().map(|d| d.expect("datagram")).collect();
        assert_eq!(
            got.iter().map(|(d, _)| d.as_slice()).collect::<Vec<_>>(),
            [&b"one"[..], b"two", b"three"]
        );
        assert!(got.iter().all(|(_, f)| *f == from));
    });
    assert_settled(&mut ex);
}

/// A completed sleep and a joined task are terminated fused futures.
fn sleep_and_join_handle_are_fused(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut sleep = rt::sleep(Duration::from_millis(5));
        assert!(!sleep.is_terminated());
        (&mut sleep).await;
        assert!(sleep.is_terminated());
        let mut task = rt::spawn(async { 7 });
        assert!(!task.is_terminated());
        assert_eq!((&mut task).await.expect("task"), 7);
        assert!(task.is_terminated());
    });
    assert_settled(&mut ex);
}

contract_tests! {
    listener_is_a_stream_of_connections,
    interval_is_a_stream_of_ticks,
    watcher_is_a_stream_of_changes,
    signal_is_a_stream_of_arrivals,
    sleep_and_join_handle_are_fused,
    datagrams_are_a_stream,
}
