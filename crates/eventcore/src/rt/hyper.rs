//! hyper 1.x on the async layer (feature `hyper`): the three runtime pieces
//! hyper leaves to its host.
//!
//! - [`HyperIo`]: hyper's [`Read`](::hyper::rt::Read) and
//!   [`Write`](::hyper::rt::Write) over a `futures-io` byte stream — every
//!   [`ByteStream`](super::ByteStream) (TCP and Unix connections, pipes,
//!   child stdio) and its halves. Reads copy once, from the stream's
//!   internal buffer straight into hyper's (`poll_fill_buf`, `put_slice`,
//!   `consume`: no intermediate buffer); writes go into the stream's write
//!   buffer, which the driver owns while the OS sends it.
//! - [`HyperExecutor`]: hyper's [`Executor`](::hyper::rt::Executor) (HTTP/2
//!   streams and connection tasks) — [`spawn`](super::spawn) onto the
//!   executor running on the calling thread.
//! - [`HyperTimer`]: hyper's [`Timer`](::hyper::rt::Timer), whose sleeps
//!   ([`HyperSleep`]) are `Send + Sync` as hyper requires, own a driver timer
//!   from their first poll and release it when dropped or completed — a
//!   dropped sleep costs nothing afterwards. Timeouts such as
//!   `http1::Builder::header_read_timeout` (which hyper enforces only with a
//!   timer) and HTTP/2 keep-alive need it.
//!
//! A server, one connection per task:
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper::{Request, Response};
//! use eventcore::rt::{self, Executor, TcpListener, TcpStream};
//! use eventcore::rt::hyper::{HyperIo, HyperTimer};
//!
//! let mut ex = Executor::new(eventcore::Driver::new()?);
//! ex.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?.as_inet().expect("an IP address");
//!     rt::spawn(async move {
//!         while let Ok((conn, _peer)) = listener.accept().await {
//!             rt::spawn(async move {
//!                 let service = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
//!                     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("Hello, World!"))))
//!                 });
//!                 let _ = hyper::server::conn::http1::Builder::new()
//!                     .timer(HyperTimer)
//!                     .serve_connection(HyperIo::new(conn), service)
//!                     .await;
//!             });
//!         }
//!     });
//!     // The client side: a connection, its driver task, one request.
//!     let io = HyperIo::new(TcpStream::connect(addr).await?);
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
//!     rt::spawn(conn);
//!     let req = Request::get("/").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
//!     let res = sender.send_request(req).await.expect("a response");
//!     let body = res.into_body().collect().await.expect("the body").to_bytes();
//!     assert_eq!(&body[..], b"Hello, World!");
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })
//! .unwrap();
//! # Ok::<(), eventcore::Error>(())
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_io::{AsyncBufRead, AsyncWrite};

use super::executor::{current, running_executor_id};
use crate::{Driver, Remote, TimerId};

// ------------------------------------------------------------------ I/O

/// hyper's I/O traits ([`Read`](::hyper::rt::Read),
/// [`Write`](::hyper::rt::Write)) over a `futures-io` stream: any
/// [`ByteStream`](super::ByteStream) (`TcpStream`, `UnixStream`, `Pipe`,
/// child stdio), its borrowed or owned halves, or any other type with
/// [`AsyncBufRead`] and [`AsyncWrite`] — what `hyper_util::rt::TokioIo` is
/// for tokio's streams.
///
/// hyper needs one object that reads and writes (a connection). A pipe is a
/// `ByteStream` too, so `HyperIo<Pipe>` builds, but a pipe carries one
/// direction: HTTP over pipes would need two of them joined into one
/// duplex type, which this module does not offer.
///
/// **Copies.** A read copies the bytes once, from the stream's internal
/// buffer into hyper's read buffer (hyper's `ReadBufCursor` takes bytes
/// without `unsafe` only through `put_slice`, and the completion backends
/// must own the buffer an operation reads into, which hyper's borrowed
/// cursor cannot be). A write copies hyper's bytes into the stream's write
/// buffer, which goes to the driver as an owned buffer. `is_write_vectored`
/// is `false`, so hyper gathers a response's head and body into one buffer
/// first, and one write (one system call when nothing is in flight) sends
/// both.
#[derive(Debug, Default)]
pub struct HyperIo<T> {
    inner: T,
}

impl<T> HyperIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> HyperIo<T> {
        HyperIo { inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream (bytes it has buffered stay in it).
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T> From<T> for HyperIo<T> {
    fn from(inner: T) -> HyperIo<T> {
        HyperIo::new(inner)
    }
}

impl<T: AsyncBufRead + Unpin> ::hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ::hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let inner = &mut self.get_mut().inner;
        // End of stream is an empty slice: nothing put, which hyper takes as EOF.
        let data = std::task::ready!(Pin::new(&mut *inner).poll_fill_buf(cx))?;
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        Pin::new(inner).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> ::hyper::rt::Write for HyperIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// Flushes, then ends the writing direction (see
    /// [`ByteStream`](super::ByteStream)'s `poll_close`: a socket is shut
    /// down for writing, a pipe is closed).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

// ------------------------------------------------------------- executor

/// hyper's [`Executor`](::hyper::rt::Executor): runs the futures hyper hands
/// it (HTTP/2 streams, a client connection's background work) as tasks of
/// the executor running on the calling thread, as [`spawn`](super::spawn)
/// does — they need not be `Send`. hyper calls it from inside the
/// connection it drives, so that is the thread whose executor drives the
/// connection.
///
/// # Panics
///
/// `execute` panics when no executor runs on the calling thread (outside
/// `Executor::block_on`), as `spawn` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperExecutor;

impl<F> ::hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    #[track_caller]
    fn execute(&self, fut: F) {
        // Detached: hyper learns of the outcome through its own channels.
        drop(super::spawn(fut));
    }
}

// ---------------------------------------------------------------- timer

/// hyper's [`Timer`](::hyper::rt::Timer) over the driver's timers: its
/// sleeps are [`HyperSleep`]s. It holds nothing, so one value serves every
/// thread: a sleep takes its driver timer from the executor it is first
/// polled on.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

impl ::hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep::new(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep::until(deadline))
    }

    /// Moves the deadline of a [`HyperSleep`] in place (its driver timer is
    /// kept); any other sleep is replaced.
    fn reset(&self, sleep: &mut Pin<Box<dyn ::hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(ours) => ours.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A sleep of [`HyperTimer`]: a future that completes at its deadline, and
/// `Send + Sync` (hyper's [`Sleep`](::hyper::rt::Sleep) requires both).
///
/// - **Driver timer.** The first poll that finds the deadline ahead takes a
///   timer from the driver of the executor running on the polling thread,
///   and records which executor that is. The timer is released as soon as
///   the sleep completes or is dropped, so a dropped sleep leaves nothing
///   running (hyper drops its header-read timeout for every request head
///   it reads in time). A sleep that is dropped before its first poll never
///   takes a timer.
/// - **Threads.** The state the driver's callback shares with the sleep is
///   an `Arc<Mutex<..>>` and the waker is `Send`, so after that first poll
///   the sleep may be polled from any thread: it completes when the owning
///   executor's driver fires the timer (that executor must keep running). Dropped
///   or reset away from its executor, it releases the timer through the
///   driver's [`Remote`].
///
/// # Panics
///
/// The first poll panics (with a message saying so) if the deadline is
/// still ahead and no executor runs on the polling thread: there is no
/// driver to take a timer from. A poll after the executor that holds the
/// sleep's timer was dropped panics too, instead of waiting forever.
#[derive(Debug)]
pub struct HyperSleep {
    deadline: Instant,
    armed: Option<Armed>,
    done: bool,
}

/// A sleep's driver timer, and where it lives.
#[derive(Debug)]
struct Armed {
    /// The executor whose driver owns `timer` (`running_executor_id`).
    executor: u64,
    /// That driver, reached from another thread.
    remote: Remote,
    timer: TimerId,
    state: Arc<Mutex<Wait>>,
}

/// What the timer's callback shares with the sleep.
#[derive(Debug, Default)]
struct Wait {
    fired: bool,
    /// The wait's callback was dropped without running: the driver that
    /// held the timer is gone (its executor was dropped).
    orphaned: bool,
    waker: Option<Waker>,
}

/// The timer callback's hold on the shared state: marks the wait orphaned
/// (and wakes the sleep's task, so that its poll says so) if it is dropped
/// without having run.
struct Notifier {
    state: Arc<Mutex<Wait>>,
    ran: bool,
}

impl Notifier {
    fn fire(mut self) {
        self.ran = true;
        let waker = {
            let mut w = lock(&self.state);
            w.fired = true;
            w.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if self.ran {
            return;
        }
        let waker = {
            let mut w = lock(&self.state);
            w.orphaned = true;
            w.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

fn lock(state: &Mutex<Wait>) -> MutexGuard<'_, Wait> {
    // Each critical section sets a flag or swaps a waker: nothing to repair
    // after a panic elsewhere.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers the timer's next firing with `state` (on the driver's thread).
fn wait_for(drv: &mut Driver, timer: TimerId, state: &Arc<Mutex<Wait>>) {
    let notifier = Notifier {
        state: state.clone(),
        ran: false,
    };
    // The timer is the sleep's own, without another wait: this cannot fail.
    let _ = drv.timers().wait(timer, move |_, _, _fired| notifier.fire());
}

impl HyperSleep {
    /// A sleep that completes after `duration` (counted from now).
    pub fn new(duration: Duration) -> HyperSleep {
        let now = Instant::now();
        HyperSleep::until(
            now.checked_add(duration)
                .unwrap_or(now + Duration::from_secs(100 * 365 * 86400)),
        )
    }

    /// A sleep that completes at `deadline`.
    pub fn until(deadline: Instant) -> HyperSleep {
        HyperSleep {
            deadline,
            armed: None,
            done: false,
        }
    }

    /// The instant this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has been reached (and observed by a poll).
    pub fn is_elapsed(&self) -> bool {
        self.done
    }

    /// Whether the sleep holds a driver timer now.
    pub fn holds_timer(&self) -> bool {
        self.armed.is_some()
    }

    /// Moves the deadline; a sleep that had completed waits again. On its
    /// executor's thread the driver timer is moved; elsewhere it is released
    /// and the next poll takes a new one (on the polling thread's executor).
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.done = false;
        let Some(a) = &self.armed else {
            return;
        };
        if a.executor != running_executor_id() {
            self.armed = None;
            return;
        }
        current().with_driver(|drv| {
            let _ = drv.timers().set_at(a.timer, deadline, Duration::ZERO);
            // Withdraw the old wait — registered, or fired and queued — and
            // wait for the new deadline. The waker stays out while the old
            // callback is dropped (so it wakes nobody); that drop marks the
            // state orphaned, which is undone here.
            let waker = lock(&a.state).waker.take();
            drv.timers().cancel_wait(a.timer);
            {
                let mut w = lock(&a.state);
                w.fired = false;
                w.orphaned = false;
                w.waker = waker;
            }
            wait_for(drv, a.timer, &a.state);
        });
    }

    /// Takes a driver timer for the deadline from the executor running on
    /// this thread.
    #[track_caller]
    fn arm(&mut self) {
        let executor = running_executor_id();
        assert!(
            executor != 0,
            "eventcore::rt::hyper: a HyperSleep was first polled on a thread without a running \
             eventcore executor (poll it inside Executor::block_on; once it holds a timer, any \
             thread may poll it)"
        );
        let core = current();
        let state = Arc::new(Mutex::new(Wait::default()));
        let deadline = self.deadline;
        let (timer, remote) = core.with_driver(|drv| {
            let timer = drv.timers().create();
            let _ = drv.timers().set_at(timer, deadline, Duration::ZERO);
            wait_for(drv, timer, &state);
            (timer, drv.remote())
        });
        self.armed = Some(Armed {
            executor,
            remote,
            timer,
            state,
        });
    }
}

impl Future for HyperSleep {
    type Output = ();

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        if this.armed.is_none() {
            if this.deadline <= Instant::now() {
                this.done = true;
                return Poll::Ready(());
            }
            this.arm();
        }
        if let Some(armed) = &this.armed {
            let mut w = lock(&armed.state);
            assert!(
                w.fired || !w.orphaned,
                "eventcore::rt::hyper: a HyperSleep was polled after the executor whose driver held \
                 its timer was dropped"
            );
            if !w.fired {
                match &mut w.waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
        }
        this.done = true;
        // Fired: the timer has nothing left to do; give it back now.
        this.armed = None;
        Poll::Ready(())
    }
}

impl ::hyper::rt::Sleep for HyperSleep {}

impl futures_core::FusedFuture for HyperSleep {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // Nobody waits any more: the wait's callback, dropped with the
        // timer, wakes no task.
        lock(&self.state).waker = None;
        if self.executor == running_executor_id() {
            // Releasing withdraws the pending wait: its callback never runs.
            current().release(self.timer);
        } else {
            // Another thread, or the executor is not running: the driver's
            // own thread releases it at its next turn (if it still exists).
            let timer = self.timer;
            let _ = self.remote.run_internal(move |drv| {
                let _ = drv.release_ref(timer);
                false
            });
        }
    }
}
