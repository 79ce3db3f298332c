//! Foreign descriptors: readiness of descriptors (Windows: sockets) that the
//! program owns, and on Windows the signalled state of its kernel objects.
//!
//! What libuv's `uv_poll_t`, tokio's `AsyncFd` and mio's `SourceFd` offer:
//! another library keeps its descriptor and does its own reads and writes;
//! the driver only says when the descriptor is readable or writable.
//!
//! - The registration is **borrowed**: the driver never reads, writes or
//!   closes the descriptor. The program must release the [`PollHandle`]
//!   *before* it closes the descriptor (see [`Polls::register`] for what
//!   happens otherwise).
//! - Waits are **level-triggered**: a wait on a descriptor that is ready
//!   already completes (from the next `process_events`); a repeating
//!   [`watch`](Polls::watch) keeps reporting a direction, once per loop
//!   turn, for as long as the program leaves it ready.
//! - One wait per direction at a time, whether one-shot or repeating:
//!   another is [`Status::Busy`].
//!
//! Each armed direction is one operation in the driver's `ops` table (a
//! [`PollOp`]): a `Readable` / `Writable` request on Unix and for Windows
//! sockets, a registered thread-pool wait for Windows objects. A one-shot
//! wait for both directions is two operations, the second a *partner* that
//! only forwards to the first; partners, and the writing half of a
//! repeating watch of both directions, are not counted as extra waiters.

use std::collections::HashMap;
use std::ops::BitOr;

use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, Key};
use crate::sys::{self, Backend as _, Request, SourceId};
use crate::{Driver, Error, Result, Status};

define_handle!(
    /// A descriptor (Windows: a socket or a kernel object) registered with
    /// [`Polls::register`]; the program still owns the OS object.
    PollHandle,
    Poll
);

/// What a wait waits for: readable, writable or either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Readable: data to read, a connection to accept, the end of the
    /// stream or an error.
    pub const READABLE: Interest = Interest(1);
    /// Writable: room to write, a finished connect, or an error.
    pub const WRITABLE: Interest = Interest(2);
    /// Readable or writable, whichever comes first.
    pub const BOTH: Interest = Interest(3);

    /// Whether readability is asked for.
    pub fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether writability is asked for.
    pub fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

/// What a completed wait found. Each completion reports one direction (a
/// watch of both directions reports each in a callback of its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Readiness(u8);

impl Readiness {
    const READABLE: Readiness = Readiness(1);
    const WRITABLE: Readiness = Readiness(2);
    #[cfg(windows)]
    const SIGNALLED: Readiness = Readiness(4);

    /// The descriptor is readable (or hung up, or failed).
    pub fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// The descriptor is writable (or failed).
    pub fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// Windows: the kernel object is signalled.
    pub fn is_signalled(self) -> bool {
        self.0 & 4 != 0
    }
}

/// Identifies one pending one-shot wait, for [`Polls::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PollWait(Key);

/// A one-shot wait's callback.
type OnceFn = Box<dyn FnOnce(&mut Driver, PollHandle, Result<Readiness>)>;
/// A repeating watch's callback.
type WatchFn = Box<dyn FnMut(&mut Driver, PollHandle, Result<Readiness>)>;

/// The reading or the writing direction (a Windows object uses the reading
/// one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Read = 0,
    Write = 1,
}

impl Dir {
    fn other(self) -> Dir {
        match self {
            Dir::Read => Dir::Write,
            Dir::Write => Dir::Read,
        }
    }
}

/// What a handle waits on.
enum Target {
    /// A descriptor (Windows: a socket) registered with the backend; on
    /// Unix with the identity of its file (device, inode), to tell at the
    /// release whether the program closed it first.
    Source {
        src: SourceId,
        raw: u64,
        #[cfg(unix)]
        identity: (u64, u64),
    },
    /// A Windows kernel object: the driver's duplicate of the program's
    /// handle, and the registered wait while one is armed (declared first:
    /// it goes before the handle it waits on).
    #[cfg(windows)]
    Object {
        wait: Option<sys::object_wait::ObjectWait>,
        handle: std::os::windows::io::OwnedHandle,
    },
}

struct Watch {
    interest: Interest,
    /// Out of its place while it runs.
    callback: Option<WatchFn>,
    /// Tells this watch from a later one (a callback may unwatch and watch
    /// again).
    epoch: u32,
}

pub(crate) struct PollState {
    target: Target,
    /// The armed operation of each direction.
    slots: [Option<Key>; 2],
    watch: Option<Watch>,
    epochs: u32,
}

enum Role {
    /// A one-shot wait: the callback.
    Once(OnceFn),
    /// The other direction of a one-shot wait for both: the op with the
    /// callback.
    Partner(Key),
    /// A direction of the handle's watch.
    Watch,
}

pub(crate) struct PollOp {
    handle: PollHandle,
    dir: Dir,
    role: Role,
    /// Not counted as a waiter of its own (`Driver::internal_ops`).
    extra: bool,
}

impl PollOp {
    /// The backend request of this operation (for a readiness backend that
    /// rebuilds parked requests).
    pub(crate) fn request(&self) -> Request {
        match self.dir {
            Dir::Read => Request::Readable,
            Dir::Write => Request::Writable,
        }
    }
}

/// The foreign-descriptor view of a driver (see [`Driver::polls`]).
///
/// ```
/// # #[cfg(unix)] {
/// use std::io::{Read, Write};
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
/// use eventcore::{Driver, ExitReason};
///
/// // A connection that another library owns and reads itself.
/// let (mut theirs, mut peer) = UnixStream::pair()?;
/// theirs.set_nonblocking(true)?;
/// let mut drv = Driver::new()?;
/// let h = drv.polls().register(theirs.as_fd())?;
/// drv.polls().wait_readable(h, move |drv, h, ready| {
///     assert!(ready.expect("still open").is_readable());
///     let mut buf = [0u8; 5];
///     theirs.read_exact(&mut buf).unwrap(); // the library's own read
///     assert_eq!(&buf, b"hello");
///     drv.release_ref(h).unwrap(); // before `theirs` is closed (dropped)
/// })?;
/// peer.write_all(b"hello")?;
/// while drv.process_events(Some(Duration::from_secs(5)))? == ExitReason::Idle {}
/// assert!(drv.leak_report().is_empty());
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Polls<'a> {
    drv: &'a mut Driver,
}

/// The descriptors registered with a driver, by raw value.
pub(crate) type PollRegistry = HashMap<u64, Key>;

/// A raw descriptor as the backend takes it.
#[cfg(unix)]
struct Raw(std::os::fd::RawFd);

#[cfg(unix)]
impl std::os::fd::AsRawFd for Raw {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

impl Driver {
    /// Foreign descriptors: wait until a descriptor the program owns is
    /// readable or writable (Windows: a socket, or a kernel object is
    /// signalled).
    pub fn polls(&mut self) -> Polls<'_> {
        Polls { drv: self }
    }

    fn insert_poll_op(&mut self, op: PollOp) -> Key {
        if op.extra {
            self.internal_ops += 1;
        }
        self.ops.insert(Op::Poll(op))
    }

    fn remove_poll_op(&mut self, key: Key) -> Option<PollOp> {
        match self.ops.get(key) {
            Some(Op::Poll(_)) => {}
            _ => return None,
        }
        let Some(Op::Poll(op)) = self.ops.remove(key) else {
            unreachable!("checked above")
        };
        if op.extra {
            self.internal_ops -= 1;
        }
        Some(op)
    }

    /// Arms one direction of `h` with a new operation; returns its key.
    fn arm_poll(&mut self, h: PollHandle, dir: Dir, role: Role, extra: bool) -> Key {
        #[cfg(windows)]
        let remote = self.remote();
        let key = self.insert_poll_op(PollOp {
            handle: h,
            dir,
            role,
            extra,
        });
        let state = self.tables.polls.get_mut(h.0).expect("a live poll handle");
        state.slots[dir as usize] = Some(key);
        let failed = match &mut state.target {
            Target::Source { src, .. } => {
                let req = match dir {
                    Dir::Read => Request::Readable,
                    Dir::Write => Request::Writable,
                };
                self.sys.submit(*src, key.to_u64(), req).map(Outcome::Sys)
            }
            #[cfg(windows)]
            Target::Object { wait, handle } => {
                let notify = Box::new(move || {
                    // Nobody to tell once the driver is gone.
                    let _ = remote.run_internal(move |drv| drv.object_signalled(key));
                });
                match sys::object_wait::ObjectWait::register(handle, notify) {
                    Ok(w) => {
                        *wait = Some(w);
                        None
                    }
                    Err(e) => Some(Outcome::Failed(Error::from(e))),
                }
            }
        };
        if let Some(outcome) = failed {
            self.push_ready(key, outcome);
        }
        key
    }

    /// Takes operation `key` out of the table and withdraws its request
    /// (harmless for one that has completed).
    fn disarm_poll(&mut self, key: Key) -> Option<PollOp> {
        let op = self.remove_poll_op(key)?;
        let Some(state) = self.tables.polls.get_mut(op.handle.0) else {
            return Some(op);
        };
        let slot = &mut state.slots[op.dir as usize];
        if *slot == Some(key) {
            *slot = None;
            match &mut state.target {
                Target::Source { src, .. } => {
                    // A readiness request has no buffer: whether the backend
                    // let go at once does not matter (a late completion names
                    // an operation that is gone, and is skipped).
                    let _ = self.sys.cancel(*src, key.to_u64());
                }
                #[cfg(windows)]
                Target::Object { wait, .. } => *wait = None,
            }
        }
        Some(op)
    }

    /// Windows: the registered wait of operation `key` saw its object
    /// signalled (run on the loop thread through the driver's `Remote`).
    #[cfg(windows)]
    fn object_signalled(&mut self, key: Key) -> bool {
        self.complete_poll(key, Outcome::Remote)
    }

    /// One armed direction completed; returns whether a user callback ran.
    pub(crate) fn complete_poll(&mut self, key: Key, outcome: Outcome) -> bool {
        let result: Result<()> = match outcome {
            Outcome::Sys(c) => c.result.map(drop).map_err(Error::from),
            Outcome::Failed(e) => Err(e),
            _ => Ok(()),
        };
        let Some(op) = self.disarm_poll(key) else {
            return false;
        };
        let h = op.handle;
        let Some(state) = self.tables.polls.get(h.0) else {
            return false;
        };
        let readiness = match (&state.target, op.dir) {
            #[cfg(windows)]
            (Target::Object { .. }, _) => Readiness::SIGNALLED,
            (_, Dir::Read) => Readiness::READABLE,
            (_, Dir::Write) => Readiness::WRITABLE,
        };
        let result = result.map(|()| readiness);
        match op.role {
            Role::Once(cb) => {
                self.cancel_partner(h, op.dir, key);
                cb(self, h, result);
                true
            }
            Role::Partner(main) => match self.disarm_poll(main) {
                Some(PollOp {
                    role: Role::Once(cb), ..
                }) => {
                    cb(self, h, result);
                    true
                }
                _ => false,
            },
            Role::Watch => self.watch_fired(h, op.dir, result),
        }
    }

    /// Withdraws the partner of one-shot wait `main` (the other direction).
    fn cancel_partner(&mut self, h: PollHandle, dir: Dir, main: Key) {
        let Some(other) = self.tables.polls.get(h.0).and_then(|s| s.slots[dir.other() as usize]) else {
            return;
        };
        if matches!(self.ops.get(other), Some(Op::Poll(PollOp { role: Role::Partner(m), .. })) if *m == main) {
            self.disarm_poll(other);
        }
    }

    /// A direction of the watch of `h` completed: runs its callback (a panic
    /// is kept for `process_events`), then re-arms the direction if the
    /// watch goes on; an error ends the watch.
    fn watch_fired(&mut self, h: PollHandle, dir: Dir, result: Result<Readiness>) -> bool {
        let Some(watch) = self.tables.polls.get_mut(h.0).and_then(|s| s.watch.as_mut()) else {
            return false;
        };
        let Some(mut cb) = watch.callback.take() else {
            return false;
        };
        let epoch = watch.epoch;
        let failed = result.is_err();
        self.guarded(|drv| cb(drv, h, result));
        let Some(state) = self.tables.polls.get_mut(h.0) else {
            return true;
        };
        let free = state.slots[dir as usize].is_none();
        let Some(watch) = state.watch.as_mut().filter(|w| w.epoch == epoch) else {
            return true;
        };
        watch.callback = Some(cb);
        let extra = dir == Dir::Write && watch.interest.is_readable();
        if failed {
            self.end_watch(h);
        } else if free {
            self.arm_poll(h, dir, Role::Watch, extra);
        }
        true
    }

    /// Stops the watch of `h`; returns whether there was one.
    fn end_watch(&mut self, h: PollHandle) -> bool {
        let Some(state) = self.tables.polls.get_mut(h.0) else {
            return false;
        };
        if state.watch.take().is_none() {
            return false;
        }
        let slots = state.slots;
        for key in slots.into_iter().flatten() {
            if matches!(self.ops.get(key), Some(Op::Poll(PollOp { role: Role::Watch, .. }))) {
                self.disarm_poll(key);
            }
        }
        true
    }

    pub(crate) fn destroy_poll(&mut self, key: Key) {
        let Some(state) = self.tables.polls.get(key) else {
            return;
        };
        for op in state.slots.into_iter().flatten() {
            self.disarm_poll(op);
        }
        let Some(state) = self.tables.polls.remove(key) else {
            return;
        };
        match state.target {
            Target::Source {
                src,
                raw,
                #[cfg(unix)]
                identity,
            } => {
                self.subsystems.polls.remove(&raw);
                // Closed before its release (a program error): the number
                // may name another file now, whose registration must stay.
                #[cfg(unix)]
                if sys::unix::file_identity(raw as i32).ok() != Some(identity) {
                    self.sys.forget_source(src);
                    return;
                }
                self.sys.remove_source(src);
            }
            #[cfg(windows)]
            Target::Object { wait, handle } => {
                // The wait goes before the handle it waits on.
                drop(wait);
                drop(handle);
            }
        }
    }
}

impl Polls<'_> {
    /// Registers descriptor `fd`, which the program keeps owning; the driver
    /// never reads, writes or closes it. Release the handle (`release_ref`)
    /// **before** closing the descriptor.
    ///
    /// Errors: `AlreadyExists` if `fd` is registered with this driver
    /// already; `NotSupported` for a descriptor that cannot be waited on
    /// (a regular file or a directory: epoll refuses them, and io_uring
    /// refuses them too so that both backends agree); `InvalidHandle` for a
    /// descriptor that is not open.
    ///
    /// **Closing a registered descriptor** is a program error with defined
    /// results: nothing unsafe happens and the driver never hangs on it, but
    /// waits may stay silent. epoll drops a closed descriptor from its set,
    /// so a parked wait never fires (a new wait fails with `InvalidHandle`);
    /// io_uring keeps the file open while a wait is in flight (the wait
    /// fires if the file becomes ready), and a new wait fails with
    /// `InvalidHandle` (also a wait queued before the close that had not
    /// reached the kernel yet). Cancelling and releasing still work, and the
    /// release leaves alone a new file that got the same number (the file's
    /// identity is checked). But while the stale handle lives, registering
    /// that number is `AlreadyExists`, and its waits may report the new
    /// descriptor's readiness: release first, then close.
    #[cfg(unix)]
    pub fn register(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> Result<PollHandle> {
        self.register_raw(std::os::fd::AsRawFd::as_raw_fd(&fd))
    }

    /// [`register`](Polls::register) for a raw descriptor (a negative one
    /// is `InvalidHandle`).
    #[cfg(unix)]
    pub fn register_raw(&mut self, fd: std::os::fd::RawFd) -> Result<PollHandle> {
        if fd < 0 {
            return Err(Error::invalid_handle());
        }
        let raw = fd as u64;
        if self.drv.subsystems.polls.contains_key(&raw) {
            return Err(Error::new(Status::AlreadyExists));
        }
        if self.drv.sys.has_descriptor(fd) {
            // A descriptor the driver itself uses (as epoll_ctl's EEXIST
            // says on the other Linux backend).
            return Err(Error::new(Status::AlreadyExists));
        }
        let identity = sys::unix::file_identity(fd).map_err(Error::from)?;
        let src = self
            .drv
            .sys
            .add_source(&Raw(fd), sys::SourceKind::Fd)
            .map_err(|e| {
                let e = Error::from(e);
                match e.raw_os_error() {
                    // epoll_ctl's answer for files that are always ready.
                    Some(libc::EPERM) => e.with_status(Status::NotSupported),
                    // epoll_ctl's answer for a descriptor of this epoll set
                    // (the driver's own).
                    Some(libc::EEXIST) => e.with_status(Status::AlreadyExists),
                    _ => e,
                }
            })?;
        Ok(self.insert(Target::Source { src, raw, identity }, Some(raw)))
    }

    /// Registers socket `socket`, which the program keeps owning; the
    /// driver never reads, writes or closes it. Release the handle
    /// (`release_ref`) **before** closing the socket.
    ///
    /// The waits use `WSAAsyncSelect` on the driver's window (each
    /// notification checked with `WSAPoll`), which puts the socket in
    /// non-blocking mode for good and replaces any `WSAAsyncSelect` or
    /// `WSAEventSelect` association the program made on it: a socket that
    /// another library drives with its own select association cannot be
    /// registered usefully. Windows posts `FD_WRITE` for a full send buffer
    /// once a send has failed with `WSAEWOULDBLOCK`, so wait for
    /// writability after a send that would block, as WinSock expects.
    ///
    /// Errors: `AlreadyExists` if the socket is registered with this driver
    /// already (or is one of the driver's own); `InvalidHandle` if it is no
    /// socket. A registered socket that is closed ends no wait: release
    /// first, then close.
    #[cfg(windows)]
    pub fn register(&mut self, socket: std::os::windows::io::BorrowedSocket<'_>) -> Result<PollHandle> {
        self.register_raw(std::os::windows::io::AsRawSocket::as_raw_socket(&socket))
    }

    /// [`register`](Polls::register) for a raw socket.
    #[cfg(windows)]
    pub fn register_raw(&mut self, socket: std::os::windows::io::RawSocket) -> Result<PollHandle> {
        let raw = socket;
        if self.drv.subsystems.polls.contains_key(&raw) {
            return Err(Error::new(Status::AlreadyExists));
        }
        let src = self.drv.sys.add_foreign_socket(raw as usize).map_err(Error::from)?;
        Ok(self.insert(Target::Source { src, raw }, Some(raw)))
    }

    /// Registers a kernel object (event, semaphore, mutex, process, thread,
    /// waitable timer …) to wait until it is signalled, with
    /// [`wait_signalled`](Polls::wait_signalled) and
    /// [`watch_signalled`](Polls::watch_signalled). The driver waits on a
    /// duplicate of the handle, so closing the program's handle while it is
    /// registered is harmless (the object lives on until the handle is
    /// released). Waits go through the thread pool
    /// (`RegisterWaitForSingleObject`): there is no limit of 64 handles.
    /// A waiting callback observes the object as a wait function does: a
    /// signalled auto-reset event is reset by it, a mutex is acquired (by a
    /// thread-pool thread).
    ///
    /// `InvalidHandle` for null, `INVALID_HANDLE_VALUE` and values that
    /// name no handle (or an object that cannot be waited on). The same
    /// object may be registered more than once (each registration is a
    /// handle of its own).
    #[cfg(windows)]
    pub fn register_object(&mut self, handle: std::os::windows::io::BorrowedHandle<'_>) -> Result<PollHandle> {
        self.register_object_raw(std::os::windows::io::AsRawHandle::as_raw_handle(&handle))
    }

    /// [`register_object`](Polls::register_object) for a raw handle.
    #[cfg(windows)]
    pub fn register_object_raw(&mut self, handle: std::os::windows::io::RawHandle) -> Result<PollHandle> {
        let handle = sys::object_wait::duplicate(handle).map_err(Error::from)?;
        Ok(self.insert(Target::Object { wait: None, handle }, None))
    }

    fn insert(&mut self, target: Target, raw: Option<u64>) -> PollHandle {
        let key = self.drv.tables.polls.insert(PollState {
            target,
            slots: [None, None],
            watch: None,
            epochs: 0,
        });
        if let Some(raw) = raw {
            self.drv.subsystems.polls.insert(raw, key);
        }
        PollHandle(key)
    }

    /// Checks that `h` is live and of the right target (`object`: a Windows
    /// kernel object) and that the directions of `interest` are free.
    fn check(&mut self, h: PollHandle, interest: Interest, object: bool) -> Result<()> {
        let state = self.drv.tables.polls.get(h.0).ok_or_else(Error::invalid_handle)?;
        #[cfg(windows)]
        let is_object = matches!(state.target, Target::Object { .. });
        #[cfg(not(windows))]
        let is_object = false;
        if is_object != object || interest.0 == 0 {
            return Err(Error::new(Status::InvalidArgument));
        }
        let watched = state.watch.as_ref().map_or(Interest(0), |w| w.interest);
        let busy = |dir: Dir, wanted: bool| wanted && (state.slots[dir as usize].is_some() || (watched.0 >> dir as u8) & 1 != 0);
        if busy(Dir::Read, interest.is_readable()) || busy(Dir::Write, interest.is_writable()) {
            return Err(Error::new(Status::Busy));
        }
        Ok(())
    }

    /// Calls `callback` once, from `process_events`, when `h` is ready for
    /// `interest` (for [`Interest::BOTH`]: whichever direction comes first;
    /// the other is withdrawn). A descriptor that is ready already completes
    /// at once (from the next `process_events`). The wait counts as a waiter
    /// of the loop.
    ///
    /// Errors (the callback is dropped, not called): `InvalidHandle` for a
    /// stale handle, `Busy` if a direction of `interest` has a wait or a
    /// watch already, `InvalidArgument` for a Windows kernel object (use
    /// `wait_signalled`). A failure of the OS wait
    /// itself (the descriptor was closed) comes to the callback as `Err`.
    pub fn wait(
        &mut self,
        h: PollHandle,
        interest: Interest,
        callback: impl FnOnce(&mut Driver, PollHandle, Result<Readiness>) + 'static,
    ) -> Result<PollWait> {
        self.check(h, interest, false)?;
        let first = if interest.is_readable() { Dir::Read } else { Dir::Write };
        let main = self.drv.arm_poll(h, first, Role::Once(Box::new(callback)), false);
        if first == Dir::Read && interest.is_writable() {
            self.drv.arm_poll(h, Dir::Write, Role::Partner(main), true);
        }
        Ok(PollWait(main))
    }

    /// [`wait`](Polls::wait) for [`Interest::READABLE`].
    pub fn wait_readable(
        &mut self,
        h: PollHandle,
        callback: impl FnOnce(&mut Driver, PollHandle, Result<Readiness>) + 'static,
    ) -> Result<PollWait> {
        self.wait(h, Interest::READABLE, callback)
    }

    /// [`wait`](Polls::wait) for [`Interest::WRITABLE`].
    pub fn wait_writable(
        &mut self,
        h: PollHandle,
        callback: impl FnOnce(&mut Driver, PollHandle, Result<Readiness>) + 'static,
    ) -> Result<PollWait> {
        self.wait(h, Interest::WRITABLE, callback)
    }

    /// Windows: calls `callback` once, from `process_events`, when the
    /// kernel object of `h` (see [`register_object`](Polls::register_object))
    /// is signalled. Errors as for [`wait`](Polls::wait) (`InvalidArgument`
    /// for a socket handle).
    #[cfg(windows)]
    pub fn wait_signalled(
        &mut self,
        h: PollHandle,
        callback: impl FnOnce(&mut Driver, PollHandle, Result<Readiness>) + 'static,
    ) -> Result<PollWait> {
        self.check(h, Interest::READABLE, true)?;
        Ok(PollWait(self.drv.arm_poll(h, Dir::Read, Role::Once(Box::new(callback)), false)))
    }

    /// Withdraws a one-shot wait; its callback will not run, also if its
    /// completion is already queued. Returns whether it was still pending.
    pub fn cancel(&mut self, h: PollHandle, wait: PollWait) -> bool {
        match self.drv.ops.get(wait.0) {
            Some(Op::Poll(op)) if op.handle == h && matches!(op.role, Role::Once(_)) => {}
            _ => return false,
        }
        let dir = match self.drv.ops.get(wait.0) {
            Some(Op::Poll(op)) => op.dir,
            _ => unreachable!("checked above"),
        };
        self.drv.cancel_partner(h, dir, wait.0);
        self.drv.disarm_poll(wait.0).is_some()
    }

    /// Calls `callback` from `process_events` each time `h` is ready for a
    /// direction of `interest`, until [`unwatch`](Polls::unwatch) or the
    /// handle's release. Level-triggered: after the callback the direction
    /// is armed again, so a descriptor the callback leaves ready is
    /// reported again in the next loop turn (read or write until
    /// `WouldBlock` in the callback, as with `uv_poll_t`). Each callback
    /// reports one direction. An error (the descriptor was closed) is
    /// reported once and ends the watch. An active watch is a waiter of the
    /// loop. A panic in the callback comes out of `process_events`; the
    /// watch goes on.
    ///
    /// Errors as for [`wait`](Polls::wait).
    pub fn watch(
        &mut self,
        h: PollHandle,
        interest: Interest,
        callback: impl FnMut(&mut Driver, PollHandle, Result<Readiness>) + 'static,
    ) -> Result<()> {
        self.check(h, interest, false)?;
        self.start_watch(h, interest, Box::new(callback));
        Ok(())
    }

    /// Windows: calls `callback` from `process_events` each time the kernel
    /// object of `h` is signalled, until [`unwatch`](Polls::unwatch) or the
    /// handle's release. The next wait is registered after the callback
    /// ran, so an object that stays signalled (a manual-reset event, an
    /// exited process) is reported once per loop turn until it is reset.
    #[cfg(windows)]
    pub fn watch_signalled(
        &mut self,
        h: PollHandle,
        callback: impl FnMut(&mut Driver, PollHandle, Result<Readiness>) + 'static,
    ) -> Result<()> {
        self.check(h, Interest::READABLE, true)?;
        self.start_watch(h, Interest::READABLE, Box::new(callback));
        Ok(())
    }

    fn start_watch(&mut self, h: PollHandle, interest: Interest, callback: WatchFn) {
        let state = self.drv.tables.polls.get_mut(h.0).expect("checked");
        state.epochs = state.epochs.wrapping_add(1);
        state.watch = Some(Watch {
            interest,
            callback: Some(callback),
            epoch: state.epochs,
        });
        if interest.is_readable() {
            self.drv.arm_poll(h, Dir::Read, Role::Watch, false);
        }
        if interest.is_writable() {
            self.drv.arm_poll(h, Dir::Write, Role::Watch, interest.is_readable());
        }
    }

    /// Stops the watch of `h` (its callback is dropped and never runs
    /// again, also from inside itself). Returns whether there was one.
    pub fn unwatch(&mut self, h: PollHandle) -> bool {
        self.drv.end_watch(h)
    }

    /// Whether `h` has an active watch.
    pub fn is_watching(&mut self, h: PollHandle) -> bool {
        self.drv.tables.polls.get(h.0).is_some_and(|s| s.watch.is_some())
    }
}
