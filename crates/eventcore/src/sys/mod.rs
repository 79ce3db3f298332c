//! OS backends: the mechanics, none of the contract.
//!
//! # The backends
//!
//! - `linux/epoll.rs` (Linux, the default): readiness turned into
//!   completions; parked requests are retried on the edge.
//! - `linux/uring.rs` (Linux 5.11+, where io_uring is allowed): the kernel
//!   performs the requests and reports completions; cancelling waits for the
//!   kernel to let go of the buffer.
//! - `windows/backend.rs`: overlapped I/O with completion routines and a wait
//!   that pumps window messages.
//!
//! The driver holds a [`Native`]: on Linux an enum over the two Linux
//! backends, picked per driver from its [`BackendKind`] (every call forwards
//! through one `match`); on Windows the WinAPI backend.
//!
//! # What a backend provides
//!
//! A backend implements [`Backend`], all of whose methods are called from
//! the driver's thread (construction, `new`, is each type's own):
//!
//! - `waker()`: a [`Waker`] that any thread may use to interrupt `poll`.
//! - `add_source(&fd, kind) -> SourceId` / `remove_source(id)`: tell the
//!   backend about a socket, pipe or other waitable object once, when the
//!   driver adopts it, and forget it (with every operation still parked on it)
//!   before the driver closes it.
//! - `submit(id, token, request) -> Option<Completion>`: start one operation.
//!   A request is one transfer with "at least one byte" semantics
//!   ([`IoMode::Once`](crate::IoMode::Once)), an accept, a connect or a wait for
//!   readability. If it finishes at once the completion is returned, otherwise
//!   the backend parks it and reports it later from `poll`. At most one reading
//!   request (read, receive, accept, readable) and one writing request (write,
//!   send, connect) are submitted per source at a time.
//! - `flush()`: hand requests that `submit` only queued to the OS now (the
//!   driver calls it before a synchronous call that must not overtake them,
//!   such as a shutdown after a write). A no-op for backends that start each
//!   request in `submit`.
//! - `attempt(id, token, request) -> Completion`: one non-blocking try that never
//!   parks ([`IoMode::Immediate`](crate::IoMode::Immediate)); nothing possible is
//!   `WouldBlock`.
//! - `cancel(id, token) -> Option<usize>`: withdraw a parked request.
//!   `Some(n)` means the backend holds no pointer into the request's buffer
//!   any more, and the request had moved `n` bytes when it stopped; `None`
//!   means the OS may still write into it until the aborted completion comes
//!   back from `poll`, so the driver must keep the buffer alive until then.
//! - `poll(timeout, &mut completions, requests) -> bool`: wait at most
//!   `timeout` (`None` = no limit) for completions or a wake-up, and append
//!   what finished. `true` means the backend itself did something that counts
//!   as activity (on Windows: it dispatched window messages). `requests`
//!   rebuilds the request of a parked token from the driver's operation, so
//!   a readiness backend need not keep a copy of every parked request.
//! - `take_quit()`: a `WM_QUIT` exit code the backend took off the thread's
//!   message queue (Windows; always `None` elsewhere).
//!
//! Capabilities of one OS are inherent methods of that OS's backend, named
//! for what they do: the WinAPI backend's `start_lookup` / `cancel_lookup`
//! (asynchronous `GetAddrInfoExW`), `set_message_hook`, `set_attached` and
//! `window_shared` (the GUI integration).
//!
//! A backend never calls a user callback, never loops to fill a buffer
//! ([`IoMode::All`](crate::IoMode::All) is the driver's job) and has no notion
//! of handle validity: tokens are opaque to it. Buffers are raw pointers into
//! memory the driver owns and keeps alive as described above.

use std::io;
#[cfg(eventcore_backend)]
use std::time::Duration;

use crate::Status;

#[cfg(eventcore_backend)]
/// What every OS backend does, with the same signatures everywhere (see the
/// module documentation for the rules each method keeps).
pub(crate) trait Backend {
    /// A waker that interrupts `poll` from any thread.
    fn waker(&self) -> Waker;
    /// Registers a socket, pipe or other waitable object.
    fn add_source(&mut self, source: &impl AsSource, kind: SourceKind) -> io::Result<SourceId>;
    /// Forgets a source and whatever is still parked on it.
    fn remove_source(&mut self, id: SourceId);
    /// Forgets a source whose descriptor the program has closed (and whose
    /// number may name another file now): like `remove_source`, but without
    /// asking the OS to forget the number, which could withdraw another
    /// file's registration (a foreign descriptor closed before its release).
    /// Unix only: a Windows socket has no file identity to check.
    #[cfg_attr(windows, allow(dead_code))]
    fn forget_source(&mut self, id: SourceId) {
        self.remove_source(id)
    }
    /// Whether descriptor `fd` is already one of this backend's sources, for
    /// a backend whose OS does not refuse the second registration itself
    /// (epoll answers `EEXIST`; io_uring keeps no set). Asked only when a
    /// program registers a descriptor of its own (`Driver::polls`), so the
    /// driver's own sources pay nothing for it.
    #[cfg(unix)]
    fn has_descriptor(&self, fd: std::os::fd::RawFd) -> bool {
        let _ = fd;
        false
    }

    /// Whether signals sent to the driver's thread reach it (a signalfd's
    /// readiness is that of the thread that polls it). Not with io_uring's
    /// `SQPOLL`, whose kernel thread polls every descriptor; signal
    /// listeners are refused there.
    fn thread_signals(&self) -> bool {
        true
    }
    /// Starts one operation; returns its completion if it finished at once.
    fn submit(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion>;
    /// Hands requests that `submit` only queued to the OS now.
    fn flush(&mut self);
    /// One non-blocking try that never parks.
    fn attempt(&mut self, id: SourceId, token: u64, req: Request) -> Completion;
    /// Withdraws a parked operation: `Some(bytes moved)` once the backend
    /// holds no pointer into its buffer, `None` while the OS still may.
    fn cancel(&mut self, id: SourceId, token: u64) -> Option<usize>;
    /// A `WM_QUIT` exit code taken off the thread's message queue (only
    /// WinAPI has one).
    fn take_quit(&mut self) -> Option<i32> {
        None
    }

    /// A `WM_QUIT` still waiting in the thread's queue, taken off it: the
    /// driver asks before it reports that nothing is left to wait for, so a
    /// quit posted by the last callback is not lost (WinAPI only).
    fn take_queued_quit(&mut self) -> Option<i32> {
        None
    }

    /// Whether the loop must go on waiting although no operation is
    /// pending: a WinAPI thread that owns a window waits for its messages.
    fn keeps_loop_alive(&mut self) -> bool {
        false
    }
    /// Waits at most `timeout` for completions or a wake-up and appends
    /// them; `true` if the backend itself did something that counts as
    /// activity.
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        requests: &mut dyn FnMut(u64) -> Option<Request>,
    ) -> io::Result<bool>;
}
pub(crate) mod buf;
#[cfg(eventcore_backend)]
pub(crate) mod inline_fn;
#[cfg(eventcore_backend)]
pub(crate) mod pin_cell;
#[cfg(eventcore_backend)]
pub(crate) mod watch;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::process;
#[cfg(target_os = "linux")]
pub(crate) use linux::signals;
#[cfg(target_os = "linux")]
pub(crate) use linux::uring::available as io_uring_available;
#[cfg(target_os = "linux")]
pub(crate) use linux::waker::Waker;
#[cfg(target_os = "linux")]
pub(crate) use linux::LinuxBackend as Native;
#[cfg(all(unix, eventcore_backend))]
pub(crate) use unix::{pipe, prepare_pipe};
/// One end of an OS pipe as the platform owns it.
#[cfg(all(unix, eventcore_backend))]
pub(crate) type OwnedPipe = std::os::fd::OwnedFd;
/// One end of an OS pipe as the platform owns it.
#[cfg(windows)]
pub(crate) type OwnedPipe = std::os::windows::io::OwnedHandle;
#[cfg(windows)]
pub(crate) use windows::pipes::{pipe, prepare_pipe};

#[cfg(all(unix, eventcore_backend))]
pub(crate) mod unix;

#[cfg(windows)]
mod windows;
#[cfg(all(unix, eventcore_backend))]
pub(crate) use unix::dns;
#[cfg(all(unix, eventcore_backend))]
pub(crate) use unix::files;
#[cfg(all(unix, eventcore_backend))]
pub(crate) use unix::AsSource;
#[cfg(all(unix, eventcore_backend))]
pub(crate) use unix::{block_signals_in_worker, socket_options};
#[cfg(windows)]
pub(crate) use windows::dns;
#[cfg(windows)]
pub(crate) use windows::files;
#[cfg(windows)]
pub(crate) use windows::object_wait;
#[cfg(windows)]
pub(crate) use windows::AsSource;
#[cfg(windows)]
pub(crate) use windows::{block_signals_in_worker, post_quit, socket_options, Backend as Native, Waker};
#[cfg(windows)]
pub(crate) use windows::{process, signals};

/// Signal numbers with the same meaning on every backend (the POSIX
/// numbers, which the C runtime on Windows uses too), for
/// [`Signals::listen`](crate::Signals::listen) and [`Processes::kill`](crate::Processes::kill).
pub mod signal_numbers {
    /// Hang-up. Windows: the console window is being closed (`CTRL_CLOSE_EVENT`).
    pub const SIGHUP: i32 = 1;
    /// Interrupt. Windows: Ctrl+C (`CTRL_C_EVENT`).
    pub const SIGINT: i32 = 2;
    /// Quit (from the keyboard, in a POSIX terminal).
    pub const SIGQUIT: i32 = 3;
    /// Kill: cannot be caught or listened to.
    pub const SIGKILL: i32 = 9;
    /// Termination request.
    pub const SIGTERM: i32 = 15;
    /// Windows only: Ctrl+Break (`CTRL_BREAK_EVENT`), numbered as in the C
    /// runtime and libuv. (21 is `SIGTTIN` on Linux.)
    #[cfg(windows)]
    pub const SIGBREAK: i32 = 21;
}

#[cfg(eventcore_backend)]
/// A backend's tuning, from [`DriverBuilder`](crate::DriverBuilder); each
/// backend reads what concerns it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tuning {
    /// io_uring: a kernel thread polls the submission queue
    /// (`IORING_SETUP_SQPOLL`), going to sleep after this long without work.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub uring_sqpoll: Option<std::time::Duration>,
    /// io_uring: one multishot accept per listener.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub uring_multishot_accept: bool,
    /// io_uring: stream sockets receive through one multishot receive
    /// each, into a ring of this many provided buffers of this many bytes.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub uring_recv_buffers: Option<(u16, u32)>,
}

#[cfg(eventcore_backend)]
/// Which OS mechanism a driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// Linux epoll (readiness, turned into completions by the backend). The
    /// default on Linux.
    Epoll,
    /// Linux io_uring (kernel completions; 5.11 or later). Available when the
    /// kernel allows `io_uring_setup` (it can be turned off by
    /// `/proc/sys/kernel/io_uring_disabled` or a seccomp filter) and knows
    /// every opcode the backend uses; probed once per process. Cancelling
    /// waits (at most a second) for the kernel to give the buffer back.
    IoUring,
    /// Windows: overlapped I/O with completion routines, and a wait that pumps
    /// the thread's window messages.
    WinApi,
}

#[cfg(eventcore_backend)]
impl BackendKind {
    /// The backends this build can run, the default first.
    ///
    /// Linux: `[Epoll, IoUring]`, or `[Epoll]` where io_uring is missing or
    /// disabled. Windows: `[WinApi]`.
    pub fn available() -> &'static [BackendKind] {
        #[cfg(target_os = "linux")]
        return if io_uring_available() {
            &[BackendKind::Epoll, BackendKind::IoUring]
        } else {
            &[BackendKind::Epoll]
        };
        #[cfg(windows)]
        return &[BackendKind::WinApi];
    }

    /// The name used in test and benchmark output (`epoll`, `io_uring`, `winapi`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Epoll => "epoll",
            BackendKind::IoUring => "io_uring",
            BackendKind::WinApi => "winapi",
        }
    }
}

#[cfg(eventcore_backend)]
/// How a backend performs reads and writes on a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// A socket: `recv` / `send` (never raising `SIGPIPE`).
    Socket,
    /// Any other descriptor or handle: pipes, signalfd, inotify, pidfd.
    #[cfg_attr(not(unix), allow(dead_code))]
    Fd,
}

#[cfg(eventcore_backend)]
/// Identifies a source (a socket) registered with a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SourceId(pub u64);

#[cfg(eventcore_backend)]
/// One operation handed to a backend. Pointers address buffers the driver owns.
pub(crate) enum Request {
    /// Receive into `ptr[..len]` on a connected stream.
    Read { ptr: *mut u8, len: usize },
    /// Send `ptr[..len]` on a connected stream.
    Write { ptr: *const u8, len: usize },
    /// Send the `count` slices at `slices` on a connected stream (a
    /// vectored write; the array stays valid while the request is pending).
    /// A backend that cannot send several at once sends from the first.
    WriteVectored { slices: *const buf::IoSlice, count: usize },
    /// Receive one datagram into `ptr[..len]`, with its sender's address.
    RecvFrom { ptr: *mut u8, len: usize },
    /// Send one datagram, to `*to` or (null) to the connected peer. The
    /// address is boxed in the driver's op, so the pointer stays valid as long
    /// as the buffer does.
    SendTo {
        ptr: *const u8,
        len: usize,
        to: *const socket2::SockAddr,
    },
    /// Accept one connection.
    Accept,
    /// Connect to the address (boxed: connects are rare, requests are many).
    Connect(Box<socket2::SockAddr>),
    /// Wait until the source is readable, without consuming anything.
    Readable,
    /// Wait until the source is writable, without writing anything (the
    /// foreign descriptors of `poll.rs`).
    Writable,
    /// Read into `ptr[..len]` from a file at `offset` (positional).
    ReadAt { ptr: *mut u8, len: usize, offset: u64 },
    /// Write `ptr[..len]` to a file at `offset` (positional).
    WriteAt { ptr: *const u8, len: usize, offset: u64 },
    /// Collect directory changes into `ptr[..len]` (Windows
    /// `ReadDirectoryChangesW`; `recursive` watches the whole tree).
    #[allow(dead_code)] // Used by the Windows directory watchers.
    DirectoryChanges { ptr: *mut u8, len: usize, recursive: bool },
}

#[cfg(eventcore_backend)]
impl Request {
    /// Whether the request uses the source's reading slot (else the writing one).
    pub fn is_reading(&self) -> bool {
        matches!(
            self,
            Request::Read { .. }
                | Request::RecvFrom { .. }
                | Request::Accept
                | Request::Readable
                | Request::ReadAt { .. }
                | Request::DirectoryChanges { .. }
        )
    }
}

#[cfg(eventcore_backend)]
/// What an operation produced besides its byte count.
#[derive(Debug)]
pub(crate) enum Extra {
    None,
    /// A connection was accepted.
    Accepted(socket2::Socket, PeerAddr),
    /// A datagram arrived from this address.
    From(PeerAddr),
    /// A name resolved to these addresses.
    #[cfg_attr(not(windows), allow(dead_code))]
    Addresses(Vec<std::net::IpAddr>),
}

#[cfg(eventcore_backend)]
/// A peer's address, compact: IP addresses inline, anything else (Unix
/// paths) boxed — a `SockAddr` is 128 bytes of storage, which would make
/// every completion record that large.
#[derive(Debug)]
pub(crate) enum PeerAddr {
    Ip(std::net::SocketAddr),
    Other(Box<socket2::SockAddr>),
}

#[cfg(eventcore_backend)]
impl From<socket2::SockAddr> for PeerAddr {
    fn from(a: socket2::SockAddr) -> PeerAddr {
        match a.as_socket() {
            Some(ip) => PeerAddr::Ip(ip),
            None => PeerAddr::Other(Box::new(a)),
        }
    }
}

#[cfg(eventcore_backend)]
/// A finished operation: its token, bytes transferred (or the error) and extras.
#[derive(Debug)]
pub(crate) struct Completion {
    pub token: u64,
    pub result: io::Result<usize>,
    pub extra: Extra,
}

#[cfg(eventcore_backend)]
impl Completion {
    pub fn new(token: u64, result: io::Result<usize>) -> Completion {
        Completion {
            token,
            result,
            extra: Extra::None,
        }
    }

    /// The completion of a transfer that may have produced an [`Extra`].
    #[cfg(windows)]
    pub fn of(token: u64, result: io::Result<(usize, Extra)>) -> Completion {
        match result {
            Ok((n, extra)) => Completion {
                token,
                result: Ok(n),
                extra,
            },
            Err(e) => Completion::new(token, Err(e)),
        }
    }
}

#[cfg(eventcore_backend)]
/// Whether a failed stream read is really the end of the stream: Windows
/// reports a pipe whose writer closed as `ERROR_BROKEN_PIPE`, where POSIX
/// reads 0 bytes.
pub(crate) fn read_error_is_end_of_stream(e: &io::Error) -> bool {
    #[cfg(windows)]
    return e.raw_os_error() == Some(109); // ERROR_BROKEN_PIPE
    #[cfg(not(windows))]
    {
        let _ = e;
        false
    }
}

/// The contract's status for an OS error.
pub(crate) fn status_of(e: &io::Error) -> Status {
    #[cfg(all(unix, eventcore_backend))]
    if let Some(code) = e.raw_os_error() {
        if let Some(s) = unix::status_of_errno(code) {
            return s;
        }
    }
    #[cfg(windows)]
    if let Some(code) = e.raw_os_error() {
        if let Some(s) = windows::status_of_code(code) {
            return s;
        }
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected | K::UnexpectedEof => {
            Status::Disconnected
        }
        K::WouldBlock => Status::WouldBlock,
        K::PermissionDenied => Status::NotAllowed,
        K::ConnectionRefused => Status::Refused,
        K::TimedOut => Status::TimedOut,
        K::AddrInUse => Status::AddressInUse,
        K::AddrNotAvailable => Status::Unreachable,
        K::NotFound => Status::NotFound,
        K::AlreadyExists => Status::AlreadyExists,
        K::InvalidInput => Status::InvalidArgument,
        K::Unsupported => Status::NotSupported,
        K::OutOfMemory => Status::ResourceExhausted,
        _ => Status::Other,
    }
}

#[cfg(eventcore_backend)]
/// The path of a Unix-domain socket address, if it has one.
pub(crate) fn unix_path(addr: &socket2::SockAddr) -> Option<std::path::PathBuf> {
    #[cfg(all(unix, eventcore_backend))]
    return addr.as_pathname().map(std::path::Path::to_path_buf);
    #[cfg(windows)]
    {
        // sockaddr_un on Windows: a u16 family and a NUL-terminated UTF-8 path.
        if !addr.is_unix() {
            return None;
        }
        let len = addr.len() as usize;
        if len <= 2 {
            return None;
        }
        // SAFETY: the address holds `len` initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), len) };
        let path = &bytes[2..];
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        if end == 0 {
            return None;
        }
        std::str::from_utf8(&path[..end]).ok().map(std::path::PathBuf::from)
    }
}

#[cfg(eventcore_backend)]
/// How this OS performs a name lookup (`sys::dns::start`).
#[allow(dead_code)] // Each OS uses one of the two.
pub(crate) enum LookupStart {
    /// The driver runs this blocking resolver on its worker pool; the job's
    /// output is its result (Unix: `getaddrinfo`).
    Pool(fn(&str) -> crate::Result<Vec<std::net::IpAddr>>),
    /// The backend started the lookup; its completion comes from `poll`
    /// with [`Extra::Addresses`], or here if it finished at once (Windows:
    /// `GetAddrInfoExW`).
    Backend(Option<Completion>),
}

#[cfg(eventcore_backend)]
/// The addresses, or the resolver's error, of a lookup the backend performed.
pub(crate) fn lookup_result(c: Completion) -> crate::Result<Vec<std::net::IpAddr>> {
    match (c.result, c.extra) {
        (Ok(_), Extra::Addresses(addrs)) => Ok(addrs),
        (Err(e), _) => Err(dns::resolver_error(e)),
        _ => Err(crate::Error::new(Status::Other)),
    }
}

/// How a process ended (both process backends report it this way).
pub(crate) struct Ended {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl Ended {
    /// Ended, but the OS does not say how (an adopted process that is not
    /// our child, on Unix).
    pub fn unknown() -> Ended {
        Ended {
            code: None,
            signal: None,
        }
    }
}

/// Called once, from another thread, with how a process ended.
pub(crate) type ExitNotify = Box<dyn FnOnce(Ended) + Send>;
