//! Pipes: reads and writes on OS pipes, with the same I/O modes, slots and
//! cancellation as stream sockets.
//!
//! End of stream (the writer closed) is [`Status::Disconnected`](crate::Status::Disconnected); writing to a
//! pipe whose reader is gone is `Disconnected` too (EPIPE — Rust programs
//! ignore `SIGPIPE`). Pipes are also how child processes' standard streams
//! are reached (see [`Processes`](crate::Processes)).

use crate::sys::Backend as _;
use crate::sys::OwnedPipe;

use crate::handle::{define_handle, HandleKind, Key};
use crate::io::{take_back, take_back_list, Cancelled, IoCallback, IoDoneFn, IoMode, IoOp, IoSlots, Owner};
use crate::sys::buf::{AnyBuf, IoBuf, IoBufMut};
use crate::sys::SourceKind;
use crate::{Driver, Error, Result};

define_handle!(
    /// One end of an OS pipe.
    PipeHandle,
    Pipe
);

pub(crate) struct PipeState {
    pub(crate) fd: OwnedPipe,
    pub(crate) io: IoSlots,
}

fn owner(key: Key) -> Owner {
    Owner {
        kind: HandleKind::Pipe,
        key,
    }
}

/// The pipe view of a driver (see [`Driver::pipes`]).
pub struct Pipes<'a> {
    drv: &'a mut Driver,
}

impl Driver {
    /// Pipes: adopt, read, write, wait for data, close.
    pub fn pipes(&mut self) -> Pipes<'_> {
        Pipes { drv: self }
    }

    pub(crate) fn adopt_pipe_fd(&mut self, fd: OwnedPipe) -> Result<PipeHandle> {
        crate::sys::prepare_pipe(&fd)?;
        let src = self.sys.add_source(&fd, SourceKind::Fd)?;
        Ok(PipeHandle(self.tables.pipes.insert(PipeState {
            fd,
            io: IoSlots::new(src),
        })))
    }

    pub(crate) fn destroy_pipe(&mut self, key: Key) {
        self.cancel_slots(owner(key));
        if let Some(entry) = self.tables.pipes.remove(key) {
            self.sys.remove_source(entry.io.src);
            drop(entry.fd);
        }
    }
}

impl Pipes<'_> {
    /// Takes over one end of an OS pipe (from `std::process::ChildStdout`,
    /// `std::io::pipe`, an `OwnedFd` / `OwnedHandle` …).
    ///
    /// Unix: the descriptor is made non-blocking; one that cannot be polled
    /// (a regular file) is `NotAllowed`. Windows: the handle must have been
    /// opened for overlapped I/O (`FILE_FLAG_OVERLAPPED`, as the pipes of
    /// [`Pipes::create`] and std's child stdio are); otherwise reads and
    /// writes fail with `InvalidArgument`.
    pub fn adopt(&mut self, fd: impl Into<OwnedPipe>) -> Result<PipeHandle> {
        self.drv.adopt_pipe_fd(fd.into())
    }

    /// A new OS pipe: (read end, write end).
    pub fn create(&mut self) -> Result<(PipeHandle, PipeHandle)> {
        let (r, w) = crate::sys::pipe()?;
        let r = self.drv.adopt_pipe_fd(r)?;
        match self.drv.adopt_pipe_fd(w) {
            Ok(w) => Ok((r, w)),
            Err(e) => {
                self.drv.destroy_pipe(r.0);
                Err(e)
            }
        }
    }

    /// Reads what can be read into `buf` now, without waiting and without a
    /// callback; see [`Sockets::try_read`](crate::Sockets::try_read).
    pub fn try_read(&mut self, pipe: PipeHandle, buf: &mut [u8]) -> Result<usize> {
        self.drv.try_read_now(owner(pipe.0), buf.as_mut_ptr(), buf.len())
    }

    /// Writes what can be written from `buf` now, without waiting and
    /// without a callback; see [`Sockets::try_write`](crate::Sockets::try_write).
    /// Windows: a pipe write that does not finish at once is withdrawn, and
    /// what it wrote by then is the count.
    pub fn try_write(&mut self, pipe: PipeHandle, buf: &[u8]) -> Result<usize> {
        self.drv.try_write_now(owner(pipe.0), buf.as_ptr(), buf.len())
    }

    /// Reads what can be read now into the spare room of `buf` (a `Vec`'s
    /// capacity after its length: see [`buf`](crate::buf)), without waiting,
    /// and grows its length by the count (tokio's `try_read_buf`); otherwise
    /// as [`try_read`](Self::try_read). A buffer with no room reads nothing
    /// (`Ok(0)`).
    pub fn try_read_buf<B: IoBufMut>(&mut self, pipe: PipeHandle, buf: &mut B) -> Result<usize> {
        let owner = owner(pipe.0);
        crate::sys::buf::fill_spare(buf, |ptr, len| self.drv.try_read_now(owner, ptr, len))
    }

    /// Reads into `buf` as `mode` says; see [`Sockets::read`](crate::Sockets::read).
    /// End of stream is [`Status::Disconnected`](crate::Status::Disconnected).
    pub fn read<B: IoBufMut>(
        &mut self,
        pipe: PipeHandle,
        buf: B,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, PipeHandle, Result<usize>, B) + 'static,
    ) {
        let cb = IoCallback::Read(IoDoneFn::new(move |drv, key, r, b| {
            callback(drv, PipeHandle(key), r, take_back(b))
        }));
        self.drv.begin_io(IoOp::new(owner(pipe.0), cb, AnyBuf::for_read(buf), mode));
    }

    /// Writes `buf` as `mode` says; see [`Sockets::write`](crate::Sockets::write).
    pub fn write<B: IoBuf>(
        &mut self,
        pipe: PipeHandle,
        buf: B,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, PipeHandle, Result<usize>, B) + 'static,
    ) {
        let cb = IoCallback::Write(IoDoneFn::new(move |drv, key, r, b| {
            callback(drv, PipeHandle(key), r, take_back(b))
        }));
        self.drv.begin_io(IoOp::new(owner(pipe.0), cb, AnyBuf::for_write(buf), mode));
    }

    /// Writes the buffers one after the other (`writev`, io_uring `WRITEV`;
    /// Windows pipes have no gathering write, so each transfer there sends
    /// from one buffer); see [`Sockets::write_vectored`](crate::Sockets::write_vectored).
    pub fn write_vectored<B: IoBuf>(
        &mut self,
        pipe: PipeHandle,
        bufs: Vec<B>,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, PipeHandle, Result<usize>, Vec<B>) + 'static,
    ) {
        let cb = IoCallback::Write(IoDoneFn::new(move |drv, key, r, b| {
            callback(drv, PipeHandle(key), r, take_back_list(b))
        }));
        self.drv.begin_io(IoOp::new(owner(pipe.0), cb, AnyBuf::for_write_list(bufs), mode));
    }

    /// Calls `callback` once data or end of stream can be read, consuming nothing.
    pub fn wait_for_data(
        &mut self,
        pipe: PipeHandle,
        callback: impl FnOnce(&mut Driver, PipeHandle, Result<()>) + 'static,
    ) {
        self.read(pipe, Vec::new(), IoMode::Once, move |drv, p, r, _: Vec<u8>| {
            callback(drv, p, r.map(drop))
        });
    }

    /// Withdraws the pending read: its callback will not run. On epoll the
    /// buffer always comes back here.
    pub fn cancel_read(&mut self, pipe: PipeHandle) -> Option<Cancelled> {
        let key = self.drv.tables.pipes.get_mut(pipe.0)?.io.read_op.take()?;
        self.drv.cancel_io(key)
    }

    /// Withdraws the pending write: its callback will not run.
    pub fn cancel_write(&mut self, pipe: PipeHandle) -> Option<Cancelled> {
        let key = self.drv.tables.pipes.get_mut(pipe.0)?.io.write_op.take()?;
        self.drv.cancel_io(key)
    }

    /// Closes the pipe now, whatever its reference count: pending operations
    /// are cancelled (their callbacks never run) and the handle becomes
    /// invalid. The other end sees end of stream (or EPIPE).
    pub fn close(&mut self, pipe: PipeHandle) -> Result<()> {
        if !self.drv.tables.pipes.contains(pipe.0) {
            return Err(Error::invalid_handle());
        }
        self.drv.destroy_pipe(pipe.0);
        Ok(())
    }
}
