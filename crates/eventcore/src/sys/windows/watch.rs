//! Directory watching with `ReadDirectoryChangesW`: the directory handle and
//! the parsing of `FILE_NOTIFY_INFORMATION` records. The requests themselves
//! go through the backend (`Request::DirectoryChanges`) with a completion
//! routine, like any other overlapped request.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use windows_sys::Win32::Storage::FileSystem::{
    FILE_ACTION_ADDED, FILE_ACTION_MODIFIED, FILE_ACTION_REMOVED, FILE_ACTION_RENAMED_NEW_NAME,
    FILE_ACTION_RENAMED_OLD_NAME, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OVERLAPPED, FILE_LIST_DIRECTORY,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
};

/// Bytes collected per request: 64 KiB, the largest size that also works on
/// network shares. A request is re-issued as soon as its changes were
/// delivered; if more changes than fit arrive meanwhile, Windows reports an
/// overflow (which the watcher delivers as such).
pub(crate) const BUFFER: usize = 64 * 1024;

/// What a record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Added,
    Removed,
    Modified,
    RenamedOld,
    RenamedNew,
}

/// Opens `path` as a directory handle for overlapped change notifications.
/// Others may still read, write, rename and delete in it.
pub(crate) fn open_directory(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .access_mode(FILE_LIST_DIRECTORY)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED)
        .open(path)
}

/// Whether a failed request means "changes were lost" (`ERROR_NOTIFY_ENUM_DIR`).
pub(crate) fn is_overflow(code: Option<i32>) -> bool {
    code == Some(1022)
}

/// Whether a failed request was cancelled (`ERROR_OPERATION_ABORTED`).
pub(crate) fn is_aborted(code: Option<i32>) -> bool {
    code == Some(995)
}

/// Parses the `FILE_NOTIFY_INFORMATION` records in `buf`: (action, path
/// relative to the watched directory).
pub(crate) fn parse(buf: &[u8]) -> Vec<(Action, PathBuf)> {
    let u32_at = |at: usize| -> Option<u32> {
        let b = buf.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    while let (Some(next), Some(action), Some(len)) = (u32_at(at), u32_at(at + 4), u32_at(at + 8)) {
        let start = at + 12;
        let Some(name) = buf.get(start..start + len as usize) else {
            break;
        };
        let wide: Vec<u16> = name.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let path = PathBuf::from(OsString::from_wide(&wide));
        let action = match action {
            FILE_ACTION_ADDED => Some(Action::Added),
            FILE_ACTION_REMOVED => Some(Action::Removed),
            FILE_ACTION_MODIFIED => Some(Action::Modified),
            FILE_ACTION_RENAMED_OLD_NAME => Some(Action::RenamedOld),
            FILE_ACTION_RENAMED_NEW_NAME => Some(Action::RenamedNew),
            _ => None,
        };
        if let Some(action) = action {
            out.push((action, path));
        }
        if next == 0 {
            break;
        }
        at += next as usize;
    }
    out
}
