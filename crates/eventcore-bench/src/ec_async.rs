//! `ping_pong` on eventcore's async layer (`eventcore::rt`): an executor per
//! thread, owned buffers passed through futures; and `copy`, the
//! `futures-io` traits of `rt`'s streams under `futures::io::copy`.

use std::net::SocketAddr;
use std::sync::mpsc;

use crate::ec::Setup;
use crate::harness::*;
use eventcore::rt::{Executor, Listener, TcpStream};

fn executor(setup: Setup) -> Result<Executor> {
    Ok(Executor::new(crate::ec::driver(setup)?))
}

/// `ping_pong` (and `ping_pong_pinned` under the name given).
pub fn ping_pong(kind: Setup, name: &'static str) -> RunFn {
    Box::new(move |ctx| {
        let (tx, rx) = mpsc::channel();
        let server = std::thread::spawn(move || -> Result<()> {
            let mut ex = executor(kind)?;
            ex.block_on(async move {
                let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
                let listener = match Listener::bind(any) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(err(e)));
                        return Ok(());
                    }
                };
                let addr = listener.local_addr().map_err(err)?;
                let _ = tx.send(addr.as_inet().ok_or_else(|| "not IP".to_string()));
                let (conn, _) = listener.accept().await.map_err(err)?;
                conn.set_nodelay(true).map_err(err)?;
                let mut buf = Vec::with_capacity(64);
                loop {
                    let (res, b) = conn.read_owned(buf).await;
                    if res.is_err() {
                        return Ok(());
                    }
                    let (res, mut b) = conn.write_all_owned(b).await;
                    if res.is_err() {
                        return Ok(());
                    }
                    b.clear();
                    buf = b;
                }
            })
        });
        let addr = rx.recv().map_err(err)??;
        let mut ex = executor(kind)?;
        let measured = ex.block_on(async move {
            let conn = TcpStream::connect(addr).await.map_err(err)?;
            conn.set_nodelay(true).map_err(err)?;
            let (mut msg, mut reply) = (PING.to_vec(), Vec::with_capacity(PING.len()));
            let w = Window::open();
            let mut n = 0u64;
            loop {
                let (res, m) = conn.write_all_owned(msg).await;
                res.map_err(err)?;
                let (res, mut r) = conn.read_exact_owned(reply).await;
                res.map_err(err)?;
                r.clear();
                (msg, reply) = (m, r);
                n += 1;
                if w.started().elapsed() >= ctx.duration {
                    return Ok::<_, String>(w.close(n as f64));
                }
            }
        })?;
        drop(ex);
        server.join().map_err(|_| "server thread panicked")??;
        Ok(Sample::rate(name, "rt/s", measured, 1.0))
    })
}

/// `copy`: 1 GiB over one loopback TCP connection with `futures::io::copy`
/// at both ends, each end an executor on a thread of its own. The sender
/// copies `futures::io::repeat(..).take(1 GiB)` into its `TcpStream`
/// (`AsyncWrite`, write-through: what the socket takes at once, else a
/// copy lent to the driver) and
/// closes it; the receiver copies its `TcpStream` (`AsyncRead`) into
/// `futures::io::sink()` until end of stream. The window is the receiver's,
/// from the accepted connection to the end of stream.
pub fn copy(kind: Setup) -> RunFn {
    use futures_util::io::{self, AsyncReadExt, AsyncWriteExt};
    Box::new(move |_ctx| {
        let (tx, rx) = mpsc::channel();
        let receiver = std::thread::spawn(move || -> Result<Measured> {
            let mut ex = executor(kind)?;
            ex.block_on(async move {
                let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
                let listener = match Listener::bind(any) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(err(e)));
                        return Err("bind failed".to_string());
                    }
                };
                let addr = listener.local_addr().map_err(err)?;
                let _ = tx.send(addr.as_inet().ok_or_else(|| "not IP".to_string()));
                let (mut conn, _) = listener.accept().await.map_err(err)?;
                let w = Window::open();
                let n = io::copy(&mut conn, &mut io::sink()).await.map_err(err)?;
                Ok(w.close(n as f64))
            })
        });
        let addr = rx.recv().map_err(err)??;
        let mut ex = executor(kind)?;
        ex.block_on(async move {
            let mut conn = TcpStream::connect(addr).await.map_err(err)?;
            io::copy(io::repeat(COPY_FILL).take(COPY_BYTES), &mut conn)
                .await
                .map_err(err)?;
            conn.close().await.map_err(err)
        })?;
        drop(ex);
        let measured = receiver.join().map_err(|_| "receiver thread panicked")??;
        copy_sample(measured)
    })
}
