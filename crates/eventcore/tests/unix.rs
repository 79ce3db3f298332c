//! Unix-domain socket contract tests: the upstream scenario `0-usds` (stream
//! and datagram), socket pairs, adoption, socket-file cleanup and the statuses
//! of failed connects. Every socket file lives in a per-scenario temporary
//! directory.

#![cfg(unix)]

mod util;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use eventcore::{
    BackendKind, ConnectionState, DatagramOptions, Driver, ExitReason, IoMode, ListenOptions, Result, SocketAddress,
    Status, StreamListener, StreamSocket,
};
use util::net::{assert_datagram, assert_quiet, exchange_0_udp, read_now, receive_now, send_now, write_now};
use util::{assert_status, slot, Slot};

const LIMIT: Duration = Duration::from_secs(10);

fn unix(path: &Path) -> SocketAddress {
    SocketAddress::Unix(path.to_path_buf())
}

/// Listens on `path`; accepted connections land in the returned list.
fn listen_at(drv: &mut Driver, path: &Path) -> (StreamListener, Rc<RefCell<Vec<StreamSocket>>>) {
    let accepted: Rc<RefCell<Vec<StreamSocket>>> = Rc::default();
    let acc = accepted.clone();
    let listener = drv
        .sockets()
        .listen(path, ListenOptions::default(), move |_, _, res| {
            let (conn, peer) = res.expect("accept");
            assert_eq!(peer, SocketAddress::Unnamed, "an unbound client has no name");
            acc.borrow_mut().push(conn);
        })
        .expect("listen");
    (listener, accepted)
}

/// Connects to `path` and runs the loop until the connect callback ran;
/// returns the socket and the connect result.
fn connect_now(drv: &mut Driver, path: &Path) -> (StreamSocket, Result<()>) {
    let out: Slot<Result<()>> = slot();
    let o = out.clone();
    let sock = drv
        .sockets()
        .connect(path, None, move |_, _, res| *o.borrow_mut() = Some(res))
        .expect("connect");
    assert!(out.borrow().is_none(), "the callback ran inside connect()");
    assert_eq!(drv.sockets().connection_state(sock), ConnectionState::Connecting);
    util::run_until(drv, LIMIT, |_| out.borrow().is_some());
    let res = out.take().unwrap();
    (sock, res)
}

/// 0-usds, stream: listen on a socket file, connect, and exchange 10 then 5
/// bytes as in 0-tcp; the addresses name the socket file on the listening
/// side and are unnamed on the client's.
fn unix_stream_connect_and_exchange(kind: BackendKind) {
    let dir = util::TempDir::new("unix-stream");
    let path = dir.path().join("stream.sock");
    let mut drv = util::driver(kind);
    let (listener, accepted) = listen_at(&mut drv, &path);
    assert_eq!(drv.sockets().local_address(listener), Ok(unix(&path)));
    let (client, res) = connect_now(&mut drv, &path);
    assert_eq!(res, Ok(()));
    assert_eq!(drv.sockets().connection_state(client), ConnectionState::Connected);
    util::run_until(&mut drv, LIMIT, |_| accepted.borrow().len() == 1);
    let server = accepted.borrow()[0];
    assert_eq!(drv.sockets().remote_address(client), Ok(unix(&path)));
    assert_eq!(drv.sockets().local_address(server), Ok(unix(&path)));
    assert_eq!(drv.sockets().local_address(client), Ok(SocketAddress::Unnamed));

    let (res, _) = write_now(&mut drv, client, b"0123456789", IoMode::All);
    assert_eq!(res, Ok(10));
    let (res, buf) = read_now(&mut drv, server, 64, IoMode::Once);
    assert_eq!(res, Ok(10));
    assert_eq!(&buf[..10], b"0123456789");
    let (res, _) = write_now(&mut drv, client, b"abcde", IoMode::Once);
    assert_eq!(res, Ok(5));
    let (res, buf) = read_now(&mut drv, server, 64, IoMode::Once);
    assert_eq!(res, Ok(5));
    assert_eq!(&buf[..5], b"abcde");

    for h in [client, server] {
        assert_eq!(drv.release_ref(h), Ok(false));
    }
    assert_eq!(drv.release_ref(listener), Ok(false));
    assert_quiet(&mut drv);
}

/// 0-usds, datagram: three sockets bound to files (a base, a free one, one
/// whose default target is the base). An `Immediate` receive on the empty base
/// is `WouldBlock`; a pending `Once` receive gets the targeted socket's 10
/// bytes with its file as the sender; the free socket's 5 bytes to the base's
/// path arrive with its file as the sender. The loop then ends `OutOfWaiters`
/// on its own — without the upstream `exit()` workaround.
fn unix_datagram_send_and_receive(kind: BackendKind) {
    let dir = util::TempDir::new("unix-dgram");
    let (base_path, free_path, targeted_path) = (
        dir.path().join("base.sock"),
        dir.path().join("free.sock"),
        dir.path().join("targeted.sock"),
    );
    let mut drv = util::driver(kind);
    let mut s = drv.sockets();
    let base = s
        .create_datagram(base_path.as_path(), DatagramOptions::default())
        .expect("base");
    let free = s
        .create_datagram(free_path.as_path(), DatagramOptions::default())
        .expect("free");
    let targeted = s
        .create_datagram(
            targeted_path.as_path(),
            DatagramOptions {
                target: Some(unix(&base_path)),
                ..DatagramOptions::default()
            },
        )
        .expect("targeted");
    assert_eq!(s.local_address(base), Ok(unix(&base_path)));
    assert_eq!(s.remote_address(targeted), Ok(unix(&base_path)));

    let socks = [
        (base, unix(&base_path)),
        (free, unix(&free_path)),
        (targeted, unix(&targeted_path)),
    ];
    exchange_0_udp(&mut drv, socks, Duration::ZERO);
}

/// A Unix datagram receive cancelled at once gives its buffer back, never
/// calls back, and leaves no waiter behind.
fn unix_datagram_receive_cancel(kind: BackendKind) {
    let dir = util::TempDir::new("unix-dgram-cancel");
    let mut drv = util::driver(kind);
    let sock = drv
        .sockets()
        .create_datagram(dir.path().join("d.sock"), DatagramOptions::default())
        .expect("datagram socket");
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.sockets().receive(
        sock,
        {
            let mut b = Vec::with_capacity(16);
            b.extend_from_slice(&[3u8; 8]);
            b
        },
        IoMode::Once,
        move |_, _, _, _: Vec<u8>| r.set(true),
    );
    let c = drv.sockets().cancel_receive(sock).expect("pending receive");
    assert_eq!(c.buffer.as_deref(), Some(&[3u8; 8][..]));
    assert_eq!(
        util::run_until_not_idle(&mut drv, Duration::from_secs(1)),
        ExitReason::OutOfWaiters
    );
    assert!(!ran.get(), "a cancelled receive's callback ran");
    assert_eq!(drv.release_ref(sock), Ok(false));
    assert_quiet(&mut drv);
}

/// `stream_pair`: both ends are `Connected` and unnamed, data flows both
/// ways, and a shutdown is seen by the other end as end of stream.
fn unix_stream_pair_exchange(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let (a, b) = drv.sockets().stream_pair().expect("stream_pair");
    for h in [a, b] {
        assert_eq!(drv.sockets().connection_state(h), ConnectionState::Connected);
        assert_eq!(drv.sockets().local_address(h), Ok(SocketAddress::Unnamed));
    }
    let (res, _) = write_now(&mut drv, a, b"from a", IoMode::All);
    assert_eq!(res, Ok(6));
    let (res, buf) = read_now(&mut drv, b, 6, IoMode::All);
    assert_eq!(res, Ok(6));
    assert_eq!(buf, b"from a");
    let (res, _) = write_now(&mut drv, b, b"from b", IoMode::All);
    assert_eq!(res, Ok(6));
    let (res, buf) = read_now(&mut drv, a, 6, IoMode::All);
    assert_eq!(res, Ok(6));
    assert_eq!(buf, b"from b");

    drv.sockets().shutdown(a, false, true).expect("shutdown");
    let (res, _) = read_now(&mut drv, b, 6, IoMode::All);
    match res {
        Ok(n) => panic!("expected end of stream, read {n}"),
        Err(e) => {
            assert_eq!(e.status(), Status::Disconnected);
            assert_eq!(e.transferred(), 0);
        }
    }
    assert_eq!(drv.sockets().connection_state(b), ConnectionState::PassiveClose);
    for h in [a, b] {
        assert_eq!(drv.release_ref(h), Ok(false));
    }
    assert_quiet(&mut drv);
}

/// `datagram_pair`: each end receives what the other sends without an
/// address, from an unnamed sender; message boundaries are kept.
fn unix_datagram_pair_exchange(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let (a, b) = drv.sockets().datagram_pair().expect("datagram_pair");
    for (from, to, msg) in [(a, b, &b"one"[..]), (b, a, &b"two!"[..])] {
        let (res, _) = send_now(&mut drv, from, msg, None, IoMode::Once);
        assert_eq!(res, Ok(msg.len()));
        let got = receive_now(&mut drv, to, 64, IoMode::Once);
        assert_datagram(got, msg, &SocketAddress::Unnamed);
    }
    // Two datagrams stay two datagrams.
    for msg in [&b"first"[..], &b"second"[..]] {
        let (res, _) = send_now(&mut drv, a, msg, None, IoMode::Once);
        assert_eq!(res, Ok(msg.len()));
    }
    for msg in [&b"first"[..], &b"second"[..]] {
        let got = receive_now(&mut drv, b, 64, IoMode::Once);
        assert_datagram(got, msg, &SocketAddress::Unnamed);
    }
    for h in [a, b] {
        assert_eq!(drv.release_ref(h), Ok(false));
    }
    assert_quiet(&mut drv);
}

/// A connected `std::os::unix::net::UnixStream` adopted by the driver works
/// with its blocking std peer.
fn unix_adopt_std_stream(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let (mine, mut theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
    theirs.set_read_timeout(Some(LIMIT)).unwrap();
    let sock = drv.sockets().adopt_stream(mine).expect("adopt");
    assert_eq!(drv.sockets().connection_state(sock), ConnectionState::Connected);
    let (res, _) = write_now(&mut drv, sock, b"hello", IoMode::All);
    assert_eq!(res, Ok(5));
    let mut got = [0; 5];
    theirs.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    theirs.write_all(b"world").unwrap();
    let (res, buf) = read_now(&mut drv, sock, 5, IoMode::All);
    assert_eq!(res, Ok(5));
    assert_eq!(buf, b"world");
    assert_eq!(drv.release_ref(sock), Ok(false));
    assert_quiet(&mut drv);
}

/// Releasing a Unix listener removes its socket file, so the same path can be
/// listened on again at once, and the new listener accepts.
fn unix_listener_release_removes_socket_file(kind: BackendKind) {
    let dir = util::TempDir::new("unix-relisten");
    let path = dir.path().join("again.sock");
    let mut drv = util::driver(kind);
    let (first, _) = listen_at(&mut drv, &path);
    assert!(path.exists(), "listen creates the socket file");
    assert_eq!(drv.release_ref(first), Ok(false));
    assert!(!path.exists(), "the released listener's socket file is still there");

    let (second, accepted) = listen_at(&mut drv, &path);
    let (client, res) = connect_now(&mut drv, &path);
    assert_eq!(res, Ok(()));
    util::run_until(&mut drv, LIMIT, |_| accepted.borrow().len() == 1);
    let server = accepted.borrow()[0];
    for h in [client, server] {
        assert_eq!(drv.release_ref(h), Ok(false));
    }
    assert_eq!(drv.release_ref(second), Ok(false));
    assert!(!path.exists());
    assert_quiet(&mut drv);
}

/// Listening on a path where a listener already is fails with
/// `AddressInUse` (EADDRINUSE), and does not remove the first one's file.
fn unix_listen_on_path_in_use(kind: BackendKind) {
    let dir = util::TempDir::new("unix-inuse");
    let path = dir.path().join("taken.sock");
    let mut drv = util::driver(kind);
    let (first, _) = listen_at(&mut drv, &path);
    let err = drv
        .sockets()
        .listen(path.as_path(), ListenOptions::default(), |_, _, _| {
            panic!("the failed listener accepted")
        })
        .expect_err("a second listener on the same path");
    assert_eq!(err.status(), Status::AddressInUse, "{err}");
    assert_eq!(err.to_io().kind(), ErrorKind::AddrInUse);
    assert!(path.exists());
    assert_eq!(drv.release_ref(first), Ok(false));
    assert_quiet(&mut drv);
}

/// Linux answers a connect to a path that does not exist with ENOENT: the
/// callback gets `NotFound` (from `process_events`) and the socket is `Closed`.
fn unix_connect_to_missing_path_is_not_found(kind: BackendKind) {
    let dir = util::TempDir::new("unix-missing");
    let path: PathBuf = dir.path().join("nobody.sock");
    let mut drv = util::driver(kind);
    let (sock, res) = connect_now(&mut drv, &path);
    assert_status(&res, Status::NotFound);
    assert_eq!(res.unwrap_err().to_io().kind(), ErrorKind::NotFound);
    assert_eq!(drv.sockets().connection_state(sock), ConnectionState::Closed);
    assert_eq!(drv.release_ref(sock), Ok(false));
    assert_quiet(&mut drv);
}

/// Linux answers a connect to a socket file nobody listens on any more (left
/// behind by a closed std listener) with ECONNREFUSED: the callback gets
/// `Refused`.
fn unix_connect_to_stale_socket_file_is_refused(kind: BackendKind) {
    let dir = util::TempDir::new("unix-stale");
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("std bind"));
    assert!(path.exists(), "std leaves the socket file behind");
    let mut drv = util::driver(kind);
    let (sock, res) = connect_now(&mut drv, &path);
    assert_status(&res, Status::Refused);
    assert_eq!(res.unwrap_err().to_io().kind(), ErrorKind::ConnectionRefused);
    assert_eq!(drv.sockets().connection_state(sock), ConnectionState::Closed);
    assert_eq!(drv.release_ref(sock), Ok(false));
    assert_quiet(&mut drv);
}

contract_tests! {
    unix_stream_connect_and_exchange,
    unix_datagram_send_and_receive,
    unix_datagram_receive_cancel,
    unix_stream_pair_exchange,
    unix_datagram_pair_exchange,
    unix_adopt_std_stream,
    unix_listener_release_removes_socket_file,
    unix_listen_on_path_in_use,
    unix_connect_to_missing_path_is_not_found,
    unix_connect_to_stale_socket_file_is_refused,
}
