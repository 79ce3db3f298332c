//! The `http_plaintext` example as an HTTP/1.1 server: its server part runs
//! on a driver of each backend in the test's thread, and blocking `std`
//! clients on 127.0.0.1 talk to it from other threads. Plain GETs,
//! keep-alive, pipelining, requests split into single bytes, bodies framed
//! by `Content-Length` and by chunks, malformed and oversized requests,
//! `Connection: close` and HTTP/1.0. The parser itself is also fed
//! directly, split at every byte.

mod util;

#[path = "../examples/http_plaintext.rs"]
#[allow(dead_code)]
mod server;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use eventcore::BackendKind;
use server::Parser;

/// The longest any client waits for an answer.
const LIMIT: Duration = Duration::from_secs(20);

const GET: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";

/// Starts the server on a driver of `kind`, runs `client` in a thread of its
/// own with the server's address, and runs the loop until the client is
/// done; a client's panic fails the scenario.
fn with_server(kind: BackendKind, client: impl FnOnce(SocketAddr) + Send + 'static) {
    let mut drv = util::driver(kind);
    let addr = server::serve(&mut drv, "127.0.0.1:0".parse().unwrap()).expect("serve");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let thread = std::thread::spawn(move || client(addr));
    util::run_until(&mut drv, LIMIT + Duration::from_secs(5), |_| thread.is_finished());
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// One answer as a client sees it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The `Connection` header, lower-cased, if any.
    connection: Option<String>,
    content_length: usize,
    has_date: bool,
    body: Vec<u8>,
}

/// A blocking client with the bytes it has read but not yet taken apart.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends `bytes` in pieces of `size`, each its own write.
    fn send_in_pieces(&mut self, bytes: &[u8], size: usize) {
        for piece in bytes.chunks(size) {
            self.send(piece);
        }
    }

    /// Reads more; `false` at end of stream or on a reset.
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset || e.kind() == ErrorKind::ConnectionAborted => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next answer; `head_only` for the answer to a HEAD request.
    fn answer_to(&mut self, head_only: bool) -> Answer {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = res.parse(&self.buf).expect("a valid answer") {
                let header = |name: &str| {
                    res.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                };
                let content_length: usize = header("content-length")
                    .map(|v| v.parse().expect("Content-Length"))
                    .unwrap_or(0);
                let body_len = if head_only { 0 } else { content_length };
                if self.buf.len() >= head_len + body_len {
                    let answer = Answer {
                        status: res.code.unwrap(),
                        connection: header("connection"),
                        content_length,
                        has_date: header("date").is_some_and(|d| d.len() == 29 && d.ends_with(" gmt")),
                        body: self.buf[head_len..head_len + body_len].to_vec(),
                    };
                    self.buf.drain(..head_len + body_len);
                    return answer;
                }
            }
            assert!(
                self.fill(),
                "the connection ended before a whole answer: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    fn answer(&mut self) -> Answer {
        self.answer_to(false)
    }

    /// Expects `200 OK` with the plaintext body, the connection kept open.
    fn expect_hello(&mut self) {
        let a = self.answer();
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body, b"Hello, World!", "{a:?}");
        assert_eq!(a.content_length, 13);
        assert!(a.has_date, "{a:?}");
        assert_eq!(a.connection, None, "{a:?}");
    }

    /// Expects the server to close the connection with nothing more said.
    fn expect_closed(&mut self) {
        while self.fill() {}
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }

    /// Expects nothing more for a moment, with the connection still open.
    fn expect_quiet(&mut self) {
        self.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut tmp = [0u8; 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&tmp[..n])),
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "read: {e}"
            ),
        }
        self.stream.set_read_timeout(Some(LIMIT)).unwrap();
        assert!(self.buf.is_empty());
    }
}

/// Sends `request` on a fresh connection and expects the status, a
/// `Connection: close` answer and the end of the connection.
fn expect_refused(addr: SocketAddr, request: &[u8], status: u16) {
    let mut c = Client::connect(addr);
    c.send(request);
    let a = c.answer();
    assert_eq!(a.status, status, "{a:?} for {:?}", String::from_utf8_lossy(request));
    assert_eq!(a.connection.as_deref(), Some("close"));
    assert!(a.has_date);
    c.expect_closed();
}

// ------------------------------------------------------------------ scenarios

fn http_plain_get(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        c.send(GET);
        c.expect_hello();
        c.expect_quiet();
    });
}

fn http_keep_alive(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        c.send(GET);
        c.expect_hello();
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
        c.expect_hello();
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        let a = c.answer_to(true);
        assert_eq!((a.status, a.content_length, a.body.len()), (200, 13, 0), "{a:?}");
        c.send(GET);
        c.expect_hello();
        c.expect_quiet();
    });
}

fn http_pipelined_requests_in_one_write(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        let mut batch = Vec::new();
        for i in 0..16 {
            if i == 5 {
                batch.extend_from_slice(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n");
            } else {
                batch.extend_from_slice(GET);
            }
        }
        c.send(&batch);
        for i in 0..16 {
            if i == 5 {
                let a = c.answer_to(true);
                assert_eq!((a.status, a.body.len()), (200, 0), "{a:?}");
            } else {
                c.expect_hello();
            }
        }
        c.expect_quiet();
    });
}

fn http_request_in_single_bytes(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        c.send_in_pieces(GET, 1);
        c.expect_hello();
        // A chunked request and a plain one, byte by byte.
        let mut two = b"POST /in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\nhello\r\n0\r\n\r\n"
            .to_vec();
        two.extend_from_slice(GET);
        c.send_in_pieces(&two, 1);
        c.expect_hello();
        c.expect_hello();
        c.expect_quiet();
    });
}

fn http_content_length_body_is_not_a_request(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        // The body looks like two requests; it is one request's body.
        let body = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let head = format!(
            "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.send(head.as_bytes());
        c.send(body);
        c.expect_hello();
        c.send(GET);
        c.expect_hello();
        c.expect_quiet();
        // A body longer than a read, split oddly, followed by a request in
        // the same write as its last bytes.
        let body = vec![b'x'; 20_000];
        c.send(b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\nxxx");
        c.send(&body[..15_000]);
        let mut tail = body[15_003..].to_vec();
        tail.extend_from_slice(GET);
        c.send(&tail);
        c.expect_hello();
        c.expect_hello();
        c.expect_quiet();
        // `Expect: 100-continue` gets a `100 Continue` before the answer.
        c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
        let a = c.answer();
        assert_eq!(a.status, 100, "{a:?}");
        c.send(b"abc");
        c.expect_hello();
        c.expect_quiet();
    });
}

fn http_chunked_body_is_not_a_request(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        c.send(
            b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
              12\r\nGET / HTTP/1.1\r\n\r\n\r\n\
              A;name=value\r\n0123456789\r\n\
              0\r\nX-Trailer: yes\r\n\r\n",
        );
        c.expect_hello();
        c.send(GET);
        c.expect_hello();
        c.expect_quiet();
        // Chunks split across writes, the last chunk without trailers, and
        // a request right behind it.
        c.send(b"POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\n\r\n3\r");
        c.send(b"\nGET\r");
        c.send(b"\n0");
        let mut tail = b"\r\n\r\n".to_vec();
        tail.extend_from_slice(GET);
        c.send(&tail);
        c.expect_hello();
        c.expect_hello();
        c.expect_quiet();
    });
}

fn http_bad_bodies_are_refused(kind: BackendKind) {
    with_server(kind, |addr| {
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
        );
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\nabc",
            400,
        );
        expect_refused(addr, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400);
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        );
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            400,
        );
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
            400,
        );
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
        );
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            400,
        );
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            400,
        );
        expect_refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
            400,
        );
    });
}

fn http_garbage_is_refused(kind: BackendKind) {
    with_server(kind, |addr| {
        expect_refused(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400);
        expect_refused(addr, b"hello there\r\n\r\n", 400);
        expect_refused(addr, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400);
        expect_refused(addr, b"GET / HTTP/1.1\r\nHost: x\r\n folded: line\r\n\r\n", 400);
        expect_refused(addr, b"GET /\r\n\r\n", 400);
        expect_refused(addr, b"GET / HTTP/2.0\r\n\r\n", 400);
        // The good request before the garbage is answered; nothing after it is.
        let mut c = Client::connect(addr);
        let mut batch = GET.to_vec();
        batch.extend_from_slice(b"BAD\x00REQUEST\r\n\r\n");
        batch.extend_from_slice(GET);
        c.send(&batch);
        c.expect_hello();
        let a = c.answer();
        assert_eq!((a.status, a.connection.as_deref()), (400, Some("close")), "{a:?}");
        c.expect_closed();
    });
}

fn http_oversized_head_is_refused(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        while head.len() < 9 * 1024 {
            head.extend_from_slice(b"X-Filler: 0123456789abcdef0123456789abcdef\r\n");
        }
        // Incomplete: refused once it passes 8 KiB.
        expect_refused(addr, &head, 431);
        // Complete, but longer than 8 KiB.
        let mut complete = head.clone();
        complete.extend_from_slice(b"\r\n");
        expect_refused(addr, &complete, 431);
        // Too many fields in a short head.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(many.len() < 8 * 1024);
        expect_refused(addr, &many, 431);
    });
}

fn http_connection_close_is_honoured(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        // The request after the closing one is not answered.
        let mut batch = GET.to_vec();
        batch.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        batch.extend_from_slice(GET);
        c.send(&batch);
        c.expect_hello();
        let a = c.answer();
        assert_eq!((a.status, a.connection.as_deref()), (200, Some("close")), "{a:?}");
        assert_eq!(a.body, b"Hello, World!");
        c.expect_closed();
    });
}

fn http_1_0_closes_unless_kept_alive(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut c = Client::connect(addr);
        c.send(b"GET / HTTP/1.0\r\n\r\n");
        let a = c.answer();
        assert_eq!((a.status, a.connection.as_deref()), (200, Some("close")), "{a:?}");
        c.expect_closed();

        let mut c = Client::connect(addr);
        c.send(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        let a = c.answer();
        assert_eq!((a.status, a.connection.as_deref()), (200, Some("keep-alive")), "{a:?}");
        c.send(b"GET / HTTP/1.0\r\n\r\n");
        let a = c.answer();
        assert_eq!((a.status, a.connection.as_deref()), (200, Some("close")), "{a:?}");
        c.expect_closed();
    });
}

fn http_huge_head_in_pieces_is_refused_quickly(kind: BackendKind) {
    with_server(kind, |addr| {
        let c = Client::connect(addr);
        let mut writer = c.stream.try_clone().expect("clone");
        let started = Instant::now();
        let sender = std::thread::spawn(move || {
            let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
            head.resize(1024 * 1024, b'a');
            let mut sent = 0;
            for piece in head.chunks(1000) {
                if writer.write_all(piece).is_err() {
                    break;
                }
                sent += piece.len();
            }
            let _ = writer.shutdown(Shutdown::Write);
            sent
        });
        let mut c = c;
        let a = c.answer();
        let refused_after = started.elapsed();
        assert_eq!((a.status, a.connection.as_deref()), (431, Some("close")), "{a:?}");
        c.expect_closed();
        let sent = sender.join().unwrap();
        eprintln!("431 after {refused_after:?}; the client got {sent} bytes out before the server closed");
        assert!(
            refused_after < Duration::from_secs(5),
            "refused after {refused_after:?}"
        );
    });
}

fn http_head_in_small_pieces_just_under_the_limit(kind: BackendKind) {
    with_server(kind, |addr| {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        // Long fields: fewer than the 100 a head may have.
        let field = format!("X-Filler: {}\r\n", "0123456789abcdef".repeat(6));
        while head.len() < 8 * 1024 - 128 {
            head.extend_from_slice(field.as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert!(head.len() <= 8 * 1024, "{}", head.len());
        let mut c = Client::connect(addr);
        let started = Instant::now();
        c.send_in_pieces(&head, 3);
        c.expect_hello();
        // And again on the same connection, behind a complete request.
        let mut two = GET.to_vec();
        two.extend_from_slice(&head);
        c.send_in_pieces(&two, 5);
        c.expect_hello();
        c.expect_hello();
        let took = started.elapsed();
        eprintln!(
            "two {}-byte heads in 3- and 5-byte writes answered in {took:?}",
            head.len()
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        c.expect_quiet();
    });
}

contract_tests! {
    http_plain_get,
    http_keep_alive,
    http_pipelined_requests_in_one_write,
    http_request_in_single_bytes,
    http_content_length_body_is_not_a_request,
    http_chunked_body_is_not_a_request,
    http_bad_bodies_are_refused,
    http_garbage_is_refused,
    http_oversized_head_is_refused,
    http_connection_close_is_honoured,
    http_1_0_closes_unless_kept_alive,
    http_huge_head_in_pieces_is_refused_quickly,
    http_head_in_small_pieces_just_under_the_limit,
}

// -------------------------------------------------------- the parser alone

/// A stream of requests that exercises every state of the parser.
fn request_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"\r\n");
    s.extend_from_slice(GET);
    s.extend_from_slice(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /");
    s.extend_from_slice(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.extend_from_slice(b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nGET \r\n0\r\nT: 1\r\n\r\n");
    s.extend_from_slice(b"GET / HTTP/1.1\nHost: bare-lf\n\n");
    s.extend_from_slice(b"PUT /c HTTP/1.1\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n");
    s.extend_from_slice(b"POST /d HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok");
    s.extend_from_slice(b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n");
    s.extend_from_slice(b"GET /ignored HTTP/1.1\r\n\r\n");
    s
}

/// Feeds `input` in the pieces that `cuts` (sorted offsets) make; returns
/// the answers and whether the parser wants the connection closed.
fn feed_in_pieces(input: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let mut p = Parser::new();
    let mut out = Vec::new();
    let mut close = false;
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        close = p.feed(&input[from..to], &mut out);
        from = to;
    }
    (out, close)
}

#[test]
fn parser_answers_the_same_however_the_input_is_split() {
    let input = request_stream();
    let (whole, close) = feed_in_pieces(&input, &[]);
    assert!(close);
    let text = String::from_utf8_lossy(&whole);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 8, "{text}");
    assert_eq!(text.matches("HTTP/1.1 100 Continue").count(), 1, "{text}");
    assert_eq!(text.matches("Hello, World!").count(), 7, "{text}");
    assert!(text.ends_with("Connection: close\r\n\r\nHello, World!"), "{text}");
    for cut in 0..=input.len() {
        assert_eq!(feed_in_pieces(&input, &[cut]), (whole.clone(), true), "cut at {cut}");
    }
    for size in 1..8 {
        let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
        assert_eq!(feed_in_pieces(&input, &cuts), (whole.clone(), true), "pieces of {size}");
    }
}

#[test]
fn parser_refuses_a_head_over_the_limit_in_any_pieces() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    let field = format!("X: {}\r\n", "y".repeat(200));
    while head.len() <= server::MAX_HEAD {
        head.extend_from_slice(field.as_bytes());
    }
    for size in [1, 7, 100, 4096, head.len()] {
        let cuts: Vec<usize> = (size..head.len()).step_by(size).collect();
        let (out, close) = feed_in_pieces(&head, &cuts);
        assert!(close, "pieces of {size}");
        assert!(out.starts_with(b"HTTP/1.1 431 "), "pieces of {size}");
    }
    // Exactly at the limit is fine.
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(server::MAX_HEAD - 4, b'y');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), server::MAX_HEAD);
    let (out, close) = feed_in_pieces(&head, &[100, 5000]);
    assert!(!close);
    assert!(out.starts_with(b"HTTP/1.1 200 OK"));
}
