//! Directory watch engines: what the OS says changed below a watched
//! directory, without a driver, a handle or a callback in sight.
//!
//! One engine per OS, [`Watches`], with the same methods everywhere:
//!
//! - `prepare(sys, base)` opens what the OS needs to watch `base` (inotify:
//!   the driver's descriptor, created and registered on first use, and a
//!   watch for `base`; Windows: an overlapped directory handle, registered);
//!   `add(watcher, prepared, base, recursive)` then starts the watch under
//!   the watcher's key and says which [`Reader`] to keep armed and which
//!   [`Walk`] to run on the worker pool.
//! - `arm(reader)` gives the request (source, [`WatchRead`], buffer) that
//!   reader wants in flight, if it still wants one; the driver runs it as an
//!   internal I/O operation. `read_done(reader, result, buffer)` takes its
//!   completion and says whether to arm it again.
//! - `walk_done(watcher, output)` takes a walk's output.
//! - `next_step()` yields, one at a time, what to deliver: a [`Step`] for
//!   one watcher, or an overflow for all. The driver delivers each before it
//!   asks for the next, so a callback that releases or adds watchers is seen
//!   by the steps after it (the engine processes its events lazily).
//! - `withdraw(watcher)` lists the readers whose requests the driver must
//!   cancel before `remove(sys, watcher)` forgets the watcher; `close(sys)`
//!   unregisters what is left when the driver goes.
//!
//! The designs behind it: `linux/watch.rs` (one inotify descriptor per
//! driver, a watch per directory, recursive watches walked on the pool) and
//! `windows/watch.rs` (one `ReadDirectoryChangesW` request per watcher).

use std::any::Any;
use std::ffi::OsString;
use std::path::PathBuf;

#[cfg(target_os = "linux")]
pub(crate) use super::linux::watch::Watches;
#[cfg(windows)]
pub(crate) use super::windows::watch::Watches;
use super::SourceId;
use crate::slab::Key;

/// What happened to a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// An entry was created, or renamed / moved to this name.
    Added,
    /// An entry was deleted, or renamed / moved away from this name.
    Removed,
    /// A file's content changed.
    Modified,
    /// The OS dropped changes (its queue overflowed): rescan the tree.
    Overflow,
}

/// One change an engine found; the driver adds the base directory.
#[derive(Debug)]
pub(crate) struct Change {
    pub kind: ChangeKind,
    /// Relative to the watched directory.
    pub directory: PathBuf,
    pub name: OsString,
    pub is_directory: bool,
}

impl Change {
    /// Changes were lost.
    pub fn overflow() -> Change {
        Change {
            kind: ChangeKind::Overflow,
            directory: PathBuf::new(),
            name: OsString::new(),
            is_directory: false,
        }
    }
}

/// One read the engine keeps in flight: shared by every watcher (inotify's
/// descriptor) or a watcher's own (its directory handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(dead_code)] // Each OS's engine uses one of the two.
pub(crate) enum Reader {
    Shared,
    Own(Key),
}

/// The request a reader wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // Each OS's engine uses one of the two.
pub(crate) enum WatchRead {
    /// Readiness only: the engine reads the source itself.
    Readable,
    /// `Request::DirectoryChanges` into the buffer.
    DirectoryChanges { recursive: bool },
}

/// A request to keep in flight for a reader.
pub(crate) struct Arm {
    pub src: SourceId,
    pub read: WatchRead,
    /// The buffer the request fills (none for `Readable`).
    pub buf: Option<Vec<u8>>,
}

/// What `add` asks of the driver.
pub(crate) struct Added {
    /// The reader to arm now.
    pub reader: Reader,
    /// A walk to run on the worker pool.
    pub walk: Option<Walk>,
}

/// A walk of (part of) a watcher's tree, to run on the worker pool; its
/// output goes back to `walk_done`.
pub(crate) struct Walk {
    pub watcher: Key,
    pub job: Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>,
}

/// What to deliver next.
pub(crate) enum Step {
    /// To one watcher: start its walk (if any), then deliver the changes.
    To {
        watcher: Key,
        walk: Option<Walk>,
        changes: Vec<crate::Result<Change>>,
    },
    /// The OS lost changes of every watcher: an overflow for each.
    #[cfg_attr(windows, allow(dead_code))]
    OverflowAll,
}
