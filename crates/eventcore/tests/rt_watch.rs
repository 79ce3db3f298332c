//! The async layer's directory watcher: added, modified and removed files,
//! a recursive watch seeing a new subdirectory's files, a `next` dropped
//! while pending, and a missing directory.

mod util;

use std::path::Path;
use std::time::Duration;

use eventcore::rt::{self, DirectoryWatcher};
use eventcore::{BackendKind, ChangeKind, Status};
use util::rt::{assert_no_leaks, executor, poll_once};
use util::TempDir;

const WAIT: Duration = Duration::from_secs(5);

/// Waits for a change of `kind` to `directory/name`, skipping `Modified`
/// extras and repeats (the kernel may report one write as several).
async fn expect(w: &mut DirectoryWatcher, kind: ChangeKind, directory: &str, name: &str) {
    loop {
        let change = rt::timeout(WAIT, w.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} of {directory}/{name}"))
            .expect("change");
        if change.kind == kind && change.directory == Path::new(directory) && change.name == name {
            return;
        }
        assert!(
            change.kind == ChangeKind::Modified || change.kind == ChangeKind::Added,
            "unexpected {change:?} while waiting for {kind:?} of {directory}/{name}"
        );
    }
}

/// Creating, writing and removing a file are reported in order.
fn watch_add_modify_remove(kind: BackendKind) {
    let dir = TempDir::new("rt-watch");
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut w = DirectoryWatcher::new(dir.path(), false).expect("watch");
        assert_eq!(w.base_directory().unwrap(), dir.path());
        let file = dir.path().join("f.txt");
        std::fs::write(&file, b"1").unwrap();
        expect(&mut w, ChangeKind::Added, "", "f.txt").await;
        std::fs::write(&file, b"22").unwrap();
        expect(&mut w, ChangeKind::Modified, "", "f.txt").await;
        std::fs::remove_file(&file).unwrap();
        expect(&mut w, ChangeKind::Removed, "", "f.txt").await;
    });
    assert_no_leaks(&ex);
}

/// A recursive watch reports files in a subdirectory created after it
/// started.
fn watch_recursive_new_subdirectory(kind: BackendKind) {
    let dir = TempDir::new("rt-watch");
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut w = DirectoryWatcher::new(dir.path(), true).expect("watch");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        expect(&mut w, ChangeKind::Added, "", "sub").await;
        // Give the driver time to watch the new directory.
        rt::sleep(Duration::from_millis(50)).await;
        std::fs::write(dir.path().join("sub/inner"), b"x").unwrap();
        expect(&mut w, ChangeKind::Added, "sub", "inner").await;
    });
    assert_no_leaks(&ex);
}

/// `next` is cancel-safe: one dropped while pending takes nothing; a missing
/// directory is `NotFound`.
fn watch_next_dropped_and_missing_directory(kind: BackendKind) {
    let dir = TempDir::new("rt-watch");
    let mut ex = executor(kind);
    ex.block_on(async {
        let mut w = DirectoryWatcher::new(dir.path(), false).expect("watch");
        {
            let mut n = Box::pin(w.next());
            assert!(poll_once(&mut n).await.is_pending());
        }
        std::fs::write(dir.path().join("g"), b"").unwrap();
        expect(&mut w, ChangeKind::Added, "", "g").await;
        drop(w);
        let err = DirectoryWatcher::new(dir.path().join("missing"), false).expect_err("missing");
        assert_eq!(err.status(), Status::NotFound);
    });
    assert_no_leaks(&ex);
}

contract_tests! {
    watch_add_modify_remove,
    watch_recursive_new_subdirectory,
    watch_next_dropped_and_missing_directory,
}
