//! Directory watching with `ReadDirectoryChangesW`: the directory handle,
//! the parsing of `FILE_NOTIFY_INFORMATION` records, and the watch engine
//! ([`Watches`]) over them. The requests themselves go through the backend
//! (`Request::DirectoryChanges`) with a completion routine, like any other
//! overlapped request.
//!
//! Each watcher keeps one request in flight (an internal op of the driver's
//! I/O engine, with a 64 KiB buffer that is reused); its completion is
//! parsed, delivered, and the request re-issued. A recursive watch covers the
//! whole tree natively (`bWatchSubtree`), so new subdirectories need no work.
//! The records do not say whether an entry is a directory: the engine asks
//! the file system for entries that exist, and remembers the directories of
//! the tree (walked once on the worker pool, then kept up to date from the
//! changes) to answer for entries that are gone. A request that completes
//! with no records, or with `ERROR_NOTIFY_ENUM_DIR`, lost changes: that is an
//! `Overflow`. Other failures (the watched directory was removed) are
//! delivered as `Err` and end the watch.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::slab::Key;
use crate::sys::watch::{Added, Arm, Change, ChangeKind, Reader, Step, Walk, WatchRead};
use crate::sys::{Backend as _, Native, SourceId, SourceKind};
use crate::{Error, Result, Status};
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

/// One watcher: its directory handle and what the engine knows of its tree.
struct Watcher {
    base: PathBuf,
    recursive: bool,
    /// The directory handle; closed with the watcher.
    dir: File,
    src: SourceId,
    /// The notification buffer while no request holds it.
    spare: Option<Vec<u8>>,
    /// Directories of the tree, relative to `base`.
    known_dirs: HashSet<PathBuf>,
}

/// Every watch of one driver (each watcher has its own handle).
pub(crate) struct Watches {
    watchers: HashMap<Key, Watcher>,
    /// Steps ready to hand out.
    queued: VecDeque<Step>,
}

/// What `prepare` opened: the directory handle, registered.
pub(crate) struct Prepared {
    dir: File,
    src: SourceId,
}

/// The directories below `base` (all levels if `recursive`), relative to it.
fn list_dirs(base: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(base.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let sub = rel.join(entry.file_name());
                if recursive {
                    stack.push(sub.clone());
                }
                out.push(sub);
            }
        }
    }
    out
}

impl Watches {
    pub fn new() -> Watches {
        Watches {
            watchers: HashMap::new(),
            queued: VecDeque::new(),
        }
    }

    /// Opens `base` for change notifications and registers the handle (a
    /// file is `InvalidArgument`).
    pub fn prepare(&mut self, sys: &mut Native, base: &Path) -> Result<Prepared> {
        if !std::fs::metadata(base)?.is_dir() {
            return Err(Error::new(Status::InvalidArgument));
        }
        let dir = open_directory(base)?;
        let src = sys.add_source(&dir, SourceKind::Fd)?;
        Ok(Prepared { dir, src })
    }

    /// Starts the watch of `watcher`: its own request, and a walk that
    /// learns the tree's directories off the loop thread.
    pub fn add(&mut self, watcher: Key, prepared: Prepared, base: PathBuf, recursive: bool) -> Added {
        self.watchers.insert(
            watcher,
            Watcher {
                base: base.clone(),
                recursive,
                dir: prepared.dir,
                src: prepared.src,
                spare: None,
                known_dirs: HashSet::new(),
            },
        );
        Added {
            reader: Reader::Own(watcher),
            walk: Some(Walk {
                watcher,
                job: Box::new(move || -> Box<dyn Any + Send> { Box::new(list_dirs(&base, recursive)) }),
            }),
        }
    }

    /// The watcher's `ReadDirectoryChangesW` request, while it lives.
    pub fn arm(&mut self, reader: Reader) -> Option<Arm> {
        let Reader::Own(watcher) = reader else {
            return None;
        };
        let state = self.watchers.get_mut(&watcher)?;
        Some(Arm {
            src: state.src,
            read: WatchRead::DirectoryChanges {
                recursive: state.recursive,
            },
            buf: Some(state.spare.take().unwrap_or_else(|| Vec::with_capacity(BUFFER))),
        })
    }

    /// A watcher's request completed (the buffer's length is what arrived):
    /// queue its changes; `true` to re-issue it.
    pub fn read_done(&mut self, reader: Reader, result: Result<usize>, mut buf: Vec<u8>) -> bool {
        let Reader::Own(watcher) = reader else {
            return false;
        };
        let Some(state) = self.watchers.get_mut(&watcher) else {
            return false;
        };
        let base = state.base.clone();
        let mut changes = Vec::new();
        let mut keep = true;
        match result {
            Ok(0) => changes.push(Ok(Change::overflow())),
            Ok(n) => {
                let mut renamed_from: Option<(PathBuf, bool)> = None;
                for (action, rel) in parse(&buf[..n.min(buf.len())]) {
                    let directory = rel.parent().map(Path::to_path_buf).unwrap_or_default();
                    let name = rel.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                    let (kind, is_directory) = match action {
                        Action::Added | Action::RenamedNew => {
                            let is_dir = base.join(&rel).is_dir();
                            if is_dir {
                                // A renamed directory keeps its subdirectories.
                                if let (Action::RenamedNew, Some((old, true))) = (action, &renamed_from) {
                                    let moved: Vec<PathBuf> = state
                                        .known_dirs
                                        .iter()
                                        .filter_map(|d| d.strip_prefix(old).ok().map(|rest| rel.join(rest)))
                                        .collect();
                                    state.known_dirs.retain(|d| !d.starts_with(old));
                                    state.known_dirs.extend(moved);
                                }
                                state.known_dirs.insert(rel.clone());
                            }
                            (ChangeKind::Added, is_dir)
                        }
                        Action::Removed | Action::RenamedOld => {
                            let was_dir = state.known_dirs.contains(&rel);
                            if action == Action::RenamedOld {
                                renamed_from = Some((rel.clone(), was_dir));
                            } else if was_dir {
                                state.known_dirs.retain(|d| !d.starts_with(&rel));
                            }
                            (ChangeKind::Removed, was_dir)
                        }
                        Action::Modified => {
                            if state.known_dirs.contains(&rel) || base.join(&rel).is_dir() {
                                // Directory "modified" events say nothing useful.
                                continue;
                            }
                            (ChangeKind::Modified, false)
                        }
                    };
                    changes.push(Ok(Change {
                        kind,
                        directory,
                        name,
                        is_directory,
                    }));
                }
            }
            Err(e) if is_overflow(e.raw_os_error()) => changes.push(Ok(Change::overflow())),
            // Cancelled: the watcher is going away.
            Err(e) if is_aborted(e.raw_os_error()) => return false,
            Err(e) => {
                // The directory itself is gone (or the watch broke): say so
                // once and stop.
                keep = false;
                let e = if !base.exists() {
                    e.with_status(Status::NotFound)
                } else {
                    e
                };
                changes.push(Err(e));
            }
        }
        buf.clear();
        state.spare = Some(buf);
        self.queued.push_back(Step::To {
            watcher,
            walk: None,
            changes,
        });
        keep
    }

    /// The initial walk finished: remember the tree's directories.
    pub fn walk_done(&mut self, watcher: Key, output: Result<Box<dyn Any + Send>>) {
        let Ok(out) = output else {
            return;
        };
        if let (Ok(dirs), Some(state)) = (out.downcast::<Vec<PathBuf>>(), self.watchers.get_mut(&watcher)) {
            state.known_dirs.extend(*dirs);
        }
    }

    /// The next thing to deliver.
    pub fn next_step(&mut self) -> Option<Step> {
        self.queued.pop_front()
    }

    /// The watcher's own request is cancelled before it goes.
    pub fn withdraw(&self, watcher: Key) -> Vec<Reader> {
        vec![Reader::Own(watcher)]
    }

    /// Forgets `watcher`: unregisters and closes its handle.
    pub fn remove(&mut self, sys: &mut Native, watcher: Key) {
        if let Some(state) = self.watchers.remove(&watcher) {
            sys.remove_source(state.src);
            drop(state.dir);
        }
    }

    /// The driver is going: every watcher was removed already.
    pub fn close(&mut self, _sys: &mut Native) {}
}
