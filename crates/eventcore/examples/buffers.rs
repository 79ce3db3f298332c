//! Owned buffers (`eventcore::buf`): `bytes::BytesMut` filled read by read
//! (each read appends into the spare capacity — nothing is zeroed — and the
//! length comes back set, as with `Vec::with_capacity`), and `bytes::Bytes`
//! written as it is, a header and a body in one vectored write.
//!
//! Run with `cargo run -p eventcore-driver --example buffers --features bytes`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use eventcore::{Driver, ExitReason, IoMode, ListenOptions};

fn main() -> eventcore::Result<()> {
    let mut drv = Driver::new()?;
    let listener = drv.sockets().listen(
        "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
        ListenOptions::default(),
        |drv, listener, accepted| {
            let (conn, _) = accepted.expect("accept");
            drv.release_ref(listener).unwrap();
            // The server reads into a `BytesMut` until the client is done:
            // every read appends to what is there.
            read_all(drv, conn, BytesMut::with_capacity(64));
        },
    )?;
    let addr = drv.sockets().local_address(listener)?;
    drv.sockets().connect(addr, None, |drv, conn, res| {
        res.expect("connect");
        // A header (a static string) and a body (`Bytes`, shared, not
        // copied) in one gathering write.
        let head = Bytes::from_static(b"HEAD ");
        let body = Bytes::from(String::from("and a body").into_bytes());
        drv.sockets()
            .write_vectored(conn, vec![head, body], IoMode::All, |drv, conn, res, bufs| {
                println!(
                    "client: wrote {} bytes from {} buffers",
                    res.expect("write"),
                    bufs.len()
                );
                drv.sockets().shutdown(conn, false, true).expect("shutdown");
                drv.release_ref(conn).unwrap();
            });
    })?;
    while drv.process_events(Some(Duration::from_secs(5)))? == ExitReason::Idle {}
    Ok(())
}

fn read_all(drv: &mut Driver, conn: eventcore::StreamSocket, buf: BytesMut) {
    drv.sockets()
        .read(conn, buf, IoMode::Once, |drv, conn, res, mut buf| match res {
            Ok(n) => {
                println!("server: +{n} bytes, {} in the buffer", buf.len());
                if buf.capacity() == buf.len() {
                    buf.reserve(64);
                }
                read_all(drv, conn, buf);
            }
            Err(e) => {
                println!("server: {:?} then {e}", String::from_utf8_lossy(&buf));
                drv.release_ref(conn).unwrap();
            }
        });
}
