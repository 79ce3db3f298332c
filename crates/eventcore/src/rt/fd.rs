//! Foreign descriptors as futures: [`AsyncFd`] waits until a descriptor
//! (Windows: a socket) that another library drives is readable or writable,
//! and on Windows `wait_handle` waits until a kernel object is signalled.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};

use super::executor::{current, Core, Owned};
use super::op::{Completer, OpFuture, Operation, Queue};
use crate::{Driver, Interest, PollHandle, PollWait, Readiness, Result};

/// A descriptor that the program (or another library) owns and does its own
/// I/O on, registered with the executor's driver to learn when it is
/// readable or writable — tokio's `AsyncFd`, libuv's `uv_poll_t`.
///
/// `AsyncFd` owns the object `T` (a `File`, an `OwnedFd`, a library's
/// connection type …; Windows: a socket type) only to keep it open for as
/// long as it is registered: dropping the `AsyncFd` releases the
/// registration first, then drops `T`. [`into_inner`](AsyncFd::into_inner)
/// gives it back unregistered.
///
/// Readiness is level-triggered: [`readable`](AsyncFd::readable) completes
/// as soon as the descriptor is readable (at once if it is already), and
/// stays true until the program reads what is there. The usual loop is
/// "wait until readable, then read with the library until it says
/// `WouldBlock`".
///
/// Unix: regular files and directories cannot be registered
/// (`NotSupported`), nor a descriptor registered already (`AlreadyExists`).
/// If the `AsyncFd` is dropped while the driver is in use (inside
/// [`with_driver`](super::with_driver)), the release waits for the next turn
/// and `T` is closed first; the driver handles that (see
/// [`Polls::register`](crate::Polls::register)).
/// Windows: see [`Polls::register`](crate::Polls::register) for what the
/// registration does to the socket.
pub struct AsyncFd<T> {
    h: Option<Owned<PollHandle>>,
    inner: Option<T>,
}

impl<T> AsyncFd<T> {
    /// Registers `inner`'s descriptor with the executor running on this
    /// thread (panics outside one).
    #[cfg(unix)]
    pub fn new(inner: T) -> Result<AsyncFd<T>>
    where
        T: std::os::fd::AsFd,
    {
        let core = current();
        let h = core.with_driver(|drv| drv.polls().register(inner.as_fd()))?;
        Ok(AsyncFd {
            h: Some(Owned::new(core, h)),
            inner: Some(inner),
        })
    }

    /// Registers `inner`'s socket with the executor running on this thread
    /// (panics outside one).
    #[cfg(windows)]
    pub fn new(inner: T) -> Result<AsyncFd<T>>
    where
        T: std::os::windows::io::AsSocket,
    {
        let core = current();
        let h = core.with_driver(|drv| drv.polls().register(inner.as_socket()))?;
        Ok(AsyncFd {
            h: Some(Owned::new(core, h)),
            inner: Some(inner),
        })
    }

    fn owned(&self) -> &Owned<PollHandle> {
        self.h.as_ref().expect("registered until dropped")
    }

    /// The driver handle of the registration.
    pub fn handle(&self) -> PollHandle {
        self.owned().handle
    }

    /// The object.
    pub fn get_ref(&self) -> &T {
        self.inner.as_ref().expect("present until dropped")
    }

    /// The object, mutably (for its own reads and writes).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("present until dropped")
    }

    /// Releases the registration and gives the object back.
    pub fn into_inner(mut self) -> T {
        self.h = None;
        self.inner.take().expect("present until dropped")
    }

    /// Waits until the descriptor is ready for a direction of `interest`
    /// (for [`Interest::BOTH`], whichever comes first) and says which.
    /// `Busy` while another wait or a [`watch`](AsyncFd::watch) has that
    /// direction.
    ///
    /// **Cancel safety:** cancel-safe: readiness is a state, nothing is
    /// consumed; a dropped future withdraws its wait.
    pub fn ready(&self, interest: Interest) -> impl Future<Output = Result<Readiness>> + '_ {
        OpFuture::new(ReadyOp {
            h: self.handle(),
            interest,
            object: false,
        })
    }

    /// Waits until the descriptor is readable (data, a connection to accept,
    /// the end of the stream or an error). Cancel-safe.
    pub async fn readable(&self) -> Result<()> {
        self.ready(Interest::READABLE).await.map(drop)
    }

    /// Waits until the descriptor is writable. Cancel-safe.
    pub async fn writable(&self) -> Result<()> {
        self.ready(Interest::WRITABLE).await.map(drop)
    }

    /// The readiness of the descriptor as a stream (a repeating
    /// [`Polls::watch`](crate::Polls::watch)): one item per direction each
    /// loop turn in which it is ready. Level-triggered, so a consumer that
    /// does not read (or write) until `WouldBlock` gets the same readiness
    /// again. An error is yielded once and ends the stream; so does a watch
    /// that cannot start (`Busy`). Dropping the stream stops the watch.
    pub fn watch(&self, interest: Interest) -> ReadinessStream<'_> {
        ReadinessStream::start(self.owned(), interest)
    }
}

impl<T> Drop for AsyncFd<T> {
    fn drop(&mut self) {
        // The registration goes before the object is closed.
        self.h = None;
        self.inner = None;
    }
}

#[cfg(unix)]
impl<T: std::os::fd::AsFd> std::os::fd::AsFd for AsyncFd<T> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

#[cfg(unix)]
impl<T: std::os::fd::AsRawFd> std::os::fd::AsRawFd for AsyncFd<T> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.get_ref().as_raw_fd()
    }
}

#[cfg(windows)]
impl<T: std::os::windows::io::AsSocket> std::os::windows::io::AsSocket for AsyncFd<T> {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        self.get_ref().as_socket()
    }
}

#[cfg(windows)]
impl<T: std::os::windows::io::AsRawSocket> std::os::windows::io::AsRawSocket for AsyncFd<T> {
    fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
        self.get_ref().as_raw_socket()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncFd")
            .field("handle", &self.h)
            .field("inner", &self.inner)
            .finish()
    }
}

/// One wait of a foreign descriptor or kernel object.
struct ReadyOp {
    h: PollHandle,
    interest: Interest,
    /// A Windows kernel object (`wait_signalled`).
    #[cfg_attr(not(windows), allow(dead_code))]
    object: bool,
}

impl Operation for ReadyOp {
    type Output = Result<Readiness>;
    type Token = (PollHandle, PollWait);
    type Ret = Result<Readiness>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<Self::Token, Self::Ret> {
        let callback = move |_: &mut Driver, _: PollHandle, r: Result<Readiness>| {
            let _ = done.complete(r);
        };
        #[cfg(windows)]
        if self.object {
            return drv
                .polls()
                .wait_signalled(self.h, callback)
                .map(|w| (self.h, w))
                .map_err(Err);
        }
        drv.polls()
            .wait(self.h, self.interest, callback)
            .map(|w| (self.h, w))
            .map_err(Err)
    }

    fn cancel(drv: &mut Driver, (h, wait): Self::Token) {
        drv.polls().cancel(h, wait);
    }

    fn ready(&mut self, _core: &Rc<Core>, _token: Self::Token, out: Self::Output) -> Self::Ret {
        out
    }
}

/// The readiness of an [`AsyncFd`] as a `Stream` (see [`AsyncFd::watch`]).
pub struct ReadinessStream<'a> {
    h: &'a Owned<PollHandle>,
    queue: Rc<Queue<Result<Readiness>>>,
    /// The watch runs (not ended by an error, or never started).
    watching: bool,
}

impl<'a> ReadinessStream<'a> {
    fn start(h: &'a Owned<PollHandle>, interest: Interest) -> ReadinessStream<'a> {
        let queue = Queue::new();
        let q = queue.clone();
        let started = h
            .core
            .with_driver(|drv| drv.polls().watch(h.handle, interest, move |_, _, r| q.push(r)));
        let watching = match started {
            Ok(()) => true,
            Err(e) => {
                queue.push(Err(e));
                false
            }
        };
        ReadinessStream { h, queue, watching }
    }

    /// The next readiness (`None` once an error ended the watch).
    ///
    /// **Cancel safety:** cancel-safe: an item is taken only by the poll
    /// that returns it.
    pub async fn next(&mut self) -> Option<Result<Readiness>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for ReadinessStream<'_> {
    type Item = Result<Readiness>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.watching && this.queue.is_empty() {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(this.queue.poll_next(cx));
        if item.is_err() {
            // The driver ended the watch with this error.
            this.watching = false;
        }
        Poll::Ready(Some(item))
    }
}

impl FusedStream for ReadinessStream<'_> {
    fn is_terminated(&self) -> bool {
        !self.watching && self.queue.is_empty()
    }
}

impl Drop for ReadinessStream<'_> {
    fn drop(&mut self) {
        if self.watching {
            let h = self.h.handle;
            self.h.core.run_or_defer(move |drv| {
                drv.polls().unwatch(h);
            });
        }
    }
}

impl std::fmt::Debug for ReadinessStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessStream")
            .field("handle", &self.h.handle)
            .field("watching", &self.watching)
            .finish()
    }
}

/// Windows: waits until the kernel object behind `handle` (an event,
/// semaphore, mutex, process, thread, waitable timer …) is signalled — the
/// native wait of a WinAPI loop, through the thread pool, with no limit of
/// 64 handles. The executor waits on its own duplicate of the handle,
/// registered for the length of the wait. Waiting observes the object as a
/// wait function does (an auto-reset event is reset, a mutex acquired by a
/// thread-pool thread).
///
/// `InvalidHandle` for null, `INVALID_HANDLE_VALUE` or a value that names
/// no waitable handle.
///
/// **Cancel safety:** dropping the future withdraws the wait
/// (`UnregisterWaitEx`, which waits for a callback that is running); an
/// auto-reset event that the wait had already reset stays reset.
#[cfg(windows)]
pub async fn wait_handle(handle: std::os::windows::io::BorrowedHandle<'_>) -> Result<()> {
    let core = current();
    let h = core.with_driver(|drv| drv.polls().register_object(handle))?;
    let _registration = Owned::new(core, h);
    let readiness = OpFuture::new(ReadyOp {
        h,
        interest: Interest::READABLE,
        object: true,
    })
    .await?;
    debug_assert!(readiness.is_signalled());
    Ok(())
}
