//! Overlapped pipes on Windows: a pair is a named pipe (the read end, created
//! with a unique name) and a client opened on it (the write end), both with
//! `FILE_FLAG_OVERLAPPED` so `ReadFileEx` / `WriteFileEx` complete through
//! completion routines. Anonymous pipes (`CreatePipe`) cannot do overlapped
//! I/O, which is why they are not used.

use std::io;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicU64, Ordering};

use windows_sys::Win32::Foundation::{GENERIC_WRITE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, OPEN_EXISTING, PIPE_ACCESS_INBOUND,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_WAIT,
};

/// Nothing to prepare: the handle's overlapped mode was chosen when it was opened.
pub(crate) fn prepare_pipe(_handle: &OwnedHandle) -> io::Result<()> {
    Ok(())
}

/// A new pipe: (read end, write end), both overlapped, neither inheritable.
pub(crate) fn pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        r"\\.\pipe\eventcore-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let wide: Vec<u16> = name.encode_utf16().chain(std::iter::once(0)).collect();
    // SAFETY: a new, uniquely named, inbound byte pipe with one instance.
    let read = unsafe {
        CreateNamedPipeW(
            wide.as_ptr(),
            PIPE_ACCESS_INBOUND | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            65536,
            65536,
            0,
            std::ptr::null(),
        )
    };
    if read == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CreateNamedPipeW returned a handle nothing else owns.
    let read = unsafe { OwnedHandle::from_raw_handle(read) };
    // SAFETY: opens the client end of the pipe we just created.
    let write = unsafe {
        CreateFileW(
            wide.as_ptr(),
            GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            std::ptr::null_mut(),
        )
    };
    if write == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CreateFileW returned a handle nothing else owns.
    let write = unsafe { OwnedHandle::from_raw_handle(write) };
    Ok((read, write))
}
