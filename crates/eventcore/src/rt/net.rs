//! Sockets as futures: stream listeners, stream connections (TCP and Unix,
//! both [`ByteStream<StreamSocket>`]), and datagram sockets (UDP and Unix).
//!
//! As in the driver, TCP and Unix-domain sockets are one type each, told
//! apart by their address ([`SocketAddress::Inet`] or
//! [`SocketAddress::Unix`]); the aliases [`TcpListener`], [`UnixListener`],
//! [`TcpStream`], [`UnixStream`], [`UdpSocket`] and [`UnixDatagram`] name the
//! intent.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::addr::sealed::Target;
use super::addr::ToAddress;
use super::executor::{current, Core, Owned};
use super::io::ByteStream;
use super::op::{Completer, OpFuture, Operation, Queue};
use super::BufResult;
use crate::{IoBuf, IoBufMut};
use crate::{
    ConnectionState, DatagramOptions, Driver, Error, ListenOptions, Result, SocketAddress, Status, StreamListener,
    StreamSocket,
};

/// A TCP connection: a [`ByteStream`] over a stream socket.
pub type TcpStream = ByteStream<StreamSocket>;
/// A Unix-domain stream connection (the same type as [`TcpStream`]).
pub type UnixStream = ByteStream<StreamSocket>;
/// A TCP listener.
pub type TcpListener = Listener;
/// A Unix-domain stream listener (the same type as [`TcpListener`]).
pub type UnixListener = Listener;
/// A UDP socket.
pub type UdpSocket = DatagramSocket;
/// A Unix-domain datagram socket (the same type as [`UdpSocket`]).
pub type UnixDatagram = DatagramSocket;

// ----------------------------------------------------------------- connect

/// Connects to an address, or to each address a name resolves to in turn
/// until one connects (the last failure otherwise).
async fn connect_to(to: Result<Target>, bind: Option<Result<SocketAddress>>) -> Result<ByteStream<StreamSocket>> {
    let bind = bind.transpose()?;
    let one = |to: SocketAddress| {
        OpFuture::new(Connect {
            to: Some(to),
            bind: bind.clone(),
        })
    };
    match to? {
        Target::Address(a) => one(a).await,
        Target::Host(host, port) => {
            let mut last = Error::new(Status::NotFound);
            for ip in super::lookup(&host).await? {
                match one(std::net::SocketAddr::new(ip, port).into()).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

struct Connect {
    to: Option<SocketAddress>,
    bind: Option<SocketAddress>,
}

impl Operation for Connect {
    type Output = Result<()>;
    type Token = StreamSocket;
    type Ret = Result<ByteStream<StreamSocket>>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Result<()>>) -> Result<StreamSocket, Self::Ret> {
        let to = self.to.take().expect("started once");
        drv.sockets()
            .connect(to, self.bind.take(), move |_, _, r| {
                let _ = done.complete(r);
            })
            .map_err(Err)
    }

    fn cancel(drv: &mut Driver, sock: StreamSocket) {
        drv.sockets().cancel_connect(sock);
        let _ = drv.release_ref(sock);
    }

    fn ready(&mut self, core: &Rc<Core>, sock: StreamSocket, out: Result<()>) -> Self::Ret {
        match out {
            Ok(()) => Ok(ByteStream::from_raw(core.clone(), sock)),
            Err(e) => {
                core.release(sock);
                Err(e)
            }
        }
    }

    fn discard(core: &Rc<Core>, sock: StreamSocket, _: Result<()>) {
        core.release(sock);
    }
}

impl ByteStream<StreamSocket> {
    /// Connects to `to`: TCP for an IP address, Unix stream for a path.
    ///
    /// **Cancel safety:** cancel-safe: dropping the future withdraws the
    /// connect and closes the socket (a connection that was already made is
    /// closed too).
    pub fn connect(to: impl ToAddress) -> impl Future<Output = Result<ByteStream<StreamSocket>>> {
        connect_to(to.target(), None)
    }

    /// Connects to `to` from the local address `bind`.
    pub fn connect_from(to: impl ToAddress, bind: impl ToAddress) -> impl Future<Output = Result<ByteStream<StreamSocket>>> {
        connect_to(to.target(), Some(bind.target().and_then(Target::address)))
    }

    /// A connected pair of Unix-domain stream sockets.
    #[cfg(unix)]
    pub fn pair() -> Result<(UnixStream, UnixStream)> {
        let core = current();
        let (a, b) = core.with_driver(|drv| drv.sockets().stream_pair())?;
        Ok((ByteStream::from_raw(core.clone(), a), ByteStream::from_raw(core, b)))
    }

    /// Takes over a connected OS stream socket (`std::net::TcpStream`,
    /// `UnixStream`, `socket2::Socket`).
    pub fn adopt(socket: impl Into<socket2::Socket>) -> Result<ByteStream<StreamSocket>> {
        let core = current();
        let s = core.with_driver(|drv| drv.sockets().adopt_stream(socket))?;
        Ok(ByteStream::from_raw(core, s))
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddress> {
        let h = self.raw_handle();
        self.core().with_driver(|drv| drv.sockets().local_address(h))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddress> {
        let h = self.raw_handle();
        self.core().with_driver(|drv| drv.sockets().remote_address(h))
    }

    /// The connection's state (see [`ConnectionState`]).
    pub fn connection_state(&self) -> ConnectionState {
        let h = self.raw_handle();
        self.core().with_driver(|drv| drv.sockets().connection_state(h))
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, enable: bool) -> Result<()> {
        let h = self.raw_handle();
        self.core().with_driver(|drv| drv.sockets().set_no_delay(h, enable))
    }

    /// Turns TCP keep-alive on or off.
    pub fn set_keep_alive(&self, enable: bool) -> Result<()> {
        let h = self.raw_handle();
        self.core().with_driver(|drv| drv.sockets().set_keep_alive(h, enable))
    }

    /// Shuts down reading and/or writing (the peer reads end of stream after
    /// a write shutdown). The `futures-io` side's `close` does the same for
    /// writing, after flushing its buffer.
    pub fn shutdown(&self, read: bool, write: bool) -> Result<()> {
        let h = self.raw_handle();
        self.core().with_driver(|drv| drv.sockets().shutdown(h, read, write))
    }
}

// ---------------------------------------------------------------- listener

type Accepted = Result<(StreamSocket, SocketAddress)>;

/// A listening stream socket (TCP or Unix-domain).
///
/// The driver accepts connections as they arrive and queues them here until
/// [`Listener::accept`] takes them; dropping the listener closes it and every
/// connection still queued.
pub struct Listener {
    h: Owned<StreamListener>,
    queue: Rc<Queue<Accepted>>,
    /// The failure that ended accepting, reported again by later accepts.
    failed: RefCell<Option<Error>>,
}

/// Whether the driver goes on accepting after this failure (the rule of
/// `Driver::accepted` in `sockets.rs`: descriptors or memory ran out, the
/// peer gave up, or a firewall refused).
fn accept_goes_on(e: &Error) -> bool {
    matches!(
        e.status(),
        Status::ResourceExhausted | Status::Disconnected | Status::NotAllowed
    )
}

impl Listener {
    /// Binds to `addr` (TCP for an IP address, Unix for a path) and listens,
    /// with the default [`ListenOptions`].
    pub fn bind(addr: impl ToAddress) -> Result<Listener> {
        Listener::bind_with(addr, ListenOptions::default())
    }

    /// Binds to `addr` and listens, with `options`.
    pub fn bind_with(addr: impl ToAddress, options: ListenOptions) -> Result<Listener> {
        let addr = addr.target().and_then(Target::address)?;
        let core = current();
        let queue = Queue::new();
        let q = queue.clone();
        let handle = core.with_driver(|drv| {
            drv.sockets()
                .listen(addr, options, move |_, _, accepted| q.push(accepted))
        })?;
        Ok(Listener {
            h: Owned::new(core, handle),
            queue,
            failed: RefCell::new(None),
        })
    }

    /// Takes over a listening OS socket.
    pub fn adopt(socket: impl Into<socket2::Socket>) -> Result<Listener> {
        let core = current();
        let queue = Queue::new();
        let q = queue.clone();
        let handle = core.with_driver(|drv| {
            drv.sockets()
                .adopt_listener(socket, move |_, _, accepted| q.push(accepted))
        })?;
        Ok(Listener {
            h: Owned::new(core, handle),
            queue,
            failed: RefCell::new(None),
        })
    }

    /// The next connection and its peer's address, or an accept failure.
    /// Transient failures (out of descriptors, an aborted connection) are
    /// reported and accepting goes on; after any other failure the listener
    /// no longer accepts, and every later `accept` reports that failure.
    ///
    /// **Cancel safety:** cancel-safe: a connection is only taken from the
    /// queue by the poll that returns it.
    pub async fn accept(&self) -> Result<(ByteStream<StreamSocket>, SocketAddress)> {
        std::future::poll_fn(|cx| match self.poll_accepted(cx) {
            Poll::Pending => match &*self.failed.borrow() {
                Some(e) => Poll::Ready(Err(e.clone())),
                None => Poll::Pending,
            },
            ready => ready,
        })
        .await
    }

    /// The next queued connection or accept failure (a failure that ends
    /// accepting is remembered in `failed`).
    pub(crate) fn poll_accepted(&self, cx: &mut Context<'_>) -> Poll<Result<(ByteStream<StreamSocket>, SocketAddress)>> {
        self.queue.poll_next(cx).map(|accepted| match accepted {
            Ok((sock, peer)) => Ok((ByteStream::from_raw(self.h.core.clone(), sock), peer)),
            Err(e) => {
                if !accept_goes_on(&e) {
                    self.failed.borrow_mut().get_or_insert_with(|| e.clone());
                }
                Err(e)
            }
        })
    }

    /// Whether accepting has ended and nothing is left to take.
    pub(crate) fn accept_ended(&self) -> bool {
        self.failed.borrow().is_some() && self.queue.is_empty()
    }

    /// The local address (the port chosen for port 0).
    pub fn local_addr(&self) -> Result<SocketAddress> {
        let h = self.h.handle;
        self.h.core.with_driver(|drv| drv.sockets().local_address(h))
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> StreamListener {
        self.h.handle
    }

    pub(crate) fn core(&self) -> &Core {
        &self.h.core
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Connections accepted and not taken yet; the listener itself is
        // released by its `Owned` right after.
        for (sock, _) in self.queue.drain().into_iter().flatten() {
            self.h.core.release(sock);
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Listener").field(&self.h.handle).finish()
    }
}

// ---------------------------------------------------------------- datagram

/// A datagram socket (UDP or Unix-domain).
///
/// One receive and one send may be in flight at once; a second one fails
/// with [`Status::Busy`] without reaching the driver.
pub struct DatagramSocket {
    h: Owned<crate::DatagramSocket>,
    receiving: Cell<bool>,
    sending: Cell<bool>,
}

struct SendTo<B> {
    handle: crate::DatagramSocket,
    buf: Option<B>,
    to: Option<SocketAddress>,
}

impl<B> Unpin for SendTo<B> {}

impl<B: IoBuf> Operation for SendTo<B> {
    type Output = BufResult<usize, B>;
    type Token = crate::DatagramSocket;
    type Ret = BufResult<usize, B>;

    fn start(
        &mut self,
        drv: &mut Driver,
        done: Completer<BufResult<usize, B>>,
    ) -> Result<crate::DatagramSocket, BufResult<usize, B>> {
        let buf = self.buf.take().expect("started once");
        drv.sockets().send(
            self.handle,
            buf,
            self.to.take(),
            crate::IoMode::Once,
            move |_, _, r, b| {
                let _ = done.complete((r, b));
            },
        );
        Ok(self.handle)
    }

    fn cancel(drv: &mut Driver, h: crate::DatagramSocket) {
        drv.sockets().cancel_send(h);
    }

    fn ready(&mut self, _: &Rc<Core>, _: crate::DatagramSocket, out: Self::Output) -> Self::Ret {
        out
    }

    fn busy(&mut self) -> BufResult<usize, B> {
        (Err(Error::new(Status::Busy)), self.buf.take().expect("refused before it started"))
    }
}

struct Receive<B> {
    handle: crate::DatagramSocket,
    buf: Option<B>,
}

impl<B> Unpin for Receive<B> {}

/// The datagrams a [`DatagramSocket`] receives (see
/// [`DatagramSocket::datagrams`]): a `Stream` and `FusedStream`.
pub struct Datagrams<'a> {
    sock: &'a DatagramSocket,
    max_len: usize,
    pending: Option<OpFuture<'a, Receive<Vec<u8>>>>,
}

impl futures_core::Stream for Datagrams<'_> {
    type Item = Result<(Vec<u8>, SocketAddress)>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let sock = this.sock;
        let max_len = this.max_len;
        let pending = this.pending.get_or_insert_with(|| {
            OpFuture::guarded(
                Receive {
                    handle: sock.h.handle,
                    buf: Some(Vec::with_capacity(max_len)),
                },
                &sock.receiving,
            )
        });
        let (result, buf) = std::task::ready!(std::pin::Pin::new(pending).poll(cx));
        this.pending = None;
        Poll::Ready(Some(result.map(|(_, from)| (buf, from))))
    }
}

impl futures_core::FusedStream for Datagrams<'_> {
    fn is_terminated(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for Datagrams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datagrams")
            .field("max_len", &self.max_len)
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

impl<B: IoBufMut> Operation for Receive<B> {
    type Output = BufResult<(usize, SocketAddress), B>;
    type Token = crate::DatagramSocket;
    type Ret = BufResult<(usize, SocketAddress), B>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<crate::DatagramSocket, Self::Ret> {
        let buf = self.buf.take().expect("started once");
        drv.sockets()
            .receive(self.handle, buf, crate::IoMode::Once, move |_, _, r, b| {
                let _ = done.complete((r, b));
            });
        Ok(self.handle)
    }

    fn cancel(drv: &mut Driver, h: crate::DatagramSocket) {
        drv.sockets().cancel_receive(h);
    }

    fn ready(&mut self, _: &Rc<Core>, _: crate::DatagramSocket, out: Self::Output) -> Self::Ret {
        out
    }

    fn busy(&mut self) -> Self::Ret {
        (Err(Error::new(Status::Busy)), self.buf.take().expect("refused before it started"))
    }
}

impl DatagramSocket {
    /// A socket bound to `addr` (UDP for an IP address, Unix datagram for a
    /// path; port 0 picks a free port).
    pub fn bind(addr: impl ToAddress) -> Result<DatagramSocket> {
        DatagramSocket::bind_with(addr, DatagramOptions::default())
    }

    /// A socket bound to `addr`, with `options` (default target, broadcast,
    /// address reuse).
    pub fn bind_with(addr: impl ToAddress, options: DatagramOptions) -> Result<DatagramSocket> {
        let addr = addr.target().and_then(Target::address)?;
        let core = current();
        let handle = core.with_driver(|drv| drv.sockets().create_datagram(addr, options))?;
        Ok(DatagramSocket::from_raw(core, handle))
    }

    /// A connected pair of Unix-domain datagram sockets.
    #[cfg(unix)]
    pub fn pair() -> Result<(DatagramSocket, DatagramSocket)> {
        let core = current();
        let (a, b) = core.with_driver(|drv| drv.sockets().datagram_pair())?;
        Ok((
            DatagramSocket::from_raw(core.clone(), a),
            DatagramSocket::from_raw(core, b),
        ))
    }

    /// Takes over an OS datagram socket.
    pub fn adopt(socket: impl Into<socket2::Socket>) -> Result<DatagramSocket> {
        let core = current();
        let handle = core.with_driver(|drv| drv.sockets().adopt_datagram(socket))?;
        Ok(DatagramSocket::from_raw(core, handle))
    }

    fn from_raw(core: Rc<Core>, handle: crate::DatagramSocket) -> DatagramSocket {
        DatagramSocket {
            h: Owned::new(core, handle),
            receiving: Cell::new(false),
            sending: Cell::new(false),
        }
    }

    /// Sends `buf` as one datagram to `to`: the count and the buffer.
    ///
    /// **Cancel safety:** not cancel-safe once polled: dropped while pending,
    /// the datagram may or may not have been sent.
    pub fn send_to<B: IoBuf>(&self, buf: B, to: impl Into<SocketAddress>) -> impl Future<Output = BufResult<usize, B>> + '_ {
        OpFuture::guarded(
            SendTo {
                handle: self.h.handle,
                buf: Some(buf),
                to: Some(to.into()),
            },
            &self.sending,
        )
    }

    /// Sends `buf` to the default target (see [`DatagramOptions::target`]).
    ///
    /// **Cancel safety:** as [`DatagramSocket::send_to`].
    pub fn send<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> + '_ {
        OpFuture::guarded(
            SendTo {
                handle: self.h.handle,
                buf: Some(buf),
                to: None,
            },
            &self.sending,
        )
    }

    /// Receives one datagram into the spare room of `buf` (a `Vec`'s
    /// capacity after its length: see [`buf`](crate::buf); truncated to
    /// it): the length and the sender, and the buffer with the datagram
    /// appended.
    ///
    /// **Cancel safety:** not cancel-safe once polled: dropped while pending,
    /// a datagram the OS already delivered into the buffer is lost.
    pub fn recv_from<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<(usize, SocketAddress), B>> + '_ {
        OpFuture::guarded(
            Receive {
                handle: self.h.handle,
                buf: Some(buf),
            },
            &self.receiving,
        )
    }

    /// Sends `buf` as one datagram now, to `to` or to the default target
    /// when `to` is `None`, without waiting (tokio's `try_send_to`): the
    /// size sent; `WouldBlock` if the send buffer is full, `Busy` while a
    /// [`send_to`](DatagramSocket::send_to) is pending.
    pub fn try_send_to(&self, buf: &[u8], to: Option<SocketAddress>) -> Result<usize> {
        let h = self.h.handle;
        self.h.core.with_driver(|drv| drv.sockets().try_send(h, buf, to))
    }

    /// Receives one datagram into `buf` now, without waiting (tokio's
    /// `try_recv_from`): its size (cut to `buf`) and its sender;
    /// `WouldBlock` if none is queued, `Busy` while a
    /// [`recv_from`](DatagramSocket::recv_from) is pending.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddress)> {
        let h = self.h.handle;
        self.h.core.with_driver(|drv| drv.sockets().try_receive(h, buf))
    }

    /// The datagrams this socket receives, as a `futures` stream of
    /// `(datagram, sender)` (each in a buffer of at most `max_len` bytes,
    /// truncated to the datagram's length). The stream never ends; a receive
    /// error is an item and the stream goes on.
    ///
    /// **Cancel safety:** as [`recv_from`](DatagramSocket::recv_from):
    /// dropping the stream while a receive is pending may lose the datagram
    /// the OS was delivering.
    pub fn datagrams(&self, max_len: usize) -> Datagrams<'_> {
        Datagrams {
            sock: self,
            max_len,
            pending: None,
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddress> {
        let h = self.h.handle;
        self.h.core.with_driver(|drv| drv.sockets().local_address(h))
    }

    /// The default target's address.
    pub fn peer_addr(&self) -> Result<SocketAddress> {
        let h = self.h.handle;
        self.h.core.with_driver(|drv| drv.sockets().remote_address(h))
    }

    /// Allows or forbids sending to broadcast addresses.
    pub fn set_broadcast(&self, enable: bool) -> Result<()> {
        let h = self.h.handle;
        self.h.core.with_driver(|drv| drv.sockets().set_broadcast(h, enable))
    }

    /// Joins a multicast group on the default interface.
    pub fn join_multicast(&self, group: std::net::IpAddr) -> Result<()> {
        let h = self.h.handle;
        self.h.core.with_driver(|drv| drv.sockets().join_multicast(h, group))
    }

    /// Whether this socket's multicast datagrams loop back to local members.
    pub fn set_multicast_loopback(&self, enable: bool) -> Result<()> {
        let h = self.h.handle;
        self.h.core
            .with_driver(|drv| drv.sockets().set_multicast_loopback(h, enable))
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> crate::DatagramSocket {
        self.h.handle
    }

    pub(crate) fn core(&self) -> &Core {
        &self.h.core
    }
}


impl std::fmt::Debug for DatagramSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatagramSocket").field(&self.h.handle).finish()
    }
}
