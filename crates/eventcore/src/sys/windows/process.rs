//! Child processes on Windows.
//!
//! **Spawning** is std's `Command`: `CreateProcessW` with the argument
//! quoting, the environment block and the working directory done right. The
//! parent's ends of piped standard streams are pipes that std opens for
//! overlapped I/O (the child's ends are synchronous, as console programs
//! expect), so the driver's `ReadFileEx` / `WriteFileEx` work on them. The
//! driver keeps the process HANDLE (`OwnedHandle::from(child)`).
//!
//! **Exit** is a `RegisterWaitForSingleObject(WT_EXECUTEONLYONCE)` on that
//! handle. Its callback runs on a thread-pool thread: it reads the exit code
//! (`GetExitCodeProcess`) and hands it to the driver's notify closure (which
//! queues internal work through the driver's own `Remote`). Process handles
//! never enter the loop's wait set, so there is no 63-handle limit.
//! Withdrawing the wait (`UnregisterWaitEx` with `INVALID_HANDLE_VALUE`)
//! waits for a callback that is already running, so the callback's context
//! is freed only once no callback can touch it; the process handle is
//! closed after that.
//!
//! **No zombies** on Windows: an exited process disappears once the last
//! handle to it is closed, so a released process needs no further watching
//! ([`MUST_REAP`] is false).
//!
//! **kill(signo)**, as libuv's `uv_kill`: `SIGINT`, `SIGQUIT`, `SIGKILL` and
//! `SIGTERM` terminate the process (`TerminateProcess`, exit code 1, which
//! is what its wait reports: code `Some(1)`, no signal); signal 0 checks that
//! it is still running; other signal numbers (1–64) are `NotSupported`, and
//! anything else `InvalidArgument`.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, TerminateProcess, WaitForSingleObject, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
};

use super::object_wait::RegisteredWait;
use crate::sys::signal_numbers::{SIGINT, SIGKILL, SIGQUIT, SIGTERM};

pub(crate) use crate::sys::{Ended, ExitNotify};

/// Whether an exited child must be collected by its parent: not on Windows.
pub(crate) const MUST_REAP: bool = false;

/// The exit code TerminateProcess gives a killed process (as std and libuv).
const KILLED_EXIT_CODE: u32 = 1;

/// A spawned child and the parent's ends of its piped standard streams.
pub(crate) struct Spawned {
    pub process: OsProcess,
    pub stdin: Option<OwnedHandle>,
    pub stdout: Option<OwnedHandle>,
    pub stderr: Option<OwnedHandle>,
}

/// Spawns `cmd` and keeps its process handle (the thread handle std also
/// holds is closed).
pub(crate) fn spawn(cmd: &mut std::process::Command) -> io::Result<Spawned> {
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stdin = child.stdin.take().map(OwnedHandle::from);
    let stdout = child.stdout.take().map(OwnedHandle::from);
    let stderr = child.stderr.take().map(OwnedHandle::from);
    Ok(Spawned {
        process: OsProcess {
            pid,
            handle: OwnedHandle::from(child),
            wait: None,
        },
        stdin,
        stdout,
        stderr,
    })
}

/// A process handle as the wait callback's thread-pool thread uses it.
#[derive(Clone, Copy)]
struct ProcessHandle(HANDLE);

// SAFETY: a process handle names a kernel object and may be used from any
// thread; the callback only reads the exit code through it, and the handle is
// closed only after the wait, and so every callback, has been withdrawn.
unsafe impl Send for ProcessHandle {}
// SAFETY: as above; nothing changes the handle after the context is built.
unsafe impl Sync for ProcessHandle {}

/// What the wait callback reads: the process handle and the notify closure.
struct WaitContext {
    process: ProcessHandle,
    notify: Mutex<Option<ExitNotify>>,
}

// The wait callback reads the context from a thread-pool thread.
const _: fn() = || {
    fn used_from_any_thread<T: Send + Sync>() {}
    used_from_any_thread::<WaitContext>();
};

/// The thread-pool callback of a process's registered wait: the process has
/// exited (the wait has no timeout). Only reads the exit code and notifies.
unsafe extern "system" fn on_exit(context: *mut c_void, _timed_out: bool) {
    // SAFETY: the context of this wait stays allocated until UnregisterWaitEx
    // has waited for this callback (see `RegisteredWait`'s drop).
    let context = unsafe { &*context.cast::<WaitContext>() };
    let notify = context.notify.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(notify) = notify {
        notify(exit_status(context.process.0));
    }
}

/// The exit code of an exited process.
fn exit_status(process: HANDLE) -> Ended {
    let mut code: u32 = 0;
    // SAFETY: reads the exit code of a process handle we hold.
    if unsafe { GetExitCodeProcess(process, &mut code) } == 0 {
        return Ended::unknown();
    }
    Ended {
        code: Some(code as i32),
        signal: None,
    }
}

/// The OS's hold on one process: its handle (and the registered wait on it).
pub(crate) struct OsProcess {
    pid: u32,
    handle: OwnedHandle,
    wait: Option<RegisteredWait<WaitContext>>,
}

impl OsProcess {
    /// Opens process `pid` for waiting, reading its exit code and
    /// terminating it (or, if terminating is not allowed, for the first two:
    /// `kill` is then `NotAllowed`). A pid that names no process is an error.
    pub fn adopt(pid: u32) -> io::Result<OsProcess> {
        let watch = PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION;
        // SAFETY: OpenProcess returns a new handle or null.
        let mut h = unsafe { OpenProcess(watch | PROCESS_TERMINATE, 0, pid) };
        if h.is_null() && io::Error::last_os_error().raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
            // SAFETY: as above.
            h = unsafe { OpenProcess(watch, 0, pid) };
        }
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(OsProcess {
            pid,
            // SAFETY: OpenProcess returned a handle nothing else owns.
            handle: unsafe { OwnedHandle::from_raw_handle(h) },
            wait: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle()
    }

    /// No source for the wait set: exits come through
    /// [`OsProcess::notify_on_exit`].
    pub fn exit_source(&self) -> Option<&OwnedHandle> {
        None
    }

    /// Registers a one-shot wait on the process handle; `notify` is called
    /// from a thread-pool thread with the exit code once the process exits.
    /// Dropping the process withdraws the wait.
    pub fn notify_on_exit(&mut self, notify: ExitNotify) -> io::Result<()> {
        let context = WaitContext {
            process: ProcessHandle(self.raw()),
            notify: Mutex::new(Some(notify)),
        };
        // SAFETY: a wait on a process handle we hold (closed only after the
        // wait is withdrawn: see `Drop for OsProcess`); `on_exit` reads its
        // context as a `&WaitContext`.
        let wait = unsafe { RegisteredWait::register(self.raw(), Some(on_exit), context)? };
        self.wait = Some(wait);
        Ok(())
    }

    /// Whether the process has exited, and with which code.
    pub fn try_reap(&self) -> io::Result<Option<Ended>> {
        Ok(self.has_exited().then(|| exit_status(self.raw())))
    }

    fn has_exited(&self) -> bool {
        // SAFETY: a zero-timeout wait on a process handle we hold.
        unsafe { WaitForSingleObject(self.raw(), 0) == WAIT_OBJECT_0 }
    }

    /// Terminates the process for `SIGINT`, `SIGQUIT`, `SIGKILL`, `SIGTERM`;
    /// signal 0 checks that it still runs (see the module documentation).
    pub fn kill(&self, signo: i32) -> io::Result<()> {
        let gone = || io::Error::from(io::ErrorKind::NotFound);
        match signo {
            SIGINT | SIGQUIT | SIGKILL | SIGTERM => {
                // SAFETY: terminates the process behind a handle we hold.
                if unsafe { TerminateProcess(self.raw(), KILLED_EXIT_CODE) } != 0 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                // A process that has already exited cannot be terminated
                // (ERROR_ACCESS_DENIED).
                Err(if self.has_exited() { gone() } else { e })
            }
            0 if self.has_exited() => Err(gone()),
            0 => Ok(()),
            1..=64 => Err(io::ErrorKind::Unsupported.into()),
            _ => Err(io::Error::from_raw_os_error(ERROR_INVALID_PARAMETER as i32)),
        }
    }

    /// The driver no longer needs the process: nothing to reap on Windows;
    /// the wait is withdrawn and the handle closed.
    pub fn abandon(self) {}
}

impl Drop for OsProcess {
    fn drop(&mut self) {
        // The wait goes before the handle it waits on is closed.
        self.wait = None;
    }
}
