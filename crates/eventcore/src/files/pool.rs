//! Unix: a file's reads and writes run on the worker pool (`pread` /
//! `pwrite` through a [`RawWindow`] into the op's buffer, which stays in the
//! op; [`PoolBuf`] knows while a job uses its memory). Cancelling orphans the
//! job: its result is dropped when it arrives.

use std::fs::File;

use super::{FileCallback, FileHandle, FileOp, JobResult, PoolBuf};
use crate::driver::{Op, Outcome};
use crate::handle::Key;
use crate::io::{Cancelled, IoMode};
use crate::sys::buf::{AnyBuf, RawWindow};
use crate::sys::files as sys_files;
use crate::{Driver, Error, Result, Status};

/// The pool read and write in flight of one file (one of each at a time).
pub(crate) struct FileIo {
    read_op: Option<Key>,
    write_op: Option<Key>,
}

impl FileIo {
    pub(super) fn new(_drv: &mut Driver, _file: &File, _append: bool) -> Result<FileIo> {
        Ok(FileIo {
            read_op: None,
            write_op: None,
        })
    }

    /// The op `key` completed: its slot is free again.
    pub(super) fn finished(&mut self, key: Key) {
        for slot in [&mut self.read_op, &mut self.write_op] {
            if *slot == Some(key) {
                *slot = None;
            }
        }
    }
}

/// Starts a read or write on the pool: `Busy` if one is in flight, a full
/// buffer `InvalidArgument`, an empty transfer done at once.
pub(super) fn start(
    drv: &mut Driver,
    file: FileHandle,
    offset: u64,
    mut buf: AnyBuf,
    mode: IoMode,
    callback: FileCallback,
) {
    let reading = matches!(callback, FileCallback::Read(_));
    let empty = buf.capacity_for(reading) == 0;
    let full = empty && reading && !buf.is_unallocated();
    let key = drv.ops.insert(Op::File(FileOp {
        file: file.0,
        callback,
        buf: PoolBuf::new(buf),
        offset,
        mode,
        done: 0,
    }));
    let Some(state) = drv.tables.files.get_mut(file.0) else {
        return drv.push_ready(key, Outcome::Failed(Error::invalid_handle()));
    };
    let slot = if reading {
        &mut state.io.read_op
    } else {
        &mut state.io.write_op
    };
    if slot.is_some() {
        return drv.push_ready(key, Outcome::Failed(Error::new(Status::Busy)));
    }
    *slot = Some(key);
    if full {
        return drv.push_ready(key, Outcome::Failed(Error::new(Status::InvalidArgument)));
    }
    if empty {
        drv.push_ready(key, Outcome::Job(Box::new(JobResult::Transferred(Ok(0)))));
        return;
    }
    issue(drv, key);
}

/// Hands the op's buffer to a pread / pwrite job at the op's current offset.
pub(super) fn issue(drv: &mut Driver, key: Key) {
    let Some(Op::File(op)) = drv.ops.get_mut(key) else {
        return;
    };
    let Some(state) = drv.tables.files.get(op.file) else {
        return;
    };
    let file = state.file.clone();
    let (offset, writing, mode) = (
        op.offset + op.done as u64,
        matches!(op.callback, FileCallback::Write(_)),
        op.mode,
    );
    let mut window = if writing {
        RawWindow::for_write(&op.buf.buf, op.done)
    } else {
        RawWindow::for_read(&mut op.buf.buf, op.done)
    };
    if mode == IoMode::Immediate {
        let r = if writing {
            sys_files::write_at(&file, &window, offset)
        } else {
            sys_files::read_at_nowait(&file, &mut window, offset)
        };
        drv.push_ready(key, Outcome::Job(Box::new(JobResult::Transferred(r))));
        return;
    }
    let lent = op.buf.lend();
    drv.submit_job(key, move || {
        let _lent = lent;
        let r = if writing {
            sys_files::write_at(&file, &window, offset)
        } else {
            sys_files::read_at(&file, &mut window, offset)
        };
        Box::new(JobResult::Transferred(r))
    });
}

/// Withdraws the pending read or write by orphaning the worker's job.
pub(super) fn cancel(drv: &mut Driver, file: FileHandle, write: bool) -> Option<Cancelled> {
    let state = drv.tables.files.get_mut(file.0)?;
    let key = if write {
        state.io.write_op.take()?
    } else {
        state.io.read_op.take()?
    };
    drv.orphan_file_op(key)
}

/// Before the file leaves the table: nothing to do on the pool.
pub(super) fn withdraw(_drv: &mut Driver, _key: Key) {}

/// The file left the table: orphan its read and write.
pub(super) fn forget(drv: &mut Driver, io: FileIo) {
    for op in [io.read_op, io.write_op].into_iter().flatten() {
        let _ = drv.orphan_file_op(op);
    }
}
