//! Accepting while the process is out of descriptors (EMFILE).
//!
//! `RLIMIT_NOFILE` belongs to the whole process and the test harness runs the
//! scenarios of one binary in parallel threads, so this scenario lives alone in
//! its own test binary (one binary = one process) and restores the limit
//! before it ends. Its instances (one per backend) take turns: each holds
//! [`ONE_AT_A_TIME`] while it runs.

#![cfg(target_os = "linux")]

mod util;

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, ExitReason, IoMode, ListenOptions, Result, SocketAddress, Status, StreamSocket};
use socket2::{Domain, Socket, Type};

const LIMIT: Duration = Duration::from_secs(10);

type Accepted = Result<(StreamSocket, SocketAddress)>;

/// Held by each instance of the scenario for its whole run: two backends
/// exhausting the one descriptor table at once would steal each other's
/// descriptors (and one restoring the limit would end the other's shortage).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A lowered soft `RLIMIT_NOFILE`, restored on drop.
struct LoweredLimit {
    original: libc::rlimit,
}

impl LoweredLimit {
    fn to(soft: libc::rlim_t) -> LoweredLimit {
        let mut original = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the valid, exclusive pointer.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut original) };
        assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
        let lowered = libc::rlimit {
            rlim_cur: soft.min(original.rlim_cur),
            rlim_max: original.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from the valid pointer.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
        assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
        LoweredLimit { original }
    }
}

impl Drop for LoweredLimit {
    fn drop(&mut self) {
        // SAFETY: setrlimit reads one rlimit from the valid pointer.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.original) };
        assert_eq!(rc, 0, "restoring RLIMIT_NOFILE failed");
    }
}

/// The highest descriptor number open in this process.
fn highest_open_fd() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(2)
}

/// Opens `/dev/null` until the process runs out of descriptors.
fn exhaust_descriptors() -> Vec<std::fs::File> {
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return files,
            Err(e) => panic!("opening /dev/null: {e}"),
        }
        assert!(files.len() < 10_000, "the lowered limit did not take effect");
    }
}

/// With every descriptor in use, a connection waiting to be accepted gives the
/// accept callback `Err(ResourceExhausted)` (EMFILE) from `process_events`; the
/// connection is shed (its client sees the close instead of hanging in the
/// backlog), the listener keeps accepting, the loop neither spins (a handful of
/// `Idle` turns in 300 ms) nor fails, and once descriptors are free again a new
/// connection is accepted and works normally.
fn tcp_accept_out_of_descriptors(kind: BackendKind) {
    // A failed instance poisons the lock; the next one runs all the same.
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    util::without_sqpoll();
    let mut drv = util::driver(kind);
    let results: Rc<RefCell<Vec<Accepted>>> = Rc::default();
    let r = results.clone();
    let listener = drv
        .sockets()
        .listen(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            ListenOptions::default(),
            move |_, _, res| r.borrow_mut().push(res),
        )
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap().as_inet().unwrap();

    // Clients need descriptors too: create them while there are some, and
    // connect them from a helper thread once the table is full.
    let early: Vec<Socket> = (0..2)
        .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).expect("client socket"))
        .collect();
    let (to_helper, helper_rx) = mpsc::channel::<Socket>();
    let (from_helper, connected_rx) = mpsc::channel::<Socket>();
    let helper = std::thread::spawn(move || {
        for s in helper_rx {
            s.connect(&addr.into()).expect("blocking connect into the backlog");
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            from_helper.send(s).unwrap();
        }
    });

    let limit = LoweredLimit::to(highest_open_fd() + 16);
    let files = exhaust_descriptors();
    assert!(!files.is_empty());

    let mut early = early.into_iter();
    to_helper.send(early.next().unwrap()).unwrap();
    let mut first_client = connected_rx.recv_timeout(LIMIT).expect("helper connect");
    util::run_until(&mut drv, LIMIT, |_| !results.borrow().is_empty());
    {
        let results = results.borrow();
        let err = results[0].as_ref().expect_err("accept without descriptors");
        assert_eq!(err.status(), Status::ResourceExhausted, "{err}");
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    }
    // The connection that could not be taken was closed, not left pending.
    let mut byte = [0u8; 1];
    match first_client.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the shed connection should be closed, got {other:?}"),
    }

    // A second connection arrives while still out of descriptors; count the
    // turns of the loop meanwhile.
    to_helper.send(early.next().unwrap()).unwrap();
    let _second_client = connected_rx.recv_timeout(LIMIT).expect("helper connect");
    let start = Instant::now();
    let window = Duration::from_millis(300);
    let mut idle = 0;
    while start.elapsed() < window {
        let left = window.saturating_sub(start.elapsed());
        match drv.process_events(Some(left)).expect("process_events") {
            ExitReason::Idle => idle += 1,
            ExitReason::Timeout => {}
            other => panic!("the loop ended with {other:?}"),
        }
    }
    assert!(
        idle <= 4,
        "the loop spun: {idle} idle turns in {window:?}, {} accept callbacks, the last: {:?}",
        results.borrow().len(),
        results.borrow().last().map(|r| r.as_ref().map(|_| ()))
    );
    let failures = results.borrow().len();
    assert!(
        (2..=4).contains(&failures),
        "expected one or two failed accepts per shed connection, got {failures}"
    );
    for r in results.borrow().iter() {
        let status = r.as_ref().map(|_| ()).unwrap_err().status();
        assert_eq!(status, Status::ResourceExhausted);
    }

    // With descriptors back, accepting works again.
    drop(files);
    drop(limit);
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    util::run_until(&mut drv, LIMIT, |_| results.borrow().len() > failures);
    assert_eq!(results.borrow().len(), failures + 1);
    let (conn, peer) = results.borrow_mut().pop().unwrap().expect("accept");
    assert_eq!(peer, SocketAddress::Inet(client.local_addr().unwrap()));
    client.write_all(b"back").unwrap();
    let got: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();
    let g = got.clone();
    drv.sockets()
        .read(conn, Vec::with_capacity(4), IoMode::All, move |_, _, res, buf| {
            assert_eq!(res, Ok(4));
            *g.borrow_mut() = Some(buf);
        });
    util::run_until(&mut drv, LIMIT, |_| got.borrow().is_some());
    assert_eq!(got.take().unwrap(), b"back");

    drop(to_helper);
    helper.join().expect("helper thread");
    assert_eq!(drv.release_ref(conn), Ok(false));
    assert_eq!(drv.release_ref(listener), Ok(false));
    assert_eq!(
        util::run_until_not_idle(&mut drv, Duration::from_secs(1)),
        ExitReason::OutOfWaiters
    );
    util::assert_no_leaks(&drv);
}

contract_tests! {
    tcp_accept_out_of_descriptors,
}
