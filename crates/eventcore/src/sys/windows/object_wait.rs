//! Waits for kernel objects (events, semaphores, mutexes, processes,
//! threads, waitable timers …) that the program owns: `Polls::register_object`.
//!
//! The driver waits on its own duplicate of the program's handle
//! (`DuplicateHandle`), so a program that closes its handle while a wait is
//! registered does not leave the thread pool waiting on a closed (or reused)
//! handle value. Each wait is a one-shot
//! `RegisterWaitForSingleObject(WT_EXECUTEONLYONCE)`: the thread-pool
//! callback only calls the notify closure, which hands the wake-up to the
//! loop thread through the driver's `Remote`; a repeating watch registers
//! the next wait from the loop thread after its callback ran, so an object
//! that stays signalled (a manual-reset event) is reported once per loop
//! turn instead of flooding the queue. No handle enters the loop's own wait
//! set, so there is no 64-handle limit. Dropping an [`ObjectWait`]
//! withdraws it with `UnregisterWaitEx(INVALID_HANDLE_VALUE)`, which waits
//! for a callback that is running, so no callback is lost or runs after it.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_SAME_ACCESS, ERROR_INVALID_HANDLE, HANDLE, INVALID_HANDLE_VALUE, WAIT_FAILED,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, RegisterWaitForSingleObject, UnregisterWaitEx, WaitForSingleObject, INFINITE,
    WAITORTIMERCALLBACK, WT_EXECUTEONLYONCE,
};

/// Called once, from a thread-pool thread, when the object is signalled.
pub(crate) type SignalNotify = Box<dyn FnOnce() + Send>;

/// The driver's own handle to the program's object: a duplicate with the
/// same access. Null, `INVALID_HANDLE_VALUE` (the usual failed-`CreateX`
/// value, which is also the pseudo-handle of the current process) and
/// values that name no handle are `ERROR_INVALID_HANDLE`; an object that
/// cannot be waited on fails here too.
pub(crate) fn duplicate(raw: RawHandle) -> io::Result<OwnedHandle> {
    let h = raw as HANDLE;
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::from_raw_os_error(ERROR_INVALID_HANDLE as i32));
    }
    let mut dup: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates a handle of this process into this process; on
    // success `dup` is a new handle that nothing else owns.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            GetCurrentProcess(),
            &mut dup,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: DuplicateHandle returned a handle that we own.
    let dup = unsafe { OwnedHandle::from_raw_handle(dup) };
    // A zero-timeout wait: fails on a handle that cannot be waited on (no
    // SYNCHRONIZE access, or not a waitable object).
    // SAFETY: waits (not at all) on a handle we own.
    if unsafe { WaitForSingleObject(dup.as_raw_handle(), 0) } == WAIT_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(dup)
}

/// What the callback reads: the notify closure, taken once.
struct Context {
    notify: Mutex<Option<SignalNotify>>,
}

/// One registered one-shot wait, withdrawn on drop.
pub(crate) struct ObjectWait {
    _wait: RegisteredWait<Context>,
}

/// The thread-pool callback: the object was signalled (no timeout is set).
unsafe extern "system" fn on_signalled(context: *mut c_void, _timed_out: bool) {
    // SAFETY: the context stays allocated until UnregisterWaitEx has waited
    // for this callback (see `RegisteredWait`'s drop).
    let context = unsafe { &*context.cast::<Context>() };
    let notify = context.notify.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(notify) = notify {
        notify();
    }
}

impl ObjectWait {
    /// Waits once for `object` (which must stay open until the wait is
    /// dropped) to be signalled; `notify` then runs on a thread-pool thread.
    pub fn register(object: &OwnedHandle, notify: SignalNotify) -> io::Result<ObjectWait> {
        let context = Context {
            notify: Mutex::new(Some(notify)),
        };
        // SAFETY: the caller keeps `object` open until the wait is dropped,
        // and `on_signalled` reads its context as a `&Context`.
        let wait = unsafe { RegisteredWait::register(object.as_raw_handle(), Some(on_signalled), context)? };
        Ok(ObjectWait { _wait: wait })
    }
}

/// A one-shot thread-pool wait (`RegisterWaitForSingleObject` with
/// `WT_EXECUTEONLYONCE`) whose callback borrows a boxed context. Dropping it
/// withdraws the wait with `UnregisterWaitEx(INVALID_HANDLE_VALUE)`, which
/// waits for a callback that is running, and only then frees the context.
/// Object waits and process exits use it.
pub(crate) struct RegisteredWait<C> {
    wait: HANDLE,
    context: *mut C,
}

impl<C> RegisteredWait<C> {
    /// Registers the wait on `object` with `context`.
    ///
    /// # Safety
    /// `object` stays open until the returned wait is dropped, and
    /// `callback` only reads its context argument as a `&C`.
    pub(crate) unsafe fn register(object: HANDLE, callback: WAITORTIMERCALLBACK, context: C) -> io::Result<Self> {
        let context = Box::into_raw(Box::new(context));
        let mut wait: HANDLE = std::ptr::null_mut();
        // SAFETY: registers a wait on a handle the caller keeps open until
        // the wait is withdrawn, with a context that lives until then (it is
        // freed in `drop`, after the withdrawal).
        let ok = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                object,
                callback,
                context.cast::<c_void>().cast_const(),
                INFINITE,
                WT_EXECUTEONLYONCE,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            // SAFETY: the registration failed, so no callback has the context.
            drop(unsafe { Box::from_raw(context) });
            return Err(e);
        }
        Ok(RegisteredWait { wait, context })
    }
}

impl<C> Drop for RegisteredWait<C> {
    fn drop(&mut self) {
        // SAFETY: `wait` is our registered wait; INVALID_HANDLE_VALUE makes
        // the call wait for a callback that is running, so afterwards no
        // callback runs or will run.
        let ok = unsafe { UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE) };
        if ok != 0 {
            // SAFETY: `context` came from Box::into_raw in `register`, and no
            // callback can use it any more.
            drop(unsafe { Box::from_raw(self.context) });
        }
        // Otherwise a callback might still read the context: leak it.
    }
}
