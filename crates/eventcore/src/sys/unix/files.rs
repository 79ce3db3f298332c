//! Positional file I/O for the worker pool: `pread` / `pwrite` never touch the
//! shared file offset, so concurrent operations on one file cannot race.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::sys::unix::syscall;

/// Nothing to add to the open options on Unix.
pub(crate) fn prepare_options(_o: &mut std::fs::OpenOptions) {}

/// `pread` once (retrying on EINTR).
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// `pwrite` once (retrying on EINTR).
pub(crate) fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.write_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// A read that only takes what is in the page cache: `preadv2(RWF_NOWAIT)`,
/// `WouldBlock` if the data would have to come from the device. Kernels or
/// file systems without `RWF_NOWAIT` get a plain `pread`.
pub(crate) fn read_at_nowait(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec describing `buf`, which is live and exclusively ours.
    match syscall!(preadv2(
        file.as_raw_fd(),
        &iov,
        1,
        offset as libc::off_t,
        libc::RWF_NOWAIT
    )) {
        Ok(n) => Ok(n as usize),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)) => read_at(file, buf, offset),
        Err(e) => Err(e),
    }
}

/// Closes the file and reports what `close` said — if this was the last
/// reference; otherwise the in-flight job holding the other one closes it.
pub(crate) fn close(file: Arc<File>) -> io::Result<()> {
    match Arc::try_unwrap(file) {
        Ok(file) => {
            let fd = file.into_raw_fd();
            // SAFETY: `fd` was just released by its only owner.
            syscall!(close(fd)).map(drop)
        }
        Err(_) => Ok(()),
    }
}
