//! Signals through signalfd.
//!
//! One signalfd per driver holds the set of signals someone listens to. A
//! signal only reaches a signalfd if it is blocked, so each listened signal is
//! blocked in the driver's thread (worker threads block everything from the
//! start); when the last listener of a signal goes, the signal is unblocked
//! again — unless it was already blocked before the driver blocked it.
//!
//! The interface the driver uses (the same on every OS, see
//! `sys/windows/signals.rs`): [`SignalSet`] — `new`, `check`, `add`,
//! `remove`, `source` (here: the signalfd, readable when signals are
//! pending) and `take_arrived`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::unix::syscall;
use crate::Status;

// The crate's portable signal numbers are Linux's.
const _: () = {
    use crate::sys::signal_numbers as n;
    assert!(n::SIGHUP == libc::SIGHUP && n::SIGINT == libc::SIGINT && n::SIGQUIT == libc::SIGQUIT);
    assert!(n::SIGKILL == libc::SIGKILL && n::SIGTERM == libc::SIGTERM);
};

/// Wakes the driver when signals arrive without a source in its wait set
/// (not needed here: the signalfd is that source).
pub(crate) type SignalNotify = Box<dyn Fn() + Send + Sync>;

/// The signals one driver listens to, and where their arrivals are read.
pub(crate) struct SignalSet {
    fd: OwnedFd,
    set: libc::sigset_t,
    /// Signals this driver blocked (and must unblock when done).
    blocked_here: libc::sigset_t,
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

fn one_signal(signo: i32) -> libc::sigset_t {
    let mut set = empty_set();
    // SAFETY: `set` is initialised; signo was validated by the caller.
    unsafe { libc::sigaddset(&mut set, signo) };
    set
}

impl SignalSet {
    /// A signalfd with an empty set. `_notify` is not needed: arrivals make
    /// the signalfd readable.
    pub fn new(_notify: SignalNotify) -> io::Result<SignalSet> {
        let set = empty_set();
        let fd = syscall!(signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))?;
        // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalSet {
            fd,
            set,
            blocked_here: empty_set(),
        })
    }

    /// Whether `signo` can be listened to (a real signal, not KILL or STOP):
    /// `InvalidArgument` otherwise.
    pub fn check(signo: i32) -> Result<(), Status> {
        if (1..=libc::SIGRTMAX()).contains(&signo) && signo != libc::SIGKILL && signo != libc::SIGSTOP {
            Ok(())
        } else {
            Err(Status::InvalidArgument)
        }
    }

    /// The signalfd: readable when a listened signal is pending.
    pub fn source(&self) -> Option<&OwnedFd> {
        Some(&self.fd)
    }

    /// Starts receiving `signo`: blocks it in this thread and adds it to the set.
    pub fn add(&mut self, signo: i32) -> io::Result<()> {
        let one = one_signal(signo);
        let mut old = empty_set();
        // SAFETY: both sets are initialised; only this thread's mask changes.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &one, &mut old) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: `old` was filled by pthread_sigmask.
        if unsafe { libc::sigismember(&old, signo) } == 0 {
            // SAFETY: `blocked_here` is initialised.
            unsafe { libc::sigaddset(&mut self.blocked_here, signo) };
        }
        // SAFETY: `set` is initialised.
        unsafe { libc::sigaddset(&mut self.set, signo) };
        syscall!(signalfd(self.fd.as_raw_fd(), &self.set, 0))?;
        Ok(())
    }

    /// Stops receiving `signo` and restores its blocked state.
    pub fn remove(&mut self, signo: i32) {
        // SAFETY: the sets are initialised.
        unsafe { libc::sigdelset(&mut self.set, signo) };
        let _ = syscall!(signalfd(self.fd.as_raw_fd(), &self.set, 0));
        // SAFETY: as above.
        if unsafe { libc::sigismember(&self.blocked_here, signo) } == 1 {
            // SAFETY: the set is initialised and owned by this struct.
            unsafe { libc::sigdelset(&mut self.blocked_here, signo) };
            let one = one_signal(signo);
            // SAFETY: only this thread's mask changes.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut()) };
        }
    }

    /// Reads every pending signal; returns their numbers in arrival order.
    pub fn take_arrived(&mut self, out: &mut Vec<i32>) {
        loop {
            // SAFETY: an all-zero siginfo is a valid buffer for read to fill.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads at most `size` bytes into `info`.
            match syscall!(read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size
            )) {
                Ok(n) if n as usize == size => out.push(info.ssi_signo as i32),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return,
            }
        }
    }
}

impl Drop for SignalSet {
    fn drop(&mut self) {
        for signo in 1..=libc::SIGRTMAX() {
            // SAFETY: `blocked_here` is initialised.
            if unsafe { libc::sigismember(&self.blocked_here, signo) } == 1 {
                self.remove(signo);
            }
        }
    }
}
