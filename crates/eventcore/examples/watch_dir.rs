//! Watches a temporary directory recursively while a timer makes changes in
//! it, and prints every change the watcher reports.

use std::time::Duration;

use eventcore::{Driver, ExitReason};

fn main() -> Result<(), eventcore::Error> {
    let dir = std::env::temp_dir().join(format!("eventcore-watch-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut drv = Driver::new()?;
    let watcher = drv
        .watchers()
        .watch_directory(&dir, true, |_, _, change| match change {
            Ok(c) => println!("{:?}: {} (directory: {})", c.kind, c.path().display(), c.is_directory),
            Err(e) => println!("watcher error: {e}"),
        })?;

    // A timer makes one change every 50 ms, then releases the watcher.
    let timer = drv.timers().create();
    drv.timers()
        .set(timer, Duration::from_millis(50), Duration::from_millis(50))?;
    fn step(drv: &mut Driver, t: eventcore::TimerId, n: u32, dir: std::path::PathBuf, watcher: eventcore::WatcherId) {
        match n {
            0 => std::fs::write(dir.join("a.txt"), b"one").unwrap(),
            1 => std::fs::write(dir.join("a.txt"), b"two").unwrap(),
            2 => std::fs::create_dir(dir.join("sub")).unwrap(),
            3 => std::fs::write(dir.join("sub").join("b.txt"), b"three").unwrap(),
            4 => std::fs::rename(dir.join("a.txt"), dir.join("c.txt")).unwrap(),
            5 => std::fs::remove_file(dir.join("c.txt")).unwrap(),
            _ => {
                drv.release_ref(watcher).unwrap();
                drv.release_ref(t).unwrap();
                return;
            }
        }
        drv.timers()
            .wait(t, move |drv, t, _| step(drv, t, n + 1, dir, watcher))
            .unwrap();
    }
    let d = dir.clone();
    drv.timers().wait(timer, move |drv, t, _| step(drv, t, 0, d, watcher))?;
    while drv.process_events(Some(Duration::from_secs(5)))? == ExitReason::Idle {}
    std::fs::remove_dir_all(&dir).ok();
    println!("leaks: {}", drv.leak_report());
    Ok(())
}
