//! The async layer's pipes: owned-buffer round trip, end of stream when the
//! writer goes, the `futures-io` side with `close`, and a read dropped at
//! each state.

mod util;

use eventcore::rt::{self, Pipe};
use eventcore::{BackendKind, Status};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use util::rt::{assert_no_leaks, executor, pending_ops, poll_once, until, LIMIT};

/// Bytes go through a pipe; dropping the write end is end of stream for the
/// reader (`Disconnected`, no OS code).
fn pipe_round_trip_and_end_of_stream(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (r, w) = Pipe::create().expect("pipe");
        let (n, _) = w.write_all_owned(b"through".to_vec()).await;
        assert_eq!(n.unwrap(), 7);
        let (n, buf) = r.read_exact_owned(Vec::with_capacity(7)).await;
        assert_eq!((n.unwrap(), &buf[..]), (7, &b"through"[..]));
        drop(w);
        let (n, _) = r.read_owned(Vec::with_capacity(7)).await;
        let e = n.unwrap_err();
        assert_eq!(e.status(), Status::Disconnected);
        assert_eq!(e.raw_os_error(), None);
    });
    assert_no_leaks(&ex);
}

/// The `futures-io` side: a writer task writes and closes (which closes the
/// pipe), the reader reads to end of stream.
fn pipe_futures_io(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (mut r, mut w) = Pipe::create().expect("pipe");
        let writer = rt::spawn(async move {
            for i in 0..100u32 {
                AsyncWriteExt::write_all(&mut w, format!("{i};").as_bytes())
                    .await
                    .unwrap();
            }
            w.close().await.unwrap();
            // Closing twice is fine; writing after close is an error.
            w.close().await.unwrap();
            assert!(AsyncWriteExt::write_all(&mut w, b"late").await.is_err());
        });
        let mut got = String::new();
        rt::timeout(LIMIT, r.read_to_string(&mut got))
            .await
            .expect("in time")
            .unwrap();
        let expected: String = (0..100u32).map(|i| format!("{i};")).collect();
        assert_eq!(got, expected);
        writer.await.expect("the writer task");
    });
    assert_no_leaks(&ex);
}

/// A pipe read dropped at each state: never polled, pending (withdrawn: the
/// bytes written later go to the next read), completed but not polled (its
/// bytes are lost with it).
fn pipe_read_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (r, w) = Pipe::create().expect("pipe");
        drop(r.read_owned(Vec::with_capacity(8)));
        let mut f = Box::pin(r.read_owned(Vec::with_capacity(8)));
        assert!(poll_once(&mut f).await.is_pending());
        assert_eq!(pending_ops(), 1);
        drop(f);
        assert_eq!(pending_ops(), 0);
        w.write_all_owned(b"a".to_vec()).await.0.unwrap();
        let (n, buf) = r.read_owned(Vec::with_capacity(8)).await;
        assert_eq!(&buf[..n.unwrap()], b"a");

        let mut f = Box::pin(r.read_owned(Vec::with_capacity(8)));
        assert!(poll_once(&mut f).await.is_pending());
        w.write_all_owned(b"b".to_vec()).await.0.unwrap();
        until("the read completed", || pending_ops() == 0).await;
        drop(f);
        w.write_all_owned(b"c".to_vec()).await.0.unwrap();
        let (n, buf) = r.read_owned(Vec::with_capacity(8)).await;
        assert_eq!(&buf[..n.unwrap()], b"c");
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    pipe_round_trip_and_end_of_stream,
    pipe_futures_io,
    pipe_read_dropped_at_each_state,
}
