//! POSIX helpers shared by the Unix backends: errno mapping and the
//! non-blocking socket calls that a readiness backend performs when a source
//! becomes ready.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use socket2::SockAddr;

use super::{Extra, Request, SourceKind};
use crate::Status;

pub(crate) mod dns;
pub(crate) mod files;

/// Calls a libc function and turns `-1` into the thread's `errno` as `io::Error`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: each call site documents why its arguments are valid.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// Makes a system call directly, by number, and turns `-1` into `errno` as
/// `io::Error`. For the per-operation transfers only (`recv`, `send`,
/// `read`, `write`): the libc wrappers of these are thread-cancellation
/// points, which costs two extra calls per transfer that a program which
/// never cancels threads pays for nothing (measured with callgrind in
/// `docs/benchmarks.md`). `EINTR` is retried by the caller as before.
#[cfg(target_os = "linux")]
macro_rules! raw_syscall {
    ($nr:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: each call site documents why its arguments are valid; the
        // arguments are passed as the kernel's ABI for `$nr` takes them.
        let res = unsafe { libc::syscall(libc::$nr, $($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res as isize)
        }
    }};
}
#[cfg(target_os = "linux")]
pub(crate) use raw_syscall;

/// `recv(fd, ptr, len, 0)` as a direct system call (Linux) or through libc.
#[inline]
fn recv(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<isize> {
    #[cfg(target_os = "linux")]
    return raw_syscall!(SYS_recvfrom(
        fd,
        ptr,
        len,
        0,
        std::ptr::null_mut::<libc::sockaddr>(),
        std::ptr::null_mut::<libc::socklen_t>()
    ));
    #[cfg(not(target_os = "linux"))]
    return syscall!(recv(fd, ptr.cast(), len, 0));
}

/// `send(fd, ptr, len, MSG_NOSIGNAL)` as a direct system call (Linux) or through libc.
#[inline]
fn send(fd: RawFd, ptr: *const u8, len: usize) -> io::Result<isize> {
    #[cfg(target_os = "linux")]
    return raw_syscall!(SYS_sendto(
        fd,
        ptr,
        len,
        libc::MSG_NOSIGNAL,
        std::ptr::null::<libc::sockaddr>(),
        0 as libc::socklen_t
    ));
    #[cfg(not(target_os = "linux"))]
    return syscall!(send(fd, ptr.cast(), len, libc::MSG_NOSIGNAL));
}

/// `read(fd, ptr, len)` as a direct system call (Linux) or through libc.
#[inline]
fn read(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<isize> {
    #[cfg(target_os = "linux")]
    return raw_syscall!(SYS_read(fd, ptr, len));
    #[cfg(not(target_os = "linux"))]
    return syscall!(read(fd, ptr.cast(), len));
}

/// `write(fd, ptr, len)` as a direct system call (Linux) or through libc.
#[inline]
fn write(fd: RawFd, ptr: *const u8, len: usize) -> io::Result<isize> {
    #[cfg(target_os = "linux")]
    return raw_syscall!(SYS_write(fd, ptr, len));
    #[cfg(not(target_os = "linux"))]
    return syscall!(write(fd, ptr.cast(), len));
}

/// The contract's status for an `errno` value, where it is more precise than
/// the standard library's `ErrorKind`.
pub(crate) fn status_of_errno(code: i32) -> Option<Status> {
    Some(match code {
        libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN | libc::ECONNABORTED | libc::ESHUTDOWN => Status::Disconnected,
        libc::EAGAIN => Status::WouldBlock,
        libc::EBADF => Status::InvalidHandle,
        libc::ENOSPC => Status::NoSpace,
        libc::EOPNOTSUPP | libc::ENOSYS | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => Status::NotSupported,
        libc::EMSGSIZE | libc::EFBIG => Status::TooLarge,
        libc::EIO => Status::Io,
        libc::EACCES | libc::EPERM => Status::NotAllowed,
        libc::ECONNREFUSED => Status::Refused,
        libc::ETIMEDOUT => Status::TimedOut,
        libc::EADDRINUSE => Status::AddressInUse,
        libc::EADDRNOTAVAIL | libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN => Status::Unreachable,
        libc::ENOENT => Status::NotFound,
        libc::EEXIST => Status::AlreadyExists,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => Status::ResourceExhausted,
        libc::EINVAL | libc::ENAMETOOLONG => Status::InvalidArgument,
        _ => return None,
    })
}

/// Performs `req` once on the non-blocking socket `fd`, writing what it
/// produced besides the count to `extra`. Nothing possible is an
/// error of kind `WouldBlock`. `Connect` here means "the connection attempt has
/// finished: collect its result".
///
/// The caller guarantees that the pointers in `req` address live memory of at
/// least `len` bytes that nothing else touches during the call.
pub(crate) fn perform(fd: RawFd, kind: SourceKind, req: &Request, extra: &mut Extra) -> io::Result<usize> {
    match *req {
        Request::Read { ptr, len } => {
            let n = match kind {
                SourceKind::Socket => recv(fd, ptr, len)?,
                SourceKind::Fd => read(fd, ptr, len)?,
            };
            Ok(n as usize)
        }
        Request::Write { ptr, len } => {
            let n = match kind {
                SourceKind::Socket => send(fd, ptr, len)?,
                // Rust programs ignore SIGPIPE from startup, so a closed
                // reader gives EPIPE here rather than killing the process.
                SourceKind::Fd => write(fd, ptr, len)?,
            };
            Ok(n as usize)
        }
        Request::WriteVectored { slices, count } => {
            // At most IOV_MAX slices per call: a partial write is a valid
            // "at least one byte" transfer, and the driver issues the rest.
            let count = count.min(1024);
            let n = match kind {
                SourceKind::Socket => {
                    // SAFETY: an all-zero msghdr is valid (no name, no control).
                    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                    // `IoSlice` has the layout of `iovec`.
                    hdr.msg_iov = slices.cast_mut().cast();
                    hdr.msg_iovlen = count as _;
                    syscall!(sendmsg(fd, &hdr, libc::MSG_NOSIGNAL))?
                }
                SourceKind::Fd => syscall!(writev(fd, slices.cast(), count as libc::c_int))?,
            };
            Ok(n as usize)
        }
        Request::RecvFrom { ptr, len } => {
            // SAFETY: `try_init` hands us zeroed storage and its length to fill;
            // recvfrom writes at most that many bytes of address.
            let (n, addr) = unsafe {
                SockAddr::try_init(|storage, addr_len| {
                    syscall!(recvfrom(fd, ptr.cast(), len, 0, storage.cast(), addr_len)).map(|n| n as usize)
                })
            }?;
            *extra = Extra::From(addr.into());
            Ok(n)
        }
        Request::SendTo { ptr, len, to } => {
            // SAFETY: a non-null `to` points to the op's boxed address, alive
            // for the duration of the request.
            let n = match unsafe { to.as_ref() } {
                Some(addr) => syscall!(sendto(
                    fd,
                    ptr.cast(),
                    len,
                    libc::MSG_NOSIGNAL,
                    addr.as_ptr().cast(),
                    addr.len()
                ))?,
                None => send(fd, ptr, len)? as _,
            };
            Ok(n as usize)
        }
        Request::Accept => {
            // SAFETY: as above, `try_init` provides the address storage.
            let (sock, addr) = unsafe {
                SockAddr::try_init(|storage, addr_len| {
                    syscall!(accept4(
                        fd,
                        storage.cast(),
                        addr_len,
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
                    ))
                })
            }?;
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let sock = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(sock) };
            *extra = Extra::Accepted(sock, addr.into());
            Ok(0)
        }
        Request::Connect(_) => connect_result(fd).map(|()| 0),
        Request::ReadAt { ptr, len, offset } => {
            let n = syscall!(pread(fd, ptr.cast(), len, offset as libc::off_t))?;
            Ok(n as usize)
        }
        Request::WriteAt { ptr, len, offset } => {
            let n = syscall!(pwrite(fd, ptr.cast(), len, offset as libc::off_t))?;
            Ok(n as usize)
        }
        Request::DirectoryChanges { .. } => Err(io::ErrorKind::Unsupported.into()),
        Request::Readable => poll_now(fd, libc::POLLIN).map(|()| 0),
        Request::Writable => poll_now(fd, libc::POLLOUT).map(|()| 0),
    }
}

/// Whether `fd` is ready for `events` now (a zero-timeout `poll`): ready,
/// hung up or failed is `Ok`, nothing yet `WouldBlock`, and a descriptor
/// that is not open (`POLLNVAL`) `EBADF` — never "ready".
fn poll_now(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let n = syscall!(poll(&mut pfd, 1, 0))?;
    if n == 0 {
        Err(io::ErrorKind::WouldBlock.into())
    } else if pfd.revents & libc::POLLNVAL != 0 {
        Err(io::Error::from_raw_os_error(libc::EBADF))
    } else {
        Ok(())
    }
}

/// One non-blocking attempt at `req` (retried on `EINTR`); `None` means
/// "nothing possible now". What the transfer produced besides its count
/// (an accepted socket, a datagram's sender) goes to `extra`, so that the
/// result stays two words, returned in registers. An accept that fails
/// with EMFILE or ENFILE is reported only when a pending connection had to
/// be shed: `accept4` needs a free descriptor before it even looks at the
/// backlog, so the error also comes with an empty backlog, and reporting
/// it then would make a loop spin on a listener that stays readable.
pub(crate) fn try_perform(
    fd: RawFd,
    kind: SourceKind,
    req: &Request,
    reserve: &mut ReserveFd,
    extra: &mut Extra,
) -> Option<io::Result<usize>> {
    loop {
        return match perform(fd, kind, req, extra) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) || e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e)
                if matches!(req, Request::Accept) && matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                if reserve.shed_connections(fd) > 0 {
                    Some(Err(e))
                } else {
                    None
                }
            }
            other => Some(other),
        };
    }
}

/// The outcome of a non-blocking connect once the socket became writable:
/// `WouldBlock` while it is still in progress.
pub(crate) fn connect_result(fd: RawFd) -> io::Result<()> {
    connect_error(fd)?;
    // SO_ERROR is 0 both when connected and while still connecting;
    // only a peer name tells them apart.
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    match syscall!(getpeername(fd, storage.as_mut_ptr().cast(), &mut len)) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e),
    }
}

/// The pending error of a socket (`SO_ERROR`, which reading clears): how a
/// connect ended, once it has.
pub(crate) fn connect_error(fd: RawFd) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ERROR,
        (&mut err as *mut libc::c_int).cast(),
        &mut len
    ))?;
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// Starts a non-blocking connect. `Ok(true)` = connected at once, `Ok(false)` =
/// in progress.
pub(crate) fn start_connect(fd: RawFd, addr: &SockAddr) -> io::Result<bool> {
    match syscall!(connect(fd, addr.as_ptr().cast(), addr.len())) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A spare descriptor kept open so that an accept failing with EMFILE can
/// free one, accept the pending connection and close it at once — otherwise a
/// connection stuck in the backlog keeps the listener readable forever and an
/// edge- or level-triggered loop either spins or stalls (libuv does the same).
pub(crate) struct ReserveFd(Option<std::fs::File>);

impl ReserveFd {
    pub fn new() -> ReserveFd {
        ReserveFd(std::fs::File::open("/dev/null").ok())
    }

    /// Drops every connection pending on `listener` after EMFILE; returns how
    /// many were dropped.
    pub fn shed_connections(&mut self, listener: RawFd) -> usize {
        let mut dropped = 0;
        while self.0.take().is_some() {
            match syscall!(accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC
            )) {
                Ok(fd) => {
                    // SAFETY: `fd` was just returned by accept4 and is owned here.
                    let _ = syscall!(close(fd));
                    dropped += 1;
                    self.0 = std::fs::File::open("/dev/null").ok();
                }
                Err(_) => {
                    self.0 = std::fs::File::open("/dev/null").ok();
                    break;
                }
            }
        }
        dropped
    }
}

/// Blocks every blockable signal in the calling (worker) thread, so that a
/// signal the driver listens to through signalfd is never delivered to it.
pub(crate) fn block_signals_in_worker() {
    // SAFETY: sigfillset initialises the set; pthread_sigmask only changes
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// What identifies the file behind a descriptor: its device and inode
/// (`fstat`). Telling whether a number still names the file it named.
pub(crate) fn file_identity(fd: RawFd) -> io::Result<(u64, u64)> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills the live, writable stat buffer.
    syscall!(fstat(fd, st.as_mut_ptr()))?;
    // SAFETY: fstat succeeded, so the buffer is initialised.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // The field types differ per platform.
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Puts a descriptor into non-blocking mode.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    if flags & libc::O_NONBLOCK == 0 {
        syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Makes an adopted pipe end ready for the backend (non-blocking).
pub(crate) fn prepare_pipe(fd: &std::os::fd::OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    set_nonblocking(fd.as_raw_fd())
}

/// A new pipe, both ends non-blocking and close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC))?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Socket options whose spelling differs per OS.
pub(crate) mod socket_options {
    use std::io;
    use std::time::Duration;

    use socket2::Socket;

    /// `TCP_USER_TIMEOUT` (Linux); `Unsupported` on other Unixes.
    pub(crate) fn set_user_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return socket.set_tcp_user_timeout(Some(timeout));
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return Err(io::ErrorKind::Unsupported.into());
    }

    /// `SO_REUSEPORT`.
    pub(crate) fn set_reuse_port(socket: &Socket) -> io::Result<()> {
        socket.set_reuse_port(true)
    }

    /// `SO_REUSEADDR`: rebinding over TIME_WAIT.
    pub(crate) fn set_listener_reuse_address(socket: &Socket) -> io::Result<()> {
        socket.set_reuse_address(true)
    }
}

/// A descriptor a backend can register: anything with a raw fd.
pub(crate) trait AsSource {
    /// The raw descriptor.
    fn raw_source(&self) -> std::os::fd::RawFd;
}

impl<T: std::os::fd::AsRawFd> AsSource for T {
    fn raw_source(&self) -> std::os::fd::RawFd {
        self.as_raw_fd()
    }
}
