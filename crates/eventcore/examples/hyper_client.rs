//! A hyper 1.x client on the async layer (feature `hyper`): a few requests
//! over one kept-alive connection, then the same over HTTP/2 if asked.
//!
//! ```sh
//! cargo run -p eventcore-driver --features hyper --example hyper_client -- 127.0.0.1:8080 io_uring
//! cargo run -p eventcore-driver --features hyper --example hyper_client
//! ```
//!
//! Arguments: `[ADDR] [BACKEND] [--http2]`. With an `ADDR` it talks to the
//! server there (`hyper_server`, or any HTTP server with a `/echo` that
//! echoes POSTed bodies); without one it starts `hyper_server`'s
//! [`serve`](server::serve) on 127.0.0.1 in the same executor first.
//! `--http2` speaks HTTP/2 with prior knowledge (the server must too:
//! `hyper_server ... --http2`).
//!
//! It sends `GET /plaintext` three times on one connection, then `POST
//! /echo` with a 1 MiB body, and checks and prints each answer.

#[path = "hyper_server.rs"]
#[allow(dead_code)]
mod server;

use std::net::SocketAddr;

use bytes::Bytes;
use eventcore::rt::hyper::{HyperExecutor, HyperIo, HyperTimer};
use eventcore::rt::{self, Executor, TcpListener, TcpStream};
use eventcore::{BackendKind, Driver};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: Option<SocketAddr> = args.iter().find_map(|a| a.parse().ok());
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
        let addr = match addr {
            Some(addr) => addr,
            None => {
                let listener = TcpListener::bind("127.0.0.1:0")?;
                let local = listener.local_addr()?.as_inet().expect("an IP address");
                let options = server::Options {
                    http2,
                    ..server::Options::default()
                };
                rt::spawn(server::serve(listener, options));
                println!("started hyper_server's serve on {local}");
                local
            }
        };
        run(addr, http2).await
    })
}

/// The requests, over one connection to `addr`.
async fn run(addr: SocketAddr, http2: bool) -> Result<(), Error> {
    let io = HyperIo::new(TcpStream::connect(addr).await?);
    let gets = 3;
    let echo: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    if http2 {
        let (mut sender, conn) = hyper::client::conn::http2::Builder::new(HyperExecutor)
            .timer(HyperTimer)
            .handshake(io)
            .await?;
        rt::spawn(conn);
        for _ in 0..gets {
            exchange(&mut sender, get(addr)).await?;
        }
        let body = exchange(&mut sender, post(addr, echo.clone())).await?;
        assert!(body == echo, "the echo differs");
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        rt::spawn(conn);
        for _ in 0..gets {
            sender.ready().await?;
            exchange(&mut sender, get(addr)).await?;
        }
        sender.ready().await?;
        let body = exchange(&mut sender, post(addr, echo.clone())).await?;
        assert!(body == echo, "the echo differs");
    }
    println!("done: {gets} GETs and a {} byte echo over one connection", echo.len());
    Ok(())
}

fn get(addr: SocketAddr) -> Request<Full<Bytes>> {
    Request::get("/plaintext")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

fn post(addr: SocketAddr, body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::post("/echo")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

/// What both protocols' senders can do here.
trait Send1 {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> hyper::Result<hyper::Response<hyper::body::Incoming>>;
}

impl Send1 for hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        self.send_request(req).await
    }
}

impl Send1 for hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        self.send_request(req).await
    }
}

/// Sends `req`, checks for `200 OK`, prints the answer and returns its body.
async fn exchange(sender: &mut impl Send1, req: Request<Full<Bytes>>) -> Result<Vec<u8>, Error> {
    let what = format!("{} {}", req.method(), req.uri());
    let res = sender.send(req).await?;
    let status = res.status();
    let version = res.version();
    let body = res.into_body().collect().await?.to_bytes().to_vec();
    if status != StatusCode::OK {
        return Err(format!("{what}: {status}").into());
    }
    if body.len() <= 64 {
        println!("{what}: {status} {version:?} {:?}", String::from_utf8_lossy(&body));
    } else {
        println!("{what}: {status} {version:?} {} bytes", body.len());
    }
    Ok(body)
}
