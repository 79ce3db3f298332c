//! A small HTTP/1.1 server in TechEmpower's "plaintext" shape on the
//! callback API. One driver, one thread.
//!
//! ```sh
//! cargo run --release -p eventcore-driver --example http_plaintext -- 127.0.0.1:8080
//! wrk -t1 -c64 -d5s http://127.0.0.1:8080/plaintext
//! ```
//!
//! A backend name among the arguments (`epoll`, `io_uring`, `winapi`) picks
//! the backend; the default is the platform's. The server prints
//! `listening on ADDR` once it accepts connections.
//!
//! What it does:
//!
//! - **Parsing.** Request heads, chunk-size lines and trailers are parsed
//!   with [`httparse`]. The server only finds where a head ends (its first
//!   empty line), and remembers how far that search got: bytes are looked at
//!   once however a request is split across reads, and `httparse` runs once
//!   per complete head. Empty lines before a request are skipped.
//! - **Answers.** Every request that parses is answered `200 OK` with
//!   `Server`, `Content-Type`, `Content-Length` and `Date` headers and the
//!   body `Hello, World!`, whatever its method and target; a `HEAD` request
//!   gets the same head without the body. A malformed request is answered
//!   `400 Bad Request`; a head (or trailer section) that is not complete
//!   within 8 KiB, or that has more than 100 fields, `431 Request Header
//!   Fields Too Large`. Both close the connection.
//! - **Bodies.** A body framed by `Content-Length` or by
//!   `Transfer-Encoding: chunked` (the last coding; trailers allowed) is
//!   read and thrown away before the request is answered, never taken for a
//!   request. Both headers at once, an invalid or disagreeing
//!   `Content-Length`, another final coding or an invalid chunk is a 400.
//!   `Expect: 100-continue` on an HTTP/1.1 request with a body gets a
//!   `100 Continue` first.
//! - **Connections.** HTTP/1.1 connections stay open unless the request
//!   says `Connection: close`; HTTP/1.0 ones close unless it says
//!   `Connection: keep-alive`. Pipelining: every complete request of a read
//!   is answered, in order, and the answers of one read go out in one
//!   write; reading resumes once they are out. A connection that closes
//!   (after `Connection: close` or an error answer) shuts down its sending
//!   side after the answer and reads and discards what the client still
//!   sends, up to 64 KiB, before it lets go of the socket, so that unread
//!   input does not turn the close into a reset that destroys the answer.
//! - **Memory.** Each connection owns a read buffer, an answer buffer and a
//!   carry-over buffer for a head split across reads, reused for every
//!   request: in the steady state serving a request allocates nothing (the
//!   `Date` value is refreshed once a second by a timer, not per answer).
//!   There is no idle timeout.
//!
//! [`serve`] starts the server on a driver; `tests/http_example.rs` drives
//! it that way on every backend. `cargo xtask bench --http` measures it
//! against a tokio server and a hand-written epoll server (see
//! `docs/benchmarks.md`).

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventcore::{BackendKind, Driver, IoMode, ListenOptions, StreamSocket};

/// Bytes read at once.
const READ_SIZE: usize = 4096;
/// The longest request head (or trailer section), terminating empty line
/// included.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most header fields a request head (or trailer section) may have.
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (extensions included).
const MAX_CHUNK_LINE: usize = 1024;
/// How much a closing connection reads and discards before it closes.
const LINGER_LIMIT: usize = 64 * 1024;

const OK_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: eventcore\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: ";
const BODY: &[u8] = b"Hello, World!";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nServer: eventcore\r\nContent-Length: 0\r\nConnection: close\r\nDate: ";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: eventcore\r\nContent-Length: 0\r\nConnection: close\r\nDate: ";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

thread_local! {
    /// The `Date` value, refreshed every second by a periodic timer.
    static DATE: Cell<[u8; 29]> = Cell::new(http_date(now_secs()));
}

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
    let local = serve(&mut drv, addr)?;
    println!("listening on {local}");
    loop {
        drv.process_events(None)?;
    }
}

/// Starts the server on `drv`: listens on `addr`, keeps the `Date` value
/// fresh with a periodic timer, and serves every connection from the
/// driver's callbacks. Returns the address it listens on (the port chosen
/// when `addr` has port 0). The caller runs the loop.
pub fn serve(drv: &mut Driver, addr: SocketAddr) -> eventcore::Result<SocketAddr> {
    let listener = drv.sockets().listen(
        addr,
        ListenOptions {
            backlog: 1024,
            ..ListenOptions::default()
        },
        |drv, _listener, accepted| {
            let Ok((conn, _peer)) = accepted else { return };
            let _ = drv.sockets().set_no_delay(conn, true);
            read(drv, conn, Vec::with_capacity(READ_SIZE), Conn::new());
        },
    )?;
    let local = drv.sockets().local_address(listener)?;
    let clock = drv.timers().create();
    drv.timers()
        .set(clock, Duration::from_secs(1), Duration::from_secs(1))?;
    DATE.with(|d| d.set(http_date(now_secs())));
    tick(drv, clock);
    local
        .as_inet()
        .ok_or(eventcore::Error::new(eventcore::Status::InvalidArgument))
}

/// Refreshes the date at every firing of the periodic timer.
fn tick(drv: &mut Driver, clock: eventcore::TimerId) {
    let _ = drv.timers().wait(clock, |drv, clock, _| {
        DATE.with(|d| d.set(http_date(now_secs())));
        tick(drv, clock);
    });
}

// ------------------------------------------------------------- connections

/// A connection's state and spare buffers, in one box that travels from
/// operation to operation: a callback that captures the box (one pointer)
/// and the buffer it does not hand to the driver stays within the driver's
/// inline callback storage, so serving a request allocates nothing.
struct Conn {
    /// Where the connection is in its stream of requests.
    parser: Parser,
    /// The answers of one read (lent to the write while it runs).
    out: Vec<u8>,
}

impl Conn {
    fn new() -> Box<Conn> {
        Box::new(Conn {
            parser: Parser::new(),
            out: Vec::with_capacity(READ_SIZE),
        })
    }
}

/// Reads into `input` (empty, with `READ_SIZE` of capacity: a read fills
/// it from 0), answers every complete request, and reads again once the
/// answers are out.
fn read(drv: &mut Driver, conn: StreamSocket, mut input: Vec<u8>, mut st: Box<Conn>) {
    input.clear();
    drv.sockets()
        .read(conn, input, IoMode::Once, move |drv, conn, res, input| {
            let Ok(n) = res else {
                // End of stream or an error: the connection is done.
                let _ = drv.release_ref(conn);
                return;
            };
            let Conn { parser, out } = &mut *st;
            let close = parser.feed(&input[..n], out);
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
                    if close {
                        drop(st);
                        drop(out);
                        let _ = drv.sockets().shutdown(conn, false, true);
                        return linger(drv, conn, input, 0);
                    }
                    out.clear();
                    st.out = out;
                    read(drv, conn, input, st);
                });
        });
}

/// The end of a connection whose answers are all out and whose sending side
/// is shut down: reads and discards until the client closes, an error, or
/// [`LINGER_LIMIT`] bytes, then releases the socket.
fn linger(drv: &mut Driver, conn: StreamSocket, mut input: Vec<u8>, discarded: usize) {
    input.clear();
    drv.sockets()
        .read(conn, input, IoMode::Once, move |drv, conn, res, input| match res {
            Ok(n) if discarded + n < LINGER_LIMIT => linger(drv, conn, input, discarded + n),
            _ => {
                let _ = drv.release_ref(conn);
            }
        });
}

// ------------------------------------------------------------------ parser

/// Where a connection is between and within requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request: empty lines are skipped.
    Idle,
    /// In a request head.
    Head,
    /// In a `Content-Length` body, with this many bytes to go.
    Body(u64),
    /// At a chunk-size line.
    ChunkSize,
    /// In a chunk's data, with this many bytes to go.
    ChunkData(u64),
    /// At the CRLF that ends a chunk's data.
    ChunkEnd,
    /// In the trailer section after the last chunk.
    Trailers,
    /// Done: the connection closes once the answers are out; further input
    /// is ignored.
    Closed,
}

/// What the request being read gets once its body is in.
#[derive(Debug, Clone, Copy, Default)]
struct Answer {
    /// `HEAD`: the head of the answer without its body.
    head_only: bool,
    /// Close the connection after the answer.
    close: bool,
    /// Say `Connection: keep-alive` (an HTTP/1.0 request that asked for it).
    keep_alive_header: bool,
}

/// How a step of [`Parser::feed`] ended.
enum Step {
    /// Go on at the byte offset given.
    Next(usize),
    /// The input is used up; the element started at this offset is carried
    /// over to the next read.
    Carry(usize),
}

/// The HTTP/1.1 request reader of one connection: a state machine fed with
/// whatever each read brought.
///
/// Only the current syntactic element (a request head, a chunk-size line,
/// the CRLF after a chunk, a trailer section) is ever kept across reads, in
/// `carry`, and `scanned` says how much of it was already searched for its
/// end; bodies are counted off as they pass.
pub struct Parser {
    state: State,
    /// The start of the unfinished element, from earlier reads.
    carry: Vec<u8>,
    /// How far into the element (in `carry`) the search for its end got.
    scanned: usize,
    /// The answer of the request whose body is being read.
    answer: Answer,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser at the start of a connection.
    pub fn new() -> Parser {
        Parser {
            state: State::Idle,
            carry: Vec::new(),
            scanned: 0,
            answer: Answer::default(),
        }
    }

    /// Takes the bytes of one read: appends the answers of every request
    /// they complete to `out` (and a `100 Continue` where one is due), and
    /// keeps what belongs to an unfinished request. Returns `true` when the
    /// connection is to close once `out` is sent; the parser then ignores
    /// any further input.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.state == State::Closed {
            return true;
        }
        if self.carry.is_empty() {
            // The common case: requests parsed in place in the read buffer.
            if let Some(start) = self.run(input, out) {
                self.carry.extend_from_slice(&input[start..]);
            }
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(input);
            match self.run(&carry, out) {
                Some(start) => {
                    carry.drain(..start);
                }
                None => carry.clear(),
            }
            self.carry = carry;
        }
        self.state == State::Closed
    }

    /// Runs the state machine over `data`, whose start is the start of the
    /// carried-over element if there is one. Returns where the unfinished
    /// element starts, if the data ends inside one.
    fn run(&mut self, data: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut pos = 0;
        loop {
            if self.state == State::Closed {
                return None;
            }
            if pos == data.len() {
                // Every element that began here ended here too, or was
                // handed back by `step` with `Carry`.
                return None;
            }
            match self.step(data, pos, out) {
                Step::Next(next) => pos = next,
                Step::Carry(start) => return Some(start),
            }
        }
    }

    /// One step at `data[pos..]`, which is not empty. An element in `data`
    /// starts at `pos`, except a carried-over one, which starts at 0.
    fn step(&mut self, data: &[u8], pos: usize, out: &mut Vec<u8>) -> Step {
        let rest = &data[pos..];
        match self.state {
            State::Closed => Step::Next(data.len()),
            State::Idle => {
                let skip = rest.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                if skip < rest.len() {
                    self.state = State::Head;
                    self.scanned = 0;
                }
                Step::Next(pos + skip)
            }
            State::Body(left) | State::ChunkData(left) => {
                let take = left.min(rest.len() as u64);
                let left = left - take;
                self.state = match (self.state, left) {
                    (State::Body(_), 0) => {
                        self.finish(out);
                        self.state
                    }
                    (State::Body(_), _) => State::Body(left),
                    (_, 0) => State::ChunkEnd,
                    _ => State::ChunkData(left),
                };
                Step::Next(pos + take as usize)
            }
            State::Head | State::Trailers => {
                let Some(end) = empty_line_end(rest, &mut self.scanned) else {
                    if rest.len() > MAX_HEAD {
                        self.fail(out, TOO_LARGE);
                        return Step::Next(data.len());
                    }
                    return Step::Carry(pos);
                };
                self.scanned = 0;
                if end > MAX_HEAD {
                    self.fail(out, TOO_LARGE);
                    return Step::Next(data.len());
                }
                if self.state == State::Head {
                    self.head(&rest[..end], out);
                } else {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(&rest[..end], &mut headers) {
                        Ok(httparse::Status::Complete((used, _))) if used == end => self.finish(out),
                        Err(httparse::Error::TooManyHeaders) => self.fail(out, TOO_LARGE),
                        _ => self.fail(out, BAD_REQUEST),
                    }
                }
                Step::Next(pos + end)
            }
            State::ChunkSize => {
                let from = self.scanned;
                let Some(nl) = rest[from..].iter().position(|&b| b == b'\n') else {
                    self.scanned = rest.len();
                    if rest.len() > MAX_CHUNK_LINE {
                        self.fail(out, BAD_REQUEST);
                        return Step::Next(data.len());
                    }
                    return Step::Carry(pos);
                };
                let end = from + nl + 1;
                self.scanned = 0;
                let line = &rest[..end];
                match httparse::parse_chunk_size(line) {
                    // httparse takes a line without digits for size 0.
                    Ok(httparse::Status::Complete((used, size))) if used == end && line[0].is_ascii_hexdigit() => {
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    _ => self.fail(out, BAD_REQUEST),
                }
                Step::Next(pos + end)
            }
            State::ChunkEnd => {
                if rest.len() < 2 {
                    return if rest == b"\r" {
                        Step::Carry(pos)
                    } else {
                        self.fail(out, BAD_REQUEST);
                        Step::Next(data.len())
                    };
                }
                if &rest[..2] == b"\r\n" {
                    self.state = State::ChunkSize;
                } else {
                    self.fail(out, BAD_REQUEST);
                }
                Step::Next(pos + 2)
            }
        }
    }

    /// A complete request head: parses it and sets up reading its body (or
    /// answers it at once if it has none).
    fn head(&mut self, head: &[u8], out: &mut Vec<u8>) {
        // Left uninitialised: httparse writes the fields it finds, and
        // clearing 100 of them per request would cost more than parsing.
        let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(head, &mut headers) {
            Ok(httparse::Status::Complete(used)) if used == head.len() => {}
            Err(httparse::Error::TooManyHeaders) => return self.fail(out, TOO_LARGE),
            _ => return self.fail(out, BAD_REQUEST),
        }
        let http11 = req.version == Some(1);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut coded = false;
        let mut close = false;
        let mut keep_alive = false;
        let mut expect_continue = false;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let Some(n) = parse_length(h.value) else {
                    return self.fail(out, BAD_REQUEST);
                };
                if length.is_some_and(|l| l != n) {
                    return self.fail(out, BAD_REQUEST);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in tokens(h.value) {
                    // `chunked` must be the last coding, and only once.
                    if chunked {
                        return self.fail(out, BAD_REQUEST);
                    }
                    coded = true;
                    chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for option in tokens(h.value) {
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        if (coded && !chunked) || (chunked && length.is_some()) {
            return self.fail(out, BAD_REQUEST);
        }
        let keep = if http11 { !close } else { keep_alive && !close };
        self.answer = Answer {
            head_only: req.method == Some("HEAD"),
            close: !keep,
            keep_alive_header: keep && !http11,
        };
        let body = chunked || length.unwrap_or(0) > 0;
        if body && expect_continue && http11 {
            out.extend_from_slice(CONTINUE);
        }
        if chunked {
            self.state = State::ChunkSize;
        } else {
            match length.unwrap_or(0) {
                0 => self.finish(out),
                n => self.state = State::Body(n),
            }
        }
    }

    /// The request is complete: answers it.
    fn finish(&mut self, out: &mut Vec<u8>) {
        let a = self.answer;
        out.extend_from_slice(OK_HEAD);
        out.extend_from_slice(&DATE.with(Cell::get));
        if a.close {
            out.extend_from_slice(b"\r\nConnection: close");
        } else if a.keep_alive_header {
            out.extend_from_slice(b"\r\nConnection: keep-alive");
        }
        out.extend_from_slice(b"\r\n\r\n");
        if !a.head_only {
            out.extend_from_slice(BODY);
        }
        self.state = if a.close { State::Closed } else { State::Idle };
    }

    /// The request is refused with `answer` (the status line and headers
    /// up to the `Date` value); the connection closes.
    fn fail(&mut self, out: &mut Vec<u8>, answer: &[u8]) {
        out.extend_from_slice(answer);
        out.extend_from_slice(&DATE.with(Cell::get));
        out.extend_from_slice(b"\r\n\r\n");
        self.state = State::Closed;
    }
}

/// Finds the end of the first empty line (`\r\n` or `\n` at the start of a
/// line) in `block`, the bytes of an element from its start. `scanned` is
/// where an earlier search of a shorter `block` stopped (0 at first); it is
/// advanced so that the next search goes on from there, which keeps the
/// search linear however the element arrives.
fn empty_line_end(block: &[u8], scanned: &mut usize) -> Option<usize> {
    let mut i = *scanned;
    loop {
        // At the start of a line: is it empty?
        if i == 0 || block[i - 1] == b'\n' {
            match block.get(i) {
                Some(b'\n') => return Some(i + 1),
                Some(b'\r') => match block.get(i + 1) {
                    Some(b'\n') => return Some(i + 2),
                    Some(_) => {}
                    None => break,
                },
                Some(_) => {}
                None => break,
            }
        }
        match block[i..].iter().position(|&b| b == b'\n') {
            Some(p) => i += p + 1,
            None => {
                i = block.len();
                break;
            }
        }
    }
    *scanned = i;
    None
}

/// A `Content-Length` value: decimal digits only, no overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The non-empty elements of a comma-separated header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

// -------------------------------------------------------------------- date

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
