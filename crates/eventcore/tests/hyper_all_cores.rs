//! The `hyper_all_cores` example (feature `hyper`) on every backend: two
//! workers on 127.0.0.1 (a port of their own), then plain HTTP/1.1 requests
//! over fresh connections, each answered by whichever worker accepted it.
//! The servers serve until the test process ends.

#![cfg(feature = "hyper")]

#[path = "../examples/hyper_all_cores.rs"]
#[allow(dead_code)]
mod all_cores;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use eventcore::BackendKind;

/// Starts the example's `run` on a thread of its own with `threads`
/// workers; returns the address it serves on.
fn start(kind: BackendKind, threads: usize) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let failed = tx.clone();
    std::thread::spawn(move || {
        if let Err(e) = all_cores::run(any, kind, threads, move |bound| tx.send(Ok(bound)).unwrap()) {
            let _ = failed.send(Err(e.to_string()));
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the server started in time")
        .expect("the server started")
}

/// One request on a connection of its own; the whole answer.
fn get(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET /plaintext HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn every_backend_serves_on_two_workers() {
    for &kind in BackendKind::available() {
        let addr = start(kind, 2);
        for _ in 0..8 {
            let answer = get(addr);
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{}: {answer:?}", kind.name());
            assert!(answer.ends_with("\r\n\r\nHello, World!"), "{}: {answer:?}", kind.name());
        }
    }
}
