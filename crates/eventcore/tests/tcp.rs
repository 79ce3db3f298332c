//! TCP contract tests: the upstream scenarios `0-tcp`, `0-tcp-cancel`,
//! `0-tcp-cancelconn` and `0-tcp-readwait`, plus the gaps the port adds
//! (refused and bound connects, address in use, IPv6, resets, half-close,
//! stale handles, cancel races, accept bursts, adoption, addresses).
//!
//! Every scenario listens on an ephemeral loopback port; only the hanging
//! connect goes elsewhere (192.0.2.1), and only inside the test namespace.

mod util;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::{
    BackendKind, ConnectionState, Driver, ExitReason, IoMode, ListenOptions, Result, SocketAddress, Status,
    StreamListener, StreamSocket,
};
use util::net::{assert_quiet, loopback_v4, loopback_v6, read_now, write_now, IoOutcome};
use util::{after, Slot};

/// The longest any single wait in these scenarios may take.
const LIMIT: Duration = Duration::from_secs(10);

type Shared<T> = Rc<RefCell<T>>;

fn shared<T: Default>() -> Shared<T> {
    Rc::new(RefCell::new(T::default()))
}

/// `len` bytes of a recognisable pattern, different for each `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31)).collect()
}

/// A listener, a client connected to it and the server side of that connection.
struct Pair {
    listener: StreamListener,
    client: StreamSocket,
    server: StreamSocket,
}

/// Listens on `at`, connects one client and runs the loop until both the
/// connect and the accept callbacks have run.
fn connected_pair(drv: &mut Driver, at: SocketAddr) -> Pair {
    let accepted: Rc<Cell<Option<StreamSocket>>> = Rc::default();
    let acc = accepted.clone();
    let listener = drv
        .sockets()
        .listen(at, ListenOptions::default(), move |_, _, res| {
            let (conn, _peer) = res.expect("accept");
            assert!(acc.replace(Some(conn)).is_none(), "one connection expected");
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).expect("listener address");
    let connected = Rc::new(Cell::new(false));
    let con = connected.clone();
    let client = drv
        .sockets()
        .connect(addr, None, move |_, _, res| {
            res.expect("connect");
            con.set(true);
        })
        .expect("connect");
    util::run_until(drv, LIMIT, |_| connected.get() && accepted.get().is_some());
    Pair {
        listener,
        client,
        server: accepted.get().unwrap(),
    }
}

/// Releases the three handles of a pair, each of which must hold its last
/// reference (no operation kept an internal one).
fn release_pair(drv: &mut Driver, pair: &Pair) {
    release_handles(drv, pair.listener, pair.client, pair.server);
}

/// [`release_pair`] for handles not gathered in a [`Pair`].
fn release_handles(drv: &mut Driver, listener: StreamListener, client: StreamSocket, server: StreamSocket) {
    assert_eq!(drv.release_ref(client), Ok(false));
    assert_eq!(drv.release_ref(server), Ok(false));
    assert_eq!(drv.release_ref(listener), Ok(false));
}

/// After a read of `sent` was cancelled with the bytes in `got` already
/// transferred, the rest must still be there for the next read: a cancel
/// loses nothing.
#[track_caller]
fn assert_rest_after_cancel(drv: &mut Driver, sock: StreamSocket, mut got: Vec<u8>, sent: &[u8]) {
    if got.len() < sent.len() {
        let (res, buf) = read_now(drv, sock, sent.len() - got.len(), IoMode::Immediate);
        let n = res.unwrap_or_else(|e| {
            panic!(
                "the cancel reported {} bytes transferred, and the rest is gone: {e}",
                got.len()
            )
        });
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, sent);
}

/// Asserts that `res` is an error with `status` after `transferred` bytes.
fn assert_failed(res: &Result<usize>, status: Status, transferred: usize) {
    match res {
        Ok(n) => panic!("expected {status:?}, got Ok({n})"),
        Err(e) => {
            assert_eq!(e.status(), status, "unexpected error {e}");
            assert_eq!(e.transferred(), transferred, "bytes transferred before {e}");
        }
    }
}

fn state(drv: &mut Driver, sock: StreamSocket) -> ConnectionState {
    drv.sockets().connection_state(sock)
}

/// 0-tcp, basic exchange: connect (state `Connecting`, then `Connected`), the
/// keep-alive, keep-alive-parameter, user-timeout and no-delay setters succeed,
/// a 10-byte `All` write reaches a `Once` read byte for byte, and 20 ms later a
/// 5-byte `Once` write reaches a second read.
fn tcp_connect_and_exchange(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let received: Shared<Vec<Vec<u8>>> = shared();
    let server: Rc<Cell<Option<StreamSocket>>> = Rc::default();

    fn read_chunks(drv: &mut Driver, conn: StreamSocket, out: Shared<Vec<Vec<u8>>>, left: u32) {
        if left == 0 {
            return;
        }
        drv.sockets().read(
            conn,
            Vec::with_capacity(64),
            IoMode::Once,
            move |drv, conn, res, mut buf| {
                buf.truncate(res.expect("server read"));
                out.borrow_mut().push(buf);
                read_chunks(drv, conn, out, left - 1);
            },
        );
    }

    let (rx, srv) = (received.clone(), server.clone());
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), move |drv, _, res| {
            let (conn, _) = res.expect("accept");
            assert!(srv.replace(Some(conn)).is_none(), "one connection expected");
            read_chunks(drv, conn, rx.clone(), 2);
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap();

    let writes = Rc::new(Cell::new(0));
    let w = writes.clone();
    let client = drv
        .sockets()
        .connect(addr, None, move |drv, conn, res| {
            res.expect("connect");
            let mut s = drv.sockets();
            assert_eq!(s.connection_state(conn), ConnectionState::Connected);
            s.set_keep_alive(conn, true).expect("keep-alive");
            s.set_keep_alive_params(conn, Duration::from_secs(10), Duration::from_secs(5), 4)
                .expect("keep-alive parameters");
            match s.set_user_timeout(conn, Duration::from_secs(10)) {
                Ok(()) => {}
                // Windows has TCP_MAXRT since Vista; Wine 8 does not implement it.
                Err(e) if util::under_wine() && e.status() == Status::NotSupported => {
                    eprintln!("Wine differs from Windows: TCP_MAXRT (the user timeout) is not implemented ({e})");
                }
                Err(e) => panic!("user timeout: {e}"),
            }
            s.set_no_delay(conn, true).expect("no-delay");
            s.write(conn, b"0123456789".to_vec(), IoMode::All, move |drv, conn, res, _| {
                assert_eq!(res, Ok(10));
                w.set(w.get() + 1);
                after(drv, Duration::from_millis(20), move |drv| {
                    drv.sockets()
                        .write(conn, b"abcde".to_vec(), IoMode::Once, move |_, _, res, _| {
                            assert_eq!(res, Ok(5));
                            w.set(w.get() + 1);
                        });
                });
            });
        })
        .expect("connect");
    assert_eq!(state(&mut drv, client), ConnectionState::Connecting);

    util::run_until(&mut drv, LIMIT, |_| received.borrow().len() == 2 && writes.get() == 2);
    assert_eq!(received.borrow()[0], b"0123456789");
    assert_eq!(received.borrow()[1], b"abcde");
    let server = server.get().unwrap();
    assert_eq!(state(&mut drv, server), ConnectionState::Connected);
    release_handles(&mut drv, listener, client, server);
    assert_quiet(&mut drv);
}

/// 0-tcp, shutdown sequence: the client writes 4 bytes and shuts down writing
/// (`ActiveClose`); a later write is `Disconnected` with 0 bytes. The server's
/// `All` read of 10 ends `Disconnected` after 4 bytes (`PassiveClose`); it
/// writes 4 bytes, shuts down writing (`Closed`), and a further write is
/// `Disconnected`. The client's `All` read ends `Disconnected` after those 4
/// bytes, in state `Closed`.
fn tcp_shutdown_sequence_reports_connection_states(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let client_done = Rc::new(Cell::new(false));
    let server_done = Rc::new(Cell::new(false));

    let sd = server_done.clone();
    let server: Rc<Cell<Option<StreamSocket>>> = Rc::default();
    let srv = server.clone();
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), move |drv, _, res| {
            let (conn, _) = res.expect("accept");
            srv.set(Some(conn));
            let sd = sd.clone();
            drv.sockets()
                .read(conn, Vec::with_capacity(10), IoMode::All, move |drv, conn, res, buf| {
                    assert_failed(&res, Status::Disconnected, 4);
                    assert_eq!(&buf[..4], b"ping");
                    assert_eq!(state(drv, conn), ConnectionState::PassiveClose);
                    drv.sockets()
                        .write(conn, b"pong".to_vec(), IoMode::All, move |drv, conn, res, _| {
                            assert_eq!(res, Ok(4));
                            drv.sockets().shutdown(conn, false, true).expect("server shutdown");
                            assert_eq!(state(drv, conn), ConnectionState::Closed);
                            drv.sockets()
                                .write(conn, b"late".to_vec(), IoMode::All, move |_, _, res, _| {
                                    assert_failed(&res, Status::Disconnected, 0);
                                    sd.set(true);
                                });
                        });
                });
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap();

    let cd = client_done.clone();
    let client = drv
        .sockets()
        .connect(addr, None, move |drv, conn, res| {
            res.expect("connect");
            drv.sockets()
                .write(conn, b"ping".to_vec(), IoMode::All, move |drv, conn, res, _| {
                    assert_eq!(res, Ok(4));
                    drv.sockets().shutdown(conn, false, true).expect("client shutdown");
                    assert_eq!(state(drv, conn), ConnectionState::ActiveClose);
                    drv.sockets()
                        .write(conn, b"late".to_vec(), IoMode::Once, move |drv, conn, res, _| {
                            assert_failed(&res, Status::Disconnected, 0);
                            drv.sockets().read(
                                conn,
                                Vec::with_capacity(10),
                                IoMode::All,
                                move |drv, conn, res, buf| {
                                    assert_failed(&res, Status::Disconnected, 4);
                                    assert_eq!(&buf[..4], b"pong");
                                    assert_eq!(state(drv, conn), ConnectionState::Closed);
                                    cd.set(true);
                                },
                            );
                        });
                });
        })
        .expect("connect");

    util::run_until(&mut drv, LIMIT, |_| client_done.get() && server_done.get());
    release_pair(
        &mut drv,
        &Pair {
            listener,
            client,
            server: server.get().unwrap(),
        },
    );
    assert_quiet(&mut drv);
}

/// A write that fails because this side already shut down writing does not
/// close the read side: the state stays `ActiveClose` ("reading still works")
/// and the peer's data is still read.
fn tcp_write_after_own_shutdown_keeps_read_side_open(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    drv.sockets().shutdown(pair.client, false, true).expect("shutdown");
    assert_eq!(state(&mut drv, pair.client), ConnectionState::ActiveClose);
    let (res, _) = write_now(&mut drv, pair.client, b"late", IoMode::Once);
    assert_failed(&res, Status::Disconnected, 0);
    assert_eq!(
        state(&mut drv, pair.client),
        ConnectionState::ActiveClose,
        "a write refused by our own shutdown must not mark the read side closed"
    );
    let (res, _) = write_now(&mut drv, pair.server, b"still", IoMode::All);
    assert_eq!(res, Ok(5));
    let (res, buf) = read_now(&mut drv, pair.client, 5, IoMode::All);
    assert_eq!(res, Ok(5));
    assert_eq!(buf, b"still");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// 0-tcp-cancel, read: a `Once` read on the accepted socket cancelled at once
/// gives its untouched buffer back and its callback never runs; releasing the
/// accepted socket, the listener (inside its own accept callback) and the
/// client each drops the last reference (no internal reference leaked), and
/// the loop reaches `OutOfWaiters` within a second.
fn tcp_read_cancel_leaks_nothing(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let read_ran = Rc::new(Cell::new(false));
    let accepted = Rc::new(Cell::new(false));
    let (rr, acc) = (read_ran.clone(), accepted.clone());
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), move |drv, listener, res| {
            let (conn, _) = res.expect("accept");
            let rr = rr.clone();
            drv.sockets().read(
                conn,
                {
                    let mut b = Vec::with_capacity(64);
                    b.extend_from_slice(&[7u8; 32]);
                    b
                },
                IoMode::Once,
                move |_, _, _, _: Vec<u8>| rr.set(true),
            );
            let c = drv.sockets().cancel_read(conn).expect("a read was pending");
            assert_eq!(c.buffer.as_deref(), Some(&[7u8; 32][..]));
            assert_eq!(c.transferred, 0);
            assert!(drv.sockets().cancel_read(conn).is_none(), "cancelled twice");
            assert_eq!(drv.release_ref(conn), Ok(false));
            assert_eq!(drv.release_ref(listener), Ok(false));
            acc.set(true);
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap();
    let connected = Rc::new(Cell::new(false));
    let con = connected.clone();
    drv.sockets()
        .connect(addr, None, move |drv, conn, res| {
            res.expect("connect");
            assert_eq!(drv.release_ref(conn), Ok(false));
            con.set(true);
        })
        .expect("connect");
    let start = Instant::now();
    assert_eq!(
        util::run_until_not_idle(&mut drv, Duration::from_secs(1)),
        ExitReason::OutOfWaiters
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(accepted.get() && connected.get());
    assert!(!read_ran.get(), "a cancelled read's callback ran");
    util::assert_no_leaks(&drv);
}

/// 0-tcp-cancel, write: 256 MiB `Once` writes to a peer that never reads,
/// until one is still pending after a non-blocking turn of the loop; cancelling
/// it gives the whole buffer back with 0 bytes transferred, its callback never
/// runs, every release drops the last reference and the loop goes quiet.
fn tcp_write_cancel_leaks_nothing(kind: BackendKind) {
    const CHUNK: usize = 256 << 20;
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let spare: Slot<Vec<u8>> = Rc::new(RefCell::new(Some(vec![0; CHUNK])));
    let completed = Rc::new(Cell::new(0usize));
    let mut pending = false;
    for _ in 0..16 {
        let buf = spare.take().expect("the buffer came back");
        let before = completed.get();
        let (sp, done) = (spare.clone(), completed.clone());
        drv.sockets()
            .write(pair.client, buf, IoMode::Once, move |_, _, res, buf| {
                let n = res.expect("write");
                assert!(n > 0 && n <= CHUNK);
                *sp.borrow_mut() = Some(buf);
                done.set(done.get() + 1);
            });
        drv.process_events(Some(Duration::ZERO)).expect("process_events");
        if completed.get() == before {
            pending = true;
            break;
        }
    }
    assert!(pending, "16 writes of 256 MiB all completed at once");
    let calls = completed.get();
    let c = drv.sockets().cancel_write(pair.client).expect("a write was pending");
    assert_eq!(c.transferred, 0, "a pending Once write has moved nothing");
    assert_eq!(c.buffer.map(|b| b.len()), Some(CHUNK));
    assert!(drv.sockets().cancel_write(pair.client).is_none());
    drv.process_events(Some(Duration::from_millis(50)))
        .expect("process_events");
    assert_eq!(completed.get(), calls, "a cancelled write's callback ran");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
    assert_eq!(completed.get(), calls);
}

/// 0-tcp-cancelconn: a connect to 192.0.2.1:1 (black-holed in the test
/// namespace) stays `Connecting`; after 100 ms `cancel_connect` and a release
/// end it, its callback never runs and the loop reaches `OutOfWaiters`.
fn tcp_connect_cancel_while_hanging(kind: BackendKind) {
    if !util::in_test_netns("tcp_connect_cancel_while_hanging") {
        return;
    }
    let mut drv = util::driver(kind);
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let target: SocketAddr = "192.0.2.1:1".parse().unwrap();
    let sock = drv
        .sockets()
        .connect(target, None, move |_, _, _| r.set(true))
        .expect("connect");
    assert_eq!(state(&mut drv, sock), ConnectionState::Connecting);
    let cancelled = Rc::new(Cell::new(false));
    let cc = cancelled.clone();
    after(&mut drv, Duration::from_millis(100), move |drv| {
        assert_eq!(state(drv, sock), ConnectionState::Connecting);
        assert!(drv.sockets().cancel_connect(sock), "a connect was pending");
        assert_eq!(state(drv, sock), ConnectionState::Closed);
        assert!(!drv.sockets().cancel_connect(sock));
        assert_eq!(drv.release_ref(sock), Ok(false));
        cc.set(true);
    });
    assert_eq!(
        util::run_until_not_idle(&mut drv, Duration::from_secs(2)),
        ExitReason::OutOfWaiters
    );
    assert!(cancelled.get());
    assert!(!ran.get(), "a cancelled connect's callback ran");
    util::assert_no_leaks(&drv);
}

/// 0-tcp-readwait: a zero-length `Once` read completes with `Ok(0)` only once
/// data arrives (written 100 ms later) and consumes nothing: an `Immediate`
/// read then gets all 10 bytes.
fn tcp_zero_length_read_waits_for_data(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let written = Rc::new(Cell::new(false));
    let start = Instant::now();
    let w = written.clone();
    let client = pair.client;
    after(&mut drv, Duration::from_millis(100), move |drv| {
        drv.sockets()
            .write(client, b"0123456789".to_vec(), IoMode::All, move |_, _, res, _| {
                assert_eq!(res, Ok(10));
            });
        w.set(true);
    });
    let waited: Slot<IoOutcome> = shared();
    let wt = waited.clone();
    let w = written.clone();
    drv.sockets()
        .read(pair.server, Vec::new(), IoMode::Once, move |_, _, res, buf| {
            assert!(w.get(), "the wait completed before any data was sent");
            assert!(start.elapsed() >= Duration::from_millis(90));
            *wt.borrow_mut() = Some((res, buf));
        });
    util::run_until(&mut drv, LIMIT, |_| waited.borrow().is_some());
    let (res, buf) = waited.take().unwrap();
    assert_eq!(res, Ok(0));
    assert!(buf.is_empty());
    let (res, buf) = read_now(&mut drv, pair.server, 10, IoMode::Immediate);
    assert_eq!(res, Ok(10));
    assert_eq!(buf, b"0123456789");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// Right after `connect` returns, before the loop runs, the socket already
/// has its local address (the connect was started, which binds it), on
/// every backend.
fn tcp_connecting_socket_has_a_local_address_at_once(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), |drv, _, res| {
            if let Ok((conn, _)) = res {
                drv.release_ref(conn).expect("release the accepted connection");
            }
        })
        .expect("listen");
    let to = drv.sockets().local_address(listener).unwrap();
    let done: Slot<Result<()>> = shared();
    let d = done.clone();
    let client = drv
        .sockets()
        .connect(to, None, move |_, _, res| *d.borrow_mut() = Some(res))
        .expect("connect");
    let local = drv
        .sockets()
        .local_address(client)
        .unwrap()
        .as_inet()
        .expect("an IP address");
    assert!(local.ip().is_loopback(), "bound by the connect: {local}");
    assert_ne!(local.port(), 0, "bound by the connect: {local}");
    util::run_until(&mut drv, LIMIT, |_| done.borrow().is_some());
    assert_eq!(done.take().unwrap(), Ok(()));
    assert_eq!(drv.release_ref(client), Ok(false));
    assert_eq!(drv.release_ref(listener), Ok(false));
    util::run_until_not_idle(&mut drv, Duration::from_secs(1));
    util::assert_no_leaks(&drv);
}

/// A write started and followed at once by `shutdown(write)`, without the
/// loop running in between: the write is not overtaken by the shutdown (a
/// backend that queues requests hands them to the OS first), so it sends its
/// bytes and the peer reads them, then end of stream.
fn tcp_write_then_shutdown_at_once_sends_the_data(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let wrote: Slot<Result<usize>> = shared();
    let w = wrote.clone();
    drv.sockets()
        .write(pair.client, b"bye".to_vec(), IoMode::All, move |_, _, res, _| {
            *w.borrow_mut() = Some(res)
        });
    drv.sockets().shutdown(pair.client, false, true).expect("shutdown");
    util::run_until(&mut drv, LIMIT, |_| wrote.borrow().is_some());
    assert_eq!(wrote.take().unwrap(), Ok(3), "the write went out before the shutdown");
    let (res, buf) = read_now(&mut drv, pair.server, 3, IoMode::All);
    assert_eq!(res, Ok(3));
    assert_eq!(buf, b"bye");
    let (res, _) = read_now(&mut drv, pair.server, 8, IoMode::Once);
    assert_failed(&res, Status::Disconnected, 0);
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// `wait_for_data` also completes at end of stream (the peer shut down
/// writing), and the read after it reports `Disconnected` / `PassiveClose`.
fn tcp_wait_for_data_completes_at_end_of_stream(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let done: Slot<Result<()>> = shared();
    let d = done.clone();
    drv.sockets()
        .wait_for_data(pair.server, move |_, _, res| *d.borrow_mut() = Some(res));
    drv.process_events(Some(Duration::from_millis(20)))
        .expect("process_events");
    assert!(done.borrow().is_none(), "the wait completed without data");
    drv.sockets().shutdown(pair.client, false, true).expect("shutdown");
    util::run_until(&mut drv, LIMIT, |_| done.borrow().is_some());
    assert_eq!(done.take().unwrap(), Ok(()));
    let (res, _) = read_now(&mut drv, pair.server, 8, IoMode::Once);
    assert_failed(&res, Status::Disconnected, 0);
    assert_eq!(state(&mut drv, pair.server), ConnectionState::PassiveClose);
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// An `Immediate` read on a socket with nothing to read completes with
/// `WouldBlock` (from `process_events`, not inside `read`) and gives the buffer
/// back; the socket keeps working.
fn tcp_read_immediate_on_empty_socket_would_block(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let (res, buf) = read_now(&mut drv, pair.server, 16, IoMode::Immediate);
    assert_failed(&res, Status::WouldBlock, 0);
    assert!(buf.is_empty() && buf.capacity() >= 16, "the buffer comes back, empty");
    assert_eq!(state(&mut drv, pair.server), ConnectionState::Connected);
    let (res, _) = write_now(&mut drv, pair.client, b"xyz", IoMode::All);
    assert_eq!(res, Ok(3));
    let (res, buf) = read_now(&mut drv, pair.server, 3, IoMode::All);
    assert_eq!(res, Ok(3));
    assert_eq!(buf, b"xyz");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// A connect to a loopback port nobody listens on (a listener just released)
/// reports `Refused` with the OS code, from `process_events`; the socket is
/// then `Closed`, and I/O on it is `Disconnected`.
fn tcp_connect_refused(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), |_, _, _| {
            panic!("nothing connects before the release")
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap();
    assert_eq!(drv.release_ref(listener), Ok(false));

    let result: Slot<Result<()>> = shared();
    let r = result.clone();
    let sock = drv
        .sockets()
        .connect(addr, None, move |_, _, res| *r.borrow_mut() = Some(res))
        .expect("connect");
    assert!(result.borrow().is_none(), "the callback ran inside connect()");
    util::run_until(&mut drv, LIMIT, |_| result.borrow().is_some());
    let err = result.take().unwrap().unwrap_err();
    assert_eq!(err.status(), Status::Refused, "{err}");
    assert_eq!(err.to_io().kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(err.raw_os_error().is_some(), "the OS code is kept");
    assert_eq!(state(&mut drv, sock), ConnectionState::Closed);
    let (res, _) = read_now(&mut drv, sock, 4, IoMode::Once);
    assert_failed(&res, Status::Disconnected, 0);
    assert_eq!(drv.release_ref(sock), Ok(false));
    assert_quiet(&mut drv);
}

/// A connect with a bind address leaves from it (the server sees it as the
/// peer); a bind address that is taken fails the connect with `AddressInUse`,
/// reported from `process_events`.
fn tcp_connect_with_bind_address(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let peers: Shared<Vec<SocketAddress>> = shared();
    let conns: Shared<Vec<StreamSocket>> = shared();
    let (p, c) = (peers.clone(), conns.clone());
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), move |_, _, res| {
            let (conn, peer) = res.expect("accept");
            p.borrow_mut().push(peer);
            c.borrow_mut().push(conn);
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap();

    let bind: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let ok: Slot<Result<()>> = shared();
    let o = ok.clone();
    let client = drv
        .sockets()
        .connect(addr.clone(), Some(bind.into()), move |_, _, res| {
            *o.borrow_mut() = Some(res)
        })
        .expect("connect");
    util::run_until(&mut drv, LIMIT, |_| ok.borrow().is_some() && peers.borrow().len() == 1);
    assert_eq!(ok.take().unwrap(), Ok(()));
    let local = drv.sockets().local_address(client).unwrap().as_inet().unwrap();
    assert_eq!(local.ip(), bind.ip());
    assert_eq!(peers.borrow()[0], SocketAddress::Inet(local));

    // The listener's own address is taken: binding to it must fail.
    let failed: Slot<Result<()>> = shared();
    let f = failed.clone();
    let loser = drv
        .sockets()
        .connect(addr.clone(), Some(addr), move |_, _, res| *f.borrow_mut() = Some(res))
        .expect("connect");
    assert!(failed.borrow().is_none(), "the callback ran inside connect()");
    util::run_until(&mut drv, LIMIT, |_| failed.borrow().is_some());
    let err = failed.take().unwrap().unwrap_err();
    assert_eq!(err.status(), Status::AddressInUse, "{err}");
    assert_eq!(state(&mut drv, loser), ConnectionState::Closed);

    assert_eq!(drv.release_ref(loser), Ok(false));
    let server = conns.borrow()[0];
    release_handles(&mut drv, listener, client, server);
    assert_quiet(&mut drv);
}

/// Listening twice on one address without `reuse_port` fails the second
/// listen with `AddressInUse` (and the OS code); the first keeps working.
fn tcp_listen_on_address_in_use(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let first = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), |_, _, _| {})
        .expect("listen");
    let addr = drv.sockets().local_address(first).unwrap();
    let options = ListenOptions {
        reuse_port: false,
        ..ListenOptions::default()
    };
    let err = drv
        .sockets()
        .listen(addr.clone(), options, |_, _, _| panic!("the failed listener accepted"))
        .expect_err("a second listener on the same address");
    assert_eq!(err.status(), Status::AddressInUse, "{err}");
    assert_eq!(err.to_io().kind(), ErrorKind::AddrInUse, "{err}");
    assert_eq!(drv.leak_report().listeners, 1);
    assert_eq!(drv.sockets().local_address(first), Ok(addr));
    assert_eq!(drv.release_ref(first), Ok(false));
    assert_quiet(&mut drv);
}

/// The basic exchange over IPv6 loopback (`[::1]:0`); addresses are IPv6.
/// Skipped when the host has no `::1`.
fn tcp_exchange_over_ipv6_loopback(kind: BackendKind) {
    if std::net::TcpListener::bind(loopback_v6()).is_err() {
        eprintln!("SKIPPED tcp_exchange_over_ipv6_loopback: no IPv6 loopback here");
        return;
    }
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v6());
    let local = drv.sockets().local_address(pair.client).unwrap();
    let remote = drv.sockets().remote_address(pair.client).unwrap();
    assert!(local.as_inet().unwrap().is_ipv6(), "{local}");
    assert_eq!(
        remote.as_inet().unwrap().ip(),
        "::1".parse::<std::net::IpAddr>().unwrap()
    );
    let (res, _) = write_now(&mut drv, pair.client, b"0123456789", IoMode::All);
    assert_eq!(res, Ok(10));
    let (res, buf) = read_now(&mut drv, pair.server, 10, IoMode::All);
    assert_eq!(res, Ok(10));
    assert_eq!(buf, b"0123456789");
    let (res, _) = write_now(&mut drv, pair.server, b"abcde", IoMode::Once);
    assert_eq!(res, Ok(5));
    let (res, buf) = read_now(&mut drv, pair.client, 5, IoMode::All);
    assert_eq!(res, Ok(5));
    assert_eq!(buf, b"abcde");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// The peer is closed with unread data (the kernel answers with a reset)
/// while an `All` write of 32 MiB is pending: the write ends `Disconnected`
/// with the bytes it had sent, the state is `Closed`, nothing hangs and no
/// SIGPIPE ends the process.
fn tcp_peer_reset_during_write(kind: BackendKind) {
    const LEN: usize = 32 << 20;
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let result: Slot<IoOutcome> = shared();
    let r = result.clone();
    drv.sockets()
        .write(pair.client, vec![1; LEN], IoMode::All, move |_, _, res, buf| {
            *r.borrow_mut() = Some((res, buf))
        });
    drv.process_events(Some(Duration::from_millis(20)))
        .expect("process_events");
    assert!(result.borrow().is_none(), "32 MiB went to a peer that does not read");
    // The server's receive queue holds unread data: closing it sends a reset.
    assert_eq!(drv.release_ref(pair.server), Ok(false));
    util::run_until(&mut drv, LIMIT, |_| result.borrow().is_some());
    let (res, buf) = result.take().unwrap();
    let err = res.expect_err("a write into a reset connection");
    assert_eq!(err.status(), Status::Disconnected, "{err}");
    assert!(
        err.transferred() > 0 && err.transferred() < LEN,
        "transferred {}",
        err.transferred()
    );
    assert_eq!(buf.len(), LEN);
    assert_eq!(state(&mut drv, pair.client), ConnectionState::Closed);
    let (res, _) = write_now(&mut drv, pair.client, b"more", IoMode::All);
    assert_failed(&res, Status::Disconnected, 0);
    assert_eq!(drv.release_ref(pair.client), Ok(false));
    assert_eq!(drv.release_ref(pair.listener), Ok(false));
    assert_quiet(&mut drv);
}

/// Half-close: `first` shuts down writing; `second` reads end of stream
/// (`PassiveClose`) yet can still send to `first` (`ActiveClose`); then
/// `second` shuts down too and both ends are `Closed`.
fn half_close(drv: &mut Driver, first: StreamSocket, second: StreamSocket) {
    drv.sockets().shutdown(first, false, true).expect("shutdown");
    assert_eq!(state(drv, first), ConnectionState::ActiveClose);
    let (res, _) = read_now(drv, second, 8, IoMode::Once);
    assert_failed(&res, Status::Disconnected, 0);
    assert_eq!(state(drv, second), ConnectionState::PassiveClose);

    let (res, _) = write_now(drv, second, b"after", IoMode::All);
    assert_eq!(res, Ok(5));
    let (res, buf) = read_now(drv, first, 5, IoMode::All);
    assert_eq!(res, Ok(5));
    assert_eq!(buf, b"after");
    assert_eq!(state(drv, first), ConnectionState::ActiveClose);

    drv.sockets().shutdown(second, false, true).expect("shutdown");
    assert_eq!(state(drv, second), ConnectionState::Closed);
    let (res, _) = read_now(drv, first, 8, IoMode::Once);
    assert_failed(&res, Status::Disconnected, 0);
    assert_eq!(state(drv, first), ConnectionState::Closed);
}

/// Half-close with the client shutting down first.
fn tcp_half_close_client_first(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    half_close(&mut drv, pair.client, pair.server);
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// Half-close with the server shutting down first.
fn tcp_half_close_server_first(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    half_close(&mut drv, pair.server, pair.client);
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// A released handle is stale: I/O on it completes with `InvalidHandle` from
/// `process_events` (buffer returned), the other calls fail or are no-ops, a
/// second release is `Err(InvalidHandle)`, and a socket that reuses its slot is
/// not affected.
fn tcp_stale_handle_after_release(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let stale = pair.server;
    assert_eq!(drv.release_ref(stale), Ok(false));
    assert!(!drv.is_valid(stale));

    let (res, buf) = read_now(&mut drv, stale, 12, IoMode::Once);
    assert_failed(&res, Status::InvalidHandle, 0);
    assert!(buf.is_empty() && buf.capacity() >= 12, "the buffer comes back, empty");
    let (res, buf) = write_now(&mut drv, stale, b"gone", IoMode::All);
    assert_failed(&res, Status::InvalidHandle, 0);
    assert_eq!(buf, b"gone");
    let err = drv.release_ref(stale).unwrap_err();
    assert_eq!(err.status(), Status::InvalidHandle);
    assert_eq!(
        drv.sockets().shutdown(stale, true, true).unwrap_err().status(),
        Status::InvalidHandle
    );
    assert_eq!(
        drv.sockets().local_address(stale).unwrap_err().status(),
        Status::InvalidHandle
    );
    assert_eq!(
        drv.sockets().set_no_delay(stale, true).unwrap_err().status(),
        Status::InvalidHandle
    );
    assert!(drv.sockets().cancel_read(stale).is_none());
    assert!(drv.sockets().cancel_write(stale).is_none());
    assert!(!drv.sockets().cancel_connect(stale));
    assert_eq!(state(&mut drv, stale), ConnectionState::Closed);
    assert_eq!(drv.add_ref(stale).unwrap_err().status(), Status::InvalidHandle);

    // A new connection may reuse the slot; the stale handle must not reach it.
    let fresh = connected_pair(&mut drv, loopback_v4());
    let got: Slot<IoOutcome> = shared();
    let g = got.clone();
    drv.sockets().read(
        fresh.server,
        Vec::with_capacity(4),
        IoMode::All,
        move |_, _, res, buf| *g.borrow_mut() = Some((res, buf)),
    );
    let (res, _) = read_now(&mut drv, stale, 4, IoMode::Once);
    assert_failed(&res, Status::InvalidHandle, 0);
    assert!(drv.sockets().cancel_read(stale).is_none());
    let (res, _) = write_now(&mut drv, fresh.client, b"mine", IoMode::All);
    assert_eq!(res, Ok(4));
    util::run_until(&mut drv, LIMIT, |_| got.borrow().is_some());
    let (res, buf) = got.take().unwrap();
    assert_eq!(res, Ok(4));
    assert_eq!(buf, b"mine");

    release_pair(&mut drv, &fresh);
    assert_eq!(drv.release_ref(pair.client), Ok(false));
    assert_eq!(drv.release_ref(pair.listener), Ok(false));
    assert_quiet(&mut drv);
}

/// A callback may release its own socket: the server releases itself from its
/// read callback, the client (seeing end of stream) from its own; each runs
/// once, the handles become invalid and nothing leaks.
fn tcp_callback_releases_its_own_socket(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    drv.sockets().read(
        pair.server,
        Vec::with_capacity(4),
        IoMode::All,
        move |drv, me, res, _| {
            assert_eq!(res, Ok(4));
            assert_eq!(drv.release_ref(me), Ok(false));
            assert!(!drv.is_valid(me));
            c.set(c.get() + 1);
        },
    );
    let c = calls.clone();
    drv.sockets().read(
        pair.client,
        Vec::with_capacity(4),
        IoMode::Once,
        move |drv, me, res, _| {
            assert!(res.is_err(), "the peer closed: {res:?}");
            assert_eq!(drv.release_ref(me), Ok(false));
            assert!(!drv.is_valid(me));
            c.set(c.get() + 10);
        },
    );
    let (res, _) = write_now(&mut drv, pair.client, b"bye!", IoMode::All);
    assert_eq!(res, Ok(4));
    util::run_until(&mut drv, LIMIT, |_| calls.get() == 11);
    assert_eq!(drv.release_ref(pair.listener), Ok(false));
    assert_quiet(&mut drv);
    assert_eq!(calls.get(), 11, "each callback ran exactly once");
}

/// A `Once` read started when data is already waiting and cancelled before
/// `process_events` runs: its callback never runs, and no data is lost — the
/// bytes are either reported by the cancel (`transferred`, in the returned
/// buffer) or still readable afterwards.
fn tcp_read_cancel_after_data_arrived_loses_no_data(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let (res, _) = write_now(&mut drv, pair.client, b"0123456789", IoMode::All);
    assert_eq!(res, Ok(10));
    let waited: Slot<Result<()>> = shared();
    let w = waited.clone();
    drv.sockets()
        .wait_for_data(pair.server, move |_, _, res| *w.borrow_mut() = Some(res));
    util::run_until(&mut drv, LIMIT, |_| waited.borrow().is_some());
    assert_eq!(waited.take().unwrap(), Ok(()));

    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.sockets()
        .read(pair.server, Vec::with_capacity(64), IoMode::Once, move |_, _, _, _| {
            r.set(true)
        });
    let c = drv.sockets().cancel_read(pair.server).expect("a read was pending");
    let buffer = c.buffer.expect("epoll gives the buffer back at once");
    let got = buffer[..c.transferred].to_vec();
    drv.process_events(Some(Duration::from_millis(20)))
        .expect("process_events");
    assert!(!ran.get(), "a cancelled read's callback ran");
    assert_rest_after_cancel(&mut drv, pair.server, got, b"0123456789");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// A `Once` write cancelled right after it was started (before any
/// `process_events`): its callback never runs, and `Cancelled::transferred`
/// tells the truth — the peer receives exactly that many bytes.
fn tcp_write_cancel_reports_bytes_already_sent(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.sockets()
        .write(pair.client, b"0123456789".to_vec(), IoMode::Once, move |_, _, _, _| {
            r.set(true)
        });
    let c = drv.sockets().cancel_write(pair.client).expect("a write was pending");
    assert_eq!(c.buffer.as_deref(), Some(&b"0123456789"[..]));

    // Collect whatever reaches the peer within 200 ms.
    let got: Slot<IoOutcome> = shared();
    let g = got.clone();
    drv.sockets().read(
        pair.server,
        Vec::with_capacity(64),
        IoMode::Once,
        move |_, _, res, buf| *g.borrow_mut() = Some((res, buf)),
    );
    let deadline = Instant::now() + Duration::from_millis(200);
    while got.borrow().is_none() && Instant::now() < deadline {
        drv.process_events(Some(Duration::from_millis(20)))
            .expect("process_events");
    }
    let received = match got.take() {
        Some((res, _)) => res.expect("server read"),
        None => {
            assert!(drv.sockets().cancel_read(pair.server).is_some());
            0
        }
    };
    assert!(!ran.get(), "a cancelled write's callback ran");
    assert_eq!(
        received, c.transferred,
        "the peer received {received} bytes of a write whose cancel reported {}",
        c.transferred
    );
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// Two reads whose data arrives in the same turn; whichever callback runs
/// first cancels the other. Exactly one callback runs, the cancel reports what
/// the other read had taken, and no byte is lost.
fn tcp_cancel_from_callback_in_same_batch(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let a = connected_pair(&mut drv, loopback_v4());
    let b = connected_pair(&mut drv, loopback_v4());
    let runs: Shared<Vec<StreamSocket>> = shared();
    let cancelled: Slot<(StreamSocket, Vec<u8>)> = shared();
    for (me, other) in [(a.server, b.server), (b.server, a.server)] {
        let (runs, cancelled) = (runs.clone(), cancelled.clone());
        drv.sockets()
            .read(me, Vec::with_capacity(64), IoMode::Once, move |drv, me, res, buf| {
                let n = res.expect("read");
                assert_eq!(&buf[..n], b"0123456789");
                runs.borrow_mut().push(me);
                let c = drv.sockets().cancel_read(other).expect("the other read was pending");
                let buf = c.buffer.expect("epoll gives the buffer back at once");
                *cancelled.borrow_mut() = Some((other, buf[..c.transferred].to_vec()));
            });
    }
    // Both writes finish in submit; both reads become ready in the next poll.
    for client in [a.client, b.client] {
        drv.sockets()
            .write(client, b"0123456789".to_vec(), IoMode::All, |_, _, res, _| {
                assert_eq!(res, Ok(10))
            });
    }
    util::run_until(&mut drv, LIMIT, |_| !runs.borrow().is_empty());
    drv.process_events(Some(Duration::from_millis(20)))
        .expect("process_events");
    assert_eq!(runs.borrow().len(), 1, "the cancelled read's callback ran");
    let (other, got) = cancelled.take().unwrap();
    assert_rest_after_cancel(&mut drv, other, got, b"0123456789");
    release_pair(&mut drv, &a);
    release_pair(&mut drv, &b);
    assert_quiet(&mut drv);
}

/// Fifty ping-pong rounds of `Once` writes and `All` reads both ways: every
/// one-shot callback runs exactly once, and nothing is left to cancel after.
fn tcp_callbacks_run_exactly_once_per_operation(kind: BackendKind) {
    const ROUNDS: usize = 50;
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let counts: Shared<Vec<u32>> = Rc::new(RefCell::new(vec![0; ROUNDS * 4]));

    fn round(drv: &mut Driver, pair: (StreamSocket, StreamSocket), i: usize, counts: Shared<Vec<u32>>) {
        if i == ROUNDS {
            return;
        }
        let (client, server) = pair;
        let msg = format!("ping {i:03}").into_bytes();
        let len = msg.len();
        let c = counts.clone();
        drv.sockets()
            .write(client, msg.clone(), IoMode::Once, move |_, _, res, _| {
                assert_eq!(res, Ok(len));
                c.borrow_mut()[i * 4] += 1;
            });
        let c = counts.clone();
        drv.sockets().read(
            server,
            Vec::with_capacity(len),
            IoMode::All,
            move |drv, server, res, buf| {
                assert_eq!(res, Ok(len));
                assert_eq!(buf, msg);
                c.borrow_mut()[i * 4 + 1] += 1;
                let c2 = c.clone();
                drv.sockets().write(server, buf, IoMode::Once, move |_, _, res, _| {
                    assert_eq!(res, Ok(len));
                    c2.borrow_mut()[i * 4 + 2] += 1;
                });
                drv.sockets()
                    .read(client, Vec::with_capacity(len), IoMode::All, move |drv, _, res, _| {
                        assert_eq!(res, Ok(len));
                        c.borrow_mut()[i * 4 + 3] += 1;
                        round(drv, pair, i + 1, c);
                    });
            },
        );
    }

    round(&mut drv, (pair.client, pair.server), 0, counts.clone());
    util::run_until(&mut drv, LIMIT, |_| counts.borrow()[ROUNDS * 4 - 1] > 0);
    drv.process_events(Some(Duration::from_millis(20)))
        .expect("process_events");
    assert!(
        counts.borrow().iter().all(|&n| n == 1),
        "callback counts: {:?}",
        counts.borrow()
    );
    for s in [pair.client, pair.server] {
        assert!(drv.sockets().cancel_read(s).is_none());
        assert!(drv.sockets().cancel_write(s).is_none());
    }
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// `exit()` called from a socket callback ends that batch with `Exited`; the
/// request is consumed and the next turns carry on normally.
fn tcp_exit_from_socket_callback(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    drv.sockets()
        .write(pair.client, b"0123456789".to_vec(), IoMode::All, |drv, _, res, _| {
            assert_eq!(res, Ok(10));
            drv.exit();
        });
    assert_eq!(util::run_until_not_idle(&mut drv, LIMIT), ExitReason::Exited);
    let (res, buf) = read_now(&mut drv, pair.server, 10, IoMode::All);
    assert_eq!(res, Ok(10));
    assert_eq!(buf, b"0123456789");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// A second read while one is pending fails with `Busy` through its callback
/// (not inside `read`), with its buffer; the first read is unaffected.
fn tcp_second_read_while_pending_is_busy(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let first: Slot<IoOutcome> = shared();
    let f = first.clone();
    drv.sockets().read(
        pair.server,
        Vec::with_capacity(3),
        IoMode::All,
        move |_, _, res, buf| *f.borrow_mut() = Some((res, buf)),
    );
    let (res, buf) = read_now(&mut drv, pair.server, 9, IoMode::Once);
    assert_failed(&res, Status::Busy, 0);
    assert!(buf.is_empty() && buf.capacity() >= 9, "the buffer comes back, empty");
    assert!(first.borrow().is_none());
    let (res, _) = write_now(&mut drv, pair.client, b"abc", IoMode::All);
    assert_eq!(res, Ok(3));
    util::run_until(&mut drv, LIMIT, |_| first.borrow().is_some());
    let (res, buf) = first.take().unwrap();
    assert_eq!(res, Ok(3));
    assert_eq!(buf, b"abc");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// 64 MiB through one `All` write and one `All` read arrive intact.
fn tcp_large_transfer_in_all_mode(kind: BackendKind) {
    const LEN: usize = 64 << 20;
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let data = pattern(LEN, 5);
    let wrote: Slot<Result<usize>> = shared();
    let w = wrote.clone();
    drv.sockets()
        .write(pair.client, data.clone(), IoMode::All, move |_, _, res, _| {
            *w.borrow_mut() = Some(res)
        });
    let (res, buf) = read_now(&mut drv, pair.server, LEN, IoMode::All);
    assert_eq!(res, Ok(LEN));
    util::run_until(&mut drv, LIMIT, |_| wrote.borrow().is_some());
    assert_eq!(wrote.take().unwrap(), Ok(LEN));
    assert!(buf == data, "the 64 MiB arrived altered");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// 200 clients connect at once: each connect succeeds and the accept callback
/// runs exactly once per client, with that client's address as the peer.
fn tcp_accept_burst_of_200_clients(kind: BackendKind) {
    const N: usize = 200;
    let mut drv = util::driver(kind);
    let accepted: Shared<Vec<(StreamSocket, SocketAddress)>> = shared();
    let acc = accepted.clone();
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), move |_, _, res| {
            acc.borrow_mut().push(res.expect("accept"));
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap();
    let connected: Shared<Vec<StreamSocket>> = shared();
    let clients: Vec<StreamSocket> = (0..N)
        .map(|_| {
            let c = connected.clone();
            drv.sockets()
                .connect(addr.clone(), None, move |_, s, res| {
                    res.expect("connect");
                    c.borrow_mut().push(s);
                })
                .expect("connect")
        })
        .collect();
    util::run_until(&mut drv, LIMIT, |_| {
        connected.borrow().len() == N && accepted.borrow().len() == N
    });
    drv.process_events(Some(Duration::from_millis(50)))
        .expect("process_events");
    assert_eq!(accepted.borrow().len(), N, "accepted more than once");
    assert_eq!(connected.borrow().len(), N, "a connect callback ran twice");

    let client_addrs: HashSet<SocketAddress> = clients
        .iter()
        .map(|&c| drv.sockets().local_address(c).unwrap())
        .collect();
    let peers: HashSet<SocketAddress> = accepted.borrow().iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(client_addrs.len(), N);
    assert_eq!(peers, client_addrs);

    for (conn, _) in accepted.borrow_mut().drain(..) {
        assert_eq!(drv.release_ref(conn), Ok(false));
    }
    for c in clients {
        assert_eq!(drv.release_ref(c), Ok(false));
    }
    assert_eq!(drv.release_ref(listener), Ok(false));
    assert_quiet(&mut drv);
}

/// A connected `std::net::TcpStream` adopted by the driver is `Connected`,
/// keeps its addresses and exchanges data with its blocking std peer.
fn tcp_adopt_std_stream(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let std_listener = std::net::TcpListener::bind(loopback_v4()).expect("std listen");
    let std_client = std::net::TcpStream::connect(std_listener.local_addr().unwrap()).expect("std connect");
    let (mut std_server, _) = std_listener.accept().expect("std accept");
    std_server.set_read_timeout(Some(LIMIT)).expect("read timeout");
    let local = std_client.local_addr().unwrap();
    let sock = drv.sockets().adopt_stream(std_client).expect("adopt");
    assert_eq!(state(&mut drv, sock), ConnectionState::Connected);
    assert_eq!(drv.sockets().local_address(sock), Ok(SocketAddress::Inet(local)));
    assert_eq!(
        drv.sockets().remote_address(sock),
        Ok(SocketAddress::Inet(std_server.local_addr().unwrap()))
    );

    let (res, _) = write_now(&mut drv, sock, b"0123456789", IoMode::All);
    assert_eq!(res, Ok(10));
    let mut got = [0; 10];
    std_server.read_exact(&mut got).expect("std read");
    assert_eq!(&got, b"0123456789");
    std_server.write_all(b"abcde").expect("std write");
    let (res, buf) = read_now(&mut drv, sock, 5, IoMode::All);
    assert_eq!(res, Ok(5));
    assert_eq!(buf, b"abcde");
    drop(std_server);
    let (res, _) = read_now(&mut drv, sock, 5, IoMode::All);
    assert_failed(&res, Status::Disconnected, 0);
    assert_eq!(drv.release_ref(sock), Ok(false));
    assert_quiet(&mut drv);
}

/// Local and remote addresses of both ends and of the listener agree with each
/// other and with the peer address the accept callback got.
fn tcp_local_and_remote_addresses(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let peer: Slot<SocketAddress> = shared();
    let server: Rc<Cell<Option<StreamSocket>>> = Rc::default();
    let (p, s) = (peer.clone(), server.clone());
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), move |_, _, res| {
            let (conn, addr) = res.expect("accept");
            s.set(Some(conn));
            *p.borrow_mut() = Some(addr);
        })
        .expect("listen");
    let listen_addr = drv.sockets().local_address(listener).unwrap();
    let inet = listen_addr.as_inet().expect("an IP address");
    assert_eq!(inet.ip(), loopback_v4().ip());
    assert_ne!(inet.port(), 0, "the listener has its ephemeral port");
    let connected = Rc::new(Cell::new(false));
    let c = connected.clone();
    let client = drv
        .sockets()
        .connect(listen_addr.clone(), None, move |_, _, res| {
            res.expect("connect");
            c.set(true)
        })
        .expect("connect");
    util::run_until(&mut drv, LIMIT, |_| connected.get() && server.get().is_some());
    let server = server.get().unwrap();
    let s = drv.sockets();
    let client_local = s.local_address(client).unwrap();
    assert_eq!(s.remote_address(client), Ok(listen_addr.clone()));
    assert_eq!(s.local_address(server), Ok(listen_addr));
    assert_eq!(s.remote_address(server), Ok(client_local.clone()));
    assert_eq!(peer.borrow().clone(), Some(client_local));
    assert!(s.remote_address(listener).is_err(), "a listener has no peer");
    release_handles(&mut drv, listener, client, server);
    assert_quiet(&mut drv);
}

/// Cancelling a pending read (nothing had arrived) leaves the connection
/// fully usable: a new read gets the data the peer sends next, the state is
/// still `Connected`, and the peer can still be written to. (The original
/// WinAPI driver left the socket read-closed after `CancelIoEx` on a pending
/// `WSARecv`.)
fn tcp_read_after_cancelled_read_still_receives(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let pair = connected_pair(&mut drv, loopback_v4());
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.sockets()
        .read(pair.server, Vec::with_capacity(16), IoMode::Once, move |_, _, _, _| {
            r.set(true)
        });
    drv.process_events(Some(Duration::from_millis(20))).unwrap();
    let cancelled = drv.sockets().cancel_read(pair.server).expect("a read was pending");
    assert_eq!(cancelled.transferred, 0);
    assert_eq!(state(&mut drv, pair.server), ConnectionState::Connected);
    let (res, _) = write_now(&mut drv, pair.client, b"after", IoMode::All);
    assert_eq!(res, Ok(5));
    let (res, buf) = read_now(&mut drv, pair.server, 5, IoMode::All);
    assert_eq!(res, Ok(5));
    assert_eq!(buf, b"after");
    let (res, _) = write_now(&mut drv, pair.server, b"back", IoMode::All);
    assert_eq!(res, Ok(4));
    let (res, buf) = read_now(&mut drv, pair.client, 4, IoMode::All);
    assert_eq!(res, Ok(4));
    assert_eq!(buf, b"back");
    assert!(!ran.get(), "the cancelled read's callback never runs");
    release_pair(&mut drv, &pair);
    assert_quiet(&mut drv);
}

/// More sockets than a wait set can hold (64 handles on Windows) work at
/// once: 100 connections each echo one message concurrently.
fn tcp_hundred_concurrent_connections(kind: BackendKind) {
    const N: usize = 100;
    let mut drv = util::driver(kind);
    let echoed = Rc::new(Cell::new(0usize));
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), |drv, _, res| {
            let (conn, _) = res.expect("accept");
            drv.sockets()
                .read(conn, Vec::with_capacity(8), IoMode::All, |drv, conn, res, buf| {
                    assert_eq!(res, Ok(8));
                    drv.sockets().write(conn, buf, IoMode::All, |drv, conn, _, _| {
                        drv.release_ref(conn).unwrap();
                    });
                });
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap();
    for i in 0..N {
        let e = echoed.clone();
        drv.sockets()
            .connect(addr.clone(), None, move |drv, conn, res| {
                res.expect("connect");
                let msg = format!("{i:08}").into_bytes();
                drv.sockets()
                    .write(conn, msg.clone(), IoMode::All, move |drv, conn, _, _| {
                        drv.sockets()
                            .read(conn, Vec::with_capacity(8), IoMode::All, move |drv, conn, res, buf| {
                                assert_eq!(res, Ok(8));
                                assert_eq!(buf, msg);
                                e.set(e.get() + 1);
                                drv.release_ref(conn).unwrap();
                            });
                    });
            })
            .expect("connect");
    }
    util::run_until(&mut drv, LIMIT, |_| echoed.get() == N);
    assert_eq!(drv.release_ref(listener), Ok(false));
    assert_quiet(&mut drv);
}

/// A panic in the accept callback comes out of `process_events`, and the
/// listener goes on: still accepting, still a waiter, and the next
/// connection reaches the same callback.
fn tcp_accept_callback_panic_keeps_listening(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let accepted = Rc::new(Cell::new(0));
    let a = accepted.clone();
    let listener = drv
        .sockets()
        .listen(loopback_v4(), ListenOptions::default(), move |drv, _, res| {
            let (conn, _) = res.expect("accept");
            drv.release_ref(conn).unwrap();
            a.set(a.get() + 1);
            if a.get() == 1 {
                panic!("accept callback panics once");
            }
        })
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap().as_inet().unwrap();
    let first = std::net::TcpStream::connect(addr).expect("connect");
    assert_eq!(util::run_until_panic(&mut drv, LIMIT), "accept callback panics once");
    assert!(drv.sockets().is_accepting(listener), "the listener accepts again");
    assert!(drv.waiter_count() > 0, "the listener is still a waiter");
    let second = std::net::TcpStream::connect(addr).expect("connect");
    util::run_until(&mut drv, LIMIT, |_| accepted.get() == 2);
    drop((first, second));
    drv.release_ref(listener).unwrap();
    assert_eq!(util::run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    util::assert_no_leaks(&drv);
}

/// `try_read` reads what is there now, with no callback: `WouldBlock` on
/// an empty socket, the bytes once they arrived, `Busy` while a read is
/// pending, and `Disconnected` at the end of stream.
fn tcp_try_read_takes_what_is_there(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connected = Rc::new(Cell::new(false));
    let c = connected.clone();
    let sock = drv
        .sockets()
        .connect(addr, None, move |_, _, r| c.set(r.is_ok()))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    util::run_until(&mut drv, LIMIT, |_| connected.get());
    let mut buf = [0u8; 16];
    let status = |r: Result<usize>| r.err().map(|e| e.status());
    assert_eq!(status(drv.sockets().try_read(sock, &mut buf)), Some(Status::WouldBlock));
    peer.write_all(b"hello").unwrap();
    let deadline = Instant::now() + LIMIT;
    let n = loop {
        match drv.sockets().try_read(sock, &mut buf) {
            Ok(n) => break n,
            Err(e) if e.status() == Status::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("try_read: {e}"),
        }
    };
    assert_eq!(&buf[..n], b"hello");
    drv.sockets()
        .read(sock, Vec::with_capacity(4), IoMode::Once, |_, _, _, _| {});
    assert_eq!(status(drv.sockets().try_read(sock, &mut buf)), Some(Status::Busy));
    drv.sockets().cancel_read(sock);
    drop(peer);
    let deadline = Instant::now() + LIMIT;
    loop {
        match drv.sockets().try_read(sock, &mut buf) {
            Err(e) if e.status() == Status::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => {
                assert!(e.is_end_of_stream(), "{e}");
                break;
            }
            Ok(n) => panic!("read {n} bytes after the peer closed"),
        }
    }
    assert_eq!(drv.sockets().connection_state(sock), ConnectionState::PassiveClose);
    drv.release_ref(sock).unwrap();
    assert_eq!(util::run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    util::assert_no_leaks(&drv);
}

/// `try_write` writes what the socket takes now: the peer reads those
/// bytes; a socket whose peer does not read fills up and says
/// `WouldBlock`; a pending callback write makes it `Busy` (its bytes go
/// first); after this side's shutdown it is `Disconnected`; a released
/// handle is `InvalidHandle`.
fn tcp_try_write_writes_what_the_socket_takes(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connected = Rc::new(Cell::new(false));
    let c = connected.clone();
    let sock = drv
        .sockets()
        .connect(addr, None, move |_, _, r| c.set(r.is_ok()))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    util::run_until(&mut drv, LIMIT, |_| connected.get());
    let status = |r: Result<usize>| r.err().map(|e| e.status());

    // Written at once, and what the peer reads.
    assert_eq!(drv.sockets().try_write(sock, b"hello").unwrap(), 5);
    assert_eq!(drv.sockets().try_write(sock, b"").unwrap(), 0);
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");

    // A peer that does not read: the socket fills, then refuses.
    let chunk = vec![7u8; 64 * 1024];
    let mut total = 0usize;
    let deadline = Instant::now() + LIMIT;
    loop {
        match drv.sockets().try_write(sock, &chunk) {
            Ok(n) => {
                assert!(n > 0 && n <= chunk.len());
                total += n;
            }
            Err(e) if e.status() == Status::WouldBlock => break,
            Err(e) => panic!("try_write: {e}"),
        }
        assert!(Instant::now() < deadline, "the socket never filled ({total} bytes)");
    }
    assert!(total > 0);

    // A pending write goes first: try_write is Busy until it is done.
    let wrote = Rc::new(Cell::new(None));
    let w = wrote.clone();
    drv.sockets()
        .write(sock, b"tail".to_vec(), IoMode::All, move |_, _, r, _| {
            w.set(Some(r.is_ok()))
        });
    assert_eq!(status(drv.sockets().try_write(sock, b"x")), Some(Status::Busy));
    // The peer drains everything; the pending write then completes.
    let mut sink = vec![0u8; 64 * 1024];
    let mut drained = 0usize;
    peer.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let deadline = Instant::now() + LIMIT;
    while wrote.get().is_none() || drained < total + 4 {
        assert!(Instant::now() < deadline, "drained {drained} of {}", total + 4);
        match peer.read(&mut sink) {
            Ok(n) => drained += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("peer read: {e}"),
        }
        drv.process_events(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(wrote.get(), Some(true));
    assert_eq!(drained, total + 4);
    assert_eq!(drv.sockets().try_write(sock, b"again").unwrap(), 5);

    // After this side's shutdown: Disconnected.
    drv.sockets().shutdown(sock, false, true).unwrap();
    assert_eq!(
        status(drv.sockets().try_write(sock, b"late")),
        Some(Status::Disconnected)
    );
    drv.release_ref(sock).unwrap();
    assert_eq!(
        status(drv.sockets().try_write(sock, b"stale")),
        Some(Status::InvalidHandle)
    );
    assert_eq!(util::run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    util::assert_no_leaks(&drv);
}

contract_tests! {
    tcp_try_write_writes_what_the_socket_takes,
    tcp_try_read_takes_what_is_there,
    tcp_accept_callback_panic_keeps_listening,
    tcp_connect_and_exchange,
    tcp_shutdown_sequence_reports_connection_states,
    tcp_write_after_own_shutdown_keeps_read_side_open,
    tcp_read_cancel_leaks_nothing,
    tcp_write_cancel_leaks_nothing,
    tcp_connect_cancel_while_hanging,
    tcp_zero_length_read_waits_for_data,
    tcp_wait_for_data_completes_at_end_of_stream,
    tcp_write_then_shutdown_at_once_sends_the_data,
    tcp_connecting_socket_has_a_local_address_at_once,
    tcp_read_immediate_on_empty_socket_would_block,
    tcp_connect_refused,
    tcp_connect_with_bind_address,
    tcp_listen_on_address_in_use,
    tcp_exchange_over_ipv6_loopback,
    tcp_peer_reset_during_write,
    tcp_half_close_client_first,
    tcp_half_close_server_first,
    tcp_stale_handle_after_release,
    tcp_callback_releases_its_own_socket,
    tcp_read_cancel_after_data_arrived_loses_no_data,
    tcp_write_cancel_reports_bytes_already_sent,
    tcp_cancel_from_callback_in_same_batch,
    tcp_callbacks_run_exactly_once_per_operation,
    tcp_exit_from_socket_callback,
    tcp_second_read_while_pending_is_busy,
    tcp_large_transfer_in_all_mode,
    tcp_accept_burst_of_200_clients,
    tcp_adopt_std_stream,
    tcp_local_and_remote_addresses,
    tcp_read_after_cancelled_read_still_receives,
    tcp_hundred_concurrent_connections,
}
