//! The driver's message-only window.
//!
//! It receives two kinds of messages: `WSAAsyncSelect` notifications
//! (`FD_ACCEPT`, `FD_CONNECT`), which the window procedure records for the
//! backend (and, when attached, follows with a pump), and pump requests (a
//! posted `WM_PUMP` or the pump timer's `WM_TIMER`), which a driver attached
//! to a program's own message loop uses to run its callbacks from that loop.
//! `WM_PUMP` comes from the waker, from the registered wait on the waker's
//! event (a request started while attached finished) and from a pump that
//! stopped with work left.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::Networking::WinSock::SOCKET;
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, GetWindowLongPtrW, KillTimer, RegisterClassExW, SetTimer,
    SetWindowLongPtrW, GWLP_USERDATA, HWND_MESSAGE, WM_APP, WM_TIMER, WNDCLASSEXW,
};

/// A `WSAAsyncSelect` notification.
pub(crate) const WM_SOCKET: u32 = WM_APP + 0x2E0;
/// "Run a zero-timeout `process_events`" (attached drivers).
pub(crate) const WM_PUMP: u32 = WM_APP + 0x2E1;
const PUMP_TIMER: usize = 1;

/// What the window procedure shares with the backend (a separate allocation,
/// so the procedure never aliases the backend itself).
#[derive(Default)]
pub(crate) struct WindowShared {
    /// (socket, FD_ event, error) in arrival order.
    pub socket_events: RefCell<Vec<(SOCKET, u16, u16)>>,
    /// Runs the attached driver's callbacks; `None` unless attached.
    pub pump: RefCell<Option<Box<dyn Fn()>>>,
}

pub(crate) struct Window {
    hwnd: HWND,
    shared: Rc<WindowShared>,
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn class_name() -> &'static [u16] {
    use std::sync::OnceLock;
    static NAME: OnceLock<Vec<u16>> = OnceLock::new();
    NAME.get_or_init(|| wide("eventcore-driver-window"))
}

fn register_class() -> io::Result<()> {
    use std::sync::OnceLock;
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // SAFETY: a plain class description with our procedure and the
        // module's instance; the name lives for the whole program.
        unsafe {
            let mut class: WNDCLASSEXW = std::mem::zeroed();
            class.cbSize = std::mem::size_of::<WNDCLASSEXW>() as u32;
            class.lpfnWndProc = Some(window_proc);
            class.hInstance = GetModuleHandleW(std::ptr::null());
            class.lpszClassName = class_name().as_ptr();
            RegisterClassExW(&class) != 0
        }
    });
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Window {
    pub fn new() -> io::Result<Window> {
        register_class()?;
        // SAFETY: creates a message-only window of our registered class.
        let hwnd = unsafe {
            CreateWindowExW(
                0,
                class_name().as_ptr(),
                std::ptr::null(),
                0,
                0,
                0,
                0,
                0,
                HWND_MESSAGE,
                std::ptr::null_mut(),
                GetModuleHandleW(std::ptr::null()),
                std::ptr::null(),
            )
        };
        if hwnd.is_null() {
            return Err(io::Error::last_os_error());
        }
        let shared = Rc::new(WindowShared::default());
        let raw = Rc::into_raw(shared.clone());
        // SAFETY: the window is ours; the pointer stays valid until Drop,
        // which clears it before releasing this count.
        unsafe { SetWindowLongPtrW(hwnd, GWLP_USERDATA, raw as isize) };
        Ok(Window { hwnd, shared })
    }

    pub fn hwnd(&self) -> HWND {
        self.hwnd
    }

    pub fn shared(&self) -> &WindowShared {
        &self.shared
    }

    /// Starts (or stops, with `None`) the periodic pump timer.
    pub fn set_pump_timer(&self, interval_ms: Option<u32>) {
        // SAFETY: timers of our own window.
        unsafe {
            match interval_ms {
                Some(ms) => {
                    SetTimer(self.hwnd, PUMP_TIMER, ms.max(1), None);
                }
                None => {
                    KillTimer(self.hwnd, PUMP_TIMER);
                }
            }
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: detach the shared state first, so a message dispatched
        // during destruction finds no pointer; then release our count.
        unsafe {
            let raw = SetWindowLongPtrW(self.hwnd, GWLP_USERDATA, 0) as *const WindowShared;
            DestroyWindow(self.hwnd);
            if !raw.is_null() {
                drop(Rc::from_raw(raw));
            }
        }
    }
}

unsafe extern "system" fn window_proc(hwnd: HWND, msg: u32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
    // SAFETY: USERDATA is null or the pointer set in `Window::new`, valid
    // until `Drop` clears it.
    let shared = unsafe { GetWindowLongPtrW(hwnd, GWLP_USERDATA) } as *const WindowShared;
    if shared.is_null() {
        // SAFETY: default handling of a message of our own window.
        return unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) };
    }
    // SAFETY: see above.
    let shared = unsafe { &*shared };
    match msg {
        WM_SOCKET => {
            let event = (lparam & 0xFFFF) as u16;
            let error = ((lparam >> 16) & 0xFFFF) as u16;
            if let Ok(mut events) = shared.socket_events.try_borrow_mut() {
                events.push((wparam as SOCKET, event, error));
            }
            // Attached: the program's loop dispatched it; run the accept or
            // connect now (the driver's own loop has no pump installed).
            run_pump(shared);
            0
        }
        WM_PUMP => {
            run_pump(shared);
            0
        }
        WM_TIMER if wparam == PUMP_TIMER => {
            run_pump(shared);
            0
        }
        // SAFETY: default handling of a message of our own window.
        _ => unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
    }
}

fn run_pump(shared: &WindowShared) {
    if let Ok(pump) = shared.pump.try_borrow() {
        if let Some(pump) = pump.as_ref() {
            pump();
        }
    }
}
