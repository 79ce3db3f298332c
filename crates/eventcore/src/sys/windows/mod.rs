//! The WinAPI backend: overlapped socket I/O whose completion routines run
//! during the loop's alertable wait, and a wait that also pumps the thread's
//! window messages.
//!
//! - `backend.rs`: the wait (`MsgWaitForMultipleObjectsEx`), the message pump,
//!   the request dispatch and the waker.
//! - `overlapped.rs`: the driver-owned OVERLAPPED slots and the completion
//!   routine, which only records `(slot, error, bytes)`.
//! - `window.rs`: the message-only window that receives `WSAAsyncSelect`
//!   notifications (accept, connect) and the pump requests of a driver that
//!   is attached to a program's own message loop.
//! - `dns.rs`: asynchronous `GetAddrInfoExW`, started and cancelled by the
//!   backend.
//! - `errors.rs`: Win32 / WinSock codes → the contract's statuses.
//! - `process.rs`: child processes (std's `CreateProcessW`, a registered
//!   wait per process, `TerminateProcess`).
//! - `signals.rs`: console control events as signals
//!   (`SetConsoleCtrlHandler`).
//! - `object_wait.rs`: waits for the program's kernel objects
//!   (`RegisterWaitForSingleObject` on a duplicate of its handle).

mod backend;
pub(crate) mod dns;
mod errors;
pub(crate) mod files;
pub(crate) mod object_wait;
mod overlapped;
pub(crate) mod pipes;
pub(crate) mod process;
pub(crate) mod signals;
pub(crate) mod watch;
mod window;

pub(crate) use backend::{Backend, Waker};
pub(crate) use errors::status_of_code;

/// What the backend can register: sockets and (overlapped) file, pipe and
/// directory handles.
pub(crate) trait AsSource {
    /// The raw SOCKET or HANDLE value.
    fn raw_source(&self) -> usize;
}

impl AsSource for socket2::Socket {
    fn raw_source(&self) -> usize {
        std::os::windows::io::AsRawSocket::as_raw_socket(self) as usize
    }
}

impl AsSource for std::os::windows::io::OwnedHandle {
    fn raw_source(&self) -> usize {
        std::os::windows::io::AsRawHandle::as_raw_handle(self) as usize
    }
}

impl AsSource for std::fs::File {
    fn raw_source(&self) -> usize {
        std::os::windows::io::AsRawHandle::as_raw_handle(self) as usize
    }
}

/// A `SockAddr` from an address the OS wrote into `storage`.
///
/// # Safety
/// The first `len` bytes of `storage` (at most its size) hold a valid socket
/// address.
pub(crate) unsafe fn sock_addr(
    storage: &windows_sys::Win32::Networking::WinSock::SOCKADDR_STORAGE,
    len: i32,
) -> socket2::SockAddr {
    use windows_sys::Win32::Networking::WinSock::SOCKADDR_STORAGE;
    let mut out = socket2::SockAddrStorage::zeroed();
    // SAFETY: `SOCKADDR_STORAGE` is the Windows storage type that
    // `SockAddrStorage` wraps (same size and layout); the bytes are copied.
    unsafe { *out.view_as::<SOCKADDR_STORAGE>() = *storage };
    // SAFETY: the caller promises `len` valid bytes of address, now in `out`.
    unsafe { socket2::SockAddr::new(out, len) }
}

/// Worker threads need no signal mask on Windows (console control events are
/// delivered to a thread of their own).
#[allow(dead_code)]
pub(crate) fn block_signals_in_worker() {}

/// Starts WinSock once per process (version 2.2); later calls are no-ops.
pub(crate) fn wsa_startup() {
    use std::sync::Once;
    static START: Once = Once::new();
    START.call_once(|| {
        // SAFETY: WSAStartup fills the WSADATA we pass; the data is not needed.
        unsafe {
            let mut data: windows_sys::Win32::Networking::WinSock::WSADATA = std::mem::zeroed();
            windows_sys::Win32::Networking::WinSock::WSAStartup(0x202, &mut data);
        }
    });
}

/// Socket options whose spelling differs per OS.
pub(crate) mod socket_options {
    use std::io;
    use std::os::windows::io::AsRawSocket;
    use std::time::Duration;

    use socket2::Socket;
    use windows_sys::Win32::Networking::WinSock::{setsockopt, IPPROTO_TCP, SOCKET_ERROR};

    /// `TCP_MAXRT` (seconds): how long retransmissions go on before the
    /// connection is dropped — Windows' form of a TCP user timeout.
    pub(crate) fn set_user_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
        const TCP_MAXRT: i32 = 5;
        let secs = u32::try_from(timeout.as_millis().div_ceil(1000)).unwrap_or(u32::MAX);
        // SAFETY: sets a DWORD option from a live u32 of the given size.
        let rc = unsafe {
            setsockopt(
                socket.as_raw_socket() as usize,
                IPPROTO_TCP,
                TCP_MAXRT,
                (&secs as *const u32).cast(),
                std::mem::size_of::<u32>() as i32,
            )
        };
        if rc == SOCKET_ERROR {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Windows has no `SO_REUSEPORT`.
    pub(crate) fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Nothing: rebinding over TIME_WAIT is Windows' default, and
    /// `SO_REUSEADDR` there would let a second socket take a live port.
    pub(crate) fn set_listener_reuse_address(_socket: &Socket) -> io::Result<()> {
        Ok(())
    }
}

/// Posts `WM_QUIT` with `code` to the calling thread's message queue.
pub(crate) fn post_quit(code: i32) {
    // SAFETY: posts a message to the calling thread's own queue.
    unsafe { windows_sys::Win32::UI::WindowsAndMessaging::PostQuitMessage(code) };
}
