//! Child processes: spawn, wait, kill, and their standard streams as pipes.

use std::future::Future;
use std::rc::Rc;

use super::executor::{current, Core, Owned};
use super::io::ByteStream;
use super::op::{Completer, OpFuture, Operation};
use super::pipe::Pipe;
use crate::{Command, Driver, ExitStatus, ProcessId, ProcessWait, Result};

/// A child's standard input (the write end of a pipe).
pub type ChildStdin = Pipe;
/// A child's standard output (the read end of a pipe).
pub type ChildStdout = Pipe;
/// A child's standard error (the read end of a pipe).
pub type ChildStderr = Pipe;

/// A spawned child process, and the pipes of its standard streams that were
/// [`Stdio::Pipe`](crate::Stdio::Pipe).
///
/// The driver reaps the child as soon as it exits, whether or not anyone
/// waits, and also after the `Child` is dropped: dropping it neither kills
/// nor leaks the process (no zombies).
pub struct Child {
    h: Owned<ProcessId>,
    /// The child's standard input, if it was piped. Drop it (or `close` it)
    /// to let the child see end of input.
    pub stdin: Option<ChildStdin>,
    /// The child's standard output, if it was piped.
    pub stdout: Option<ChildStdout>,
    /// The child's standard error, if it was piped.
    pub stderr: Option<ChildStderr>,
}

struct Wait {
    process: ProcessId,
}

impl Operation for Wait {
    type Output = ExitStatus;
    type Token = (ProcessId, ProcessWait);
    type Ret = Result<ExitStatus>;

    fn start(&mut self, drv: &mut Driver, done: Completer<ExitStatus>) -> Result<Self::Token, Self::Ret> {
        let process = self.process;
        drv.processes()
            .wait(process, move |_, _, status| {
                let _ = done.complete(status);
            })
            .map(|w| (process, w))
            .map_err(Err)
    }

    fn cancel(drv: &mut Driver, (process, wait): Self::Token) {
        drv.processes().cancel_wait(process, wait);
    }

    fn ready(&mut self, _: &Rc<Core>, _: Self::Token, status: ExitStatus) -> Self::Ret {
        Ok(status)
    }
}

impl Child {
    /// Spawns `command`. A program that cannot be found or run is an `Err`
    /// here (`NotFound`, `NotAllowed` …).
    pub fn spawn(command: Command) -> Result<Child> {
        let core = current();
        let child = core.with_driver(|drv| drv.processes().spawn(command))?;
        let pipe = |h| ByteStream::from_raw(core.clone(), h);
        Ok(Child {
            stdin: child.stdin.map(pipe),
            stdout: child.stdout.map(pipe),
            stderr: child.stderr.map(pipe),
            h: Owned::new(core, child.process),
        })
    }

    /// Waits for the child to exit: how it ended.
    ///
    /// **Cancel safety:** cancel-safe: dropping the future withdraws the wait;
    /// the exit status stays available to the next `wait`.
    pub fn wait(&self) -> impl Future<Output = Result<ExitStatus>> + '_ {
        OpFuture::new(Wait { process: self.h.handle })
    }

    /// How the child ended, if it has (without waiting).
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        let p = self.h.handle;
        self.h.core.with_driver(|drv| drv.processes().exit_status(p))
    }

    /// Sends `signo` to the child. `NotFound` once it has exited.
    pub fn kill(&self, signo: i32) -> Result<()> {
        let p = self.h.handle;
        self.h.core.with_driver(|drv| drv.processes().kill(p, signo))
    }

    /// The process id.
    pub fn id(&self) -> Result<u32> {
        let p = self.h.handle;
        self.h.core.with_driver(|drv| drv.processes().pid(p))
    }

    /// The driver handle.
    pub fn raw_handle(&self) -> ProcessId {
        self.h.handle
    }
}


impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("process", &self.h.handle)
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish()
    }
}
