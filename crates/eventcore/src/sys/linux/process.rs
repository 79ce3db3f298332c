//! Child processes on Linux: a pidfd per process, readable when it exits,
//! reaped with `waitid(P_PIDFD)`. Kernels without pidfd (before 5.3) get a
//! waiter thread per process instead (see `processes.rs`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::unix::syscall;

/// How a process ended.
pub(crate) struct Ended {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// A pidfd for `pid`; `Unsupported` if the kernel has none.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Err(io::ErrorKind::Unsupported.into());
        }
        return Err(e);
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn ended_from(info: &libc::siginfo_t) -> Ended {
    // SAFETY: waitid filled `info` for a child that changed state (WEXITED),
    // so the SIGCHLD fields are the valid ones.
    let status = unsafe { info.si_status() };
    match info.si_code {
        libc::CLD_EXITED => Ended {
            code: Some(status),
            signal: None,
        },
        _ => Ended {
            code: None,
            signal: Some(status),
        },
    }
}

/// Reaps the process behind `pidfd` if it has exited. `Ok(None)`: still
/// running. `ECHILD` means it is not our child (adopted): ended, status unknown.
pub(crate) fn try_reap_pidfd(pidfd: &OwnedFd) -> io::Result<Option<Ended>> {
    // SAFETY: an all-zero siginfo is a valid buffer for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    const P_PIDFD: libc::idtype_t = 3;
    match syscall!(waitid(
        P_PIDFD,
        pidfd.as_raw_fd() as libc::id_t,
        &mut info,
        libc::WEXITED | libc::WNOHANG
    )) {
        Ok(_) => {
            // SAFETY: reading the pid field of the filled siginfo.
            if unsafe { info.si_pid() } == 0 {
                Ok(None)
            } else {
                Ok(Some(ended_from(&info)))
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Some(Ended {
            code: None,
            signal: None,
        })),
        Err(e) => Err(e),
    }
}

/// Blocks until child `pid` exits and reaps it (the fallback waiter thread).
pub(crate) fn wait_blocking(pid: u32) -> Ended {
    loop {
        // SAFETY: as above.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        match syscall!(waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED)) {
            Ok(_) => return ended_from(&info),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                return Ended {
                    code: None,
                    signal: None,
                }
            }
        }
    }
}

/// Sends `signo` to the process: through its pidfd (never a recycled pid) or,
/// without one, by pid.
pub(crate) fn send_signal(pidfd: Option<&OwnedFd>, pid: u32, signo: i32) -> io::Result<()> {
    match pidfd {
        Some(fd) => {
            // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    signo,
                    std::ptr::null::<libc::siginfo_t>(),
                    0 as libc::c_uint,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
        None => syscall!(kill(pid as libc::pid_t, signo)).map(drop),
    }
}
