//! Unix-domain stream sockets through the portable API (paths, listen,
//! connect), on every backend: Linux, and Windows 10 1803+ which has AF_UNIX
//! stream sockets. The Unix-only parts (socketpair, datagrams) are in unix.rs.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use eventcore::{BackendKind, ExitReason, IoMode, ListenOptions, SocketAddress, Status};

const LIMIT: Duration = Duration::from_secs(10);

/// Listen on a socket path, connect, exchange 10 bytes each way.
fn af_unix_stream_exchange(kind: BackendKind) {
    let dir = util::TempDir::new("af-unix");
    let path = dir.path().join("s.sock");
    let mut drv = util::driver(kind);
    let _listener = match drv.sockets().listen(
        SocketAddress::Unix(path.clone()),
        ListenOptions::default(),
        |drv, listener, res| {
            let (conn, _) = res.expect("accept");
            drv.release_ref(listener).unwrap();
            drv.sockets()
                .read(conn, Vec::with_capacity(10), IoMode::All, |drv, conn, res, buf| {
                    assert_eq!(res, Ok(10));
                    drv.sockets().write(conn, buf, IoMode::All, |drv, conn, res, _| {
                        assert_eq!(res, Ok(10));
                        drv.release_ref(conn).unwrap();
                    });
                });
        },
    ) {
        Ok(l) => l,
        Err(e) if util::under_wine() && matches!(e.status(), Status::NotSupported | Status::InvalidArgument) => {
            eprintln!("Wine differs from Windows: AF_UNIX stream sockets are not implemented in Wine 8 ({e}); Windows 10 1803+ has them");
            return;
        }
        Err(e) => panic!("listen on a Unix socket path: {e}"),
    };
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    drv.sockets()
        .connect(SocketAddress::Unix(path), None, move |drv, conn, res| {
            res.expect("connect");
            drv.sockets()
                .write(conn, b"0123456789".to_vec(), IoMode::All, move |drv, conn, _, _| {
                    drv.sockets()
                        .read(conn, Vec::with_capacity(10), IoMode::All, move |drv, conn, res, buf| {
                            assert_eq!(res, Ok(10));
                            assert_eq!(buf, b"0123456789");
                            d.set(true);
                            drv.release_ref(conn).unwrap();
                        });
                });
        })
        .expect("connect");
    util::run_until(&mut drv, LIMIT, |_| done.get());
    assert_eq!(util::run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    util::assert_no_leaks(&drv);
}

contract_tests! {
    af_unix_stream_exchange,
}
