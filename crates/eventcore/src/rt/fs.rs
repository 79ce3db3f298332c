//! Files as futures: open, positional reads and writes, size, truncate and
//! close — every blocking call on the driver's worker pool.

use std::cell::Cell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::executor::Core;
use super::op::{Completer, OpFuture, Operation};
use super::BufResult;
use crate::{Driver, Error, FileHandle, IoBuf, IoBufMut, IoMode, OpenMode, Result, Status};

/// An open file of the driver. Dropping it closes the file (on the worker
/// pool); [`File::close`] does the same and reports the result.
///
/// One read and one write may be in flight at once; a second one fails with
/// [`Status::Busy`] without reaching the driver.
pub struct File {
    core: Rc<Core>,
    handle: FileHandle,
    reading: Cell<bool>,
    writing: Cell<bool>,
    /// `close` took the handle over.
    closed: Cell<bool>,
}

struct Open {
    path: Option<PathBuf>,
    mode: OpenMode,
}

impl Operation for Open {
    type Output = Result<FileHandle>;
    type Token = ();
    type Ret = Result<File>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<(), Self::Ret> {
        let path = self.path.take().expect("started once");
        drv.files().open(path, self.mode, move |drv, r| {
            // Nobody waits any more (the future was dropped): close the file.
            if let Some(Ok(file)) = done.complete(r) {
                let _ = drv.release_ref(file);
            }
        });
        Ok(())
    }

    /// An open cannot be withdrawn: the abandoned slot makes its callback
    /// close the file.
    fn cancel(_: &mut Driver, _: ()) {}

    fn ready(&mut self, core: &Rc<Core>, _: (), out: Self::Output) -> Self::Ret {
        out.map(|handle| File {
            core: core.clone(),
            handle,
            reading: Cell::new(false),
            writing: Cell::new(false),
            closed: Cell::new(false),
        })
    }

    fn discard(core: &Rc<Core>, _: (), out: Self::Output) {
        if let Ok(file) = out {
            core.release(file);
        }
    }
}

/// Starts a positional transfer for its buffer type.
type StartFn<B> = fn(&mut Driver, FileHandle, u64, B, IoMode, Completer<BufResult<usize, B>>);

fn start_read<B: IoBufMut>(drv: &mut Driver, f: FileHandle, at: u64, buf: B, mode: IoMode, done: Completer<BufResult<usize, B>>) {
    drv.files().read(f, at, buf, mode, move |_, _, r, b| {
        let _ = done.complete((r, b));
    });
}

fn start_write<B: IoBuf>(drv: &mut Driver, f: FileHandle, at: u64, buf: B, mode: IoMode, done: Completer<BufResult<usize, B>>) {
    drv.files().write(f, at, buf, mode, move |_, _, r, b| {
        let _ = done.complete((r, b));
    });
}

struct Transfer<B> {
    handle: FileHandle,
    buf: Option<B>,
    offset: u64,
    mode: IoMode,
    write: bool,
    start: StartFn<B>,
}

impl<B> Unpin for Transfer<B> {}

impl<B: 'static> Operation for Transfer<B> {
    type Output = BufResult<usize, B>;
    type Token = (FileHandle, bool);
    type Ret = BufResult<usize, B>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<Self::Token, Self::Ret> {
        let buf = self.buf.take().expect("started once");
        (self.start)(drv, self.handle, self.offset, buf, self.mode, done);
        Ok((self.handle, self.write))
    }

    fn cancel(drv: &mut Driver, (file, write): Self::Token) {
        // The buffer stays with the worker until it is done, then the
        // driver drops it.
        if write {
            drv.files().cancel_write(file);
        } else {
            drv.files().cancel_read(file);
        }
    }

    fn ready(&mut self, _: &Rc<Core>, _: Self::Token, out: Self::Output) -> Self::Ret {
        out
    }

    fn busy(&mut self) -> Self::Ret {
        (Err(Error::new(Status::Busy)), self.buf.take().expect("refused before it started"))
    }
}

struct Truncate {
    handle: FileHandle,
    size: u64,
}

impl Operation for Truncate {
    type Output = Result<()>;
    type Token = ();
    type Ret = Result<()>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<(), Self::Ret> {
        drv.files().truncate(self.handle, self.size, move |_, r| {
            let _ = done.complete(r);
        });
        Ok(())
    }

    /// A truncate cannot be withdrawn; its result is dropped.
    fn cancel(_: &mut Driver, _: ()) {}

    fn ready(&mut self, _: &Rc<Core>, _: (), out: Self::Output) -> Self::Ret {
        out
    }
}

struct Close {
    file: Option<File>,
}

impl Operation for Close {
    type Output = Result<()>;
    type Token = ();
    type Ret = Result<()>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<(), Self::Ret> {
        let file = self.file.take().expect("started once");
        file.closed.set(true);
        drv.files().close(file.handle, move |_, r| {
            let _ = done.complete(r);
        });
        Ok(())
    }

    /// A close cannot be withdrawn; its result is dropped.
    fn cancel(_: &mut Driver, _: ()) {}

    fn ready(&mut self, _: &Rc<Core>, _: (), out: Self::Output) -> Self::Ret {
        out
    }
}

impl File {
    /// Opens `path` as `mode` says (on the worker pool): the file, or the
    /// open status (`NotFound`, `NotAllowed`, `AlreadyExists` …).
    ///
    /// **Cancel safety:** cancel-safe: an open cannot be withdrawn, so if the
    /// future is dropped the file is closed as soon as the open finishes.
    pub fn open(path: impl AsRef<Path>, mode: OpenMode) -> impl Future<Output = Result<File>> {
        OpFuture::new(Open {
            path: Some(path.as_ref().to_owned()),
            mode,
        })
    }

    /// Creates `path` (or truncates it) for reading and writing.
    pub fn create(path: impl AsRef<Path>) -> impl Future<Output = Result<File>> {
        File::open(path, OpenMode::CreateTruncate)
    }

    fn transfer<B: 'static>(
        &self,
        buf: B,
        offset: u64,
        mode: IoMode,
        write: bool,
        start: StartFn<B>,
    ) -> impl Future<Output = BufResult<usize, B>> + '_ {
        OpFuture::guarded(
            Transfer {
                handle: self.handle,
                buf: Some(buf),
                offset,
                mode,
                write,
                start,
            },
            if write { &self.writing } else { &self.reading },
        )
    }

    /// Reads into the spare room of `buf` (a `Vec`'s capacity after its
    /// length: see [`buf`](crate::buf)) from `offset`: at least one byte, at
    /// most the room; the buffer's length grows by the count. At or past the
    /// end of the file: [`Status::EndOfFile`].
    ///
    /// **Cancel safety:** cancel-safe (a positional read changes nothing):
    /// dropping the future withdraws the read; the worker may still be
    /// reading into the buffer, which the driver keeps until it is done.
    pub fn read_at<B: IoBufMut>(&self, buf: B, offset: u64) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, offset, IoMode::Once, false, start_read::<B>)
    }

    /// Fills all of the spare room of `buf` from `offset`; reaching the end of the file first
    /// is [`Status::EndOfFile`] with the count in [`Error::transferred`].
    ///
    /// **Cancel safety:** cancel-safe, as [`File::read_at`].
    pub fn read_exact_at<B: IoBufMut>(&self, buf: B, offset: u64) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, offset, IoMode::All, false, start_read::<B>)
    }

    /// Writes at least one byte of `buf` at `offset`.
    ///
    /// **Cancel safety:** not cancel-safe: dropped while pending, the write
    /// may still happen (the worker may already be writing).
    pub fn write_at<B: IoBuf>(&self, buf: B, offset: u64) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, offset, IoMode::Once, true, start_write::<B>)
    }

    /// Writes all of `buf` at `offset`.
    ///
    /// **Cancel safety:** not cancel-safe: dropped while pending, any prefix
    /// of `buf` may have been written.
    pub fn write_all_at<B: IoBuf>(&self, buf: B, offset: u64) -> impl Future<Output = BufResult<usize, B>> + '_ {
        self.transfer(buf, offset, IoMode::All, true, start_write::<B>)
    }

    /// The file's size in bytes.
    pub fn size(&self) -> Result<u64> {
        let h = self.handle;
        self.core.with_driver(|drv| drv.files().size(h))
    }

    /// Sets the file's size (on the worker pool).
    ///
    /// **Cancel safety:** not cancel-safe: dropped while pending, the
    /// truncate still happens.
    pub fn truncate(&self, size: u64) -> impl Future<Output = Result<()>> + '_ {
        OpFuture::new(Truncate {
            handle: self.handle,
            size,
        })
    }

    /// Closes the file and reports the result of the OS close.
    ///
    /// **Cancel safety:** the file is closed whether or not the future is
    /// polled to the end.
    pub fn close(self) -> impl Future<Output = Result<()>> {
        OpFuture::new(Close { file: Some(self) })
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> FileHandle {
        self.handle
    }

    pub(crate) fn core(&self) -> &Core {
        &self.core
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if !self.closed.get() {
            self.core.release(self.handle);
        }
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("File").field(&self.handle).finish()
    }
}
