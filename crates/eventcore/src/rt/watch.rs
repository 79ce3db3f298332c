//! Directory watching as a stream of changes.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::executor::{current, Owned};
use super::op::Queue;
use crate::{FileChange, Result, WatcherId};

/// The changes in a directory (and, if recursive, below it); see
/// [`Watchers`](crate::Watchers) for what is reported and how.
///
/// Changes are queued until [`DirectoryWatcher::next`] takes them; dropping
/// the watcher stops watching.
pub struct DirectoryWatcher {
    h: Owned<WatcherId>,
    queue: Rc<Queue<Result<FileChange>>>,
}

impl DirectoryWatcher {
    /// Watches the directory `path` (and every directory below it if
    /// `recursive`). `NotFound` for a missing path, `InvalidArgument` for a
    /// file.
    pub fn new(path: impl AsRef<Path>, recursive: bool) -> Result<DirectoryWatcher> {
        let core = current();
        let queue = Queue::new();
        let q = queue.clone();
        let id = core.with_driver(|drv| {
            drv.watchers()
                .watch_directory(path, recursive, move |_, _, change| q.push(change))
        })?;
        Ok(DirectoryWatcher {
            h: Owned::new(core, id),
            queue,
        })
    }

    /// Waits for the next change, or a failure (an overflow is a change of
    /// kind [`ChangeKind::Overflow`](crate::ChangeKind::Overflow); the removal
    /// of the watched directory itself is `Err(NotFound)`). The stream never
    /// ends while the watcher lives.
    ///
    /// **Cancel safety:** cancel-safe: a change is only taken by the poll
    /// that returns it.
    pub async fn next(&mut self) -> Result<FileChange> {
        std::future::poll_fn(|cx| self.queue.poll_next(cx)).await
    }

    /// The next change, or registers the task to be woken by one.
    pub(crate) fn poll_change(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<FileChange>> {
        self.queue.poll_next(cx)
    }

    /// A change that is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<Result<FileChange>> {
        self.queue.try_next()
    }

    /// The watched directory.
    pub fn base_directory(&self) -> Result<PathBuf> {
        let id = self.h.handle;
        self.h.core.with_driver(|drv| drv.watchers().base_directory(id))
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> WatcherId {
        self.h.handle
    }
}


impl std::fmt::Debug for DirectoryWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DirectoryWatcher").field(&self.h.handle).finish()
    }
}
