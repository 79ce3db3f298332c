//! Waits on a descriptor that another library owns: a stand-in for a C
//! library that reports its messages through a pipe and wants the program
//! to call `library_read` when the pipe is readable (what D-Bus, ALSA,
//! libpq, c-ares and many others ask of an event loop).
//!
//! The callback API first (`Driver::polls`, a repeating watch), then the same
//! through async/await (`rt::AsyncFd`). Unix only: on Windows, sockets are
//! what `Polls::register` takes (see `examples/wait_event.rs` for kernel
//! objects).

#[cfg(not(unix))]
fn main() {
    println!("this example waits on a Unix pipe; on Windows see examples/wait_event.rs");
}

/// The "other library": it owns both ends of a pipe, writes messages from a
/// thread of its own, and lends the program its read descriptor.
#[cfg(unix)]
mod library {
    use std::io::{ErrorKind, Read, Write};
    use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    pub struct Library {
        reader: std::fs::File,
        worker: Option<std::thread::JoinHandle<()>>,
    }

    impl Library {
        /// Starts the library: it will send `count` messages, 20 ms apart.
        pub fn start(count: usize) -> Library {
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills two descriptors (checked) that we own.
            let (r, w) = unsafe {
                assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK), 0);
                (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
            };
            let worker = std::thread::spawn(move || {
                let mut w = std::fs::File::from(w);
                for i in 0..count {
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = writeln!(w, "message {i}");
                }
                // Dropping the write end: the reader sees the end.
            });
            Library {
                reader: std::fs::File::from(r),
                worker: Some(worker),
            }
        }

        /// The descriptor the program's loop should wait on.
        pub fn descriptor(&self) -> BorrowedFd<'_> {
            self.reader.as_fd()
        }

        /// Reads what arrived (never blocks): the messages, and whether the
        /// library is done.
        pub fn library_read(&mut self) -> (String, bool) {
            let mut out = String::new();
            let mut buf = [0u8; 256];
            loop {
                match self.reader.read(&mut buf) {
                    Ok(0) => return (out, true),
                    Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return (out, false),
                    Err(e) => panic!("library read: {e}"),
                }
            }
        }
    }

    impl Drop for Library {
        fn drop(&mut self) {
            if let Some(w) = self.worker.take() {
                w.join().unwrap();
            }
        }
    }

    impl AsFd for Library {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.descriptor()
        }
    }
}

#[cfg(unix)]
fn main() -> Result<(), eventcore::Error> {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use eventcore::rt::{self, AsyncFd, Executor};
    use eventcore::{Driver, ExitReason, Interest};
    use library::Library;

    // 1. Callbacks: a repeating watch until the library says it is done.
    let mut drv = Driver::new()?;
    let lib = Rc::new(RefCell::new(Library::start(3)));
    let h = drv.polls().register(lib.borrow().descriptor())?;
    let l = lib.clone();
    drv.polls().watch(h, Interest::READABLE, move |drv, h, ready| {
        ready.expect("the descriptor stays open while registered");
        let (text, done) = l.borrow_mut().library_read();
        print!("callback got: {text}");
        if done {
            println!("callback: the library is done");
            // Release before the library closes its descriptor.
            drv.release_ref(h).unwrap();
        }
    })?;
    while drv.process_events(Some(Duration::from_secs(5)))? == ExitReason::Idle {}
    drop(lib);

    // 2. async/await: AsyncFd owns the library and unregisters before it
    // drops it.
    let mut ex = Executor::new(drv);
    ex.block_on(async {
        let mut lib = AsyncFd::new(Library::start(3))?;
        loop {
            rt::timeout(Duration::from_secs(5), lib.readable())
                .await
                .expect("a message within 5 s")?;
            let (text, done) = lib.get_mut().library_read();
            print!("task got: {text}");
            if done {
                println!("task: the library is done");
                return Ok::<(), eventcore::Error>(());
            }
        }
    })?;
    assert!(ex.leak_report().is_empty());
    Ok(())
}
