//! Socket helpers shared by the TCP, UDP and Unix-socket contract tests: an
//! operation started and run to its callback (which must run exactly once,
//! and not inside the call that started it), received datagrams, and the
//! quiet end of a scenario.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::{DatagramSocket, Driver, ExitReason, IoMode, Result, SocketAddress, Status, StreamSocket};

use super::{slot, Slot};

/// How long one socket operation may take.
const LIMIT: Duration = Duration::from_secs(10);

/// The outcome of a read, write or send: bytes moved, and the buffer back.
pub type IoOutcome = (Result<usize>, Vec<u8>);
/// The outcome of a receive: bytes and sender, and the buffer back.
pub type Received = (Result<(usize, SocketAddress)>, Vec<u8>);

/// `127.0.0.1`, any port.
pub fn loopback_v4() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `[::1]`, any port.
pub fn loopback_v6() -> SocketAddr {
    "[::1]:0".parse().unwrap()
}

/// An operation's outcome as its callback leaves it, and how often the
/// callback ran.
pub type Started<T> = (Slot<T>, Rc<Cell<u32>>);

/// Starts an operation with `start`, which gets the function its callback
/// must hand the outcome to; checks that the callback did not run inside the
/// call (`call`) that started the operation.
fn start<T: 'static>(drv: &mut Driver, call: &str, start: impl FnOnce(&mut Driver, Box<dyn Fn(T)>)) -> Started<T> {
    let out: Slot<T> = slot();
    let calls = Rc::new(Cell::new(0));
    let (o, c) = (out.clone(), calls.clone());
    start(
        drv,
        Box::new(move |outcome| {
            c.set(c.get() + 1);
            *o.borrow_mut() = Some(outcome);
        }),
    );
    assert_eq!(calls.get(), 0, "the {call} callback ran inside {call}()");
    (out, calls)
}

/// Runs the loop until the started operation's callback ran, and checks that
/// it ran exactly once.
fn finish<T>(drv: &mut Driver, (out, calls): Started<T>) -> T {
    super::run_until(drv, LIMIT, |_| calls.get() > 0);
    assert_eq!(calls.get(), 1);
    out.take().unwrap()
}

/// Starts a read and runs the loop until its callback ran; checks that it did
/// not run inside `read`, that it ran exactly once and for `sock`.
pub fn read_now(drv: &mut Driver, sock: StreamSocket, len: usize, mode: IoMode) -> IoOutcome {
    let started = start(drv, "read", |drv, done| {
        drv.sockets()
            .read(sock, Vec::with_capacity(len), mode, move |_, s, res, buf| {
                assert_eq!(s, sock);
                done((res, buf));
            })
    });
    finish(drv, started)
}

/// Like [`read_now`] for a write of `data`.
pub fn write_now(drv: &mut Driver, sock: StreamSocket, data: &[u8], mode: IoMode) -> IoOutcome {
    let started = start(drv, "write", |drv, done| {
        drv.sockets().write(sock, data.to_vec(), mode, move |_, s, res, buf| {
            assert_eq!(s, sock);
            done((res, buf));
        })
    });
    finish(drv, started)
}

/// Starts a receive whose outcome lands in the returned slot, with the
/// number of times its callback ran; checks that the callback does not run
/// inside `receive` and that it runs for `sock`.
pub fn receive_into(drv: &mut Driver, sock: DatagramSocket, len: usize, mode: IoMode) -> Started<Received> {
    start(drv, "receive", |drv, done| {
        drv.sockets()
            .receive(sock, Vec::with_capacity(len), mode, move |_, s, res, buf| {
                assert_eq!(s, sock);
                done((res, buf));
            })
    })
}

/// Receives and runs the loop until the callback ran (exactly once).
pub fn receive_now(drv: &mut Driver, sock: DatagramSocket, len: usize, mode: IoMode) -> Received {
    let started = receive_into(drv, sock, len, mode);
    finish(drv, started)
}

/// Sends and runs the loop until the callback ran (exactly once, for `sock`,
/// not inside `send`).
pub fn send_now(
    drv: &mut Driver,
    sock: DatagramSocket,
    data: &[u8],
    to: Option<SocketAddress>,
    mode: IoMode,
) -> IoOutcome {
    let started = start(drv, "send", |drv, done| {
        drv.sockets()
            .send(sock, data.to_vec(), to, mode, move |_, s, res, buf| {
                assert_eq!(s, sock);
                done((res, buf));
            })
    });
    finish(drv, started)
}

/// Asserts a received datagram: its bytes and its sender.
#[track_caller]
pub fn assert_datagram(got: Received, data: &[u8], from: &SocketAddress) {
    let (res, buf) = got;
    let (n, sender) = res.expect("receive");
    assert_eq!(&buf[..n], data);
    assert_eq!(&sender, from);
}

/// The loop must end with `OutOfWaiters` within a second.
#[track_caller]
pub fn assert_ends_within_a_second(drv: &mut Driver) {
    let start = Instant::now();
    assert_eq!(
        super::run_until_not_idle(drv, Duration::from_secs(1)),
        ExitReason::OutOfWaiters
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// The loop must end with `OutOfWaiters` within a second, with nothing open.
#[track_caller]
pub fn assert_quiet(drv: &mut Driver) {
    assert_ends_within_a_second(drv);
    super::assert_no_leaks(drv);
}

/// 0-udp's exchange, for any datagram family: three sockets with their
/// addresses, a base, a free one and one whose default target is the base.
/// An `Immediate` receive on the empty base is `WouldBlock` and hands its
/// buffer back; a pending `Once` receive gets the 10 bytes the targeted
/// socket sends without an address, from the targeted socket; the free
/// socket's 5 bytes to the base's address are then (after `settle`) picked up
/// by an `Immediate` receive, without running the first receive's callback
/// again. Idle datagram sockets are no waiters: the loop ends at once. Then
/// each socket's last reference is released, with nothing left.
pub fn exchange_0_udp(drv: &mut Driver, socks: [(DatagramSocket, SocketAddress); 3], settle: Duration) {
    let [(base, base_addr), (free, free_addr), (targeted, targeted_addr)] = socks;
    let (res, buf) = receive_now(drv, base, 64, IoMode::Immediate);
    super::assert_status(&res, Status::WouldBlock);
    assert!(buf.is_empty() && buf.capacity() >= 64, "the buffer comes back, empty");

    let (pending, calls) = receive_into(drv, base, 64, IoMode::Once);
    let (res, _) = send_now(drv, targeted, b"0123456789", None, IoMode::Immediate);
    assert_eq!(res, Ok(10));
    super::run_until(drv, LIMIT, |_| calls.get() > 0);
    assert_datagram(pending.take().unwrap(), b"0123456789", &targeted_addr);

    let (res, _) = send_now(drv, free, b"abcde", Some(base_addr), IoMode::Once);
    assert_eq!(res, Ok(5));
    std::thread::sleep(settle);
    let got = receive_now(drv, base, 64, IoMode::Immediate);
    assert_datagram(got, b"abcde", &free_addr);
    assert_eq!(calls.get(), 1);

    // Idle datagram sockets must not count as waiters.
    assert_ends_within_a_second(drv);
    for h in [base, free, targeted] {
        assert_eq!(drv.release_ref(h), Ok(false));
    }
    assert_quiet(drv);
}
