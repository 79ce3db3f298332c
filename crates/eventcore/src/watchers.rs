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
//! still being installed are held back and delivered once it is. Windows:
//! one `ReadDirectoryChangesW` request per watcher.
//!
//! This file owns the handle table, the callbacks and the delivery; what the
//! OS needs is the engine's (`sys::watch`, one per OS), which the driver
//! keeps with its reads in flight as [`WatchComponent`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, HandleKind, Key};
use crate::io::{Internal, IoCallback, IoMode, IoOp, Owner};
use crate::sys::buf::AnyBuf;
use crate::sys::watch::{Change, Reader, Step, Walk, Watches};
pub use crate::sys::watch::ChangeKind;
use crate::{Driver, Result};

define_handle!(
    /// A directory watcher of a [`Driver`].
    WatcherId,
    Watcher
);

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

/// A watcher's slot in the handle table: what the contract needs of it. What
/// the OS needs (watch descriptors, directory handles, buffers) is the
/// engine's, under the same key.
pub(crate) struct WatcherState {
    base: PathBuf,
    pub(crate) callback: Option<WatchCallback>,
}

/// The driver's watch component: the OS engine and the reads it keeps in
/// flight (one internal I/O op per [`Reader`]).
pub(crate) struct WatchComponent {
    engine: Watches,
    reads: std::collections::HashMap<Reader, Key>,
}

impl WatchComponent {
    pub(crate) fn new() -> WatchComponent {
        WatchComponent {
            engine: Watches::new(),
            reads: std::collections::HashMap::new(),
        }
    }
}

/// A walk of a watcher's tree on the worker pool.
pub(crate) struct WalkOp {
    watcher: Key,
}

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
    fn deliver(&mut self, watcher: Key, changes: Vec<Result<Change>>) -> bool {
        let mut ran = false;
        for change in changes {
            let Some(state) = self.tables.watchers.get_mut(watcher) else {
                break;
            };
            let Some(mut cb) = state.callback.take() else {
                break;
            };
            let change = change.map(|c| FileChange {
                kind: c.kind,
                base_directory: state.base.clone(),
                directory: c.directory,
                name: c.name,
                is_directory: c.is_directory,
            });
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

    /// Starts watching `base` (see [`Watchers::watch_directory`]).
    fn add_watcher(&mut self, base: PathBuf, recursive: bool, callback: WatchCallback) -> Result<Key> {
        let prepared = self.subsystems.watches.engine.prepare(&mut self.sys, &base)?;
        let key = self.tables.watchers.insert(WatcherState {
            base: base.clone(),
            callback: Some(callback),
        });
        let added = self.subsystems.watches.engine.add(key, prepared, base, recursive);
        // The read first, then the walk, as the Windows watcher always did:
        // under Wine, a walk of the tree that ran before the recursive
        // `ReadDirectoryChangesW` was issued left subdirectories unwatched
        // (two of three runs of the recursive tests failed that way).
        self.arm_watch(added.reader);
        if let Some(walk) = added.walk {
            self.start_walk(walk);
        }
        Ok(key)
    }

    /// Keeps the reader's request in flight, if the engine wants one.
    fn arm_watch(&mut self, reader: Reader) {
        if self.subsystems.watches.reads.contains_key(&reader) {
            return;
        }
        let Some(arm) = self.subsystems.watches.engine.arm(reader) else {
            return;
        };
        let owner = Owner {
            kind: HandleKind::Watcher,
            key: match reader {
                Reader::Own(watcher) => watcher,
                // Shared by every watcher: no handle's key.
                Reader::Shared => Key {
                    index: u32::MAX,
                    gen: u32::MAX,
                    driver: self.id,
                },
            },
        };
        let buf = match arm.buf {
            Some(buf) => AnyBuf::for_read(buf),
            None => AnyBuf::empty(),
        };
        let mut op = IoOp::new(
            owner,
            IoCallback::Internal(Internal::Watch { reader, read: arm.read }),
            buf,
            IoMode::Once,
        );
        op.src = arm.src;
        let key = self.start_io(op, false);
        self.subsystems.watches.reads.insert(reader, key);
    }

    fn start_walk(&mut self, walk: Walk) {
        let key = self.ops.insert(Op::Walk(WalkOp { watcher: walk.watcher }));
        self.internal_ops += 1;
        self.submit_job(key, walk.job);
    }

    /// A reader's request completed: deliver what it found, then re-arm it.
    pub(crate) fn watch_read_done(&mut self, reader: Reader, result: Result<usize>, buf: AnyBuf) -> bool {
        self.subsystems.watches.reads.remove(&reader);
        // A directory-changes read comes back with its length set to what
        // arrived; a readiness wait has no buffer.
        let buf: Vec<u8> = buf.downcast().unwrap_or_default();
        let rearm = self.subsystems.watches.engine.read_done(reader, result, buf);
        let ran = self.run_watch_steps();
        if rearm {
            self.arm_watch(reader);
        }
        ran
    }

    /// A walk finished.
    pub(crate) fn complete_walk(&mut self, key: Key, outcome: Outcome) -> bool {
        let Some(Op::Walk(op)) = self.ops.remove(key) else {
            return false;
        };
        self.internal_ops -= 1;
        let output = match outcome {
            Outcome::Job(out) => Ok(out),
            Outcome::Failed(e) => Err(e),
            _ => return false,
        };
        self.subsystems.watches.engine.walk_done(op.watcher, output);
        self.run_watch_steps()
    }

    /// Delivers what the engine has, one step at a time.
    fn run_watch_steps(&mut self) -> bool {
        let mut ran = false;
        while let Some(step) = self.subsystems.watches.engine.next_step() {
            match step {
                Step::To {
                    watcher,
                    walk,
                    changes,
                } => {
                    if let Some(walk) = walk {
                        self.start_walk(walk);
                    }
                    ran |= self.deliver(watcher, changes);
                }
                Step::OverflowAll => {
                    for key in self.tables.watchers.keys() {
                        ran |= self.deliver(key, vec![Ok(Change::overflow())]);
                    }
                }
            }
        }
        ran
    }

    pub(crate) fn destroy_watcher(&mut self, key: Key) {
        if self.tables.watchers.remove(key).is_none() {
            return;
        }
        for reader in self.subsystems.watches.engine.withdraw(key) {
            if let Some(op) = self.subsystems.watches.reads.remove(&reader) {
                let _ = self.cancel_io(op);
            }
        }
        self.subsystems.watches.engine.remove(&mut self.sys, key);
    }

    /// The driver is going: the engine lets go of its sources.
    pub(crate) fn close_watches(&mut self) {
        self.subsystems.watches.engine.close(&mut self.sys);
    }

    /// The base directory of a live watcher.
    fn watcher_base(&self, key: Key) -> Option<PathBuf> {
        self.tables.watchers.get(key).map(|s| s.base.clone())
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
