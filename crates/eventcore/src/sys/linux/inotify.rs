//! Directory watching with inotify: one descriptor per driver, one watch per
//! directory. `add_watch` is thread-safe, so recursive walks run on the
//! worker pool and add the watches of a whole tree there.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys::unix::syscall;

/// What changed, as inotify says it.
#[derive(Debug)]
pub(crate) struct RawEvent {
    pub wd: i32,
    pub mask: u32,
    pub name: OsString,
}

pub(crate) const ADDED: u32 = libc::IN_CREATE | libc::IN_MOVED_TO;
pub(crate) const REMOVED: u32 = libc::IN_DELETE | libc::IN_MOVED_FROM;
pub(crate) const MODIFIED: u32 = libc::IN_MODIFY;
pub(crate) const MOVED_FROM: u32 = libc::IN_MOVED_FROM;
pub(crate) const CREATED: u32 = libc::IN_CREATE;
pub(crate) const IS_DIR: u32 = libc::IN_ISDIR;
pub(crate) const OVERFLOW: u32 = libc::IN_Q_OVERFLOW;
pub(crate) const SELF_GONE: u32 = libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
pub(crate) const IGNORED: u32 = libc::IN_IGNORED;

pub(crate) struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub fn new() -> io::Result<Inotify> {
        let fd = syscall!(inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC))?;
        // SAFETY: inotify_init1 returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify { fd })
    }

    /// Watches the directory `path` (not following a final symlink); returns
    /// the watch descriptor. Watching the same directory twice gives the same one.
    pub fn add_watch(&self, path: &Path) -> io::Result<i32> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mask = ADDED | REMOVED | MODIFIED | SELF_GONE | libc::IN_ONLYDIR | libc::IN_DONT_FOLLOW;
        syscall!(inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask))
    }

    pub fn rm_watch(&self, wd: i32) {
        // A watch the kernel already dropped (its directory is gone) is EINVAL.
        let _ = syscall!(inotify_rm_watch(self.fd.as_raw_fd(), wd));
    }

    /// Reads every queued event into `out`, using `buf` as scratch space.
    pub fn read_events(&self, buf: &mut Vec<u8>, out: &mut Vec<RawEvent>) {
        if buf.len() < 64 * 1024 {
            buf.resize(64 * 1024, 0);
        }
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let n = match syscall!(read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())) {
                Ok(n) => n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let header = std::mem::size_of::<libc::inotify_event>();
            let mut at = 0;
            while at + header <= n {
                // SAFETY: the kernel wrote a whole inotify_event header at `at`;
                // read_unaligned copes with the byte buffer's alignment.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast()) };
                let name_start = at + header;
                let name_end = (name_start + ev.len as usize).min(n);
                let raw = &buf[name_start..name_end];
                let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                out.push(RawEvent {
                    wd: ev.wd,
                    mask: ev.mask,
                    name: OsStr::from_bytes(&raw[..len]).to_owned(),
                });
                at = name_end;
            }
        }
    }
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
