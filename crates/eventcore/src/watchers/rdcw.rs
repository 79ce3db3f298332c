//! Directory watchers on `ReadDirectoryChangesW` (Windows): see the parent
//! module for what watchers mean; this file maps them onto one overlapped
//! directory handle per watcher.
//!
//! Each watcher keeps one request in flight (an internal op of the I/O
//! engine, with a 64 KiB buffer that is reused); its completion is parsed,
//! delivered, and the request re-issued. A recursive watch covers the whole
//! tree natively (`bWatchSubtree`), so new subdirectories need no work. The
//! records do not say whether an entry is a directory: the watcher asks the
//! file system for entries that exist, and remembers the directories of the
//! tree (walked once on the worker pool, then kept up to date from the
//! changes) to answer for entries that are gone. A request that completes
//! with no records, or with `ERROR_NOTIFY_ENUM_DIR`, lost changes: that is an
//! `Overflow`. Other failures (the watched directory was removed) are
//! delivered as `Err` and end the watch.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{ChangeKind, FileChange, WatchCallback};
use crate::sys::Backend as _;
use crate::driver::{Op, Outcome};
use crate::handle::{HandleKind, Key};
use crate::io::{Internal, IoCallback, IoMode, IoOp, IoSlots, Owner};
use crate::sys::watch::{self as sys_watch, Action};
use crate::sys::SourceKind;
use crate::{Driver, Error, Result, Status};

pub(crate) struct WatcherState {
    base: PathBuf,
    recursive: bool,
    pub(crate) callback: Option<WatchCallback>,
    /// The directory handle; closed with the watcher.
    dir: std::fs::File,
    pub(crate) io: IoSlots,
    /// The notification buffer while no request holds it.
    spare: Option<Vec<u8>>,
    /// Directories of the tree, relative to `base`.
    known_dirs: HashSet<PathBuf>,
}

/// Windows keeps no driver-wide watch state: each watcher has its own handle.
pub(crate) struct WatchSource;

/// The initial walk of a watcher's tree (to learn its directories).
pub(crate) struct WalkOp {
    watcher: Key,
}

fn owner(key: Key) -> Owner {
    Owner {
        kind: HandleKind::Watcher,
        key,
    }
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

impl Driver {
    fn arm_directory_watch(&mut self, key: Key) {
        let Some(state) = self.tables.watchers.get_mut(key) else {
            return;
        };
        if state.io.read_op.is_some() {
            return;
        }
        let buf = state.spare.take().unwrap_or_else(|| Vec::with_capacity(sys_watch::BUFFER));
        let recursive = state.recursive;
        let src = state.io.src;
        let mut op = IoOp::new(
            owner(key),
            IoCallback::Internal(Internal::DirectoryChanges { recursive }),
            crate::sys::buf::AnyBuf::for_read(buf),
            IoMode::Once,
        );
        op.src = src;
        let op_key = self.start_io(op, false);
        if let Some(state) = self.tables.watchers.get_mut(key) {
            state.io.read_op = Some(op_key);
        }
    }

    /// A watcher's request completed: deliver its changes, then re-arm.
    pub(crate) fn directory_changes_ready(&mut self, owner: Owner, result: Result<usize>, buf: crate::sys::buf::AnyBuf) -> bool {
        // The read set the length to what arrived.
        let mut buf: Vec<u8> = crate::io::take_back(buf);
        let key = owner.key;
        let Some(state) = self.tables.watchers.get_mut(key) else {
            return false;
        };
        let base = state.base.clone();
        let overflow = || {
            Ok(FileChange {
                kind: ChangeKind::Overflow,
                base_directory: base.clone(),
                directory: PathBuf::new(),
                name: OsString::new(),
                is_directory: false,
            })
        };
        let mut changes = Vec::new();
        let mut keep = true;
        match result {
            Ok(0) => changes.push(overflow()),
            Ok(n) => {
                let mut renamed_from: Option<(PathBuf, bool)> = None;
                for (action, rel) in sys_watch::parse(&buf[..n.min(buf.len())]) {
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
                    changes.push(Ok(FileChange {
                        kind,
                        base_directory: base.clone(),
                        directory,
                        name,
                        is_directory,
                    }));
                }
            }
            Err(e) if sys_watch::is_overflow(e.raw_os_error()) => changes.push(overflow()),
            // Cancelled: the watcher is going away.
            Err(e) if sys_watch::is_aborted(e.raw_os_error()) => return false,
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
        let ran = self.deliver(key, changes);
        if keep {
            self.arm_directory_watch(key);
        }
        ran
    }

    pub(crate) fn complete_walk(&mut self, key: Key, outcome: Outcome) -> bool {
        let Some(Op::Walk(op)) = self.ops.remove(key) else {
            return false;
        };
        self.internal_ops -= 1;
        let Outcome::Job(out) = outcome else {
            return false;
        };
        if let (Ok(dirs), Some(state)) = (out.downcast::<Vec<PathBuf>>(), self.tables.watchers.get_mut(op.watcher)) {
            state.known_dirs.extend(*dirs);
        }
        false
    }

    pub(crate) fn destroy_watcher(&mut self, key: Key) {
        self.cancel_slots(owner(key));
        if let Some(entry) = self.tables.watchers.remove(key) {
            self.sys.remove_source(entry.io.src);
            drop(entry.dir);
        }
    }
}

impl Driver {
    /// Starts watching `base` (see [`Watchers::watch_directory`](super::Watchers::watch_directory)).
    pub(crate) fn add_watcher(&mut self, base: PathBuf, recursive: bool, callback: WatchCallback) -> Result<Key> {
        if !std::fs::metadata(&base)?.is_dir() {
            return Err(Error::new(Status::InvalidArgument));
        }
        let dir = sys_watch::open_directory(&base)?;
        let src = self.sys.add_source(&dir, SourceKind::Fd)?;
        let key = self.tables.watchers.insert(WatcherState {
            base: base.clone(),
            recursive,
            callback: Some(callback),
            dir,
            io: IoSlots::new(src),
            spare: None,
            known_dirs: HashSet::new(),
        });
        self.arm_directory_watch(key);
        // Learn the tree's directories off the loop thread.
        let walk = self.ops.insert(Op::Walk(WalkOp { watcher: key }));
        self.internal_ops += 1;
        self.submit_job(walk, move || Box::new(list_dirs(&base, recursive)));
        Ok(key)
    }

    /// The base directory of a live watcher.
    pub(crate) fn watcher_base(&self, key: Key) -> Option<PathBuf> {
        self.tables.watchers.get(key).map(|s| s.base.clone())
    }
}
