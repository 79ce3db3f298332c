//! Watches a directory with the async layer and prints its changes:
//! `async_watch [dir]`. Without an argument it watches a fresh temporary
//! directory, makes a few changes there itself from a second task, and stops
//! once it has seen them; with one it runs until interrupted (Ctrl+C).

use std::path::PathBuf;
use std::time::Duration;

use eventcore::rt::{self, DirectoryWatcher, Executor, Signal};
use eventcore::{ChangeKind, Driver};
use futures_util::future::{select, Either};

fn main() -> eventcore::Result<()> {
    let arg = std::env::args_os().nth(1).map(PathBuf::from);
    let demo = arg.is_none();
    let dir = arg.unwrap_or_else(|| {
        let d = std::env::temp_dir().join(format!("eventcore-async-watch-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    });
    let mut ex = Executor::new(Driver::new()?);
    ex.block_on(async {
        let mut watcher = DirectoryWatcher::new(&dir, true)?;
        println!("watching {} (recursive)", dir.display());
        let mut interrupt = Signal::listen(eventcore::signal_numbers::SIGINT)?;
        if demo {
            let d = dir.clone();
            // The changes, made from a task while the main task watches.
            rt::spawn(async move {
                rt::sleep(Duration::from_millis(20)).await;
                std::fs::write(d.join("notes.txt"), b"first").unwrap();
                rt::sleep(Duration::from_millis(20)).await;
                std::fs::write(d.join("notes.txt"), b"second").unwrap();
                std::fs::create_dir(d.join("sub")).unwrap();
                rt::sleep(Duration::from_millis(50)).await;
                std::fs::write(d.join("sub/deep.txt"), b"x").unwrap();
                rt::sleep(Duration::from_millis(20)).await;
                std::fs::remove_file(d.join("notes.txt")).unwrap();
            });
        }
        let mut removed = false;
        while !(demo && removed) {
            let next = std::pin::pin!(watcher.next());
            let sigint = std::pin::pin!(interrupt.recv());
            // Whichever comes first: a change or Ctrl+C (both are cancel-safe).
            let change = match rt::timeout(Duration::from_secs(if demo { 5 } else { 3600 }), select(next, sigint)).await
            {
                Ok(Either::Left((change, _))) => change?,
                Ok(Either::Right(_)) => {
                    println!("interrupted");
                    break;
                }
                Err(_) if demo => panic!("the demo's changes did not all arrive"),
                Err(_) => continue,
            };
            println!(
                "{:<9} {}{}",
                format!("{:?}", change.kind),
                change.path().display(),
                if change.is_directory { "/" } else { "" }
            );
            removed |= change.kind == ChangeKind::Removed;
        }
        Ok::<(), eventcore::Error>(())
    })?;
    if demo {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("leaks: {}", ex.leak_report());
    Ok(())
}
