//! Owned buffers (`eventcore::buf`): every buffer type on every backend —
//! reads fill a buffer's spare capacity and set its length, writes send
//! what a buffer holds, every operation gives back the type it took (also
//! on failure and cancel), and vectored writes send a list in order.

mod util;

use std::time::Duration;

use eventcore::rt;
use eventcore::{BackendKind, Driver, IoBuf, IoBufMut, IoMode, OpenMode, Result, Status, StreamSocket};
use util::{assert_out_of_waiters, assert_status, driver, run_until, slot, Slot};

const LIMIT: Duration = Duration::from_secs(10);

/// A connected pair of loopback TCP streams (every OS has them).
fn std_tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

/// Two loopback UDP sockets connected to each other.
fn std_udp_pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

fn stream_pair(drv: &mut Driver) -> (StreamSocket, StreamSocket) {
    let (a, b) = std_tcp_pair();
    let a = drv.sockets().adopt_stream(a).unwrap();
    let b = drv.sockets().adopt_stream(b).unwrap();
    (a, b)
}

fn datagram_pair(drv: &mut Driver) -> (eventcore::DatagramSocket, eventcore::DatagramSocket) {
    let (a, b) = std_udp_pair();
    let a = drv.sockets().adopt_datagram(a).unwrap();
    let b = drv.sockets().adopt_datagram(b).unwrap();
    (a, b)
}

/// Runs the loop until `s` holds the outcome, then takes it.
fn wait<T>(drv: &mut Driver, s: &Slot<T>) -> T {
    run_until(drv, LIMIT, |_| s.borrow().is_some());
    s.take().expect("completed")
}

/// Reads once into `buf` and waits for the outcome.
fn read<B: IoBufMut>(drv: &mut Driver, sock: StreamSocket, buf: B, mode: IoMode) -> (Result<usize>, B) {
    let s = slot();
    let s2 = s.clone();
    drv.sockets()
        .read(sock, buf, mode, move |_, _, r, b| *s2.borrow_mut() = Some((r, b)));
    wait(drv, &s)
}

/// Writes all of `buf` and waits for the outcome.
fn write<B: IoBuf>(drv: &mut Driver, sock: StreamSocket, buf: B) -> (Result<usize>, B) {
    let s = slot();
    let s2 = s.clone();
    drv.sockets().write(sock, buf, IoMode::All, move |_, _, r, b| {
        *s2.borrow_mut() = Some((r, b))
    });
    wait(drv, &s)
}

/// Reads exactly `n` bytes from `sock` (into a fresh buffer).
/// Opens `path` read-only through the driver and waits for the handle.
fn open_for_reading(drv: &mut Driver, path: &std::path::Path) -> eventcore::FileHandle {
    let opened = slot();
    let o2 = opened.clone();
    drv.files()
        .open(path, OpenMode::Read, move |_, f| *o2.borrow_mut() = Some(f));
    wait(drv, &opened).unwrap()
}

fn read_exactly(drv: &mut Driver, sock: StreamSocket, n: usize) -> Vec<u8> {
    let (r, buf) = read(drv, sock, Vec::with_capacity(n), IoMode::All);
    assert_eq!(r.expect("read"), n);
    buf
}

fn release(drv: &mut Driver, socks: [StreamSocket; 2]) {
    for s in socks {
        drv.release_ref(s).unwrap();
    }
    assert_out_of_waiters(drv);
}

/// A read into `Vec::with_capacity(n)` comes back with its length set to
/// what arrived (nothing is zeroed first), and a read into a vector that
/// already holds bytes appends after them.
fn read_fills_spare_capacity_and_sets_length(kind: BackendKind) {
    let mut drv = driver(kind);
    let (a, b) = stream_pair(&mut drv);
    assert_eq!(write(&mut drv, a, &b"hello world"[..]).0.unwrap(), 11);
    let (r, buf) = read(&mut drv, b, Vec::with_capacity(64 * 1024), IoMode::Once);
    assert_eq!(r.unwrap(), 11);
    assert_eq!(buf, b"hello world");
    assert_eq!(buf.capacity(), 64 * 1024, "the same allocation came back");

    let mut prefix = Vec::with_capacity(16);
    prefix.extend_from_slice(b"ab");
    write(&mut drv, a, "cd").0.unwrap();
    let (r, buf) = read(&mut drv, b, prefix, IoMode::Once);
    assert_eq!(r.unwrap(), 2);
    assert_eq!(buf, b"abcd", "the read appended");
    release(&mut drv, [a, b]);
}

/// A buffer with capacity but no spare room is refused with
/// `InvalidArgument` (from `process_events`), and comes back unchanged — on
/// sockets, pipes and files. A buffer with no capacity at all waits for data.
fn a_full_buffer_is_refused(kind: BackendKind) {
    let mut drv = driver(kind);
    let (a, b) = stream_pair(&mut drv);
    let s = slot();
    let s2 = s.clone();
    drv.sockets()
        .read(b, vec![1u8, 2, 3], IoMode::Once, move |_, _, r, buf| {
            *s2.borrow_mut() = Some((r, buf))
        });
    assert!(s.borrow().is_none(), "the refusal comes from process_events");
    let (r, buf) = wait(&mut drv, &s);
    assert_status(&r, Status::InvalidArgument);
    assert_eq!(buf, [1, 2, 3]);

    // `Vec::new()`: a wait for data, which the write below ends.
    let s = slot();
    let s2 = s.clone();
    drv.sockets()
        .read(b, Vec::new(), IoMode::Once, move |_, _, r, buf: Vec<u8>| {
            *s2.borrow_mut() = Some((r, buf))
        });
    write(&mut drv, a, &b"x"[..]).0.unwrap();
    let (r, buf) = wait(&mut drv, &s);
    assert_eq!(r.unwrap(), 0);
    assert!(buf.is_empty());
    assert_eq!(read_exactly(&mut drv, b, 1), b"x", "the wait consumed nothing");
    release(&mut drv, [a, b]);

    let (r, w) = drv.pipes().create().unwrap();
    let s = slot();
    let s2 = s.clone();
    drv.pipes().read(r, vec![9u8; 4], IoMode::All, move |_, _, res, buf| {
        *s2.borrow_mut() = Some((res, buf))
    });
    let (res, buf) = wait(&mut drv, &s);
    assert_status(&res, Status::InvalidArgument);
    assert_eq!(buf, [9; 4]);
    drv.release_ref(r).unwrap();
    drv.release_ref(w).unwrap();

    let dir = util::TempDir::new("full-buffer");
    let path = dir.path().join("f.dat");
    std::fs::write(&path, b"0123456789").unwrap();
    let f = open_for_reading(&mut drv, &path);
    let s = slot();
    let s2 = s.clone();
    drv.files()
        .read(f, 0, vec![0u8; 8], IoMode::Once, move |_, _, res, buf| {
            *s2.borrow_mut() = Some((res, buf))
        });
    let (res, buf) = wait(&mut drv, &s);
    assert_status(&res, Status::InvalidArgument);
    assert_eq!(buf.len(), 8);
    // Spare room after existing bytes: the file's bytes are appended.
    let mut into = Vec::with_capacity(6);
    into.extend_from_slice(b"<");
    let s = slot();
    let s2 = s.clone();
    drv.files().read(f, 2, into, IoMode::All, move |_, _, res, buf| {
        *s2.borrow_mut() = Some((res, buf))
    });
    let (res, buf) = wait(&mut drv, &s);
    assert!(res.unwrap() >= 5);
    assert_eq!(&buf[..6], b"<23456");
    drv.release_ref(f).unwrap();
    assert_out_of_waiters(&mut drv);
}

/// Every write-side buffer type sends its bytes and comes back as itself.
fn every_buffer_type_writes_and_comes_back(kind: BackendKind) {
    let mut drv = driver(kind);
    let (a, b) = stream_pair(&mut drv);
    let (r, v) = write(&mut drv, a, b"vec;".to_vec());
    assert_eq!((r.unwrap(), &v[..]), (4, &b"vec;"[..]));
    let (r, bx) = write(&mut drv, a, Box::<[u8]>::from(&b"box;"[..]));
    assert_eq!((r.unwrap(), &bx[..]), (4, &b"box;"[..]));
    let (r, s) = write(&mut drv, a, String::from("string;"));
    assert_eq!((r.unwrap(), s.as_str()), (7, "string;"));
    let (r, st) = write(&mut drv, a, "str;");
    assert_eq!((r.unwrap(), st), (4, "str;"));
    let (r, sl) = write(&mut drv, a, &b"slice;"[..]);
    assert_eq!((r.unwrap(), sl), (6, &b"slice;"[..]));
    let (r, own) = write(&mut drv, a, Own::from(b"own."));
    assert_eq!((r.unwrap(), own.bytes()), (4, &b"own."[..]));
    assert_eq!(read_exactly(&mut drv, b, 29), b"vec;box;string;str;slice;own.");
    release(&mut drv, [a, b]);
}

/// A `Box<[u8]>` has no length to grow: a read overwrites it from the start
/// and the count says how much is new. A program's own buffer type (boxed
/// by the driver) is read into and comes back as itself.
fn box_and_own_buffers_read(kind: BackendKind) {
    let mut drv = driver(kind);
    let (a, b) = stream_pair(&mut drv);
    write(&mut drv, a, &b"xyz"[..]).0.unwrap();
    let (r, bx) = read(&mut drv, b, Box::<[u8]>::from(&[0u8; 8][..]), IoMode::Once);
    assert_eq!(r.unwrap(), 3);
    assert_eq!(&bx[..], b"xyz\0\0\0\0\0");

    write(&mut drv, a, &b"0123456789"[..]).0.unwrap();
    let (r, own) = read(&mut drv, b, Own::with_capacity(10), IoMode::All);
    assert_eq!(r.unwrap(), 10);
    assert_eq!(own.bytes(), b"0123456789");
    release(&mut drv, [a, b]);
}

/// A cancelled read gives its buffer back as the type it took (where the
/// backend can give it back at once: always on epoll).
fn a_cancel_gives_the_buffer_back_as_its_type(kind: BackendKind) {
    let mut drv = driver(kind);
    let (a, b) = stream_pair(&mut drv);
    drv.sockets()
        .read(b, Box::<[u8]>::from(&[5u8; 16][..]), IoMode::Once, |_, _, _, _| {
            panic!("a cancelled read's callback ran")
        });
    let c = drv.sockets().cancel_read(b).expect("a read was pending");
    assert_eq!(c.transferred, 0);
    match c.buffer_as::<Box<[u8]>>() {
        Some(bx) => assert_eq!(&bx[..], &[5u8; 16]),
        None => assert_ne!(kind, BackendKind::Epoll, "epoll gives the buffer back"),
    }
    // Asking for the wrong type gives the buffer back as it is.
    drv.sockets()
        .read(b, Vec::with_capacity(4), IoMode::Once, |_, _, _, _| panic!("cancelled"));
    if let Some(buf) = drv.sockets().cancel_read(b).and_then(|c| c.buffer) {
        let buf = buf.downcast::<Box<[u8]>>().expect_err("not a box");
        assert_eq!(buf.downcast::<Vec<u8>>().unwrap().capacity(), 4);
    }
    release(&mut drv, [a, b]);
}

/// Writes `bufs` with `write_vectored` (`All`) and checks the peer gets
/// them in order and the callback gets them back.
fn vectored_round_trip(drv: &mut Driver, a: StreamSocket, b: StreamSocket, bufs: Vec<Vec<u8>>) {
    let expected: Vec<u8> = bufs.concat();
    let lens: Vec<usize> = bufs.iter().map(Vec::len).collect();
    let s: Slot<(Result<usize>, Vec<Vec<u8>>)> = slot();
    let s2 = s.clone();
    drv.sockets()
        .write_vectored(a, bufs, IoMode::All, move |_, _, r, back| {
            *s2.borrow_mut() = Some((r, back))
        });
    // The reader drains concurrently (the total can exceed the socket buffers).
    let got = read_exactly(drv, b, expected.len());
    let (r, back) = wait(drv, &s);
    assert_eq!(r.unwrap(), expected.len());
    assert_eq!(
        back.iter().map(Vec::len).collect::<Vec<_>>(),
        lens,
        "the buffers came back"
    );
    assert!(got == expected, "the bytes arrived in order");
}

/// A vectored write sends every buffer, in order: small lists, lists with
/// empty buffers, and lists larger than the socket buffers (several
/// transfers, resumed in the middle of a buffer).
fn vectored_writes_send_every_buffer_in_order(kind: BackendKind) {
    let mut drv = driver(kind);
    let (a, b) = stream_pair(&mut drv);
    vectored_round_trip(
        &mut drv,
        a,
        b,
        vec![b"GET / HTTP/1.1\r\n".to_vec(), b"Host: x\r\n\r\n".to_vec()],
    );
    vectored_round_trip(
        &mut drv,
        a,
        b,
        vec![Vec::new(), b"a".to_vec(), Vec::new(), b"bc".to_vec()],
    );
    let big: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            (0..700_000usize)
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i))
                .collect()
        })
        .collect();
    vectored_round_trip(&mut drv, a, b, big);
    // `Once`: at least one byte, at most the total.
    let s: Slot<(Result<usize>, Vec<&'static [u8]>)> = slot();
    let s2 = s.clone();
    drv.sockets()
        .write_vectored(a, vec![&b"on"[..], &b"ce"[..]], IoMode::Once, move |_, _, r, back| {
            *s2.borrow_mut() = Some((r, back))
        });
    let (r, back) = wait(&mut drv, &s);
    let n = r.unwrap();
    assert!((1..=4).contains(&n), "{n}");
    assert_eq!(back, [&b"on"[..], &b"ce"[..]]);
    assert_eq!(read_exactly(&mut drv, b, n), &b"once"[..n]);
    release(&mut drv, [a, b]);
}

/// Vectored writes on a pipe (Windows pipes send one buffer per transfer).
fn vectored_writes_on_a_pipe(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let bufs: Vec<Vec<u8>> = vec![vec![1; 10_000], Vec::new(), vec![2; 100_000], vec![3; 7]];
    let expected = bufs.concat();
    let s: Slot<(Result<usize>, Vec<Vec<u8>>)> = slot();
    let s2 = s.clone();
    drv.pipes()
        .write_vectored(w, bufs, IoMode::All, move |_, _, res, back| {
            *s2.borrow_mut() = Some((res, back))
        });
    let got: Slot<(Result<usize>, Vec<u8>)> = slot();
    let g2 = got.clone();
    drv.pipes().read(
        r,
        Vec::with_capacity(expected.len()),
        IoMode::All,
        move |_, _, res, buf| *g2.borrow_mut() = Some((res, buf)),
    );
    let (res, back) = wait(&mut drv, &s);
    assert_eq!(res.unwrap(), expected.len());
    assert_eq!(back.len(), 4);
    let (res, buf) = wait(&mut drv, &got);
    assert_eq!(res.unwrap(), expected.len());
    assert!(buf == expected);
    drv.release_ref(r).unwrap();
    drv.release_ref(w).unwrap();
    assert_out_of_waiters(&mut drv);
}

/// A datagram is received into a buffer's capacity (appended, the length
/// set), and a positional file read fills `Vec::with_capacity` up to the end
/// of the file (`EndOfFile` with the count, and those bytes in the buffer).
fn datagrams_and_files_fill_capacity(kind: BackendKind) {
    let mut drv = driver(kind);
    let (x, y) = datagram_pair(&mut drv);
    let s = slot();
    let s2 = s.clone();
    drv.sockets().send(x, "ping", None, IoMode::Once, move |_, _, r, b| {
        *s2.borrow_mut() = Some((r, b))
    });
    assert_eq!(wait(&mut drv, &s).0.unwrap(), 4);
    let s = slot();
    let s2 = s.clone();
    drv.sockets()
        .receive(y, Vec::with_capacity(1500), IoMode::Once, move |_, _, r, b| {
            *s2.borrow_mut() = Some((r.map(|(n, _)| n), b))
        });
    let (r, buf) = wait(&mut drv, &s);
    assert_eq!(r.unwrap(), 4);
    assert_eq!(buf, b"ping");
    drv.release_ref(x).unwrap();
    drv.release_ref(y).unwrap();

    let dir = util::TempDir::new("fill-capacity");
    let path = dir.path().join("f.dat");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let f = open_for_reading(&mut drv, &path);
    let s = slot();
    let s2 = s.clone();
    drv.files()
        .read(f, 1000, Vec::with_capacity(200_000), IoMode::All, move |_, _, r, b| {
            *s2.borrow_mut() = Some((r, b))
        });
    let (r, buf) = wait(&mut drv, &s);
    let e = r.unwrap_err();
    assert_eq!(e.status(), Status::EndOfFile);
    assert_eq!(e.transferred(), 99_000);
    assert!(buf[..] == data[1000..], "the bytes before the end are in the buffer");
    drv.release_ref(f).unwrap();
    assert_out_of_waiters(&mut drv);
}

/// `bytes::BytesMut` is read into (appending) and written; `bytes::Bytes` is
/// written; both come back as themselves.
#[cfg(feature = "bytes")]
fn bytes_buffers(kind: BackendKind) {
    use bytes::{BufMut, Bytes, BytesMut};
    let mut drv = driver(kind);
    let (a, b) = stream_pair(&mut drv);
    let (r, sent) = write(&mut drv, a, Bytes::from_static(b"frame one|"));
    assert_eq!((r.unwrap(), &sent[..]), (10, &b"frame one|"[..]));
    let mut out = BytesMut::with_capacity(32);
    out.put_slice(b"frame two");
    let (r, out) = write(&mut drv, a, out);
    assert_eq!((r.unwrap(), &out[..]), (9, &b"frame two"[..]));
    let (r, got) = read(&mut drv, b, BytesMut::with_capacity(64 * 1024), IoMode::Once);
    let n = r.unwrap();
    assert_eq!(&got[..], &b"frame one|frame two"[..n]);
    assert_eq!(got.len(), n);
    let got = if n < 19 {
        let (r, got) = read(&mut drv, b, got, IoMode::Once);
        assert_eq!(got.len(), n + r.unwrap());
        got
    } else {
        got
    };
    assert_eq!(&got[..], &b"frame one|frame two"[..got.len()]);
    write(&mut drv, a, &b"+more"[..]).0.unwrap();
    let before = got.len();
    let (r, got) = read(&mut drv, b, got, IoMode::Once);
    let m = r.unwrap();
    assert_eq!(got.len(), before + m, "the read appended");
    assert_eq!(&got[before..], &b"+more"[..m]);
    release(&mut drv, [a, b]);
}

#[cfg(not(feature = "bytes"))]
fn bytes_buffers(_: BackendKind) {
    eprintln!("bytes_buffers: built without the `bytes` feature; skipped");
}

/// The async layer takes the same buffers: `read_owned` into a capacity,
/// `write_vectored_owned`, `recv_from` and `File::read_at` into capacities.
fn rt_takes_owned_buffers(kind: BackendKind) {
    let mut ex = util::rt::executor(kind);
    let dir = util::TempDir::new("rt-buffers");
    let path = dir.path().join("r.dat");
    ex.block_on(async {
        let (a, b) = {
            let (a, b) = std_tcp_pair();
            (rt::TcpStream::adopt(a).unwrap(), rt::TcpStream::adopt(b).unwrap())
        };
        let (r, back) = a.write_vectored_owned(vec![&b"one "[..], &b""[..], &b"two"[..]]).await;
        assert_eq!((r.unwrap(), back.len()), (7, 3));
        let (r, buf) = b.read_exact_owned(Vec::with_capacity(7)).await;
        assert_eq!((r.unwrap(), &buf[..]), (7, &b"one two"[..]));
        let (r, s) = a.write_all_owned(String::from("!")).await;
        assert_eq!((r.unwrap(), s.as_str()), (1, "!"));
        let mut buf = buf;
        buf.reserve(8);
        let (r, buf) = b.read_owned(buf).await;
        assert_eq!((r.unwrap(), &buf[..]), (1, &b"one two!"[..]), "appended");

        let (x, y) = {
            let (x, y) = std_udp_pair();
            (
                rt::DatagramSocket::adopt(x).unwrap(),
                rt::DatagramSocket::adopt(y).unwrap(),
            )
        };
        x.send(&b"dgram"[..]).await.0.unwrap();
        let (r, buf) = y.recv_from(Vec::with_capacity(100)).await;
        assert_eq!((r.unwrap().0, &buf[..]), (5, &b"dgram"[..]));

        let f = rt::File::create(&path).await.unwrap();
        f.write_all_at("file bytes", 0).await.0.unwrap();
        let (r, buf) = f.read_at(Vec::with_capacity(64), 5).await;
        assert_eq!((r.unwrap(), &buf[..]), (5, &b"bytes"[..]));
        f.close().await.unwrap();
    });
    util::rt::assert_settled(&mut ex);
}

/// A buffer type of the program's own: a vector behind a newtype, which the
/// driver keeps boxed.
struct Own(Vec<u8>);

impl Own {
    fn from(bytes: &[u8]) -> Own {
        Own(bytes.to_vec())
    }
    fn with_capacity(n: usize) -> Own {
        Own(Vec::with_capacity(n))
    }
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

// SAFETY: the bytes live in the vector's heap allocation, which does not
// move when `Own` does.
unsafe impl IoBuf for Own {
    fn io_bytes(&self) -> &[u8] {
        &self.0
    }
}

// SAFETY: as above; the spare capacity is the vector's.
unsafe impl IoBufMut for Own {
    fn io_spare(&mut self) -> (*mut u8, usize) {
        let spare = self.0.spare_capacity_mut();
        (spare.as_mut_ptr().cast(), spare.len())
    }
    unsafe fn io_filled(&mut self, n: usize) {
        // SAFETY: the driver wrote `n` bytes of the spare capacity.
        unsafe { self.0.set_len(self.0.len() + n) }
    }
}

contract_tests! {
    read_fills_spare_capacity_and_sets_length,
    a_full_buffer_is_refused,
    every_buffer_type_writes_and_comes_back,
    box_and_own_buffers_read,
    a_cancel_gives_the_buffer_back_as_its_type,
    vectored_writes_send_every_buffer_in_order,
    vectored_writes_on_a_pipe,
    datagrams_and_files_fill_capacity,
    bytes_buffers,
    rt_takes_owned_buffers,
}
