//! The async layer's cost over the callback API: the same ping-pong (a
//! 64-byte message bounced over one loopback TCP connection, client and
//! server on one thread) once with driver callbacks and once with tasks and
//! owned-buffer futures: `async_pingpong [round_trips]` (default 20,000).
//! Run it with `--release`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::rt::{self, Executor, Listener, TcpStream};
use eventcore::{Driver, ExitReason, IoMode, ListenOptions, StreamSocket};

const MSG: usize = 64;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The server side with callbacks: read at least one byte, echo it, repeat.
fn echo(drv: &mut Driver, conn: StreamSocket, buf: Vec<u8>) {
    drv.sockets().read(conn, buf, IoMode::Once, move |drv, conn, r, buf| {
        if r.is_err() {
            drv.release_ref(conn).unwrap();
            return;
        }
        // The buffer holds what arrived: echo it, then read again into
        // the emptied buffer.
        drv.sockets()
            .write(conn, buf, IoMode::All, move |drv, conn, _, mut buf| {
                buf.clear();
                echo(drv, conn, buf);
            });
    });
}

/// The client side with callbacks: send a message, read its echo whole, repeat.
fn ping(drv: &mut Driver, conn: StreamSocket, buf: Vec<u8>, left: Rc<Cell<u32>>) {
    if left.get() == 0 {
        drv.release_ref(conn).unwrap();
        drv.exit();
        return;
    }
    left.set(left.get() - 1);
    drv.sockets()
        .write(conn, buf, IoMode::All, move |drv, conn, r, mut buf| {
            r.expect("write");
            // Read the echo whole into the emptied buffer (its capacity).
            buf.clear();
            drv.sockets().read(conn, buf, IoMode::All, move |drv, conn, r, buf| {
                r.expect("read");
                ping(drv, conn, buf, left);
            });
        });
}

fn callbacks(round_trips: u32) -> eventcore::Result<Duration> {
    let mut drv = Driver::new()?;
    let listener = drv
        .sockets()
        .listen(loopback(), ListenOptions::default(), |drv, _, accepted| {
            let (conn, _) = accepted.expect("accept");
            drv.sockets().set_no_delay(conn, true).unwrap();
            echo(drv, conn, Vec::with_capacity(MSG));
        })?;
    let addr = drv.sockets().local_address(listener)?;
    let left = Rc::new(Cell::new(round_trips));
    let start = Rc::new(Cell::new(Instant::now()));
    let s = start.clone();
    drv.sockets().connect(addr, None, move |drv, conn, r| {
        r.expect("connect");
        drv.sockets().set_no_delay(conn, true).unwrap();
        s.set(Instant::now());
        ping(drv, conn, vec![1; MSG], left);
    })?;
    while drv.process_events(None)? != ExitReason::Exited {}
    let took = start.get().elapsed();
    drv.release_ref(listener)?;
    // The server side sees end of stream and lets go of its connection.
    while drv.process_events(Some(Duration::from_secs(1)))? == ExitReason::Idle {}
    Ok(took)
}

fn futures(round_trips: u32) -> eventcore::Result<Duration> {
    let mut ex = Executor::new(Driver::new()?);
    ex.block_on(async move {
        let listener = Listener::bind(loopback())?;
        let addr = listener.local_addr()?;
        let server = rt::spawn(async move {
            let (conn, _) = listener.accept().await.expect("accept");
            conn.set_nodelay(true).unwrap();
            let mut buf = Vec::with_capacity(MSG);
            loop {
                let (r, b) = conn.read_owned(buf).await;
                if r.is_err() {
                    return;
                }
                let (_, mut b) = conn.write_all_owned(b).await;
                b.clear();
                buf = b;
            }
        });
        let conn = TcpStream::connect(addr).await?;
        conn.set_nodelay(true)?;
        let start = Instant::now();
        let mut buf = vec![1; MSG];
        for _ in 0..round_trips {
            let (r, mut b) = conn.write_all_owned(buf).await;
            r?;
            b.clear();
            let (r, b) = conn.read_exact_owned(b).await;
            r?;
            buf = b;
        }
        let took = start.elapsed();
        drop(conn);
        server.await.expect("the server task");
        Ok(took)
    })
}

fn main() -> eventcore::Result<()> {
    let round_trips: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of round trips"))
        .unwrap_or(20_000);
    // Warm up both, then measure each three times and keep the best.
    callbacks(1_000)?;
    futures(1_000)?;
    let best = |f: fn(u32) -> eventcore::Result<Duration>| -> eventcore::Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            best = best.min(f(round_trips)?);
        }
        Ok(best)
    };
    let cb = best(callbacks)?;
    let fut = best(futures)?;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(round_trips);
    println!("{round_trips} round trips of {MSG} bytes over loopback TCP, best of 3:");
    println!("  callbacks: {:>8.2} µs per round trip", per(cb));
    println!("  futures:   {:>8.2} µs per round trip", per(fut));
    println!(
        "  async overhead: {:+.1} %",
        (fut.as_secs_f64() / cb.as_secs_f64() - 1.0) * 100.0
    );
    Ok(())
}
