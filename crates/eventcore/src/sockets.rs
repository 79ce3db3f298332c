//! Sockets: what TCP, UDP and Unix-domain sockets mean, on every backend.
//!
//! Stream sockets (TCP and Unix stream) share [`StreamSocket`]; listening
//! sockets are [`StreamListener`]s with a repeating accept callback; UDP and
//! Unix datagram sockets are [`DatagramSocket`]s. Every transfer takes an owned
//! buffer and gives it back in its callback, also on failure. At most one read
//! and one write (or receive and send) may be pending per socket.
//!
//! The I/O modes and the read / write slots are the shared engine of
//! `io.rs`; this file adds what is particular to sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::sys::Backend as _;
use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, Handle, HandleKind, Key};
use crate::io::{take_back, take_back_list, Cancelled, ConnectFn, IoCallback, IoDoneFn, IoMode, IoOp, IoSlots, Owner, RecvFn};
use crate::sys::buf::{AnyBuf, IoBuf, IoBufMut};
use crate::sys::{Extra, Request, SourceKind};
use crate::{Driver, Error, Result, Status};

define_handle!(
    /// A connected (or connecting) stream socket: TCP or Unix-domain.
    StreamSocket,
    Stream
);
define_handle!(
    /// A listening stream socket (TCP or Unix-domain) with an accept callback.
    StreamListener,
    Listener
);
define_handle!(
    /// A datagram socket: UDP or Unix-domain.
    DatagramSocket,
    Datagram
);

/// The state of a stream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// A connect is in progress.
    Connecting,
    /// Both directions are open.
    Connected,
    /// The peer finished sending (a read saw end of stream); writing still works.
    PassiveClose,
    /// This side shut down writing; reading still works.
    ActiveClose,
    /// Both directions are finished, the connection failed, or it was reset.
    Closed,
}

/// A socket address: IP (v4 or v6) or Unix-domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix-domain socket bound to a path.
    Unix(PathBuf),
    /// An unbound (unnamed) Unix-domain socket, e.g. the client side of a
    /// Unix stream connection.
    Unnamed,
}

impl SocketAddress {
    /// The IP socket address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            SocketAddress::Inet(a) => Some(*a),
            _ => None,
        }
    }

    fn to_sock_addr(&self) -> Result<SockAddr> {
        match self {
            SocketAddress::Inet(a) => Ok(SockAddr::from(*a)),
            SocketAddress::Unix(p) => SockAddr::unix(p).map_err(Error::from),
            SocketAddress::Unnamed => Err(Error::new(Status::InvalidArgument)),
        }
    }

    pub(crate) fn from_peer(a: &crate::sys::PeerAddr) -> SocketAddress {
        match a {
            crate::sys::PeerAddr::Ip(ip) => SocketAddress::Inet(*ip),
            crate::sys::PeerAddr::Other(a) => SocketAddress::from_sock_addr(a),
        }
    }

    pub(crate) fn from_sock_addr(a: &SockAddr) -> SocketAddress {
        if let Some(inet) = a.as_socket() {
            return SocketAddress::Inet(inet);
        }
        match crate::sys::unix_path(a) {
            Some(p) => SocketAddress::Unix(p),
            None => SocketAddress::Unnamed,
        }
    }

    fn domain(&self) -> Result<Domain> {
        match self {
            SocketAddress::Inet(SocketAddr::V4(_)) => Ok(Domain::IPV4),
            SocketAddress::Inet(SocketAddr::V6(_)) => Ok(Domain::IPV6),
            SocketAddress::Unix(_) | SocketAddress::Unnamed => unix_domain(),
        }
    }
}

fn unix_domain() -> Result<Domain> {
    // Windows has AF_UNIX stream sockets since Windows 10 1803.
    Ok(Domain::UNIX)
}

impl From<SocketAddr> for SocketAddress {
    fn from(a: SocketAddr) -> SocketAddress {
        SocketAddress::Inet(a)
    }
}

impl From<&Path> for SocketAddress {
    fn from(p: &Path) -> SocketAddress {
        SocketAddress::Unix(p.to_path_buf())
    }
}

impl From<PathBuf> for SocketAddress {
    fn from(p: PathBuf) -> SocketAddress {
        SocketAddress::Unix(p)
    }
}

impl std::fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddress::Inet(a) => write!(f, "{a}"),
            SocketAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            SocketAddress::Unnamed => f.write_str("unix:(unnamed)"),
        }
    }
}

/// Options of [`Sockets::listen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    /// Rebind while old connections are in TIME_WAIT (`SO_REUSEADDR` on Unix).
    /// Default `true`, as in libuv. On Windows rebinding over TIME_WAIT is the
    /// default and `SO_REUSEADDR` would let the port be taken from a live
    /// listener, so nothing is set there (as in libuv).
    pub reuse_address: bool,
    /// `SO_REUSEPORT` where the OS has it (several listeners share a port);
    /// [`Status::NotSupported`] elsewhere. Default `false`.
    pub reuse_port: bool,
    /// The accept backlog. Default 511, as in libuv and nginx.
    pub backlog: i32,
    /// `IPV6_V6ONLY` for IPv6 listeners. Default `false` (dual-stack where the
    /// OS allows it).
    pub v6_only: bool,
}

impl Default for ListenOptions {
    fn default() -> ListenOptions {
        ListenOptions {
            reuse_address: true,
            reuse_port: false,
            backlog: 511,
            v6_only: false,
        }
    }
}

/// Options of [`Sockets::create_datagram`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatagramOptions {
    /// The default target: sends without an address go there, and only its
    /// datagrams are received (the socket is connected).
    pub target: Option<SocketAddress>,
    /// Allow sending to broadcast addresses (`SO_BROADCAST`).
    pub broadcast: bool,
    /// `SO_REUSEADDR`: several sockets may bind the same (multicast) address.
    pub reuse_address: bool,
}

type AcceptCallback = Box<dyn FnMut(&mut Driver, StreamListener, Result<(StreamSocket, SocketAddress)>)>;

pub(crate) struct StreamState {
    socket: Socket,
    pub(crate) io: IoSlots,
}

pub(crate) struct ListenerState {
    socket: Socket,
    pub(crate) io: IoSlots,
    callback: Option<AcceptCallback>,
}

pub(crate) struct DatagramState {
    socket: Socket,
    pub(crate) io: IoSlots,
}

fn stream_owner(key: Key) -> Owner {
    Owner {
        kind: HandleKind::Stream,
        key,
    }
}

fn datagram_owner(key: Key) -> Owner {
    Owner {
        kind: HandleKind::Datagram,
        key,
    }
}

/// Implemented by the three socket handle types, for the calls they share
/// (addresses, user data through [`Driver`]).
pub trait SocketHandle: Handle {}
impl SocketHandle for StreamSocket {}
impl SocketHandle for StreamListener {}
impl SocketHandle for DatagramSocket {}

/// The socket view of a driver (see [`Driver::sockets`]).
pub struct Sockets<'a> {
    drv: &'a mut Driver,
}

fn new_socket(domain: Domain, ty: Type) -> Result<Socket> {
    let protocol = if domain == Domain::IPV4 || domain == Domain::IPV6 {
        if ty == Type::STREAM {
            Some(socket2::Protocol::TCP)
        } else {
            Some(socket2::Protocol::UDP)
        }
    } else {
        None
    };
    // Linux creates the socket non-blocking in the same call (no fcntl).
    #[cfg(target_os = "linux")]
    let s = Socket::new(domain, ty.nonblocking(), protocol)?;
    #[cfg(not(target_os = "linux"))]
    let s = {
        let s = Socket::new(domain, ty, protocol)?;
        s.set_nonblocking(true)?;
        s
    };
    Ok(s)
}

impl Driver {
    /// Sockets: TCP, UDP and Unix-domain.
    pub fn sockets(&mut self) -> Sockets<'_> {
        Sockets { drv: self }
    }

    pub(crate) fn socket_ref(&self, kind: HandleKind, key: Key) -> Option<&Socket> {
        match kind {
            HandleKind::Stream => self.tables.streams.get(key).map(|s| &s.socket),
            HandleKind::Listener => self.tables.listeners.get(key).map(|s| &s.socket),
            HandleKind::Datagram => self.tables.datagrams.get(key).map(|s| &s.socket),
            _ => None,
        }
    }

    /// Takes the OS socket of a handle out of the driver (see
    /// [`Sockets::into_socket`]).
    fn take_socket(&mut self, kind: HandleKind, key: Key) -> Result<Socket> {
        let refs = *self.tables.refs_mut(kind, key).ok_or_else(Error::invalid_handle)?;
        if refs > 1 {
            return Err(Error::new(Status::Busy).in_operation(crate::error::Operation::IntoSocket));
        }
        let owner = Owner { kind, key };
        self.cancel_slots(owner);
        let (socket, src) = match kind {
            HandleKind::Stream => self.tables.streams.remove(key).map(|s| (s.socket, s.io.src)),
            HandleKind::Listener => self.tables.listeners.remove(key).map(|s| (s.socket, s.io.src)),
            HandleKind::Datagram => self.tables.datagrams.remove(key).map(|s| (s.socket, s.io.src)),
            _ => None,
        }
        .ok_or_else(Error::invalid_handle)?;
        self.sys.remove_source(src);
        self.forget_user_data(kind, key);
        Ok(socket)
    }

    /// A listener's accept finished: adopt the connection, run the repeating
    /// callback, and accept again unless the listener is gone or broken.
    pub(crate) fn accepted(&mut self, key: Key, result: Result<usize>, extra: Extra) {
        let listener = StreamListener(key);
        let Some(state) = self.tables.listeners.get_mut(key) else {
            return;
        };
        let Some(mut callback) = state.callback.take() else {
            return;
        };
        let mut keep_accepting = true;
        let outcome = match (result, extra) {
            (Ok(_), Extra::Accepted(socket, addr)) => self
                .adopt_stream_socket(socket, false, true)
                .map(|s| (s, SocketAddress::from_peer(&addr))),
            (Ok(_), _) => Err(Error::new(Status::Other)),
            (Err(e), _) => {
                // Transient failures (the peer gave up, or descriptors or memory
                // ran out — the backend already shed the pending connection)
                // keep the listener going; anything else ends accepting.
                keep_accepting = matches!(
                    e.status(),
                    Status::ResourceExhausted | Status::Disconnected | Status::NotAllowed
                );
                Err(e)
            }
        };
        self.guarded(|drv| callback(drv, listener, outcome));
        // The callback may have released the listener.
        let Some(state) = self.tables.listeners.get_mut(key) else {
            return;
        };
        if state.callback.is_none() {
            state.callback = Some(callback);
        }
        if keep_accepting && state.io.read_op.is_none() {
            self.arm_accept(listener);
        }
    }

    fn arm_accept(&mut self, listener: StreamListener) {
        let Some(state) = self.tables.listeners.get(listener.0) else {
            return;
        };
        let owner = Owner {
            kind: HandleKind::Listener,
            key: listener.0,
        };
        let mut op = IoOp::new(owner, IoCallback::Accept, crate::sys::buf::AnyBuf::empty(), IoMode::Once);
        op.src = state.io.src;
        let key = self.start_io(op, false);
        if let Some(state) = self.tables.listeners.get_mut(listener.0) {
            state.io.read_op = Some(key);
        }
    }

    /// Registers a stream socket. `made_here` sockets (created or accepted by
    /// the backend) are non-blocking already; others are made so.
    fn adopt_stream_socket(&mut self, socket: Socket, connecting: bool, made_here: bool) -> Result<StreamSocket> {
        if !made_here {
            socket.set_nonblocking(true)?;
        }
        let src = self.sys.add_source(&socket, SourceKind::Socket)?;
        let mut io = IoSlots::new(src);
        io.connecting = connecting;
        Ok(StreamSocket(self.tables.streams.insert(StreamState { socket, io })))
    }

    pub(crate) fn destroy_stream(&mut self, key: Key) {
        self.cancel_slots(stream_owner(key));
        if let Some(entry) = self.tables.streams.remove(key) {
            self.sys.remove_source(entry.io.src);
        }
    }

    pub(crate) fn destroy_listener(&mut self, key: Key) {
        self.cancel_slots(Owner {
            kind: HandleKind::Listener,
            key,
        });
        if let Some(entry) = self.tables.listeners.remove(key) {
            self.sys.remove_source(entry.io.src);
            if let Some(path) = entry.socket.local_addr().ok().and_then(|a| crate::sys::unix_path(&a)) {
                // A Unix listener's socket file would block the next bind to
                // the same path; remove it with the listener, as libuv does.
                let _ = std::fs::remove_file(path);
            }
        }
    }

    pub(crate) fn destroy_datagram(&mut self, key: Key) {
        self.cancel_slots(datagram_owner(key));
        if let Some(entry) = self.tables.datagrams.remove(key) {
            self.sys.remove_source(entry.io.src);
        }
    }
}

impl<'a> Sockets<'a> {
    // ---------------------------------------------------------------- streams

    /// Starts connecting to `to` (TCP for IP addresses, Unix stream for paths),
    /// optionally from the local address `bind`. The returned socket is in state
    /// [`ConnectionState::Connecting`]; `callback` gets `Ok(())` once connected
    /// or the failure (refused, unreachable, bind failure …). On failure the
    /// socket stays allocated until released. Returns `Err` (and drops the
    /// callback without calling it) only if no socket could be created.
    pub fn connect(
        &mut self,
        to: impl Into<SocketAddress>,
        bind: Option<SocketAddress>,
        callback: impl FnOnce(&mut Driver, StreamSocket, Result<()>) + 'static,
    ) -> Result<StreamSocket> {
        let to = to.into();
        let socket = new_socket(to.domain()?, Type::STREAM)?;
        let sock = self.drv.adopt_stream_socket(socket, true, true)?;
        let owner = stream_owner(sock.0);
        let mut op = IoOp::new(
            owner,
            IoCallback::Connect(ConnectFn::new(move |drv, key, r| callback(drv, StreamSocket(key), r))),
            crate::sys::buf::AnyBuf::empty(),
            IoMode::Once,
        );
        let state = self.drv.tables.streams.get(sock.0).expect("just inserted");
        let src = state.io.src;
        op.src = src;
        let prepared = match &bind {
            Some(bind) => bind
                .to_sock_addr()
                .and_then(|b| state.socket.bind(&b).map_err(Error::from)),
            None => Ok(()),
        }
        .and_then(|()| to.to_sock_addr());
        let key = self.drv.ops.insert(Op::Io(op));
        match prepared {
            Ok(addr) => {
                if let Some(c) = self.drv.sys.submit(src, key.to_u64(), Request::Connect(Box::new(addr))) {
                    self.drv.push_ready(key, Outcome::Sys(c));
                }
            }
            Err(e) => self.drv.push_ready(key, Outcome::Failed(e)),
        }
        self.drv.tables.streams.get_mut(sock.0).expect("live").io.write_op = Some(key);
        Ok(sock)
    }

    /// Withdraws a pending connect: its callback will not run. The socket stays
    /// allocated (state [`ConnectionState::Closed`]) until released. Returns
    /// whether a connect was pending.
    pub fn cancel_connect(&mut self, sock: StreamSocket) -> bool {
        let Some(s) = self.drv.tables.streams.get_mut(sock.0) else {
            return false;
        };
        if !s.io.connecting {
            return false;
        }
        s.io.connecting = false;
        s.io.usable = false;
        let key = s.io.write_op.take();
        key.and_then(|k| self.drv.cancel_io(k)).is_some()
    }

    /// Binds to `addr` (TCP for IP addresses, Unix stream for paths), listens,
    /// and calls `on_accept` for every accepted connection (with the peer's
    /// address) or accept failure, until the listener is released. Failures to
    /// create, bind or listen are returned here (address in use, permission
    /// denied …), and `on_accept` is then dropped unused.
    ///
    /// Transient accept failures — out of descriptors (EMFILE), aborted
    /// connections — are reported to `on_accept` and accepting goes on; on
    /// EMFILE the backend closes the connection it could not take, so the loop
    /// neither spins nor stalls (the technique of libuv).
    pub fn listen(
        &mut self,
        addr: impl Into<SocketAddress>,
        options: ListenOptions,
        on_accept: impl FnMut(&mut Driver, StreamListener, Result<(StreamSocket, SocketAddress)>) + 'static,
    ) -> Result<StreamListener> {
        let addr = addr.into();
        let domain = addr.domain()?;
        let socket = new_socket(domain, Type::STREAM)?;
        let inet = domain != unix_domain().unwrap_or(Domain::IPV4) || matches!(addr, SocketAddress::Inet(_));
        if inet && options.reuse_address {
            crate::sys::socket_options::set_listener_reuse_address(&socket)?;
        }
        if options.reuse_port {
            crate::sys::socket_options::set_reuse_port(&socket)?;
        }
        if domain == Domain::IPV6 {
            socket.set_only_v6(options.v6_only)?;
        }
        socket.bind(&addr.to_sock_addr()?)?;
        socket.listen(options.backlog)?;
        self.adopt_listener_socket(socket, Box::new(on_accept))
    }

    /// Takes over an already listening OS socket (from `std`, `socket2` or
    /// another library) and accepts on it as [`Sockets::listen`] does.
    pub fn adopt_listener(
        &mut self,
        socket: impl Into<Socket>,
        on_accept: impl FnMut(&mut Driver, StreamListener, Result<(StreamSocket, SocketAddress)>) + 'static,
    ) -> Result<StreamListener> {
        let socket = socket.into();
        socket.set_nonblocking(true)?;
        self.adopt_listener_socket(socket, Box::new(on_accept))
    }

    fn adopt_listener_socket(&mut self, socket: Socket, on_accept: AcceptCallback) -> Result<StreamListener> {
        let src = self.drv.sys.add_source(&socket, SourceKind::Socket)?;
        let listener = StreamListener(self.drv.tables.listeners.insert(ListenerState {
            socket,
            io: IoSlots::new(src),
            callback: Some(on_accept),
        }));
        self.drv.arm_accept(listener);
        Ok(listener)
    }

    /// Takes over a connected OS stream socket (a `std::net::TcpStream`,
    /// `UnixStream` or `socket2::Socket`), which is made non-blocking.
    pub fn adopt_stream(&mut self, socket: impl Into<Socket>) -> Result<StreamSocket> {
        self.drv.adopt_stream_socket(socket.into(), false, false)
    }

    /// A connected pair of Unix-domain stream sockets (`socketpair`).
    #[cfg(unix)]
    pub fn stream_pair(&mut self) -> Result<(StreamSocket, StreamSocket)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM, None)?;
        let a = self.drv.adopt_stream_socket(a, false, false)?;
        let b = self.drv.adopt_stream_socket(b, false, false)?;
        Ok((a, b))
    }

    /// Whether a listener still accepts: `false` once an accept failed in a
    /// way that ends accepting (see [`Sockets::listen`]), or for an invalid handle.
    pub fn is_accepting(&self, listener: StreamListener) -> bool {
        self.drv
            .tables.listeners
            .get(listener.0)
            .is_some_and(|s| s.io.read_op.is_some())
    }

    /// The state of a stream connection; `Closed` for an invalid handle.
    pub fn connection_state(&self, sock: StreamSocket) -> ConnectionState {
        let Some(s) = self.drv.tables.streams.get(sock.0) else {
            return ConnectionState::Closed;
        };
        if s.io.connecting {
            return ConnectionState::Connecting;
        }
        if !s.io.usable {
            return ConnectionState::Closed;
        }
        match (s.io.read_closed, s.io.write_closed) {
            (false, false) => ConnectionState::Connected,
            (true, false) => ConnectionState::PassiveClose,
            (false, true) => ConnectionState::ActiveClose,
            (true, true) => ConnectionState::Closed,
        }
    }

    /// Reads what can be read into `buf` now, without waiting and without a
    /// callback (tokio's `try_read`): the byte count, `WouldBlock` if
    /// nothing is there, end of stream `Disconnected` (as a read callback
    /// gets it), `Busy` while a [`read`](Sockets::read) is pending.
    pub fn try_read(&mut self, sock: StreamSocket, buf: &mut [u8]) -> Result<usize> {
        self.drv.try_read_now(stream_owner(sock.0), buf.as_mut_ptr(), buf.len())
    }

    /// Writes what can be written from `buf` now, without waiting and
    /// without a callback (tokio's `try_write`): the byte count (possibly
    /// less than `buf.len()`), `WouldBlock` if the socket cannot take any,
    /// `Busy` while a [`write`](Sockets::write) is pending (its bytes go
    /// first), `Disconnected` after a reset or this side's shutdown.
    pub fn try_write(&mut self, sock: StreamSocket, buf: &[u8]) -> Result<usize> {
        self.drv.try_write_now(stream_owner(sock.0), buf.as_ptr(), buf.len())
    }

    /// Reads what can be read now into the spare room of `buf` (a `Vec`'s
    /// capacity after its length: see [`buf`](crate::buf)), without waiting,
    /// and grows its length by the count (tokio's `try_read_buf`); otherwise
    /// as [`try_read`](Self::try_read). A buffer with no room reads nothing
    /// (`Ok(0)`).
    pub fn try_read_buf<B: IoBufMut>(&mut self, sock: StreamSocket, buf: &mut B) -> Result<usize> {
        let owner = stream_owner(sock.0);
        crate::sys::buf::fill_spare(buf, |ptr, len| self.drv.try_read_now(owner, ptr, len))
    }

    /// Reads into the spare room of `buf` (a `Vec`'s capacity after its
    /// length: see [`buf`](crate::buf)) as `mode` says, then calls `callback`
    /// with the byte count or the error, and the buffer, whose length has
    /// grown by what arrived. A buffer with no capacity (`Vec::new()`) with
    /// [`IoMode::Once`] or [`IoMode::All`] waits until data (or end of
    /// stream) is available without consuming anything
    /// ([`Sockets::wait_for_data`]); a full one is
    /// [`Status::InvalidArgument`]. End of stream is
    /// [`Status::Disconnected`], with the bytes read before it in
    /// [`Error::transferred`] (and in the buffer).
    pub fn read<B: IoBufMut>(
        &mut self,
        sock: StreamSocket,
        buf: B,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, StreamSocket, Result<usize>, B) + 'static,
    ) {
        let cb = IoCallback::Read(IoDoneFn::new(move |drv, key, r, b| {
            callback(drv, StreamSocket(key), r, take_back(b))
        }));
        self.drv.begin_io(IoOp::new(stream_owner(sock.0), cb, AnyBuf::for_read(buf), mode));
    }

    /// Writes `buf` as `mode` says, then calls `callback` with the byte count or
    /// the error (with [`Error::transferred`]), and the buffer. Writing after
    /// this side shut down, or after the peer reset, is [`Status::Disconnected`].
    pub fn write<B: IoBuf>(
        &mut self,
        sock: StreamSocket,
        buf: B,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, StreamSocket, Result<usize>, B) + 'static,
    ) {
        let cb = IoCallback::Write(IoDoneFn::new(move |drv, key, r, b| {
            callback(drv, StreamSocket(key), r, take_back(b))
        }));
        self.drv.begin_io(IoOp::new(stream_owner(sock.0), cb, AnyBuf::for_write(buf), mode));
    }

    /// Writes the buffers one after the other in one system call where the
    /// OS has one (`sendmsg` with several slices, io_uring `SENDMSG`,
    /// `WSASend` with several `WSABUF`s), as `mode` says: the callback gets
    /// the total count and the buffers. With [`IoMode::All`] every byte of
    /// every buffer is written; [`IoMode::Once`] completes with what one
    /// transfer moved. A cancel gives the buffers back through
    /// [`Cancelled::buffers`].
    pub fn write_vectored<B: IoBuf>(
        &mut self,
        sock: StreamSocket,
        bufs: Vec<B>,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, StreamSocket, Result<usize>, Vec<B>) + 'static,
    ) {
        let cb = IoCallback::Write(IoDoneFn::new(move |drv, key, r, b| {
            callback(drv, StreamSocket(key), r, take_back_list(b))
        }));
        self.drv.begin_io(IoOp::new(stream_owner(sock.0), cb, AnyBuf::for_write_list(bufs), mode));
    }

    /// Calls `callback` once data or end of stream can be read, consuming
    /// nothing. The same as a zero-length [`Sockets::read`] with [`IoMode::Once`];
    /// it occupies the socket's read slot and is cancelled by [`Sockets::cancel_read`].
    pub fn wait_for_data(
        &mut self,
        sock: StreamSocket,
        callback: impl FnOnce(&mut Driver, StreamSocket, Result<()>) + 'static,
    ) {
        self.read(sock, Vec::new(), IoMode::Once, move |drv, s, r, _: Vec<u8>| {
            callback(drv, s, r.map(drop))
        });
    }

    /// Withdraws the pending read (or wait for data): its callback will not run.
    /// `None` if nothing was pending. On epoll the buffer always comes back here.
    pub fn cancel_read(&mut self, sock: StreamSocket) -> Option<Cancelled> {
        let key = self.drv.tables.streams.get_mut(sock.0)?.io.read_op.take()?;
        self.drv.cancel_io(key)
    }

    /// Withdraws the pending write: its callback will not run. `None` if nothing
    /// was pending. [`Cancelled::transferred`] says how much was already sent.
    /// A pending connect is not a write: [`Sockets::cancel_connect`] withdraws it.
    pub fn cancel_write(&mut self, sock: StreamSocket) -> Option<Cancelled> {
        let io = &mut self.drv.tables.streams.get_mut(sock.0)?.io;
        if io.connecting {
            // The connect occupies the write slot; it is not this call's.
            return None;
        }
        let key = io.write_op.take()?;
        self.drv.cancel_io(key)
    }

    /// Shuts down reading and/or writing. After shutting down writing the state
    /// is [`ConnectionState::ActiveClose`] (or `Closed` if the peer had finished
    /// too) and the peer reads end of stream.
    pub fn shutdown(&mut self, sock: StreamSocket, read: bool, write: bool) -> Result<()> {
        let s = self
            .drv
            .tables.streams
            .get_mut(sock.0)
            .ok_or_else(Error::invalid_handle)?;
        let how = match (read, write) {
            (true, true) => std::net::Shutdown::Both,
            (true, false) => std::net::Shutdown::Read,
            (false, true) => std::net::Shutdown::Write,
            (false, false) => return Ok(()),
        };
        if write && s.io.write_op.is_some() {
            // A backend that queues requests (io_uring) must hand the pending
            // write to the OS before the shutdown, or the shutdown overtakes it.
            self.drv.sys.flush();
        }
        let s = self.drv.tables.streams.get_mut(sock.0).expect("checked above");
        s.socket.shutdown(how)?;
        if write {
            s.io.write_closed = true;
        }
        Ok(())
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_no_delay(&mut self, sock: StreamSocket, enable: bool) -> Result<()> {
        let s = self.drv.tables.streams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        Ok(s.socket.set_tcp_nodelay(enable)?)
    }

    /// Turns TCP keep-alive on or off (`SO_KEEPALIVE`).
    pub fn set_keep_alive(&mut self, sock: StreamSocket, enable: bool) -> Result<()> {
        let s = self.drv.tables.streams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        Ok(s.socket.set_keepalive(enable)?)
    }

    /// Turns keep-alive on with its parameters: idle time before the first
    /// probe, the interval between probes, and how many unanswered probes end
    /// the connection.
    pub fn set_keep_alive_params(
        &mut self,
        sock: StreamSocket,
        idle: Duration,
        interval: Duration,
        probes: u32,
    ) -> Result<()> {
        let s = self.drv.tables.streams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        s.socket.set_keepalive(true)?;
        let params = socket2::TcpKeepalive::new().with_time(idle).with_interval(interval);
        #[cfg(unix)]
        let params = params.with_retries(probes);
        #[cfg(not(unix))]
        let _ = probes;
        Ok(s.socket.set_tcp_keepalive(&params)?)
    }

    /// Sets the TCP user timeout: how long sent data may stay unacknowledged
    /// before the connection is dropped (`TCP_USER_TIMEOUT` on Linux;
    /// `TCP_MAXRT`, in whole seconds rounded up, on Windows).
    pub fn set_user_timeout(&mut self, sock: StreamSocket, timeout: Duration) -> Result<()> {
        let s = self.drv.tables.streams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        Ok(crate::sys::socket_options::set_user_timeout(&s.socket, timeout)?)
    }

    /// The OS socket behind `sock`, borrowed: any socket option this API
    /// does not wrap (`SO_RCVBUF`, `IP_TOS`, `TCP_CORK`, a BPF filter …) can be
    /// read and set through it, as with [`socket2::SockRef`] of any socket.
    /// Do not read, write, close or change its blocking mode behind the
    /// driver's back. `InvalidHandle` for a stale handle.
    pub fn socket_ref<S: SocketHandle>(self, sock: S) -> Result<socket2::SockRef<'a>> {
        let drv: &'a Driver = self.drv;
        drv.socket_ref(sock.kind(), sock.key())
            .map(socket2::SockRef::from)
            .ok_or_else(Error::invalid_handle)
    }

    /// Takes the OS socket out of the driver and gives it to the program
    /// (tokio's `into_std`): the driver forgets it, pending operations are
    /// cancelled (their callbacks never run; a buffer the OS may still write
    /// into stays with the driver until it is done) and the handle is stale
    /// afterwards. The socket is still non-blocking (`set_nonblocking(false)`
    /// for blocking use); `Into` turns it into a `std::net` type. `Busy` if
    /// the handle has more than one reference, `InvalidHandle` if it is
    /// stale.
    pub fn into_socket<S: SocketHandle>(&mut self, sock: S) -> Result<socket2::Socket> {
        self.drv.take_socket(sock.kind(), sock.key())
    }

    /// The local address of any socket.
    pub fn local_address<S: SocketHandle>(&self, sock: S) -> Result<SocketAddress> {
        let s = self
            .drv
            .socket_ref(sock.kind(), sock.key())
            .ok_or_else(Error::invalid_handle)?;
        Ok(SocketAddress::from_sock_addr(&s.local_addr()?))
    }

    /// The peer's address of a connected stream or datagram socket.
    pub fn remote_address<S: SocketHandle>(&self, sock: S) -> Result<SocketAddress> {
        let s = self
            .drv
            .socket_ref(sock.kind(), sock.key())
            .ok_or_else(Error::invalid_handle)?;
        Ok(SocketAddress::from_sock_addr(&s.peer_addr()?))
    }

    // -------------------------------------------------------------- datagrams

    /// A datagram socket bound to `bind` (UDP for IP addresses, Unix datagram
    /// for paths), with the options' default target, broadcast and reuse.
    pub fn create_datagram(
        &mut self,
        bind: impl Into<SocketAddress>,
        options: DatagramOptions,
    ) -> Result<DatagramSocket> {
        let bind = bind.into();
        let socket = new_socket(bind.domain()?, Type::DGRAM)?;
        if options.reuse_address {
            socket.set_reuse_address(true)?;
        }
        if options.broadcast {
            socket.set_broadcast(true)?;
        }
        if bind != SocketAddress::Unnamed {
            socket.bind(&bind.to_sock_addr()?)?;
        }
        if let Some(target) = &options.target {
            socket.connect(&target.to_sock_addr()?)?;
        }
        self.adopt_datagram_socket(socket)
    }

    /// Takes over an OS datagram socket (`std::net::UdpSocket`,
    /// `UnixDatagram`, `socket2::Socket`), which is made non-blocking.
    pub fn adopt_datagram(&mut self, socket: impl Into<Socket>) -> Result<DatagramSocket> {
        let socket = socket.into();
        socket.set_nonblocking(true)?;
        self.adopt_datagram_socket(socket)
    }

    /// A connected pair of Unix-domain datagram sockets (`socketpair`).
    #[cfg(unix)]
    pub fn datagram_pair(&mut self) -> Result<(DatagramSocket, DatagramSocket)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM, None)?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((self.adopt_datagram_socket(a)?, self.adopt_datagram_socket(b)?))
    }

    fn adopt_datagram_socket(&mut self, socket: Socket) -> Result<DatagramSocket> {
        let src = self.drv.sys.add_source(&socket, SourceKind::Socket)?;
        Ok(DatagramSocket(self.drv.tables.datagrams.insert(DatagramState {
            socket,
            io: IoSlots::new(src),
        })))
    }

    /// Receives one datagram into the spare room of `buf` (see
    /// [`buf`](crate::buf)); the callback gets its length and sender, and the
    /// buffer with the datagram appended. [`IoMode::Immediate`] gives
    /// [`Status::WouldBlock`] when nothing is queued; `Once` and `All` wait
    /// for a datagram. A datagram longer than the room is truncated to it; a
    /// full buffer is [`Status::InvalidArgument`].
    pub fn receive<B: IoBufMut>(
        &mut self,
        sock: DatagramSocket,
        buf: B,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, DatagramSocket, Result<(usize, SocketAddress)>, B) + 'static,
    ) {
        let mode = if mode == IoMode::All { IoMode::Once } else { mode };
        let cb = IoCallback::Recv(RecvFn::new(move |drv, key, r, b| {
            callback(drv, DatagramSocket(key), r, take_back(b))
        }));
        self.drv.begin_io(IoOp::new(datagram_owner(sock.0), cb, AnyBuf::for_read(buf), mode));
    }

    /// Sends `buf` as one datagram to `to`, or to the default target when `to`
    /// is `None`. [`IoMode::Immediate`] gives [`Status::WouldBlock`] when the
    /// send buffer is full; `Once` and `All` wait for room.
    pub fn send<B: IoBuf>(
        &mut self,
        sock: DatagramSocket,
        buf: B,
        to: Option<SocketAddress>,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, DatagramSocket, Result<usize>, B) + 'static,
    ) {
        let mode = if mode == IoMode::All { IoMode::Once } else { mode };
        let cb = IoCallback::Send(IoDoneFn::new(move |drv, key, r, b| {
            callback(drv, DatagramSocket(key), r, take_back(b))
        }));
        let mut op = IoOp::new(datagram_owner(sock.0), cb, AnyBuf::for_write(buf), mode);
        if let Some(to) = to {
            match to.to_sock_addr() {
                Ok(a) => op.target = crate::io::Target::To(Box::new(a)),
                Err(e) => return self.drv.fail_io(op, e),
            }
        }
        self.drv.begin_io(op);
    }

    /// Receives one datagram into `buf` now, without waiting and without a
    /// callback (tokio's `try_recv_from`): its size and its sender, as a
    /// [`receive`](Sockets::receive) gets them (a datagram larger than
    /// `buf` is cut to it); `WouldBlock` if none is queued, `Busy` while a
    /// `receive` is pending (it is owed the next datagram).
    pub fn try_receive(&mut self, sock: DatagramSocket, buf: &mut [u8]) -> Result<(usize, SocketAddress)> {
        self.drv
            .try_receive_now(datagram_owner(sock.0), buf.as_mut_ptr(), buf.len())
    }

    /// Sends `buf` as one datagram now, to `to` or to the default target
    /// when `to` is `None`, without waiting and without a callback (tokio's
    /// `try_send_to`): the size sent; `WouldBlock` if the send buffer is
    /// full, `Busy` while a [`send`](Sockets::send) is pending.
    pub fn try_send(&mut self, sock: DatagramSocket, buf: &[u8], to: Option<SocketAddress>) -> Result<usize> {
        let to = to.map(|a| a.to_sock_addr()).transpose()?;
        self.drv
            .try_send_now(datagram_owner(sock.0), buf.as_ptr(), buf.len(), to.as_ref())
    }

    /// Withdraws the pending receive: its callback will not run.
    pub fn cancel_receive(&mut self, sock: DatagramSocket) -> Option<Cancelled> {
        let key = self.drv.tables.datagrams.get_mut(sock.0)?.io.read_op.take()?;
        self.drv.cancel_io(key)
    }

    /// Withdraws the pending send: its callback will not run.
    pub fn cancel_send(&mut self, sock: DatagramSocket) -> Option<Cancelled> {
        let key = self.drv.tables.datagrams.get_mut(sock.0)?.io.write_op.take()?;
        self.drv.cancel_io(key)
    }

    /// Allows or forbids sending to broadcast addresses.
    pub fn set_broadcast(&mut self, sock: DatagramSocket, enable: bool) -> Result<()> {
        let s = self.drv.tables.datagrams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        Ok(s.socket.set_broadcast(enable)?)
    }

    /// Joins the multicast group `group` (IPv4 or IPv6) on the default
    /// interface (IPv4) or interface index 0 (IPv6).
    pub fn join_multicast(&mut self, sock: DatagramSocket, group: std::net::IpAddr) -> Result<()> {
        let s = self.drv.tables.datagrams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        match group {
            std::net::IpAddr::V4(g) => s.socket.join_multicast_v4(&g, &std::net::Ipv4Addr::UNSPECIFIED)?,
            std::net::IpAddr::V6(g) => s.socket.join_multicast_v6(&g, 0)?,
        }
        Ok(())
    }

    /// Whether multicast datagrams sent by this socket are looped back to
    /// local members (IPv4 and IPv6 alike, following the socket's family).
    pub fn set_multicast_loopback(&mut self, sock: DatagramSocket, enable: bool) -> Result<()> {
        let s = self.drv.tables.datagrams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        if s.socket.local_addr()?.is_ipv6() {
            s.socket.set_multicast_loop_v6(enable)?;
        } else {
            s.socket.set_multicast_loop_v4(enable)?;
        }
        Ok(())
    }

    /// The TTL (hop limit) of multicast datagrams sent by this socket.
    pub fn set_multicast_ttl(&mut self, sock: DatagramSocket, ttl: u32) -> Result<()> {
        let s = self.drv.tables.datagrams.get(sock.0).ok_or_else(Error::invalid_handle)?;
        if s.socket.local_addr()?.is_ipv6() {
            s.socket.set_multicast_hops_v6(ttl)?;
        } else {
            s.socket.set_multicast_ttl_v4(ttl)?;
        }
        Ok(())
    }
}
