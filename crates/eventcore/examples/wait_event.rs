//! Windows: waits until a kernel object is signalled — here an event that
//! another thread sets — the way a WinAPI program waits for any handle
//! (events, processes, threads, semaphores, waitable timers), without the
//! 64-handle limit of `WaitForMultipleObjects`.
//!
//! The callback API first (`Polls::register_object` and a repeating
//! `watch_signalled`), then `rt::wait_handle` in async code. On other
//! systems it prints a note and exits.

#[cfg(not(windows))]
fn main() {
    println!("this example waits for a Windows event object; on Unix see examples/foreign_fd.rs");
}

#[cfg(windows)]
fn main() -> Result<(), eventcore::Error> {
    use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle};
    use std::sync::Arc;
    use std::time::Duration;

    use eventcore::rt::{self, Executor};
    use eventcore::{Driver, ExitReason};
    use windows_sys::Win32::System::Threading::{CreateEventW, SetEvent};

    // An auto-reset event, shared with a thread that sets it three times.
    // SAFETY: an unnamed auto-reset event; the handle (checked) is ours.
    let event = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
    assert!(!event.is_null(), "CreateEventW");
    // SAFETY: as above.
    let event = Arc::new(unsafe { OwnedHandle::from_raw_handle(event) });
    let set = |event: Arc<OwnedHandle>, times: usize| {
        std::thread::spawn(move || {
            for _ in 0..times {
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: sets an event we hold a handle to.
                unsafe { SetEvent(event.as_raw_handle()) };
            }
        })
    };

    // 1. Callbacks: report every set, stop after the third.
    let mut drv = Driver::new()?;
    let h = drv.polls().register_object(event.as_handle())?;
    let mut seen = 0;
    drv.polls().watch_signalled(h, move |drv, h, r| {
        r.expect("the wait");
        seen += 1;
        println!("callback: the event was set ({seen}), on the loop thread");
        if seen == 3 {
            drv.release_ref(h).unwrap();
        }
    })?;
    let setter = set(event.clone(), 3);
    while drv.process_events(Some(Duration::from_secs(5)))? == ExitReason::Idle {}
    setter.join().unwrap();

    // 2. async/await.
    let mut ex = Executor::new(drv);
    let setter = set(event.clone(), 1);
    ex.block_on(async {
        rt::timeout(Duration::from_secs(5), rt::wait_handle(event.as_handle()))
            .await
            .expect("set within 5 s")?;
        println!("task: the event was set");
        Ok::<(), eventcore::Error>(())
    })?;
    setter.join().unwrap();
    assert!(ex.leak_report().is_empty());
    Ok(())
}
