//! Child processes on Linux: a pidfd per process, readable when it exits,
//! reaped with `waitid(P_PIDFD)`. Kernels without pidfd (before 5.3) get a
//! waiter thread per process instead, which blocks in `waitid` (and so reaps).
//!
//! The interface the driver uses (the same on every OS, see
//! `sys/windows/process.rs`): [`spawn`], [`OsProcess`] (`adopt`, `pid`,
//! `exit_source` or `notify_on_exit`, `try_reap`, `kill`, `abandon`),
//! [`Ended`] and [`MUST_REAP`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::unix::syscall;

pub(crate) use crate::sys::{Ended, ExitNotify};

/// Whether an exited child must be collected by its parent: a released child
/// that still runs stays watched until it is reaped (or it becomes a zombie).
pub(crate) const MUST_REAP: bool = true;

/// A spawned child and the parent's ends of its piped standard streams.
pub(crate) struct Spawned {
    pub process: OsProcess,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Spawns `cmd` (std does the fork/exec, the close-on-exec error pipe and the
/// argument handling). The std `Child` is dropped without waiting: the
/// driver reaps.
pub(crate) fn spawn(cmd: &mut std::process::Command) -> io::Result<Spawned> {
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stdin = child.stdin.take().map(OwnedFd::from);
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    drop(child);
    Ok(Spawned {
        process: OsProcess::adopt(pid)?,
        stdin,
        stdout,
        stderr,
    })
}

/// The OS's hold on one process: its pid and, where the kernel has them, a
/// pidfd (which never names a recycled pid).
pub(crate) struct OsProcess {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl OsProcess {
    /// Takes hold of process `pid`: a pidfd, or (kernels without pidfd) the pid
    /// alone. A pid that does not exist is an error.
    pub fn adopt(pid: u32) -> io::Result<OsProcess> {
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => None,
            Err(e) => return Err(e),
        };
        Ok(OsProcess { pid, pidfd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A descriptor that becomes readable when the process exits (the
    /// pidfd): the driver watches it in its wait set and then calls
    /// [`OsProcess::try_reap`]. `None`: use [`OsProcess::notify_on_exit`].
    pub fn exit_source(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// Without an exit source: a thread blocks in `waitid` (which reaps the
    /// child) and calls `notify` with the status. The thread ends with the
    /// child, so there is nothing to withdraw.
    pub fn notify_on_exit(&mut self, notify: ExitNotify) -> io::Result<()> {
        let pid = self.pid;
        std::thread::Builder::new()
            .name("eventcore-waitpid".into())
            .spawn(move || notify(wait_blocking(pid)))?;
        Ok(())
    }

    /// Reaps the process if it has exited. `Ok(None)`: still running (or,
    /// without a pidfd, left to the waiter thread).
    pub fn try_reap(&self) -> io::Result<Option<Ended>> {
        match &self.pidfd {
            Some(pidfd) => try_reap_pidfd(pidfd),
            None => Ok(None),
        }
    }

    /// Sends `signo`: through the pidfd (never a recycled pid) or, without
    /// one, by pid. A number that is no signal is `EINVAL`.
    pub fn kill(&self, signo: i32) -> io::Result<()> {
        send_signal(self.pidfd.as_ref(), self.pid, signo)
    }

    /// The driver is going away before it saw the process exit: reap it if it
    /// has exited, and otherwise leave it to a detached thread that waits for
    /// it, so that it never becomes a zombie.
    pub fn abandon(self) {
        let reaped = match &self.pidfd {
            Some(pidfd) => !matches!(try_reap_pidfd(pidfd), Ok(None)),
            None => false,
        };
        if !reaped {
            let pid = self.pid;
            // Without a thread the child stays a zombie until this process
            // exits; nothing else can be done then.
            let _ = std::thread::Builder::new()
                .name("eventcore-reaper".into())
                .spawn(move || wait_blocking(pid));
        }
    }
}

/// A pidfd for `pid`; `Unsupported` if the kernel has none.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
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
fn try_reap_pidfd(pidfd: &OwnedFd) -> io::Result<Option<Ended>> {
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
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Some(Ended::unknown())),
        Err(e) => Err(e),
    }
}

/// Blocks until child `pid` exits and reaps it (the fallback waiter thread).
fn wait_blocking(pid: u32) -> Ended {
    loop {
        // SAFETY: as above.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        match syscall!(waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED)) {
            Ok(_) => return ended_from(&info),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ended::unknown(),
        }
    }
}

/// Sends `signo` to the process: through its pidfd (never a recycled pid) or,
/// without one, by pid.
fn send_signal(pidfd: Option<&OwnedFd>, pid: u32, signo: i32) -> io::Result<()> {
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
