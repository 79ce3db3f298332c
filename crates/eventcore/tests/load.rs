//! Load: 10,000 concurrent loopback TCP connections on one driver.
//!
//! The server is an eventcore driver on the test's thread: it accepts every
//! connection, reads a 32-byte message, echoes it, and keeps a read pending
//! on the connection until the client goes away. The clients are plain
//! blocking `socket2` sockets on two threads of a child process (this test
//! binary again, running its ignored `load_client` entry), which connect in
//! batches and check every echo; all 10,000 connections stay open until every
//! echo has arrived, so at the peak the driver holds 10,000 live connections
//! with a read pending on each. The test prints the server process's peak
//! resident set (`VmHWM`) and what that comes to per connection.
//!
//! Each process needs about 10,200 descriptors, so both raise
//! `RLIMIT_NOFILE` to the hard limit (the clients live in a process of their
//! own because two ends of 10,000 connections do not fit a common hard limit
//! of 20,000); where the hard limit is lower the test prints `SKIPPED`.
//! `RLIMIT_NOFILE` belongs to the process, so this scenario has a test binary
//! of its own, and its instances (one per backend) take turns.

#![cfg(target_os = "linux")]

mod util;

use std::cell::{Cell, RefCell};
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use eventcore::{BackendKind, ExitReason, IoMode, ListenOptions, StreamSocket};
use socket2::{Domain, Socket, Type};

/// Connections open at once at the peak.
const CONNECTIONS: usize = 10_000;
/// Client threads; each connects its share in batches of [`BATCH`].
const CLIENT_THREADS: usize = 2;
const BATCH: usize = 250;
const MESSAGE: usize = 32;
/// Descriptors each process needs: one end of every connection, plus room
/// for the listener, the driver, the harness and the standard streams.
const DESCRIPTORS: u64 = CONNECTIONS as u64 + 200;
/// Set for the child process: the server's address.
const CLIENT_VAR: &str = "EVENTCORE_LOAD_CLIENT";
/// The whole scenario, per backend.
const LIMIT: Duration = Duration::from_secs(45);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn rlimit() -> libc::rlimit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusive pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    r
}

fn set_rlimit(r: &libc::rlimit) -> bool {
    // SAFETY: setrlimit reads one rlimit from the valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, r) == 0 }
}

/// Raises the soft descriptor limit to the hard one (and the hard one to
/// [`DESCRIPTORS`] if it is lower and the process may raise it). Returns the
/// limit to restore, or why there are not enough descriptors.
fn raise_limit() -> Result<libc::rlimit, String> {
    let original = rlimit();
    let wanted = libc::rlimit {
        rlim_cur: original.rlim_max.max(DESCRIPTORS),
        rlim_max: original.rlim_max.max(DESCRIPTORS),
    };
    if set_rlimit(&wanted) {
        return Ok(original);
    }
    let soft_to_hard = libc::rlimit {
        rlim_cur: original.rlim_max,
        rlim_max: original.rlim_max,
    };
    if original.rlim_max >= DESCRIPTORS && set_rlimit(&soft_to_hard) {
        return Ok(original);
    }
    Err(format!(
        "RLIMIT_NOFILE's hard limit is {} and cannot be raised ({}); {DESCRIPTORS} descriptors are needed",
        original.rlim_max,
        std::io::Error::last_os_error()
    ))
}

/// A `/proc/self/status` figure in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

/// Resets the process's peak RSS (`VmHWM`) to the current RSS, so that the
/// second backend's figure is its own; false where the kernel cannot.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn message(index: usize) -> [u8; MESSAGE] {
    let mut m = [0u8; MESSAGE];
    for (i, b) in m.iter_mut().enumerate() {
        *b = (index.wrapping_mul(31) ^ i.wrapping_mul(7)) as u8;
    }
    m[..8].copy_from_slice(&(index as u64).to_le_bytes());
    m
}

/// One client thread: connects `range` in batches, sends each message,
/// checks each echo, says so on `done`, then holds every socket open until
/// `release`.
fn client(
    addr: SocketAddr,
    range: std::ops::Range<usize>,
    done: mpsc::Sender<()>,
    release: Arc<AtomicBool>,
    deadline: Instant,
) {
    let mut open: Vec<Socket> = Vec::with_capacity(range.len());
    let indices: Vec<usize> = range.collect();
    for batch in indices.chunks(BATCH) {
        let start = open.len();
        for &i in batch {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("client socket");
            s.connect_timeout(&addr.into(), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("connect #{i}: {e}"));
            // Closing resets the connection: no TIME_WAIT left behind.
            s.set_linger(Some(Duration::ZERO)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            (&s).write_all(&message(i))
                .unwrap_or_else(|e| panic!("write #{i}: {e}"));
            open.push(s);
        }
        for (k, &i) in batch.iter().enumerate() {
            let mut echo = [0u8; MESSAGE];
            (&open[start + k])
                .read_exact(&mut echo)
                .unwrap_or_else(|e| panic!("reading the echo of #{i}: {e}"));
            assert_eq!(echo, message(i), "connection #{i} got a wrong echo");
        }
    }
    done.send(()).unwrap();
    while !release.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "the server never released the clients");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(open);
}

/// Server-side counts.
#[derive(Default)]
struct Counts {
    accepted: Cell<usize>,
    echoed: Cell<usize>,
    live: Cell<usize>,
    peak_live: Cell<usize>,
    closed: Cell<usize>,
    failures: RefCell<Vec<String>>,
}

/// Echoes one message, then waits for the client to go away and releases.
fn serve(drv: &mut eventcore::Driver, conn: StreamSocket, counts: Rc<Counts>) {
    drv.sockets().read(
        conn,
        Vec::with_capacity(MESSAGE),
        IoMode::All,
        move |drv, conn, res, buf| {
            if let Err(e) = res {
                counts.failures.borrow_mut().push(format!("read: {e}"));
                counts.live.set(counts.live.get() - 1);
                drv.release_ref(conn).unwrap();
                return;
            }
            drv.sockets().write(conn, buf, IoMode::All, move |drv, conn, res, _| {
                if let Err(e) = res {
                    counts.failures.borrow_mut().push(format!("write: {e}"));
                }
                counts.echoed.set(counts.echoed.get() + 1);
                // Keep a read pending until the client closes.
                drv.sockets()
                    .read(conn, Vec::with_capacity(1), IoMode::Once, move |drv, conn, res, _| {
                        if res.is_ok() {
                            counts.failures.borrow_mut().push("bytes after the message".into());
                        }
                        counts.live.set(counts.live.get() - 1);
                        counts.closed.set(counts.closed.get() + 1);
                        drv.release_ref(conn).unwrap();
                    });
            });
        },
    );
}

fn ten_thousand_connections(kind: BackendKind) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let original = match raise_limit() {
        Ok(original) => original,
        Err(why) => {
            println!("SKIPPED load test on {}: {why}", kind.name());
            return;
        }
    };
    let started = Instant::now();
    let deadline = started + LIMIT;
    let reset = reset_peak_rss();
    let base_rss = status_kib("VmRSS:");

    let mut drv = util::driver(kind);
    let counts = Rc::new(Counts::default());
    let c = counts.clone();
    let options = ListenOptions {
        backlog: 4096,
        ..ListenOptions::default()
    };
    let listener = drv
        .sockets()
        .listen(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            options,
            move |drv, _, res| match res {
                Ok((conn, _)) => {
                    c.accepted.set(c.accepted.get() + 1);
                    c.live.set(c.live.get() + 1);
                    c.peak_live.set(c.peak_live.get().max(c.live.get()));
                    serve(drv, conn, c.clone());
                }
                Err(e) => c.failures.borrow_mut().push(format!("accept: {e}")),
            },
        )
        .expect("listen");
    let addr = drv.sockets().local_address(listener).unwrap().as_inet().unwrap();

    // The clients: this binary again, in a process of its own.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "load_client", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CLIENT_VAR, addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the client process");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = lines_tx.send(line);
        }
    });

    // Serve until the clients have checked every echo, all connections open.
    let mut client_done = false;
    while !client_done || counts.echoed.get() < CONNECTIONS {
        assert!(
            Instant::now() < deadline,
            "{} of {CONNECTIONS} echoed after {LIMIT:?} ({} accepted)",
            counts.echoed.get(),
            counts.accepted.get()
        );
        while let Ok(line) = lines.try_recv() {
            client_done |= line.contains("LOAD-CLIENT echoed");
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the client process ended early ({status}); see its output above");
        }
        drv.process_events(Some(Duration::from_millis(20)))
            .expect("process_events");
    }
    let peak_ms = started.elapsed().as_millis();
    let live = counts.live.get();
    let waiters = drv.waiter_count();
    let hwm = status_kib("VmHWM:");
    let rss = status_kib("VmRSS:");

    // The clients close; every pending read ends and releases its connection.
    drop(child.stdin.take());
    while counts.closed.get() < CONNECTIONS {
        assert!(
            Instant::now() < deadline,
            "{} of {CONNECTIONS} connections closed",
            counts.closed.get()
        );
        drv.process_events(Some(Duration::from_millis(100)))
            .expect("process_events");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the client process failed ({status})");
    drv.release_ref(listener).unwrap();
    assert_eq!(
        util::run_until_not_idle(&mut drv, Duration::from_secs(10)),
        ExitReason::OutOfWaiters
    );
    util::assert_no_leaks(&drv);
    drop(drv);
    assert!(set_rlimit(&original), "restoring RLIMIT_NOFILE");

    assert_eq!(*counts.failures.borrow(), Vec::<String>::new());
    assert_eq!(counts.accepted.get(), CONNECTIONS);
    assert_eq!(live, CONNECTIONS, "connections live on the server at the peak");
    assert_eq!(counts.peak_live.get(), CONNECTIONS);
    // The listener's accept and a pending read per connection.
    assert!(
        waiters > CONNECTIONS,
        "only {waiters} waiters at the peak: the reads are not pending"
    );
    let per_conn = (hwm.saturating_sub(base_rss) * 1024) as f64 / CONNECTIONS as f64;
    println!(
        "load on {}: {CONNECTIONS} connections live at once after {peak_ms} ms, all echoed; \
         server's peak RSS (VmHWM) {hwm} KiB{}, RSS at the peak {rss} KiB, {base_rss} KiB before: \
         {per_conn:.0} bytes per connection; {:.1} s in all",
        kind.name(),
        if reset {
            ""
        } else {
            " (not reset: includes earlier tests)"
        },
        started.elapsed().as_secs_f64()
    );
}

/// The client process's entry: only with [`CLIENT_VAR`] set, as the load
/// test starts it (hence ignored in ordinary runs).
#[test]
#[ignore = "the load test's client process; started by the load test"]
fn load_client() {
    let addr: SocketAddr = std::env::var(CLIENT_VAR)
        .expect("run by the load test only")
        .parse()
        .unwrap();
    raise_limit().expect("descriptors for the clients");
    let deadline = Instant::now() + LIMIT;
    let release = Arc::new(AtomicBool::new(false));
    let (done_tx, done) = mpsc::channel();
    let per_thread = CONNECTIONS / CLIENT_THREADS;
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let (release, done_tx) = (release.clone(), done_tx.clone());
            let range = t * per_thread..(t + 1) * per_thread;
            std::thread::spawn(move || client(addr, range, done_tx, release, deadline))
        })
        .collect();
    for _ in 0..CLIENT_THREADS {
        done.recv_timeout(LIMIT)
            .expect("a client thread failed (see its panic)");
    }
    println!("LOAD-CLIENT echoed");
    // Until the server has measured: it closes our stdin.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    release.store(true, Ordering::Release);
    for c in clients {
        c.join().expect("client thread");
    }
}

mod epoll {
    #[test]
    fn ten_thousand_connections() {
        super::ten_thousand_connections(eventcore::BackendKind::Epoll);
    }
}

mod uring {
    #[test]
    fn ten_thousand_connections() {
        if crate::util::io_uring_missing("ten_thousand_connections") {
            return;
        }
        super::ten_thousand_connections(eventcore::BackendKind::IoUring);
    }
}
