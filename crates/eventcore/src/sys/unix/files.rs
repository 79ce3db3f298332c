//! Positional file I/O for the worker pool: `pread` / `pwrite` never touch the
//! shared file offset, so concurrent operations on one file cannot race.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::Arc;

use crate::sys::buf::RawWindow;
use crate::sys::unix::syscall;

/// Nothing to add to the open options on Unix.
pub(crate) fn prepare_options(_o: &mut std::fs::OpenOptions) {}

/// `pread` once into the window (retrying on EINTR).
pub(crate) fn read_at(file: &File, buf: &mut RawWindow, offset: u64) -> io::Result<usize> {
    let (ptr, len) = buf.parts();
    if len == 0 {
        return Ok(0);
    }
    loop {
        // SAFETY: the window addresses `len` writable bytes that only this
        // call uses meanwhile (`RawWindow`'s contract).
        match syscall!(pread(file.as_raw_fd(), ptr.cast(), len, offset as libc::off_t)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// `pwrite` once from the window (retrying on EINTR).
pub(crate) fn write_at(file: &File, buf: &RawWindow, offset: u64) -> io::Result<usize> {
    let (ptr, len) = buf.parts();
    if len == 0 {
        return Ok(0);
    }
    loop {
        // SAFETY: the window addresses `len` initialised bytes that stay
        // unchanged while this call reads them (`RawWindow`'s contract).
        match syscall!(pwrite(file.as_raw_fd(), ptr.cast(), len, offset as libc::off_t)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// A read that only takes what is in the page cache: `preadv2(RWF_NOWAIT)`,
/// `WouldBlock` if the data would have to come from the device. Kernels or
/// file systems without `RWF_NOWAIT` get a plain `pread`.
pub(crate) fn read_at_nowait(file: &File, buf: &mut RawWindow, offset: u64) -> io::Result<usize> {
    let (ptr, len) = buf.parts();
    if len == 0 {
        return Ok(0);
    }
    let iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    // SAFETY: one iovec describing the window, writable and ours meanwhile.
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
