//! Driver-owned OVERLAPPED slots and the completion routine.
//!
//! Every overlapped request gets a [`Slot`] whose first field is the
//! OVERLAPPED the OS writes to, followed by everything else the request needs
//! to stay put until it completes (the sender address of a `WSARecvFrom`, the
//! destination of a `WSASendTo`, the flags word). Slots are boxed, so their
//! addresses never move, and reused, so a warm loop does not allocate.
//!
//! The OS runs the completion routine on the loop thread during an alertable
//! wait. The routine only records the outcome in the slot and pushes the
//! slot's address onto a thread-local list; the backend turns the list into
//! completions after the wait, from ordinary frames — no user code ever runs
//! inside a completion routine, so nothing can unwind through it.
//!
//! Requests started while the driver is attached to a program's own message
//! loop (whose `GetMessage` is not an alertable wait) take no routine: the
//! OS signals the event in their OVERLAPPED instead, and the backend reads
//! the outcome from the OVERLAPPED (`Slot::signalled`; see `backend.rs`).
//!
//! A slot is only freed when its routine has run: after a cancel, a close or
//! a release the OS may still write into it (and into the request's buffer,
//! which the driver keeps alive for the same reason).

use std::cell::Cell;

use socket2::SockAddr;
use windows_sys::Win32::Networking::WinSock::SOCKADDR_STORAGE;
use windows_sys::Win32::System::IO::OVERLAPPED;

use crate::sys::SourceId;

#[repr(C)]
pub(crate) struct Slot {
    /// Must stay the first field: the routine gets a pointer to it.
    pub ov: OVERLAPPED,
    /// The backend that owns the slot (several drivers may share a thread in turn).
    pub owner: u64,
    pub index: usize,
    pub token: u64,
    pub source: SourceId,
    pub reading: bool,
    /// Filled by the routine.
    pub done: bool,
    pub error: u32,
    pub bytes: u32,
    /// WSARecv flags (in and out).
    pub flags: u32,
    /// The sender of a received datagram.
    pub from: SOCKADDR_STORAGE,
    pub from_len: i32,
    pub want_from: bool,
    /// The destination of a datagram send.
    pub to: Option<SockAddr>,
    /// A zero-byte peek on a datagram socket: "too large" means "readable".
    pub peek: bool,
    /// The buffer length of a receive ("too large" means "truncated to it").
    pub len: usize,
    /// The target of a zero-byte `ReadFileEx` (a wait for data on a pipe).
    pub zero: [u8; 1],
    /// Started while the driver was attached to a program's message loop:
    /// no routine runs for it; the OS signals the OVERLAPPED's event (the
    /// waker's) and the backend looks at the OVERLAPPED to see it finished.
    pub signalled: bool,
}

thread_local! {
    /// Slots whose completion routine has run and that no backend reaped yet.
    static DONE: Cell<Vec<*mut Slot>> = const { Cell::new(Vec::new()) };
}

/// The completion routine of every WinSock request.
///
/// # Safety
/// `ov` is the first field of a live [`Slot`]: the backend hands the OS only
/// such pointers and frees a slot only after this routine has run for it.
pub(crate) unsafe extern "system" fn on_socket_done(error: u32, bytes: u32, ov: *mut OVERLAPPED, _flags: u32) {
    let slot = ov.cast::<Slot>();
    // SAFETY: see the function's contract; only this thread touches the slot.
    unsafe {
        (*slot).error = error;
        (*slot).bytes = bytes;
        (*slot).done = true;
    }
    // Cell::take/set cannot panic, so nothing unwinds out of the routine.
    DONE.with(|d| {
        let mut list = d.take();
        list.push(slot);
        d.set(list);
    });
}

/// The completion routine of `ReadFileEx`, `WriteFileEx` and
/// `ReadDirectoryChangesW` (the same as [`on_socket_done`] without flags).
///
/// # Safety
/// As for [`on_socket_done`].
pub(crate) unsafe extern "system" fn on_file_done(error: u32, bytes: u32, ov: *mut OVERLAPPED) {
    // SAFETY: the same contract as on_socket_done.
    unsafe { on_socket_done(error, bytes, ov, 0) }
}

/// Whether completion routines have finished slots that wait to be reaped.
pub(crate) fn any_done() -> bool {
    DONE.with(|d| {
        let list = d.take();
        let any = !list.is_empty();
        d.set(list);
        any
    })
}

/// Takes the finished slots of backend `owner`, leaving those of others.
pub(crate) fn take_done(owner: u64, out: &mut Vec<*mut Slot>) {
    DONE.with(|d| {
        let mut list = d.take();
        list.retain(|&slot| {
            // SAFETY: the list only holds live slots (see `on_socket_done`).
            if unsafe { (*slot).owner } == owner {
                out.push(slot);
                false
            } else {
                true
            }
        });
        d.set(list);
    });
}

/// Takes one finished slot off the list (a cancel that reaped it at once).
pub(crate) fn take_slot(slot: *mut Slot) {
    DONE.with(|d| {
        let mut list = d.take();
        list.retain(|&s| s != slot);
        d.set(list);
    });
}

/// The slots of one backend: boxed so they never move, recycled through a free list.
pub(crate) struct Slots {
    owner: u64,
    all: Vec<Box<Slot>>,
    free: Vec<usize>,
    pub in_flight: usize,
}

impl Slots {
    pub fn new(owner: u64) -> Slots {
        Slots {
            owner,
            all: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
        }
    }

    /// A fresh slot for a request; its OVERLAPPED is zeroed.
    pub fn alloc(&mut self, token: u64, source: SourceId, reading: bool) -> *mut Slot {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let index = self.all.len();
                // SAFETY: OVERLAPPED and SOCKADDR_STORAGE are plain C data for
                // which all-zero is valid; the Option is set right below.
                let mut slot: Box<Slot> = Box::new(unsafe { std::mem::zeroed() });
                slot.to = None;
                slot.index = index;
                self.all.push(slot);
                index
            }
        };
        self.in_flight += 1;
        let slot = &mut self.all[index];
        // SAFETY: as above, all-zero is a valid OVERLAPPED / address.
        slot.ov = unsafe { std::mem::zeroed() };
        slot.owner = self.owner;
        slot.token = token;
        slot.source = source;
        slot.reading = reading;
        slot.done = false;
        slot.error = 0;
        slot.bytes = 0;
        slot.flags = 0;
        slot.from_len = std::mem::size_of::<SOCKADDR_STORAGE>() as i32;
        slot.want_from = false;
        slot.to = None;
        slot.peek = false;
        slot.len = 0;
        slot.signalled = false;
        &mut **slot as *mut Slot
    }

    /// Returns a slot whose routine has run (or whose request never started).
    pub fn free(&mut self, slot: *mut Slot) {
        // SAFETY: `slot` came from `alloc` of this table and is not in flight.
        let index = unsafe { (*slot).index };
        self.all[index].to = None;
        self.free.push(index);
        self.in_flight -= 1;
    }

    /// Leaks every slot (used only if the OS never completed them: freeing
    /// memory it may still write to would be worse).
    pub fn leak(&mut self) {
        for slot in self.all.drain(..) {
            Box::leak(slot);
        }
        self.free.clear();
    }
}
