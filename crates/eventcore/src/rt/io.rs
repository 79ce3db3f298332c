//! Byte streams — stream sockets (TCP, Unix) and pipes — with owned-buffer
//! reads and writes, and the `futures-io` traits on top.
//!
//! [`ByteStream`] offers two ways in, which should not be mixed on one
//! stream's direction while either has something in flight:
//!
//! - **Owned buffers** ([`ByteStream::read_owned`],
//!   [`ByteStream::write_all_owned`], [`ByteStream::write_vectored_owned`] …):
//!   the buffer (any [`IoBuf`] / [`IoBufMut`]: `Vec<u8>`, `Bytes` …) moves
//!   into the driver and comes back with the result, as `(Result<usize>, B)`;
//!   a read fills a `Vec`'s capacity after its length. These take `&self`,
//!   so one read and one write can be in flight at once (from two tasks
//!   sharing the stream, or joined in one); a second read while one is in
//!   flight fails with [`Status::Busy`] without reaching the driver.
//! - **`futures-io`**: `ByteStream` implements [`AsyncRead`],
//!   [`AsyncBufRead`] (over a 16 KiB internal buffer) and [`AsyncWrite`]
//!   (write-through: accepted bytes leave without a flush), so the
//!   ecosystem's codecs and protocols plug in.
//!   [`ByteStream::halves`] gives a reading and a writing half that can be
//!   driven concurrently.
//!
//! The owned-buffer methods end in `_owned`, so futures' `AsyncReadExt` /
//! `AsyncWriteExt` methods (`read`, `read_exact`, `write`, `write_all`) keep
//! their usual meaning on a stream once those traits are imported.
//!
//! End of stream: the owned-buffer calls report it as the driver does, as
//! [`Status::Disconnected`] (without an OS
//! code; a reset carries the OS code). `AsyncRead` reports it as `Ok(0)`.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};

use super::executor::Core;
use super::op::{Completer, OpFuture, Operation, Slot, SlotCache};
use super::BufResult;
use crate::PipeHandle;
use crate::{Driver, Error, Handle, IoBuf, IoBufMut, IoMode, Result, Status, StreamSocket};

/// Size of the internal buffers behind the `futures-io` traits.
const BUF_SIZE: usize = 16 * 1024;

mod sealed {
    use super::*;

    /// What a byte stream needs from its driver handle.
    pub trait RawStream: Handle + Unpin + 'static {
        fn read<B: IoBufMut>(
            self,
            drv: &mut Driver,
            buf: B,
            mode: IoMode,
            done: impl FnOnce(BufResult<usize, B>) + 'static,
        );
        fn try_read(self, drv: &mut Driver, buf: &mut Vec<u8>) -> Result<usize>;
        fn try_write(self, drv: &mut Driver, data: &[u8]) -> Result<usize>;
        fn write<B: IoBuf>(self, drv: &mut Driver, buf: B, mode: IoMode, done: impl FnOnce(BufResult<usize, B>) + 'static);
        fn write_vectored<B: IoBuf>(
            self,
            drv: &mut Driver,
            bufs: Vec<B>,
            mode: IoMode,
            done: impl FnOnce(BufResult<usize, Vec<B>>) + 'static,
        );
        fn cancel_read(self, drv: &mut Driver);
        fn cancel_write(self, drv: &mut Driver);
        /// Ends the writing direction. Returns whether the handle is gone
        /// with it (a pipe is closed; a socket is only shut down).
        fn shutdown_write(self, drv: &mut Driver) -> Result<bool>;
    }
}

/// A driver handle a [`ByteStream`] can run on: a
/// [`StreamSocket`], or a [`PipeHandle`]. Sealed.
pub trait StreamHandle: sealed::RawStream {}

impl StreamHandle for StreamSocket {}
impl StreamHandle for PipeHandle {}

impl sealed::RawStream for StreamSocket {
    fn read<B: IoBufMut>(self, drv: &mut Driver, buf: B, mode: IoMode, done: impl FnOnce(BufResult<usize, B>) + 'static) {
        drv.sockets().read(self, buf, mode, move |_, _, r, b| done((r, b)));
    }
    fn try_read(self, drv: &mut Driver, buf: &mut Vec<u8>) -> Result<usize> {
        drv.sockets().try_read_buf(self, buf)
    }
    fn try_write(self, drv: &mut Driver, data: &[u8]) -> Result<usize> {
        drv.sockets().try_write(self, data)
    }
    fn write<B: IoBuf>(self, drv: &mut Driver, buf: B, mode: IoMode, done: impl FnOnce(BufResult<usize, B>) + 'static) {
        drv.sockets().write(self, buf, mode, move |_, _, r, b| done((r, b)));
    }
    fn write_vectored<B: IoBuf>(
        self,
        drv: &mut Driver,
        bufs: Vec<B>,
        mode: IoMode,
        done: impl FnOnce(BufResult<usize, Vec<B>>) + 'static,
    ) {
        drv.sockets().write_vectored(self, bufs, mode, move |_, _, r, b| done((r, b)));
    }
    fn cancel_read(self, drv: &mut Driver) {
        drv.sockets().cancel_read(self);
    }
    fn cancel_write(self, drv: &mut Driver) {
        drv.sockets().cancel_write(self);
    }
    fn shutdown_write(self, drv: &mut Driver) -> Result<bool> {
        drv.sockets().shutdown(self, false, true)?;
        Ok(false)
    }
}

impl sealed::RawStream for PipeHandle {
    fn read<B: IoBufMut>(self, drv: &mut Driver, buf: B, mode: IoMode, done: impl FnOnce(BufResult<usize, B>) + 'static) {
        drv.pipes().read(self, buf, mode, move |_, _, r, b| done((r, b)));
    }
    fn try_read(self, drv: &mut Driver, buf: &mut Vec<u8>) -> Result<usize> {
        drv.pipes().try_read_buf(self, buf)
    }
    fn try_write(self, drv: &mut Driver, data: &[u8]) -> Result<usize> {
        drv.pipes().try_write(self, data)
    }
    fn write<B: IoBuf>(self, drv: &mut Driver, buf: B, mode: IoMode, done: impl FnOnce(BufResult<usize, B>) + 'static) {
        drv.pipes().write(self, buf, mode, move |_, _, r, b| done((r, b)));
    }
    fn write_vectored<B: IoBuf>(
        self,
        drv: &mut Driver,
        bufs: Vec<B>,
        mode: IoMode,
        done: impl FnOnce(BufResult<usize, Vec<B>>) + 'static,
    ) {
        drv.pipes().write_vectored(self, bufs, mode, move |_, _, r, b| done((r, b)));
    }
    fn cancel_read(self, drv: &mut Driver) {
        drv.pipes().cancel_read(self);
    }
    fn cancel_write(self, drv: &mut Driver) {
        drv.pipes().cancel_write(self);
    }
    fn shutdown_write(self, drv: &mut Driver) -> Result<bool> {
        drv.pipes().close(self)?;
        Ok(true)
    }
}

/// Whether a read error is a plain end of stream (not a reset).
fn is_eof(e: &Error) -> bool {
    e.is_end_of_stream()
}

/// An eventcore error as a `std::io::Error` (`From<Error> for io::Error`).
pub(crate) fn to_io_error(e: &Error) -> io::Error {
    io::Error::from(e.clone())
}

/// The handle, and which of its two directions have an operation in flight.
pub(crate) struct IoCore<H: StreamHandle> {
    pub core: Rc<Core>,
    pub handle: H,
    reading: Cell<bool>,
    writing: Cell<bool>,
    /// The slots of the owned-buffer transfers, kept between them.
    read_slot: SlotCache,
    write_slot: SlotCache,
    /// The handle was closed through `shutdown_write` (pipes): nothing to release.
    gone: Cell<bool>,
}

impl<H: StreamHandle> Drop for IoCore<H> {
    fn drop(&mut self) {
        if !self.gone.get() {
            // Releasing the last reference cancels pending operations.
            self.core.release(self.handle);
        }
    }
}

/// Starts a transfer's driver operation for its buffer type: a read, a
/// write or a vectored write (the type says which).
type StartFn<H, B> = fn(B, H, &mut Driver, IoMode, Completer<BufResult<usize, B>>);

/// An owned-buffer transfer on one direction of a stream.
struct Transfer<H: StreamHandle, B> {
    handle: H,
    buf: Option<B>,
    mode: IoMode,
    write: bool,
    start: StartFn<H, B>,
}

impl<H: StreamHandle, B> Unpin for Transfer<H, B> {}

fn start_read<H: StreamHandle, B: IoBufMut>(
    buf: B,
    h: H,
    drv: &mut Driver,
    mode: IoMode,
    done: Completer<BufResult<usize, B>>,
) {
    h.read(drv, buf, mode, move |r| {
        let _ = done.complete(r);
    });
}

fn start_write<H: StreamHandle, B: IoBuf>(
    buf: B,
    h: H,
    drv: &mut Driver,
    mode: IoMode,
    done: Completer<BufResult<usize, B>>,
) {
    h.write(drv, buf, mode, move |r| {
        let _ = done.complete(r);
    });
}

fn start_write_list<H: StreamHandle, B: IoBuf>(
    bufs: Vec<B>,
    h: H,
    drv: &mut Driver,
    mode: IoMode,
    done: Completer<BufResult<usize, Vec<B>>>,
) {
    h.write_vectored(drv, bufs, mode, move |r| {
        let _ = done.complete(r);
    });
}

impl<H: StreamHandle, B: 'static> Operation for Transfer<H, B> {
    type Output = BufResult<usize, B>;
    type Token = (H, bool);
    type Ret = BufResult<usize, B>;

    fn start(&mut self, drv: &mut Driver, done: Completer<BufResult<usize, B>>) -> Result<(H, bool), BufResult<usize, B>> {
        let buf = self.buf.take().expect("started once");
        (self.start)(buf, self.handle, drv, self.mode, done);
        Ok((self.handle, self.write))
    }

    fn cancel(drv: &mut Driver, (handle, write): (H, bool)) {
        if write {
            handle.cancel_write(drv);
        } else {
            handle.cancel_read(drv);
        }
    }

    fn ready(&mut self, _: &Rc<Core>, _: (H, bool), out: BufResult<usize, B>) -> BufResult<usize, B> {
        out
    }

    fn busy(&mut self) -> BufResult<usize, B> {
        (Err(Error::new(Status::Busy)), self.buf.take().expect("refused before it started"))
    }
}

/// Reads for the `futures-io` traits: the internal buffer and its pending read.
struct ReadState {
    /// `buf[pos..filled]` is data not yet consumed. Empty while lent to the driver.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    pending: Option<Rc<Slot<BufResult<usize>>>>,
    eof: bool,
    /// The last read moved less than its buffer holds: the stream had
    /// nothing more then, so the next refill waits for the driver at once
    /// instead of trying a read that would find nothing.
    drained: bool,
}

/// Writes for the `futures-io` traits: the write in flight (write-through:
/// no bytes wait here for a flush).
struct WriteState {
    /// A buffer that came back from the driver, reused for the next copy
    /// lent to it.
    spare: Vec<u8>,
    pending: Option<Rc<Slot<BufResult<usize>>>>,
    /// A failed write; every later write and flush reports it.
    error: Option<Error>,
    closed: bool,
}

/// A byte stream over a driver handle: a stream socket ([`TcpStream`],
/// [`UnixStream`]) or a pipe ([`Pipe`], and a child's standard streams).
///
/// Dropping it releases the handle, which cancels operations still in
/// flight (their buffers stay with the driver until the OS is done), the
/// `futures-io` side's write included: flush (or close) first.
///
/// The `futures-io` [`AsyncWrite`] side writes through, as tokio's streams
/// do: what `poll_write` accepts reaches the OS without a flush (written at
/// once where the stream has room, else lent to the driver, up to 16 KiB
/// at a time), and a `poll_write` while such a write is in flight waits for
/// it. So a relay built on `futures`' `io::copy`, which flushes only when
/// its input ends, answers while its input is still open. Wrap the stream
/// in a `BufWriter` to gather small writes.
///
/// [`TcpStream`]: super::net::TcpStream
/// [`UnixStream`]: super::net::UnixStream
/// [`Pipe`]: crate::rt::Pipe
pub struct ByteStream<H: StreamHandle> {
    io: IoCore<H>,
    r: ReadState,
    w: WriteState,
}

impl<H: StreamHandle> ByteStream<H> {
    pub(crate) fn from_raw(core: Rc<Core>, handle: H) -> ByteStream<H> {
        ByteStream {
            io: IoCore {
                core,
                handle,
                reading: Cell::new(false),
                writing: Cell::new(false),
                read_slot: SlotCache::default(),
                write_slot: SlotCache::default(),
                gone: Cell::new(false),
            },
            r: ReadState {
                buf: Vec::new(),
                pos: 0,
                filled: 0,
                pending: None,
                eof: false,
                drained: false,
            },
            w: WriteState {
                spare: Vec::new(),
                pending: None,
                error: None,
                closed: false,
            },
        }
    }

    /// The driver handle, for calls this layer does not wrap. Do not start
    /// reads or writes on it while this stream has one in flight.
    pub fn raw_handle(&self) -> H {
        self.io.handle
    }

    fn transfer<B: 'static>(
        &self,
        buf: B,
        mode: IoMode,
        write: bool,
        start: StartFn<H, B>,
    ) -> impl Future<Output = BufResult<usize, B>> + '_ {
        let (guard, cache) = if write {
            (&self.io.writing, &self.io.write_slot)
        } else {
            (&self.io.reading, &self.io.read_slot)
        };
        OpFuture::cached(
            Transfer {
                handle: self.io.handle,
                buf: Some(buf),
                mode,
                write,
                start,
            },
            guard,
            cache,
            &self.io.core,
        )
    }

    /// Reads at least one byte into the spare room of `buf` (a `Vec`'s
    /// capacity after its length; see [`buf`](crate::buf)): the count, and
    /// the buffer with its length grown by it. `Vec::with_capacity(n)`
    /// reads up to `n` bytes; a full buffer is [`Status::InvalidArgument`].
    /// End of stream is [`Status::Disconnected`].
    ///
    /// Bypasses the internal buffer of the `futures-io` side. (Named
    /// `read_owned` so that futures' `AsyncReadExt::read` stays callable on
    /// the stream.)
    ///
    /// **Cancel safety:** not cancel-safe once polled: dropping the future
    /// withdraws the read, but bytes the OS already moved into the buffer are
    /// lost with it (a backend may transfer before it reports: epoll tries at
    /// once). For reading that survives being dropped — a `select` loop — use
    /// the `futures-io` side, whose read in flight belongs to the stream.
    pub fn read_owned<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, IoMode::Once, false, start_read::<H, B>)
    }

    /// Fills all of the spare room of `buf`; end of stream first is
    /// `Disconnected`, with the count read before it in
    /// [`Error::transferred`] (and those bytes in the buffer).
    ///
    /// **Cancel safety:** not cancel-safe: dropped while pending, the bytes
    /// read so far are lost.
    pub fn read_exact_owned<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, IoMode::All, false, start_read::<H, B>)
    }

    /// Writes at least one byte of `buf`: the count and the buffer.
    ///
    /// **Cancel safety:** not cancel-safe once polled: dropping the future
    /// withdraws the write, but some bytes may already be on their way (the
    /// driver counts them for a cancel; a dropped future cannot tell).
    pub fn write_owned<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, IoMode::Once, true, start_write::<H, B>)
    }

    /// Writes all of `buf`, or fails with the count written so far in
    /// [`Error::transferred`].
    ///
    /// **Cancel safety:** not cancel-safe: dropped while pending, an unknown
    /// prefix of `buf` may have been written.
    pub fn write_all_owned<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, IoMode::All, true, start_write::<H, B>)
    }

    /// Writes all of the buffers, in order, gathering them into as few
    /// system calls as the OS allows (`sendmsg`/`writev`, io_uring, `WSASend`
    /// with several buffers): the total and the buffers.
    ///
    /// **Cancel safety:** as [`write_all_owned`](ByteStream::write_all_owned).
    pub fn write_vectored_owned<B: IoBuf>(&self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>> + '_ {
        self.transfer(bufs, IoMode::All, true, start_write_list::<H, B>)
    }

    /// Waits until data (or end of stream) can be read, consuming nothing.
    ///
    /// **Cancel safety:** cancel-safe.
    pub async fn readable(&self) -> Result<()> {
        self.read_owned(Vec::new()).await.0.map(drop)
    }

    /// Borrows the stream as a reading half and a writing half, which can be
    /// used concurrently (for example `futures::join!` of a reader and a
    /// writer, or a line reader and a writer in one loop). (Not named
    /// `split`: futures' `AsyncReadExt::split` takes the stream by value and
    /// would be found first.)
    pub fn halves(&mut self) -> (ReadHalf<'_, H>, WriteHalf<'_, H>) {
        (
            ReadHalf {
                io: &self.io,
                r: &mut self.r,
            },
            WriteHalf {
                io: &self.io,
                w: &mut self.w,
            },
        )
    }

    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.io.core
    }

    /// Splits the stream into an owned reading half and an owned writing
    /// half, which can move into two tasks (tokio's `into_split`). Bytes
    /// already buffered on either side go with their half; dropping both
    /// halves releases the handle, as dropping the stream would.
    /// [`OwnedReadHalf::reunite`] puts them back together.
    pub fn into_split(self) -> (OwnedReadHalf<H>, OwnedWriteHalf<H>) {
        let io = Rc::new(self.io);
        (
            OwnedReadHalf { io: io.clone(), r: self.r },
            OwnedWriteHalf { io, w: self.w },
        )
    }
}

/// The reading half of a [`ByteStream`] split with
/// [`ByteStream::into_split`]: [`AsyncRead`] and [`AsyncBufRead`].
pub struct OwnedReadHalf<H: StreamHandle> {
    io: Rc<IoCore<H>>,
    r: ReadState,
}

/// The writing half of a [`ByteStream`] split with
/// [`ByteStream::into_split`]: [`AsyncWrite`]. Bytes written and not yet
/// flushed are lost if it is dropped: flush (or close) first.
pub struct OwnedWriteHalf<H: StreamHandle> {
    io: Rc<IoCore<H>>,
    w: WriteState,
}

/// [`OwnedReadHalf::reunite`] was given halves of two different streams;
/// they are handed back.
pub struct ReuniteError<H: StreamHandle>(pub OwnedReadHalf<H>, pub OwnedWriteHalf<H>);

impl<H: StreamHandle> std::fmt::Debug for ReuniteError<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl<H: StreamHandle> std::fmt::Display for ReuniteError<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the halves belong to different streams")
    }
}

impl<H: StreamHandle> std::error::Error for ReuniteError<H> {}

impl<H: StreamHandle> OwnedReadHalf<H> {
    /// Puts the two halves of one stream back together.
    // The error hands both halves back (as tokio's does): large by design.
    #[allow(clippy::result_large_err)]
    pub fn reunite(self, write: OwnedWriteHalf<H>) -> std::result::Result<ByteStream<H>, ReuniteError<H>> {
        if !Rc::ptr_eq(&self.io, &write.io) {
            return Err(ReuniteError(self, write));
        }
        drop(write.io);
        let io = Rc::try_unwrap(self.io).unwrap_or_else(|_| unreachable!("the two halves held the only references"));
        Ok(ByteStream {
            io,
            r: self.r,
            w: write.w,
        })
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> H {
        self.io.handle
    }
}

impl<H: StreamHandle> OwnedWriteHalf<H> {
    /// Puts the two halves of one stream back together.
    // The error hands both halves back (as tokio's does): large by design.
    #[allow(clippy::result_large_err)]
    pub fn reunite(self, read: OwnedReadHalf<H>) -> std::result::Result<ByteStream<H>, ReuniteError<H>> {
        read.reunite(self)
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> H {
        self.io.handle
    }
}

impl<H: StreamHandle> std::fmt::Debug for OwnedReadHalf<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedReadHalf")
            .field("handle", &self.io.handle)
            .finish_non_exhaustive()
    }
}

impl<H: StreamHandle> std::fmt::Debug for OwnedWriteHalf<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedWriteHalf")
            .field("handle", &self.io.handle)
            .finish_non_exhaustive()
    }
}

impl<H: StreamHandle> std::fmt::Debug for ByteStream<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteStream")
            .field("handle", &self.io.handle)
            .field("buffered_in", &(self.r.filled - self.r.pos))
            .field("writing", &self.w.pending.is_some())
            .finish_non_exhaustive()
    }
}

// -------------------------------------------------------------- futures-io

impl ReadState {
    /// Makes sure there is buffered data or end of stream.
    fn poll_fill<H: StreamHandle>(&mut self, io: &IoCore<H>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.filled || self.eof {
                return Poll::Ready(Ok(()));
            }
            if let Some(slot) = &self.pending {
                let (res, buf) = std::task::ready!(slot.poll(cx));
                if let Some(slot) = self.pending.take() {
                    io.read_slot.put(slot);
                }
                io.reading.set(false);
                self.buf = buf;
                self.pos = 0;
                self.filled = 0;
                match res {
                    Ok(n) => {
                        self.filled = n;
                        self.drained = n < self.buf.capacity();
                    }
                    Err(e) if is_eof(&e) => self.eof = true,
                    Err(e) => return Poll::Ready(Err(to_io_error(&e))),
                }
                continue;
            }
            if io.reading.get() {
                return Poll::Ready(Err(to_io_error(&Error::new(Status::Busy))));
            }
            if self.buf.capacity() == 0 {
                self.buf = Vec::with_capacity(BUF_SIZE);
            }
            // Everything buffered was consumed: the refill starts afresh.
            self.buf.clear();
            self.pos = 0;
            self.filled = 0;
            // Bytes that are there already are taken now (a refill costs no
            // executor turn unless the stream must really wait) — unless the
            // last read found the stream drained.
            let handle = io.handle;
            let buf = &mut self.buf;
            let try_now = !self.drained && io.core.take_sync_budget();
            match try_now.then(|| io.core.with_driver(|drv| handle.try_read(drv, buf))) {
                Some(Ok(n)) => {
                    self.pos = 0;
                    self.filled = n;
                    self.drained = n < self.buf.capacity();
                    continue;
                }
                None => {}
                Some(Err(e)) if e.status() == Status::WouldBlock => {}
                Some(Err(e)) if is_eof(&e) => {
                    self.eof = true;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io_error(&e))),
            }
            let slot = io.read_slot.take();
            let buf = std::mem::take(&mut self.buf);
            io.reading.set(true);
            let done = Completer(slot.clone());
            io.core.with_driver(|drv| {
                io.handle.read(drv, buf, IoMode::Once, move |r| {
                    let _ = done.complete(r);
                })
            });
            self.pending = Some(slot);
        }
    }

    fn poll_read<H: StreamHandle>(
        &mut self,
        io: &IoCore<H>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        std::task::ready!(self.poll_fill(io, cx))?;
        let n = (self.filled - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }

    fn poll_fill_buf<H: StreamHandle>(&mut self, io: &IoCore<H>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        std::task::ready!(self.poll_fill(io, cx))?;
        Poll::Ready(Ok(&self.buf[self.pos..self.filled]))
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.filled);
    }
}

impl WriteState {
    /// Waits for the write in flight, if any; keeps its error.
    fn poll_in_flight<H: StreamHandle>(&mut self, io: &IoCore<H>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(slot) = &self.pending {
            let (res, mut buf) = std::task::ready!(slot.poll(cx));
            if let Some(slot) = self.pending.take() {
                io.write_slot.put(slot);
            }
            io.writing.set(false);
            if let Err(e) = res {
                self.error.get_or_insert(e);
            }
            buf.clear();
            self.spare = buf;
        }
        Poll::Ready(())
    }

    /// Lends a copy of `bytes` to the driver as one `All` write.
    fn lend<H: StreamHandle>(&mut self, io: &IoCore<H>, bytes: &[u8]) {
        let mut data = std::mem::take(&mut self.spare);
        data.extend_from_slice(bytes);
        let slot = io.write_slot.take();
        io.writing.set(true);
        let done = Completer(slot.clone());
        io.core.with_driver(|drv| {
            io.handle.write(drv, data, IoMode::All, move |r| {
                let _ = done.complete(r);
            })
        });
        self.pending = Some(slot);
    }

    fn check(&self) -> io::Result<()> {
        if let Some(e) = &self.error {
            return Err(to_io_error(e));
        }
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "eventcore::rt: write after close",
            ));
        }
        Ok(())
    }

    /// Write-through, as tokio's streams are: one write in flight at a
    /// time, and the next `poll_write` waits for it. Bytes the stream takes
    /// now are written straight from `data`; otherwise up to 16 KiB are
    /// copied and lent to the driver, which sends them without a flush.
    fn poll_write<H: StreamHandle>(
        &mut self,
        io: &IoCore<H>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        std::task::ready!(self.poll_in_flight(io, cx));
        self.check()?;
        if io.writing.get() {
            // An owned-buffer write of the stream is in flight: its bytes
            // go first (and a failed try must not poison this side).
            return Poll::Ready(Err(to_io_error(&Error::new(Status::Busy))));
        }
        let handle = io.handle;
        let mut written = 0;
        if io.core.take_sync_budget() {
            while written < data.len() {
                match io.core.with_driver(|drv| handle.try_write(drv, &data[written..])) {
                    Ok(0) => break,
                    Ok(n) => written += n,
                    Err(e) if e.status() == Status::WouldBlock => break,
                    Err(e) => {
                        self.error.get_or_insert(e.clone());
                        return Poll::Ready(Err(to_io_error(&e)));
                    }
                }
            }
        }
        if written > 0 {
            return Poll::Ready(Ok(written));
        }
        let n = data.len().min(BUF_SIZE);
        self.lend(io, &data[..n]);
        Poll::Ready(Ok(n))
    }

    /// Waits for the write in flight: nothing else is held back.
    fn poll_flush<H: StreamHandle>(&mut self, io: &IoCore<H>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_in_flight(io, cx));
        match &self.error {
            Some(e) => Poll::Ready(Err(to_io_error(e))),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_close<H: StreamHandle>(&mut self, io: &IoCore<H>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(self.poll_flush(io, cx))?;
        self.closed = true;
        let gone = io
            .core
            .with_driver(|drv| io.handle.shutdown_write(drv))
            .map_err(|e| to_io_error(&e))?;
        io.gone.set(gone);
        Poll::Ready(Ok(()))
    }
}

/// The `futures-io` traits of a type that has a `ReadState` `r` and a
/// `WriteState` `w` (each owned or borrowed) and its handle's `io` (owned,
/// borrowed or shared). `poll_close` flushes, then ends the writing
/// direction: a socket is shut down for writing (the peer reads end of
/// stream; reading goes on), a pipe is closed.
macro_rules! futures_io {
    (read: $([$($g:tt)*] $ty:ty),*; write: $([$($wg:tt)*] $wty:ty),*) => {
        $(
            impl<$($g)*> AsyncRead for $ty {
                fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                    let this = self.get_mut();
                    this.r.poll_read(&this.io, cx, buf)
                }
            }

            impl<$($g)*> AsyncBufRead for $ty {
                fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
                    let this = self.get_mut();
                    this.r.poll_fill_buf(&this.io, cx)
                }

                fn consume(self: Pin<&mut Self>, amt: usize) {
                    self.get_mut().r.consume(amt);
                }
            }
        )*
        $(
            impl<$($wg)*> AsyncWrite for $wty {
                fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                    let this = self.get_mut();
                    this.w.poll_write(&this.io, cx, buf)
                }

                fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let this = self.get_mut();
                    this.w.poll_flush(&this.io, cx)
                }

                fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    let this = self.get_mut();
                    this.w.poll_close(&this.io, cx)
                }
            }
        )*
    };
}

futures_io! {
    read: [H: StreamHandle] ByteStream<H>, ['a, H: StreamHandle] ReadHalf<'a, H>, [H: StreamHandle] OwnedReadHalf<H>;
    write: [H: StreamHandle] ByteStream<H>, ['a, H: StreamHandle] WriteHalf<'a, H>, [H: StreamHandle] OwnedWriteHalf<H>
}

/// The reading half of a [`ByteStream`] (see [`ByteStream::halves`]):
/// [`AsyncRead`] and [`AsyncBufRead`].
pub struct ReadHalf<'a, H: StreamHandle> {
    io: &'a IoCore<H>,
    r: &'a mut ReadState,
}

/// The writing half of a [`ByteStream`] (see [`ByteStream::halves`]):
/// [`AsyncWrite`].
pub struct WriteHalf<'a, H: StreamHandle> {
    io: &'a IoCore<H>,
    w: &'a mut WriteState,
}

impl<H: StreamHandle> std::fmt::Debug for ReadHalf<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHalf")
            .field("handle", &self.io.handle)
            .finish_non_exhaustive()
    }
}

impl<H: StreamHandle> std::fmt::Debug for WriteHalf<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHalf")
            .field("handle", &self.io.handle)
            .finish_non_exhaustive()
    }
}
