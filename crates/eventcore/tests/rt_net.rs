//! The async layer's sockets: TCP echo with several clients, a line protocol
//! through the `futures-io` traits (`lines()` from futures-util), a large
//! transfer through the internal buffers, UDP, Unix streams and datagrams,
//! connection refused, `Busy` for a second read — and every operation
//! dropped at each of its states (never polled, pending, completed but not
//! polled), checking that the stream stays usable, nothing is lost that was
//! not in the dropped future, and the leak report ends empty. Loopback only.

mod util;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[cfg(unix)]
use eventcore::rt::UnixStream;
use eventcore::rt::{self, DatagramSocket, Listener, TcpStream};
use eventcore::{BackendKind, SocketAddress, Status};
use futures_util::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use futures_util::stream::StreamExt;
use util::rt::{assert_settled, executor, pending_ops, poll_once, until, LIMIT};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Lets the loop run until pending operations drop to `n`.
async fn until_pending_ops(n: usize) {
    let deadline = Instant::now() + LIMIT;
    while pending_ops() != n {
        assert!(
            Instant::now() < deadline,
            "pending operations stuck at {}",
            pending_ops()
        );
        rt::sleep(Duration::from_millis(1)).await;
    }
}

/// A connected TCP pair on loopback: (client, server side).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = Listener::bind(loopback()).expect("bind");
    let addr = listener.local_addr().unwrap().as_inet().unwrap();
    let client = TcpStream::connect(addr);
    let (client, accepted) = futures_util::future::join(client, listener.accept()).await;
    (client.expect("connect"), accepted.expect("accept").0)
}

/// An echo server task answers three concurrent clients with owned-buffer
/// reads and writes.
fn tcp_echo(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let listener = Listener::bind(loopback()).expect("bind");
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let server = rt::spawn(async move {
            for _ in 0..3 {
                let (conn, peer) = listener.accept().await.expect("accept");
                assert!(matches!(peer, SocketAddress::Inet(a) if a.ip().is_loopback()));
                rt::spawn(async move {
                    loop {
                        let (r, mut buf) = conn.read_owned(Vec::with_capacity(256)).await;
                        match r {
                            Ok(n) => buf.truncate(n),
                            Err(e) => {
                                assert_eq!(e.status(), Status::Disconnected);
                                return;
                            }
                        }
                        conn.write_all_owned(buf).await.0.expect("echo");
                    }
                });
            }
        });
        let clients: Vec<_> = (0..3u8)
            .map(|i| {
                rt::spawn(async move {
                    let c = TcpStream::connect(addr).await.expect("connect");
                    for round in 0..5u8 {
                        let msg = vec![i * 10 + round; 100];
                        c.write_all_owned(msg.clone()).await.0.expect("write");
                        let (r, buf) = c.read_exact_owned(Vec::with_capacity(100)).await;
                        assert_eq!(r.expect("read"), 100);
                        assert_eq!(buf, msg);
                    }
                })
            })
            .collect();
        for c in clients {
            rt::timeout(LIMIT, c).await.expect("client done").expect("client task");
        }
        server.await.expect("server task");
        // Let the echo tasks see their clients' end of stream.
        rt::sleep(Duration::from_millis(20)).await;
    });
    assert_settled(&mut ex);
}

/// A line protocol through the `futures-io` traits: the server reads lines
/// with futures-util's `lines()` on the reading half and answers each in
/// upper case on the writing half; the client writes, closes its writing
/// side, and reads the answers to end of stream.
fn tcp_lines_through_futures_io(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (mut client, mut server) = tcp_pair().await;
        let server = rt::spawn(async move {
            let (reader, mut writer) = server.halves();
            let mut lines = reader.lines();
            let mut n = 0;
            while let Some(line) = lines.next().await {
                let line = line.expect("line");
                writer
                    .write_all(format!("{}\n", line.to_uppercase()).as_bytes())
                    .await
                    .expect("answer");
                n += 1;
            }
            writer.close().await.expect("close");
            n
        });
        for word in ["alpha", "beta", "gamma"] {
            AsyncWriteExt::write_all(&mut client, word.as_bytes()).await.unwrap();
            AsyncWriteExt::write_all(&mut client, b"\n").await.unwrap();
        }
        client.close().await.expect("close writing side");
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.expect("read");
        assert_eq!(answer, "ALPHA\nBETA\nGAMMA\n");
        assert_eq!(server.await.expect("task"), 3);
    });
    assert_settled(&mut ex);
}

/// A megabyte through `AsyncWrite` and `AsyncRead`, in odd-sized pieces that
/// cross the internal buffers' boundaries, arrives intact.
fn tcp_large_transfer_futures_io(kind: BackendKind) {
    const SIZE: usize = 1 << 20;
    let mut ex = executor(kind);
    ex.block_on(async {
        let (mut client, mut server) = tcp_pair().await;
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = rt::spawn(async move {
            for chunk in data.chunks(7_777) {
                AsyncWriteExt::write_all(&mut client, chunk).await.expect("write");
            }
            client.close().await.expect("close");
            client
        });
        let mut got = Vec::new();
        let mut piece = vec![0u8; 3_001];
        loop {
            let n = AsyncReadExt::read(&mut server, &mut piece).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got.len(), SIZE);
        assert!(got == expected, "the bytes arrive in order and intact");
        writer.await.expect("the writer finished");
    });
    assert_settled(&mut ex);
}

/// A driver with io_uring's multishot receives into a ring too small for
/// the traffic (4 buffers of 512 bytes for six connections: data spans
/// buffers, waits in backlogs and runs the ring dry, so multishot
/// receives end and start again), on a ring without `SQPOLL` (where
/// `try_read` may read the socket directly). Both reading styles —
/// `futures-io` reads through the internal buffer, owned-buffer reads —
/// single and exact, and a read given up while it waits, get every
/// stream's bytes in order.
/// Elsewhere the option is ignored and the same must hold.
fn multishot_receives_keep_every_stream_intact(kind: BackendKind) {
    const SIZE: usize = 96 * 1024;
    let drv = eventcore::Driver::builder()
        .backend(kind)
        .io_uring_multishot_recv(4, 512)
        .build()
        .expect("driver");
    let mut ex = rt::Executor::new(drv);
    ex.block_on(async {
        let mut tasks = Vec::new();
        for conn in 0..6usize {
            let (mut client, server) = tcp_pair().await;
            let data: Vec<u8> = (0..SIZE).map(|i| ((i * 7 + conn * 13) % 251) as u8).collect();
            let expected = data.clone();
            let _writer = rt::spawn(async move {
                for chunk in data.chunks(1_000 + conn * 333) {
                    AsyncWriteExt::write_all(&mut client, chunk).await.expect("write");
                }
                client.close().await.expect("close");
            });
            tasks.push(rt::spawn(async move {
                let mut server = server;
                let mut got = Vec::with_capacity(SIZE);
                // A `futures-io` read given up while it waits takes nothing
                // away (what it did read, it returned).
                if conn == 0 {
                    let mut piece = vec![0u8; 64];
                    let read = AsyncReadExt::read(&mut server, &mut piece);
                    if let Ok(n) = rt::timeout(Duration::from_micros(1), read).await {
                        got.extend_from_slice(&piece[..n.expect("read")]);
                    }
                }
                // Even connections read through `futures-io`, odd ones with
                // owned buffers (which bypass its internal buffer), each
                // alternating single and exact reads.
                let mut round = 0usize;
                while got.len() < SIZE {
                    round += 1;
                    let want = (SIZE - got.len()).min(900);
                    match (conn % 2, round % 2) {
                        (0, 0) => {
                            let mut piece = vec![0u8; 700];
                            let n = AsyncReadExt::read(&mut server, &mut piece).await.expect("read");
                            assert!(n > 0, "no end before {SIZE} bytes");
                            got.extend_from_slice(&piece[..n]);
                        }
                        (0, _) => {
                            let mut piece = vec![0u8; want];
                            AsyncReadExt::read_exact(&mut server, &mut piece)
                                .await
                                .expect("read_exact");
                            got.extend_from_slice(&piece);
                        }
                        (_, 0) => {
                            let (r, buf) = server.read_owned(Vec::with_capacity(1_500)).await;
                            assert!(r.expect("read_owned") > 0, "no end before {SIZE} bytes");
                            got.extend_from_slice(&buf);
                        }
                        _ => {
                            let (r, buf) = server.read_exact_owned(Vec::with_capacity(want)).await;
                            assert_eq!(r.expect("read_exact_owned"), want);
                            got.extend_from_slice(&buf);
                        }
                    }
                }
                // Then the end of the stream: 0 from `futures-io`,
                // `Disconnected` from an owned read.
                if conn % 2 == 0 {
                    let mut rest = vec![0u8; 16];
                    let n = AsyncReadExt::read(&mut server, &mut rest).await.expect("end of stream");
                    assert_eq!(n, 0, "connection {conn}: nothing after the data");
                } else {
                    let (r, _) = server.read_owned(Vec::with_capacity(16)).await;
                    assert_eq!(r.unwrap_err().status(), Status::Disconnected, "connection {conn}");
                }
                assert!(
                    got == expected,
                    "connection {conn}: the bytes arrive in order and intact"
                );
            }));
        }
        for t in tasks {
            rt::timeout(LIMIT * 3, t)
                .await
                .expect("in time")
                .expect("the reader did not panic");
        }
    });
    assert_settled(&mut ex);
}

/// UDP: datagrams both ways with their senders' addresses.
fn udp_round_trip(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let a = DatagramSocket::bind(loopback()).expect("bind a");
        let b = DatagramSocket::bind(loopback()).expect("bind b");
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let recv = b.recv_from(Vec::with_capacity(64));
        let (sent, _) = a.send_to(b"ping".to_vec(), b_addr.clone()).await;
        assert_eq!(sent.unwrap(), 4);
        let (r, buf) = rt::timeout(LIMIT, recv).await.expect("in time");
        let (n, from) = r.expect("recv");
        assert_eq!((&buf[..n], from), (&b"ping"[..], a_addr.clone()));
        b.send_to(b"pong".to_vec(), a_addr.clone()).await.0.unwrap();
        let (r, buf) = a.recv_from(Vec::with_capacity(64)).await;
        let (n, from) = r.unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], b_addr.clone()));
        // Without waiting: nothing queued is WouldBlock; a datagram sent at
        // once is taken at once (after loopback delivered it).
        let mut small = [0u8; 16];
        assert_eq!(b.try_recv_from(&mut small).unwrap_err().status(), Status::WouldBlock);
        assert_eq!(a.try_send_to(b"now", Some(b_addr)).expect("try_send_to"), 3);
        let deadline = Instant::now() + LIMIT;
        let (n, from) = loop {
            match b.try_recv_from(&mut small) {
                Err(e) if e.status() == Status::WouldBlock && Instant::now() < deadline => {
                    rt::sleep(Duration::from_millis(1)).await;
                }
                other => break other.expect("try_recv_from"),
            }
        };
        assert_eq!((&small[..n], from), (&b"now"[..], a_addr));
    });
    assert_settled(&mut ex);
}

/// Unix-domain streams: a listener on a path, and a socket pair, with both
/// the owned-buffer calls and the `futures-io` side.
#[cfg(unix)]
fn unix_streams(kind: BackendKind) {
    let dir = util::TempDir::new("rt-unix");
    let path = dir.path().join("sock");
    let mut ex = executor(kind);
    ex.block_on(async {
        let listener = Listener::bind(path.as_path()).expect("bind");
        let (client, accepted) = futures_util::future::join(UnixStream::connect(path.clone()), listener.accept()).await;
        let (client, (server, _)) = (client.expect("connect"), accepted.expect("accept"));
        client.write_all_owned(b"over unix".to_vec()).await.0.unwrap();
        let (r, buf) = server.read_exact_owned(Vec::with_capacity(9)).await;
        assert_eq!((r.unwrap(), &buf[..]), (9, &b"over unix"[..]));

        let (mut a, mut b) = UnixStream::pair().expect("pair");
        AsyncWriteExt::write_all(&mut a, b"paired").await.unwrap();
        a.flush().await.unwrap();
        let mut got = [0u8; 6];
        AsyncReadExt::read_exact(&mut b, &mut got).await.unwrap();
        assert_eq!(&got, b"paired");
    });
    assert_settled(&mut ex);
}

/// Unix-domain datagram sockets from a pair.
#[cfg(unix)]
fn unix_datagrams(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (a, b) = DatagramSocket::pair().expect("pair");
        a.send(b"one".to_vec()).await.0.unwrap();
        let (r, buf) = b.recv_from(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..r.unwrap().0], b"one");
    });
    assert_settled(&mut ex);
}

/// Connecting to a loopback port nobody listens on is `Refused`, and the
/// socket it made is released.
fn tcp_connect_refused(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addr = Listener::bind(loopback())
            .unwrap()
            .local_addr()
            .unwrap()
            .as_inet()
            .unwrap();
        let err = TcpStream::connect(addr).await.expect_err("refused");
        assert_eq!(err.status(), Status::Refused);
        assert_eq!(rt::with_driver(|d| d.leak_report().streams), 0);
    });
    assert_settled(&mut ex);
}

/// A second read while one is in flight is `Busy` at once, hands its buffer
/// back, and does not disturb the first.
fn second_read_is_busy(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (client, server) = tcp_pair().await;
        let mut first = Box::pin(server.read_owned(Vec::with_capacity(16)));
        assert!(poll_once(&mut first).await.is_pending());
        let (r, buf) = server.read_owned(Vec::with_capacity(8)).await;
        assert_eq!(r.unwrap_err().status(), Status::Busy);
        assert!(buf.is_empty() && buf.capacity() >= 8, "the buffer comes back, empty");
        client.write_all_owned(b"data".to_vec()).await.0.unwrap();
        let (r, buf) = first.await;
        assert_eq!(&buf[..r.unwrap()], b"data");
    });
    assert_settled(&mut ex);
}

/// A read dropped at each state: never polled (nothing happens), pending
/// (withdrawn: bytes that arrive later go to the next read), completed but
/// not polled (its bytes are lost with it — documented; the stream goes on).
fn read_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (client, server) = tcp_pair().await;
        let base = pending_ops();

        drop(server.read_owned(Vec::with_capacity(16)));
        assert_eq!(pending_ops(), base);

        let mut r = Box::pin(server.read_owned(Vec::with_capacity(16)));
        assert!(poll_once(&mut r).await.is_pending());
        assert_eq!(pending_ops(), base + 1);
        drop(r);
        assert_eq!(pending_ops(), base, "the read was withdrawn");
        client.write_all_owned(b"abc".to_vec()).await.0.unwrap();
        let (res, buf) = server.read_owned(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..res.unwrap()], b"abc", "nothing was swallowed");

        let mut r = Box::pin(server.read_owned(Vec::with_capacity(16)));
        assert!(poll_once(&mut r).await.is_pending());
        client.write_all_owned(b"xyz".to_vec()).await.0.unwrap();
        until_pending_ops(base).await;
        drop(r);
        client.write_all_owned(b"q".to_vec()).await.0.unwrap();
        let (res, buf) = server.read_owned(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..res.unwrap()], b"q");
    });
    assert_settled(&mut ex);
}

/// A write dropped at each state: never polled (nothing sent), pending
/// (withdrawn; whatever it moved is a prefix), completed but not polled
/// (sent). The stream stays usable for the next write.
fn write_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (client, server) = tcp_pair().await;
        let base = pending_ops();

        drop(client.write_all_owned(b"never".to_vec()));
        assert_eq!(pending_ops(), base);

        let mut w = Box::pin(client.write_all_owned(b"maybe".to_vec()));
        assert!(poll_once(&mut w).await.is_pending());
        drop(w);
        assert_eq!(pending_ops(), base);

        let mut w = Box::pin(client.write_all_owned(b"sent".to_vec()));
        assert!(poll_once(&mut w).await.is_pending());
        until_pending_ops(base).await;
        drop(w);

        client.write_all_owned(b"!".to_vec()).await.0.unwrap();
        client.shutdown(false, true).unwrap();
        let mut got = Vec::new();
        loop {
            let (r, buf) = server.read_owned(Vec::with_capacity(64)).await;
            match r {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.status(), Status::Disconnected);
                    break;
                }
            }
        }
        // "maybe" went out whole or not at all (one small write), then "sent!".
        assert!(
            got == b"maybesent!" || got == b"sent!",
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&got)
        );
    });
    assert_settled(&mut ex);
}

/// A connect dropped at each state: never polled (no socket exists), pending
/// (withdrawn, socket released), completed but not polled (the connection is
/// closed: the server sees end of stream).
fn connect_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let listener = Listener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let streams = || rt::with_driver(|d| d.leak_report().streams);

        drop(TcpStream::connect(addr));
        assert_eq!(streams(), 0);

        let mut c = Box::pin(TcpStream::connect(addr));
        assert!(poll_once(&mut c).await.is_pending());
        assert_eq!(streams(), 1);
        drop(c);
        assert_eq!(streams(), 0, "the connecting socket was released");

        let base = pending_ops();
        let mut c = Box::pin(TcpStream::connect(addr));
        assert!(poll_once(&mut c).await.is_pending());
        until_pending_ops(base).await;
        drop(c);

        // The server side of each connection that reached the listener sees
        // end of stream (or a reset) and nothing else.
        for _ in 0..2 {
            let accepted = rt::timeout(Duration::from_millis(200), listener.accept()).await;
            let Ok(accepted) = accepted else { break };
            let (conn, _) = accepted.expect("accept");
            let (r, _) = conn.read_owned(Vec::with_capacity(8)).await;
            assert_eq!(r.unwrap_err().status(), Status::Disconnected);
        }
    });
    assert_settled(&mut ex);
}

/// `accept` is cancel-safe: an accept dropped while pending loses nothing, and
/// a listener dropped with connections still queued releases them.
fn accept_dropped_and_listener_dropped(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let listener = Listener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let mut a = Box::pin(listener.accept());
        assert!(poll_once(&mut a).await.is_pending());
        drop(a);
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = rt::timeout(LIMIT, listener.accept())
            .await
            .expect("in time")
            .expect("accept");
        drop((client, server));

        let clients = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        // Let the driver accept both into the listener's queue.
        until("accepted", || rt::with_driver(|d| d.leak_report().streams) >= 4).await;
        drop(listener);
        assert_eq!(
            rt::with_driver(|d| d.leak_report().streams),
            2,
            "the queued connections were released with the listener"
        );
        for c in &clients {
            let (r, _) = c.read_owned(Vec::with_capacity(8)).await;
            assert_eq!(r.unwrap_err().status(), Status::Disconnected);
        }
    });
    assert_settled(&mut ex);
}

/// A datagram receive dropped at each state: never polled, pending
/// (withdrawn: the next datagram goes to the next receive), completed but not
/// polled (that datagram is lost with it).
fn recv_dropped_at_each_state(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let a = DatagramSocket::bind(loopback()).unwrap();
        let b = DatagramSocket::bind(loopback()).unwrap();
        let to = b.local_addr().unwrap();
        let base = pending_ops();

        drop(b.recv_from(Vec::with_capacity(16)));
        let mut r = Box::pin(b.recv_from(Vec::with_capacity(16)));
        assert!(poll_once(&mut r).await.is_pending());
        drop(r);
        assert_eq!(pending_ops(), base);
        a.send_to(b"1".to_vec(), to.clone()).await.0.unwrap();
        let (res, buf) = b.recv_from(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..res.unwrap().0], b"1");

        let mut r = Box::pin(b.recv_from(Vec::with_capacity(16)));
        assert!(poll_once(&mut r).await.is_pending());
        a.send_to(b"2".to_vec(), to.clone()).await.0.unwrap();
        until_pending_ops(base).await;
        drop(r);
        a.send_to(b"3".to_vec(), to).await.0.unwrap();
        let (res, buf) = b.recv_from(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..res.unwrap().0], b"3");
    });
    assert_settled(&mut ex);
}

/// Reading through `AsyncRead` survives its futures being dropped: the read
/// in flight belongs to the stream, so a timed-out read loses nothing.
fn futures_io_read_is_cancel_safe(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (client, mut server) = tcp_pair().await;
        let mut buf = [0u8; 16];
        let timed_out = rt::timeout(Duration::from_millis(10), AsyncReadExt::read(&mut server, &mut buf)).await;
        assert!(timed_out.is_err());
        client.write_all_owned(b"kept".to_vec()).await.0.unwrap();
        let n = rt::timeout(LIMIT, AsyncReadExt::read(&mut server, &mut buf))
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(&buf[..n], b"kept");
    });
    assert_settled(&mut ex);
}

/// Streams dropped with operations in flight release everything, from a task
/// that is aborted mid-read.
fn task_aborted_mid_read(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (client, server) = tcp_pair().await;
        let server = Rc::new(server);
        let s = server.clone();
        let reader = rt::spawn(async move { s.read_owned(Vec::with_capacity(16)).await.0.is_ok() });
        rt::yield_now().await;
        reader.abort();
        drop(server);
        let (r, _) = client.read_owned(Vec::with_capacity(4)).await;
        assert_eq!(r.unwrap_err().status(), Status::Disconnected);
    });
    assert_settled(&mut ex);
}

/// A stream split into owned halves serves a reader task and a writer task
/// at once; the halves reunite into the stream, and halves of two streams
/// do not.
fn owned_halves_in_two_tasks(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut listener = Listener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let echo = rt::spawn(async move {
            let (conn, _) = listener.next().await.unwrap().unwrap();
            let (mut r, mut w) = conn.into_split();
            // Line by line, flushing each (a flush is a no-op for the
            // write-through half, but keeps the echo right for any writer).
            let mut line = String::new();
            loop {
                line.clear();
                if futures_util::io::AsyncBufReadExt::read_line(&mut r, &mut line)
                    .await
                    .expect("read")
                    == 0
                {
                    break;
                }
                w.write_all(line.as_bytes()).await.expect("write");
                w.flush().await.expect("flush");
            }
            w.close().await.expect("close");
        });
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = client.into_split();
        let writer = rt::spawn(async move {
            for i in 0..50u32 {
                w.write_all(format!("line {i}\n").as_bytes()).await.unwrap();
            }
            w.flush().await.unwrap();
            w
        });
        let reader = rt::spawn(async move {
            let mut lines = Vec::new();
            let mut text = String::new();
            while lines.len() < 50 {
                text.clear();
                let n = futures_util::io::AsyncBufReadExt::read_line(&mut r, &mut text)
                    .await
                    .unwrap();
                assert!(n > 0, "end of stream after {} lines", lines.len());
                lines.push(text.trim_end().to_owned());
            }
            (r, lines)
        });
        let w = rt::timeout(LIMIT, writer).await.expect("in time").expect("writer");
        let (r, lines) = rt::timeout(LIMIT, reader).await.expect("in time").expect("reader");
        assert_eq!(lines.len(), 50);
        assert_eq!(lines[49], "line 49");
        let other = TcpStream::connect(addr).await;
        // The listener's task took one connection only: this one is refused
        // or stays unaccepted; either way its halves are another stream's.
        if let Ok(other) = other {
            let (or, ow) = other.into_split();
            let err = r.reunite(ow).expect_err("halves of two streams");
            let (r, _ow) = (err.0, err.1);
            let mut stream = r.reunite(w).expect("the halves of one stream");
            stream.close().await.expect("close");
            drop(or);
        } else {
            let mut stream = r.reunite(w).expect("the halves of one stream");
            stream.close().await.expect("close");
        }
        rt::timeout(LIMIT, echo).await.expect("in time").expect("echo task");
    });
    assert_settled(&mut ex);
}

/// Counts the `Pending`s of the reader it wraps.
struct CountPending<R> {
    inner: R,
    pending: usize,
}

impl<R: futures_util::io::AsyncRead + Unpin> futures_util::io::AsyncRead for CountPending<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_pending() {
            self.pending += 1;
        }
        r
    }
}

/// A futures-io read of bytes that are already there takes no executor
/// turn per internal refill: 64 KiB (four refills of the 16 KiB buffer)
/// and the end of stream, all arrived, are read without one `Pending`.
fn futures_io_reads_available_data_without_waiting(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut listener = Listener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let peer = std::thread::spawn(move || {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(&vec![7u8; 64 * 1024]).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let (stream, _) = rt::timeout(LIMIT, listener.next())
            .await
            .expect("in time")
            .unwrap()
            .unwrap();
        peer.join().unwrap();
        // Let every byte and the FIN reach the socket.
        rt::sleep(Duration::from_millis(100)).await;
        let mut counted = CountPending {
            inner: stream,
            pending: 0,
        };
        let mut all = Vec::new();
        counted.read_to_end(&mut all).await.expect("read_to_end");
        assert_eq!(all.len(), 64 * 1024);
        assert_eq!(counted.pending, 0, "a read of available data waited");
    });
    assert_settled(&mut ex);
}

/// `connect` and `bind` take strings and pairs: a literal address, or a
/// host name looked up through the driver's DNS (`localhost`); `bind`
/// refuses a name.
fn connect_and_bind_take_names_and_pairs(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut listener = Listener::bind("127.0.0.1:0").expect("bind a literal string");
        let port = listener.local_addr().unwrap().as_inet().unwrap().port();
        let dialed = [
            TcpStream::connect(format!("localhost:{port}")).await,
            TcpStream::connect(("localhost", port)).await,
            TcpStream::connect(("127.0.0.1", port)).await,
            TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await,
        ];
        for (i, d) in dialed.into_iter().enumerate() {
            let stream = d.unwrap_or_else(|e| panic!("connect #{i}: {e}"));
            let peer = stream.peer_addr().unwrap().as_inet().unwrap();
            assert_eq!(peer, SocketAddr::from(([127, 0, 0, 1], port)), "connect #{i}");
            let (accepted, _) = rt::timeout(LIMIT, listener.next())
                .await
                .expect("in time")
                .unwrap()
                .unwrap();
            drop((stream, accepted));
        }
        let named = Listener::bind("localhost:0").err().map(|e| e.status());
        assert_eq!(named, Some(Status::InvalidArgument), "bind needs an address");
        let bad = TcpStream::connect("no port here").await.err().map(|e| e.status());
        assert_eq!(bad, Some(Status::InvalidArgument));
        if util::in_test_netns("connect_and_bind_take_names_and_pairs: a name that does not resolve") {
            assert!(TcpStream::connect("eventcore-test.invalid:80").await.is_err());
        }
        let udp = DatagramSocket::bind(("127.0.0.1", 0)).expect("bind a pair");
        assert!(udp.local_addr().unwrap().as_inet().unwrap().ip().is_loopback());
    });
    assert_settled(&mut ex);
}

/// A flush the socket takes at once finishes without the driver, but only
/// so many times per batch of task polls: a task writing in a loop to a
/// stream that always has room still yields (its flush goes through the
/// driver and returns `Pending`), so other tasks and the driver run.
fn flushes_at_once_are_budgeted(kind: BackendKind) {
    use futures_util::io::AsyncWrite;
    use std::pin::Pin;
    use std::task::Poll;
    let mut ex = executor(kind);
    let peer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = peer.local_addr().expect("address");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = peer.accept().expect("accept");
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut all).expect("read");
        all.len()
    });
    let written = ex.block_on(async {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        const FLUSHES: usize = 1000;
        let (at_once, yielded) = std::future::poll_fn(|cx| {
            let mut at_once = 0;
            for _ in 0..FLUSHES {
                match Pin::new(&mut conn).poll_write(cx, b"x") {
                    Poll::Ready(Ok(1)) => {}
                    other => panic!("poll_write: {other:?}"),
                }
                match Pin::new(&mut conn).poll_flush(cx) {
                    Poll::Ready(Ok(())) => at_once += 1,
                    Poll::Pending => return Poll::Ready((at_once, true)),
                    Poll::Ready(Err(e)) => panic!("poll_flush: {e}"),
                }
            }
            Poll::Ready((at_once, false))
        })
        .await;
        assert!(
            yielded,
            "{FLUSHES} flushes finished at once in one poll: the task never yields"
        );
        assert!(
            at_once > 0 && at_once <= 128,
            "{at_once} flushes at once before the first wait"
        );
        conn.flush().await.expect("the flush that waited");
        conn.close().await.expect("close");
        at_once + 1
    });
    assert_eq!(reader.join().expect("the reader"), written, "every byte arrived, once");
}

/// Bytes that `poll_write` accepted reach the peer without a flush, even
/// when they were accepted behind a write still in flight: a relay built
/// on `futures`' `io::copy` (which flushes only when its input ends) must
/// not keep an echo's tail. The writer fills the connection until a
/// `poll_write` waits, then the peer reads exactly what was accepted.
fn accepted_bytes_leave_without_a_flush(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (mut client, mut server) = tcp_pair().await;
        let chunk = vec![7u8; 48 * 1024];
        let mut accepted = 0usize;
        loop {
            assert!(accepted < 256 << 20, "the connection never filled");
            let mut write = AsyncWriteExt::write(&mut client, &chunk);
            match poll_once(&mut write).await {
                std::task::Poll::Ready(n) => accepted += n.expect("write"),
                std::task::Poll::Pending => break,
            }
        }
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while got < accepted {
            let n = rt::timeout(Duration::from_secs(5), AsyncReadExt::read(&mut server, &mut buf))
                .await
                .unwrap_or_else(|_| panic!("{got} of {accepted} accepted bytes arrived; the rest waits for a flush"))
                .expect("read");
            assert!(n > 0, "end of stream after {got} bytes");
            got += n;
        }
        assert_eq!(got, accepted);
        // A copy-based echo answers while its input is still open.
        let (mut r, mut w) = server.into_split();
        let echo = rt::spawn(async move {
            let _ = futures_util::io::copy(&mut r, &mut w).await;
        });
        let (mut cr, mut cw) = client.into_split();
        let data: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 253) as u8).collect();
        let expected = data.clone();
        let sender = rt::spawn(async move {
            for piece in data.chunks(10_007) {
                cw.write_all(piece).await.expect("write");
            }
            cw.flush().await.expect("flush");
            cw
        });
        let mut back = vec![0u8; expected.len()];
        rt::timeout(LIMIT, AsyncReadExt::read_exact(&mut cr, &mut back))
            .await
            .expect("the echo came back whole while the connection stayed open")
            .expect("read");
        assert!(back == expected);
        sender.await.expect("the sender finished");
        drop(cr);
        echo.abort();
    });
}

#[cfg(unix)]
contract_tests! {
    accepted_bytes_leave_without_a_flush,
    flushes_at_once_are_budgeted,
    owned_halves_in_two_tasks,
    futures_io_reads_available_data_without_waiting,
    connect_and_bind_take_names_and_pairs,
    tcp_echo,
    tcp_lines_through_futures_io,
    tcp_large_transfer_futures_io,
    multishot_receives_keep_every_stream_intact,
    udp_round_trip,
    unix_streams,
    unix_datagrams,
    tcp_connect_refused,
    second_read_is_busy,
    read_dropped_at_each_state,
    write_dropped_at_each_state,
    connect_dropped_at_each_state,
    accept_dropped_and_listener_dropped,
    recv_dropped_at_each_state,
    futures_io_read_is_cancel_safe,
    task_aborted_mid_read,
}

#[cfg(not(unix))]
contract_tests! {
    accepted_bytes_leave_without_a_flush,
    flushes_at_once_are_budgeted,
    owned_halves_in_two_tasks,
    futures_io_reads_available_data_without_waiting,
    connect_and_bind_take_names_and_pairs,
    tcp_echo,
    tcp_lines_through_futures_io,
    tcp_large_transfer_futures_io,
    multishot_receives_keep_every_stream_intact,
    udp_round_trip,
    tcp_connect_refused,
    second_read_is_busy,
    read_dropped_at_each_state,
    write_dropped_at_each_state,
    connect_dropped_at_each_state,
    accept_dropped_and_listener_dropped,
    recv_dropped_at_each_state,
    futures_io_read_is_cancel_safe,
    task_aborted_mid_read,
}
