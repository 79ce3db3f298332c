//! Directory watchers on inotify (Linux): see the parent module for what
//! watchers mean; this file maps them onto inotify watch descriptors.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ChangeKind, FileChange, WatchCallback};
use crate::sys::Backend as _;
use crate::driver::{Op, Outcome};
use crate::handle::{HandleKind, Key};
use crate::io::{Internal, IoCallback, IoMode, IoOp, Owner};
use crate::sys::inotify::{self, Inotify, RawEvent};
use crate::sys::{SourceId, SourceKind};
use crate::{Driver, Error, Result, Status};

pub(crate) struct WatcherState {
    base: PathBuf,
    recursive: bool,
    pub(crate) callback: Option<WatchCallback>,
    /// Watch descriptors of this watcher and their relative directories.
    wds: HashMap<i32, PathBuf>,
}

/// The driver's inotify instance and what maps its watches back to watchers.
pub(crate) struct WatchSource {
    ino: Arc<Inotify>,
    pub(crate) src: SourceId,
    op: Option<Key>,
    buf: Vec<u8>,
    /// Watch descriptor → the watchers using it (one directory may be watched
    /// by several watchers; inotify then gives them the same descriptor).
    by_wd: HashMap<i32, Vec<Key>>,
    /// Events of descriptors whose walk has not reported yet.
    held: Vec<RawEvent>,
}

/// What a walk of a (sub)tree found.
struct WalkResult {
    watcher: Key,
    watches: Vec<(i32, PathBuf)>,
    /// Entries found, to report as `Added`: (relative directory, name, is_directory).
    found: Vec<(PathBuf, OsString, bool)>,
    errors: Vec<Error>,
}

pub(crate) struct WalkOp {
    watcher: Key,
}

/// Most events held back for descriptors whose walk has not reported yet.
const MAX_HELD: usize = 16 * 1024;

/// Watches every directory below `base/rel` (and lists their entries if
/// `report`), on a worker thread.
fn walk(ino: &Inotify, base: &Path, rel: PathBuf, report: bool, out: &mut WalkResult) {
    let mut stack = vec![rel];
    while let Some(rel) = stack.pop() {
        let dir = base.join(&rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Gone again already: its removal is (or will be) reported.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.errors.push(e.into());
                continue;
            }
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let name = entry.file_name();
            if is_dir {
                let sub = rel.join(&name);
                match ino.add_watch(&base.join(&sub)) {
                    Ok(wd) => {
                        out.watches.push((wd, sub.clone()));
                        stack.push(sub);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => out.errors.push(e.into()),
                }
            }
            if report {
                out.found.push((rel.clone(), name, is_dir));
            }
        }
    }
}

impl Driver {
    fn watch_source(&mut self) -> Result<&mut WatchSource> {
        if self.watch_source.is_none() {
            let ino = Inotify::new()?;
            let src = self.sys.add_source(&ino, SourceKind::Fd)?;
            self.watch_source = Some(WatchSource {
                ino: Arc::new(ino),
                src,
                op: None,
                buf: Vec::new(),
                by_wd: HashMap::new(),
                held: Vec::new(),
            });
        }
        Ok(self.watch_source.as_mut().expect("just created"))
    }

    fn arm_watch_read(&mut self) {
        let owner = Owner {
            kind: HandleKind::Watcher,
            key: Key {
                index: u32::MAX,
                gen: u32::MAX,
                driver: self.id,
            },
        };
        let Some(source) = &self.watch_source else {
            return;
        };
        if source.op.is_some() || self.tables.watchers.len() == 0 {
            return;
        }
        let mut op = IoOp::new(
            owner,
            IoCallback::Internal(Internal::Watchers),
            crate::sys::buf::AnyBuf::empty(),
            IoMode::Once,
        );
        op.src = source.src;
        let key = self.start_io(op, false);
        if let Some(source) = &mut self.watch_source {
            source.op = Some(key);
        }
    }

    fn start_walk(&mut self, watcher: Key, rel: PathBuf, report: bool) {
        let (Some(state), Some(source)) = (self.tables.watchers.get(watcher), &self.watch_source) else {
            return;
        };
        let base = state.base.clone();
        let ino = source.ino.clone();
        let key = self.ops.insert(Op::Walk(WalkOp { watcher }));
        self.internal_ops += 1;
        self.submit_job(key, move || {
            let mut out = WalkResult {
                watcher,
                watches: Vec::new(),
                found: Vec::new(),
                errors: Vec::new(),
            };
            walk(&ino, &base, rel, report, &mut out);
            Box::new(out)
        });
    }

    /// A walk finished: install its watches, report what it found and what
    /// was held back for its directories.
    pub(crate) fn complete_walk(&mut self, key: Key, outcome: Outcome) -> bool {
        let Some(Op::Walk(op)) = self.ops.remove(key) else {
            return false;
        };
        self.internal_ops -= 1;
        let result = match outcome {
            Outcome::Job(out) => match out.downcast::<WalkResult>() {
                Ok(r) => *r,
                Err(_) => return false,
            },
            Outcome::Failed(e) => WalkResult {
                watcher: op.watcher,
                watches: Vec::new(),
                found: Vec::new(),
                errors: vec![e],
            },
            _ => return false,
        };
        let Some(source) = &mut self.watch_source else {
            return false;
        };
        let Some(state) = self.tables.watchers.get_mut(result.watcher) else {
            // Released meanwhile: undo its watches.
            for (wd, _) in result.watches {
                if !source.by_wd.contains_key(&wd) {
                    source.ino.rm_watch(wd);
                }
            }
            return false;
        };
        for (wd, rel) in &result.watches {
            state.wds.insert(*wd, rel.clone());
            let users = source.by_wd.entry(*wd).or_default();
            if !users.contains(&result.watcher) {
                users.push(result.watcher);
            }
        }
        let mut changes: Vec<Result<FileChange>> = result.errors.into_iter().map(Err).collect();
        for (rel, name, is_directory) in result.found {
            changes.push(Ok(FileChange {
                kind: ChangeKind::Added,
                base_directory: state.base.clone(),
                directory: rel,
                name,
                is_directory,
            }));
        }
        // Events held for the new descriptors, minus creations already listed.
        let new_wds: Vec<i32> = result.watches.iter().map(|(wd, _)| *wd).collect();
        let held: Vec<RawEvent> = {
            let (mine, rest): (Vec<RawEvent>, Vec<RawEvent>) = std::mem::take(&mut source.held)
                .into_iter()
                .partition(|e| new_wds.contains(&e.wd));
            source.held = rest;
            mine
        };
        let ran_found = self.deliver(result.watcher, changes);
        let ran_held = self.dispatch_raw_events(held, true);
        ran_found || ran_held
    }

    /// The inotify descriptor is readable.
    pub(crate) fn watchers_ready(&mut self) -> bool {
        let Some(source) = &mut self.watch_source else {
            return false;
        };
        source.op = None;
        let mut events = Vec::new();
        let mut buf = std::mem::take(&mut source.buf);
        source.ino.read_events(&mut buf, &mut events);
        source.buf = buf;
        let ran = self.dispatch_raw_events(events, false);
        self.arm_watch_read();
        ran
    }

    fn dispatch_raw_events(&mut self, events: Vec<RawEvent>, replay: bool) -> bool {
        let mut ran = false;
        for ev in events {
            if ev.mask & inotify::OVERFLOW != 0 {
                for key in self.tables.watchers.keys() {
                    let base = self.tables.watchers.get(key).map(|s| s.base.clone()).unwrap_or_default();
                    ran |= self.deliver(
                        key,
                        vec![Ok(FileChange {
                            kind: ChangeKind::Overflow,
                            base_directory: base,
                            directory: PathBuf::new(),
                            name: OsString::new(),
                            is_directory: false,
                        })],
                    );
                }
                continue;
            }
            let Some(source) = &mut self.watch_source else {
                return ran;
            };
            let Some(users) = source.by_wd.get(&ev.wd).cloned() else {
                if !replay && ev.mask & inotify::IGNORED == 0 && source.held.len() < MAX_HELD {
                    source.held.push(ev);
                }
                continue;
            };
            if ev.mask & inotify::IGNORED != 0 {
                // The kernel dropped the watch (its directory is gone).
                source.by_wd.remove(&ev.wd);
                for key in &users {
                    if let Some(state) = self.tables.watchers.get_mut(*key) {
                        state.wds.remove(&ev.wd);
                    }
                }
                continue;
            }
            for key in users {
                ran |= self.dispatch_one(key, &ev);
            }
        }
        ran
    }

    fn dispatch_one(&mut self, key: Key, ev: &RawEvent) -> bool {
        let Some(state) = self.tables.watchers.get(key) else {
            return false;
        };
        let Some(rel) = state.wds.get(&ev.wd).cloned() else {
            return false;
        };
        let base = state.base.clone();
        let recursive = state.recursive;
        let is_directory = ev.mask & inotify::IS_DIR != 0;
        if ev.mask & inotify::SELF_GONE != 0 {
            if rel.as_os_str().is_empty() {
                let e = Error::new(Status::NotFound);
                return self.deliver(key, vec![Err(e)]);
            }
            // A subdirectory's own removal is reported by its parent.
            return false;
        }
        let kind = if ev.mask & inotify::ADDED != 0 {
            ChangeKind::Added
        } else if ev.mask & inotify::REMOVED != 0 {
            ChangeKind::Removed
        } else if ev.mask & inotify::MODIFIED != 0 {
            if is_directory {
                return false;
            }
            ChangeKind::Modified
        } else {
            return false;
        };
        if recursive && is_directory {
            let sub = rel.join(&ev.name);
            if kind == ChangeKind::Added {
                // Watch the new (or moved-in) tree; list what a newly created
                // directory already holds.
                self.start_walk_with_root(key, sub, ev.mask & inotify::CREATED != 0);
            } else if ev.mask & inotify::MOVED_FROM != 0 {
                self.unwatch_subtree(key, &sub);
            }
        }
        self.deliver(
            key,
            vec![Ok(FileChange {
                kind,
                base_directory: base,
                directory: rel,
                name: ev.name.clone(),
                is_directory,
            })],
        )
    }

    /// Watches `sub` itself, then walks below it on the pool.
    fn start_walk_with_root(&mut self, watcher: Key, sub: PathBuf, report: bool) {
        let Some(state) = self.tables.watchers.get(watcher) else {
            return;
        };
        let path = state.base.join(&sub);
        let Some(source) = &mut self.watch_source else {
            return;
        };
        match source.ino.add_watch(&path) {
            Ok(wd) => {
                let users = source.by_wd.entry(wd).or_default();
                if !users.contains(&watcher) {
                    users.push(watcher);
                }
                self.tables.watchers
                    .get_mut(watcher)
                    .expect("live")
                    .wds
                    .insert(wd, sub.clone());
                self.start_walk(watcher, sub, report);
            }
            // Removed again before we got to it: its removal follows.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                self.deliver(watcher, vec![Err(e.into())]);
            }
        }
    }

    /// Stops watching `sub` and everything below it (it moved out of the tree,
    /// or somewhere we rewatch from scratch).
    fn unwatch_subtree(&mut self, watcher: Key, sub: &Path) {
        let Some(state) = self.tables.watchers.get_mut(watcher) else {
            return;
        };
        let gone: Vec<i32> = state
            .wds
            .iter()
            .filter(|(_, rel)| rel.starts_with(sub))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in &gone {
            state.wds.remove(wd);
        }
        self.release_wds(watcher, gone);
    }

    fn release_wds(&mut self, watcher: Key, wds: Vec<i32>) {
        let Some(source) = &mut self.watch_source else {
            return;
        };
        for wd in wds {
            if let Some(users) = source.by_wd.get_mut(&wd) {
                users.retain(|k| *k != watcher);
                if users.is_empty() {
                    source.by_wd.remove(&wd);
                    source.ino.rm_watch(wd);
                }
            }
        }
    }

    pub(crate) fn destroy_watcher(&mut self, key: Key) {
        let Some(entry) = self.tables.watchers.remove(key) else {
            return;
        };
        self.release_wds(key, entry.wds.into_keys().collect());
        if self.tables.watchers.len() == 0 {
            if let Some(op) = self.watch_source.as_mut().and_then(|s| s.op.take()) {
                let _ = self.cancel_io(op);
            }
        }
    }
}

impl Driver {
    /// Starts watching `base` (see [`Watchers::watch_directory`](crate::Watchers::watch_directory)).
    pub(crate) fn add_watcher(&mut self, base: PathBuf, recursive: bool, callback: WatchCallback) -> Result<Key> {
        let source = self.watch_source()?;
        let wd = source.ino.add_watch(&base).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                Error::from(e).with_status(Status::InvalidArgument)
            } else {
                Error::from(e)
            }
        })?;
        let mut wds = HashMap::new();
        wds.insert(wd, PathBuf::new());
        let key = self.tables.watchers.insert(WatcherState {
            base,
            recursive,
            callback: Some(callback),
            wds,
        });
        let source = self.watch_source.as_mut().expect("created above");
        source.by_wd.entry(wd).or_default().push(key);
        if recursive {
            self.start_walk(key, PathBuf::new(), false);
        }
        self.arm_watch_read();
        Ok(key)
    }

    /// The base directory of a live watcher.
    pub(crate) fn watcher_base(&self, key: Key) -> Option<PathBuf> {
        self.tables.watchers.get(key).map(|s| s.base.clone())
    }
}
