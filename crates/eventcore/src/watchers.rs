//! Directory watchers: a repeating callback for every change in a directory
//! (and, if recursive, in every directory below it).
//!
//! Each change is a [`FileChange`]: its kind, the watched base directory, the
//! directory relative to it, the entry's name, and whether the entry is a
//! directory. A rename is a `Removed` of the old name and an `Added` of the
//! new one. Kernel queue overflows are delivered as [`ChangeKind::Overflow`]
//! (changes were lost: rescan), and failures (the watched directory itself was
//! removed or moved, a subdirectory could not be watched) as `Err` — never
//! dropped.
//!
//! Linux: inotify. The base directory is watched at once; the subdirectories of
//! a recursive watch are found and watched on the worker pool, so a large tree
//! never blocks the loop. A directory created inside a recursive watch is
//! watched the same way, and what was created in it before its watch was in
//! place is reported as `Added`. Events for a subdirectory whose watch is
//! still being installed are held back and delivered once it is.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::handle::{define_handle, Key};
use crate::{Driver, Result};

#[cfg(unix)]
mod inotify;
#[cfg(windows)]
mod rdcw;

#[cfg(unix)]
pub(crate) use inotify::{WalkOp, WatchSource, WatcherState};
#[cfg(windows)]
pub(crate) use rdcw::{WalkOp, WatchSource, WatcherState};

define_handle!(
    /// A directory watcher of a [`Driver`].
    WatcherId,
    Watcher
);

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

/// One change seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileChange {
    /// What happened.
    pub kind: ChangeKind,
    /// The directory the watcher was created for.
    pub base_directory: PathBuf,
    /// The entry's directory, relative to `base_directory` (empty for the base
    /// itself, and for [`ChangeKind::Overflow`]).
    pub directory: PathBuf,
    /// The entry's name (empty for [`ChangeKind::Overflow`]).
    pub name: OsString,
    /// Whether the entry is a directory.
    pub is_directory: bool,
}

impl FileChange {
    /// `base_directory / directory / name`.
    pub fn path(&self) -> PathBuf {
        self.base_directory.join(&self.directory).join(&self.name)
    }
}

pub(crate) type WatchCallback = Box<dyn FnMut(&mut Driver, WatcherId, Result<FileChange>)>;

/// The watcher view of a driver (see [`Driver::watchers`]).
pub struct Watchers<'a> {
    pub(crate) drv: &'a mut Driver,
}

impl Driver {
    /// Directory watchers.
    pub fn watchers(&mut self) -> Watchers<'_> {
        Watchers { drv: self }
    }

    /// Calls the watcher's callback for each change, as long as it lives.
    pub(crate) fn deliver(&mut self, watcher: Key, changes: Vec<Result<FileChange>>) -> bool {
        let mut ran = false;
        for change in changes {
            let Some(state) = self.tables.watchers.get_mut(watcher) else {
                break;
            };
            let Some(mut cb) = state.callback.take() else {
                break;
            };
            self.guarded(|drv| cb(drv, WatcherId(watcher), change));
            ran = true;
            if let Some(state) = self.tables.watchers.get_mut(watcher) {
                if state.callback.is_none() {
                    state.callback = Some(cb);
                }
            }
        }
        ran
    }
}

impl Watchers<'_> {
    /// Watches the directory `path` (and, if `recursive`, every directory below
    /// it) and calls `callback` for each change until the watcher is released.
    /// A missing path is `NotFound`, a file `InvalidArgument` (not a
    /// directory), a path with a NUL byte `InvalidArgument`. Active watchers
    /// count as waiters.
    pub fn watch_directory(
        &mut self,
        path: impl AsRef<Path>,
        recursive: bool,
        callback: impl FnMut(&mut Driver, WatcherId, Result<FileChange>) + 'static,
    ) -> Result<WatcherId> {
        let key = self
            .drv
            .add_watcher(path.as_ref().to_path_buf(), recursive, Box::new(callback))?;
        Ok(WatcherId(key))
    }

    /// The base directory of a watcher.
    pub fn base_directory(&self, watcher: WatcherId) -> Result<PathBuf> {
        self.drv
            .watcher_base(watcher.0)
            .ok_or_else(crate::Error::invalid_handle)
    }
}
