//! File helpers for the worker pool on Windows: files are opened for
//! overlapped I/O (reads and writes are `ReadFileEx` / `WriteFileEx` through
//! the backend), and closed off the loop thread.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::sync::Arc;

use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OVERLAPPED;

/// Opens files for overlapped I/O.
pub(crate) fn prepare_options(o: &mut OpenOptions) {
    o.custom_flags(FILE_FLAG_OVERLAPPED);
}

/// Closes the file if this was the last reference (`CloseHandle` cannot
/// fail for a valid handle in a way worth reporting; std drops it).
pub(crate) fn close(file: Arc<File>) -> io::Result<()> {
    drop(file);
    Ok(())
}
