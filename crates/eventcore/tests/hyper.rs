//! hyper 1.x on the async layer (feature `hyper`), on every backend: the
//! `hyper_server` example's server with hyper's own client (HTTP/1.1
//! keep-alive, 100 parallel connections, chunked and 4 MiB bodies, HTTP/2
//! with prior knowledge), raw clients for pipelining and for the header-read
//! timeout, Unix-domain streams (a path and a pair), and `HyperTimer`'s sleeps: they release
//! their driver timer when dropped, can be reset, and are `Send + Sync` for
//! real (polled from another thread they complete; first polled where no
//! executor runs, they panic with a message).

mod util;

#[path = "../examples/hyper_server.rs"]
#[allow(dead_code)]
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventcore::rt::hyper::{HyperExecutor, HyperIo, HyperSleep, HyperTimer};
use eventcore::rt::{self, TcpListener, TcpStream};
use eventcore::BackendKind;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::rt::Timer;
use hyper::{Request, Response, StatusCode};
use util::rt::{assert_settled, executor, LIMIT};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Starts the example's server on 127.0.0.1 (a port of its own) as a task.
fn start_server(options: server::Options) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().as_inet().unwrap();
    rt::spawn(server::serve(listener, options));
    addr
}

/// An HTTP/1.1 client connection to `addr` (its driving task spawned).
async fn connect(addr: SocketAddr) -> Sender {
    let io = HyperIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    rt::spawn(conn);
    sender
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The status and the whole body.
async fn collect(res: Response<hyper::body::Incoming>) -> (StatusCode, Vec<u8>) {
    let status = res.status();
    let body = res.into_body().collect().await.expect("the body").to_bytes();
    (status, body.to_vec())
}

async fn plaintext(sender: &mut Sender) {
    sender.ready().await.expect("ready");
    let res = sender.send_request(get("/plaintext")).await.expect("a response");
    assert!(res.headers().contains_key("date"), "{:?}", res.headers());
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(collect(res).await, (StatusCode::OK, server::BODY.to_vec()));
}

/// Several requests, one after the other, on one connection; the server
/// keeps it open.
fn keep_alive(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addr = start_server(server::Options::default());
        rt::timeout(LIMIT, async {
            let mut sender = connect(addr).await;
            for _ in 0..20 {
                plaintext(&mut sender).await;
            }
            assert!(!sender.is_closed());
            // Other methods and targets.
            let req = Request::put("/echo").body(Full::new(Bytes::new())).unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(collect(res).await.0, StatusCode::METHOD_NOT_ALLOWED);
            sender.ready().await.unwrap();
            let req = Request::delete("/x").body(Full::new(Bytes::new())).unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(collect(res).await.0, StatusCode::NOT_FOUND);
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// Three requests in one write: three answers, in order, on the one
/// connection, which closes after the last (it asks to).
fn pipelined_requests(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addr = start_server(server::Options::default());
        rt::timeout(LIMIT, async {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let one = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
            let echo = "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nabcde";
            let last = "GET /last HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            let all = format!("{one}{echo}{last}");
            AsyncWriteExt::write_all(&mut conn, all.as_bytes()).await.unwrap();
            AsyncWriteExt::flush(&mut conn).await.unwrap();
            let mut answers = Vec::new();
            AsyncReadExt::read_to_end(&mut conn, &mut answers).await.unwrap();
            let text = String::from_utf8(answers).unwrap();
            assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
            let first = text.find("Hello, World!").expect("the first answer");
            let second = text.find("abcde").expect("the echo");
            let third = text.rfind("Hello, World!").unwrap();
            assert!(first < second && second < third, "{text}");
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// 100 connections at once, each with its own request.
fn hundred_parallel_connections(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addr = start_server(server::Options::default());
        rt::timeout(LIMIT, async {
            let clients: Vec<_> = (0..100)
                .map(|_| {
                    rt::spawn(async move {
                        let mut sender = connect(addr).await;
                        plaintext(&mut sender).await;
                        sender
                    })
                })
                .collect();
            let mut senders = Vec::new();
            for c in clients {
                senders.push(c.await.expect("a client"));
            }
            // All 100 were open at the same time.
            assert!(senders.iter().all(|s| !s.is_closed()));
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// A body without a known length goes out chunked and comes back chunked.
fn chunked_body_echo(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addr = start_server(server::Options::default());
        rt::timeout(LIMIT, async {
            let io = HyperIo::new(TcpStream::connect(addr).await.unwrap());
            type Chunks =
                StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>>;
            let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Chunks>(io).await.unwrap();
            rt::spawn(conn);
            let pieces: Vec<Vec<u8>> = (0..50).map(|i| vec![b'a' + (i % 26) as u8; 1000 + i * 37]).collect();
            let expected: Vec<u8> = pieces.concat();
            let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
                pieces.into_iter().map(|p| Ok(Frame::data(Bytes::from(p)))).collect();
            let req = Request::post("/echo")
                .header("host", "127.0.0.1")
                .body(StreamBody::new(futures_util::stream::iter(frames)))
                .unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(res.headers()["transfer-encoding"], "chunked");
            assert_eq!(collect(res).await, (StatusCode::OK, expected));
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// A 4 MiB body (with its length) echoed back whole.
fn large_body_echo(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addr = start_server(server::Options::default());
        rt::timeout(LIMIT, async {
            let mut sender = connect(addr).await;
            let body: Vec<u8> = (0..4 << 20)
                .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            for _ in 0..2 {
                sender.ready().await.unwrap();
                let req = Request::post("/echo")
                    .header("host", "127.0.0.1")
                    .body(Full::new(Bytes::from(body.clone())))
                    .unwrap();
                let res = sender.send_request(req).await.unwrap();
                let (status, echo) = collect(res).await;
                assert_eq!(status, StatusCode::OK);
                assert!(echo == body, "the echo differs ({} bytes)", echo.len());
            }
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// A client that does not finish its request head within the server's
/// `header_read_timeout` is disconnected (hyper needs the timer for it);
/// one that is quick enough is served.
fn header_read_timeout_closes_slow_client(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let timeout = Duration::from_millis(400);
        let addr = start_server(server::Options {
            header_read_timeout: timeout,
            ..server::Options::default()
        });
        rt::timeout(LIMIT, async {
            let mut slow = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            AsyncWriteExt::write_all(&mut slow, b"GET /plaintext HTTP/1.1\r\nHost:")
                .await
                .unwrap();
            AsyncWriteExt::flush(&mut slow).await.unwrap();
            // The server answers (408) or not, then closes: end of stream or a reset.
            let mut rest = Vec::new();
            let _ = AsyncReadExt::read_to_end(&mut slow, &mut rest).await;
            let took = started.elapsed();
            assert!(took >= timeout - Duration::from_millis(20), "closed after {took:?}");
            assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "{rest:?}");
            // Requests within the limit, with idle gaps well under it.
            let mut sender = connect(addr).await;
            for _ in 0..3 {
                plaintext(&mut sender).await;
                rt::sleep(timeout / 10).await;
            }
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// HTTP/2 with prior knowledge: many concurrent requests (streams) on one
/// connection, and an echo; the server's streams run through
/// `HyperExecutor`.
fn http2_prior_knowledge(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let addr = start_server(server::Options {
            http2: true,
            ..server::Options::default()
        });
        rt::timeout(LIMIT, async {
            let io = HyperIo::new(TcpStream::connect(addr).await.unwrap());
            let (sender, conn) = hyper::client::conn::http2::Builder::new(HyperExecutor)
                .timer(HyperTimer)
                .handshake::<_, Full<Bytes>>(io)
                .await
                .expect("handshake");
            rt::spawn(conn);
            let streams: Vec<_> = (0..20)
                .map(|_| {
                    let mut sender = sender.clone();
                    rt::spawn(async move {
                        let res = sender.send_request(get("/plaintext")).await.expect("a response");
                        assert_eq!(res.version(), hyper::Version::HTTP_2);
                        collect(res).await
                    })
                })
                .collect();
            for s in streams {
                assert_eq!(s.await.unwrap(), (StatusCode::OK, server::BODY.to_vec()));
            }
            let mut sender = sender;
            let body = vec![7u8; 300_000];
            let req = Request::post("/echo")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(collect(res).await, (StatusCode::OK, body));
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// Serves one HTTP/1.1 connection on `conn` (a task), and asks it for the
/// plaintext answer through `client`.
async fn one_exchange(conn: rt::UnixStream, client: rt::UnixStream) {
    rt::spawn(async move {
        let service = hyper::service::service_fn(server::handle);
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(HyperTimer)
            .serve_connection(HyperIo::new(conn), service)
            .await;
    });
    let (mut sender, conn) = hyper::client::conn::http1::handshake(HyperIo::new(client))
        .await
        .unwrap();
    rt::spawn(conn);
    plaintext(&mut sender).await;
}

/// `HyperIo` over Unix-domain streams: a listener on a path (Linux, and
/// Windows 10 1803+; Wine has no AF_UNIX and skips), and a socket pair
/// (Unix).
fn unix_streams(kind: BackendKind) {
    let dir = util::TempDir::new("hyper-unix");
    let path = dir.path().join("http.sock");
    let mut ex = executor(kind);
    ex.block_on(async {
        rt::timeout(LIMIT, async {
            match rt::UnixListener::bind(path.as_path()) {
                Ok(listener) => {
                    let (client, accepted) =
                        futures_util::future::join(rt::UnixStream::connect(path.clone()), listener.accept()).await;
                    one_exchange(accepted.expect("accept").0, client.expect("connect")).await;
                }
                Err(e)
                    if util::under_wine()
                        && matches!(
                            e.status(),
                            eventcore::Status::NotSupported | eventcore::Status::InvalidArgument
                        ) =>
                {
                    eprintln!("SKIPPED unix_streams (path) under Wine: {e}");
                }
                Err(e) => panic!("listen on a Unix socket path: {e}"),
            }
            #[cfg(unix)]
            {
                let (a, b) = rt::UnixStream::pair().unwrap();
                one_exchange(a, b).await;
            }
        })
        .await
        .expect("in time");
    });
    drop(ex);
}

/// Driver timers open now.
fn timers() -> usize {
    rt::with_driver(|d| d.leak_report().timers)
}

/// Polls `f` once.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Flag::default()));
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

/// A waker that records its wake-up and unparks a thread.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    thread: Option<std::thread::Thread>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(t) = &self.thread {
            t.unpark();
        }
    }
}

/// Dropped sleeps leave no driver timer behind, whether they were polled
/// (armed) or not; a served connection's header-read timeouts do not pile
/// up over many requests.
fn dropped_sleeps_release_their_timers(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let before = timers();
        let mut sleeps: Vec<_> = (0..1000).map(|_| HyperTimer.sleep(Duration::from_secs(30))).collect();
        assert_eq!(timers(), before, "a sleep takes no timer before its first poll");
        for s in &mut sleeps {
            assert!(poll_once(s).is_pending());
        }
        assert_eq!(timers(), before + 1000);
        drop(sleeps);
        assert_eq!(timers(), before, "dropping releases at once");
        // Through hyper: 200 requests on one connection, each with its
        // header-read timeout, leave at most the connection's one timer.
        let addr = start_server(server::Options {
            header_read_timeout: Duration::from_secs(30),
            ..server::Options::default()
        });
        let mut sender = connect(addr).await;
        for _ in 0..200 {
            plaintext(&mut sender).await;
        }
        // The request's own timeout and the one waiting for the next head.
        let now = timers();
        assert!(
            now <= before + 2,
            "{now} timers open after 200 requests ({before} before)"
        );
    });
    drop(ex);
}

/// A sleep completes at its deadline, releases its timer then, and can be
/// reset (in place through `Timer::reset`) to wait again.
fn sleep_completes_and_resets(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let before = timers();
        let started = Instant::now();
        let mut sleep = HyperTimer.sleep(Duration::from_millis(20));
        rt::timeout(LIMIT, sleep.as_mut()).await.expect("in time");
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(timers(), before, "a completed sleep holds no timer");
        // Reset after completion: waits again.
        HyperTimer.reset(&mut sleep, Instant::now() + Duration::from_millis(20));
        assert!(poll_once(&mut sleep).is_pending());
        rt::timeout(LIMIT, sleep.as_mut()).await.expect("in time");
        // Reset while armed, to later and to earlier.
        let mut s = HyperSleep::new(Duration::from_secs(30));
        assert!(poll_once(&mut s).is_pending());
        assert!(s.holds_timer());
        s.reset(Instant::now() + Duration::from_secs(60));
        assert!(poll_once(&mut s).is_pending());
        let started = Instant::now();
        s.reset(Instant::now() + Duration::from_millis(10));
        rt::timeout(LIMIT, &mut s).await.expect("in time");
        assert!(started.elapsed() >= Duration::from_millis(10));
        assert!(s.is_elapsed() && !s.holds_timer());
        // A deadline already past completes without a timer.
        let mut past = HyperSleep::until(Instant::now());
        assert!(poll_once(&mut past).is_ready());
        assert!(!past.holds_timer());
    });
    assert_settled(&mut ex);
}

/// A sleep armed on the executor's thread, then polled from another thread,
/// completes there when the executor's driver fires its timer; one dropped
/// on another thread gives its timer back through the driver's `Remote`.
fn sleep_polled_from_another_thread(kind: BackendKind) {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let mut ex = executor(kind);
    ex.block_on(async {
        let before = timers();
        let mut sleep = HyperSleep::new(Duration::from_millis(50));
        assert_send_sync(&sleep);
        assert!(poll_once(&mut sleep).is_pending());
        let mut dropped = HyperSleep::new(Duration::from_secs(30));
        assert!(poll_once(&mut dropped).is_pending());
        assert_eq!(timers(), before + 2);
        let thread = std::thread::spawn(move || {
            drop(dropped);
            let flag = Arc::new(Flag {
                woken: AtomicBool::new(false),
                thread: Some(std::thread::current()),
            });
            let waker = Waker::from(flag.clone());
            let deadline = Instant::now() + LIMIT;
            loop {
                if Pin::new(&mut sleep).poll(&mut Context::from_waker(&waker)).is_ready() {
                    break;
                }
                assert!(Instant::now() < deadline, "the sleep did not complete");
                std::thread::park_timeout(Duration::from_millis(100));
            }
            assert!(flag.woken.load(Ordering::Acquire), "completed without a wake-up");
            // Completed off-thread: its timer goes back through the Remote.
            drop(sleep);
        });
        util::rt::until("the other thread's sleep", || thread.is_finished()).await;
        thread.join().expect("the polling thread");
        util::rt::until("the timers given back", || timers() == before).await;
    });
    assert_settled(&mut ex);
}

/// The first poll of a sleep that needs a timer, on a thread without an
/// executor, panics with a message saying so (never undefined behaviour).
fn first_poll_without_executor_panics(kind: BackendKind) {
    let _ = kind;
    let thread = std::thread::spawn(|| {
        let mut sleep = HyperSleep::new(Duration::from_secs(1));
        poll_once(&mut sleep).is_pending()
    });
    let message = panic_message(thread.join().expect_err("a panic"));
    assert!(message.contains("without a running eventcore executor"), "{message}");
    // An elapsed deadline needs no timer: fine anywhere.
    let mut past = HyperSleep::until(Instant::now());
    assert!(poll_once(&mut past).is_ready());
}

/// A sleep polled after the executor that held its timer was dropped (and
/// its driver with it) panics with a message instead of waiting forever.
fn sleep_outliving_its_executor_panics(kind: BackendKind) {
    let mut ex = executor(kind);
    let mut sleep = HyperSleep::new(Duration::from_secs(30));
    ex.block_on(async {
        assert!(poll_once(&mut sleep).is_pending());
    });
    drop(ex);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(&mut sleep))).expect_err("a panic");
    let message = panic_message(panic);
    assert!(message.contains("whose driver held its timer was dropped"), "{message}");
    // Dropping it now is fine: the driver is gone, nothing to release.
    drop(sleep);
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

contract_tests!(
    keep_alive,
    pipelined_requests,
    hundred_parallel_connections,
    chunked_body_echo,
    large_body_echo,
    header_read_timeout_closes_slow_client,
    http2_prior_knowledge,
    unix_streams,
    dropped_sleeps_release_their_timers,
    sleep_completes_and_resets,
    sleep_polled_from_another_thread,
    first_poll_without_executor_panics,
    sleep_outliving_its_executor_panics,
);
