//! The WinAPI backend proper.
//!
//! # The wait
//!
//! `poll` waits in `MsgWaitForMultipleObjectsEx` on the waker's event and a
//! (high-resolution where available) waitable timer, with `QS_ALLINPUT` —
//! not `QS_ALLEVENTS`, which misses cross-thread `SendMessage` — and
//! `MWMO_ALERTABLE | MWMO_INPUTAVAILABLE`. During the wait the OS runs the
//! completion routines of finished overlapped requests; they only record.
//! After the wait the backend reaps them into completions, then drains the
//! thread's message queue (`PeekMessageW` / `TranslateMessage` /
//! `DispatchMessageW`, after the program's hook), so windows created on the
//! driver's thread stay live while the driver waits for I/O. `WM_QUIT` is
//! handed to the driver (it returns `ExitReason::Quit`), never swallowed.
//!
//! The wait set holds two handles whatever the number of sockets: sockets
//! report through completion routines and window messages, never handles, so
//! the 64-handle limit of the wait functions does not apply.
//!
//! # Requests
//!
//! Reads, writes, datagrams and waits for data are overlapped `WSARecv` /
//! `WSASend` / `WSARecvFrom` / `WSASendTo` with a completion routine (a wait
//! for data is a zero-byte `WSARecv`; on a datagram socket a zero-byte
//! `MSG_PEEK`, which does not consume the datagram). `Immediate` requests are
//! plain non-blocking calls — never an overlapped request that is started and
//! cancelled, which loses datagrams. Accept and connect use `WSAAsyncSelect`
//! on the driver's message-only window: `accept` / `connect` are tried at once
//! and, if they would block, retried when `FD_ACCEPT` / `FD_CONNECT` arrives.
//!
//! Cancelling an overlapped request is `CancelIoEx`; its routine still runs
//! (with `ERROR_OPERATION_ABORTED` or the result it had reached), so `cancel`
//! answers `false` and the driver keeps the buffer until then.
//!
//! # Attached to a program's message loop
//!
//! That loop's `GetMessage` is not an alertable wait, so completion routines
//! would wait for the pump timer. Requests started while attached therefore
//! take no routine: their OVERLAPPED carries the waker's event, which the OS
//! signals when they finish (from any wait, alertable or not), and a wait
//! registered on that event (`RegisterWaitForSingleObject`, run in the wait
//! thread) posts `WM_PUMP` to the driver's window — at most one at a time,
//! and none while input or paint messages wait, which a posted message
//! would hold back. `reap` looks at the OVERLAPPED of those requests
//! (`Slot::signalled`): finished ones are read with `WSAGetOverlappedResult`
//! / `GetOverlappedResult` without waiting, so they report the codes a
//! routine would. Starting a request clears the event it names, which may
//! erase the signal of a request that finished just before: the backend
//! notes such starts and looks again before it waits or hands the thread
//! back (`settle`). The driver's own wait keeps the event in its wait set, so
//! such requests still finish after a detach; requests started before the
//! attach keep their routines (run at the next pump). docs/design.md has
//! the reasons and the figures.

use std::collections::HashMap;
use std::io;
use std::os::windows::io::FromRawSocket;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockAddr;
use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::ERROR_OPERATION_ABORTED;
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, HANDLE, HWND, INVALID_HANDLE_VALUE,
    STATUS_PENDING, WAIT_FAILED,
};
use windows_sys::Win32::Networking::WinSock::{
    accept, connect, getsockopt, recv, recvfrom, send, sendto, WSAAsyncSelect, WSAGetLastError, WSAGetOverlappedResult,
    WSAPoll, WSARecv, WSARecvFrom, WSASend, WSASendTo, FD_ACCEPT, FD_CLOSE, FD_CONNECT, FD_READ, FD_WRITE,
    INVALID_SOCKET, LPWSAOVERLAPPED_COMPLETION_ROUTINE, MSG_PEEK, POLLNVAL, POLLRDNORM, POLLWRNORM, SOCKADDR,
    SOCKADDR_STORAGE, SOCKET, SOCKET_ERROR, SOL_SOCKET, SO_TYPE, WSABUF, WSAEMSGSIZE, WSAENOTSOCK, WSAEWOULDBLOCK,
    WSAPOLLFD, WSA_IO_PENDING,
};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileType, ReadDirectoryChangesW, ReadFile, ReadFileEx, WriteFile, WriteFileEx, FILE_NOTIFY_CHANGE_CREATION,
    FILE_NOTIFY_CHANGE_DIR_NAME, FILE_NOTIFY_CHANGE_FILE_NAME, FILE_NOTIFY_CHANGE_LAST_WRITE, FILE_NOTIFY_CHANGE_SIZE,
    FILE_TYPE_PIPE,
};
use windows_sys::Win32::System::Pipes::PeekNamedPipe;
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateWaitableTimerExW, GetCurrentThreadId, RegisterWaitForSingleObject, SetEvent, SetWaitableTimer,
    SleepEx, UnregisterWaitEx, INFINITE, WT_EXECUTEINWAITTHREAD,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, LPOVERLAPPED_COMPLETION_ROUTINE, OVERLAPPED};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    DispatchMessageW, EnumThreadWindows, GetAncestor, GetDesktopWindow, GetQueueStatus, MsgWaitForMultipleObjectsEx,
    PeekMessageW, PostMessageW, TranslateMessage, GA_PARENT, MSG, MWMO_ALERTABLE, MWMO_INPUTAVAILABLE, PM_REMOVE,
    QS_ALLINPUT, QS_INPUT, QS_PAINT, WM_QUIT,
};

use super::overlapped::{self, on_file_done, on_socket_done, Slot, Slots};
use super::window::{Window, WindowShared, WM_PUMP, WM_SOCKET};
use super::{sock_addr, AsSource};
use crate::slab::{Key, Table};
use crate::sys::{Completion, Extra, Request, SourceId, SourceKind};

const CREATE_WAITABLE_TIMER_HIGH_RESOLUTION: u32 = 0x0000_0002;
const TIMER_ALL_ACCESS: u32 = 0x001F_0003;
/// How long a cancel waits for the cancelled request's routine before leaving
/// it to finish later.
const CANCEL_WAIT: Duration = Duration::from_millis(100);
/// Largest transfer one overlapped send request carries: an `IoMode::All`
/// write is a series of such requests, so a failure part-way reports how far
/// it got, and a cancel gives back a buffer the OS is no longer reading.
const MAX_SEND: usize = 1 << 20;
/// Largest write request on a pipe: a quarter of the 64 KiB pipe buffer, so
/// a request that fits completes at once and a write that must wait for the
/// reader holds few bytes the reader cannot see yet; a cancel then reports
/// what reached the pipe. (Wine does not complete a write that would fill the
/// whole buffer.)
const MAX_PIPE_WRITE: usize = 16 * 1024;
/// How long an `Immediate` file request may take before it is cancelled.
const IMMEDIATE_FILE_WAIT: Duration = Duration::from_secs(5);
/// What a directory watch reports: names created, deleted or renamed (files
/// and directories) and content changes.
const DIRECTORY_FILTER: u32 = FILE_NOTIFY_CHANGE_FILE_NAME
    | FILE_NOTIFY_CHANGE_DIR_NAME
    | FILE_NOTIFY_CHANGE_LAST_WRITE
    | FILE_NOTIFY_CHANGE_SIZE
    | FILE_NOTIFY_CHANGE_CREATION;
/// Most messages dispatched per poll, so a flood of messages cannot starve I/O.
const MESSAGE_BUDGET: usize = 512;
/// Longest time spent dispatching messages per poll (checked after each
/// message): with slow handlers, completions and timers wait at most this
/// plus one handler's run behind a flood of messages.
const MESSAGE_TIME_BUDGET: Duration = Duration::from_millis(8);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The program's look at each message before it is dispatched; `true` means
/// "handled, do not translate or dispatch" (for `IsDialogMessage`, accelerators).
pub(crate) type MessageHook = Box<dyn FnMut(&MSG) -> bool>;

struct EventHandle(HANDLE);

impl Drop for EventHandle {
    fn drop(&mut self) {
        // SAFETY: we own the handle and close it once.
        unsafe { CloseHandle(self.0) };
    }
}

// SAFETY: an event handle may be signalled from any thread.
unsafe impl Send for EventHandle {}
// SAFETY: as above; SetEvent is thread-safe.
unsafe impl Sync for EventHandle {}

/// Wakes the driver's wait from any thread: an auto-reset event in the wait
/// set, plus a `WM_PUMP` to the driver's window when the driver is attached to
/// a program's message loop (whose `GetMessage` does not see the event).
#[derive(Clone)]
pub(crate) struct Waker {
    event: Arc<EventHandle>,
    /// The driver's window while attached, else null.
    pump_window: Arc<AtomicPtr<std::ffi::c_void>>,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        // SAFETY: an unnamed auto-reset event, initially not signalled.
        let h = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            event: Arc::new(EventHandle(h)),
            pump_window: Arc::new(AtomicPtr::new(std::ptr::null_mut())),
        })
    }

    pub fn wake(&self) {
        // SAFETY: signalling our own event.
        unsafe { SetEvent(self.event.0) };
        let hwnd = self.pump_window.load(Ordering::Acquire);
        if !hwnd.is_null() {
            // SAFETY: posting to a window is allowed from any thread; a window
            // that is gone makes the call fail harmlessly.
            unsafe { PostMessageW(hwnd, WM_PUMP, 0, 0) };
        }
    }
}

/// The context of an attached driver's registered wait on the waker's event:
/// every signal (a finished request started while attached, or a wake-up)
/// posts `WM_PUMP` to the driver's window, at most one at a time.
struct PumpSignal {
    /// The driver's window.
    hwnd: HWND,
    /// A `WM_PUMP` of this signal is queued and its pump has not polled yet.
    posted: AtomicBool,
}

impl PumpSignal {
    /// Posts `WM_PUMP` unless one is already on its way.
    fn post(&self) {
        if !self.posted.swap(true, Ordering::AcqRel) {
            // SAFETY: posting to a window is allowed from any thread; the
            // window outlives the registered wait (unregistered first).
            if unsafe { PostMessageW(self.hwnd, WM_PUMP, 0, 0) } == 0 {
                self.posted.store(false, Ordering::Release);
            }
        }
    }
}

/// The callback of the registered wait (runs on the wait thread).
///
/// # Safety
/// `context` is the [`PumpSignal`] passed at registration, which stays
/// allocated until `UnregisterWaitEx(INVALID_HANDLE_VALUE)` has returned.
unsafe extern "system" fn post_pump(context: *mut std::ffi::c_void, _timed_out: bool) {
    // SAFETY: see the function's contract.
    let signal = unsafe { &*(context as *const PumpSignal) };
    signal.post();
}

/// Whether input or paint messages wait in the calling thread's queue (a
/// posted `WM_PUMP` would be taken before them).
fn input_waiting() -> bool {
    // SAFETY: a plain query of the calling thread's queue.
    let status = unsafe { GetQueueStatus(QS_INPUT | QS_PAINT) };
    status >> 16 != 0
}

/// Whether the request of a `signalled` slot has finished; if so, records its
/// outcome in the slot (as the completion routine does for the others).
/// `sources` tells a live socket (asked with `WSAGetOverlappedResult`, for
/// the same WinSock error codes a routine gets) from anything else
/// (`GetOverlappedResult`).
fn check_signalled(sources: &Table<Source>, slot: *mut Slot) -> bool {
    // SAFETY: `slot` is live and in flight (or finished); the OS writes only
    // its OVERLAPPED, whose status is read volatile, outcome after it.
    unsafe {
        if (*slot).done {
            return true;
        }
        let status = std::ptr::read_volatile(std::ptr::addr_of!((*slot).ov.Internal));
        if status == STATUS_PENDING as usize {
            return false;
        }
        fence(Ordering::Acquire);
        let ov = std::ptr::addr_of!((*slot).ov);
        let mut bytes: u32 = 0;
        let socket = sources
            .get(Key::from_u64((*slot).source.0, 0))
            .filter(|src| !src.handle)
            .map(|src| src.sock);
        let error = match socket {
            Some(sock) => {
                let mut flags: u32 = 0;
                if WSAGetOverlappedResult(sock, ov, &mut bytes, 0, &mut flags) != 0 {
                    0
                } else {
                    WSAGetLastError() as u32
                }
            }
            None => {
                if GetOverlappedResult(std::ptr::null_mut(), ov, &mut bytes, 0) != 0 {
                    0
                } else {
                    GetLastError()
                }
            }
        };
        if error == ERROR_IO_INCOMPLETE {
            return false;
        }
        (*slot).error = error;
        (*slot).bytes = bytes;
        (*slot).done = true;
        true
    }
}

enum ReqKind {
    RecvFrom,
    Other,
}

enum Parked {
    /// An overlapped request the OS holds.
    InFlight { token: u64, slot: *mut Slot },
    /// An accept waiting for `FD_ACCEPT`.
    Accept { token: u64 },
    /// A connect waiting for `FD_CONNECT`.
    Connect { token: u64 },
    /// A wait for readiness of a foreign socket (`Readable` / `Writable`):
    /// `WSAAsyncSelect` notifications, each checked with `WSAPoll`.
    Ready { token: u64 },
}

impl Parked {
    fn token(&self) -> u64 {
        match *self {
            Parked::InFlight { token, .. }
            | Parked::Accept { token }
            | Parked::Connect { token }
            | Parked::Ready { token } => token,
        }
    }
}

struct Source {
    /// The SOCKET, or the HANDLE of a file, pipe or directory.
    sock: SOCKET,
    /// A handle (ReadFileEx / WriteFileEx), not a socket.
    handle: bool,
    /// A pipe handle: writes go in pipe-buffer-sized requests.
    pipe: bool,
    datagram: bool,
    selected: bool,
    /// A socket the program owns (`Polls::register`): only waits for
    /// readiness, through `WSAAsyncSelect` and `WSAPoll`.
    foreign: bool,
    read: Option<Parked>,
    write: Option<Parked>,
}

pub(crate) struct Backend {
    id: u64,
    waker: Waker,
    timer: HANDLE,
    window: Window,
    sources: Table<Source>,
    by_socket: HashMap<SOCKET, SourceId>,
    slots: Slots,
    reaped: Vec<*mut Slot>,
    hook: Option<MessageHook>,
    lookups: super::dns::Lookups,
    quit: Option<i32>,
    /// False while attached to a program's message loop, which dispatches.
    pump_messages: bool,
    /// In-flight requests started while attached (`Slot::signalled`): no
    /// routine runs for them; `reap` looks at their OVERLAPPED.
    signalled: Vec<*mut Slot>,
    /// While attached: the registered wait on the waker's event that posts
    /// `WM_PUMP`, and its context.
    pump_wait: Option<(HANDLE, Box<PumpSignal>)>,
    /// A signalled request was started after `reap` last looked at the
    /// signalled requests (see [`Backend::settle`]).
    unscanned_start: bool,
}

/// Whether the calling thread owns a top-level window other than `ours`
/// (message-only windows, the driver's own included, do not count: nobody
/// closes them).
fn thread_has_window(ours: HWND) -> bool {
    struct Search {
        ours: HWND,
        desktop: HWND,
        found: bool,
    }
    unsafe extern "system" fn visit(hwnd: HWND, data: isize) -> BOOL {
        // SAFETY: `data` is the `Search` that `thread_has_window` passes and
        // keeps alive for the whole enumeration.
        let search = unsafe { &mut *(data as *mut Search) };
        // SAFETY: asks for the parent of a window the enumeration gave us.
        let top_level = unsafe { GetAncestor(hwnd, GA_PARENT) } == search.desktop;
        if hwnd != search.ours && top_level {
            search.found = true;
            return 0;
        }
        1
    }
    let mut search = Search {
        ours,
        // SAFETY: a plain query.
        desktop: unsafe { GetDesktopWindow() },
        found: false,
    };
    // SAFETY: enumerates this thread's windows with a callback that only
    // reads them and writes `search`, which outlives the call.
    unsafe { EnumThreadWindows(GetCurrentThreadId(), Some(visit), &mut search as *mut Search as isize) };
    search.found
}

fn last_wsa_error() -> io::Error {
    // SAFETY: reads the calling thread's last WinSock error.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

fn would_block(e: &io::Error) -> bool {
    e.raw_os_error() == Some(WSAEWOULDBLOCK)
}

impl Backend {
    /// The Windows backend; `_kind` is always [`BackendKind::WinApi`](crate::sys::BackendKind::WinApi),
    /// the only kind Windows has.
    pub fn new(_kind: crate::sys::BackendKind, _tuning: &crate::sys::Tuning) -> io::Result<Backend> {
        super::wsa_startup();
        let waker = Waker::new()?;
        // SAFETY: an unnamed waitable timer; the high-resolution kind first
        // (Windows 10 1803+), a plain one where the system has none.
        let mut timer = unsafe {
            CreateWaitableTimerExW(
                std::ptr::null(),
                std::ptr::null(),
                CREATE_WAITABLE_TIMER_HIGH_RESOLUTION,
                TIMER_ALL_ACCESS,
            )
        };
        if timer.is_null() {
            // SAFETY: as above, without the flag.
            timer = unsafe { CreateWaitableTimerExW(std::ptr::null(), std::ptr::null(), 0, TIMER_ALL_ACCESS) };
        }
        if timer.is_null() {
            return Err(io::Error::last_os_error());
        }
        let window = match Window::new() {
            Ok(w) => w,
            Err(e) => {
                // SAFETY: closing the timer we just created.
                unsafe { CloseHandle(timer) };
                return Err(e);
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Backend {
            id,
            waker: waker.clone(),
            timer,
            window,
            sources: Table::new(0),
            by_socket: HashMap::new(),
            slots: Slots::new(id),
            reaped: Vec::new(),
            hook: None,
            lookups: super::dns::Lookups::new(waker.clone()),
            quit: None,
            pump_messages: true,
            signalled: Vec::new(),
            pump_wait: None,
            unscanned_start: false,
        })
    }

    fn source(&mut self, id: SourceId) -> Option<&mut Source> {
        self.sources.get_mut(Key::from_u64(id.0, 0))
    }

    fn select(&mut self, id: SourceId, events: u32) -> io::Result<()> {
        let hwnd = self.window.hwnd();
        let src = self.source(id).ok_or_else(bad_handle)?;
        // SAFETY: associates our window with a socket registered with us
        // (ours, or a foreign one the program keeps open while registered).
        if unsafe { WSAAsyncSelect(src.sock, hwnd, WM_SOCKET, events as i32) } == SOCKET_ERROR {
            return Err(last_wsa_error());
        }
        src.selected = events != 0;
        Ok(())
    }

    /// Starts a `ReadFileEx` / `WriteFileEx` / `ReadDirectoryChangesW` on a
    /// handle source; returns the in-flight slot, or the error if the request
    /// did not start (then no routine will run).
    ///
    /// `signalled`: without a routine, signalling the waker's event (a
    /// driver attached to a program's message loop; see [`check_signalled`]).
    fn start_handle_request(
        &mut self,
        id: SourceId,
        token: u64,
        req: &Request,
        signalled: bool,
    ) -> io::Result<*mut Slot> {
        let src = self.sources.get(Key::from_u64(id.0, 0)).ok_or_else(bad_handle)?;
        let h = src.sock as HANDLE;
        let write_cap = if src.pipe { MAX_PIPE_WRITE } else { usize::MAX };
        let slot = self.slots.alloc(token, id, req.is_reading());
        let event = self.waker.event.0;
        let routine: LPOVERLAPPED_COMPLETION_ROUTINE = if signalled { None } else { Some(on_file_done) };
        // SAFETY: the slot (and its OVERLAPPED) stays allocated until its
        // routine ran; the buffers belong to the driver, which keeps them
        // alive until the completion is reaped (see sys/mod.rs).
        let ok = unsafe {
            let s = &mut *slot;
            if signalled {
                s.signalled = true;
                s.ov.hEvent = event;
                s.ov.Internal = STATUS_PENDING as usize;
            }
            let ov = &mut s.ov as *mut OVERLAPPED;
            let set_offset = |ov: *mut OVERLAPPED, offset: u64| {
                (*ov).Anonymous.Anonymous.Offset = offset as u32;
                (*ov).Anonymous.Anonymous.OffsetHigh = (offset >> 32) as u32;
            };
            let read = |ptr: *mut u8, len: u32, ov: *mut OVERLAPPED| {
                if signalled {
                    ReadFile(h, ptr, len, std::ptr::null_mut(), ov)
                } else {
                    ReadFileEx(h, ptr, len, ov, routine)
                }
            };
            let write = |ptr: *const u8, len: u32, ov: *mut OVERLAPPED| {
                if signalled {
                    WriteFile(h, ptr, len, std::ptr::null_mut(), ov)
                } else {
                    WriteFileEx(h, ptr, len, ov, routine)
                }
            };
            match *req {
                Request::Read { ptr, len } => read(ptr, clamp_u32(len), ov),
                Request::Readable => {
                    // A zero-byte read completes when data (or the end) arrives.
                    read(s.zero.as_mut_ptr(), 0, ov)
                }
                Request::ReadAt { ptr, len, offset } => {
                    set_offset(ov, offset);
                    read(ptr, clamp_u32(len), ov)
                }
                Request::Write { ptr, len } => write(ptr, clamp_u32(len.min(write_cap)), ov),
                Request::WriteAt { ptr, len, offset } => {
                    set_offset(ov, offset);
                    write(ptr, clamp_u32(len), ov)
                }
                Request::DirectoryChanges { ptr, len, recursive } => ReadDirectoryChangesW(
                    h,
                    ptr.cast(),
                    clamp_u32(len),
                    BOOL::from(recursive),
                    DIRECTORY_FILTER,
                    std::ptr::null_mut(),
                    ov,
                    routine,
                ),
                _ => {
                    self.slots.free(slot);
                    return Err(io::ErrorKind::Unsupported.into());
                }
            }
        };
        if signalled {
            self.unscanned_start = true;
        }
        if ok == 0 {
            let e = io::Error::last_os_error();
            // Without a routine, "pending" is reported as a failure.
            if !(signalled && e.raw_os_error() == Some(ERROR_IO_PENDING as i32)) {
                self.slots.free(slot);
                return Err(e);
            }
        }
        if signalled {
            self.signalled.push(slot);
        }
        Ok(slot)
    }

    /// Waits (alertably) until the routine of `slot` has run, at most
    /// `limit`; then takes the slot back and returns (error, bytes). `None`:
    /// the routine did not come in time (the slot stays in flight).
    fn wait_slot(&mut self, slot: *mut Slot, limit: Duration) -> Option<(u32, u32)> {
        let deadline = std::time::Instant::now() + limit;
        // SAFETY: the slot is live; only this thread writes the flag.
        let signalled = unsafe { (*slot).signalled };
        loop {
            // SAFETY: an alertable zero sleep runs this thread's queued routines.
            unsafe { SleepEx(0, 1) };
            if signalled {
                check_signalled(&self.sources, slot);
            }
            // SAFETY: the routine (or `check_signalled`) sets `done` on this thread.
            if unsafe { (*slot).done } {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            // SAFETY: as above.
            unsafe { SleepEx(1, 1) };
        }
        if signalled {
            self.signalled.retain(|&s| s != slot);
        } else {
            overlapped::take_slot(slot);
        }
        // SAFETY: the routine has run: the slot is ours again.
        let done = unsafe { ((*slot).error, (*slot).bytes) };
        self.slots.free(slot);
        Some(done)
    }

    /// `Immediate` on a handle: what can move now, without waiting for more.
    fn attempt_handle(&mut self, id: SourceId, token: u64, req: Request) -> Completion {
        let Some(src) = self.sources.get(Key::from_u64(id.0, 0)) else {
            return Completion::new(token, Err(bad_handle()));
        };
        let h = src.sock as HANDLE;
        let req = match req {
            Request::Read { ptr, len } => {
                let mut avail: u32 = 0;
                // SAFETY: asks how many bytes a pipe holds, reading none.
                let is_pipe = unsafe {
                    PeekNamedPipe(
                        h,
                        std::ptr::null_mut(),
                        0,
                        std::ptr::null_mut(),
                        &mut avail,
                        std::ptr::null_mut(),
                    )
                } != 0;
                if is_pipe && avail == 0 {
                    return Completion::new(token, Err(io::ErrorKind::WouldBlock.into()));
                }
                let len = if is_pipe { len.min(avail as usize) } else { len };
                Request::Read { ptr, len }
            }
            other => other,
        };
        let writing_pipe = matches!(req, Request::Write { .. });
        let slot = match self.start_handle_request(id, token, &req, false) {
            Ok(slot) => slot,
            Err(e) => return Completion::new(token, Err(e)),
        };
        // Reads of available pipe data and file requests finish promptly. A
        // pipe write that does not finish at once is cancelled: what it wrote
        // so far is the result (nothing is lost on a byte stream).
        let limit = if writing_pipe {
            Duration::ZERO
        } else {
            IMMEDIATE_FILE_WAIT
        };
        let (error, bytes) = match self.wait_slot(slot, limit) {
            Some(r) => r,
            None => {
                // SAFETY: cancels our own in-flight request on our handle.
                unsafe { CancelIoEx(h, &(*slot).ov) };
                match self.wait_slot(slot, CANCEL_WAIT) {
                    Some(r) => r,
                    None => {
                        // The OS still holds the buffer: the op must not
                        // complete now. Leave the slot to `reap` with a token
                        // that names no operation, and report "would block".
                        // SAFETY: only the token of our in-flight slot changes.
                        unsafe { (*slot).token = u64::MAX };
                        return Completion::new(token, Err(io::ErrorKind::WouldBlock.into()));
                    }
                }
            }
        };
        let result = if error == 0 || (error == ERROR_OPERATION_ABORTED && bytes > 0) {
            Ok(bytes as usize)
        } else if error == ERROR_OPERATION_ABORTED {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Err(io::Error::from_raw_os_error(error as i32))
        };
        Completion::new(token, result)
    }

    fn start_overlapped(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion> {
        let reading = req.is_reading();
        let src = self.sources.get(Key::from_u64(id.0, 0)).expect("checked by submit");
        let signalled = !self.pump_messages;
        if src.handle {
            // WriteFileEx has no gathering form: one slice per transfer.
            let req = first_slice(req);
            return match self.start_handle_request(id, token, &req, signalled) {
                Ok(slot) => {
                    self.park_in_flight(id, token, slot, reading);
                    None
                }
                Err(e) => Some(Completion::new(token, Err(e))),
            };
        }
        let (sock, datagram) = (src.sock, src.datagram);
        let slot = self.slots.alloc(token, id, reading);
        let event = self.waker.event.0;
        let routine: LPWSAOVERLAPPED_COMPLETION_ROUTINE = if signalled { None } else { Some(on_socket_done) };
        let req_kind = if matches!(req, Request::RecvFrom { .. }) {
            ReqKind::RecvFrom
        } else {
            ReqKind::Other
        };
        // SAFETY: `slot` is a live, boxed slot that stays allocated until its
        // completion routine has run; the buffers belong to the driver, which
        // keeps them alive until the completion is reaped (see sys/mod.rs).
        let rc = unsafe {
            let s = &mut *slot;
            if signalled {
                // Attached: the OS signals the waker's event instead of
                // queueing a routine (see `check_signalled`).
                s.signalled = true;
                s.ov.hEvent = event;
                s.ov.Internal = STATUS_PENDING as usize;
            }
            let ov = &mut s.ov as *mut _;
            match req {
                Request::Read { ptr, len } => {
                    s.len = len;
                    let buf = WSABUF {
                        len: len.min(u32::MAX as usize) as u32,
                        buf: ptr,
                    };
                    WSARecv(sock, &buf, 1, std::ptr::null_mut(), &mut s.flags, ov, routine)
                }
                Request::Readable => {
                    let buf = WSABUF {
                        len: 0,
                        buf: std::ptr::null_mut(),
                    };
                    if datagram {
                        s.flags = MSG_PEEK as u32;
                        s.peek = true;
                    }
                    WSARecv(sock, &buf, 1, std::ptr::null_mut(), &mut s.flags, ov, routine)
                }
                Request::Write { ptr, len } => {
                    let buf = WSABUF {
                        len: len.min(MAX_SEND) as u32,
                        buf: ptr as *mut u8,
                    };
                    WSASend(sock, &buf, 1, std::ptr::null_mut(), 0, ov, routine)
                }
                Request::WriteVectored { slices, count } => {
                    // `IoSlice` has the layout of `WSABUF`, and the provider
                    // captures the array before WSASend returns. As many
                    // slices as fit in MAX_SEND (at least one, clamped).
                    let all = std::slice::from_raw_parts(slices, count);
                    let mut total = 0;
                    let fit = all
                        .iter()
                        .take_while(|b| {
                            total += b.len();
                            total <= MAX_SEND
                        })
                        .count();
                    if fit == 0 {
                        let first = all.first().map_or(&[][..], |b| &b[..]);
                        let buf = WSABUF {
                            len: first.len().min(MAX_SEND) as u32,
                            buf: first.as_ptr().cast_mut(),
                        };
                        WSASend(sock, &buf, 1, std::ptr::null_mut(), 0, ov, routine)
                    } else {
                        WSASend(
                            sock,
                            slices.cast::<WSABUF>(),
                            fit as u32,
                            std::ptr::null_mut(),
                            0,
                            ov,
                            routine,
                        )
                    }
                }
                Request::RecvFrom { ptr, len } => {
                    s.len = len;
                    let buf = WSABUF {
                        len: len.min(u32::MAX as usize) as u32,
                        buf: ptr,
                    };
                    s.want_from = true;
                    WSARecvFrom(
                        sock,
                        &buf,
                        1,
                        std::ptr::null_mut(),
                        &mut s.flags,
                        (&mut s.from as *mut SOCKADDR_STORAGE).cast::<SOCKADDR>(),
                        &mut s.from_len,
                        ov,
                        routine,
                    )
                }
                Request::SendTo { ptr, len, to } => {
                    let buf = WSABUF {
                        len: len.min(u32::MAX as usize) as u32,
                        buf: ptr as *mut u8,
                    };
                    // The slot keeps its own copy: the request outlives the call.
                    // A non-null `to` points to the op's boxed address.
                    s.to = to.as_ref().cloned();
                    match &s.to {
                        Some(addr) => WSASendTo(
                            sock,
                            &buf,
                            1,
                            std::ptr::null_mut(),
                            0,
                            addr.as_ptr().cast(),
                            addr.len(),
                            ov,
                            routine,
                        ),
                        None => WSASend(sock, &buf, 1, std::ptr::null_mut(), 0, ov, routine),
                    }
                }
                Request::Accept | Request::Connect(_) => unreachable!("handled by submit"),
                Request::ReadAt { .. }
                | Request::WriteAt { .. }
                | Request::DirectoryChanges { .. }
                | Request::Writable => {
                    self.slots.free(slot);
                    return Some(Completion::new(token, Err(io::ErrorKind::Unsupported.into())));
                }
            }
        };
        if signalled {
            self.unscanned_start = true;
        }
        let mut tracked = false;
        if rc == SOCKET_ERROR {
            let e = last_wsa_error();
            if e.raw_os_error() == Some(WSAEMSGSIZE) {
                // A datagram longer than the buffer, received (truncated) at
                // once. Wine still queues the routine for it; Windows
                // documents that no routine follows an immediate error. Look
                // for the routine; without it, complete now and leave the
                // slot to a routine that may still come (its completion then
                // names no operation and is dropped). A signalled request
                // is looked at the same way.
                if signalled {
                    self.signalled.push(slot);
                    tracked = true;
                }
                // SAFETY: an alertable zero sleep runs queued routines.
                unsafe { SleepEx(0, 1) };
                if signalled {
                    check_signalled(&self.sources, slot);
                }
                // SAFETY: the routine sets `done` on this thread.
                if !unsafe { (*slot).done } {
                    // SAFETY: the slot stays allocated; only its token changes.
                    let (len, from) = unsafe {
                        (*slot).token = u64::MAX;
                        ((*slot).len, sock_addr(&(*slot).from, (*slot).from_len))
                    };
                    let extra = if matches!(req_kind, ReqKind::RecvFrom) {
                        Extra::From(from.into())
                    } else {
                        Extra::None
                    };
                    return Some(Completion {
                        token,
                        result: Ok(len),
                        extra,
                    });
                }
            } else if e.raw_os_error() != Some(WSA_IO_PENDING) {
                // The request never started: no routine will run for it.
                self.slots.free(slot);
                return Some(Completion::new(token, Err(e)));
            }
        }
        // Started (even if it finished at once, its routine is queued or its
        // event signalled).
        if signalled && !tracked {
            self.signalled.push(slot);
        }
        self.park_in_flight(id, token, slot, reading);
        None
    }

    /// Called when an attached driver hands the thread back to the
    /// program's loop (the end of a pump): if a signalled request was
    /// started after the last look at the signalled requests, sets the
    /// waker's event again. Starting a request clears the event it names
    /// (Windows' I/O manager does, and so does Wine), which may have erased
    /// the signal of a request that finished just before and was not reaped;
    /// the set event brings a pump that looks. (`poll` does not wait while
    /// such a start is unseen, for the same reason.)
    pub(crate) fn settle(&mut self) {
        if self.unscanned_start {
            // SAFETY: signalling our own event.
            unsafe { SetEvent(self.waker.event.0) };
        }
    }

    /// Records a started overlapped request in its source's slot.
    fn park_in_flight(&mut self, id: SourceId, token: u64, slot: *mut Slot, reading: bool) {
        let src = self.source(id).expect("live");
        let parked = Parked::InFlight { token, slot };
        if reading {
            src.read = Some(parked);
        } else {
            src.write = Some(parked);
        }
    }

    /// Registers a socket the program owns, for readiness waits only
    /// (`Polls::register`): `WSAENOTSOCK` if `raw` is no socket,
    /// `ERROR_ALREADY_EXISTS` if the driver knows the socket already (its
    /// own, or registered before).
    pub fn add_foreign_socket(&mut self, raw: usize) -> io::Result<SourceId> {
        let sock = raw as SOCKET;
        if self.by_socket.contains_key(&sock) {
            return Err(io::Error::from_raw_os_error(183)); // ERROR_ALREADY_EXISTS
        }
        let mut ty: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as i32;
        // SAFETY: reads SO_TYPE into an i32 of the given length; a value that
        // is no socket fails with WSAENOTSOCK.
        let rc = unsafe { getsockopt(sock, SOL_SOCKET, SO_TYPE, (&mut ty as *mut i32).cast(), &mut len) };
        if rc == SOCKET_ERROR {
            return Err(last_wsa_error());
        }
        let key = self.sources.insert(Source {
            sock,
            handle: false,
            pipe: false,
            datagram: ty == 2, // SOCK_DGRAM
            selected: false,
            foreign: true,
            read: None,
            write: None,
        });
        let id = SourceId(key.to_u64());
        self.by_socket.insert(sock, id);
        Ok(id)
    }

    /// Parks a readiness wait (`reading`: readable, else writable) and
    /// completes it at once if the socket is ready already. The socket is
    /// selected for the events of every parked wait first and checked
    /// afterwards, so readiness that comes in between is still posted.
    fn start_ready(&mut self, id: SourceId, token: u64, reading: bool) -> Option<Completion> {
        let src = self.source(id)?;
        let sock = src.sock;
        *(if reading { &mut src.read } else { &mut src.write }) = Some(Parked::Ready { token });
        let mask = ready_events(src);
        let result = match self.select(id, mask) {
            Ok(()) => match socket_ready(sock, !reading) {
                Ok(false) => return None,
                r => r.map(|_| 0),
            },
            Err(e) => Err(e),
        };
        if let Some(src) = self.source(id) {
            *(if reading { &mut src.read } else { &mut src.write }) = None;
        }
        self.reselect(id);
        Some(Completion::new(token, result))
    }

    /// Selects a foreign socket for the events its parked waits need (none:
    /// the association ends).
    fn reselect(&mut self, id: SourceId) {
        if let Some(src) = self.source(id) {
            let mask = ready_events(src);
            if mask != 0 || src.selected {
                let _ = self.select(id, mask);
            }
        }
    }

    /// A notification for a foreign socket: completes the waits whose
    /// direction `WSAPoll` finds ready (or failed).
    fn foreign_ready(&mut self, id: SourceId, out: &mut Vec<Completion>) {
        for reading in [true, false] {
            let Some(src) = self.source(id) else {
                return;
            };
            let sock = src.sock;
            let slot = if reading { &mut src.read } else { &mut src.write };
            let Some(Parked::Ready { token }) = *slot else {
                continue;
            };
            match socket_ready(sock, !reading) {
                Ok(false) => {}
                r => {
                    *slot = None;
                    out.push(Completion::new(token, r.map(|_| 0)));
                }
            }
        }
        self.reselect(id);
    }

    /// Starts an asynchronous `GetAddrInfoExW` lookup of `name`.
    pub fn start_lookup(&mut self, token: u64, name: &str) -> Option<Completion> {
        self.lookups.start(token, name)
    }

    /// Cancels a lookup (its completion, if any still comes, is stale).
    pub fn cancel_lookup(&mut self, token: u64) {
        self.lookups.cancel(token);
    }

    /// Installs or removes the program's message hook.
    pub fn set_message_hook(&mut self, hook: Option<MessageHook>) {
        self.hook = hook;
    }

    /// The shared state of the driver's window (for the message-loop pump).
    pub(crate) fn window_shared(&self) -> &WindowShared {
        self.window.shared()
    }

    /// Starts or stops pumping from a program's own message loop: the waker
    /// also posts `WM_PUMP`, a timer pumps every `interval_ms`, and requests
    /// started from now on signal the waker's event, on which a registered
    /// wait posts `WM_PUMP` (so their callbacks run as soon as they finish,
    /// not at the next tick). If the wait cannot be registered, the timer
    /// alone pumps.
    pub(crate) fn set_attached(&mut self, interval_ms: Option<u32>) {
        self.stop_pump_wait();
        let hwnd = if interval_ms.is_some() {
            self.window.hwnd()
        } else {
            std::ptr::null_mut()
        };
        self.waker.pump_window.store(hwnd, Ordering::Release);
        self.pump_messages = interval_ms.is_none();
        self.window.set_pump_timer(interval_ms);
        if interval_ms.is_some() {
            self.start_pump_wait();
        } else if !self.signalled.is_empty() {
            // Requests started while attached still signal the event, which
            // the driver's own wait now sees; a signal the registered wait
            // took last is given again.
            // SAFETY: signalling our own event.
            unsafe { SetEvent(self.waker.event.0) };
        }
    }

    /// Registers the wait on the waker's event that posts `WM_PUMP`.
    fn start_pump_wait(&mut self) {
        let signal = Box::new(PumpSignal {
            hwnd: self.window.hwnd(),
            posted: AtomicBool::new(false),
        });
        let mut wait: HANDLE = std::ptr::null_mut();
        // SAFETY: a wait on our own event, run again after every signal (no
        // WT_EXECUTEONLYONCE), whose callback only posts a message; its
        // context is the boxed signal, freed only after the wait is
        // unregistered (`stop_pump_wait`, also on drop).
        let ok = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                self.waker.event.0,
                Some(post_pump),
                &*signal as *const PumpSignal as *const std::ffi::c_void,
                INFINITE,
                WT_EXECUTEINWAITTHREAD,
            )
        };
        if ok != 0 {
            self.pump_wait = Some((wait, signal));
        }
    }

    /// Withdraws the registered wait, waiting for a callback that runs.
    fn stop_pump_wait(&mut self) {
        if let Some((wait, signal)) = self.pump_wait.take() {
            // SAFETY: our registered wait; INVALID_HANDLE_VALUE makes the call
            // return only once no callback runs any more.
            let ok = unsafe { UnregisterWaitEx(wait, INVALID_HANDLE_VALUE) };
            if ok == 0 {
                // A callback might still read the context: never free it.
                Box::leak(signal);
            }
        }
    }

    /// Asks for another pump of an attached driver (the last one stopped
    /// with work left); at most one such request is queued, and none while
    /// input waits (see `poll`).
    pub(crate) fn request_pump(&self) {
        match &self.pump_wait {
            Some((_, signal)) => signal.post(),
            None => {
                // SAFETY: posts to our own window.
                unsafe { PostMessageW(self.window.hwnd(), WM_PUMP, 0, 0) };
            }
        }
    }

    fn pump_messages(&mut self) -> bool {
        let mut any = false;
        let started = Instant::now();
        for _ in 0..MESSAGE_BUDGET {
            if any && started.elapsed() >= MESSAGE_TIME_BUDGET {
                break;
            }
            // SAFETY: MSG is plain data; PeekMessageW fills it.
            let mut msg: MSG = unsafe { std::mem::zeroed() };
            // SAFETY: removes the next message of any window of this thread
            // (or a thread message).
            if unsafe { PeekMessageW(&mut msg, std::ptr::null_mut(), 0, 0, PM_REMOVE) } == 0 {
                break;
            }
            any = true;
            if msg.message == WM_QUIT {
                self.quit = Some(msg.wParam as i32);
                break;
            }
            if let Some(hook) = &mut self.hook {
                if hook(&msg) {
                    continue;
                }
            }
            // SAFETY: the standard translate / dispatch of a message we took.
            unsafe {
                TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
        }
        any
    }

    /// Turns finished slots into completions and frees them.
    fn reap(&mut self, out: &mut Vec<Completion>) {
        overlapped::take_done(self.id, &mut self.reaped);
        if !self.signalled.is_empty() || self.unscanned_start {
            self.unscanned_start = false;
            let (sources, reaped) = (&self.sources, &mut self.reaped);
            self.signalled.retain(|&slot| {
                let finished = check_signalled(sources, slot);
                if finished {
                    reaped.push(slot);
                }
                !finished
            });
        }
        for slot in self.reaped.drain(..) {
            // SAFETY: the routine has run for this slot; it is ours and live.
            let s = unsafe { &mut *slot };
            let mut result = if s.error == 0 {
                Ok(s.bytes as usize)
            } else {
                Err(io::Error::from_raw_os_error(s.error as i32))
            };
            if s.error == WSAEMSGSIZE as u32 {
                // A zero-byte peek found a datagram: readable. A datagram
                // longer than the buffer filled it: truncated, as on POSIX.
                result = Ok(if s.peek { 0 } else { s.len });
            }
            let extra = if s.want_from && result.is_ok() && !s.peek {
                // SAFETY: the OS wrote a sockaddr of `from_len` bytes.
                Extra::From(unsafe { sock_addr(&s.from, s.from_len) }.into())
            } else {
                Extra::None
            };
            let (token, source, reading) = (s.token, s.source, s.reading);
            self.slots.free(slot);
            if let Some(src) = self.sources.get_mut(Key::from_u64(source.0, 0)) {
                let parked = if reading { &mut src.read } else { &mut src.write };
                if parked.as_ref().is_some_and(|p| p.token() == token) {
                    *parked = None;
                }
            }
            out.push(Completion { token, result, extra });
        }
    }

    /// Handles the `WSAAsyncSelect` notifications the window recorded.
    fn socket_events(&mut self, out: &mut Vec<Completion>) {
        let events = std::mem::take(&mut *self.window.shared().socket_events.borrow_mut());
        for (sock, event, error) in events {
            let Some(&id) = self.by_socket.get(&sock) else {
                continue;
            };
            let hwnd = self.window.hwnd();
            let Some(src) = self.source(id) else {
                continue;
            };
            if src.foreign {
                self.foreign_ready(id, out);
                continue;
            }
            if u32::from(event) & FD_ACCEPT != 0 {
                if let Some(Parked::Accept { token }) = src.read {
                    match accept_now(sock, hwnd) {
                        Err(e) if would_block(&e) => {}
                        r => {
                            src.read = None;
                            let _ = self.select(id, 0);
                            out.push(match r {
                                Ok((s, a)) => Completion {
                                    token,
                                    result: Ok(0),
                                    extra: Extra::Accepted(s, a.into()),
                                },
                                Err(e) => Completion::new(token, Err(e)),
                            });
                        }
                    }
                }
            }
            let Some(src) = self.source(id) else {
                continue;
            };
            if u32::from(event) & FD_CONNECT != 0 {
                if let Some(Parked::Connect { token }) = src.write {
                    src.write = None;
                    let _ = self.select(id, 0);
                    let result = if error == 0 {
                        Ok(0)
                    } else {
                        Err(io::Error::from_raw_os_error(i32::from(error)))
                    };
                    out.push(Completion::new(token, result));
                }
            }
        }
    }
}

impl crate::sys::Backend for Backend {
    fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn add_source(&mut self, source: &impl AsSource, kind: SourceKind) -> io::Result<SourceId> {
        let raw = source.raw_source();
        if kind == SourceKind::Fd {
            // SAFETY: asks the type of a handle the caller owns.
            let pipe = unsafe { GetFileType(raw as HANDLE) } == FILE_TYPE_PIPE;
            let key = self.sources.insert(Source {
                sock: raw,
                handle: true,
                pipe,
                datagram: false,
                selected: false,
                foreign: false,
                read: None,
                write: None,
            });
            return Ok(SourceId(key.to_u64()));
        }
        let sock = raw as SOCKET;
        let mut ty: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as i32;
        // SAFETY: reads SO_TYPE into an i32 of the given length.
        let rc = unsafe { getsockopt(sock, SOL_SOCKET, SO_TYPE, (&mut ty as *mut i32).cast(), &mut len) };
        let datagram = rc == 0 && ty == 2; // SOCK_DGRAM
        let key = self.sources.insert(Source {
            sock,
            handle: false,
            pipe: false,
            datagram,
            selected: false,
            foreign: false,
            read: None,
            write: None,
        });
        let id = SourceId(key.to_u64());
        self.by_socket.insert(sock, id);
        Ok(id)
    }

    fn remove_source(&mut self, id: SourceId) {
        let Some(entry) = self.sources.remove(Key::from_u64(id.0, 0)) else {
            return;
        };
        let src = entry;
        // A foreign socket closed before its release may have lent its
        // value to a newer socket: leave that one's entry and association.
        let ours = self.by_socket.get(&src.sock) == Some(&id);
        if !src.handle && ours {
            self.by_socket.remove(&src.sock);
        }
        if src.selected && (ours || !src.foreign) {
            // SAFETY: ends the async-select association of a socket we still own.
            unsafe { WSAAsyncSelect(src.sock, self.window.hwnd(), 0, 0) };
        }
        if src
            .read
            .iter()
            .chain(src.write.iter())
            .any(|p| matches!(p, Parked::InFlight { .. }))
        {
            // SAFETY: cancels every request on the socket; their routines still
            // run, and their slots are freed then.
            unsafe { CancelIoEx(src.sock as HANDLE, std::ptr::null()) };
        }
    }

    fn submit(&mut self, id: SourceId, token: u64, req: Request) -> Option<Completion> {
        let Some(src) = self.source(id) else {
            return Some(Completion::new(token, Err(bad_handle())));
        };
        let (sock, foreign) = (src.sock, src.foreign);
        match req {
            Request::Accept => match accept_now(sock, self.window.hwnd()) {
                Err(e) if would_block(&e) => {
                    if let Err(e) = self.select(id, FD_ACCEPT) {
                        return Some(Completion::new(token, Err(e)));
                    }
                    self.source(id).expect("live").read = Some(Parked::Accept { token });
                    None
                }
                Ok((s, a)) => Some(Completion {
                    token,
                    result: Ok(0),
                    extra: Extra::Accepted(s, a.into()),
                }),
                Err(e) => Some(Completion::new(token, Err(e))),
            },
            Request::Connect(addr) => {
                if let Err(e) = self.select(id, FD_CONNECT) {
                    return Some(Completion::new(token, Err(e)));
                }
                // SAFETY: connects with an address socket2 built.
                let rc = unsafe { connect(sock, addr.as_ptr().cast(), addr.len()) };
                if rc == 0 {
                    let _ = self.select(id, 0);
                    return Some(Completion::new(token, Ok(0)));
                }
                let e = last_wsa_error();
                if would_block(&e) {
                    self.source(id).expect("live").write = Some(Parked::Connect { token });
                    None
                } else {
                    let _ = self.select(id, 0);
                    Some(Completion::new(token, Err(e)))
                }
            }
            Request::Readable | Request::Writable if foreign || matches!(req, Request::Writable) => {
                self.start_ready(id, token, req.is_reading())
            }
            req => self.start_overlapped(id, token, req),
        }
    }

    fn attempt(&mut self, id: SourceId, token: u64, req: Request) -> Completion {
        let Some(src) = self.source(id) else {
            return Completion::new(token, Err(bad_handle()));
        };
        // One non-blocking try sends from the first slice of a vectored write.
        let req = first_slice(req);
        if src.handle {
            return self.attempt_handle(id, token, req);
        }
        let sock = src.sock;
        // SAFETY: plain non-blocking calls on a socket we own, with buffers the
        // driver owns for the duration of the call.
        let result = unsafe {
            match req {
                Request::Read { ptr, len } => check(recv(sock, ptr, clamp(len), 0)).map(|n| (n, Extra::None)),
                Request::Write { ptr, len } => check(send(sock, ptr, clamp(len), 0)).map(|n| (n, Extra::None)),
                Request::RecvFrom { ptr, len } => {
                    let mut from: SOCKADDR_STORAGE = std::mem::zeroed();
                    let mut from_len = std::mem::size_of::<SOCKADDR_STORAGE>() as i32;
                    let got = check(recvfrom(
                        sock,
                        ptr,
                        clamp(len),
                        0,
                        (&mut from as *mut SOCKADDR_STORAGE).cast(),
                        &mut from_len,
                    ));
                    // A datagram larger than the buffer fails the call but
                    // fills the buffer and names the sender: truncated, as
                    // on POSIX, with its address.
                    let got = match got {
                        Err(e) if e.raw_os_error() == Some(WSAEMSGSIZE) => Ok(len),
                        r => r,
                    };
                    got.map(|n| (n, Extra::From(sock_addr(&from, from_len).into())))
                }
                Request::SendTo { ptr, len, to } => match to.as_ref() {
                    Some(addr) => check(sendto(sock, ptr, clamp(len), 0, addr.as_ptr().cast(), addr.len())),
                    None => check(send(sock, ptr, clamp(len), 0)),
                }
                .map(|n| (n, Extra::None)),
                Request::Readable
                | Request::Writable
                | Request::Accept
                | Request::Connect(_)
                | Request::ReadAt { .. }
                | Request::WriteAt { .. }
                | Request::DirectoryChanges { .. }
                // Turned into a plain write by `first_slice` above.
                | Request::WriteVectored { .. } => Err(io::Error::from(io::ErrorKind::Unsupported)),
            }
        };
        Completion::of(token, result)
    }

    /// Cancels with `CancelIoEx` and then waits, alertably and briefly, for the
    /// request's completion routine: a cancelled socket request normally
    /// finishes at once, and once its routine has run the OS is done with the
    /// buffer, which can then go back to the caller from the cancel call,
    /// together with the bytes the request had already moved (a read that had
    /// completed before the cancel keeps its data). If the routine does not
    /// come within the bound, the request is left to finish later (`None`).
    /// Nothing is ever queued: `submit` starts each overlapped request at once.
    fn flush(&mut self) {}

    fn cancel(&mut self, id: SourceId, token: u64) -> Option<usize> {
        let src = self.source(id)?;
        let sock = src.sock;
        let mut in_flight = None;
        let mut deselect = false;
        let mut reselect = false;
        for slot in [&mut src.read, &mut src.write] {
            if slot.as_ref().is_some_and(|p| p.token() == token) {
                match slot.take().expect("checked") {
                    Parked::InFlight { slot: s, .. } => in_flight = Some(s),
                    Parked::Accept { .. } | Parked::Connect { .. } => deselect = true,
                    Parked::Ready { .. } => reselect = true,
                }
            }
        }
        if deselect {
            let _ = self.select(id, 0);
        }
        if reselect {
            self.reselect(id);
        }
        let Some(slot) = in_flight else {
            return Some(0);
        };
        // SAFETY: `slot` is in flight on `sock`; it is freed only after its
        // routine has run (here, or later in `reap`).
        unsafe { CancelIoEx(sock as HANDLE, &(*slot).ov) };
        // An aborted request reports what it had moved before the abort.
        let (_error, bytes) = self.wait_slot(slot, CANCEL_WAIT)?;
        Some(bytes as usize)
    }

    /// The exit code of a `WM_QUIT` the pump took off the queue, once.
    fn take_quit(&mut self) -> Option<i32> {
        self.quit.take()
    }

    fn take_queued_quit(&mut self) -> Option<i32> {
        if let Some(code) = self.quit.take() {
            return Some(code);
        }
        if !self.pump_messages {
            // Attached: the program's own loop takes its WM_QUIT.
            return None;
        }
        // SAFETY: MSG is plain data; PeekMessageW fills it.
        let mut msg: MSG = unsafe { std::mem::zeroed() };
        // SAFETY: removes only a WM_QUIT of this thread's queue, if there is one.
        let found = unsafe { PeekMessageW(&mut msg, std::ptr::null_mut(), WM_QUIT, WM_QUIT, PM_REMOVE) } != 0;
        found.then_some(msg.wParam as i32)
    }

    fn keeps_loop_alive(&mut self) -> bool {
        self.pump_messages && thread_has_window(self.window.hwnd())
    }

    /// Waits, reaps completion routines, pumps messages. Returns whether a
    /// message was dispatched (which counts as activity for the driver).
    /// Waits for completions (and window messages). `_requests` is for
    /// readiness backends, which rebuild parked requests; every request here
    /// is in flight in the OS with its own `OVERLAPPED`.
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        _requests: &mut dyn FnMut(u64) -> Option<Request>,
    ) -> io::Result<bool> {
        if let Some((_, signal)) = &self.pump_wait {
            // Attached: a pump. Requests that finish from now on post the
            // next one — unless input or paint messages wait, which a posted
            // message would keep waiting (they are taken after posted
            // messages); then the pump timer brings the next pump.
            if !input_waiting() {
                signal.posted.store(false, Ordering::Release);
            }
        }
        let pending = overlapped::any_done()
            || self.unscanned_start
            || self.lookups.any_done()
            || !self.window.shared().socket_events.borrow().is_empty();
        let ms = if pending {
            0
        } else {
            match timeout {
                None => INFINITE,
                Some(d) if d.is_zero() => 0,
                Some(d) => {
                    // Relative due time in 100 ns units (negative = relative),
                    // rounded up so nothing fires early.
                    let due = -(i64::try_from(d.as_nanos().div_ceil(100)).unwrap_or(i64::MAX));
                    // SAFETY: arms our own timer once, without a routine.
                    let ok: BOOL = unsafe { SetWaitableTimer(self.timer, &due, 0, None, std::ptr::null(), 0) };
                    if ok != 0 {
                        INFINITE
                    } else {
                        (d.as_millis() + 1).min(u128::from(INFINITE - 1)) as u32
                    }
                }
            }
        };
        let handles = [self.waker.event.0, self.timer];
        // SAFETY: waits on two handles we own; completion routines run here.
        let rc = unsafe {
            MsgWaitForMultipleObjectsEx(
                handles.len() as u32,
                handles.as_ptr(),
                ms,
                QS_ALLINPUT,
                MWMO_ALERTABLE | MWMO_INPUTAVAILABLE,
            )
        };
        if rc == WAIT_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.reap(out);
        let dispatched = self.pump_messages && self.pump_messages();
        // A window procedure may have waited alertably: reap again.
        self.reap(out);
        self.socket_events(out);
        self.lookups.drain(out);
        Ok(dispatched)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Dropped while attached: no callback may post to the window any more.
        self.stop_pump_wait();
        self.lookups.shut_down();
        // Requests still in flight (their sockets are closed by now, so they
        // finish promptly) must complete before their slots are freed: wait
        // alertably for their routines, for a bounded time.
        let mut scratch = Vec::new();
        for _ in 0..200 {
            if self.slots.in_flight == 0 {
                break;
            }
            // SAFETY: an alertable sleep lets the pending routines run.
            unsafe { SleepEx(10, 1) };
            self.reap(&mut scratch);
        }
        if self.slots.in_flight != 0 {
            // The OS may still write into them: leak rather than free.
            self.slots.leak();
        }
        // SAFETY: the timer is ours.
        unsafe { CloseHandle(self.timer) };
    }
}

/// The `WSAAsyncSelect` events the parked readiness waits of a source need.
fn ready_events(src: &Source) -> u32 {
    let mut mask = 0;
    if matches!(src.read, Some(Parked::Ready { .. })) {
        // Not FD_OOB: `WSAPoll`'s POLLRDNORM does not report urgent data,
        // and re-selecting would post the persistent event again at once.
        mask |= FD_READ | FD_ACCEPT | FD_CLOSE;
    }
    if matches!(src.write, Some(Parked::Ready { .. })) {
        mask |= FD_WRITE | FD_CONNECT | FD_CLOSE;
    }
    mask
}

/// Whether a socket is readable (`write` false: data, a connection to
/// accept, the end of the stream) or writable now, by a zero-timeout
/// `WSAPoll`; hang-ups and errors count as ready (the next call reports
/// them), a closed socket is `WSAENOTSOCK`.
fn socket_ready(sock: SOCKET, write: bool) -> io::Result<bool> {
    let mut pfd = WSAPOLLFD {
        fd: sock,
        events: if write { POLLWRNORM } else { POLLRDNORM },
        revents: 0,
    };
    // SAFETY: one live WSAPOLLFD, a zero timeout.
    let rc = unsafe { WSAPoll(&mut pfd, 1, 0) };
    if rc == SOCKET_ERROR {
        return Err(last_wsa_error());
    }
    if pfd.revents & POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(WSAENOTSOCK));
    }
    Ok(rc > 0 && pfd.revents != 0)
}

fn bad_handle() -> io::Error {
    io::Error::from_raw_os_error(10038) // WSAENOTSOCK
}

fn clamp_u32(len: usize) -> u32 {
    len.min(u32::MAX as usize) as u32
}

fn clamp(len: usize) -> i32 {
    len.min(i32::MAX as usize) as i32
}

/// A vectored write as a plain write of its first slice (for the paths that
/// have no gathering form); any other request unchanged.
fn first_slice(req: Request) -> Request {
    match req {
        Request::WriteVectored { slices, count } => {
            // SAFETY: the driver's op keeps `count` slices alive at `slices`
            // while the request exists (see sys/mod.rs).
            let all = unsafe { std::slice::from_raw_parts(slices, count) };
            let first = all.first().map_or(&[][..], |b| &b[..]);
            Request::Write {
                ptr: first.as_ptr(),
                len: first.len(),
            }
        }
        other => other,
    }
}

fn check(rc: i32) -> io::Result<usize> {
    if rc == SOCKET_ERROR {
        Err(last_wsa_error())
    } else {
        Ok(rc as usize)
    }
}

/// One non-blocking `accept`; the new socket leaves the listener's
/// async-select association (which it inherits) and stays non-blocking.
fn accept_now(listener: SOCKET, hwnd: HWND) -> io::Result<(socket2::Socket, SockAddr)> {
    // SAFETY: accept into zeroed storage of the length we pass.
    unsafe {
        let mut storage: SOCKADDR_STORAGE = std::mem::zeroed();
        let mut len = std::mem::size_of::<SOCKADDR_STORAGE>() as i32;
        let s = accept(listener, (&mut storage as *mut SOCKADDR_STORAGE).cast(), &mut len);
        if s == INVALID_SOCKET {
            return Err(last_wsa_error());
        }
        WSAAsyncSelect(s, hwnd, 0, 0);
        let socket = socket2::Socket::from_raw_socket(s as _);
        Ok((socket, sock_addr(&storage, len)))
    }
}
