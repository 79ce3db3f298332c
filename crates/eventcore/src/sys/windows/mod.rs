//! The WinAPI backend: overlapped socket I/O whose completion routines run
//! during the loop's alertable wait, and a wait that also pumps the thread's
//! window messages.
//!
//! - `backend.rs`: the wait (`MsgWaitForMultipleObjectsEx`), the message pump,
//!   the request dispatch and the waker.
//! - `overlapped.rs`: the driver-owned OVERLAPPED slots and the completion
//!   routine, which only records `(slot, error, bytes)`.
//! - `window.rs`: the message-only window that receives `WSAAsyncSelect`
//!   notifications (accept, connect) and the pump requests of a driver that
//!   is attached to a program's own message loop.
//! - `dns.rs`: `GetAddrInfoW` for the worker pool.
//! - `errors.rs`: Win32 / WinSock codes → the contract's statuses.

mod backend;
pub(crate) mod dns;
mod errors;
mod overlapped;
mod window;

pub(crate) use backend::{Backend, Waker};
pub(crate) use errors::status_of_code;

/// Worker threads need no signal mask on Windows (console control events are
/// delivered to a thread of their own).
pub(crate) fn block_signals_in_worker() {}

/// Starts WinSock once per process (version 2.2); later calls are no-ops.
pub(crate) fn wsa_startup() {
    use std::sync::Once;
    static START: Once = Once::new();
    START.call_once(|| {
        // SAFETY: WSAStartup fills the WSADATA we pass; the data is not needed.
        unsafe {
            let mut data: windows_sys::Win32::Networking::WinSock::WSADATA = std::mem::zeroed();
            windows_sys::Win32::Networking::WinSock::WSAStartup(0x202, &mut data);
        }
    });
}
