//! The epoll backend: readiness turned into completions.
//!
//! Each socket is registered once, edge-triggered, for reading and writing.
//! A submitted request is tried at once; if the socket is not ready its token
//! is parked in the source's reading or writing slot, and when epoll reports
//! the matching edge the request is rebuilt from the driver's operation (the
//! `requests` look-up `poll` is given) and retried. A source is 32 bytes:
//! the parked requests are not copied into it. Because nothing ever reads
//! into a parked buffer except this backend, on the loop thread, cancelling
//! is immediate: the buffer is free as soon as `cancel` returns.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::slab::{Key, Table};
use crate::sys::unix::{connect_error, connect_result, start_connect, syscall, try_perform, ReserveFd};
use crate::sys::{AsSource, Completion, Extra, Request, SourceId, SourceKind, Waker};

/// The epoll data value of the waker; sources use their table key, whose
/// generation never reaches `u32::MAX` in practice.
const WAKE_TOKEN: u64 = u64::MAX;

/// An empty parking slot (no operation token is ever `u64::MAX`: that is
/// the waker's, and a generation never reaches `u32::MAX`).
const NONE: u64 = u64::MAX;

struct Source {
    fd: RawFd,
    kind: SourceKind,
    /// The token of the parked reading (writing) request, or `NONE`.
    read: u64,
    write: u64,
    /// The parked writing request is a connect in progress (its outcome is
    /// read from `SO_ERROR`; the driver has no request to rebuild for it).
    connecting: bool,
    /// Whether a read (write) might succeed now: cleared when one would
    /// block or came back short, set again by the next edge. A request on a
    /// direction known not to be ready is parked without a syscall.
    may_read: bool,
    may_write: bool,
    /// The peer hung up or the socket failed (HUP, RDHUP, ERR): a state, not
    /// an edge that comes again, so every request is tried from now on.
    hung_up: bool,
}

/// Whether a transfer came back short: a stream read that got less than it
/// asked for drained the socket (or pipe) buffer, a short write filled it.
fn short(req: &Request, n: usize) -> bool {
    match *req {
        Request::Read { len, .. } | Request::Write { len, .. } => n > 0 && n < len,
        _ => false,
    }
}

/// Tries `req` if the direction may be ready; `None` means "park it". Keeps
/// the direction's readiness flag up to date.
fn try_if_ready(
    fd: RawFd,
    kind: SourceKind,
    req: &Request,
    ready: &mut bool,
    hung_up: bool,
    reserve: &mut ReserveFd,
    extra: &mut Extra,
) -> Option<io::Result<usize>> {
    if !*ready && !hung_up {
        return None;
    }
    let result = try_perform(fd, kind, req, reserve, extra);
    note_readiness(req, &result, ready);
    result
}

/// After a try: a direction that would block, or that moved less than asked
/// (the edge-triggered socket is drained), waits for its next edge.
fn note_readiness(req: &Request, result: &Option<io::Result<usize>>, ready: &mut bool) {
    match result {
        None => *ready = false,
        Some(Ok(n)) if short(req, *n) => *ready = false,
        _ => {}
    }
}

/// What retrying a source's parked requests after an edge needs.
struct Edge<'a> {
    fd: RawFd,
    kind: SourceKind,
    hung_up: bool,
    reserve: &'a mut ReserveFd,
    requests: &'a mut dyn FnMut(u64) -> Option<Request>,
    out: &'a mut Vec<Completion>,
}

impl Edge<'_> {
    /// Retries the request parked in `slot` (rebuilt by `requests`; an
    /// operation that is gone just empties the slot) and completes it unless
    /// it would still block.
    fn retry(&mut self, slot: &mut u64, ready: &mut bool) {
        let token = *slot;
        if token == NONE {
            return;
        }
        let Some(req) = (self.requests)(token) else {
            *slot = NONE;
            return;
        };
        let mut extra = Extra::None;
        if let Some(result) = try_if_ready(self.fd, self.kind, &req, ready, self.hung_up, self.reserve, &mut extra) {
            *slot = NONE;
            self.out.push(Completion { token, result, extra });
        }
    }
}

pub(crate) struct Backend {
    epfd: OwnedFd,
    waker: Waker,
    sources: Table<Source>,
    events: Vec<libc::epoll_event>,
    reserve: ReserveFd,
    /// Whether the kernel has epoll_pwait2 (nanosecond timeouts).
    pwait2: bool,
}

impl Backend {
    pub fn new() -> io::Result<Backend> {
        let epfd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 returned a fresh descriptor that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        let waker = Waker::new()?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_TOKEN,
        };
        syscall!(epoll_ctl(
            epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            waker.raw_fd(),
            &mut ev
        ))?;
        Ok(Backend {
            epfd,
            waker,
            sources: Table::new(0),
            events: Vec::with_capacity(256),
            reserve: ReserveFd::new(),
            pwait2: true,
        })
    }
}

impl crate::sys::Backend for Backend {
    fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn add_source(&mut self, source: &impl AsSource, kind: SourceKind) -> io::Result<SourceId> {
        let fd = source.raw_source();
        let key = self.sources.insert(Source {
            fd,
            kind,
            read: NONE,
            write: NONE,
            connecting: false,
            // Adding a descriptor queues an event if it is readable already
            // (and epoll re-checks readiness when it reports it), so a read on
            // a new source waits for that instead of trying a `recv` that,
            // on a fresh connection, nearly always finds nothing.
            may_read: false,
            may_write: true,
            hung_up: false,
        });
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: key.to_u64(),
        };
        if let Err(e) = syscall!(epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev)) {
            self.sources.remove(key);
            return Err(e);
        }
        Ok(SourceId(key.to_u64()))
    }

    fn remove_source(&mut self, id: SourceId) {
        if let Some(entry) = self.sources.remove(Key::from_u64(id.0, 0)) {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // A closed descriptor has already left the set; nothing to report.
            let _ = syscall!(epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, entry.fd, &mut ev));
        }
    }

    /// The descriptor was closed: it left the epoll set with its last
    /// reference, and `EPOLL_CTL_DEL` on its number could remove another
    /// file's registration (a number the driver reused for a socket of its
    /// own).
    fn forget_source(&mut self, id: SourceId) {
        self.sources.remove(Key::from_u64(id.0, 0));
    }

    fn submit(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion> {
        let Some(src) = self.sources.get_mut(Key::from_u64(id.0, 0)) else {
            return Some(Completion::new(token, Err(io::Error::from_raw_os_error(libc::EBADF))));
        };
        if let Request::Connect(addr) = &req {
            return match start_connect(src.fd, addr) {
                Ok(true) => Some(Completion::new(token, Ok(0))),
                Ok(false) => {
                    src.write = token;
                    src.connecting = true;
                    None
                }
                Err(e) => Some(Completion::new(token, Err(e))),
            };
        }
        let ready = if req.is_reading() {
            &mut src.may_read
        } else {
            &mut src.may_write
        };
        let mut extra = Extra::None;
        match try_if_ready(
            src.fd,
            src.kind,
            &req,
            ready,
            src.hung_up,
            &mut self.reserve,
            &mut extra,
        ) {
            Some(result) => Some(Completion { token, result, extra }),
            None => {
                let slot = if req.is_reading() {
                    &mut src.read
                } else {
                    &mut src.write
                };
                debug_assert!(*slot == NONE, "one request per slot");
                *slot = token;
                None
            }
        }
    }

    /// Nothing is ever queued: `submit` tries each request at once.
    fn flush(&mut self) {}

    fn attempt(&mut self, id: SourceId, token: u64, req: Request) -> Completion {
        let Some(src) = self.sources.get_mut(Key::from_u64(id.0, 0)) else {
            return Completion::new(token, Err(io::Error::from_raw_os_error(libc::EBADF)));
        };
        let mut extra = Extra::None;
        let result = try_perform(src.fd, src.kind, &req, &mut self.reserve, &mut extra);
        // What the try saw is the direction's readiness now: a request
        // submitted next parks at once instead of trying again.
        let ready = if req.is_reading() {
            &mut src.may_read
        } else {
            &mut src.may_write
        };
        note_readiness(&req, &result, ready);
        Completion {
            token,
            result: result.unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into())),
            extra,
        }
    }

    /// Parked requests never touched their buffer: always reclaimed, 0 bytes.
    fn cancel(&mut self, id: SourceId, token: u64) -> Option<usize> {
        if let Some(src) = self.sources.get_mut(Key::from_u64(id.0, 0)) {
            for slot in [&mut src.read, &mut src.write] {
                if *slot == token {
                    *slot = NONE;
                }
            }
        }
        Some(0)
    }

    /// Waits for edges and retries the requests parked on them; `requests`
    /// rebuilds the request of a parked token (`None`: the operation is gone).
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        requests: &mut dyn FnMut(u64) -> Option<Request>,
    ) -> io::Result<bool> {
        self.events.clear();
        let cap = self.events.capacity() as i32;
        let waited = if self.pwait2 {
            // epoll_pwait2 (Linux 5.11+) takes a timespec: timers wake on time
            // instead of at the next whole millisecond.
            let ts = timeout.map(|d| libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            });
            let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: the event array has `cap` writable entries, the timespec
            // (or null) lives across the call, and no signal mask is passed.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    self.epfd.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    cap,
                    ts_ptr,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                self.pwait2 = false;
                None
            } else if rc < 0 {
                Some(Err(io::Error::last_os_error()))
            } else {
                Some(Ok(rc as i32))
            }
        } else {
            None
        };
        let waited = match waited {
            Some(r) => r,
            None => {
                let ms = match timeout {
                    None => -1,
                    // Round up so a timer is never woken for before its deadline.
                    Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
                };
                // epoll_pwait without a signal mask is epoll_wait, made
                // directly: libc's wrapper is a thread-cancellation point.
                crate::sys::unix::raw_syscall!(SYS_epoll_pwait(
                    self.epfd.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    cap,
                    ms,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize
                ))
                .map(|n| n as i32)
            }
        };
        let n = match waited {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        // SAFETY: epoll_wait initialised the first `n` entries (n <= capacity).
        unsafe { self.events.set_len(n) };
        for i in 0..n {
            let ev = self.events[i];
            let (flags, data) = (ev.events, ev.u64);
            if data == WAKE_TOKEN {
                self.waker.drain();
                continue;
            }
            let Some(src) = self.sources.get_mut(Key::from_u64(data, 0)) else {
                continue;
            };
            let (fd, kind) = (src.fd, src.kind);
            let readable = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            let writable = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if flags & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                src.hung_up = true;
            }
            let hung_up = src.hung_up;
            let mut edge = Edge {
                fd,
                kind,
                hung_up,
                reserve: &mut self.reserve,
                requests: &mut *requests,
                out: &mut *out,
            };
            if flags & readable != 0 {
                src.may_read = true;
                edge.retry(&mut src.read, &mut src.may_read);
            }
            if flags & writable != 0 {
                src.may_write = true;
                if src.connecting && src.write != NONE {
                    // epoll re-checks readiness before reporting it: writable
                    // (or failed) means the handshake is over, and SO_ERROR
                    // alone says how. Anything else gets the full check.
                    let over = flags & (libc::EPOLLOUT | libc::EPOLLERR) as u32 != 0;
                    let result = if over { connect_error(fd) } else { connect_result(fd) };
                    match result {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        result => {
                            edge.out.push(Completion::new(src.write, result.map(|()| 0)));
                            src.write = NONE;
                            src.connecting = false;
                        }
                    }
                } else {
                    edge.retry(&mut src.write, &mut src.may_write);
                }
            }
        }
        Ok(false)
    }
}
