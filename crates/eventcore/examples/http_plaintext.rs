//! A minimal HTTP/1.1 server in TechEmpower's "plaintext" shape on the
//! callback API: keep-alive, pipelining (every complete request in a read
//! is answered, the answers go out in one write), and a fixed
//! `Hello, World!` body with `Server`, `Date`, `Content-Type` and
//! `Content-Length` headers. One driver, one thread.
//!
//! ```sh
//! cargo run --release -p eventcore-driver --example http_plaintext -- 127.0.0.1:8080
//! wrk -t1 -c64 -d5s http://127.0.0.1:8080/plaintext
//! ```
//!
//! A backend name among the arguments (`epoll`, `io_uring`) picks the
//! backend; the default is the platform's.
//!
//! `cargo xtask bench --http` measures it against a tokio server and a
//! hand-written epoll server (see `docs/benchmarks.md`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventcore::{BackendKind, Driver, IoMode, ListenOptions, StreamSocket};

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: eventcore\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: ";
const BODY: &[u8] = b"Hello, World!";

thread_local! {
    /// The `Date` value, refreshed every second by a periodic timer.
    static DATE: Cell<[u8; 29]> = Cell::new(http_date(now_secs()));
}

/// Bytes read at once.
const READ_SIZE: usize = 4096;

fn main() -> Result<(), eventcore::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal"));
    let backend = match args.iter().find(|a| a.parse::<SocketAddr>().is_err()) {
        Some(name) => *BackendKind::available()
            .iter()
            .find(|k| k.name() == name)
            .ok_or(eventcore::Error::new(eventcore::Status::NotSupported))?,
        None => BackendKind::available()[0],
    };
    let mut drv = Driver::with_backend(backend)?;
    let clock = drv.timers().create();
    drv.timers()
        .set(clock, Duration::from_secs(1), Duration::from_secs(1))?;
    tick(&mut drv, clock);
    let listener = drv.sockets().listen(
        addr,
        ListenOptions {
            backlog: 1024,
            ..ListenOptions::default()
        },
        |drv, _listener, accepted| {
            let Ok((conn, _peer)) = accepted else { return };
            let _ = drv.sockets().set_no_delay(conn, true);
            read(drv, conn, vec![0; READ_SIZE], Conn::new());
        },
    )?;
    println!("listening on {}", drv.sockets().local_address(listener)?);
    loop {
        drv.process_events(None)?;
    }
}

/// Refreshes the date at every firing of the periodic timer.
fn tick(drv: &mut Driver, clock: eventcore::TimerId) {
    let _ = drv.timers().wait(clock, |drv, clock, _| {
        DATE.with(|d| d.set(http_date(now_secs())));
        tick(drv, clock);
    });
}

/// A connection's spare buffers, in one box that travels from operation to
/// operation: a callback that captures the box (one pointer) and the buffer
/// it does not hand to the driver stays within the driver's inline callback
/// storage, so serving a request allocates nothing.
struct Conn {
    /// An incomplete request left over from earlier reads (rare).
    pending: Vec<u8>,
    /// The responses of one batch (lent to the write while it runs).
    out: Vec<u8>,
}

impl Conn {
    fn new() -> Box<Conn> {
        Box::new(Conn {
            pending: Vec::new(),
            out: Vec::with_capacity(READ_SIZE),
        })
    }
}

/// Reads into `input` (always `READ_SIZE` long: a read fills it from 0),
/// answers every complete request, and reads again once the answers are out.
fn read(drv: &mut Driver, conn: StreamSocket, input: Vec<u8>, mut st: Box<Conn>) {
    drv.sockets()
        .read(conn, input, IoMode::Once, move |drv, conn, res, input| {
            let Ok(n) = res else {
                // End of stream or an error: the connection is done.
                let _ = drv.release_ref(conn);
                return;
            };
            let Conn { pending, out } = &mut *st;
            if pending.is_empty() {
                let used = respond(&input[..n], out);
                pending.extend_from_slice(&input[used..n]);
            } else {
                pending.extend_from_slice(&input[..n]);
                let used = respond(pending, out);
                pending.drain(..used);
            }
            if out.is_empty() {
                return read(drv, conn, input, st);
            }
            let out = std::mem::take(&mut st.out);
            drv.sockets()
                .write(conn, out, IoMode::All, move |drv, conn, res, mut out| {
                    if res.is_err() {
                        let _ = drv.release_ref(conn);
                        return;
                    }
                    out.clear();
                    st.out = out;
                    read(drv, conn, input, st);
                });
        });
}

/// Appends a response for every complete request in `input` (GETs without
/// a body: a request ends at its first empty line) and returns how many
/// bytes those requests took.
fn respond(input: &[u8], out: &mut Vec<u8>) -> usize {
    let date = DATE.with(Cell::get);
    let mut used = 0;
    while let Some(p) = input[used..].windows(4).position(|w| w == b"\r\n\r\n") {
        used += p + 4;
        out.extend_from_slice(HEAD);
        out.extend_from_slice(&date);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(BODY);
    }
    used
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `Date` header value (RFC 7231 IMF-fixdate) for `secs` since the epoch.
fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let mut out = [b' '; 29];
    out.copy_from_slice(&s.as_bytes()[..29]);
    out
}
