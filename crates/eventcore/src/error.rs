//! The contract's statuses and the error type every operation reports.
//!
//! An [`Error`] pairs a portable [`Status`] (what happened, in the contract's
//! words) with the raw OS error code when the OS reported one, and — for I/O
//! operations — how many bytes had already moved when the error happened.

use std::{fmt, io};

/// What went wrong, in the contract's vocabulary. The same status means the
/// same thing on every backend; the OS code in [`Error::raw_os_error`] says
/// exactly what the OS reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// The peer closed or reset the connection, or this side shut it down.
    Disconnected,
    /// [`IoMode::Immediate`](crate::IoMode::Immediate) found nothing to transfer.
    WouldBlock,
    /// The handle is stale, released, of another driver, or never existed.
    InvalidHandle,
    /// A read started past the end of a file.
    EndOfFile,
    /// The disk or a buffer is full.
    NoSpace,
    /// The operation is not supported here (by this OS, backend or socket type).
    NotSupported,
    /// A datagram or file is larger than the operation allows.
    TooLarge,
    /// The device reported an I/O error.
    Io,
    /// Permission was denied.
    NotAllowed,
    /// The remote end refused the connection.
    Refused,
    /// The operation timed out (a TCP user timeout or keep-alive failure).
    TimedOut,
    /// The address is already in use.
    AddressInUse,
    /// The address is not available on this machine, or unreachable.
    Unreachable,
    /// A file or path does not exist.
    NotFound,
    /// A file that was to be created already exists.
    AlreadyExists,
    /// Another process has the file open in a way that excludes this one
    /// (Windows sharing violation).
    SharingViolation,
    /// The process or system ran out of descriptors or memory (EMFILE, ENOBUFS…).
    ResourceExhausted,
    /// An argument was invalid (an empty buffer where one is needed, a bad path…).
    InvalidArgument,
    /// Another operation of the same kind is already pending on this handle.
    Busy,
    /// The driver this call tried to reach no longer exists.
    DriverGone,
    /// Any other failure; the OS code tells more.
    Other,
}

impl Status {
    /// The `std::io::ErrorKind` that says the same thing: what an
    /// [`Error`] of this status without an OS code becomes as an
    /// `io::Error` (with an OS code, the code decides, as std maps it).
    pub fn kind(self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Status::Disconnected => K::BrokenPipe,
            Status::WouldBlock => K::WouldBlock,
            Status::InvalidHandle => K::InvalidInput,
            Status::EndOfFile => K::UnexpectedEof,
            Status::NoSpace => K::StorageFull,
            Status::NotSupported => K::Unsupported,
            Status::TooLarge => K::FileTooLarge,
            Status::Io => K::Other,
            Status::NotAllowed => K::PermissionDenied,
            Status::Refused => K::ConnectionRefused,
            Status::TimedOut => K::TimedOut,
            Status::AddressInUse => K::AddrInUse,
            Status::Unreachable => K::AddrNotAvailable,
            Status::NotFound => K::NotFound,
            Status::AlreadyExists => K::AlreadyExists,
            Status::SharingViolation => K::ResourceBusy,
            Status::ResourceExhausted => K::OutOfMemory,
            Status::InvalidArgument => K::InvalidInput,
            Status::Busy => K::ResourceBusy,
            Status::DriverGone => K::NotConnected,
            Status::Other => K::Other,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Status::Disconnected => "disconnected",
            Status::WouldBlock => "operation would block",
            Status::InvalidHandle => "invalid handle",
            Status::EndOfFile => "read past end of file",
            Status::NoSpace => "no space left",
            Status::NotSupported => "not supported",
            Status::TooLarge => "too large",
            Status::Io => "I/O error",
            Status::NotAllowed => "not allowed",
            Status::Refused => "connection refused",
            Status::TimedOut => "timed out",
            Status::AddressInUse => "address in use",
            Status::Unreachable => "address unreachable or unavailable",
            Status::NotFound => "not found",
            Status::AlreadyExists => "already exists",
            Status::SharingViolation => "sharing violation",
            Status::ResourceExhausted => "out of resources",
            Status::InvalidArgument => "invalid argument",
            Status::Busy => "an operation of this kind is already pending",
            Status::DriverGone => "the driver no longer exists",
            Status::Other => "error",
        }
    }
}

/// The operations an error can name (one byte in an [`Error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Connect,
    Read,
    Write,
    Receive,
    Send,
    Accept,
    Lookup,
    Open,
    IntoSocket,
    Internal,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Connect => "connect",
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Receive => "receive",
            Operation::Send => "send",
            Operation::Accept => "accept",
            Operation::Lookup => "lookup",
            Operation::Open => "open",
            Operation::IntoSocket => "into_socket",
            Operation::Internal => "internal read",
        }
    }
}

/// The error of an eventcore operation: a [`Status`], the OS error code if the
/// OS reported one, and the number of bytes already transferred (I/O only).
///
/// Three words: every I/O result carries one by value through the
/// callbacks, so the rare parts (a resolver's code and message) are boxed.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    operation: Option<Operation>,
    /// Whether `os_code` holds the OS's code (an `Option<i32>` would make
    /// the error a word larger).
    has_os_code: bool,
    os_code: i32,
    transferred: usize,
    resolver: Option<Box<ResolverError>>,
}

/// A name-resolution failure's own code and message.
#[derive(Clone, PartialEq, Eq)]
struct ResolverError {
    code: i32,
    detail: Box<str>,
}

impl Error {
    /// An error with a status and no OS code.
    pub fn new(status: Status) -> Error {
        Error {
            status,
            operation: None,
            has_os_code: false,
            os_code: 0,
            transferred: 0,
            resolver: None,
        }
    }

    /// A name-resolution failure with the resolver's own code (`EAI_*` on Unix).
    pub(crate) fn resolver(status: Status, code: i32, message: String) -> Error {
        Error {
            resolver: Some(Box::new(ResolverError {
                code,
                detail: message.into(),
            })),
            ..Error::new(status)
        }
    }

    /// The resolver's error code (`EAI_*` from `getaddrinfo` on Unix, a
    /// WinSock code on Windows) of a failed DNS lookup.
    pub fn resolver_code(&self) -> Option<i32> {
        self.resolver.as_ref().map(|r| r.code)
    }

    /// The contract's status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The raw OS error code (`errno`, or a Win32 / WinSock code), if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.has_os_code.then_some(self.os_code)
    }

    /// Bytes that had already moved before the operation failed (for example
    /// the 4 bytes an [`IoMode::All`](crate::IoMode::All) read got before the
    /// peer closed the connection).
    pub fn transferred(&self) -> usize {
        self.transferred
    }

    /// Whether this is a plain end of stream — the peer finished sending —
    /// rather than a reset or another failure (both are
    /// [`Status::Disconnected`]; only a reset carries an OS code).
    pub fn is_end_of_stream(&self) -> bool {
        self.status == Status::Disconnected && !self.has_os_code
    }

    /// The operation that failed (`"read"`, `"connect"`, `"open"` …), where
    /// the driver knows it.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation.map(Operation::name)
    }

    /// The same error, naming the operation that failed (kept if one is
    /// named already).
    pub(crate) fn in_operation(mut self, operation: Operation) -> Error {
        self.operation.get_or_insert(operation);
        self
    }

    /// Names the operation of an error result in place (kept if one is
    /// named already); an `Ok` is not moved.
    pub(crate) fn name_operation<T>(result: &mut Result<T>, operation: Operation) {
        if let Err(e) = result {
            e.operation.get_or_insert(operation);
        }
    }

    pub(crate) fn with_transferred(mut self, n: usize) -> Error {
        self.transferred = n;
        self
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn with_status(mut self, status: Status) -> Error {
        self.status = status;
        self
    }

    pub(crate) fn invalid_handle() -> Error {
        Error::new(Status::InvalidHandle)
    }

    /// The same error as a `std::io::Error` (see `From<Error> for io::Error`).
    pub fn to_io(&self) -> io::Error {
        io::Error::from(self.clone())
    }
}

/// An error with an OS code becomes that OS error (`raw_os_error()` and
/// `kind()` as std has them for the code); one without becomes an
/// `io::Error` of [`Status::kind`] that carries the eventcore error, so
/// converting back gives it unchanged.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.status.kind(), e),
        }
    }
}

/// An `io::Error` that carries an eventcore error gives it back; any other
/// is mapped by its OS code (or kind) to a [`Status`], keeping the code.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        if let Some(inner) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
            return inner.clone();
        }
        let status = crate::sys::status_of(&e);
        match e.raw_os_error() {
            Some(code) => Error {
                has_os_code: true,
                os_code: code,
                ..Error::new(status)
            },
            None => Error::new(status),
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Error {
        Error::new(s)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(operation) = self.operation {
            write!(f, "{}: ", operation.name())?;
        }
        f.write_str(self.status.describe())?;
        if let Some(code) = self.raw_os_error() {
            write!(f, " ({})", io::Error::from_raw_os_error(code))?;
        }
        if let Some(r) = &self.resolver {
            write!(f, " (resolver error {}: {})", r.code, r.detail)?;
        }
        if self.transferred > 0 {
            write!(f, " after {} bytes", self.transferred)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The result type of eventcore operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// Every I/O result carries an `Error` by value through the callbacks:
    /// naming the operation must not make it bigger.
    #[test]
    fn an_error_is_three_words() {
        assert_eq!(std::mem::size_of::<super::Error>(), 24);
        assert_eq!(std::mem::size_of::<super::Result<usize>>(), 24);
    }
}
