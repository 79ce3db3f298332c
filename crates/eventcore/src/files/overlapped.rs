//! Windows: a file's reads and writes are overlapped `ReadFileEx` /
//! `WriteFileEx` at the offset, through the backend and the I/O engine
//! (`io.rs`), like any other I/O handle; cancelling is `CancelIoEx` through
//! the engine, which gives the buffer back once the OS let go of it.

use std::fs::File;

use super::{FileCallback, FileHandle};
use crate::handle::{HandleKind, Key};
use crate::io::{Cancelled, IoCallback, IoDoneFn, IoMode, IoOp, IoSlots, Owner, Target};
use crate::sys::buf::AnyBuf;
use crate::sys::{Backend as _, SourceKind};
use crate::{Driver, Result};

/// The overlapped handle's registration and read / write slots.
pub(crate) struct FileIo {
    pub(crate) slots: IoSlots,
    /// Opened for appending: writes go to the end (passed as the "append"
    /// offset explicitly).
    append: bool,
}

impl FileIo {
    pub(super) fn new(drv: &mut Driver, file: &File, append: bool) -> Result<FileIo> {
        Ok(FileIo {
            slots: IoSlots::new(drv.sys.add_source(file, SourceKind::Fd)?),
            append,
        })
    }

    /// A pool op completed (open, truncate, close): it never holds a slot.
    pub(super) fn finished(&mut self, _key: Key) {}
}

fn owner(key: Key) -> Owner {
    Owner {
        kind: HandleKind::File,
        key,
    }
}

/// Starts the overlapped read or write (`Busy`, full buffers and the I/O
/// modes are the engine's).
pub(super) fn start(drv: &mut Driver, file: FileHandle, offset: u64, buf: AnyBuf, mode: IoMode, callback: FileCallback) {
    let append = drv.tables.files.get(file.0).is_some_and(|s| s.io.append);
    let (reading, cb) = match callback {
        FileCallback::Read(cb) => (true, cb),
        FileCallback::Write(cb) => (false, cb),
        _ => unreachable!("only reads and writes start here"),
    };
    let done = IoDoneFn::new(move |drv, key, r, b| cb(drv, FileHandle(key), r, b));
    let cb = if reading {
        IoCallback::Read(done)
    } else {
        IoCallback::Write(done)
    };
    let mut op = IoOp::new(owner(file.0), cb, buf, mode);
    op.target = Target::At(if append && !reading { u64::MAX } else { offset });
    drv.begin_io(op);
}

/// Never called: no pool transfer exists on Windows (the engine resumes
/// `IoMode::All` transfers itself).
pub(super) fn issue(_drv: &mut Driver, _key: Key) {
    unreachable!("Windows file transfers run in the I/O engine")
}

/// Withdraws the pending read or write through the engine.
pub(super) fn cancel(drv: &mut Driver, file: FileHandle, write: bool) -> Option<Cancelled> {
    let state = drv.tables.files.get_mut(file.0)?;
    let key = if write {
        state.io.slots.write_op.take()?
    } else {
        state.io.slots.read_op.take()?
    };
    drv.cancel_io(key)
}

/// Before the file leaves the table: cancel what the engine has in flight.
pub(super) fn withdraw(drv: &mut Driver, key: Key) {
    drv.cancel_slots(owner(key));
}

/// The file left the table: unregister its handle.
pub(super) fn forget(drv: &mut Driver, io: FileIo) {
    drv.sys.remove_source(io.slots.src);
}
