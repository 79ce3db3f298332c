//! The `hyper_server` example's HTTP/1.1 service on every CPU: one thread
//! per CPU (`std::thread::available_parallelism`), each with its own
//! `Driver` and `rt::Executor` (feature `hyper`).
//!
//! ```sh
//! cargo run --release -p eventcore-driver --features hyper --example hyper_all_cores -- 127.0.0.1:8080 epoll
//! wrk -t2 -c256 -d5s http://127.0.0.1:8080/plaintext
//! ```
//!
//! Arguments: `ADDR [BACKEND]`, as `hyper_server` takes them (port 0 picks
//! a free port). The server prints `listening on ADDR` once every worker
//! accepts, and serves until it is killed. The service is the one of
//! `hyper_server` (its `handle`): any `GET` is answered `200 OK`,
//! `Hello, World!`; HTTP/1.1 with keep-alive and pipelining, a 10 s
//! header-read timeout.
//!
//! How connections reach the workers:
//!
//! - **Where the OS has `SO_REUSEPORT`** (Linux, the BSDs): every worker
//!   binds a listener of its own to the same address
//!   ([`ListenOptions::reuse_port`]); the kernel spreads incoming
//!   connections over the listeners, and each worker accepts and serves its
//!   share without talking to the others. The first worker binds first, so
//!   that port 0 becomes one port that the others then bind too.
//! - **Elsewhere (Windows)** there is no load-balancing `SO_REUSEPORT`
//!   (binding reports `Status::NotSupported`): the main thread accepts on
//!   one blocking `std::net::TcpListener` and hands each connection, in
//!   turn, to a worker through that worker's [`rt::Spawner`]; the worker
//!   adopts the socket into its own driver (`TcpStream::adopt`) and serves
//!   it. The main thread's accept loop is the one shared step.
//!
//! [`run`] does all of it; the benchmark (`crates/eventcore-bench`, `--http`)
//! runs it against hyper on tokio's multi-thread runtime.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use eventcore::rt::hyper::{HyperIo, HyperTimer};
use eventcore::rt::{self, Executor, TcpListener, TcpStream};
use eventcore::{BackendKind, Driver, ListenOptions, Status};

/// The `hyper_server` example: its `serve`, `handle` and `Options`.
#[path = "hyper_server.rs"]
#[allow(dead_code)]
pub mod server;

/// A boxed error that may cross threads.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal"));
    let backend = match args.iter().find(|a| a.parse::<SocketAddr>().is_err()) {
        Some(name) => *BackendKind::available()
            .iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| format!("no backend {name:?} here"))?,
        None => BackendKind::available()[0],
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    run(addr, backend, threads, |bound| println!("listening on {bound}"))
}

/// Serves on `addr` with `threads` workers, each a driver of `backend` and
/// an executor on a thread of its own. Calls `ready` with the bound address
/// once every worker accepts, then serves until the process ends (it
/// returns only if starting fails, or if every worker stopped).
pub fn run(
    addr: SocketAddr,
    backend: BackendKind,
    threads: usize,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let threads = threads.max(1);
    // The first worker's listener decides the port (for port 0) and whether
    // the OS spreads connections over several listeners.
    let (first, bound) = match spawn_listening_worker(0, addr, backend)? {
        Some(started) => started,
        None => return run_handing_over(addr, backend, threads, ready),
    };
    let mut workers = vec![first];
    for i in 1..threads {
        let (worker, _) = spawn_listening_worker(i, bound, backend)?.ok_or("SO_REUSEPORT went away")?;
        workers.push(worker);
    }
    ready(bound);
    for w in workers {
        w.join().map_err(|_| "a worker panicked")??;
    }
    Ok(())
}

type Worker = std::thread::JoinHandle<Result<(), Error>>;

/// Starts worker `i`, which binds its own `SO_REUSEPORT` listener to `addr`
/// and serves what it accepts. `None` if the OS has no `SO_REUSEPORT`.
fn spawn_listening_worker(
    i: usize,
    addr: SocketAddr,
    backend: BackendKind,
) -> Result<Option<(Worker, SocketAddr)>, Error> {
    let (tx, rx) = mpsc::channel::<Result<Option<SocketAddr>, Error>>();
    let worker =
        std::thread::Builder::new()
            .name(format!("hyper-worker-{i}"))
            .spawn(move || -> Result<(), Error> {
                let mut ex = match Driver::with_backend(backend) {
                    Ok(d) => Executor::new(d),
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return Ok(());
                    }
                };
                ex.block_on(async move {
                    let options = ListenOptions {
                        reuse_port: true,
                        backlog: 1024,
                        ..ListenOptions::default()
                    };
                    let listener = match TcpListener::bind_with(addr, options) {
                        Ok(l) => l,
                        Err(e) if e.status() == Status::NotSupported => {
                            let _ = tx.send(Ok(None));
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let bound = listener.local_addr().map(|a| a.as_inet());
                    let _ = match bound {
                        Ok(Some(a)) => tx.send(Ok(Some(a))),
                        Ok(None) => tx.send(Err("not an IP address".into())),
                        Err(e) => tx.send(Err(e.into())),
                    };
                    server::serve(listener, server::Options::default()).await;
                });
                Ok(())
            })?;
    match rx.recv().map_err(|_| "a worker ended before listening")? {
        Ok(Some(bound)) => Ok(Some((worker, bound))),
        Ok(None) => {
            worker.join().map_err(|_| "a worker panicked")??;
            Ok(None)
        }
        Err(e) => {
            let _ = worker.join();
            Err(e)
        }
    }
}

/// Without `SO_REUSEPORT`: workers that serve what they are handed, and an
/// accept loop on this thread that hands connections out in turn.
fn run_handing_over(
    addr: SocketAddr,
    backend: BackendKind,
    threads: usize,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let mut spawners = Vec::with_capacity(threads);
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let (tx, rx) = mpsc::channel::<Result<rt::Spawner, Error>>();
        workers.push(
            std::thread::Builder::new()
                .name(format!("hyper-worker-{i}"))
                .spawn(move || {
                    let mut ex = match Driver::with_backend(backend) {
                        Ok(d) => Executor::new(d),
                        Err(e) => {
                            let _ = tx.send(Err(e.into()));
                            return;
                        }
                    };
                    ex.block_on(async move {
                        // Nobody notifies it: the executor runs (and serves
                        // what its spawner sends) until the process ends.
                        let forever = rt::Notify::new();
                        let _ = tx.send(Ok(rt::spawner()));
                        forever.notified().await;
                    });
                })?,
        );
        spawners.push(rx.recv().map_err(|_| "a worker ended before starting")??);
    }
    let listener = std::net::TcpListener::bind(addr)?;
    ready(listener.local_addr()?);
    let mut next = 0;
    loop {
        let conn = match listener.accept() {
            Ok((conn, _peer)) => conn,
            // A connection aborted before it was accepted, out of
            // descriptors for a moment: go on.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        let handed = spawners[next].spawn_with(move || async move {
            if let Ok(conn) = TcpStream::adopt(conn) {
                serve_connection(conn).await;
            }
        });
        if handed.is_err() {
            // That worker's executor is gone; so is the point of going on.
            break;
        }
        next = (next + 1) % spawners.len();
    }
    drop(spawners);
    for w in workers {
        let _ = w.join();
    }
    Err("a worker stopped".into())
}

/// Serves one connection as `server::serve` does (HTTP/1.1, keep-alive,
/// the header-read timeout), until the client goes away.
async fn serve_connection(conn: TcpStream) {
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(HyperTimer)
        .header_read_timeout(server::Options::default().header_read_timeout)
        .serve_connection(HyperIo::new(conn), hyper::service::service_fn(server::handle))
        .await;
}
