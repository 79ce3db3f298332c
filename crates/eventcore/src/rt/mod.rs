//! The async layer: a per-thread executor over [`Driver`](crate::Driver), and futures for
//! every subsystem.
//!
//! ```
//! use std::time::Duration;
//! use eventcore::rt::{self, Executor, Listener, TcpStream};
//!
//! let mut ex = Executor::new(eventcore::Driver::new()?);
//! ex.block_on(async {
//!     let listener = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())?;
//!     let addr = listener.local_addr()?;
//!     let server = rt::spawn(async move {
//!         let (conn, _peer) = listener.accept().await?;
//!         // The read fills the buffer's capacity and sets its length.
//!         let (n, buf) = conn.read_owned(Vec::with_capacity(64)).await;
//!         n?;
//!         conn.write_all_owned(buf).await.0
//!     });
//!     let client = TcpStream::connect(addr).await?;
//!     client.write_all_owned(&b"hello"[..]).await.0?;
//!     let (n, buf) = rt::timeout(Duration::from_secs(5), client.read_exact_owned(Vec::with_capacity(5)))
//!         .await
//!         .expect("echo in time");
//!     assert_eq!((n?, &buf[..]), (5, &b"hello"[..]));
//!     server.await.expect("the server task")?;
//!     Ok::<(), eventcore::Error>(())
//! })?;
//! assert!(ex.leak_report().is_empty());
//! # Ok::<(), eventcore::Error>(())
//! ```
//!
//! ## How it fits the driver
//!
//! - **One executor per thread**, owning its [`Driver`](crate::Driver): [`Executor::block_on`]
//!   polls the woken tasks, then runs one batch of `process_events`, and so on.
//!   Tasks are local (`!Send`) futures ([`spawn`]); `Send` futures reach another
//!   thread's executor through a [`Spawner`], which wakes that driver through
//!   its [`Remote`](crate::Remote). Wakers are `Send + Sync`: a wake from
//!   another thread also goes through the `Remote`.
//! - **Futures start their operation on the first poll** and complete from the
//!   driver callback, which only stores the result into a slot and wakes the
//!   task. Operations need the executor: poll them inside `block_on`.
//! - **Handles are RAII types** ([`TcpStream`], [`File`], [`Child`] …): dropping
//!   one releases the driver reference, which cancels what is still pending.
//! - **Owned buffers**: reads and writes take any buffer of
//!   [`buf`](crate::buf) (`Vec<u8>`, `Box<[u8]>`, `String`, static bytes,
//!   `bytes::Bytes` / `BytesMut` with the `bytes` feature) and give it back
//!   with the result, as a [`BufResult`]; a read fills a `Vec`'s capacity
//!   after its length. Their names end in `_owned` (`read_owned`,
//!   `write_all_owned` …) so that futures' `AsyncReadExt::read` and friends
//!   stay callable on the same stream. Dropping a future cancels its operation
//!   (`cancel_read`, `cancel_lookup` …); the driver keeps the buffer for as
//!   long as the OS or a worker may still write into it. Each method documents
//!   its **cancel safety**: what is lost if its future is dropped.
//! - **Ecosystem**: [`ByteStream`] (TCP and Unix streams, pipes, child stdio)
//!   implements the `futures-io` traits [`AsyncRead`](futures_io::AsyncRead),
//!   [`AsyncBufRead`](futures_io::AsyncBufRead) and
//!   [`AsyncWrite`](futures_io::AsyncWrite) over an internal buffer;
//!   [`Listener`], [`Interval`], [`Signal`] and [`DirectoryWatcher`] are
//!   `futures` [`Stream`](futures_core::Stream)s (and `FusedStream`s),
//!   [`Sleep`] and [`JoinHandle`] `FusedFuture`s; the OS object of a stream,
//!   listener, datagram socket, pipe or file is reachable through `AsFd` /
//!   `AsSocket` / `AsHandle` and their raw forms; the other way round,
//!   [`AsyncFd`] waits until a descriptor another library owns is readable
//!   or writable (and on Windows `wait_handle` until a kernel object is
//!   signalled).
//! - **Optional integrations**: with the feature `hyper`, `rt::hyper` runs
//!   hyper 1.x on this layer (I/O wrapper, executor, timer); with
//!   `tokio-io`, the byte streams also implement tokio's I/O traits (see
//!   `rt::tokio_io`).
//!
//! Nothing here is OS-specific: the layer only uses the driver's API, so it
//! runs on every backend (epoll, io_uring, WinAPI) with every subsystem:
//! sockets, DNS, files, pipes, processes, signals and directory watchers.
//!
//! ## Windows GUI programs
//!
//! On the WinAPI backend the driver's wait pumps the thread's window
//! messages, so windows stay live during `block_on`, and a task learns of
//! `WM_QUIT` through [`quit_message`]. A program whose own
//! message loop is in charge keeps tasks going by calling
//! [`Executor::turn`] with a zero timeout from that loop (a timer or idle
//! handler).

mod addr;
mod dns;
mod event;
mod executor;
mod fd;
mod fs;
#[cfg(feature = "hyper")]
pub mod hyper;
mod io;
mod net;
mod op;
mod os;
mod pipe;
mod process;
mod signal;
mod stream;
mod time;
#[cfg(feature = "tokio-io")]
pub mod tokio_io;
mod watch;

pub use addr::ToAddress;
pub use dns::lookup;
pub use event::{Event, EventTrigger, Notified, Notify, NotifyHandle, WaitEvent};
pub use executor::{
    quit_message, spawn, spawner, with_driver, yield_now, Executor, JoinError, JoinHandle, RemoteJoinHandle, Spawner,
};
#[cfg(windows)]
pub use fd::wait_handle;
pub use fd::{AsyncFd, ReadinessStream};
pub use fs::File;
pub use io::{ByteStream, OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, StreamHandle, WriteHalf};
pub use net::{DatagramSocket, Datagrams, Listener, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
pub use pipe::Pipe;
pub use process::{Child, ChildStderr, ChildStdin, ChildStdout};
pub use signal::Signal;
pub use time::{interval, sleep, sleep_until, timeout, Elapsed, Interval, Sleep};
pub use watch::DirectoryWatcher;

/// The result of an owned-buffer operation: its outcome, and the buffer (of
/// the type the operation took; `Vec<u8>` unless said otherwise) back.
pub type BufResult<T, B = Vec<u8>> = (crate::Result<T>, B);
