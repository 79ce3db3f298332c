//! # eventcore
//!
//! A per-thread event driver in the proactor style: operations are started
//! with an owned buffer and a completion callback, and the callbacks run only
//! from [`Driver::process_events`], on the driver's thread. One contract for
//! every subsystem — timers, events, signals, sockets (TCP, UDP, Unix), DNS,
//! files, pipes, child processes, directory watchers — on native backends:
//! Linux epoll (the default there), Linux io_uring (chosen per driver with
//! [`Driver::with_backend`]`(`[`BackendKind::IoUring`]`)` where the kernel
//! allows it), and WinAPI (overlapped I/O with completion routines, in a wait
//! that also pumps the thread's window messages). [`rt`] puts async/await on
//! top. The package is `eventcore-driver`; the crate is `eventcore`.
//!
//! ```
//! use std::time::Duration;
//! use eventcore::{Driver, ExitReason, IoMode, ListenOptions};
//!
//! let mut drv = Driver::new()?;
//! // An echo server on a free loopback port…
//! let listener = drv.sockets().listen(
//!     "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
//!     ListenOptions::default(),
//!     |drv, _listener, accepted| {
//!         let (conn, _peer) = accepted.expect("accept");
//!         // A read fills the buffer's capacity and sets its length.
//!         drv.sockets().read(conn, Vec::with_capacity(64), IoMode::Once, |drv, conn, res, buf| {
//!             res.expect("read");
//!             drv.sockets().write(conn, buf, IoMode::All, |drv, conn, _, _| {
//!                 drv.release_ref(conn).unwrap();
//!             });
//!         });
//!     },
//! )?;
//! let addr = drv.sockets().local_address(listener)?;
//! // …and a client that sends "hello" and checks the echo.
//! drv.sockets().connect(addr, None, |drv, conn, res| {
//!     res.expect("connect");
//!     // Any owned buffer: a `&'static [u8]`, a `Vec`, a `String`, `Bytes` …
//!     drv.sockets().write(conn, &b"hello"[..], IoMode::All, |drv, conn, _, _| {
//!         drv.sockets().read(conn, Vec::with_capacity(5), IoMode::All, |drv, conn, res, buf| {
//!             assert_eq!(res.unwrap(), 5);
//!             assert_eq!(&buf, b"hello");
//!             drv.release_ref(conn).unwrap();
//!             drv.exit();
//!         });
//!     });
//! })?;
//! while drv.process_events(Some(Duration::from_secs(5)))? == ExitReason::Idle {}
//! drv.release_ref(listener)?;
//! # Ok::<(), eventcore::Error>(())
//! ```
//!
//! ## Rules every backend keeps
//!
//! - Callbacks never run inside the call that started an operation — not on
//!   immediate success, failure or an invalid handle.
//! - Handles are `Copy` (index, generation) pairs: a stale handle is
//!   [`Status::InvalidHandle`], never another resource.
//! - A one-shot callback runs exactly once unless its operation is cancelled;
//!   after a `cancel_*` call returns it never runs.
//! - Buffers are owned by the operation and come back in its callback (or from
//!   the cancel call).
//! - A panic in a callback comes out of `process_events` and leaves the driver
//!   usable (see [Panics in callbacks](Driver#panics-in-callbacks)).
//!
//! The whole contract is in the repository's `docs/contract.md`.

#![deny(missing_docs, rust_2018_idioms, unused_imports)]
// Without a backend only the neutral parts are built, and most of what they
// offer the driver goes unused.
#![cfg_attr(not(eventcore_backend), allow(dead_code, unused_macros))]
// Unsafe code lives in `sys/` only, every block says why it is sound, and an
// unsafe function's body spells out its own unsafe operations.
#![deny(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

pub mod buf;
mod error;
mod handle;
mod kinds;
mod slab;
#[allow(unsafe_code)]
mod sys;
#[allow(dead_code)]
mod timer;

pub use buf::{AnyBuf, IoBuf, IoBufMut};
pub use error::{Error, Result, Status};
pub use handle::Handle;

/// The items that need a backend: the driver and everything built on it.
/// Targets without one (see `build.rs`) get only the backend-neutral parts.
macro_rules! with_backend {
    ($($item:item)*) => {
        $(#[cfg(eventcore_backend)] $item)*
    };
}

with_backend! {
    mod dns;
    mod driver;
    mod events;
    mod files;
    #[cfg(windows)]
    mod gui;
    mod io;
    mod pipes;
    mod poll;
    mod pool;
    mod processes;
    mod remote;
    pub mod rt;
    mod signals;
    mod sockets;
    mod timers;
    mod watchers;

    pub use dns::{Dns, LookupId};
    pub use driver::{Driver, DriverBuilder, ExitReason};
    pub use sys::BackendKind;
    pub use events::{EventId, EventWait, Events};
    pub use files::{FileHandle, Files, OpenMode};
    #[cfg(windows)]
    pub use gui::{AttachedDriver, MessageHook};
    pub use io::{Cancelled, IoMode};
    pub use kinds::LeakReport;
    pub use pipes::{PipeHandle, Pipes};
    pub use poll::{Interest, PollHandle, PollWait, Polls, Readiness};
    pub use processes::{Child, Command, ExitStatus, ProcessId, ProcessWait, Processes, Stdio};
    pub use remote::Remote;
    pub use signals::{signal_numbers, SignalListener, Signals};
    pub use sockets::{
        ConnectionState, DatagramOptions, DatagramSocket, ListenOptions, SocketAddress, SocketHandle, Sockets,
        StreamListener, StreamSocket,
    };
    pub use timers::{TimerCallback, TimerId, Timers};
    pub use watchers::{ChangeKind, FileChange, WatcherId, Watchers};

    /// Test hook (Windows): runs the console control handler's work for
    /// `ctrl_type` (`CTRL_C_EVENT` 0, `CTRL_BREAK_EVENT` 1, `CTRL_CLOSE_EVENT`
    /// 2 …) exactly as when the OS calls it — map the event to its signal,
    /// record it for every driver that listens, wake them — except that a
    /// handled close event does not block the caller (the real handler sleeps
    /// so that the process survives until the loops have run their callbacks).
    /// Returns whether some driver listens (the handler's `TRUE`). Wine cannot
    /// deliver console events to a process without a console, so the tests use
    /// this; programs never need it.
    #[cfg(windows)]
    #[doc(hidden)]
    pub fn __simulate_console_ctrl_event(ctrl_type: u32) -> bool {
        sys::signals::dispatch(ctrl_type)
    }
}
