//! Files: open, positional read / write, truncate and close, off the loop
//! thread.
//!
//! Regular files are always "ready" to the OS's readiness APIs, so on Unix
//! every blocking call runs on the worker pool: `open`, `pread` / `pwrite`
//! (positional, so concurrent operations never race on a shared file offset),
//! `ftruncate` and `close`. A job reads or writes the buffer's memory while
//! the driver keeps the buffer itself; cancelling an operation therefore
//! cannot return the buffer at once ([`Cancelled::buffer`] is `None`): the
//! driver drops it when the worker is done (a driver dropped meanwhile waits
//! for that one `pread` / `pwrite`), so no memory the caller holds is ever
//! written.
//!
//! One read and one write may be in flight per file at once.
//!
//! [`IoMode::Immediate`] reads use `preadv2(RWF_NOWAIT)`: only what is in the
//! page cache, else `WouldBlock`. Immediate writes are a plain `pwrite` on the
//! loop thread (buffered writes go to the page cache).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, Key};
use crate::io::{take_back, Cancelled, IoMode};
use crate::sys::buf::{AnyBuf, IoBuf, IoBufMut};
use crate::sys::files as sys_files;
use crate::{Driver, Error, Result, Status};

// How a read or write reaches the OS: one module per OS with the same items
// (`FileIo` with `new` and `finished`; `start`, `issue`, `cancel`,
// `withdraw`, `forget`). Unix runs transfers on the worker pool, Windows
// through the overlapped I/O engine.
#[cfg(unix)]
#[path = "files/pool.rs"]
mod transfer;
#[cfg(windows)]
#[path = "files/overlapped.rs"]
mod transfer;

define_handle!(
    /// An open file of a [`Driver`].
    FileHandle,
    File
);

/// How [`Files::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Create a new file for reading and writing; `AlreadyExists` if it exists.
    CreateNew,
    /// Create or truncate to zero, for reading and writing.
    CreateTruncate,
    /// Create if missing; every write goes to the end (the offset is ignored,
    /// as with `O_APPEND`).
    Append,
}

type OpenCallback = Box<dyn FnOnce(&mut Driver, Result<FileHandle>)>;
type IoDone = Box<dyn FnOnce(&mut Driver, FileHandle, Result<usize>, AnyBuf)>;
type UnitDone = Box<dyn FnOnce(&mut Driver, Result<()>)>;

/// What a file job returns.
enum JobResult {
    Opened(std::io::Result<File>, bool),
    #[cfg_attr(windows, allow(dead_code))]
    Transferred(std::io::Result<usize>),
    Unit(std::io::Result<()>),
}

enum FileCallback {
    Open(OpenCallback),
    Read(IoDone),
    Write(IoDone),
    Unit(UnitDone),
    /// Cancelled: the job's result is dropped.
    Orphaned,
}

#[cfg_attr(windows, allow(dead_code))]
pub(crate) struct FileOp {
    file: Key,
    callback: FileCallback,
    /// The buffer, and whether a job is using its memory.
    buf: PoolBuf,
    offset: u64,
    mode: IoMode,
    done: usize,
}

/// A file operation's buffer on Unix, whose memory a worker may be using.
pub(crate) struct PoolBuf {
    buf: AnyBuf,
    /// Set while a job holds a window into `buf`; the job's [`JobDone`]
    /// raises it once the job ran (or was dropped unrun).
    in_flight: Option<Arc<AtomicBool>>,
}

/// Goes with a file job: dropped when the job has run (or is dropped
/// unrun), it tells the buffer's owner that the worker let go of it.
#[cfg_attr(windows, allow(dead_code))]
struct JobDone(Arc<AtomicBool>);

impl Drop for JobDone {
    fn drop(&mut self) {
        self.0.store(true, AtomicOrdering::Release);
    }
}

impl PoolBuf {
    fn new(buf: AnyBuf) -> PoolBuf {
        PoolBuf { buf, in_flight: None }
    }

    /// The buffer, if no job is using it.
    fn take(&mut self) -> Option<AnyBuf> {
        self.in_flight.is_none().then(|| std::mem::take(&mut self.buf))
    }

    /// Lends the buffer's memory to a job: the job keeps the returned guard
    /// until it is done with it.
    #[cfg_attr(windows, allow(dead_code))]
    fn lend(&mut self) -> JobDone {
        let flag = Arc::new(AtomicBool::new(false));
        self.in_flight = Some(flag.clone());
        JobDone(flag)
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(done) = self.in_flight.take() {
            // The operation is dropped (the driver is going away) while a
            // worker may still read or write this memory: wait for that one
            // `pread` / `pwrite` (a queued job that never runs is dropped,
            // which raises the flag too) rather than free it under the worker.
            while !done.load(AtomicOrdering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

pub(crate) struct FileState {
    pub(crate) file: Arc<File>,
    /// Truncates in flight (any number; they hold no buffer).
    other_ops: Vec<Key>,
    /// How this OS moves the file's reads and writes: the worker pool's
    /// read / write in flight (Unix), or the overlapped handle's registration
    /// and slots (Windows).
    pub(crate) io: transfer::FileIo,
}

/// The file view of a driver (see [`Driver::files`]).
pub struct Files<'a> {
    drv: &'a mut Driver,
}

fn open_options(mode: OpenMode) -> OpenOptions {
    let mut o = OpenOptions::new();
    match mode {
        OpenMode::Read => o.read(true),
        OpenMode::ReadWrite => o.read(true).write(true),
        OpenMode::CreateNew => o.read(true).write(true).create_new(true),
        OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
        OpenMode::Append => o.read(true).append(true).create(true),
    };
    sys_files::prepare_options(&mut o);
    o
}

impl Driver {
    /// Files: open, read, write, truncate, close.
    pub fn files(&mut self) -> Files<'_> {
        Files { drv: self }
    }

    fn file_op(&mut self, file: Key, callback: FileCallback) -> Key {
        self.ops.insert(Op::File(FileOp {
            file,
            callback,
            buf: PoolBuf::new(AnyBuf::empty()),
            offset: 0,
            mode: IoMode::Once,
            done: 0,
        }))
    }

    pub(crate) fn complete_file(&mut self, key: Key, outcome: Outcome) -> bool {
        let Some(Op::File(op)) = self.ops.get_mut(key) else {
            return false;
        };
        if matches!(outcome, Outcome::Job(_)) {
            // The worker is done with the buffer's memory.
            op.buf.in_flight = None;
        }
        let result = match outcome {
            Outcome::Job(out) => match out.downcast::<JobResult>() {
                Ok(r) => Ok(*r),
                Err(_) => Err(Error::new(Status::Other)),
            },
            Outcome::Failed(e) => Err(e),
            _ => Err(Error::new(Status::Other)),
        };
        if matches!(op.callback, FileCallback::Orphaned) {
            self.ops.remove(key);
            return false;
        }
        // Reads and writes may go on (IoMode::All).
        let io_result = match result {
            Ok(JobResult::Transferred(r)) => {
                let reading = matches!(op.callback, FileCallback::Read(_));
                let requested = op.buf.buf.capacity_for(reading) - op.done;
                match r {
                    Ok(0) if requested > 0 && reading => {
                        Some(Err(Error::new(Status::EndOfFile).with_transferred(op.done)))
                    }
                    Ok(0) if requested > 0 => Some(Err(Error::new(Status::NoSpace).with_transferred(op.done))),
                    Ok(n) => {
                        op.done += n;
                        // Pool transfers exist on Unix only (Windows files go
                        // through the backend's I/O engine).
                        if op.mode == IoMode::All && n < requested {
                            transfer::issue(self, key);
                            return false;
                        }
                        Some(Ok(op.done))
                    }
                    Err(e) => Some(Err(Error::from(e).with_transferred(op.done))),
                }
            }
            Ok(other) => {
                let Some(Op::File(op)) = self.ops.remove(key) else {
                    unreachable!()
                };
                if let Some(state) = self.tables.files.get_mut(op.file) {
                    state.other_ops.retain(|k| *k != key);
                }
                return self.finish_file_other(op, Ok(other));
            }
            Err(e) => {
                // A failure before any job ran: the buffer is still home.
                Some(Err(e))
            }
        };
        let Some(Op::File(op)) = self.ops.remove(key) else {
            unreachable!()
        };
        let handle = FileHandle(op.file);
        if let Some(state) = self.tables.files.get_mut(op.file) {
            state.io.finished(key);
        }
        let result = io_result.expect("set above");
        let mut op = op;
        let mut buf = op.buf.take().unwrap_or_default();
        if matches!(op.callback, FileCallback::Read(_)) {
            buf.commit_read(match &result {
                Ok(n) => *n,
                Err(e) => e.transferred(),
            });
        }
        match op.callback {
            FileCallback::Read(cb) => cb(self, handle, result.map_err(|e| e.in_operation(crate::error::Operation::Read)), buf),
            FileCallback::Write(cb) => cb(self, handle, result.map_err(|e| e.in_operation(crate::error::Operation::Write)), buf),
            FileCallback::Open(cb) => cb(self, result.map(|_| handle).map_err(|e| e.in_operation(crate::error::Operation::Open))),
            FileCallback::Unit(cb) => cb(self, result.map(drop)),
            FileCallback::Orphaned => unreachable!("handled above"),
        }
        true
    }

    fn finish_file_other(&mut self, op: FileOp, result: Result<JobResult>) -> bool {
        match (op.callback, result) {
            (FileCallback::Open(cb), Ok(JobResult::Opened(r, append))) => {
                let r = r.map_err(Error::from).and_then(|file| self.insert_file(file, append));
                cb(self, r.map_err(|e| e.in_operation(crate::error::Operation::Open)));
            }
            (FileCallback::Unit(cb), Ok(JobResult::Unit(r))) => cb(self, r.map_err(Error::from)),
            (FileCallback::Open(cb), Err(e)) => cb(self, Err(e.in_operation(crate::error::Operation::Open))),
            (FileCallback::Unit(cb), Err(e)) => cb(self, Err(e)),
            _ => return false,
        }
        true
    }

    /// Withdraws a file's pending read or write (`Files::cancel_read` /
    /// `cancel_write`): the OS's way (see [`transfer`]).
    fn cancel_file_op(&mut self, file: FileHandle, write: bool) -> Option<Cancelled> {
        transfer::cancel(self, file, write)
    }

    pub(super) fn orphan_file_op(&mut self, key: Key) -> Option<Cancelled> {
        let Some(Op::File(op)) = self.ops.get_mut(key) else {
            return None;
        };
        let transferred = op.done;
        match op.buf.take() {
            // No job holds the buffer (a failure is queued): give it back now.
            Some(mut buf) => {
                if matches!(op.callback, FileCallback::Read(_)) {
                    buf.commit_read(transferred);
                }
                self.ops.remove(key);
                Some(Cancelled {
                    buffer: Some(buf),
                    transferred,
                })
            }
            None => {
                op.callback = FileCallback::Orphaned;
                Some(Cancelled {
                    buffer: None,
                    transferred,
                })
            }
        }
    }

    /// Stores an open file (on Windows, registering its overlapped handle).
    fn insert_file(&mut self, file: File, append: bool) -> Result<FileHandle> {
        let io = transfer::FileIo::new(self, &file, append)?;
        Ok(FileHandle(self.tables.files.insert(FileState {
            file: Arc::new(file),
            other_ops: Vec::new(),
            io,
        })))
    }

    /// Removes a file from the table, orphans its operations, and returns the
    /// file, to be closed on the pool (or when the last in-flight job lets go
    /// of it).
    fn take_file(&mut self, key: Key) -> Option<Arc<File>> {
        transfer::withdraw(self, key);
        let entry = self.tables.files.remove(key)?;
        transfer::forget(self, entry.io);
        for op in entry.other_ops {
            let _ = self.orphan_file_op(op);
        }
        Some(entry.file)
    }

    pub(crate) fn destroy_file(&mut self, key: Key) {
        if let Some(file) = self.take_file(key) {
            // Dropping the last reference closes it; do that off the loop thread.
            let op = self.file_op(key, FileCallback::Orphaned);
            self.submit_job(op, move || {
                drop(file);
                Box::new(())
            });
        }
    }
}

impl Files<'_> {
    /// Opens `path` on the worker pool; the callback gets the file or the
    /// open status: `NotFound`, `NotAllowed`, `AlreadyExists` (for
    /// [`OpenMode::CreateNew`]), `InvalidArgument` (a NUL byte in the path) …
    pub fn open(
        &mut self,
        path: impl AsRef<Path>,
        mode: OpenMode,
        callback: impl FnOnce(&mut Driver, Result<FileHandle>) + 'static,
    ) {
        let path: PathBuf = path.as_ref().to_owned();
        let key = self.drv.file_op(
            Key {
                index: 0,
                gen: 0,
                driver: 0,
            },
            FileCallback::Open(Box::new(callback)),
        );
        self.drv.submit_job(key, move || {
            Box::new(JobResult::Opened(
                open_options(mode).open(&path),
                mode == OpenMode::Append,
            ))
        });
    }

    /// Takes over an open `std::fs::File`.
    ///
    /// Windows: the file must have been opened for overlapped I/O
    /// (`FILE_FLAG_OVERLAPPED` through `OpenOptionsExt::custom_flags`);
    /// otherwise reads and writes fail with `InvalidArgument`.
    pub fn adopt(&mut self, file: File) -> Result<FileHandle> {
        self.drv.insert_file(file, false)
    }

    /// The file's size in bytes.
    pub fn size(&self, file: FileHandle) -> Result<u64> {
        let state = self.drv.tables.files.get(file.0).ok_or_else(Error::invalid_handle)?;
        Ok(state.file.metadata()?.len())
    }

    /// Reads into `buf` from `offset` as `mode` says. Reading at or past the
    /// end of the file is [`Status::EndOfFile`] (with the bytes read before it
    /// in [`Error::transferred`] for [`IoMode::All`]).
    ///
    /// The bytes go into the spare room of `buf` (see [`buf`](crate::buf)):
    /// read into `Vec::with_capacity(n)`, the buffer comes back with its
    /// length set to what was read. A full buffer is
    /// [`Status::InvalidArgument`].
    pub fn read<B: IoBufMut>(
        &mut self,
        file: FileHandle,
        offset: u64,
        buf: B,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, FileHandle, Result<usize>, B) + 'static,
    ) {
        let cb = FileCallback::Read(Box::new(move |drv, f, r, b| callback(drv, f, r, take_back(b))));
        self.start(file, offset, AnyBuf::for_read(buf), mode, cb);
    }

    /// Writes `buf` at `offset` as `mode` says.
    pub fn write<B: IoBuf>(
        &mut self,
        file: FileHandle,
        offset: u64,
        buf: B,
        mode: IoMode,
        callback: impl FnOnce(&mut Driver, FileHandle, Result<usize>, B) + 'static,
    ) {
        let cb = FileCallback::Write(Box::new(move |drv, f, r, b| callback(drv, f, r, take_back(b))));
        self.start(file, offset, AnyBuf::for_write(buf), mode, cb);
    }

    fn start(&mut self, file: FileHandle, offset: u64, buf: AnyBuf, mode: IoMode, callback: FileCallback) {
        transfer::start(self.drv, file, offset, buf, mode, callback);
    }

    /// Withdraws the pending read: its callback will not run. The buffer stays
    /// with the worker until it finishes ([`Cancelled::buffer`] is `None`).
    ///
    /// Windows: the read is cancelled with `CancelIoEx` and the buffer comes
    /// back here once the OS let go of it (normally at once).
    pub fn cancel_read(&mut self, file: FileHandle) -> Option<Cancelled> {
        self.drv.cancel_file_op(file, false)
    }

    /// Withdraws the pending write: its callback will not run. The write may
    /// still happen (the worker may already be in `pwrite`).
    pub fn cancel_write(&mut self, file: FileHandle) -> Option<Cancelled> {
        self.drv.cancel_file_op(file, true)
    }

    /// Sets the file's size on the worker pool.
    pub fn truncate(&mut self, file: FileHandle, size: u64, callback: impl FnOnce(&mut Driver, Result<()>) + 'static) {
        let key = self.drv.file_op(file.0, FileCallback::Unit(Box::new(callback)));
        let Some(state) = self.drv.tables.files.get_mut(file.0) else {
            return self.drv.push_ready(key, Outcome::Failed(Error::invalid_handle()));
        };
        state.other_ops.push(key);
        let f = state.file.clone();
        self.drv
            .submit_job(key, move || Box::new(JobResult::Unit(f.set_len(size))));
    }

    /// Closes the file now, whatever its reference count: the handle becomes
    /// invalid, pending operations are cancelled (their callbacks never run),
    /// and the descriptor is closed on the worker pool; the callback gets the
    /// result of `close`.
    pub fn close(&mut self, file: FileHandle, callback: impl FnOnce(&mut Driver, Result<()>) + 'static) {
        let key = self.drv.file_op(file.0, FileCallback::Unit(Box::new(callback)));
        let Some(f) = self.drv.take_file(file.0) else {
            return self.drv.push_ready(key, Outcome::Failed(Error::invalid_handle()));
        };
        self.drv
            .submit_job(key, move || Box::new(JobResult::Unit(sys_files::close(f))));
    }
}
