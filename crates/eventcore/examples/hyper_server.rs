//! A hyper 1.x server on the async layer (feature `hyper`): TechEmpower's
//! "plaintext" answer plus an echo, one executor, one thread.
//!
//! ```sh
//! cargo run --release -p eventcore-driver --features hyper --example hyper_server -- 127.0.0.1:8080 epoll
//! wrk -t1 -c64 -d5s http://127.0.0.1:8080/plaintext
//! curl --data-binary @some-file http://127.0.0.1:8080/echo
//! ```
//!
//! Arguments: `ADDR [BACKEND] [--http2]`. `BACKEND` (`epoll`, `io_uring`,
//! `winapi`) picks the backend (the default is the platform's);
//! `--http2` serves HTTP/2 with prior knowledge (h2c, no upgrade) instead
//! of HTTP/1.1. The server prints `listening on ADDR` once it accepts.
//!
//! - Any `GET` (whatever its target) is answered `200 OK`,
//!   `Content-Type: text/plain`, body `Hello, World!`; hyper adds `Date`
//!   and `Content-Length`.
//! - `POST /echo` answers with the request's body, streamed back as it
//!   arrives (hyper's `Incoming` is itself a body), whatever its framing
//!   (`Content-Length` or chunked) and size.
//! - Anything else is `404 Not Found` (other targets) or `405 Method Not
//!   Allowed`.
//! - HTTP/1.1 keeps connections alive and answers pipelined requests in
//!   order; a client that has not sent a complete request head within
//!   `header_read_timeout` (10 s here; hyper enforces it only with a timer,
//!   [`HyperTimer`]) is disconnected.
//!
//! `tests/hyper.rs` runs [`serve`] on every backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use eventcore::rt::hyper::{HyperExecutor, HyperIo, HyperTimer};
use eventcore::rt::{self, Executor, TcpListener};
use eventcore::{BackendKind, Driver};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::{Method, Request, Response, StatusCode};

/// The plaintext body.
pub const BODY: &[u8] = b"Hello, World!";

/// How the server speaks.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// HTTP/2 with prior knowledge instead of HTTP/1.1.
    pub http2: bool,
    /// How long an HTTP/1.1 client may take to send a request head (the
    /// first one, and each one after a keep-alive answer).
    pub header_read_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            http2: false,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// A response body: the fixed text, or the request's own body.
pub type Body = Either<Full<Bytes>, Incoming>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal"));
    let http2 = args.iter().any(|a| a == "--http2");
    let backend = match args
        .iter()
        .find(|a| a.parse::<SocketAddr>().is_err() && !a.starts_with("--"))
    {
        Some(name) => *BackendKind::available()
            .iter()
            .find(|k| k.name() == name)
            .ok_or(eventcore::Error::new(eventcore::Status::NotSupported))?,
        None => BackendKind::available()[0],
    };
    let mut ex = Executor::new(Driver::with_backend(backend)?);
    ex.block_on(async move {
        let listener = TcpListener::bind_with(
            addr,
            eventcore::ListenOptions {
                backlog: 1024,
                ..eventcore::ListenOptions::default()
            },
        )?;
        println!("listening on {}", listener.local_addr()?);
        serve(
            listener,
            Options {
                http2,
                ..Options::default()
            },
        )
        .await;
        Ok::<(), eventcore::Error>(())
    })?;
    Ok(())
}

/// Accepts connections on `listener` and serves each in a task of its own,
/// until accepting fails for good.
pub async fn serve(listener: TcpListener, options: Options) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _peer)) => conn,
            // Out of descriptors, a connection aborted early: go on.
            Err(e) if is_transient(&e) => continue,
            Err(_) => return,
        };
        let _ = conn.set_nodelay(true);
        rt::spawn(async move {
            let io = HyperIo::new(conn);
            let service = hyper::service::service_fn(handle);
            // A connection's error (a client that went away, a timeout) ends
            // that connection only.
            let _ = if options.http2 {
                hyper::server::conn::http2::Builder::new(HyperExecutor)
                    .timer(HyperTimer)
                    .serve_connection(io, service)
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .timer(HyperTimer)
                    .header_read_timeout(options.header_read_timeout)
                    .serve_connection(io, service)
                    .await
            };
        });
    }
}

fn is_transient(e: &eventcore::Error) -> bool {
    use eventcore::Status;
    matches!(
        e.status(),
        Status::ResourceExhausted | Status::Disconnected | Status::NotAllowed
    )
}

/// Answers one request.
pub async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::POST, "/echo") => Response::new(Either::Right(req.into_body())),
        (&Method::GET, _) => {
            let mut res = Response::new(Either::Left(Full::new(Bytes::from_static(BODY))));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            res
        }
        (_, "/echo") => status(StatusCode::METHOD_NOT_ALLOWED),
        _ => status(StatusCode::NOT_FOUND),
    };
    let mut response = response;
    response
        .headers_mut()
        .insert(SERVER, HeaderValue::from_static("eventcore-hyper"));
    Ok(response)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::new())));
    *res.status_mut() = code;
    res
}
