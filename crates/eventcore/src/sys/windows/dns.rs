//! Name resolution on Windows: `GetAddrInfoExW` with a completion routine
//! (asynchronous, cancellable with `GetAddrInfoExCancel`), driven by the
//! backend — never the blocking `GetAddrInfoW` on the loop thread.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Networking::WinSock::{
    FreeAddrInfoExW, GetAddrInfoExCancel, GetAddrInfoExW, ADDRINFOEXW, AF_INET, AF_INET6, AF_UNSPEC, NS_ALL, SOCKADDR,
    SOCKADDR_IN, SOCKADDR_IN6, SOCK_STREAM, WSAEINVAL, WSAHOST_NOT_FOUND, WSANO_DATA, WSATRY_AGAIN, WSA_IO_PENDING,
    WSA_NOT_ENOUGH_MEMORY,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

use super::backend::Waker;
use crate::error::Error;
use crate::sys::{Completion, Extra, LookupStart};
use crate::Status;

/// Starts an asynchronous `GetAddrInfoExW` lookup of `name` in the backend.
pub(crate) fn start(backend: &mut super::Backend, token: u64, name: &str) -> LookupStart {
    LookupStart::Backend(backend.start_lookup(token, name))
}

/// Cancels a lookup the backend runs (a completion that still comes is stale).
pub(crate) fn cancel(backend: &mut super::Backend, token: u64) {
    backend.cancel_lookup(token);
}

/// The resolver error behind an I/O error of a lookup completion: its
/// WinSock code.
pub(crate) fn resolver_error(e: std::io::Error) -> Error {
    resolver_error_code(e.raw_os_error().unwrap_or(0))
}

/// The contract's error for a resolver failure, with its WinSock code.
fn resolver_error_code(rc: i32) -> Error {
    let status = match rc {
        WSAHOST_NOT_FOUND | WSANO_DATA => Status::NotFound,
        WSATRY_AGAIN => Status::Unreachable,
        WSA_NOT_ENOUGH_MEMORY => Status::ResourceExhausted,
        WSAEINVAL => Status::InvalidArgument,
        _ => Status::Other,
    };
    let message = std::io::Error::from_raw_os_error(rc).to_string();
    Error::resolver(status, rc, message)
}

/// The IP address in a resolver result entry.
///
/// # Safety
/// `addr` points to a sockaddr of `family`.
unsafe fn ip_of(family: i32, addr: *const SOCKADDR) -> Option<IpAddr> {
    // SAFETY: see the function's contract.
    unsafe {
        match family as u16 {
            AF_INET => {
                let sa = &*(addr as *const SOCKADDR_IN);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.S_un.S_addr))))
            }
            AF_INET6 => {
                let sa = &*(addr as *const SOCKADDR_IN6);
                Some(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.u.Byte)))
            }
            _ => None,
        }
    }
}

/// Where finished lookups go: filled by the completion routine (which may run
/// on a system thread), drained by the backend after its wait.
struct LookupShared {
    done: Mutex<Vec<usize>>,
    waker: Waker,
}

/// One `GetAddrInfoExW` in flight. Boxed so the OVERLAPPED, the result
/// pointer, the cancel handle and the name never move until the routine ran.
#[repr(C)]
struct LookupSlot {
    ov: OVERLAPPED,
    token: u64,
    error: u32,
    result: *mut ADDRINFOEXW,
    handle: HANDLE,
    name: Vec<u16>,
    shared: *const LookupShared,
}

/// The asynchronous lookups of one backend.
pub(crate) struct Lookups {
    shared: Arc<LookupShared>,
    /// Slots in flight, by address.
    pending: HashMap<usize, Box<LookupSlot>>,
}

unsafe extern "system" fn on_lookup_done(error: u32, _bytes: u32, ov: *const OVERLAPPED) {
    let slot = ov as *mut LookupSlot;
    // SAFETY: `ov` is the first field of a boxed LookupSlot that stays alive
    // until the backend took it off the done list; its `shared` pointer is a
    // counted reference released only then.
    unsafe {
        (*slot).error = error;
        let shared = &*(*slot).shared;
        // A poisoned lock only means another thread panicked while pushing an
        // address; the list is still a plain list.
        let mut done = shared.done.lock().unwrap_or_else(|p| p.into_inner());
        done.push(slot as usize);
        drop(done);
        shared.waker.wake();
    }
}

impl Lookups {
    pub fn new(waker: Waker) -> Lookups {
        Lookups {
            shared: Arc::new(LookupShared {
                done: Mutex::new(Vec::new()),
                waker,
            }),
            pending: HashMap::new(),
        }
    }

    /// Starts resolving `name`; a completion comes from `drain` (or at once,
    /// for a failure that happens before anything started).
    pub fn start(&mut self, token: u64, name: &str) -> Option<Completion> {
        if name.contains('\0') {
            return Some(Completion::new(
                token,
                Err(std::io::Error::from_raw_os_error(WSAEINVAL)),
            ));
        }
        super::wsa_startup();
        let mut slot = Box::new(LookupSlot {
            // SAFETY: all-zero is a valid OVERLAPPED.
            ov: unsafe { std::mem::zeroed() },
            token,
            error: 0,
            result: std::ptr::null_mut(),
            handle: std::ptr::null_mut(),
            name: name.encode_utf16().chain(std::iter::once(0)).collect(),
            shared: Arc::into_raw(self.shared.clone()),
        });
        // SAFETY: all-zero hints are valid; we set family and socket type.
        let mut hints: ADDRINFOEXW = unsafe { std::mem::zeroed() };
        hints.ai_family = AF_UNSPEC as i32;
        hints.ai_socktype = SOCK_STREAM as i32;
        let ptr: *mut LookupSlot = &mut *slot;
        // SAFETY: the name, result pointer, OVERLAPPED and handle live in the
        // boxed slot, which is kept until the routine has run.
        let rc = unsafe {
            GetAddrInfoExW(
                (*ptr).name.as_ptr(),
                std::ptr::null(),
                NS_ALL,
                std::ptr::null(),
                &hints,
                &mut (*ptr).result,
                std::ptr::null(),
                &(*ptr).ov,
                Some(on_lookup_done),
                &mut (*ptr).handle,
            )
        };
        if rc == WSA_IO_PENDING {
            self.pending.insert(ptr as usize, slot);
            return None;
        }
        if rc == 0 {
            // Finished synchronously: Windows then calls no routine. Should
            // one come anyway, it must find live memory: the slot is leaked.
            let result = slot.result;
            Box::leak(slot);
            return Some(Self::complete(token, 0, result));
        }
        // Failed before starting: no routine will run.
        // SAFETY: releases the count taken above; the slot is dropped here.
        unsafe { drop(Arc::from_raw(slot.shared)) };
        Some(Completion::new(token, Err(std::io::Error::from_raw_os_error(rc))))
    }

    fn complete(token: u64, error: u32, result: *mut ADDRINFOEXW) -> Completion {
        if error != 0 {
            if !result.is_null() {
                // SAFETY: a list the resolver returned, freed once.
                unsafe { FreeAddrInfoExW(result) };
            }
            return Completion::new(token, Err(std::io::Error::from_raw_os_error(error as i32)));
        }
        let mut out = Vec::new();
        let mut cur = result;
        while !cur.is_null() {
            // SAFETY: walks the list the resolver returned, valid until freed.
            let ai = unsafe { &*cur };
            // SAFETY: ai_addr points to a sockaddr of ai_family.
            if let Some(ip) = unsafe { ip_of(ai.ai_family, ai.ai_addr) } {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            cur = ai.ai_next;
        }
        if !result.is_null() {
            // SAFETY: as above.
            unsafe { FreeAddrInfoExW(result) };
        }
        Completion {
            token,
            result: Ok(out.len()),
            extra: Extra::Addresses(out),
        }
    }

    /// Asks the resolver to stop the lookup of `token`; its routine still runs
    /// (and its completion names no operation any more).
    pub fn cancel(&mut self, token: u64) {
        if let Some(slot) = self.pending.values().find(|s| s.token == token) {
            // SAFETY: the handle GetAddrInfoExW gave us for this lookup.
            unsafe { GetAddrInfoExCancel(&slot.handle) };
        }
    }

    /// Whether finished lookups wait to be drained.
    pub fn any_done(&self) -> bool {
        !self.shared.done.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Turns finished lookups into completions.
    pub fn drain(&mut self, out: &mut Vec<Completion>) {
        let done = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|p| p.into_inner()));
        for addr in done {
            let Some(slot) = self.pending.remove(&addr) else {
                continue;
            };
            out.push(Self::complete(slot.token, slot.error, slot.result));
            // SAFETY: releases the slot's counted reference; the routine has run.
            unsafe { drop(Arc::from_raw(slot.shared)) };
        }
    }

    /// Cancels everything and waits (alertably, bounded) for the routines;
    /// slots whose routine never comes are leaked rather than freed.
    pub fn shut_down(&mut self) {
        let tokens: Vec<u64> = self.pending.values().map(|s| s.token).collect();
        for t in tokens {
            self.cancel(t);
        }
        let mut scratch = Vec::new();
        for _ in 0..200 {
            if self.pending.is_empty() {
                return;
            }
            // SAFETY: an alertable sleep lets routines queued to this thread run.
            unsafe { windows_sys::Win32::System::Threading::SleepEx(10, 1) };
            self.drain(&mut scratch);
        }
        for (_, slot) in self.pending.drain() {
            Box::leak(slot);
        }
    }
}
