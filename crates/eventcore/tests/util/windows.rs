//! Windows helpers of the GUI tests: wide strings, and a watchdog for the
//! modal message boxes some scenarios open.

use std::thread::JoinHandle;
use std::time::Duration;

use windows_sys::Win32::UI::WindowsAndMessaging::{FindWindowW, PostMessageW, WM_CLOSE};

/// `s` as a NUL-terminated UTF-16 string.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Starts a thread that closes the window titled `title` after `limit`, in
/// case the test never does (it then fails).
pub fn box_watchdog(title: Vec<u16>, limit: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        // SAFETY: finds and closes the box from another thread.
        unsafe {
            let bx = FindWindowW(std::ptr::null(), title.as_ptr());
            if !bx.is_null() {
                PostMessageW(bx, WM_CLOSE, 0, 0);
            }
        }
    })
}
