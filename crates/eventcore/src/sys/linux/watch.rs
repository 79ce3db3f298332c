//! The directory watch engine on inotify: one descriptor per driver, one
//! watch descriptor per directory, mapped back to (watcher, relative
//! directory). Recursive watches walk the tree on the worker pool (adding
//! the watches there: `add_watch` is thread-safe); events for descriptors
//! whose walk has not reported yet are held (up to [`MAX_HELD`]) and
//! replayed. A directory created inside a recursive watch is watched and its
//! existing entries are reported as `Added`; a directory moved away is
//! unwatched. `IN_Q_OVERFLOW` is an overflow for every watcher; removal of
//! the base directory is `Err(NotFound)`.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::inotify::{self, Inotify, RawEvent};
use crate::slab::Key;
use crate::sys::watch::{Added, Arm, Change, ChangeKind, Reader, Step, Walk, WatchRead};
use crate::sys::{Backend as _, Native, SourceId, SourceKind};
use crate::{Error, Result, Status};

/// Most events held back for descriptors whose walk has not reported yet.
const MAX_HELD: usize = 16 * 1024;

/// One watcher's part of the engine.
struct Watcher {
    base: PathBuf,
    recursive: bool,
    /// Watch descriptors of this watcher and their relative directories.
    wds: HashMap<i32, PathBuf>,
}

/// The driver's inotify instance.
struct Source {
    ino: Arc<Inotify>,
    src: SourceId,
}

/// Every watch of one driver.
pub(crate) struct Watches {
    source: Option<Source>,
    watchers: HashMap<Key, Watcher>,
    buf: Vec<u8>,
    /// Watch descriptor → the watchers using it (one directory may be watched
    /// by several watchers; inotify then gives them the same descriptor).
    by_wd: HashMap<i32, Vec<Key>>,
    /// Events of descriptors whose walk has not reported yet.
    held: Vec<RawEvent>,
    /// Steps ready to hand out before any further event.
    queued: VecDeque<Step>,
    /// Events still to process (`true`: replayed from `held`).
    pending: VecDeque<(RawEvent, bool)>,
    /// The event being handed out, and the watchers it still goes to.
    current: Option<(RawEvent, VecDeque<Key>)>,
}

/// What `prepare` opened: the base directory's watch descriptor.
pub(crate) struct Prepared(i32);

/// What a walk of a (sub)tree found.
struct WalkResult {
    watches: Vec<(i32, PathBuf)>,
    /// Entries found, to report as `Added`: (relative directory, name, is_directory).
    found: Vec<(PathBuf, OsString, bool)>,
    errors: Vec<Error>,
}

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

impl Watches {
    pub fn new() -> Watches {
        Watches {
            source: None,
            watchers: HashMap::new(),
            buf: Vec::new(),
            by_wd: HashMap::new(),
            held: Vec::new(),
            queued: VecDeque::new(),
            pending: VecDeque::new(),
            current: None,
        }
    }

    /// The inotify descriptor, created and registered on first use.
    fn source(&mut self, sys: &mut Native) -> Result<&Source> {
        if self.source.is_none() {
            let ino = Inotify::new()?;
            let src = sys.add_source(&ino, SourceKind::Fd)?;
            self.source = Some(Source {
                ino: Arc::new(ino),
                src,
            });
        }
        Ok(self.source.as_ref().expect("just created"))
    }

    /// Watches `base` itself (a file is `InvalidArgument`).
    pub fn prepare(&mut self, sys: &mut Native, base: &Path) -> Result<Prepared> {
        let source = self.source(sys)?;
        let wd = source.ino.add_watch(base).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                Error::from(e).with_status(Status::InvalidArgument)
            } else {
                Error::from(e)
            }
        })?;
        Ok(Prepared(wd))
    }

    /// Starts the watch of `watcher`; a recursive one walks the tree.
    pub fn add(&mut self, watcher: Key, prepared: Prepared, base: PathBuf, recursive: bool) -> Added {
        let wd = prepared.0;
        let mut wds = HashMap::new();
        wds.insert(wd, PathBuf::new());
        self.watchers.insert(watcher, Watcher { base, recursive, wds });
        self.by_wd.entry(wd).or_default().push(watcher);
        let walk = if recursive {
            self.walk(watcher, PathBuf::new(), false)
        } else {
            None
        };
        Added {
            reader: Reader::Shared,
            walk,
        }
    }

    /// A walk below `rel`, to run on the pool.
    fn walk(&self, watcher: Key, rel: PathBuf, report: bool) -> Option<Walk> {
        let (Some(state), Some(source)) = (self.watchers.get(&watcher), &self.source) else {
            return None;
        };
        let base = state.base.clone();
        let ino = source.ino.clone();
        Some(Walk {
            watcher,
            job: Box::new(move || -> Box<dyn Any + Send> {
                let mut out = WalkResult {
                    watches: Vec::new(),
                    found: Vec::new(),
                    errors: Vec::new(),
                };
                walk(&ino, &base, rel, report, &mut out);
                Box::new(out)
            }),
        })
    }

    /// The readable wait on the descriptor, while any watcher lives.
    pub fn arm(&mut self, _reader: Reader) -> Option<Arm> {
        let source = self.source.as_ref()?;
        if self.watchers.is_empty() {
            return None;
        }
        Some(Arm {
            src: source.src,
            read: WatchRead::Readable,
            buf: None,
        })
    }

    /// The descriptor is readable: read every queued event.
    pub fn read_done(&mut self, _reader: Reader, _result: Result<usize>, _buf: Vec<u8>) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let mut events = Vec::new();
        source.ino.read_events(&mut self.buf, &mut events);
        self.pending.extend(events.into_iter().map(|e| (e, false)));
        true
    }

    /// A walk finished: install its watches, then report what it found and
    /// what was held back for its directories.
    pub fn walk_done(&mut self, watcher: Key, output: Result<Box<dyn Any + Send>>) {
        let result = match output {
            Ok(out) => match out.downcast::<WalkResult>() {
                Ok(r) => *r,
                Err(_) => return,
            },
            Err(e) => WalkResult {
                watches: Vec::new(),
                found: Vec::new(),
                errors: vec![e],
            },
        };
        let Some(source) = &self.source else {
            return;
        };
        let Some(state) = self.watchers.get_mut(&watcher) else {
            // Released meanwhile: undo its watches.
            for (wd, _) in result.watches {
                if !self.by_wd.contains_key(&wd) {
                    source.ino.rm_watch(wd);
                }
            }
            return;
        };
        for (wd, rel) in &result.watches {
            state.wds.insert(*wd, rel.clone());
            let users = self.by_wd.entry(*wd).or_default();
            if !users.contains(&watcher) {
                users.push(watcher);
            }
        }
        let mut changes: Vec<Result<Change>> = result.errors.into_iter().map(Err).collect();
        for (rel, name, is_directory) in result.found {
            changes.push(Ok(Change {
                kind: ChangeKind::Added,
                directory: rel,
                name,
                is_directory,
            }));
        }
        // Events held for the new descriptors, minus creations already listed.
        let new_wds: Vec<i32> = result.watches.iter().map(|(wd, _)| *wd).collect();
        let (mine, rest): (Vec<RawEvent>, Vec<RawEvent>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|e| new_wds.contains(&e.wd));
        self.held = rest;
        self.queued.push_back(Step::To {
            watcher,
            walk: None,
            changes,
        });
        self.pending.extend(mine.into_iter().map(|e| (e, true)));
    }

    /// The next thing to deliver.
    pub fn next_step(&mut self) -> Option<Step> {
        if let Some(step) = self.queued.pop_front() {
            return Some(step);
        }
        loop {
            if let Some((ev, users)) = &mut self.current {
                if let Some(watcher) = users.pop_front() {
                    let ev = RawEvent {
                        wd: ev.wd,
                        mask: ev.mask,
                        name: ev.name.clone(),
                    };
                    if let Some(step) = self.dispatch_one(watcher, &ev) {
                        return Some(step);
                    }
                    continue;
                }
                self.current = None;
            }
            let (ev, replay) = self.pending.pop_front()?;
            if ev.mask & inotify::OVERFLOW != 0 {
                return Some(Step::OverflowAll);
            }
            let Some(users) = self.by_wd.get(&ev.wd).cloned() else {
                if !replay && ev.mask & inotify::IGNORED == 0 && self.held.len() < MAX_HELD {
                    self.held.push(ev);
                }
                continue;
            };
            if ev.mask & inotify::IGNORED != 0 {
                // The kernel dropped the watch (its directory is gone).
                self.by_wd.remove(&ev.wd);
                for key in &users {
                    if let Some(state) = self.watchers.get_mut(key) {
                        state.wds.remove(&ev.wd);
                    }
                }
                continue;
            }
            self.current = Some((ev, users.into()));
        }
    }

    /// One event for one of its watchers.
    fn dispatch_one(&mut self, watcher: Key, ev: &RawEvent) -> Option<Step> {
        let state = self.watchers.get(&watcher)?;
        let rel = state.wds.get(&ev.wd).cloned()?;
        let recursive = state.recursive;
        let is_directory = ev.mask & inotify::IS_DIR != 0;
        if ev.mask & inotify::SELF_GONE != 0 {
            if rel.as_os_str().is_empty() {
                let e = Error::new(Status::NotFound);
                return Some(Step::To {
                    watcher,
                    walk: None,
                    changes: vec![Err(e)],
                });
            }
            // A subdirectory's own removal is reported by its parent.
            return None;
        }
        let kind = if ev.mask & inotify::ADDED != 0 {
            ChangeKind::Added
        } else if ev.mask & inotify::REMOVED != 0 {
            ChangeKind::Removed
        } else if ev.mask & inotify::MODIFIED != 0 {
            if is_directory {
                return None;
            }
            ChangeKind::Modified
        } else {
            return None;
        };
        let mut changes = Vec::new();
        let mut walk = None;
        if recursive && is_directory {
            let sub = rel.join(&ev.name);
            if kind == ChangeKind::Added {
                // Watch the new (or moved-in) tree; list what a newly created
                // directory already holds.
                match self.watch_root(watcher, sub, ev.mask & inotify::CREATED != 0) {
                    Ok(w) => walk = w,
                    Err(e) => changes.push(Err(e)),
                }
            } else if ev.mask & inotify::MOVED_FROM != 0 {
                self.unwatch_subtree(watcher, &sub);
            }
        }
        changes.push(Ok(Change {
            kind,
            directory: rel,
            name: ev.name.clone(),
            is_directory,
        }));
        Some(Step::To { watcher, walk, changes })
    }

    /// Watches `sub` itself, and gives the walk below it.
    fn watch_root(&mut self, watcher: Key, sub: PathBuf, report: bool) -> Result<Option<Walk>> {
        let (Some(state), Some(source)) = (self.watchers.get_mut(&watcher), &self.source) else {
            return Ok(None);
        };
        match source.ino.add_watch(&state.base.join(&sub)) {
            Ok(wd) => {
                let users = self.by_wd.entry(wd).or_default();
                if !users.contains(&watcher) {
                    users.push(watcher);
                }
                state.wds.insert(wd, sub.clone());
                Ok(self.walk(watcher, sub, report))
            }
            // Removed again before we got to it: its removal follows.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops watching `sub` and everything below it (it moved out of the tree).
    fn unwatch_subtree(&mut self, watcher: Key, sub: &Path) {
        let Some(state) = self.watchers.get_mut(&watcher) else {
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
        let Some(source) = &self.source else {
            return;
        };
        for wd in wds {
            if let Some(users) = self.by_wd.get_mut(&wd) {
                users.retain(|k| *k != watcher);
                if users.is_empty() {
                    self.by_wd.remove(&wd);
                    source.ino.rm_watch(wd);
                }
            }
        }
    }

    /// The readers to cancel before `watcher` goes: the shared read when it
    /// is the last watcher.
    pub fn withdraw(&self, watcher: Key) -> Vec<Reader> {
        if self.watchers.len() == 1 && self.watchers.contains_key(&watcher) {
            vec![Reader::Shared]
        } else {
            Vec::new()
        }
    }

    /// Forgets `watcher` and drops its watches.
    pub fn remove(&mut self, _sys: &mut Native, watcher: Key) {
        if let Some(state) = self.watchers.remove(&watcher) {
            self.release_wds(watcher, state.wds.into_keys().collect());
        }
    }

    /// The driver is going: unregister the descriptor.
    pub fn close(&mut self, sys: &mut Native) {
        if let Some(source) = self.source.take() {
            sys.remove_source(source.src);
        }
    }
}
