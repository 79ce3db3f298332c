//! The OS object behind an `rt` value: `AsRawFd` / `AsFd` (Unix) and
//! `AsRawSocket` / `AsSocket` or `AsRawHandle` / `AsHandle` (Windows), so a
//! program can set any socket option (`socket2::SockRef::from(&stream)`) or
//! hand the descriptor to a library that only reads its state.
//!
//! Do not read, write, close or change the blocking mode of the object
//! behind the driver's back. Each call asks the driver, so it panics when
//! called from inside a driver callback, like every `rt` operation.
//!
//! The borrowed forms are the one use of `unsafe` outside `sys/`: a
//! `BorrowedFd` (or `BorrowedSocket`, `BorrowedHandle`) can only be made by
//! promising that the object stays open while it is borrowed, and only the
//! `rt` value can promise that: it holds a reference to the driver handle,
//! and the driver closes the object only when the last reference goes.
#![allow(unsafe_code)]

use super::executor::Core;
use super::{ByteStream, DatagramSocket, File, Listener};
use crate::handle::Handle;
use crate::{Driver, FileHandle, PipeHandle, StreamListener, StreamSocket};

/// Driver handles whose OS object can be looked up.
trait OsHandle: Handle {
    /// The raw OS value (descriptor, SOCKET or HANDLE) behind `self`.
    fn raw(self, drv: &Driver) -> Option<Raw>;
}

#[cfg(unix)]
type Raw = std::os::fd::RawFd;
#[cfg(windows)]
type Raw = u64;

#[cfg(unix)]
fn raw_of_socket(s: &socket2::Socket) -> Raw {
    std::os::fd::AsRawFd::as_raw_fd(s)
}
#[cfg(windows)]
fn raw_of_socket(s: &socket2::Socket) -> Raw {
    std::os::windows::io::AsRawSocket::as_raw_socket(s)
}
#[cfg(unix)]
fn raw_of<T: std::os::fd::AsRawFd>(o: &T) -> Raw {
    o.as_raw_fd()
}
#[cfg(windows)]
fn raw_of<T: std::os::windows::io::AsRawHandle>(o: &T) -> Raw {
    o.as_raw_handle() as usize as u64
}

impl OsHandle for StreamSocket {
    fn raw(self, drv: &Driver) -> Option<Raw> {
        drv.socket_ref(self.kind(), self.key()).map(raw_of_socket)
    }
}
impl OsHandle for StreamListener {
    fn raw(self, drv: &Driver) -> Option<Raw> {
        drv.socket_ref(self.kind(), self.key()).map(raw_of_socket)
    }
}
impl OsHandle for crate::DatagramSocket {
    fn raw(self, drv: &Driver) -> Option<Raw> {
        drv.socket_ref(self.kind(), self.key()).map(raw_of_socket)
    }
}
impl OsHandle for PipeHandle {
    fn raw(self, drv: &Driver) -> Option<Raw> {
        drv.tables.pipes.get(self.key()).map(|p| raw_of(&p.fd))
    }
}
impl OsHandle for FileHandle {
    fn raw(self, drv: &Driver) -> Option<Raw> {
        drv.tables.files.get(self.key()).map(|f| raw_of(&*f.file))
    }
}

/// The raw OS value of a live handle an `rt` value holds.
fn raw<H: OsHandle>(core: &Core, h: H) -> Raw {
    core.with_driver(|drv| h.raw(drv))
        .expect("eventcore::rt: the value holds a live driver handle")
}

/// Implements the OS traits for an `rt` type, given how to reach its core
/// and handle.
macro_rules! os_traits {
    ($([$($gen:tt)*] $ty:ty => |$s:ident| ($core:expr, $h:expr), $os:ident;)*) => {$(
        #[cfg(unix)]
        impl<$($gen)*> std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                let $s = self;
                raw($core, $h)
            }
        }
        #[cfg(unix)]
        impl<$($gen)*> std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                let fd = std::os::fd::AsRawFd::as_raw_fd(self);
                // SAFETY: `self` holds a reference to the driver handle, so
                // the driver keeps the descriptor open at least as long as
                // `self` is borrowed (see the module documentation).
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            }
        }
        os_traits!(@windows $os [$($gen)*] $ty => |$s| ($core, $h));
    )*};
    (@windows socket [$($gen:tt)*] $ty:ty => |$s:ident| ($core:expr, $h:expr)) => {
        #[cfg(windows)]
        impl<$($gen)*> std::os::windows::io::AsRawSocket for $ty {
            fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
                let $s = self;
                raw($core, $h)
            }
        }
        #[cfg(windows)]
        impl<$($gen)*> std::os::windows::io::AsSocket for $ty {
            fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
                let s = std::os::windows::io::AsRawSocket::as_raw_socket(self);
                // SAFETY: `self` holds a reference to the driver handle, so
                // the driver keeps the socket open at least as long as
                // `self` is borrowed (see the module documentation).
                unsafe { std::os::windows::io::BorrowedSocket::borrow_raw(s) }
            }
        }
    };
    (@windows handle [$($gen:tt)*] $ty:ty => |$s:ident| ($core:expr, $h:expr)) => {
        #[cfg(windows)]
        impl<$($gen)*> std::os::windows::io::AsRawHandle for $ty {
            fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
                let $s = self;
                raw($core, $h) as usize as std::os::windows::io::RawHandle
            }
        }
        #[cfg(windows)]
        impl<$($gen)*> std::os::windows::io::AsHandle for $ty {
            fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
                let h = std::os::windows::io::AsRawHandle::as_raw_handle(self);
                // SAFETY: `self` holds a reference to the driver handle, so
                // the driver keeps the handle open at least as long as `self`
                // is borrowed (see the module documentation).
                unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(h) }
            }
        }
    };
}

os_traits! {
    [] ByteStream<StreamSocket> => |s| (s.core(), s.raw_handle()), socket;
    [] ByteStream<PipeHandle> => |s| (s.core(), s.raw_handle()), handle;
    [] Listener => |s| (s.core(), s.raw_handle()), socket;
    [] DatagramSocket => |s| (s.core(), s.raw_handle()), socket;
    [] File => |s| (s.core(), s.raw_handle()), handle;
}
