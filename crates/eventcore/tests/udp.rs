//! UDP contract tests: the upstream scenarios `0-udp` and `0-udp-cancel`, plus
//! broadcast and multicast (inside the test namespace only), IPv6, truncation,
//! ICMP "port unreachable", stale handles and cancel races.
//!
//! All traffic stays on loopback; broadcast and multicast run only in the
//! namespace `cargo xtask test` creates, on its `lo`.

mod util;

use std::cell::Cell;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use eventcore::{BackendKind, DatagramOptions, DatagramSocket, Driver, ExitReason, IoMode, SocketAddress, Status};
use util::assert_status;
use util::net::{
    assert_datagram, assert_ends_within_a_second, exchange_0_udp, loopback_v4, receive_into, receive_now, send_now,
};

const LIMIT: Duration = Duration::from_secs(10);

fn udp(drv: &mut Driver, bind: SocketAddr, options: DatagramOptions) -> DatagramSocket {
    drv.sockets().create_datagram(bind, options).expect("create_datagram")
}

fn address(drv: &mut Driver, sock: DatagramSocket) -> SocketAddress {
    drv.sockets().local_address(sock).expect("local address")
}

/// Releases each socket (the last reference) and checks that nothing is left.
fn release_all(drv: &mut Driver, socks: &[DatagramSocket]) {
    for &s in socks {
        assert_eq!(drv.release_ref(s), Ok(false));
    }
    assert_ends_within_a_second(drv);
    util::assert_no_leaks(drv);
}

/// 0-udp: a bound socket, a free one and one whose default target is the
/// first. An `Immediate` receive on the empty socket is `WouldBlock` (from
/// `process_events`); a pending `Once` receive gets the 10 bytes the targeted
/// socket sends without an address, with that socket as the sender; the free
/// socket's 5 bytes to the explicit address are then picked up by an
/// `Immediate` receive. Idle sockets are no waiters: the loop ends
/// `OutOfWaiters` before they are released.
fn udp_send_and_receive(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let base = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let base_addr = address(&mut drv, base);
    let free = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let free_addr = address(&mut drv, free);
    let targeted = udp(
        &mut drv,
        loopback_v4(),
        DatagramOptions {
            target: Some(base_addr.clone()),
            ..DatagramOptions::default()
        },
    );
    let targeted_addr = address(&mut drv, targeted);
    assert_eq!(drv.sockets().remote_address(targeted), Ok(base_addr.clone()));

    let socks = [(base, base_addr), (free, free_addr), (targeted, targeted_addr)];
    exchange_0_udp(&mut drv, socks, Duration::from_millis(50));
}

/// 0-udp-cancel: a pending `Once` receive cancelled at once gives its untouched
/// buffer back, its callback never runs, the loop reaches `OutOfWaiters` and
/// the release drops the last reference.
fn udp_receive_cancel(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let sock = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.sockets().receive(
        sock,
        {
            let mut b = Vec::with_capacity(32);
            b.extend_from_slice(&[9u8; 16]);
            b
        },
        IoMode::Once,
        move |_, _, _, _: Vec<u8>| r.set(true),
    );
    let c = drv.sockets().cancel_receive(sock).expect("a receive was pending");
    assert_eq!(c.buffer.as_deref(), Some(&[9u8; 16][..]));
    assert_eq!(c.transferred, 0);
    assert!(drv.sockets().cancel_receive(sock).is_none());
    assert_ends_within_a_second(&mut drv);
    assert!(!ran.get(), "a cancelled receive's callback ran");
    release_all(&mut drv, &[sock]);
    assert!(!ran.get());
}

/// A `Once` receive started while a datagram is already queued and cancelled
/// before `process_events`: its callback never runs and the datagram is not
/// lost — the cancel reports it (`transferred`, in the buffer) or it can still
/// be received.
fn udp_receive_cancel_after_datagram_arrived_loses_nothing(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let a = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let b = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let b_addr = address(&mut drv, b);
    let (res, _) = send_now(&mut drv, a, b"queued", Some(b_addr), IoMode::Once);
    assert_eq!(res, Ok(6));
    std::thread::sleep(Duration::from_millis(20));

    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.sockets()
        .receive(b, Vec::with_capacity(64), IoMode::Once, move |_, _, _, _| r.set(true));
    let c = drv.sockets().cancel_receive(b).expect("a receive was pending");
    drv.process_events(Some(Duration::from_millis(20)))
        .expect("process_events");
    assert!(!ran.get(), "a cancelled receive's callback ran");
    if c.transferred > 0 {
        let buf = c.buffer.expect("epoll gives the buffer back at once");
        assert_eq!(&buf[..c.transferred], b"queued");
    } else {
        let (res, buf) = receive_now(&mut drv, b, 64, IoMode::Immediate);
        let (n, _) =
            res.unwrap_or_else(|e| panic!("the cancel reported nothing transferred and the datagram is gone: {e}"));
        assert_eq!(&buf[..n], b"queued");
    }
    release_all(&mut drv, &[a, b]);
}

/// A second receive while one is pending fails with `Busy` through its
/// callback; the first one still gets the datagram.
fn udp_second_receive_while_pending_is_busy(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let a = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let b = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let (a_addr, b_addr) = (address(&mut drv, a), address(&mut drv, b));
    let (first, calls) = receive_into(&mut drv, b, 32, IoMode::Once);
    let (res, buf) = receive_now(&mut drv, b, 8, IoMode::Once);
    assert_status(&res, Status::Busy);
    assert!(buf.is_empty() && buf.capacity() >= 8, "the buffer comes back, empty");
    assert_eq!(calls.get(), 0);
    let (res, _) = send_now(&mut drv, a, b"first", Some(b_addr), IoMode::Once);
    assert_eq!(res, Ok(5));
    util::run_until(&mut drv, LIMIT, |_| calls.get() > 0);
    assert_datagram(first.take().unwrap(), b"first", &a_addr);
    release_all(&mut drv, &[a, b]);
}

/// A released datagram socket is stale: receive and send complete with
/// `InvalidHandle` from `process_events`, a second release is an error, and
/// cancels find nothing.
fn udp_stale_handle_after_release(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let sock = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let to = address(&mut drv, sock);
    assert_eq!(drv.release_ref(sock), Ok(false));
    let (res, buf) = receive_now(&mut drv, sock, 8, IoMode::Once);
    assert_status(&res, Status::InvalidHandle);
    assert!(buf.is_empty() && buf.capacity() >= 8, "the buffer comes back, empty");
    let (res, buf) = send_now(&mut drv, sock, b"gone", Some(to), IoMode::Once);
    assert_status(&res, Status::InvalidHandle);
    assert_eq!(buf, b"gone");
    assert_eq!(drv.release_ref(sock).unwrap_err().status(), Status::InvalidHandle);
    assert!(drv.sockets().cancel_receive(sock).is_none());
    assert!(drv.sockets().cancel_send(sock).is_none());
    assert_eq!(
        drv.sockets().set_broadcast(sock, true).unwrap_err().status(),
        Status::InvalidHandle
    );
    assert_ends_within_a_second(&mut drv);
    util::assert_no_leaks(&drv);
}

/// A datagram longer than the receive buffer is truncated to the buffer (not
/// an error); the rest of it is discarded, so the next receive gets the next
/// datagram.
fn udp_datagram_larger_than_buffer_is_truncated(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let a = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let b = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let (a_addr, b_addr) = (address(&mut drv, a), address(&mut drv, b));
    let long: Vec<u8> = (0..100).collect();
    let (res, _) = send_now(&mut drv, a, &long, Some(b_addr.clone()), IoMode::Once);
    assert_eq!(res, Ok(100));
    let (res, buf) = receive_now(&mut drv, b, 10, IoMode::Once);
    let (n, from) = res.expect("a truncated datagram is no error");
    assert_eq!(n, 10);
    assert_eq!(buf, &long[..10]);
    assert_eq!(from, a_addr);
    let (res, _) = send_now(&mut drv, a, b"next", Some(b_addr), IoMode::Once);
    assert_eq!(res, Ok(4));
    let got = receive_now(&mut drv, b, 10, IoMode::Once);
    assert_datagram(got, b"next", &a_addr);
    release_all(&mut drv, &[a, b]);
}

/// A port of a socket that was just released: nothing listens there.
fn closed_udp_port(drv: &mut Driver) -> SocketAddress {
    let gone = udp(drv, loopback_v4(), DatagramOptions::default());
    let addr = address(drv, gone);
    assert_eq!(drv.release_ref(gone), Ok(false));
    addr
}

/// Linux reports the ICMP "port unreachable" that answers a datagram to a
/// closed loopback port to a *connected* UDP socket: the send itself succeeds,
/// and the pending receive then fails with `Refused` (ECONNREFUSED) instead of
/// hanging. The socket keeps working afterwards.
fn udp_send_to_closed_port_refused_on_connected_socket(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let target = closed_udp_port(&mut drv);
    let sock = udp(
        &mut drv,
        loopback_v4(),
        DatagramOptions {
            target: Some(target),
            ..DatagramOptions::default()
        },
    );
    let (pending, calls) = receive_into(&mut drv, sock, 16, IoMode::Once);
    let (res, _) = send_now(&mut drv, sock, b"ping", None, IoMode::Once);
    assert_eq!(res, Ok(4), "the send itself succeeds");
    util::run_until(&mut drv, LIMIT, |_| calls.get() > 0);
    let (res, buf) = pending.take().unwrap();
    assert_status(&res, Status::Refused);
    assert_eq!(res.unwrap_err().to_io().kind(), ErrorKind::ConnectionRefused);
    assert!(buf.is_empty() && buf.capacity() >= 16, "the buffer comes back, empty");
    let (res, _) = send_now(&mut drv, sock, b"again", None, IoMode::Once);
    assert_eq!(res, Ok(5), "the error was consumed by the receive");
    release_all(&mut drv, &[sock]);
}

/// An *unconnected* socket sending to a closed loopback port hears nothing on
/// Linux (ICMP errors reach unconnected UDP sockets only with IP_RECVERR): the
/// send succeeds, a pending receive stays pending (no spurious completion, no
/// spin) and can be cancelled; later sends still succeed.
fn udp_send_to_closed_port_silent_on_unconnected_socket(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let target = closed_udp_port(&mut drv);
    let sock = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let (_pending, calls) = receive_into(&mut drv, sock, 16, IoMode::Once);
    let (res, _) = send_now(&mut drv, sock, b"ping", Some(target.clone()), IoMode::Once);
    assert_eq!(res, Ok(4));
    let mut turns = 0;
    for _ in 0..5 {
        if drv
            .process_events(Some(Duration::from_millis(20)))
            .expect("process_events")
            == ExitReason::Idle
        {
            turns += 1;
        }
    }
    assert_eq!(calls.get(), 0, "the receive completed without a datagram");
    assert_eq!(turns, 0, "the loop ran callbacks with nothing to do");
    assert!(drv.sockets().cancel_receive(sock).is_some());
    let (res, _) = send_now(&mut drv, sock, b"again", Some(target), IoMode::Once);
    assert_eq!(res, Ok(5));
    release_all(&mut drv, &[sock]);
}

/// The 0-udp exchange over IPv6 loopback (`[::1]`), with IPv6 sender
/// addresses. Skipped when the host has no `::1`.
fn udp_exchange_over_ipv6_loopback(kind: BackendKind) {
    let any_v6: SocketAddr = "[::1]:0".parse().unwrap();
    if std::net::UdpSocket::bind(any_v6).is_err() {
        eprintln!("SKIPPED udp_exchange_over_ipv6_loopback: no IPv6 loopback here");
        return;
    }
    let mut drv = util::driver(kind);
    let a = udp(&mut drv, any_v6, DatagramOptions::default());
    let a_addr = address(&mut drv, a);
    let b = udp(
        &mut drv,
        any_v6,
        DatagramOptions {
            target: Some(a_addr.clone()),
            ..DatagramOptions::default()
        },
    );
    let b_addr = address(&mut drv, b);
    assert!(b_addr.as_inet().unwrap().is_ipv6(), "{b_addr}");
    let (res, _) = send_now(&mut drv, b, b"0123456789", None, IoMode::Once);
    assert_eq!(res, Ok(10));
    let got = receive_now(&mut drv, a, 64, IoMode::Once);
    assert_datagram(got, b"0123456789", &b_addr);
    let (res, _) = send_now(&mut drv, a, b"abcde", Some(b_addr.clone()), IoMode::Once);
    assert_eq!(res, Ok(5));
    let got = receive_now(&mut drv, b, 64, IoMode::Once);
    assert_datagram(got, b"abcde", &a_addr);
    release_all(&mut drv, &[a, b]);
}

/// Broadcast on the namespace's loopback: without `SO_BROADCAST` a send to
/// 127.255.255.255 is `NotAllowed` (EACCES); after `set_broadcast`, and from a
/// socket created with `DatagramOptions::broadcast`, it reaches a receiver
/// bound to 0.0.0.0 on that port.
fn udp_broadcast_on_loopback(kind: BackendKind) {
    if !util::in_test_netns("udp_broadcast_on_loopback") {
        return;
    }
    let mut drv = util::driver(kind);
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let receiver = udp(&mut drv, any, DatagramOptions::default());
    let port = address(&mut drv, receiver).as_inet().unwrap().port();
    let to = SocketAddress::Inet(SocketAddr::from((Ipv4Addr::new(127, 255, 255, 255), port)));

    let sender = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let sender_addr = address(&mut drv, sender);
    let (res, _) = send_now(&mut drv, sender, b"denied", Some(to.clone()), IoMode::Once);
    assert_status(&res, Status::NotAllowed);

    drv.sockets().set_broadcast(sender, true).expect("set_broadcast");
    let (res, _) = send_now(&mut drv, sender, b"hello all", Some(to.clone()), IoMode::Once);
    assert_eq!(res, Ok(9));
    let got = receive_now(&mut drv, receiver, 64, IoMode::Once);
    assert_datagram(got, b"hello all", &sender_addr);

    let optioned = udp(
        &mut drv,
        loopback_v4(),
        DatagramOptions {
            broadcast: true,
            ..DatagramOptions::default()
        },
    );
    let optioned_addr = address(&mut drv, optioned);
    let (res, _) = send_now(&mut drv, optioned, b"again", Some(to), IoMode::Once);
    assert_eq!(res, Ok(5));
    let got = receive_now(&mut drv, receiver, 64, IoMode::Once);
    assert_datagram(got, b"again", &optioned_addr);
    release_all(&mut drv, &[receiver, sender, optioned]);
}

/// Multicast on the namespace's loopback: two receivers share 0.0.0.0:port
/// (`reuse_address`) and join 239.255.77.1; a sender with multicast loopback
/// on and TTL 1 sends one datagram to the group, and both receivers get it.
fn udp_multicast_with_loopback(kind: BackendKind) {
    if !util::in_test_netns("udp_multicast_with_loopback") {
        return;
    }
    let group = Ipv4Addr::new(239, 255, 77, 1);
    let mut drv = util::driver(kind);
    let shared = DatagramOptions {
        reuse_address: true,
        ..DatagramOptions::default()
    };
    let first = udp(&mut drv, "0.0.0.0:0".parse().unwrap(), shared.clone());
    let port = address(&mut drv, first).as_inet().unwrap().port();
    let second = udp(&mut drv, SocketAddr::from(([0, 0, 0, 0], port)), shared);
    for r in [first, second] {
        drv.sockets()
            .join_multicast(r, IpAddr::V4(group))
            .expect("join_multicast");
    }
    let sender = udp(&mut drv, "0.0.0.0:0".parse().unwrap(), DatagramOptions::default());
    drv.sockets()
        .set_multicast_loopback(sender, true)
        .expect("multicast loopback");
    drv.sockets().set_multicast_ttl(sender, 1).expect("multicast ttl");
    let sender_port = address(&mut drv, sender).as_inet().unwrap().port();

    let (got1, calls1) = receive_into(&mut drv, first, 64, IoMode::Once);
    let (got2, calls2) = receive_into(&mut drv, second, 64, IoMode::Once);
    let to = SocketAddress::Inet(SocketAddr::from((group, port)));
    let (res, _) = send_now(&mut drv, sender, b"to the group", Some(to), IoMode::Once);
    assert_eq!(res, Ok(12));
    util::run_until(&mut drv, LIMIT, |_| calls1.get() > 0 && calls2.get() > 0);
    for got in [got1, got2] {
        let (res, buf) = got.take().unwrap();
        let (n, from) = res.expect("multicast receive");
        assert_eq!(&buf[..n], b"to the group");
        assert_eq!(from.as_inet().unwrap().port(), sender_port);
    }
    release_all(&mut drv, &[first, second, sender]);
}

/// A panic in a receive callback comes out of `process_events`; the socket
/// stays usable: the next receive gets the next datagram, and the release
/// leaves nothing behind.
fn udp_receive_callback_panic_keeps_the_socket(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let sock = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let to = address(&mut drv, sock);
    drv.sockets()
        .receive(sock, Vec::with_capacity(64), IoMode::Once, |_, _, _, _| {
            panic!("receive callback panics")
        });
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = to.as_inet().unwrap();
    sender.send_to(b"first", to).unwrap();
    assert_eq!(util::run_until_panic(&mut drv, LIMIT), "receive callback panics");
    sender.send_to(b"second", to).unwrap();
    let (res, buf) = receive_now(&mut drv, sock, 64, IoMode::Once);
    let (n, _) = res.expect("receive");
    assert_eq!(&buf[..n], b"second");
    release_all(&mut drv, &[sock]);
}

/// `try_receive` / `try_send` (tokio's `try_recv_from` / `try_send_to`):
/// nothing queued is `WouldBlock`; a datagram sent without a callback to an
/// address, or to the default target, arrives with its sender's address and
/// is taken without a callback, cut to the buffer when larger; a pending
/// callback receive makes `try_receive` `Busy` and gets the datagram
/// itself; a released socket is an invalid handle.
fn udp_try_send_and_try_receive(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let rx = udp(&mut drv, loopback_v4(), DatagramOptions::default());
    let rx_addr = address(&mut drv, rx);
    let tx = udp(
        &mut drv,
        loopback_v4(),
        DatagramOptions {
            target: Some(rx_addr.clone()),
            ..DatagramOptions::default()
        },
    );
    let tx_addr = address(&mut drv, tx);
    let mut buf = [0u8; 64];
    assert_status(&drv.sockets().try_receive(rx, &mut buf), Status::WouldBlock);

    // Delivery over loopback may take a moment (Windows): retry briefly.
    let take = |drv: &mut Driver, buf: &mut [u8]| {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            match drv.sockets().try_receive(rx, buf) {
                Err(e) if e.status() == Status::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other.expect("a datagram"),
            }
        }
    };
    assert_eq!(
        drv.sockets().try_send(tx, b"to an address", Some(rx_addr.clone())),
        Ok(13)
    );
    let (n, from) = take(&mut drv, &mut buf);
    assert_eq!(&buf[..n], b"to an address");
    assert_eq!(from, tx_addr);
    assert_eq!(drv.sockets().try_send(tx, b"to the target", None), Ok(13));
    let (n, from) = take(&mut drv, &mut buf);
    assert_eq!(&buf[..n], b"to the target");
    assert_eq!(from, tx_addr);
    assert_eq!(drv.sockets().try_send(tx, b"longer than four", None), Ok(16));
    let mut small = [0u8; 4];
    let (n, from) = take(&mut drv, &mut small);
    assert_eq!((n, &small), (4, b"long"));
    assert_eq!(from, tx_addr);

    let got = Rc::new(Cell::new(0usize));
    let g = got.clone();
    drv.sockets()
        .receive(rx, Vec::with_capacity(64), IoMode::Once, move |_, _, r, b: Vec<u8>| {
            let (n, _) = r.expect("receive");
            assert_eq!(&b[..n], b"owed");
            g.set(n);
        });
    assert_status(&drv.sockets().try_receive(rx, &mut buf), Status::Busy);
    assert_eq!(drv.sockets().try_send(tx, b"owed", None), Ok(4));
    util::run_until(&mut drv, LIMIT, |_| got.get() == 4);

    release_all(&mut drv, &[rx, tx]);
    assert_status(&drv.sockets().try_receive(rx, &mut buf), Status::InvalidHandle);
    assert_status(&drv.sockets().try_send(tx, b"x", None), Status::InvalidHandle);
}

contract_tests! {
    udp_try_send_and_try_receive,
    udp_receive_callback_panic_keeps_the_socket,
    udp_send_and_receive,
    udp_receive_cancel,
    udp_receive_cancel_after_datagram_arrived_loses_nothing,
    udp_second_receive_while_pending_is_busy,
    udp_stale_handle_after_release,
    udp_datagram_larger_than_buffer_is_truncated,
    udp_send_to_closed_port_refused_on_connected_socket,
    udp_send_to_closed_port_silent_on_unconnected_socket,
    udp_exchange_over_ipv6_loopback,
    udp_broadcast_on_loopback,
    udp_multicast_with_loopback,
}
