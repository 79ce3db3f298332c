//! The OS object behind a handle: socket options through a borrowed
//! `socket2::SockRef` (callback API) or the std handle traits (`rt`), and a
//! socket taken out of the driver for the program to use on its own.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use eventcore::{BackendKind, IoMode, ListenOptions, Status};

const LIMIT: Duration = Duration::from_secs(10);

/// A connected pair: a driver stream and the std end of it.
fn connected(drv: &mut eventcore::Driver) -> (eventcore::StreamSocket, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    let d = done.clone();
    let sock = drv
        .sockets()
        .connect(addr, None, move |_, _, res| {
            res.expect("connect");
            d.set(true);
        })
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    util::run_until(drv, LIMIT, |_| done.get());
    (sock, peer)
}

/// Socket options the API does not wrap are set through `socket_ref`:
/// `TCP_NODELAY`, `SO_RCVBUF` and (Linux) `TCP_CORK`, read back through the
/// same reference.
fn socket_options_through_socket_ref(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let (sock, _peer) = connected(&mut drv);
    {
        let s = drv.sockets().socket_ref(sock).unwrap();
        s.set_tcp_nodelay(true).unwrap();
        assert!(s.tcp_nodelay().unwrap());
        s.set_tcp_nodelay(false).unwrap();
        assert!(!s.tcp_nodelay().unwrap());
        s.set_recv_buffer_size(64 * 1024).unwrap();
        assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
        #[cfg(target_os = "linux")]
        {
            s.set_tcp_cork(true).unwrap();
            assert!(s.tcp_cork().unwrap());
            s.set_tcp_cork(false).unwrap();
        }
    }
    let listener = drv
        .sockets()
        .listen(
            "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
            ListenOptions::default(),
            |_, _, _| {},
        )
        .unwrap();
    assert!(drv.sockets().socket_ref(listener).unwrap().local_addr().is_ok());
    drv.release_ref(listener).unwrap();
    drv.release_ref(sock).unwrap();
    assert_eq!(
        drv.sockets().socket_ref(sock).err().map(|e| e.status()),
        Some(Status::InvalidHandle)
    );
    util::assert_no_leaks(&drv);
}

/// `into_socket` hands a connected socket to the program: the driver forgets
/// it (the handle is stale, a pending read's callback never runs) and the
/// socket keeps working as a plain std stream. A handle with a second
/// reference is `Busy`.
fn into_socket_gives_the_socket_away(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let (sock, mut peer) = connected(&mut drv);
    drv.add_ref(sock).unwrap();
    assert_eq!(
        drv.sockets().into_socket(sock).err().map(|e| e.status()),
        Some(Status::Busy)
    );
    drv.release_ref(sock).unwrap();
    drv.sockets()
        .read(sock, Vec::with_capacity(16), IoMode::Once, |_, _, _, _| {
            panic!("a cancelled read ran")
        });
    let socket = drv.sockets().into_socket(sock).expect("into_socket");
    assert!(!drv.is_valid(sock), "the handle is stale");
    socket.set_nonblocking(false).unwrap();
    let mut std_stream: std::net::TcpStream = socket.into();
    std_stream.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    peer.write_all(b"pong").unwrap();
    std_stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    assert_eq!(
        util::run_until_not_idle(&mut drv, Duration::from_millis(200)),
        eventcore::ExitReason::OutOfWaiters
    );
    util::assert_no_leaks(&drv);
}

/// The async layer's streams, listeners and datagram sockets expose their OS
/// object through the std traits; `socket2::SockRef` works on them.
fn rt_types_expose_their_os_object(kind: BackendKind) {
    use eventcore::rt::{Executor, Listener, TcpStream, UdpSocket};
    let mut ex = Executor::new(util::driver(kind));
    ex.block_on(async {
        let listener = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let s = socket2::SockRef::from(&stream);
        s.set_tcp_nodelay(true).unwrap();
        assert!(s.tcp_nodelay().unwrap());
        #[cfg(target_os = "linux")]
        {
            s.set_tcp_cork(true).unwrap();
            assert!(s.tcp_cork().unwrap());
        }
        assert_eq!(
            socket2::SockRef::from(&listener).local_addr().unwrap().as_socket(),
            Some(addr)
        );
        let udp = UdpSocket::bind("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap()).unwrap();
        socket2::SockRef::from(&udp).set_broadcast(true).unwrap();
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            assert!(stream.as_raw_fd() >= 0 && stream.as_raw_fd() != udp.as_raw_fd());
        }
    });
    assert!(ex.leak_report().is_empty(), "{}", ex.leak_report());
}

contract_tests! {
    socket_options_through_socket_ref,
    into_socket_gives_the_socket_away,
    rt_types_expose_their_os_object,
}
