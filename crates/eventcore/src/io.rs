//! The I/O engine shared by every readiness- or completion-driven handle
//! (stream and datagram sockets, listeners, pipes, and the driver's internal
//! sources such as signalfd): I/O modes, one read and one write slot per
//! handle, cancellation with owned buffers, and dispatch of completions.
//!
//! [`IoMode::All`] is implemented here, once, for every backend: a backend only
//! ever performs "at least one byte" transfers, and the driver re-issues them
//! at the new offset until the buffer is done or an error ends it.

use socket2::SockAddr;

use crate::sys::buf::AnyBuf;
use crate::sys::Backend as _;
use crate::driver::{Op, Outcome};
use crate::handle::{HandleKind, Key};
use crate::sockets::SocketAddress;
use crate::sys::watch::WatchRead;
use crate::sys::{self, Extra, Request, SourceId};
use crate::{Driver, Error, Result, Status};

/// How much a read or write must transfer before its callback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoMode {
    /// One non-blocking attempt; if nothing can move, the result is
    /// [`Status::WouldBlock`]. The callback still runs from `process_events`.
    Immediate,
    /// Wait until at least one byte moves; complete with what one transfer did.
    Once,
    /// The whole buffer, or an error / end of stream with the count so far in
    /// [`Error::transferred`]. Datagram sockets treat it as `Once`.
    All,
}

/// What a cancel found and gave back.
#[derive(Debug)]
#[must_use = "a cancel gives the operation's buffer back"]
pub struct Cancelled {
    /// The operation's buffer, or `None` when the OS (or a worker thread) may
    /// still write into it: the driver then keeps it until the aborted
    /// operation is reaped and drops it. Each cancel call documents when.
    /// [`AnyBuf::downcast`] gives back the type that went in (a vectored
    /// write's list comes back as [`Cancelled::buffers`]).
    pub buffer: Option<AnyBuf>,
    /// Bytes the operation had already transferred (an [`IoMode::All`]
    /// operation may have done part of its work).
    pub transferred: usize,
}

impl Cancelled {
    /// The buffer as the type the operation took (`None` if the driver kept
    /// it, or if `B` is not that type).
    pub fn buffer_as<B: 'static>(self) -> Option<B> {
        self.buffer?.downcast().ok()
    }

    /// The buffers of a cancelled vectored write, as the type they went in
    /// as (`None` if the driver kept them or `B` is not that type).
    pub fn buffers<B: 'static>(self) -> Option<Vec<B>> {
        self.buffer?.downcast_list().ok()
    }
}

/// The I/O state every I/O handle embeds.
pub(crate) struct IoSlots {
    pub src: SourceId,
    pub read_op: Option<Key>,
    pub write_op: Option<Key>,
    /// A connect is in progress (stream sockets only).
    pub connecting: bool,
    /// False once the handle cannot do I/O any more (a failed or cancelled connect).
    pub usable: bool,
    /// End of stream was read, or the connection was reset.
    pub read_closed: bool,
    /// This side shut down writing, or the connection was reset.
    pub write_closed: bool,
}

impl IoSlots {
    pub fn new(src: SourceId) -> IoSlots {
        IoSlots {
            src,
            read_op: None,
            write_op: None,
            connecting: false,
            usable: true,
            read_closed: false,
            write_closed: false,
        }
    }
}

/// The handle an I/O operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub kind: HandleKind,
    pub key: Key,
}

/// The driver's own sources, whose completions are not user callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Internal {
    /// The signal source (signalfd) became readable.
    Signals,
    /// A process's exit source (pidfd) became readable: it exited.
    ProcessExit,
    /// A directory watch engine's read completed (inotify readable, or
    /// `ReadDirectoryChangesW` collected changes into the op's buffer).
    Watch {
        reader: crate::sys::watch::Reader,
        read: crate::sys::watch::WatchRead,
    },
}

/// The sender of a received datagram, as the backend reported it.
fn sender(extra: &Extra) -> SocketAddress {
    match extra {
        Extra::From(a) => SocketAddress::from_peer(a),
        _ => SocketAddress::Unnamed,
    }
}

/// The buffer an operation took, handed back as its own type. The driver
/// stores what the typed call gave it, so the type always matches.
#[inline(always)]
pub(crate) fn take_back<B: 'static>(buf: AnyBuf) -> B {
    match buf.downcast() {
        Ok(b) => b,
        Err(other) => changed_type(other),
    }
}

#[cold]
#[inline(never)]
fn changed_type(buf: AnyBuf) -> ! {
    unreachable!("an operation's buffer changed type: {buf:?}")
}

/// The buffers of a vectored write, handed back (see [`take_back`]).
pub(crate) fn take_back_list<B: 'static>(buf: AnyBuf) -> Vec<B> {
    match buf.downcast_list() {
        Ok(b) => b,
        Err(other) => unreachable!("a vectored write's buffers changed type: {other:?}"),
    }
}

/// A read's or write's callback; the key is the handle it ran on.
pub(crate) type IoDoneFn = crate::sys::inline_fn::BufFn<Driver, Key, Result<usize>>;
/// A datagram receive's callback; the key is the socket.
pub(crate) type RecvFn = crate::sys::inline_fn::BufFn<Driver, Key, Result<(usize, SocketAddress)>>;
/// A connect's callback; the key is the socket.
pub(crate) type ConnectFn = crate::sys::inline_fn::DoneFn<Driver, Key>;

pub(crate) enum IoCallback {
    Connect(ConnectFn),
    Read(IoDoneFn),
    Write(IoDoneFn),
    Recv(RecvFn),
    Send(IoDoneFn),
    /// A listener's accept; its repeating callback lives in the listener.
    Accept,
    /// A driver-internal source became ready.
    #[cfg_attr(not(unix), allow(dead_code))]
    Internal(Internal),
    /// Cancelled while the OS may still touch the buffer: complete silently.
    Orphaned,
}

impl IoCallback {
    /// The operation its errors name.
    fn operation(&self) -> crate::error::Operation {
        use crate::error::Operation as O;
        match self {
            IoCallback::Connect(_) => O::Connect,
            IoCallback::Read(_) => O::Read,
            IoCallback::Write(_) => O::Write,
            IoCallback::Recv(_) => O::Receive,
            IoCallback::Send(_) => O::Send,
            IoCallback::Accept => O::Accept,
            IoCallback::Internal(_) | IoCallback::Orphaned => O::Internal,
        }
    }

    fn is_reading(&self) -> bool {
        matches!(
            self,
            IoCallback::Read(_) | IoCallback::Recv(_) | IoCallback::Accept | IoCallback::Internal(_)
        )
    }
}

pub(crate) struct IoOp {
    pub owner: Owner,
    pub src: SourceId,
    pub callback: IoCallback,
    pub buf: AnyBuf,
    pub mode: IoMode,
    pub done: usize,
    /// Where the transfer goes, besides the handle's stream.
    pub target: Target,
}

/// Where an I/O operation's bytes go besides the handle's own stream: one
/// field for what only datagram sends and positional file I/O have.
pub(crate) enum Target {
    /// The stream (or the connected peer) itself.
    Stream,
    /// The destination of a datagram send (boxed: sends with an address are
    /// the minority, and a `SockAddr` is 128 bytes).
    To(Box<SockAddr>),
    /// The file position of a positional read or write (`done` is added to
    /// it; `u64::MAX` means "at the end", appending).
    #[cfg_attr(unix, allow(dead_code))]
    At(u64),
}

impl IoOp {
    pub fn new(owner: Owner, callback: IoCallback, buf: AnyBuf, mode: IoMode) -> IoOp {
        IoOp {
            owner,
            src: SourceId(0),
            callback,
            buf,
            mode,
            done: 0,
            target: Target::Stream,
        }
    }

    /// The request to retry for this operation after its source became
    /// ready (readiness backends park only the token); `None` for an
    /// operation that is never re-issued.
    pub(crate) fn parked_request(&mut self) -> Option<Request> {
        match self.callback {
            IoCallback::Connect(_) | IoCallback::Orphaned => None,
            _ => Some(self.request()),
        }
    }

    fn request(&mut self) -> Request {
        let at = match self.target {
            Target::At(at) => Some(at),
            _ => None,
        };
        match (&self.callback, at) {
            (IoCallback::Read(_), _) if self.buf.is_unallocated() => Request::Readable,
            (IoCallback::Read(_), Some(at)) => {
                let offset = at.saturating_add(self.done as u64);
                let (ptr, len) = self.buf.window(true, self.done);
                Request::ReadAt { ptr, len, offset }
            }
            (IoCallback::Write(_), Some(at)) => {
                // u64::MAX is "at the end" (appending) and stays so.
                let offset = at.saturating_add(self.done as u64);
                let (ptr, len) = self.buf.window(false, self.done);
                Request::WriteAt { ptr, len, offset }
            }
            (IoCallback::Read(_), _) => {
                let (ptr, len) = self.buf.window(true, self.done);
                Request::Read { ptr, len }
            }
            (IoCallback::Write(_), _) if self.buf.is_list() => {
                let (slices, count) = self.buf.write_slices(self.done).expect("a list");
                Request::WriteVectored { slices, count }
            }
            (IoCallback::Write(_), _) => {
                let (ptr, len) = self.buf.window(false, self.done);
                Request::Write { ptr, len }
            }
            (IoCallback::Recv(_), _) => {
                let (ptr, len) = self.buf.read_window(0);
                Request::RecvFrom { ptr, len }
            }
            (IoCallback::Send(_), _) => {
                let bytes = self.buf.write_window(0);
                Request::SendTo {
                    ptr: bytes.as_ptr(),
                    len: bytes.len(),
                    to: match &self.target {
                        Target::To(a) => &**a as *const SockAddr,
                        _ => std::ptr::null(),
                    },
                }
            }
            (IoCallback::Accept, _) => Request::Accept,
            (
                IoCallback::Internal(Internal::Watch {
                    read: WatchRead::DirectoryChanges { recursive },
                    ..
                }),
                _,
            ) => {
                let recursive = *recursive;
                let (ptr, len) = self.buf.read_window(0);
                Request::DirectoryChanges { ptr, len, recursive }
            }
            (IoCallback::Internal(_), _) => Request::Readable,
            (IoCallback::Connect(_) | IoCallback::Orphaned, _) => unreachable!("never re-issued"),
        }
    }
}

impl Driver {
    /// The I/O slots of an I/O handle, if it is live.
    pub(crate) fn io_slots(&mut self, owner: Owner) -> Option<&mut IoSlots> {
        match owner.kind {
            HandleKind::Stream => self.tables.streams.get_mut(owner.key).map(|s| &mut s.io),
            HandleKind::Listener => self.tables.listeners.get_mut(owner.key).map(|s| &mut s.io),
            HandleKind::Datagram => self.tables.datagrams.get_mut(owner.key).map(|s| &mut s.io),
            HandleKind::Pipe => self.tables.pipes.get_mut(owner.key).map(|s| &mut s.io),
            #[cfg(windows)]
            HandleKind::File => self.tables.files.get_mut(owner.key).map(|s| &mut s.io.slots),
            _ => None,
        }
    }

    /// Starts a user I/O operation on `op.owner`: checks the handle and its
    /// slot, then hands the request to the backend. Every failure is delivered
    /// through the callback from `process_events`.
    pub(crate) fn begin_io(&mut self, mut op: IoOp) {
        let reading = op.callback.is_reading();
        // The key the op will have, recorded in the handle's slot in the
        // same look-up that checks the handle.
        let key = self.ops.next_key();
        let room = op.buf.capacity_for(reading);
        let full = room == 0 && reading && !op.buf.is_unallocated();
        let Some(io) = self.io_slots(op.owner) else {
            return self.fail_io(op, Error::invalid_handle());
        };
        op.src = io.src;
        if io.connecting || !io.usable {
            return self.fail_io(op, Error::new(Status::Disconnected));
        }
        let slot = if reading { &mut io.read_op } else { &mut io.write_op };
        if slot.is_some() {
            return self.fail_io(op, Error::new(Status::Busy));
        }
        if full {
            // A full buffer: reading nothing into it would look like a
            // wait for data (or end of stream) and loop forever.
            return self.fail_io(op, Error::new(Status::InvalidArgument));
        }
        *slot = Some(key);
        if room == 0 && (op.mode == IoMode::Immediate || !reading) {
            return self.complete_empty(key, op);
        }
        let immediate = op.mode == IoMode::Immediate;
        let stored = self.start_io(op, immediate);
        debug_assert_eq!(stored, key);
    }

    /// Nothing to move (an empty write, an empty immediate read): the
    /// operation completes at once (from process_events).
    #[cold]
    #[inline(never)]
    fn complete_empty(&mut self, key: Key, op: IoOp) {
        let stored = self.ops.insert(Op::Io(op));
        debug_assert_eq!(stored, key);
        self.push_ready(key, Outcome::Sys(sys::Completion::new(key.to_u64(), Ok(0))));
    }

    /// Stores an operation and hands it to the backend; returns its key.
    #[inline(always)]
    pub(crate) fn start_io(&mut self, mut op: IoOp, immediate: bool) -> Key {
        if matches!(op.callback, IoCallback::Internal(_)) {
            self.internal_ops += 1;
        }
        let src = op.src;
        // The request is built before the op moves into the table: its
        // pointers address the buffer's heap memory (or the boxed address
        // of a datagram), which does not move with it.
        let req = op.request();
        let key = self.ops.insert(Op::Io(op));
        self.issue(key, src, req, immediate);
        key
    }

    /// Hands `req`, the request of the op `key`, to the backend.
    #[inline]
    fn issue(&mut self, key: Key, src: SourceId, req: Request, immediate: bool) {
        let token = key.to_u64();
        if immediate {
            let c = self.sys.attempt(src, token, req);
            self.push_ready(key, Outcome::Sys(c));
        } else if let Some(c) = self.sys.submit(src, token, req) {
            self.push_ready(key, Outcome::Sys(c));
        }
    }

    /// The checks of a transfer without a callback (`try_read` /
    /// `try_write`) in one direction: the handle's source, `None` for an
    /// empty transfer, `InvalidHandle`, `Disconnected` for a socket that is
    /// connecting or failed, `Busy` behind a pending operation.
    fn immediate_source(&mut self, owner: Owner, reading: bool, len: usize) -> Result<Option<SourceId>> {
        let io = self.io_slots(owner).ok_or_else(Error::invalid_handle)?;
        if io.connecting || !io.usable {
            return Err(Error::new(Status::Disconnected));
        }
        if (if reading { io.read_op } else { io.write_op }).is_some() {
            return Err(Error::new(Status::Busy));
        }
        Ok((len > 0).then_some(io.src))
    }

    /// One non-blocking read into `ptr[..len]` now, with no callback (the
    /// `try_read` calls; the caller's buffer is valid for `len` writes). `WouldBlock` if nothing can be read, `Busy` while
    /// a read is pending on the handle, end of stream `Disconnected`; the
    /// connection state is updated as a callback read would.
    pub(crate) fn try_read_now(&mut self, owner: Owner, ptr: *mut u8, len: usize) -> Result<usize> {
        let Some(src) = self.immediate_source(owner, true, len)? else {
            return Ok(0);
        };
        let req = Request::Read { ptr, len };
        // The token names no operation: the completion comes back here.
        let c = self.sys.attempt(src, u64::MAX, req);
        let result = match c.result {
            Err(e) if sys::read_error_is_end_of_stream(&e) => Ok(0),
            r => r,
        };
        let result = match result {
            Ok(0) => Err(Error::new(Status::Disconnected)),
            Ok(n) => return Ok(n),
            Err(e) => Err(Error::from(e)),
        };
        if let Err(e) = &result {
            self.note_disconnected(owner, true, e);
        }
        result.map_err(|e| e.in_operation(crate::error::Operation::Read))
    }

    /// One non-blocking write of `ptr[..len]` now, with no callback (the
    /// `try_write` calls; the caller's bytes are valid for `len` reads):
    /// the count, `WouldBlock` if nothing can be written, `Busy` while a
    /// write is pending on the handle (bytes must not overtake it); the
    /// connection state is updated as a callback write would.
    pub(crate) fn try_write_now(&mut self, owner: Owner, ptr: *const u8, len: usize) -> Result<usize> {
        let Some(src) = self.immediate_source(owner, false, len)? else {
            return Ok(0);
        };
        // The token names no operation: the completion comes back here.
        let c = self.sys.attempt(src, u64::MAX, Request::Write { ptr, len });
        match c.result {
            Ok(n) => Ok(n),
            Err(e) => {
                let e = Error::from(e);
                if e.status() != Status::WouldBlock {
                    self.note_disconnected(owner, false, &e);
                }
                Err(e.in_operation(crate::error::Operation::Write))
            }
        }
    }

    /// One non-blocking receive of a datagram into `ptr[..len]` now, with
    /// no callback (`try_receive`; the caller's buffer is valid for `len`
    /// writes): its size and sender, `WouldBlock` if none is queued, `Busy`
    /// while a receive is pending on the socket.
    pub(crate) fn try_receive_now(&mut self, owner: Owner, ptr: *mut u8, len: usize) -> Result<(usize, SocketAddress)> {
        // A datagram may be empty: the length is no reason to skip the call.
        let src = self.immediate_source(owner, true, 1)?.expect("a source for a non-empty length");
        let c = self.sys.attempt(src, u64::MAX, Request::RecvFrom { ptr, len });
        match c.result {
            Ok(n) => Ok((n, sender(&c.extra))),
            Err(e) => Err(Error::from(e).in_operation(crate::error::Operation::Receive)),
        }
    }

    /// One non-blocking send of `ptr[..len]` as a datagram now, to `to` or
    /// the socket's target, with no callback (`try_send`; the bytes are
    /// valid for `len` reads): the size sent, `WouldBlock` if the send
    /// buffer is full, `Busy` while a send is pending on the socket.
    pub(crate) fn try_send_now(
        &mut self,
        owner: Owner,
        ptr: *const u8,
        len: usize,
        to: Option<&SockAddr>,
    ) -> Result<usize> {
        let src = self.immediate_source(owner, false, 1)?.expect("a source for a non-empty length");
        let to = to.map_or(std::ptr::null(), |a| a as *const SockAddr);
        let c = self.sys.attempt(src, u64::MAX, Request::SendTo { ptr, len, to });
        c.result
            .map_err(|e| Error::from(e).in_operation(crate::error::Operation::Send))
    }

    /// A transfer ended with `e`: a disconnect closes the direction it
    /// happened on, and a reset both (EPIPE after our own shutdown, or the
    /// end of the stream, ends only the one).
    fn note_disconnected(&mut self, owner: Owner, reading: bool, e: &Error) {
        if e.status() != Status::Disconnected {
            return;
        }
        let reset = e
            .raw_os_error()
            .is_some_and(|code| std::io::Error::from_raw_os_error(code).kind() == std::io::ErrorKind::ConnectionReset);
        if let Some(io) = self.io_slots(owner) {
            if reading || reset {
                io.read_closed = true;
            }
            if !reading || reset {
                io.write_closed = true;
            }
        }
    }

    /// Queues `op` to complete with `err` (no slot is taken).
    #[cold]
    #[inline(never)]
    pub(crate) fn fail_io(&mut self, op: IoOp, err: Error) {
        let key = self.ops.insert(Op::Io(op));
        self.push_ready(key, Outcome::Failed(err));
    }

    fn remove_io(&mut self, key: Key) -> Option<IoOp> {
        match self.ops.remove(key) {
            Some(Op::Io(op)) => {
                if matches!(op.callback, IoCallback::Internal(_)) {
                    self.internal_ops -= 1;
                }
                Some(op)
            }
            Some(_) => unreachable!("an I/O key names an I/O op"),
            None => None,
        }
    }

    /// Withdraws an I/O operation: its callback will never run. Returns what
    /// can be given back now.
    pub(crate) fn cancel_io(&mut self, key: Key) -> Option<Cancelled> {
        let Some(Op::Io(op)) = self.ops.get_mut(key) else {
            return None;
        };
        if matches!(op.callback, IoCallback::Orphaned) {
            return None;
        }
        let (src, mut transferred) = (op.src, op.done);
        // The backend may already have done the transfer, with its completion
        // still queued: then the bytes are in the buffer (or on the wire) and
        // the caller must hear how many.
        for ready in self.ready.iter().filter(|r| r.op == key) {
            if let Outcome::Sys(sys::Completion { result: Ok(n), .. }) = &ready.outcome {
                transferred += n;
            }
        }
        if let Some(moved) = self.sys.cancel(src, key.to_u64()) {
            transferred += moved;
            let op = self.remove_io(key).expect("checked above");
            let mut buf = op.buf;
            if op.callback.is_reading() {
                buf.commit_read(transferred);
            }
            Some(Cancelled {
                buffer: Some(buf),
                transferred,
            })
        } else {
            if matches!(op.callback, IoCallback::Internal(_)) {
                self.internal_ops -= 1;
            }
            op.callback = IoCallback::Orphaned;
            Some(Cancelled {
                buffer: None,
                transferred,
            })
        }
    }

    /// Cancels both slots of a handle that is going away.
    pub(crate) fn cancel_slots(&mut self, owner: Owner) {
        let Some(io) = self.io_slots(owner) else {
            return;
        };
        let (r, w) = (io.read_op.take(), io.write_op.take());
        for key in [r, w].into_iter().flatten() {
            // What comes back is of no interest: the handle is going away.
            let _ = self.cancel_io(key);
        }
    }

    /// Finishes the I/O operation `op`, already out of the table (`key` was
    /// its key); an `IoMode::All` transfer that goes on is stored again,
    /// under a new key. Returns whether a user callback ran.
    pub(crate) fn complete_io(&mut self, key: Key, mut op: IoOp, outcome: Outcome) -> bool {
        // The common case first: a transfer the OS finished with a count.
        if let Outcome::Sys(sys::Completion { result: Ok(n), .. }) = outcome {
            let stream = matches!(op.target, Target::Stream);
            match op.callback {
                // A read of 0 bytes (the end of the stream, or a wait for
                // readability) and positional transfers take the general path.
                IoCallback::Read(_) if stream && n > 0 => return self.transferred(key, op, n, true),
                IoCallback::Write(_) if stream => return self.transferred(key, op, n, false),
                IoCallback::Send(cb) => {
                    self.release_slot(op.owner, false, key);
                    cb.call(self, op.owner.key, Ok(n), op.buf);
                    return true;
                }
                IoCallback::Recv(cb) => {
                    op.buf.commit_read(n);
                    self.release_slot(op.owner, true, key);
                    let Outcome::Sys(c) = outcome else {
                        unreachable!("matched above")
                    };
                    cb.call(self, op.owner.key, Ok((n, sender(&c.extra))), op.buf);
                    return true;
                }
                _ => {}
            }
        }
        self.complete_io_general(key, op, outcome)
    }

    /// A stream read or write moved `n` bytes: it goes on (`IoMode::All`
    /// with room left) or its callback runs with the total.
    #[inline(always)]
    fn transferred(&mut self, key: Key, mut op: IoOp, n: usize, reading: bool) -> bool {
        op.done += n;
        if op.mode == IoMode::All && op.done < op.buf.capacity_for(reading) {
            self.continue_io(key, op, reading);
            return false;
        }
        if reading {
            op.buf.commit_read(op.done);
        }
        self.release_slot(op.owner, reading, key);
        match op.callback {
            IoCallback::Read(cb) | IoCallback::Write(cb) => cb.call(self, op.owner.key, Ok(op.done), op.buf),
            _ => unreachable!("a stream transfer"),
        }
        true
    }

    /// Empties the handle's slot in one direction if it still holds `key`.
    #[inline(always)]
    fn release_slot(&mut self, owner: Owner, reading: bool, key: Key) {
        if let Some(io) = self.io_slots(owner) {
            let slot = if reading { &mut io.read_op } else { &mut io.write_op };
            if *slot == Some(key) {
                *slot = None;
            }
        }
    }

    /// [`complete_io`](Driver::complete_io) for every other outcome:
    /// errors, the end of a stream, accepts, connects, internal sources.
    #[inline(never)]
    fn complete_io_general(&mut self, key: Key, mut op: IoOp, outcome: Outcome) -> bool {
        // An operation refused before it reached the backend (stale handle,
        // busy slot, a socket still connecting) says nothing about the
        // connection: it must not mark a direction closed.
        let refused = matches!(outcome, Outcome::Failed(_));
        let (result, extra) = match outcome {
            // A read that the OS ends with "the writer is gone" (Windows
            // pipes) is a plain end of stream, as a 0-byte read is elsewhere.
            Outcome::Sys(c) if matches!(op.callback, IoCallback::Read(_)) && !matches!(op.target, Target::At(_)) => {
                let result = match c.result {
                    Err(e) if sys::read_error_is_end_of_stream(&e) => Ok(0),
                    r => r,
                };
                (result.map_err(Error::from), c.extra)
            }
            Outcome::Sys(c) => (c.result.map_err(Error::from), c.extra),
            Outcome::Failed(e) => (Err(e), Extra::None),
            _ => unreachable!("I/O ops complete with I/O outcomes"),
        };
        let reading = op.callback.is_reading();
        let requested = op.buf.capacity_for(reading) - op.done;
        let owner = op.owner;
        // Decide whether the operation goes on (IoMode::All) or ends here.
        let mut result = match (&op.callback, result) {
            (IoCallback::Orphaned, _) => return false,
            (IoCallback::Read(_), Ok(0)) if requested > 0 && matches!(op.target, Target::At(_)) => {
                // A positional read at the end of a file.
                Err(Error::new(Status::EndOfFile).with_transferred(op.done))
            }
            (IoCallback::Read(_), Ok(0)) if requested > 0 => {
                let done = op.done;
                if let Some(io) = self.io_slots(owner) {
                    io.read_closed = true;
                }
                Err(Error::new(Status::Disconnected).with_transferred(done))
            }
            (IoCallback::Read(_) | IoCallback::Write(_), Ok(n)) => {
                op.done += n;
                if op.mode == IoMode::All && n < requested {
                    self.continue_io(key, op, reading);
                    return false;
                }
                Ok(op.done)
            }
            (IoCallback::Read(_) | IoCallback::Write(_), Err(e)) => {
                let done = op.done;
                let reading = matches!(op.callback, IoCallback::Read(_));
                if !refused {
                    self.note_disconnected(owner, reading, &e);
                }
                Err(e.with_transferred(done))
            }
            (_, r) => r,
        };
        if matches!(op.callback, IoCallback::Internal(_)) {
            self.internal_ops -= 1;
        }
        if reading {
            // What arrived becomes part of the buffer (its length grows).
            let moved = match &result {
                Ok(n) => *n,
                Err(e) => e.transferred(),
            };
            op.buf.commit_read(moved);
        }
        Error::name_operation(&mut result, op.callback.operation());
        self.release_slot(owner, reading, key);
        match op.callback {
            IoCallback::Connect(cb) => {
                if let Some(io) = self.io_slots(owner) {
                    io.connecting = false;
                    io.usable = result.is_ok();
                }
                cb.call(self, owner.key, result.map(drop));
            }
            IoCallback::Read(cb) | IoCallback::Write(cb) | IoCallback::Send(cb) => {
                cb.call(self, owner.key, result, op.buf)
            }
            IoCallback::Recv(cb) => {
                let result = result.map(|n| (n, sender(&extra)));
                cb.call(self, owner.key, result, op.buf);
            }
            IoCallback::Accept => self.accepted(owner.key, result, extra),
            IoCallback::Internal(which) => return self.internal_ready(which, owner, result, op.buf),

            IoCallback::Orphaned => unreachable!("handled above"),
        }
        true
    }
}

impl Driver {
    /// Issues the rest of an `IoMode::All` transfer (`op` was `key`): the op
    /// goes back into the table under a new key, which the handle's slot
    /// follows.
    #[cold]
    fn continue_io(&mut self, key: Key, mut op: IoOp, reading: bool) {
        let (src, owner) = (op.src, op.owner);
        let req = op.request();
        let new_key = self.ops.insert(Op::Io(op));
        if let Some(io) = self.io_slots(owner) {
            let slot = if reading { &mut io.read_op } else { &mut io.write_op };
            if *slot == Some(key) {
                *slot = Some(new_key);
            }
        }
        self.issue(new_key, src, req, false);
    }

    /// A driver-internal source is ready; returns whether a user callback ran.
    fn internal_ready(&mut self, which: Internal, owner: Owner, result: Result<usize>, buf: AnyBuf) -> bool {
        match which {
            Internal::Signals => self.signals_ready(),
            Internal::ProcessExit => self.process_exit_ready(owner),
            Internal::Watch { reader, .. } => self.watch_read_done(reader, result, buf),
        }
    }
}
