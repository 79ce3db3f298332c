//! Errors in the standard library's terms: every `Status` has its
//! `io::ErrorKind`, `?` turns an eventcore error into an `io::Error` (the OS
//! code kept where there is one) and back, and `Display` names the
//! operation that failed.

mod util;

use std::io;
use std::rc::Rc;
use std::time::Duration;

use eventcore::{BackendKind, Driver, Error, Status};

/// The kind of every status, as a program matching on `e.kind()` sees it.
#[test]
fn every_status_has_its_io_error_kind() {
    use io::ErrorKind as K;
    let table = [
        (Status::Disconnected, K::BrokenPipe),
        (Status::WouldBlock, K::WouldBlock),
        (Status::InvalidHandle, K::InvalidInput),
        (Status::EndOfFile, K::UnexpectedEof),
        (Status::NoSpace, K::StorageFull),
        (Status::NotSupported, K::Unsupported),
        (Status::TooLarge, K::FileTooLarge),
        (Status::Io, K::Other),
        (Status::NotAllowed, K::PermissionDenied),
        (Status::Refused, K::ConnectionRefused),
        (Status::TimedOut, K::TimedOut),
        (Status::AddressInUse, K::AddrInUse),
        (Status::Unreachable, K::AddrNotAvailable),
        (Status::NotFound, K::NotFound),
        (Status::AlreadyExists, K::AlreadyExists),
        (Status::SharingViolation, K::ResourceBusy),
        (Status::ResourceExhausted, K::OutOfMemory),
        (Status::InvalidArgument, K::InvalidInput),
        (Status::Busy, K::ResourceBusy),
        (Status::DriverGone, K::NotConnected),
        (Status::Other, K::Other),
    ];
    for (status, kind) in table {
        assert_eq!(status.kind(), kind, "{status:?}");
        let e = io::Error::from(Error::new(status));
        assert_eq!(e.kind(), kind, "{status:?} as an io::Error");
        assert_eq!(Error::new(status).to_io().kind(), kind, "{status:?} through to_io");
        // Back again: the same eventcore error.
        assert_eq!(Error::from(e), Error::new(status), "{status:?} round trip");
    }
}

/// `?` works from eventcore calls in a function returning `io::Result`.
#[test]
fn question_mark_into_io_result() {
    fn stale_release() -> io::Result<bool> {
        let mut drv = Driver::new()?;
        let timer = drv.timers().create();
        drv.release_ref(timer)?;
        let still_lives = drv.release_ref(timer)?; // stale: InvalidHandle
        Ok(still_lives)
    }
    let e = stale_release().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let back = Error::from(e);
    assert_eq!(back.status(), Status::InvalidHandle);
}

/// A foreign `io::Error` maps to a status and keeps its OS code.
#[test]
fn a_foreign_io_error_keeps_its_code() {
    let e = io::Error::from(io::ErrorKind::NotFound);
    assert_eq!(Error::from(e).status(), Status::NotFound);
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .and_then(std::net::TcpStream::connect)
        .map(drop);
    // A listener dropped right away may still accept: only check a refusal.
    if let Err(e) = refused {
        let code = e.raw_os_error();
        let ours = Error::from(e);
        assert_eq!(ours.raw_os_error(), code);
        assert_eq!(io::Error::from(ours).raw_os_error(), code);
    }
}

/// A refused connect: the error names the operation, keeps the OS code
/// through `io::Error` and back, and its kind is `ConnectionRefused`.
fn error_of_a_refused_connect(kind: BackendKind) {
    let mut drv = util::driver(kind);
    // A port nobody listens on: bind one, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let got: Rc<std::cell::RefCell<Option<Error>>> = Rc::default();
    let g = got.clone();
    drv.sockets()
        .connect(addr, None, move |drv, conn, res| {
            *g.borrow_mut() = res.err();
            drv.release_ref(conn).unwrap();
        })
        .expect("connect");
    util::run_until(&mut drv, Duration::from_secs(10), |_| got.borrow().is_some());
    let e = got.borrow_mut().take().unwrap();
    assert_eq!(e.status(), Status::Refused);
    assert_eq!(e.operation(), Some("connect"));
    assert!(e.to_string().starts_with("connect: connection refused"), "{e}");
    let code = e.raw_os_error();
    assert!(code.is_some(), "the OS code is kept");
    let io = io::Error::from(e.clone());
    assert_eq!(io.raw_os_error(), code);
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(Error::from(io).status(), Status::Refused);
    util::assert_no_leaks(&drv);
}

contract_tests! {
    error_of_a_refused_connect,
}
