//! The hyper servers of `--http`: hyper 1.x's HTTP/1.1 server with the
//! service of the `hyper_server` example (`handle`: any `GET` → `200 OK`,
//! `Hello, World!`; a 10 s header-read timeout), on eventcore and on tokio.
//! Each is a child process started as `eventcore-bench serve-hyper… ADDR`.
//!
//! - `serve-hyper BACKEND ADDR`: one eventcore driver and `rt` executor, the
//!   `hyper_server` example's `serve` (`rt::hyper::HyperIo`, `HyperTimer`).
//! - `serve-hyper-cores BACKEND ADDR`: the `hyper_all_cores` example's `run`,
//!   one driver and executor per CPU, each with its own `SO_REUSEPORT`
//!   listener.
//! - `serve-hyper-tokio ADDR`: the same service on tokio's current-thread
//!   runtime, a task per connection (`hyper_util::rt::TokioIo`,
//!   `TokioTimer`).
//! - `serve-hyper-tokio-mt ADDR`: the same on tokio's multi-thread runtime
//!   (a worker per CPU, tokio's default).

use std::net::SocketAddr;
use std::process::ExitCode;

use eventcore::rt::{Executor, TcpListener};
use eventcore::ListenOptions;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::hyper_all_cores::server;

fn parse_addr(arg: Option<&String>) -> SocketAddr {
    arg.and_then(|a| a.parse().ok())
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal"))
}

fn exit(what: &str, r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `eventcore-bench serve-hyper BACKEND ADDR`: hyper on one eventcore
/// executor.
pub fn serve_eventcore(args: &[String]) -> ExitCode {
    let r = (|| -> Result<(), String> {
        let mut ex = Executor::new(crate::http::driver_named(args.first())?);
        let addr = parse_addr(args.get(1));
        ex.block_on(async move {
            let listener = TcpListener::bind_with(
                addr,
                ListenOptions {
                    backlog: 1024,
                    ..ListenOptions::default()
                },
            )
            .map_err(|e| e.to_string())?;
            println!("listening on {addr}");
            server::serve(listener, server::Options::default()).await;
            Ok(())
        })
    })();
    exit("serve-hyper", r)
}

/// `eventcore-bench serve-hyper-cores BACKEND ADDR`: the `hyper_all_cores`
/// example, an executor per CPU.
pub fn serve_eventcore_cores(args: &[String]) -> ExitCode {
    let r = (|| -> Result<(), String> {
        let kind = crate::http::backend_named(args.first())?;
        let addr = parse_addr(args.get(1));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        crate::hyper_all_cores::run(addr, kind, threads, |bound| println!("listening on {bound}"))
            .map_err(|e| e.to_string())
    })();
    exit("serve-hyper-cores", r)
}

/// `eventcore-bench serve-hyper-tokio ADDR` (current-thread runtime) and
/// `serve-hyper-tokio-mt ADDR` (multi-thread runtime).
pub fn serve_tokio(addr: Option<&String>, multi_thread: bool) -> ExitCode {
    let addr = parse_addr(addr);
    let r = (|| -> Result<(), String> {
        let rt = if multi_thread {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
            println!("listening on {addr}");
            loop {
                let conn = match listener.accept().await {
                    Ok((conn, _peer)) => conn,
                    // Out of descriptors, an aborted connection: go on.
                    Err(_) => continue,
                };
                let _ = conn.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(server::Options::default().header_read_timeout)
                        .serve_connection(TokioIo::new(conn), hyper::service::service_fn(server::handle))
                        .await;
                });
            }
        })
    })();
    exit(
        if multi_thread {
            "serve-hyper-tokio-mt"
        } else {
            "serve-hyper-tokio"
        },
        r,
    )
}
