//! tokio's I/O traits on the async layer's byte streams (feature
//! `tokio-io`), on every backend: tokio-util's `Framed` with `LinesCodec`
//! over a loopback TCP connection (whole streams and owned halves), a pipe
//! through tokio's extension traits, and a TLS round trip with tokio-rustls
//! (ring) and a self-signed certificate from rcgen.

mod util;

use std::time::Duration;

use eventcore::rt::{self, Pipe, TcpListener, TcpStream};
use eventcore::BackendKind;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LinesCodec};
use util::rt::{assert_settled, executor, LIMIT};

/// A listener on 127.0.0.1 and its address.
fn listen() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().as_inet().unwrap();
    (listener, addr)
}

/// The lines a client sends: short ones, an empty one and a long one.
fn lines() -> Vec<String> {
    let mut lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    lines.push(String::new());
    lines.push("x".repeat(100_000));
    lines.push("the end".into());
    lines
}

/// A line echo server with `Framed<TcpStream, LinesCodec>` on both sides.
fn framed_lines_echo(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (listener, addr) = listen();
        let server = rt::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(conn, LinesCodec::new());
            let mut n = 0;
            while let Some(line) = framed.next().await {
                framed.send(line.unwrap()).await.unwrap();
                n += 1;
            }
            n
        });
        rt::timeout(LIMIT, async {
            let conn = TcpStream::connect(addr).await.unwrap();
            let mut framed = Framed::new(conn, LinesCodec::new());
            for line in lines() {
                framed.send(line.clone()).await.unwrap();
                assert_eq!(framed.next().await.unwrap().unwrap(), line);
            }
            // All at once, then the answers.
            for line in lines() {
                framed.feed(line).await.unwrap();
            }
            SinkExt::<String>::flush(&mut framed).await.unwrap();
            for line in lines() {
                assert_eq!(framed.next().await.unwrap().unwrap(), line);
            }
            // Ending the writing side ends the server's stream of lines.
            SinkExt::<String>::close(&mut framed).await.unwrap();
            assert!(framed.next().await.is_none());
            assert_eq!(server.await.unwrap(), 2 * lines().len());
        })
        .await
        .expect("in time");
    });
    assert_settled(&mut ex);
}

/// `FramedRead` and `FramedWrite` on the owned halves, in two tasks.
fn framed_over_owned_halves(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (listener, addr) = listen();
        let server = rt::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let (r, w) = conn.into_split();
            let mut lines_in = FramedRead::new(r, LinesCodec::new());
            let mut lines_out = FramedWrite::new(w, LinesCodec::new());
            while let Some(line) = lines_in.next().await {
                lines_out.send(line.unwrap().to_uppercase()).await.unwrap();
            }
            SinkExt::<String>::close(&mut lines_out).await.unwrap();
        });
        rt::timeout(LIMIT, async {
            let conn = TcpStream::connect(addr).await.unwrap();
            let (r, w) = conn.into_split();
            let writer = rt::spawn(async move {
                let mut out = FramedWrite::new(w, LinesCodec::new());
                for i in 0..500 {
                    out.send(format!("hello {i}")).await.unwrap();
                }
                SinkExt::<String>::close(&mut out).await.unwrap();
            });
            let mut answers = FramedRead::new(r, LinesCodec::new());
            for i in 0..500 {
                assert_eq!(answers.next().await.unwrap().unwrap(), format!("HELLO {i}"));
            }
            assert!(answers.next().await.is_none());
            writer.await.unwrap();
            server.await.unwrap();
        })
        .await
        .expect("in time");
    });
    assert_settled(&mut ex);
}

/// A pipe through tokio's extension traits: `write_all` + `shutdown` (which
/// closes the pipe) on one end, `read_to_end` on the other.
fn pipe_through_tokio_traits(kind: BackendKind) {
    let mut ex = executor(kind);
    ex.block_on(async {
        let (mut r, mut w) = Pipe::create().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let expected = data.clone();
        let writer = rt::spawn(async move {
            AsyncWriteExt::write_all(&mut w, &data).await.unwrap();
            AsyncWriteExt::shutdown(&mut w).await.unwrap();
        });
        let mut got = Vec::new();
        rt::timeout(LIMIT, AsyncReadExt::read_to_end(&mut r, &mut got))
            .await
            .expect("in time")
            .unwrap();
        assert!(got == expected, "{} bytes", got.len());
        writer.await.unwrap();
    });
    assert_settled(&mut ex);
}

/// A TLS 1.3 session over loopback TCP with tokio-rustls on both ends: the
/// server's self-signed certificate for `localhost` is the client's only
/// root. A greeting each way, then 1 MiB echoed back, then close_notify.
fn tls_round_trip(kind: BackendKind) {
    use std::sync::Arc;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let server_config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("the root");
    let client_config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let connector = TlsConnector::from(Arc::new(client_config));

    let mut ex = executor(kind);
    ex.block_on(async {
        let (listener, addr) = listen();
        let server = rt::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(conn).await.expect("the server's handshake");
            let mut hello = [0; 5];
            tls.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            tls.write_all(b"world").await.unwrap();
            tls.flush().await.unwrap();
            // Echo until the client's close_notify.
            let mut buf = vec![0; 16 * 1024];
            loop {
                let n = tls.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                tls.write_all(&buf[..n]).await.unwrap();
                tls.flush().await.unwrap();
            }
            tls.shutdown().await.unwrap();
        });
        rt::timeout(LIMIT, async {
            let conn = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, conn).await.expect("the client's handshake");
            assert_eq!(
                tls.get_ref().1.protocol_version(),
                Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_3)
            );
            tls.write_all(b"hello").await.unwrap();
            tls.flush().await.unwrap();
            let mut world = [0; 5];
            tls.read_exact(&mut world).await.unwrap();
            assert_eq!(&world, b"world");
            let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
            let (mut r, mut w) = tokio::io::split(tls);
            let sent = data.clone();
            let writer = rt::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
                w
            });
            let mut echo = Vec::new();
            r.read_to_end(&mut echo).await.unwrap();
            assert!(echo == data, "{} bytes back", echo.len());
            drop(writer.await.unwrap());
            server.await.unwrap();
        })
        .await
        .expect("in time");
        // Let the closes settle.
        rt::sleep(Duration::from_millis(1)).await;
    });
    assert_settled(&mut ex);
}

contract_tests!(
    framed_lines_echo,
    framed_over_owned_halves,
    pipe_through_tokio_traits,
    tls_round_trip
);
