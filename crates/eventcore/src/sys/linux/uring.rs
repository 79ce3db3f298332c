//! The io_uring backend: completions straight from the kernel.
//!
//! # Design
//!
//! Every submitted request but a readiness wait becomes an *in-flight record*
//! in a table; the record's key (index and generation) is the `user_data` of
//! the SQE, so a CQE finds its record in O(1) and a stale CQE (of a record
//! already freed) finds nothing. A readiness wait (`Readable`, `Writable`: a
//! read into no buffer, a foreign descriptor's poll, the driver's own
//! signalfd, pidfd and inotify) has no record: its token sits in the source's
//! direction, and its `POLL_ADD`'s user data is the source's key tagged with
//! [`WAIT`] and the direction, so an idle connection costs its source only.
//! Such a user data repeats from one wait to the next on a source; a wait is
//! therefore always reaped before the next one starts (a cancel waits for its
//! CQE, and one whose CQE is late becomes an orphan whose user data no new
//! wait takes). A record holds the driver's token, its source, the request
//! itself (the driver's buffer pointers, or the boxed address of a connect)
//! and, for `recvmsg` / `sendmsg` / `accept`, a boxed [`MsgStorage`] with the
//! `msghdr`, `iovec` and `sockaddr_storage` the kernel reads and writes. All
//! of that stays at a stable address until the record's CQE has been reaped;
//! the storage boxes are recycled, so a warm loop does not allocate.
//!
//! A record has at most one SQE in the kernel at a time: the operation itself,
//! or a one-shot `POLL_ADD` while it waits to be re-issued. The poll is used
//! when the kernel gives a request back with `EAGAIN` — it does so for
//! descriptors opened `O_NONBLOCK` (every pipe the driver adopts), where it
//! honours the flag instead of waiting — and when an accept fails with
//! `EMFILE` without a connection to shed (see [`ReserveFd`]). A connect that
//! the kernel reports as still in progress waits the same way and is then
//! finished from `SO_ERROR`.
//!
//! `submit` only queues the SQE; `poll` hands the queue to the kernel and
//! waits for completions in the same `io_uring_enter` (with a timeout through
//! `IORING_ENTER_EXT_ARG`), so a loop turn costs one system call however many
//! operations it started. Where a synchronous call must not overtake a
//! queued request (a shutdown after a write), the driver calls `flush`.
//!
//! Cancelling is not immediate, as it is with epoll: the kernel may be
//! writing into the buffer. `cancel` submits `IORING_OP_ASYNC_CANCEL` for the
//! record and waits (at most [`CANCEL_WAIT`]) until the record's own CQE has
//! been reaped; whatever other CQEs arrive meanwhile are kept and delivered
//! by the next `poll`. The operation may have finished in the race: then the
//! bytes it moved are reported. Only if the CQE does not come in time does
//! `cancel` return `None`; the record then stays, and its late completion is
//! delivered under the driver's token, which frees the orphaned buffer.
//!
//! Two tunings (`DriverBuilder`, both off by default): a multishot accept
//! stays in the kernel across connections, its record in the listener's
//! reading direction, and connections that come while the driver has no
//! accept waiting wait in the record's backlog for the next one; with
//! `SQPOLL` a kernel thread takes the submission queue, and `flush` waits
//! until it has.
//!
//! The cross-thread [`Waker`] (an eventfd) always has a `POLL_ADD` in flight;
//! its CQE drains the counter and re-arms the poll.
//!
//! Positional file I/O (`ReadAt` / `WriteAt`) is implemented for completeness,
//! but the driver sends files to its worker pool on Unix, so on Linux it
//! never reaches this backend.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

use super::bufring::{self, BufRing};
use crate::slab::{Key, Table};
use crate::sys::unix::{connect_result, try_perform, ReserveFd};
use crate::sys::{AsSource, Completion, Extra, Request, SourceId, SourceKind, Waker};

/// Submission queue entries (the completion queue gets twice as many).
const ENTRIES: u32 = 256;

/// The `user_data` of the waker's poll; records use their table key, whose
/// generation never reaches `u32::MAX` in practice.
const WAKE: u64 = u64::MAX;

/// The `user_data` of `ASYNC_CANCEL` requests, whose own CQEs say nothing we
/// need: the cancelled record's CQE does.
const CANCEL: u64 = u64::MAX - 1;

/// How long `cancel` and `remove_source` wait for a cancelled record's CQE.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// The opcodes this backend issues; the kernel must know all of them.
const OPCODES: [u8; 11] = [
    opcode::Read::CODE,
    opcode::Write::CODE,
    opcode::Writev::CODE,
    opcode::Recv::CODE,
    opcode::Send::CODE,
    opcode::RecvMsg::CODE,
    opcode::SendMsg::CODE,
    opcode::Accept::CODE,
    opcode::Connect::CODE,
    opcode::PollAdd::CODE,
    opcode::AsyncCancel::CODE,
];

/// Whether io_uring works here: `io_uring_setup` is allowed (it can be
/// disabled by `/proc/sys/kernel/io_uring_disabled` or a seccomp filter), the
/// kernel has `IORING_ENTER_EXT_ARG` (5.11) and every opcode we use. Probed
/// once per process.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| probe().unwrap_or(false))
}

fn probe() -> io::Result<bool> {
    let ring: IoUring = IoUring::new(8)?;
    if !ring.params().is_feature_ext_arg() {
        return Ok(false);
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    Ok(OPCODES.iter().all(|&code| probe.is_supported(code)))
}

/// Whether the running kernel is at least `major.minor` (from `uname`),
/// for features the kernel announces no other way. Probed once.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    let &(have_major, have_minor) = VERSION.get_or_init(|| {
        let mut name = MaybeUninit::<libc::utsname>::zeroed();
        // SAFETY: uname fills the live, writable utsname.
        if unsafe { libc::uname(name.as_mut_ptr()) } != 0 {
            return (0, 0);
        }
        // SAFETY: uname succeeded, so the struct is initialised; `release`
        // is a NUL-terminated string within its array.
        let release = unsafe { std::ffi::CStr::from_ptr(name.assume_init_ref().release.as_ptr()) };
        let mut parts = release
            .to_str()
            .unwrap_or("")
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    });
    (have_major, have_minor) >= (major, minor)
}

/// The kernel-visible storage of a `recvmsg`, `sendmsg` or `accept`: boxed, so
/// it keeps its address while the record moves in its table.
struct MsgStorage {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    addr_len: libc::socklen_t,
    /// A multishot accept's results that came while the driver had no
    /// accept waiting (a new descriptor, or the negated error that ended
    /// the accept), oldest first.
    backlog: VecDeque<i32>,
    /// A multishot receive's data that no read has taken yet, oldest first.
    chunks: VecDeque<Chunk>,
    /// How a multishot receive ended, once no read took it: 0 for the end
    /// of the stream, else the negated error.
    end: Option<i32>,
}

/// Bytes `start..end` of provided buffer `bid`, received and not yet read.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    bid: u16,
    start: u32,
    end: u32,
}

impl MsgStorage {
    fn new() -> Box<MsgStorage> {
        Box::new(MsgStorage {
            // SAFETY: plain C structs, for which all zero bytes are a valid
            // value (null pointers, zero lengths).
            hdr: unsafe { MaybeUninit::zeroed().assume_init() },
            // SAFETY: as above.
            iov: unsafe { MaybeUninit::zeroed().assume_init() },
            // SAFETY: as above.
            addr: unsafe { MaybeUninit::zeroed().assume_init() },
            addr_len: 0,
            backlog: VecDeque::new(),
            chunks: VecDeque::new(),
            end: None,
        })
    }

    /// Closes the descriptors of accepted connections nobody took.
    fn drop_backlog(&mut self) {
        for fd in self.backlog.drain(..) {
            if fd >= 0 {
                close_accepted(fd);
            }
        }
    }
}

/// Where a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The request's own SQE is queued or in the kernel.
    Issued,
    /// A one-shot `POLL_ADD` is in flight; the request is re-issued (a
    /// connect is finished from `SO_ERROR`) when it fires.
    Waiting,
}

/// One request between `submit` and the reaping of its last CQE.
struct Record {
    token: u64,
    src: Key,
    fd: RawFd,
    kind: SourceKind,
    req: Request,
    stage: Stage,
    /// `ASYNC_CANCEL` was sent: the next CQE ends the record, whatever it says.
    cancelled: bool,
    /// A multishot request's state: [`MULTI`] (an accept) or [`RECV`] (a
    /// stream socket's receive), with [`NO_OP`] and [`ENDED`]; 0 for every
    /// other request.
    shot: u8,
    storage: Option<Box<MsgStorage>>,
}

/// [`Record::shot`]: the record is a multishot accept, which stays in the
/// kernel across connections; the next `submit` of an accept on its source
/// takes its next result instead of a new SQE.
const MULTI: u8 = 1;
/// [`Record::shot`]: the driver has no accept (or read) waiting; results go
/// to the backlog (and the record's token is stale).
const NO_OP: u8 = 2;
/// [`Record::shot`]: the kernel is done with the request (its last CQE came
/// without `IORING_CQE_F_MORE`); the record only holds a backlog.
const ENDED: u8 = 4;
/// [`Record::shot`]: the record is a stream socket's multishot receive into
/// the provided buffers, which stays in the kernel across reads; a read
/// (the driver's `Read`, or a `Readable` wait) on its source takes what the
/// backlog holds, or waits in the record (its token and request) for the
/// kernel's next data.
const RECV: u8 = 8;

struct Source {
    fd: RawFd,
    kind: SourceKind,
    /// Per direction: [`EMPTY`], the key of the request's record
    /// (`Key::to_u64`), or `WAIT | token`: a readiness wait, which has no
    /// record (its `POLL_ADD` names the source and direction, see
    /// [`wait_data`]).
    read: u64,
    write: u64,
}

impl Source {
    /// The direction `write` (else reading).
    fn slot(&mut self, write: bool) -> &mut u64 {
        if write {
            &mut self.write
        } else {
            &mut self.read
        }
    }
}

/// An empty direction of a [`Source`].
const EMPTY: u64 = u64::MAX;
/// In a [`Source`]'s direction: a readiness wait's token follows. In user
/// data: a readiness wait's CQE (with [`DIR`] and the source's key).
/// Tokens and keys never have it (their generations stay below 2^30).
const WAIT: u64 = 1 << 63;
/// In a readiness wait's user data: the writing direction.
const DIR: u64 = 1 << 62;

/// The record a direction holds, if it holds one.
fn record_in(slot: u64) -> Option<Key> {
    (slot != EMPTY && slot & WAIT == 0).then(|| Key::from_u64(slot, 0))
}

/// The token of the readiness wait a direction holds, if it holds one.
fn wait_in(slot: u64) -> Option<u64> {
    (slot != EMPTY && slot & WAIT != 0).then_some(slot & !WAIT)
}

/// The user data of a readiness wait on source `src`.
fn wait_data(src: Key, write: bool) -> u64 {
    WAIT | if write { DIR } else { 0 } | src.to_u64()
}

/// `struct io_uring_rsrc_update` of the kernel's ABI (`IORING_REGISTER_RING_FDS`).
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// `struct io_uring_getevents_arg` of the kernel's ABI (`IORING_ENTER_EXT_ARG`).
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `struct __kernel_timespec`.
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_SQ_WAKEUP: u32 = 1 << 1;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;

/// One `IORING_REGISTER_RING_FDS` / `IORING_UNREGISTER_RING_FDS` call on
/// `ring` for one entry; the kernel's return value.
fn ring_fds(ring: &IoUring, op: libc::c_uint, up: &mut RsrcUpdate) -> libc::c_long {
    use std::os::fd::AsRawFd;
    // SAFETY: `up` is a live, writable `io_uring_rsrc_update` (one entry, as
    // the count says) and `ring` is open; the kernel reads it and, when
    // registering with `offset = u32::MAX`, writes the index it picked back
    // into `up.offset`.
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            op,
            up as *mut RsrcUpdate,
            1u32,
        )
    }
}

/// Registers the ring's own descriptor with the kernel (Linux 5.18+) for
/// the calling thread; its index, or `None` where the kernel cannot.
fn register_ring_fd(ring: &IoUring) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut up = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: ring.as_raw_fd() as u64,
    };
    (ring_fds(ring, IORING_REGISTER_RING_FDS, &mut up) == 1).then_some(up.offset)
}

/// The io_uring backend.
pub(crate) struct Backend {
    ring: IoUring,
    /// The ring's descriptor registered with the kernel (its index): the
    /// waiting `io_uring_enter` names it by index, which spares the kernel a
    /// file-table look-up (and, in a threaded program, a reference count
    /// update) on every call. The driver is `!Send`, so the thread that
    /// registered it is the only one that enters.
    registered: Option<u32>,
    /// The ring defers completion work to `io_uring_enter` and flags pending
    /// work in the SQ ring (`DEFER_TASKRUN` with `TASKRUN_FLAG`): a poll
    /// that must not wait can then skip the system call when nothing is
    /// queued either way.
    flagged: bool,
    waker: Waker,
    sources: Table<Source>,
    records: Table<Record>,
    /// Completions reaped while `cancel` waited, for the next `poll`.
    stash: Vec<Completion>,
    /// Readiness waits whose cancel did not see their CQE in time: the
    /// user data the late CQE will carry, and the token it completes.
    orphans: Vec<(u64, u64)>,
    /// CQEs copied out of the ring before they are handled: user data,
    /// result, flags.
    cqes: Vec<(u64, i32, u32)>,
    /// Accepts are multishot (Linux 5.19+, when the tuning asks): one SQE
    /// accepts every connection until the listener goes.
    multishot_accept: bool,
    /// Stream sockets receive through one multishot receive each, into
    /// these provided buffers (Linux 6.0+, when the tuning asks).
    recv_ring: Option<BufRing>,
    /// A kernel thread takes the submission queue (`SQPOLL`): queued SQEs
    /// are issued without a system call while it is awake.
    sqpoll: bool,
    /// Recycled storage boxes: boxed because each moves into a record, where
    /// the kernel needs it at a fixed address.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<MsgStorage>>,
    reserve: ReserveFd,
}

impl Backend {
    /// A ring with the default tuning (tests).
    #[cfg(test)]
    pub fn new() -> io::Result<Backend> {
        Backend::with_tuning(&crate::sys::Tuning::default())
    }

    /// A ring of [`ENTRIES`] entries, with the waker's poll armed. Kernels
    /// from 6.1 get `SINGLE_ISSUER | DEFER_TASKRUN` (completion work runs
    /// only when we wait, on our thread: the driver is `!Send`, so only its
    /// thread ever submits); older ones a plain ring. `tuning` may ask for
    /// a submission-queue polling thread (`SQPOLL`, which excludes
    /// `DEFER_TASKRUN`) and multishot accepts.
    pub fn with_tuning(tuning: &crate::sys::Tuning) -> io::Result<Backend> {
        if !available() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let (ring, flagged) = match tuning.uring_sqpoll {
            Some(idle) => {
                let idle_ms = idle.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
                (IoUring::builder().setup_sqpoll(idle_ms).build(ENTRIES)?, false)
            }
            None => match IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .build(ENTRIES)
            {
                Ok(ring) => (ring, true),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (IoUring::new(ENTRIES)?, false),
                Err(e) => return Err(e),
            },
        };
        let registered = register_ring_fd(&ring);
        let recv_ring = match tuning.uring_recv_buffers {
            Some((count, size)) if kernel_at_least(6, 0) => Some(BufRing::new(&ring, count, size)?),
            _ => None,
        };
        let mut backend = Backend {
            ring,
            registered,
            flagged,
            waker: Waker::new()?,
            sources: Table::new(0),
            records: Table::new(0),
            stash: Vec::new(),
            orphans: Vec::new(),
            cqes: Vec::with_capacity(ENTRIES as usize * 2),
            spare: Vec::new(),
            multishot_accept: tuning.uring_multishot_accept && kernel_at_least(5, 19),
            recv_ring,
            sqpoll: tuning.uring_sqpoll.is_some(),
            reserve: ReserveFd::new(),
        };
        backend.arm_waker()?;
        Ok(backend)
    }

    /// Stores a record for `req` in its source's slot (`None`: no such
    /// source). Nothing is queued yet.
    fn add_record(&mut self, id: SourceId, token: u64, req: Request) -> Option<Key> {
        let src_key = Key::from_u64(id.0, 0);
        let src = self.sources.get_mut(src_key)?;
        let (fd, kind, reading) = (src.fd, src.kind, req.is_reading());
        let storage = match req {
            Request::RecvFrom { .. } | Request::SendTo { .. } | Request::Accept | Request::WriteVectored { .. } => {
                Some(self.spare.pop().unwrap_or_else(MsgStorage::new))
            }
            _ => None,
        };
        let shot = if matches!(req, Request::Accept) && self.multishot_accept {
            MULTI
        } else {
            0
        };
        let key = self.records.insert(Record {
            token,
            src: src_key,
            fd,
            kind,
            req,
            stage: Stage::Issued,
            cancelled: false,
            shot,
            storage,
        });
        let slot = src.slot(!reading);
        debug_assert!(*slot == EMPTY, "one request per slot");
        *slot = key.to_u64();
        Some(key)
    }

    // ---- internals ----

    /// Submits the queue and waits for one CQE at most `timeout`; a timeout
    /// or a signal is not an error.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            // A poll that must not wait: no timer in the kernel, and no system
            // call at all when nothing is queued and no completion work is
            // pending (the kernel flags it) — CQEs already posted are reaped
            // from the shared ring by the caller.
            let idle = self.flagged && self.ring.submission().is_empty() && !self.ring.submission().taskrun();
            if idle {
                return Ok(());
            }
            return match self.ring.submit_and_wait(0) {
                Ok(_) => Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let result = match self.registered {
            Some(index) => self.enter_registered(index, timeout),
            None => {
                let submitter = self.ring.submitter();
                match timeout {
                    Some(d) => {
                        let ts = Timespec::from(d);
                        submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
                    }
                    None => submitter.submit_with_args(1, &SubmitArgs::new()),
                }
            }
        };
        match result {
            Ok(_) => Ok(()),
            // ETIME: the wait timed out; EINTR: a signal; EBUSY: the
            // completion queue overflowed and must be reaped first.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits the queue and waits for one CQE (at most `timeout`) through
    /// the registered ring descriptor `index`.
    fn enter_registered(&mut self, index: u32, timeout: Option<Duration>) -> io::Result<usize> {
        let to_submit = self.ring.submission().len() as u32;
        let ts = timeout.map(|d| KernelTimespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        let arg = GeteventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: 0,
            ts: ts.as_ref().map_or(0, |t| t as *const KernelTimespec as u64),
        };
        let mut flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | IORING_ENTER_REGISTERED_RING;
        if self.sqpoll && self.sq_thread_asleep() {
            flags |= IORING_ENTER_SQ_WAKEUP;
        }
        // SAFETY: `index` is this thread's registration of this ring; `arg`
        // (and the timespec it may point to) is a live
        // `io_uring_getevents_arg` of the size passed, read by the kernel
        // during the call only; the queued SQEs were published by `push`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                index,
                to_submit,
                1u32,
                flags,
                &arg as *const GeteventsArg,
                std::mem::size_of::<GeteventsArg>(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    }

    /// Whether the submission-queue thread sleeps and must be woken for
    /// what is queued (`SQPOLL` only).
    fn sq_thread_asleep(&mut self) -> bool {
        // The fence orders our tail update before the flag's load, as the
        // kernel orders its flag update before its look at the tail (the
        // io-uring crate's `need_wakeup` explains the pairing).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.ring.submission().need_wakeup()
    }

    /// With `SQPOLL`: waits (at most [`CANCEL_WAIT`]) until the kernel's
    /// thread has taken every queued SQE — it issues each as it takes it —
    /// waking it if it sleeps.
    fn wait_taken(&mut self) {
        let deadline = Instant::now() + CANCEL_WAIT;
        while !self.ring.submission().is_empty() && Instant::now() < deadline {
            if self.sq_thread_asleep() {
                let _ = self.ring.submit();
            }
            std::thread::yield_now();
        }
    }

    /// Whether the ring's descriptor is registered (tests).
    #[cfg(test)]
    pub(crate) fn ring_fd_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// Queues one SQE, handing the queue to the kernel first if it is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in our entries addresses memory that stays
            // valid until the entry's CQE is reaped: the driver's buffers (kept
            // alive by the driver until then), the record's boxed storage or
            // boxed connect address (freed only when the record is), or
            // nothing at all (polls, cancels).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            if self.sqpoll {
                // The kernel's thread empties the queue by itself; if it
                // does not in time, the request fails rather than spin.
                self.wait_taken();
                // SAFETY: as above.
                if unsafe { self.ring.submission().push(entry) }.is_ok() {
                    return Ok(());
                }
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {
                    // The kernel could not take the queue now (EBUSY: the
                    // completion queue is full): make room by reaping.
                    let mut out = Vec::new();
                    self.reap(&mut out, None);
                    self.stash.append(&mut out);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn arm_waker(&mut self) -> io::Result<()> {
        let entry = opcode::PollAdd::new(Fd(self.waker.raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(WAKE);
        self.push(&entry)
    }

    /// The SQE that performs a record's request.
    fn entry(&mut self, key: Key) -> squeue::Entry {
        let rec = self.records.get_mut(key).expect("a live record");
        let fd = Fd(rec.fd);
        let clamp = |len: usize| len.min(u32::MAX as usize) as u32;
        let entry = match rec.req {
            Request::Read { .. } | Request::Readable if rec.shot & RECV != 0 => {
                opcode::RecvMulti::new(fd, bufring::GROUP).build()
            }
            Request::Read { ptr, len } => match rec.kind {
                SourceKind::Socket => opcode::Recv::new(fd, ptr, clamp(len)).build(),
                // Offset -1: the file position (pipes have none).
                SourceKind::Fd => opcode::Read::new(fd, ptr, clamp(len)).offset(u64::MAX).build(),
            },
            Request::Write { ptr, len } => match rec.kind {
                SourceKind::Socket => opcode::Send::new(fd, ptr, clamp(len)).flags(libc::MSG_NOSIGNAL).build(),
                SourceKind::Fd => opcode::Write::new(fd, ptr, clamp(len)).offset(u64::MAX).build(),
            },
            Request::WriteVectored { slices, count } => {
                // `IoSlice` has the layout of `iovec`; the op keeps the
                // array alive until the CQE.
                let iov = slices.cast::<libc::iovec>();
                let count = count.min(1024);
                match rec.kind {
                    SourceKind::Socket => {
                        let st = rec.storage.as_deref_mut().expect("storage for sendmsg");
                        st.hdr.msg_name = std::ptr::null_mut();
                        st.hdr.msg_namelen = 0;
                        st.hdr.msg_iov = iov.cast_mut();
                        st.hdr.msg_iovlen = count as _;
                        st.hdr.msg_control = std::ptr::null_mut();
                        st.hdr.msg_controllen = 0;
                        st.hdr.msg_flags = 0;
                        opcode::SendMsg::new(fd, &st.hdr)
                            .flags(libc::MSG_NOSIGNAL as u32)
                            .build()
                    }
                    SourceKind::Fd => opcode::Writev::new(fd, iov, count as u32).offset(u64::MAX).build(),
                }
            }
            Request::RecvFrom { ptr, len } => {
                let st = rec.storage.as_deref_mut().expect("storage for recvmsg");
                st.iov = libc::iovec {
                    iov_base: ptr.cast(),
                    iov_len: len,
                };
                st.hdr.msg_name = (&mut st.addr as *mut libc::sockaddr_storage).cast();
                st.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                st.hdr.msg_iov = &mut st.iov;
                st.hdr.msg_iovlen = 1;
                st.hdr.msg_control = std::ptr::null_mut();
                st.hdr.msg_controllen = 0;
                st.hdr.msg_flags = 0;
                opcode::RecvMsg::new(fd, &mut st.hdr).build()
            }
            Request::SendTo { ptr, len, to } => {
                let st = rec.storage.as_deref_mut().expect("storage for sendmsg");
                st.iov = libc::iovec {
                    iov_base: ptr.cast_mut().cast(),
                    iov_len: len,
                };
                // SAFETY: a non-null `to` points to the op's boxed address,
                // alive as long as the buffer.
                match unsafe { to.as_ref() } {
                    Some(addr) => {
                        st.hdr.msg_name = addr.as_ptr().cast_mut().cast();
                        st.hdr.msg_namelen = addr.len();
                    }
                    None => {
                        st.hdr.msg_name = std::ptr::null_mut();
                        st.hdr.msg_namelen = 0;
                    }
                }
                st.hdr.msg_iov = &mut st.iov;
                st.hdr.msg_iovlen = 1;
                st.hdr.msg_control = std::ptr::null_mut();
                st.hdr.msg_controllen = 0;
                st.hdr.msg_flags = 0;
                opcode::SendMsg::new(fd, &st.hdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
            // The kernel writes no address for a multishot accept (each
            // connection would overwrite the last): `accept_completion`
            // asks for it.
            Request::Accept if rec.shot & MULTI != 0 => opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                .build(),
            Request::Accept => {
                let st = rec.storage.as_deref_mut().expect("storage for accept");
                st.addr_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                opcode::Accept::new(
                    fd,
                    (&mut st.addr as *mut libc::sockaddr_storage).cast(),
                    &mut st.addr_len,
                )
                .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                .build()
            }
            Request::Connect(ref addr) => opcode::Connect::new(fd, addr.as_ptr().cast(), addr.len()).build(),
            Request::Readable => opcode::PollAdd::new(fd, libc::POLLIN as u32).build(),
            Request::Writable => opcode::PollAdd::new(fd, libc::POLLOUT as u32).build(),
            Request::ReadAt { ptr, len, offset } => opcode::Read::new(fd, ptr, clamp(len)).offset(offset).build(),
            Request::WriteAt { ptr, len, offset } => opcode::Write::new(fd, ptr, clamp(len)).offset(offset).build(),
            Request::DirectoryChanges { .. } => unreachable!("refused by submit"),
        };
        entry.user_data(key.to_u64())
    }

    /// A one-shot poll for the record's direction, with the record's key.
    fn wait_entry(&self, key: Key) -> squeue::Entry {
        let rec = self.records.get(key).expect("a live record");
        let events = if rec.req.is_reading() {
            libc::POLLIN
        } else {
            libc::POLLOUT
        };
        opcode::PollAdd::new(Fd(rec.fd), events as u32)
            .build()
            .user_data(key.to_u64())
    }

    /// Moves every CQE out of the ring and handles it. The completion of
    /// the CQE with user data `target` (if given) is returned instead of
    /// being appended.
    fn reap(&mut self, out: &mut Vec<Completion>, target: Option<u64>) -> Option<Completion> {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(
            self.ring
                .completion()
                .map(|c: cqueue::Entry| (c.user_data(), c.result(), c.flags())),
        );
        let mut found = None;
        for (data, res, flags) in cqes.drain(..) {
            if let Some((key, c)) = self.handle(data, res, flags) {
                if Some(key) == target {
                    found = Some(c);
                } else {
                    out.push(c);
                }
            }
        }
        self.cqes = cqes;
        found
    }

    /// Handles one CQE (its `flags` say whether the request stays in the
    /// kernel, and which provided buffer it filled): re-arms what must
    /// wait, finishes the rest; a completion comes with the user data of
    /// the CQE that finished it.
    fn handle(&mut self, data: u64, res: i32, flags: u32) -> Option<(u64, Completion)> {
        match data {
            WAKE => {
                self.waker.drain();
                if let Err(e) = self.arm_waker() {
                    // Only a dead ring fails here; the next enter reports it.
                    debug_assert!(false, "re-arming the waker failed: {e}");
                }
                return None;
            }
            CANCEL => return None,
            _ if data & WAIT != 0 => return self.waited(data, res).map(|c| (data, c)),
            _ => {}
        }
        self.handle_record(data, res, flags).map(|(key, c)| (key.to_u64(), c))
    }

    /// Handles the CQE of a record's request.
    fn handle_record(&mut self, data: u64, res: i32, flags: u32) -> Option<(Key, Completion)> {
        let key = Key::from_u64(data, 0);
        let more = cqueue::more(flags);
        let Some(rec) = self.records.get_mut(key) else {
            // A stale CQE: a buffer it names goes back to the ring.
            if let (Some(bid), Some(ring)) = (cqueue::buffer_select(flags), self.recv_ring.as_mut()) {
                ring.give_back(bid);
            }
            return None;
        };
        if rec.shot & MULTI != 0 {
            return self.multishot_accepted(key, res, more);
        }
        if rec.shot & RECV != 0 {
            return self.multishot_received(key, res, flags);
        }
        let result = match (rec.stage, rec.cancelled) {
            // Cancelled: whatever the CQE says ends the record.
            (_, true) => errno(res),
            (Stage::Waiting, false) if res < 0 => errno(res),
            (Stage::Waiting, false) => {
                if let Request::Connect(_) = rec.req {
                    match connect_result(rec.fd) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.wait(key),
                        Ok(_) => Ok(0),
                        Err(e) => Err(e),
                    }
                } else {
                    // Ready: issue the request again.
                    rec.stage = Stage::Issued;
                    let entry = self.entry(key);
                    return match self.push(&entry) {
                        Ok(()) => None,
                        Err(e) => Some((key, self.finish(key, Err(e)))),
                    };
                }
            }
            (Stage::Issued, false) => match -res {
                // A non-blocking descriptor: wait for readiness, then retry.
                libc::EAGAIN => return self.wait(key),
                libc::EINPROGRESS | libc::EALREADY if matches!(rec.req, Request::Connect(_)) => return self.wait(key),
                libc::EMFILE | libc::ENFILE if matches!(rec.req, Request::Accept) => {
                    // The kernel takes a descriptor before it looks at the
                    // backlog, so this also comes with nothing pending. Report
                    // it only if a connection had to be dropped; otherwise
                    // wait for the next connection, as the epoll backend does.
                    let fd = rec.fd;
                    if self.reserve.shed_connections(fd) > 0 {
                        errno(res)
                    } else {
                        return self.wait(key);
                    }
                }
                _ => errno(res),
            },
        };
        Some((key, self.finish(key, result)))
    }

    /// One CQE of a multishot accept (`more`: it goes on accepting). A new
    /// connection, or the error that ended the accept, goes to the driver's
    /// waiting accept, or into the backlog while it has none.
    fn multishot_accepted(&mut self, key: Key, res: i32, more: bool) -> Option<(Key, Completion)> {
        let rec = self.records.get_mut(key)?;
        if rec.cancelled {
            if res >= 0 && rec.stage == Stage::Issued {
                close_accepted(res);
            }
            return self.cancelled_cqe(key, more);
        }
        if rec.stage == Stage::Waiting {
            if res >= 0 {
                // The listener is readable again: accept again.
                return match self.reissue(key) {
                    Ok(()) => None,
                    Err(res) => self.deliver_accept(key, res, false),
                };
            }
        } else if !more && res < 0 {
            match -res {
                libc::EAGAIN => return self.wait(key),
                // As for a single accept (see `handle`): report it only if a
                // connection had to be dropped, else wait for the next one.
                libc::EMFILE | libc::ENFILE if self.reserve.shed_connections(rec.fd) == 0 => return self.wait(key),
                _ => {}
            }
        }
        self.deliver_accept(key, res, more)
    }

    /// Hands a multishot accept's result (a descriptor or a negated error)
    /// to the driver's waiting accept, or keeps it in the backlog. A record
    /// whose request ended (`!more`) goes once its backlog is empty.
    fn deliver_accept(&mut self, key: Key, res: i32, more: bool) -> Option<(Key, Completion)> {
        let rec = self.records.get_mut(key).expect("a live record");
        if !more {
            rec.shot |= ENDED;
        }
        if rec.shot & NO_OP != 0 {
            rec.storage
                .as_deref_mut()
                .expect("storage for accept")
                .backlog
                .push_back(res);
            return None;
        }
        let token = rec.token;
        Some((key, self.hand_over(key, token, res)))
    }

    /// Completes the accept `token`, which waits on multishot record `key`,
    /// with `res`; the record goes once its request has ended and its
    /// backlog is empty.
    fn hand_over(&mut self, key: Key, token: u64, res: i32) -> Completion {
        let rec = self.records.get_mut(key).expect("a live record");
        rec.shot |= NO_OP;
        let drained = rec.storage.as_ref().is_none_or(|st| st.backlog.is_empty());
        if rec.shot & ENDED != 0 && drained {
            self.retire(key);
        }
        accept_completion(token, res)
    }

    /// A new accept on a source whose multishot accept is still there
    /// (`None` if it has none): the backlog's oldest result at once, or
    /// the kernel's next one when it comes.
    fn accept_again(&mut self, id: SourceId, token: u64) -> Option<Option<Completion>> {
        let key = record_in(self.sources.get(Key::from_u64(id.0, 0))?.read)?;
        let rec = self.records.get_mut(key)?;
        if rec.shot & (MULTI | NO_OP) != MULTI | NO_OP || rec.cancelled {
            return None;
        }
        rec.token = token;
        rec.shot &= !NO_OP;
        let st = rec.storage.as_deref_mut().expect("storage for accept");
        let Some(res) = st.backlog.pop_front() else {
            // An ended request always leaves something in the backlog.
            debug_assert_eq!(rec.shot & ENDED, 0, "an ended accept without a backlog");
            return Some(None);
        };
        Some(Some(self.hand_over(key, token, res)))
    }

    /// A CQE of a cancelled multishot request: the last one (without
    /// `IORING_CQE_F_MORE`) ends the record.
    fn cancelled_cqe(&mut self, key: Key, more: bool) -> Option<(Key, Completion)> {
        (!more).then(|| {
            let done = self.finish(key, Err(io::Error::from_raw_os_error(libc::ECANCELED)));
            (key, done)
        })
    }

    /// Issues a waiting multishot record's request again (its poll
    /// fired); the negated error if its SQE could not be queued.
    fn reissue(&mut self, key: Key) -> Result<(), i32> {
        if let Some(rec) = self.records.get_mut(key) {
            rec.stage = Stage::Issued;
        }
        let entry = self.entry(key);
        self.push(&entry).map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// One CQE of a multishot receive (see [`RECV`]; `flags` name the
    /// buffer and whether the request goes on).
    fn multishot_received(&mut self, key: Key, res: i32, flags: u32) -> Option<(Key, Completion)> {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let rec = self.records.get_mut(key)?;
        if rec.cancelled {
            if let (Some(bid), Some(ring)) = (bid, self.recv_ring.as_mut()) {
                ring.give_back(bid);
            }
            return self.cancelled_cqe(key, more);
        }
        if rec.stage == Stage::Waiting {
            if res < 0 {
                return self.received(key, res, false, None);
            }
            // The socket is readable again: receive again.
            return match self.reissue(key) {
                Ok(()) => None,
                Err(res) => self.received(key, res, false, None),
            };
        }
        if !more && res == -libc::EAGAIN {
            return self.wait(key);
        }
        self.received(key, res, more, bid)
    }

    /// A multishot receive's result (`res` bytes in buffer `bid`, the end
    /// of the stream, or an error; `more`: the request goes on) goes into
    /// its backlog, and from there to the read that waits, if one does.
    fn received(&mut self, key: Key, res: i32, more: bool, bid: Option<u16>) -> Option<(Key, Completion)> {
        let rec = self.records.get_mut(key).expect("a live record");
        let st = rec.storage.as_deref_mut().expect("storage for a receive");
        match (res, bid) {
            (1.., Some(bid)) => st.chunks.push_back(Chunk {
                bid,
                start: 0,
                end: res as u32,
            }),
            // Out of provided buffers: the request ended with nothing to
            // tell; the next read starts another one (or reads by itself).
            (_, _) if res == -libc::ENOBUFS => {}
            (1.., None) => st.end = Some(-libc::EIO),
            _ => st.end = Some(res),
        }
        if !more {
            rec.shot |= ENDED;
        }
        if rec.shot & NO_OP != 0 {
            return None;
        }
        if st.chunks.is_empty() && st.end.is_none() {
            // A read waits and the request is over without a word for it.
            return self.fall_back(key);
        }
        Some((key, self.take_received(key)))
    }

    /// Completes the read that waits on multishot receive `key` from its
    /// backlog (which holds data or the request's end): a `Read` takes as
    /// many bytes as its buffer holds, a `Readable` takes nothing. The
    /// record goes once the request has ended and the backlog is empty.
    fn take_received(&mut self, key: Key) -> Completion {
        let rec = self.records.get_mut(key).expect("a live record");
        let ring = self.recv_ring.as_mut().expect("a multishot receive has its ring");
        rec.shot |= NO_OP;
        let st = rec.storage.as_deref_mut().expect("storage for a receive");
        let result = match rec.req {
            Request::Readable => Ok(0),
            Request::Read { ptr, len } if !st.chunks.is_empty() => Ok(copy_out(ring, &mut st.chunks, ptr, len)),
            _ => errno(st.end.take().unwrap_or(-libc::EIO)).map(|n| n as usize),
        };
        let token = rec.token;
        if rec.shot & ENDED != 0 && st.chunks.is_empty() && st.end.is_none() {
            self.retire(key);
        }
        Completion::new(token, result)
    }

    /// The read waiting on multishot receive `key`, which ended with
    /// nothing for it (the ring ran out of buffers), becomes a one-shot
    /// request of its own: a `recv` into the read's buffer, or a poll.
    fn fall_back(&mut self, key: Key) -> Option<(Key, Completion)> {
        let rec = self.records.get_mut(key).expect("a live record");
        rec.shot = 0;
        rec.stage = Stage::Issued;
        let entry = self.entry(key);
        match self.push(&entry) {
            Ok(()) => None,
            Err(e) => Some((key, self.finish(key, Err(e)))),
        }
    }

    /// A read (`Read`, or a `Readable` wait) on a stream socket while
    /// multishot receives are on: what the socket's multishot receive holds
    /// at once, else the read waits in it (a `Read` on a socket without one
    /// starts one). `None` where this path does not apply (not a socket, a
    /// `Readable` on a socket without a multishot receive): the caller
    /// submits the request as usual.
    fn receive(&mut self, id: SourceId, token: u64, req: &Request) -> Option<Option<Completion>> {
        let src = self.sources.get(Key::from_u64(id.0, 0))?;
        if src.kind != SourceKind::Socket {
            return None;
        }
        let req = match *req {
            Request::Read { ptr, len } => Request::Read { ptr, len },
            Request::Readable => Request::Readable,
            _ => return None,
        };
        let Some(key) = record_in(src.read) else {
            if matches!(req, Request::Readable) || src.read != EMPTY {
                return None;
            }
            return Some(self.start_receive(id, token, req));
        };
        let rec = self.records.get_mut(key)?;
        if rec.shot & (RECV | NO_OP) != RECV | NO_OP || rec.cancelled {
            return None;
        }
        let st = rec.storage.as_deref().expect("storage for a receive");
        let held = !st.chunks.is_empty() || st.end.is_some();
        if !held && rec.shot & ENDED != 0 {
            // Ended with nothing to tell (out of buffers): a read starts
            // afresh, a readiness wait polls as usual.
            self.retire(key);
            return match req {
                Request::Read { .. } => Some(self.start_receive(id, token, req)),
                _ => None,
            };
        }
        rec.token = token;
        rec.req = req;
        rec.shot &= !NO_OP;
        if held {
            return Some(Some(self.take_received(key)));
        }
        Some(None)
    }

    /// Starts a multishot receive on socket `id` with read `token` waiting
    /// in it; its completion if that failed at once.
    fn start_receive(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion> {
        let Some(key) = self.add_record(id, token, req) else {
            return Some(Completion::new(token, Err(io::Error::from_raw_os_error(libc::EBADF))));
        };
        let rec = self.records.get_mut(key).expect("a live record");
        rec.shot = RECV;
        rec.storage = Some(self.spare.pop().unwrap_or_else(MsgStorage::new));
        let entry = self.entry(key);
        if let Err(e) = self.push(&entry) {
            return Some(self.finish(key, Err(e)));
        }
        None
    }

    /// A non-blocking read on a socket with a multishot receive: the bytes
    /// its backlog holds, after the CQEs the kernel has posted (their data
    /// came before whatever the socket still holds). `None` if the socket
    /// has no multishot receive, or its backlog is empty on a ring that
    /// receives only inside this thread's `io_uring_enter` (`DEFER_TASKRUN`):
    /// then reading the socket directly cannot overtake the kernel.
    fn try_receive(&mut self, id: SourceId, token: u64, ptr: *mut u8, len: usize) -> Option<Completion> {
        let key = record_in(self.sources.get(Key::from_u64(id.0, 0))?.read)?;
        if self.records.get(key)?.shot & RECV == 0 {
            return None;
        }
        if !self.ring.completion().is_empty() {
            let mut out = Vec::new();
            self.reap(&mut out, None);
            self.stash.append(&mut out);
        }
        let would_block = || Completion::new(token, Err(io::ErrorKind::WouldBlock.into()));
        let rec = self.records.get_mut(key)?;
        if rec.shot & NO_OP == 0 {
            // A read waits in it: this one cannot go first.
            return Some(would_block());
        }
        let st = rec.storage.as_deref().expect("storage for a receive");
        if !st.chunks.is_empty() || st.end.is_some() {
            rec.token = token;
            rec.req = Request::Read { ptr, len };
            return Some(self.take_received(key));
        }
        if rec.shot & ENDED != 0 {
            self.retire(key);
            return None;
        }
        (!self.flagged).then(would_block)
    }

    /// Puts a record in the waiting stage with a poll for its direction.
    fn wait(&mut self, key: Key) -> Option<(Key, Completion)> {
        let entry = self.wait_entry(key);
        let rec = self.records.get_mut(key).expect("a live record");
        rec.stage = Stage::Waiting;
        let shot = rec.shot;
        match self.push(&entry) {
            Ok(()) => None,
            Err(e) if shot & MULTI != 0 => self.deliver_accept(key, -e.raw_os_error().unwrap_or(libc::EIO), false),
            Err(e) if shot & RECV != 0 => self.received(key, -e.raw_os_error().unwrap_or(libc::EIO), false, None),
            Err(e) => Some((key, self.finish(key, Err(e)))),
        }
    }

    /// Takes a record out of its table and its source's slot.
    fn take_record(&mut self, key: Key) -> Record {
        let rec = self.records.remove(key).expect("a live record");
        if let Some(src) = self.sources.get_mut(rec.src) {
            for slot in [&mut src.read, &mut src.write] {
                if *slot == key.to_u64() {
                    *slot = EMPTY;
                }
            }
        }
        rec
    }

    /// Keeps a record's storage for the next request that needs one (what a
    /// multishot accept's backlog still holds is closed, what a multishot
    /// receive's holds goes back to the ring unread).
    fn recycle(&mut self, storage: Option<Box<MsgStorage>>) {
        if let Some(mut st) = storage {
            st.drop_backlog();
            st.end = None;
            for chunk in st.chunks.drain(..) {
                if let Some(ring) = self.recv_ring.as_mut() {
                    ring.give_back(chunk.bid);
                }
            }
            self.spare.push(st);
        }
    }

    /// Frees a record without a completion (a multishot accept whose last
    /// result was taken, or one nobody waits for).
    fn retire(&mut self, key: Key) {
        let rec = self.take_record(key);
        self.recycle(rec.storage);
    }

    /// Frees a record and turns its CQE result into the driver's completion.
    fn finish(&mut self, key: Key, result: io::Result<i32>) -> Completion {
        let rec = self.take_record(key);
        let waited = rec.stage == Stage::Waiting;
        let mut extra = Extra::None;
        let result = result.map(|res| {
            if waited {
                // The poll fired but the request was not issued again.
                return 0;
            }
            match rec.req {
                Request::Readable | Request::Writable | Request::Connect(_) => 0,
                Request::Accept if rec.shot & MULTI != 0 => {
                    // Not reached: multishot results go through
                    // `deliver_accept`. The descriptor is not leaked.
                    close_accepted(res);
                    0
                }
                Request::Accept => {
                    let st = rec.storage.as_deref().expect("storage for accept");
                    // SAFETY: the kernel returned a new descriptor that nothing
                    // else owns.
                    let sock = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(res) };
                    // SAFETY: the kernel wrote `addr_len` bytes of address
                    // (at most the storage's size) into the storage.
                    let addr = unsafe { sock_addr(&st.addr, st.addr_len) };
                    extra = Extra::Accepted(sock, addr.into());
                    0
                }
                Request::RecvFrom { .. } => {
                    let st = rec.storage.as_deref().expect("storage for recvmsg");
                    // SAFETY: as for accept, `msg_namelen` bytes were written.
                    let addr = unsafe { sock_addr(&st.addr, st.hdr.msg_namelen) };
                    extra = Extra::From(addr.into());
                    res as usize
                }
                _ => res as usize,
            }
        });
        self.recycle(rec.storage);
        Completion {
            token: rec.token,
            result,
            extra,
        }
    }

    /// Cancels a record and waits for its CQE; `None` if it did not come
    /// within [`CANCEL_WAIT`] (the record then stays, marked cancelled, and
    /// its completion is delivered by a later `poll`).
    fn cancel_record(&mut self, key: Key) -> Option<Completion> {
        let rec = self.records.get_mut(key)?;
        if rec.shot & ENDED != 0 {
            // A multishot accept's backlog: nothing of it is in the kernel.
            let token = rec.token;
            self.retire(key);
            return Some(Completion::new(
                token,
                Err(io::Error::from_raw_os_error(libc::ECANCELED)),
            ));
        }
        if !rec.cancelled {
            rec.cancelled = true;
            let entry = opcode::AsyncCancel::new(key.to_u64()).build().user_data(CANCEL);
            if self.push(&entry).is_err() {
                return None;
            }
        }
        self.await_cqe(key.to_u64())
    }

    /// Waits (at most [`CANCEL_WAIT`]) for the CQE with user data `target`
    /// and returns its completion; whatever else is reaped meanwhile waits
    /// in the stash for the next `poll`.
    fn await_cqe(&mut self, target: u64) -> Option<Completion> {
        let deadline = Instant::now() + CANCEL_WAIT;
        let mut out = Vec::new();
        let found = loop {
            if let Some(c) = self.reap(&mut out, Some(target)) {
                break Some(c);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.enter(Some(left)).is_err() {
                break self.reap(&mut out, Some(target));
            }
        };
        self.stash.append(&mut out);
        found
    }

    /// Starts a readiness wait (`Readable` / `Writable`) without a record:
    /// the token goes into the source's direction and the `POLL_ADD`'s user
    /// data names the source and direction. `None` where it cannot (an
    /// unknown source, a key too large to tag, or a late CQE of an earlier
    /// wait with the same user data still due): the caller makes a record.
    fn start_wait(&mut self, id: SourceId, token: u64, write: bool) -> Option<Option<Completion>> {
        let src_key = Key::from_u64(id.0, 0);
        if src_key.to_u64() >= DIR || token >= DIR {
            return None;
        }
        let data = wait_data(src_key, write);
        if self.orphans.iter().any(|&(d, _)| d == data) {
            return None;
        }
        let src = self.sources.get_mut(src_key)?;
        let slot = src.slot(write);
        debug_assert!(*slot == EMPTY, "one request per slot");
        *slot = WAIT | token;
        let events = if write { libc::POLLOUT } else { libc::POLLIN };
        let entry = opcode::PollAdd::new(Fd(src.fd), events as u32).build().user_data(data);
        if let Err(e) = self.push(&entry) {
            if let Some(src) = self.sources.get_mut(src_key) {
                *src.slot(write) = EMPTY;
            }
            return Some(Some(Completion::new(token, Err(e))));
        }
        Some(None)
    }

    /// A readiness wait's CQE: the poll fired (or failed, or was
    /// cancelled). `None` for a wait nobody holds any more.
    fn waited(&mut self, data: u64, res: i32) -> Option<Completion> {
        let result = if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(0)
        };
        if let Some(i) = self.orphans.iter().position(|&(d, _)| d == data) {
            let (_, token) = self.orphans.swap_remove(i);
            return Some(Completion::new(token, result));
        }
        let src = self.sources.get_mut(Key::from_u64(data & !(WAIT | DIR), 0))?;
        let slot = src.slot(data & DIR != 0);
        let token = wait_in(*slot)?;
        *slot = EMPTY;
        Some(Completion::new(token, result))
    }

    /// Cancels the readiness wait `token` in direction `write` of source
    /// `src` and waits for its CQE; `None` if it did not come in time (the
    /// wait is then an orphan, completed by its late CQE).
    fn cancel_wait(&mut self, src: Key, write: bool, token: u64) -> Option<Completion> {
        let data = wait_data(src, write);
        let entry = opcode::AsyncCancel::new(data).build().user_data(CANCEL);
        if self.push(&entry).is_ok() {
            if let Some(c) = self.await_cqe(data) {
                return Some(c);
            }
        }
        // Still in the kernel: its CQE must not complete a later wait.
        if let Some(s) = self.sources.get_mut(src) {
            *s.slot(write) = EMPTY;
        }
        self.orphans.push((data, token));
        None
    }

    /// Cancels every readiness wait of source `src` (and waits for them).
    fn cancel_waits(&mut self, src: Key) {
        let Some(s) = self.sources.get(src) else {
            return;
        };
        let waits = [(wait_in(s.read), false), (wait_in(s.write), true)];
        for (token, write) in waits {
            if let Some(token) = token {
                let _ = self.cancel_wait(src, write, token);
            }
        }
    }
}

impl crate::sys::Backend for Backend {
    fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Registers a descriptor. Regular files and directories are refused
    /// with `EPERM`, as epoll refuses them: they cannot be waited on, and a
    /// pipe handle must behave the same on both Linux backends.
    fn add_source(&mut self, source: &impl AsSource, kind: SourceKind) -> io::Result<SourceId> {
        let fd = source.raw_source();
        if kind == SourceKind::Fd {
            let mut st = MaybeUninit::<libc::stat>::zeroed();
            // SAFETY: fstat fills the live, writable stat buffer.
            crate::sys::unix::syscall!(fstat(fd, st.as_mut_ptr()))?;
            // SAFETY: fstat succeeded, so the buffer is initialised.
            let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
            if mode == libc::S_IFREG || mode == libc::S_IFDIR {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
        }
        let key = self.sources.insert(Source {
            fd,
            kind,
            read: EMPTY,
            write: EMPTY,
        });
        Ok(SourceId(key.to_u64()))
    }

    /// A linear look over the sources: only a program's registration of a
    /// descriptor of its own asks (see the trait).
    fn has_descriptor(&self, fd: RawFd) -> bool {
        self.sources.values().any(|s| s.fd == fd)
    }

    /// The signalfd's readiness is that of the thread that polls it: with
    /// `SQPOLL` the kernel's thread, which never has the driver thread's
    /// signals pending.
    fn thread_signals(&self) -> bool {
        !self.sqpoll
    }

    /// Forgets a source. The driver cancels its requests first, but io_uring
    /// holds its own reference to the file, so closing the descriptor would
    /// not end a request still in flight: anything left is cancelled here,
    /// and waited for like in [`cancel`](crate::sys::Backend::cancel).
    fn remove_source(&mut self, id: SourceId) {
        let src_key = Key::from_u64(id.0, 0);
        // Waits first: their CQEs find the source by its key.
        self.cancel_waits(src_key);
        let Some(src) = self.sources.remove(src_key) else {
            return;
        };
        for key in [src.read, src.write].into_iter().filter_map(record_in) {
            // A late completion (after the wait) reaches the driver under its
            // token and is ignored there, as its operation is gone.
            let _ = self.cancel_record(key);
        }
    }

    fn submit(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion> {
        if matches!(req, Request::DirectoryChanges { .. }) {
            return Some(Completion::new(token, Err(io::ErrorKind::Unsupported.into())));
        }
        if matches!(req, Request::Write { .. } | Request::SendTo { .. }) && self.ring.submission().is_empty() {
            // A write that would be the only request of the next
            // `io_uring_enter` is tried at once, as epoll tries it: a socket
            // or pipe usually has room, and then one `send` replaces an SQE,
            // a completion and the enter that collects it (a ping-pong or a
            // pump: one write per turn). Writes that join other queued
            // requests go to the ring, where one enter carries them all
            // (many connections). Nothing can be overtaken: a source has at
            // most one writing request, and this is it. Only a full buffer
            // (EAGAIN) goes to the ring.
            // (An unknown source falls through to the EBADF below.)
            if let Some(src) = self.sources.get(Key::from_u64(id.0, 0)) {
                let mut extra = Extra::None;
                if let Some(result) = try_perform(src.fd, src.kind, &req, &mut self.reserve, &mut extra) {
                    return Some(Completion { token, result, extra });
                }
            }
        }
        if self.recv_ring.is_some() && matches!(req, Request::Read { .. } | Request::Readable) {
            if let Some(done) = self.receive(id, token, &req) {
                return done;
            }
        }
        if matches!(req, Request::Accept) {
            if let Some(done) = self.accept_again(id, token) {
                return done;
            }
        }
        if matches!(req, Request::Readable | Request::Writable) {
            if let Some(done) = self.start_wait(id, token, matches!(req, Request::Writable)) {
                return done;
            }
        }
        let Some(key) = self.add_record(id, token, req) else {
            return Some(Completion::new(token, Err(io::Error::from_raw_os_error(libc::EBADF))));
        };
        let connect = matches!(self.records.get(key).map(|r| &r.req), Some(Request::Connect(_)));
        let entry = self.entry(key);
        if let Err(e) = self.push(&entry) {
            return Some(self.finish(key, Err(e)));
        }
        if connect {
            // Start the connect now, as epoll does: the socket's local address
            // (bound by the connect) is then there for the caller at once.
            // Connects are rare, so the extra system call does not matter.
            self.flush();
        }
        None
    }

    /// Submits the queued SQEs without waiting (with `SQPOLL`: waits until
    /// the kernel's thread has taken them). The kernel issues each one as
    /// it takes it, so a send on a socket with room has sent its bytes
    /// when this returns. A failure is left for the next `poll` to report.
    fn flush(&mut self) {
        if self.ring.submission().is_empty() {
            return;
        }
        if self.sqpoll {
            self.wait_taken();
            return;
        }
        if let Err(e) = self.ring.submit() {
            if e.raw_os_error() == Some(libc::EBUSY) {
                // The completion queue is full: reap into the stash, retry once.
                let mut out = Vec::new();
                self.reap(&mut out, None);
                self.stash.append(&mut out);
                let _ = self.ring.submit();
            }
        }
    }

    /// One synchronous, non-blocking try (the descriptors are non-blocking):
    /// nothing to submit to the ring, and nothing ever parks.
    fn attempt(&mut self, id: SourceId, token: u64, req: Request) -> Completion {
        if let (Some(_), Request::Read { ptr, len }) = (&self.recv_ring, &req) {
            if let Some(done) = self.try_receive(id, token, *ptr, *len) {
                return done;
            }
        }
        let Some(src) = self.sources.get(Key::from_u64(id.0, 0)) else {
            return Completion::new(token, Err(io::Error::from_raw_os_error(libc::EBADF)));
        };
        let mut extra = Extra::None;
        let result = try_perform(src.fd, src.kind, &req, &mut self.reserve, &mut extra)
            .unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()));
        Completion { token, result, extra }
    }

    /// Withdraws the request `token` on `id`: `Some(bytes it had moved)` once
    /// its CQE has been reaped, `None` if that did not happen within
    /// [`CANCEL_WAIT`] (the completion then comes from `poll`).
    fn cancel(&mut self, id: SourceId, token: u64) -> Option<usize> {
        let src_key = Key::from_u64(id.0, 0);
        if let Some(src) = self.sources.get(src_key) {
            for (slot, write) in [(src.read, false), (src.write, true)] {
                if wait_in(slot) == Some(token) {
                    return self.cancel_wait(src_key, write, token).map(|c| c.result.unwrap_or(0));
                }
            }
        }
        let record = self.sources.get(src_key).and_then(|src| {
            [src.read, src.write].into_iter().filter_map(record_in).find(|&k| {
                self.records
                    .get(k)
                    .is_some_and(|r| r.token == token && r.shot & NO_OP == 0)
            })
        });
        if let Some(rec) = record.and_then(|key| self.records.get_mut(key)) {
            if rec.shot & RECV != 0 {
                // A read waiting on a multishot receive: the kernel never
                // saw its buffer, so it just leaves; the receive goes on.
                rec.shot |= NO_OP;
                return Some(0);
            }
        }
        let Some(key) = record else {
            // Already reaped: its completion may still wait in the stash (a
            // wait for another cancel took it); take it back so the caller
            // hears what it moved and it is never delivered.
            return Some(match self.stash.iter().position(|c| c.token == token) {
                Some(i) => self.stash.remove(i).result.unwrap_or(0),
                None => 0,
            });
        };
        let result = self.cancel_record(key)?;
        Some(result.result.unwrap_or(0))
    }

    /// Submits what is queued, waits at most `timeout` for a completion and
    /// reaps every CQE. The `requests` look-up is for readiness backends:
    /// records keep their own request.
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        _requests: &mut dyn FnMut(u64) -> Option<Request>,
    ) -> io::Result<bool> {
        let timeout = if self.stash.is_empty() {
            timeout
        } else {
            out.append(&mut self.stash);
            Some(Duration::ZERO)
        };
        self.enter(timeout)?;
        self.reap(out, None);
        Ok(false)
    }
}

impl Drop for Backend {
    /// Cancels whatever is still in flight and waits for it, so that the
    /// kernel is done with every buffer before the driver frees them (the
    /// driver drops its backend before its operations).
    fn drop(&mut self) {
        for src in self.sources.keys() {
            self.cancel_waits(src);
        }
        for key in self.records.keys() {
            let _ = self.cancel_record(key);
        }
        if let Some(ring) = &self.recv_ring {
            ring.unregister(&self.ring);
        }
        if let Some(index) = self.registered.take() {
            unregister_ring_fd(&self.ring, index);
        }
    }
}

/// Gives back this thread's registration `index` of a ring: a registration
/// holds a reference to the ring (it would outlive the driver until the
/// thread ends) and takes one of the thread's 16 registration slots.
fn unregister_ring_fd(ring: &IoUring, index: u32) {
    let mut up = RsrcUpdate {
        offset: index,
        resv: 0,
        data: 0,
    };
    let _ = ring_fds(ring, IORING_UNREGISTER_RING_FDS, &mut up);
}

/// Closes a descriptor the kernel accepted that nobody will take.
fn close_accepted(fd: i32) {
    // SAFETY: the kernel handed us this new descriptor, which nothing else
    // owns; dropping the socket closes it.
    drop(unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) });
}

/// The driver's completion of a multishot accept's result: the new
/// connection with its peer's address (asked with `getpeername`: the
/// kernel writes none for a multishot accept), or the error. A peer that
/// reset the connection before its address was asked is `ECONNABORTED`,
/// as `accept4` reports a connection reset before it was taken.
fn accept_completion(token: u64, res: i32) -> Completion {
    if res < 0 {
        return Completion::new(token, Err(io::Error::from_raw_os_error(-res)));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let sock = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(res) };
    match sock.peer_addr() {
        Ok(addr) => Completion {
            token,
            result: Ok(0),
            extra: Extra::Accepted(sock, addr.into()),
        },
        Err(_) => Completion::new(token, Err(io::Error::from_raw_os_error(libc::ECONNABORTED))),
    }
}

/// Moves up to `len` bytes from the front of `chunks` into `ptr[..len]`,
/// giving each buffer it empties back to `ring`; the number of bytes.
fn copy_out(ring: &mut BufRing, chunks: &mut VecDeque<Chunk>, ptr: *mut u8, len: usize) -> usize {
    let mut n = 0;
    while let Some(chunk) = chunks.front_mut() {
        if n == len {
            break;
        }
        let bytes = ring.bytes(chunk.bid, chunk.start, chunk.end);
        let take = bytes.len().min(len - n);
        // SAFETY: `ptr[..len]` is the read's buffer, which the driver keeps
        // alive and lends to no one else while its request is with the
        // backend; `n + take <= len`, and a provided buffer never overlaps it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(n), take) };
        n += take;
        chunk.start += take as u32;
        if chunk.start == chunk.end {
            let bid = chunk.bid;
            chunks.pop_front();
            ring.give_back(bid);
        }
    }
    n
}

/// A CQE result as the byte count / value or the OS error.
fn errno(res: i32) -> io::Result<i32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res)
    }
}

/// The address the kernel wrote into `addr`, as a `SockAddr`.
///
/// # Safety
///
/// `len` bytes of `addr`, at most its size, must hold a valid socket address.
unsafe fn sock_addr(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> socket2::SockAddr {
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_storage` is one of this platform's `sockaddr_*` types,
    // the one `SockAddrStorage` wraps.
    unsafe { *storage.view_as::<libc::sockaddr_storage>() = *addr };
    // SAFETY: the caller promises `len` valid bytes of address, now copied.
    unsafe { socket2::SockAddr::new(storage, len) }
}

#[cfg(test)]
mod tests {
    //! What is particular to io_uring: requests the kernel gives back with
    //! `EAGAIN`, cancelling a request the kernel holds, and removing a
    //! source with a request in flight.

    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use super::{Backend, Stage};
    use crate::sys::Backend as _;
    use crate::sys::{Completion, Request, SourceId, SourceKind};

    /// A backend, or `None` (with a notice) where io_uring is missing.
    fn backend(test: &str) -> Option<Backend> {
        tuned(test, &crate::sys::Tuning::default())
    }

    /// A backend with `tuning`, or `None` as for [`backend`].
    fn tuned(test: &str, tuning: &crate::sys::Tuning) -> Option<Backend> {
        if !super::available() {
            eprintln!("SKIPPED {test}: io_uring is not available on this kernel");
            return None;
        }
        Some(Backend::with_tuning(tuning).expect("io_uring backend"))
    }

    /// A backend with multishot accepts.
    fn multishot(test: &str) -> Option<Backend> {
        let tuning = crate::sys::Tuning {
            uring_multishot_accept: true,
            ..Default::default()
        };
        tuned(test, &tuning)
    }

    fn poll(b: &mut Backend, timeout: Duration) -> Vec<Completion> {
        let mut out = Vec::new();
        b.poll(Some(timeout), &mut out, &mut |_| None).expect("poll");
        out
    }

    /// A connected, non-blocking socket pair.
    fn socket_pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// The ring's descriptor is registered for the waiting enter, and a
    /// dropped backend gives its registration back: a thread has 16 slots,
    /// so forty backends one after the other all get one, and each still
    /// waits with a timeout and completes a read.
    #[test]
    fn the_ring_descriptor_is_registered_and_given_back() {
        let Some(first) = backend("the_ring_descriptor_is_registered_and_given_back") else {
            return;
        };
        if !first.ring_fd_registered() {
            eprintln!("SKIPPED: this kernel cannot register a ring descriptor (before 5.18)");
            return;
        }
        drop(first);
        for i in 0..40 {
            let mut b = Backend::new().expect("io_uring backend");
            assert!(b.ring_fd_registered(), "backend {i} got no registration: one leaked");
            let (a, mut peer) = socket_pair();
            let id = b.add_source(&a, SourceKind::Socket).unwrap();
            let mut buf = [0u8; 8];
            let req = Request::Read {
                ptr: buf.as_mut_ptr(),
                len: buf.len(),
            };
            assert!(b.submit(id, 1, req).is_none());
            let started = Instant::now();
            assert!(
                poll(&mut b, Duration::from_millis(20)).is_empty(),
                "nothing to read yet"
            );
            assert!(
                started.elapsed() >= Duration::from_millis(15),
                "the wait's timeout held"
            );
            peer.write_all(b"ping").unwrap();
            let done = poll(&mut b, Duration::from_secs(5));
            assert_eq!(done.len(), 1);
            assert_eq!(done[0].result.as_ref().ok(), Some(&4));
            assert_eq!(&buf[..4], b"ping");
            b.remove_source(id);
        }
    }

    /// A read on an empty `O_NONBLOCK` pipe never surfaces `EAGAIN`: it
    /// completes with the data once some comes. (Whether the kernel gives
    /// `EAGAIN` back or waits itself depends on its version; the next test
    /// makes sure the backend's own wait works.)
    #[test]
    fn read_on_empty_nonblocking_pipe_waits_for_data() {
        let Some(mut b) = backend("read_on_empty_nonblocking_pipe_waits_for_data") else {
            return;
        };
        let (r, w) = crate::sys::unix::pipe().expect("pipe");
        let id = b.add_source(&r, SourceKind::Fd).unwrap();
        let mut buf = vec![0u8; 16];
        let req = Request::Read {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        };
        assert!(b.submit(id, 7, req).is_none(), "a submit completes from poll");
        assert!(
            poll(&mut b, Duration::from_millis(50)).is_empty(),
            "nothing to read yet"
        );
        std::fs::File::from(w).write_all(b"hi").unwrap();
        let got = poll_until_some(&mut b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, 7);
        assert_eq!(got[0].result.as_ref().ok(), Some(&2));
        assert_eq!(&buf[..2], b"hi");
        assert_eq!(b.records.len(), 0);
        b.remove_source(id);
    }

    /// A CQE with `-EAGAIN` (what kernels that honour `O_NONBLOCK` give
    /// back) puts the record on a one-shot poll; when the pipe becomes
    /// readable the read is issued again and completes with the data. The
    /// first CQE is handed to the backend directly, as a kernel that does not
    /// produce it cannot be made to.
    #[test]
    fn eagain_waits_for_readiness_and_reissues() {
        let Some(mut b) = backend("eagain_waits_for_readiness_and_reissues") else {
            return;
        };
        let (r, w) = crate::sys::unix::pipe().expect("pipe");
        let id = b.add_source(&r, SourceKind::Fd).unwrap();
        let mut buf = vec![0u8; 16];
        let req = Request::Read {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        };
        let key = b.add_record(id, 8, req).expect("a live source");
        assert!(
            b.handle(key.to_u64(), -libc::EAGAIN, 0).is_none(),
            "EAGAIN is not reported"
        );
        assert_eq!(b.records.get(key).unwrap().stage, Stage::Waiting);
        assert!(
            poll(&mut b, Duration::from_millis(50)).is_empty(),
            "still nothing to read"
        );

        std::fs::File::from(w).write_all(b"yes").unwrap();
        let got = poll_until_some(&mut b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, 8);
        assert_eq!(got[0].result.as_ref().ok(), Some(&3));
        assert_eq!(&buf[..3], b"yes");
        assert_eq!(b.records.len(), 0);
        b.remove_source(id);
    }

    /// Polls until something completes (at most 5 s).
    fn poll_until_some(b: &mut Backend) -> Vec<Completion> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            got = poll(b, Duration::from_millis(100));
        }
        got
    }

    /// A socket pair whose first end has a 16-byte recv submitted with
    /// `token` (after the peer sent `first`): the ends, the source and the
    /// buffer, which must outlive the request.
    fn pending_recv(b: &mut Backend, token: u64, first: &[u8]) -> (UnixStream, UnixStream, SourceId, Vec<u8>) {
        let (ours, mut peer) = socket_pair();
        if !first.is_empty() {
            peer.write_all(first).unwrap();
        }
        let id = b.add_source(&ours, SourceKind::Socket).unwrap();
        let mut buf = vec![0u8; 16];
        let req = Request::Read {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        };
        assert!(b.submit(id, token, req).is_none());
        (ours, peer, id, buf)
    }

    /// Cancelling a recv the kernel holds waits for its aborted completion:
    /// `Some(0)` at once, the record is gone, and nothing is delivered later
    /// — the data sent afterwards is still in the socket.
    #[test]
    fn cancel_of_pending_recv_gives_the_buffer_back_at_once() {
        let Some(mut b) = backend("cancel_of_pending_recv_gives_the_buffer_back_at_once") else {
            return;
        };
        let (ours, mut peer, id, _buf) = pending_recv(&mut b, 9, b"");
        assert!(poll(&mut b, Duration::ZERO).is_empty());
        let start = Instant::now();
        assert_eq!(b.cancel(id, 9), Some(0));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "cancel took {:?}",
            start.elapsed()
        );
        assert_eq!(b.records.len(), 0, "the record is freed");

        peer.write_all(b"later").unwrap();
        assert!(poll(&mut b, Duration::from_millis(50)).is_empty(), "no late completion");
        let mut got = [0u8; 8];
        assert_eq!((&ours).read(&mut got).unwrap(), 5, "the cancelled recv took nothing");
        b.remove_source(id);
    }

    /// A recv that finished in the kernel before the cancel reached it (its
    /// SQE and the cancel went in together) reports its bytes from `cancel`,
    /// and its completion is never delivered.
    #[test]
    fn cancel_after_the_recv_completed_reports_the_bytes() {
        let Some(mut b) = backend("cancel_after_the_recv_completed_reports_the_bytes") else {
            return;
        };
        let (_ours, _peer, id, buf) = pending_recv(&mut b, 11, b"early");
        assert_eq!(b.cancel(id, 11), Some(5), "the recv had moved 5 bytes");
        assert_eq!(&buf[..5], b"early");
        assert!(poll(&mut b, Duration::from_millis(20)).is_empty(), "never delivered");
        b.remove_source(id);
    }

    /// Removing a source whose recv is in flight cancels it (io_uring holds
    /// its own file reference, so closing the descriptor would not): no
    /// record is left, nothing is delivered, and the buffer may be freed.
    #[test]
    fn recv_in_flight_when_the_source_is_removed() {
        let Some(mut b) = backend("recv_in_flight_when_the_source_is_removed") else {
            return;
        };
        let (ours, mut peer, id, buf) = pending_recv(&mut b, 13, b"");
        assert!(poll(&mut b, Duration::ZERO).is_empty());
        b.remove_source(id);
        assert_eq!(b.records.len(), 0, "nothing left in flight");
        drop(ours);
        drop(buf);
        let _ = peer.write_all(b"gone");
        assert!(poll(&mut b, Duration::from_millis(50)).is_empty());
        // A request on the removed source fails at once.
        let c = b.submit(id, 14, Request::Readable).expect("an immediate failure");
        assert_eq!(c.result.unwrap_err().raw_os_error(), Some(libc::EBADF));
    }

    /// The waker interrupts a wait without limit, and again after re-arming.
    #[test]
    fn waker_interrupts_poll() {
        let Some(mut b) = backend("waker_interrupts_poll") else {
            return;
        };
        for _ in 0..2 {
            let waker = b.waker();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                waker.wake();
            });
            let mut out = Vec::new();
            b.poll(None, &mut out, &mut |_| None).expect("poll");
            assert!(out.is_empty());
            t.join().unwrap();
        }
    }

    /// A listening socket (non-blocking, as the driver makes it) on a free
    /// loopback port, registered with `b`.
    fn listener(b: &mut Backend) -> (std::net::TcpListener, SourceId) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).unwrap();
        let id = b.add_source(&l, SourceKind::Socket).unwrap();
        (l, id)
    }

    /// The connection of an accept's completion, checked against the client
    /// whose local address it must name.
    fn accepted_from(c: Completion, client: &std::net::TcpStream) -> socket2::Socket {
        assert_eq!(c.result.as_ref().ok(), Some(&0), "{:?}", c.result);
        let super::Extra::Accepted(sock, addr) = c.extra else {
            panic!("no connection in {:?}", c.extra);
        };
        let crate::sys::PeerAddr::Ip(peer) = addr else {
            panic!("not an IP address");
        };
        assert_eq!(peer, client.local_addr().unwrap(), "the peer's address");
        sock
    }

    /// One multishot accept takes every connection: connections that come
    /// while the driver has no accept waiting wait in the backlog, in order,
    /// and the next accepts take them at once with their peers' addresses;
    /// the one SQE stays in the kernel for the next connection.
    #[test]
    fn a_multishot_accept_takes_every_connection_in_order() {
        let Some(mut b) = multishot("a_multishot_accept_takes_every_connection_in_order") else {
            return;
        };
        if !b.multishot_accept {
            eprintln!("SKIPPED: multishot accept needs Linux 5.19");
            return;
        }
        let (l, id) = listener(&mut b);
        let addr = l.local_addr().unwrap();
        assert!(b.submit(id, 1, Request::Accept).is_none());
        let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let mut got = poll_until_some(&mut b);
        // All three are accepted by the one request; only the first has a
        // driver accept to go to.
        let deadline = Instant::now() + Duration::from_secs(5);
        while b
            .records
            .values()
            .next()
            .map_or(0, |r| r.storage.as_ref().unwrap().backlog.len())
            < 2
        {
            assert!(Instant::now() < deadline, "the kernel did not accept the other two");
            got.extend(poll(&mut b, Duration::from_millis(10)));
        }
        assert_eq!(got.len(), 1, "one completion per driver accept");
        assert_eq!(got[0].token, 1);
        let first = accepted_from(got.remove(0), &clients[0]);
        for (i, client) in clients.iter().enumerate().skip(1) {
            let token = 1 + i as u64;
            let c = b
                .submit(id, token, Request::Accept)
                .expect("taken from the backlog at once");
            assert_eq!(c.token, token);
            drop(accepted_from(c, client));
        }
        assert_eq!(b.records.len(), 1, "one request for all of them");
        // The next connection comes through the same request.
        assert!(b.submit(id, 9, Request::Accept).is_none());
        let late = std::net::TcpStream::connect(addr).unwrap();
        let got = poll_until_some(&mut b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, 9);
        drop(first);
        b.remove_source(id);
        drop(late);
        assert_eq!(b.records.len(), 0);
    }

    /// Connections the kernel accepted that the driver never took are
    /// closed when the listener's source goes (the client reads the end of
    /// the stream, or a reset), and nothing is delivered afterwards.
    #[test]
    fn a_removed_listener_closes_its_backlog() {
        let Some(mut b) = multishot("a_removed_listener_closes_its_backlog") else {
            return;
        };
        let (l, id) = listener(&mut b);
        let addr = l.local_addr().unwrap();
        assert!(b.submit(id, 1, Request::Accept).is_none());
        let mut first = std::net::TcpStream::connect(addr).unwrap();
        let got = poll_until_some(&mut b);
        assert_eq!(got.len(), 1);
        let mut second = std::net::TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        if b.multishot_accept {
            while b
                .records
                .values()
                .next()
                .map_or(0, |r| r.storage.as_ref().unwrap().backlog.len())
                < 1
            {
                assert!(Instant::now() < deadline, "the kernel did not accept the second");
                assert!(poll(&mut b, Duration::from_millis(10)).is_empty(), "no accept waits");
            }
        }
        drop(got);
        b.remove_source(id);
        assert_eq!(b.records.len(), 0);
        for client in [&mut first, &mut second] {
            client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut byte = [0u8; 1];
            match client.read(&mut byte) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => panic!("the accepted connection was not closed: {other:?}"),
            }
        }
        assert!(poll(&mut b, Duration::from_millis(20)).is_empty());
    }

    /// Cancelling the waiting accept ends the multishot request: `Some(0)`,
    /// no record left, and a later connection is not delivered.
    #[test]
    fn cancelling_a_multishot_accept_ends_it() {
        let Some(mut b) = multishot("cancelling_a_multishot_accept_ends_it") else {
            return;
        };
        let (l, id) = listener(&mut b);
        assert!(b.submit(id, 4, Request::Accept).is_none());
        assert!(poll(&mut b, Duration::ZERO).is_empty());
        assert_eq!(b.cancel(id, 4), Some(0));
        assert_eq!(b.records.len(), 0);
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(poll(&mut b, Duration::from_millis(50)).is_empty(), "nothing delivered");
        // A stale token cancels nothing.
        assert_eq!(b.cancel(id, 4), Some(0));
        b.remove_source(id);
    }

    /// Without the tuning, an accept is one request per connection: the
    /// second connection waits in the kernel's queue, not in a backlog.
    #[test]
    fn accepts_are_single_unless_tuned() {
        let Some(mut b) = backend("accepts_are_single_unless_tuned") else {
            return;
        };
        assert!(!b.multishot_accept);
        let (l, id) = listener(&mut b);
        let addr = l.local_addr().unwrap();
        assert!(b.submit(id, 1, Request::Accept).is_none());
        let first = std::net::TcpStream::connect(addr).unwrap();
        let got = poll_until_some(&mut b);
        drop(accepted_from(got.into_iter().next().unwrap(), &first));
        assert_eq!(b.records.len(), 0, "the request ended with its connection");
        b.remove_source(id);
    }

    /// A backend whose submission queue a kernel thread takes (1 ms idle).
    fn sqpoll(test: &str) -> Option<Backend> {
        let tuning = crate::sys::Tuning {
            uring_sqpoll: Some(Duration::from_millis(1)),
            ..Default::default()
        };
        tuned(test, &tuning)
    }

    /// With `SQPOLL`, requests go in without a system call of ours while
    /// the kernel's thread is awake and are still issued after it fell
    /// asleep (the next enter wakes it); a flushed send has left when
    /// `flush` returns, as without it.
    #[test]
    fn sqpoll_issues_requests_before_and_after_the_thread_sleeps() {
        let Some(mut b) = sqpoll("sqpoll_issues_requests_before_and_after_the_thread_sleeps") else {
            return;
        };
        assert!(b.sqpoll);
        let (ours, mut peer) = socket_pair();
        let id = b.add_source(&ours, SourceKind::Socket).unwrap();
        for round in 0..3u8 {
            // Round 0 with the thread just started, then after it slept.
            std::thread::sleep(Duration::from_millis(if round == 0 { 0 } else { 20 }));
            let mut buf = [0u8; 8];
            let req = Request::Read {
                ptr: buf.as_mut_ptr(),
                len: buf.len(),
            };
            assert!(b.submit(id, 10 + u64::from(round), req).is_none());
            peer.write_all(&[round; 3]).unwrap();
            let got = poll_until_some(&mut b);
            assert_eq!(got.len(), 1, "round {round}");
            assert_eq!(got[0].result.as_ref().ok(), Some(&3));
            assert_eq!(&buf[..3], &[round; 3]);

            // A write queued behind another request goes to the ring;
            // `flush` returns once it was issued.
            let mut sink = [0u8; 8];
            let read = Request::Read {
                ptr: sink.as_mut_ptr(),
                len: sink.len(),
            };
            assert!(b.submit(id, 20 + u64::from(round), read).is_none());
            let data = [b'w', round];
            let write = Request::Write {
                ptr: data.as_ptr(),
                len: data.len(),
            };
            // (If the kernel's thread took the read already, the queue is
            // empty and the write is tried at once instead.)
            let queued = match b.submit(id, 30 + u64::from(round), write) {
                None => true,
                Some(c) => {
                    assert_eq!(c.result.as_ref().ok(), Some(&2));
                    false
                }
            };
            b.flush();
            peer.set_nonblocking(true).unwrap();
            let mut got = [0u8; 2];
            assert_eq!(peer.read(&mut got).unwrap(), 2, "sent by the time flush returned");
            assert_eq!(got, data);
            peer.set_nonblocking(false).unwrap();
            if queued {
                let done = poll_until_some(&mut b);
                assert!(done.iter().any(|c| c.token == 30 + u64::from(round)));
            }
            assert_eq!(b.cancel(id, 20 + u64::from(round)), Some(0));
        }
        b.remove_source(id);
    }

    /// A readiness wait keeps no record: its token sits in the source and
    /// its CQE names the source. It completes when the socket becomes
    /// readable; cancelled, it answers `Some(0)` at once and never
    /// completes later; a source removed with a wait pending delivers
    /// nothing either.
    #[test]
    fn readiness_waits_have_no_record() {
        let Some(mut b) = backend("readiness_waits_have_no_record") else {
            return;
        };
        let (ours, mut peer) = socket_pair();
        let id = b.add_source(&ours, SourceKind::Socket).unwrap();
        assert!(b.submit(id, 5, Request::Readable).is_none());
        assert_eq!(b.records.len(), 0, "no record for a wait");
        assert!(poll(&mut b, Duration::from_millis(20)).is_empty());
        peer.write_all(b"x").unwrap();
        let got = poll_until_some(&mut b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, 5);
        assert_eq!(got[0].result.as_ref().ok(), Some(&0));

        // Cancelled (the byte is read first, so the socket is not readable).
        let mut byte = [0u8; 1];
        assert_eq!((&ours).read(&mut byte).unwrap(), 1);
        assert!(b.submit(id, 6, Request::Readable).is_none());
        assert!(poll(&mut b, Duration::ZERO).is_empty());
        assert_eq!(b.cancel(id, 6), Some(0));
        peer.write_all(b"y").unwrap();
        assert!(
            poll(&mut b, Duration::from_millis(50)).is_empty(),
            "a cancelled wait stays quiet"
        );

        // A writing wait completes at once on a socket with room; then one
        // reading wait is left in flight when the source goes.
        assert!(b.submit(id, 7, Request::Writable).is_none());
        let got = poll_until_some(&mut b);
        assert_eq!(got[0].token, 7);
        assert_eq!((&ours).read(&mut byte).unwrap(), 1);
        assert!(b.submit(id, 8, Request::Readable).is_none());
        assert!(poll(&mut b, Duration::ZERO).is_empty());
        b.remove_source(id);
        peer.write_all(b"z").unwrap();
        assert!(
            poll(&mut b, Duration::from_millis(50)).is_empty(),
            "nothing from a removed source"
        );
        assert!(b.orphans.is_empty());
    }

    /// A backend whose stream sockets receive through multishot receives
    /// into `count` provided buffers of `size` bytes; `None` (with a
    /// notice) where io_uring or the kernel's multishot receive is missing.
    fn receiving(test: &str, count: u16, size: u32) -> Option<Backend> {
        if !super::kernel_at_least(6, 0) {
            eprintln!("SKIPPED {test}: multishot receives need Linux 6.0");
            return None;
        }
        let tuning = crate::sys::Tuning {
            uring_recv_buffers: Some((count, size)),
            ..Default::default()
        };
        tuned(test, &tuning)
    }

    /// A [`receiving`] backend with one socket pair: the backend, our end,
    /// the peer and our end's source.
    fn receiving_pair(test: &str, count: u16, size: u32) -> Option<(Backend, UnixStream, UnixStream, SourceId)> {
        let mut b = receiving(test, count, size)?;
        let (ours, peer) = socket_pair();
        let id = b.add_source(&ours, SourceKind::Socket).unwrap();
        Some((b, ours, peer, id))
    }

    /// A read request into `buf`.
    fn read_into(buf: &mut [u8]) -> Request {
        Request::Read {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// Whether source `id`'s reading direction holds a multishot receive.
    fn has_multishot_receive(b: &Backend, id: SourceId) -> bool {
        let src = b.sources.get(super::Key::from_u64(id.0, 0)).expect("source");
        super::record_in(src.read)
            .and_then(|k| b.records.get(k))
            .is_some_and(|r| r.shot & super::RECV != 0)
    }

    /// Reads (with `attempt`, then `submit` and `poll`) until `want` bytes
    /// came, at most `chunk` per read; what came, in order.
    fn read_all(b: &mut Backend, id: SourceId, want: usize, chunk: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut token = 100;
        while got.len() < want && Instant::now() < deadline {
            token += 1;
            let mut buf = vec![0u8; chunk];
            let n = match b.attempt(id, token, read_into(&mut buf)).result {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let done = match b.submit(id, token, read_into(&mut buf)) {
                        Some(c) => c,
                        None => poll_until_some(b).pop().expect("a completion"),
                    };
                    assert_eq!(done.token, token);
                    done.result.expect("read")
                }
                Err(e) => panic!("read failed: {e}"),
            };
            assert!(n > 0, "no end of stream before {want} bytes");
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// A read smaller than what came takes its part; the rest waits in the
    /// multishot receive's backlog (across buffers, in order) for the next
    /// reads, which take it at once, and the receive stays for later data.
    #[test]
    fn multishot_receive_keeps_what_a_read_did_not_take() {
        let Some((mut b, _ours, mut peer, id)) =
            receiving_pair("multishot_receive_keeps_what_a_read_did_not_take", 4, 8)
        else {
            return;
        };
        let mut first = [0u8; 3];
        assert!(b.submit(id, 1, read_into(&mut first)).is_none());
        assert!(has_multishot_receive(&b, id));
        peer.write_all(b"hello, multishot").unwrap();
        let done = poll_until_some(&mut b);
        assert_eq!((done[0].token, done[0].result.as_ref().ok()), (1, Some(&3)));
        assert_eq!(&first, b"hel");
        let rest = read_all(&mut b, id, 13, 5);
        assert_eq!(rest, b"lo, multishot");
        assert!(has_multishot_receive(&b, id), "the receive goes on");
        peer.write_all(b"more").unwrap();
        assert_eq!(read_all(&mut b, id, 4, 64), b"more");
        // The end of the stream reaches a read, and every read after it.
        drop(peer);
        for token in [7, 8] {
            let mut buf = [0u8; 4];
            let done = match b.submit(id, token, read_into(&mut buf)) {
                Some(c) => c,
                None => poll_until_some(&mut b).pop().unwrap(),
            };
            assert_eq!((done.token, done.result.as_ref().ok()), (token, Some(&0)));
        }
        b.remove_source(id);
        assert_eq!(b.records.len(), 0);
    }

    /// Cancelling a read that waits on a multishot receive is immediate
    /// (the kernel never had its buffer) and loses nothing: data that
    /// comes afterwards waits for the next read; a readiness wait sees it
    /// without taking it.
    #[test]
    fn a_cancelled_read_leaves_the_data_to_the_next() {
        let Some((mut b, _ours, mut peer, id)) = receiving_pair("a_cancelled_read_leaves_the_data_to_the_next", 4, 64)
        else {
            return;
        };
        let mut buf = [0u8; 16];
        assert!(b.submit(id, 1, read_into(&mut buf)).is_none());
        assert_eq!(b.cancel(id, 1), Some(0));
        peer.write_all(b"kept").unwrap();
        assert!(poll(&mut b, Duration::from_millis(50)).is_empty(), "no read waits");
        let ready = b.submit(id, 2, Request::Readable).expect("readable at once");
        assert_eq!((ready.token, ready.result.as_ref().ok()), (2, Some(&0)));
        let done = b.attempt(id, 3, read_into(&mut buf));
        assert_eq!(done.result.as_ref().ok(), Some(&4));
        assert_eq!(&buf[..4], b"kept");
        b.remove_source(id);
        assert_eq!(b.records.len(), 0);
    }

    /// When the ring runs dry, a read on another socket receives by itself
    /// into its own buffer; the dry socket's data comes in order once read,
    /// and what is left in its socket comes through a new multishot
    /// receive. Removing a source gives its buffers back.
    #[test]
    fn a_dry_ring_falls_back_to_plain_reads() {
        let Some(mut b) = receiving("a_dry_ring_falls_back_to_plain_reads", 2, 4) else {
            return;
        };
        let (a, mut peer_a) = socket_pair();
        let (c, mut peer_c) = socket_pair();
        let id_a = b.add_source(&a, SourceKind::Socket).unwrap();
        let id_c = b.add_source(&c, SourceKind::Socket).unwrap();
        let mut one = [0u8; 1];
        assert!(b.submit(id_a, 1, read_into(&mut one)).is_none());
        peer_a.write_all(b"0123456789").unwrap();
        let done = poll_until_some(&mut b);
        assert_eq!((done[0].token, done[0].result.as_ref().ok()), (1, Some(&1)));
        // Both buffers now hold socket a's data: the ring is dry.
        let _ = poll(&mut b, Duration::from_millis(20));
        let mut buf = [0u8; 8];
        assert!(b.submit(id_c, 2, read_into(&mut buf)).is_none());
        peer_c.write_all(b"xy").unwrap();
        let done = poll_until_some(&mut b);
        assert_eq!((done[0].token, done[0].result.as_ref().ok()), (2, Some(&2)));
        assert_eq!(&buf[..2], b"xy");
        assert!(!has_multishot_receive(&b, id_c), "the plain read is over");
        assert_eq!(&one, b"0");
        assert_eq!(read_all(&mut b, id_a, 9, 3), b"123456789");
        // Buffers of data nobody read go back with their source.
        peer_c.write_all(b"abcdefgh").unwrap();
        let mut buf = [0u8; 1];
        assert!(b.submit(id_c, 3, read_into(&mut buf)).is_none());
        let _ = poll_until_some(&mut b);
        let _ = poll(&mut b, Duration::from_millis(20));
        b.remove_source(id_c);
        let mut buf = [0u8; 8];
        assert!(b.submit(id_a, 4, read_into(&mut buf)).is_none());
        peer_a.write_all(b"four").unwrap();
        let done = poll_until_some(&mut b);
        assert_eq!((done[0].token, done[0].result.as_ref().ok()), (4, Some(&4)));
        assert_eq!(&buf[..4], b"four");
        assert!(has_multishot_receive(&b, id_a), "buffers were there again");
        b.remove_source(id_a);
        assert_eq!(b.records.len(), 0);
    }
}
