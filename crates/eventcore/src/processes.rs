//! Child processes: spawn, adopt, wait, kill — without zombies.
//!
//! Each process is watched from the moment it is spawned or adopted, and its
//! exit is collected as soon as it happens, whether or not anyone waits for
//! it. [`Processes::wait`] callbacks count as waiters of the loop; the watch
//! itself does not.
//!
//! The OS side lives in `sys::process` behind one small interface (spawn,
//! adopt, try to reap, kill, and how the exit is noticed). An exit reaches
//! the loop one of two ways: a source in the wait set that becomes readable
//! when the process exits (Linux: a pidfd, then reaped with `waitid`), or a
//! notify closure called from another thread, which queues the exit as the
//! driver's internal work through its own [`Remote`](crate::Remote) (Windows:
//! a registered wait on the process handle, so there is no limit of 63
//! processes; Linux without pidfd: a thread blocked in `waitid`).
//!
//! Where the OS keeps exited children until their parent collects them
//! (Unix zombies), a process released while it still runs stays watched and
//! is reaped when it exits, also after the driver is dropped. Windows has no
//! zombies: releasing a process withdraws its wait and closes its handle.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::sys::Backend as _;
use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, HandleKind, Key};
use crate::io::{Internal, IoCallback, IoMode, IoOp, Owner};
use crate::pipes::PipeHandle;
use crate::sys::process::{self as sys_process, OsProcess};
use crate::sys::{OwnedPipe, SourceId, SourceKind};
use crate::{Driver, Error, Result, Status};

define_handle!(
    /// A child (or adopted) process of a [`Driver`].
    ProcessId,
    Process
);

/// Identifies one pending [`Processes::wait`], for [`Processes::cancel_wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessWait(Key);

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    code: Option<i32>,
    signal: Option<i32>,
}

impl ExitStatus {
    /// The exit code, if the process exited normally.
    pub fn code(&self) -> Option<i32> {
        self.code
    }

    /// The signal that terminated the process, if one did (Unix; always
    /// `None` on Windows, where [`Processes::kill`] ends a process with exit
    /// code 1).
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Whether neither is known: on Unix an adopted process that is not our
    /// child ends without the OS telling us how. (Windows reports the exit
    /// code of any process it lets us open.)
    pub fn is_unknown(&self) -> bool {
        self.code.is_none() && self.signal.is_none()
    }
}

/// Where a child's standard stream goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The parent's stream.
    #[default]
    Inherit,
    /// The null device.
    Null,
    /// A new pipe, returned as a [`PipeHandle`] in [`Child`].
    Pipe,
    /// An existing file, pipe or socket, handed to the child (`OwnedFd` on
    /// Unix, `OwnedHandle` on Windows). On Windows, hand a child a
    /// synchronous handle (not one opened for overlapped I/O): console
    /// programs read and write their standard streams synchronously.
    Handle(OwnedPipe),
}

/// What to spawn: program, arguments, environment, working directory, and the
/// three standard streams.
#[derive(Debug)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
}

impl Command {
    /// Runs `program` (looked up in `PATH` if it has no slash; on Windows
    /// also with `.exe` appended), with no arguments, the parent's
    /// environment and directory, and inherited streams.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
        }
    }

    /// Adds an argument (passed as is, never through a shell; on Windows
    /// quoted into the command line the way the C runtime splits it again).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Command {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Command {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable for the child.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Command {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child with an empty environment (plus what [`Command::env`] sets).
    pub fn env_clear(mut self) -> Command {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// The child's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Command {
        self.cwd = Some(dir.into());
        self
    }

    /// The child's standard input.
    pub fn stdin(mut self, s: Stdio) -> Command {
        self.stdin = s;
        self
    }

    /// The child's standard output.
    pub fn stdout(mut self, s: Stdio) -> Command {
        self.stdout = s;
        self
    }

    /// The child's standard error.
    pub fn stderr(mut self, s: Stdio) -> Command {
        self.stderr = s;
        self
    }
}

/// A spawned child: its process handle and the pipes of the streams that were
/// [`Stdio::Pipe`].
#[derive(Debug)]
pub struct Child {
    /// The process.
    pub process: ProcessId,
    /// The write end of the child's standard input.
    pub stdin: Option<PipeHandle>,
    /// The read end of the child's standard output.
    pub stdout: Option<PipeHandle>,
    /// The read end of the child's standard error.
    pub stderr: Option<PipeHandle>,
}

type WaitCallback = Box<dyn FnOnce(&mut Driver, ProcessId, ExitStatus)>;

pub(crate) struct ProcessWaitOp {
    process: ProcessId,
    callback: WaitCallback,
}

/// The OS's hold on a running process and, if its exit comes through a
/// source in the wait set, that source's registration. Dropping it withdraws
/// whatever else watches the process (the OS side does that).
struct Watch {
    os: OsProcess,
    src: Option<SourceId>,
}

pub(crate) struct ProcessState {
    pid: u32,
    /// `None` once the process has exited (or if watching it failed).
    watch: Option<Watch>,
    exited: Option<ExitStatus>,
    waiters: Vec<Key>,
}

/// The process subsystem's state besides its handle table.
#[derive(Default)]
pub(crate) struct ProcessComponent {
    /// Released processes whose exit is still watched (reaped when it comes).
    pub(crate) orphans: Vec<Orphan>,
}

/// A released process that has not exited yet: still watched, to be reaped
/// (where the OS needs that, see `sys_process::MUST_REAP`, or its exit
/// comes through a source in the wait set).
pub(crate) struct Orphan {
    key: Key,
    watch: Watch,
}

/// The process view of a driver (see [`Driver::processes`]).
pub struct Processes<'a> {
    drv: &'a mut Driver,
}

fn to_std(s: Stdio) -> std::process::Stdio {
    match s {
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Pipe => std::process::Stdio::piped(),
        Stdio::Handle(handle) => std::process::Stdio::from(handle),
    }
}

impl Driver {
    /// Child processes: spawn, adopt, wait, kill.
    pub fn processes(&mut self) -> Processes<'_> {
        Processes { drv: self }
    }

    /// Starts watching the process of entry `key` for its exit.
    fn watch_process(&mut self, key: Key) -> Result<()> {
        let remote = self.remote();
        let Some(watch) = self.tables.processes.get_mut(key).and_then(|s| s.watch.as_mut()) else {
            return Ok(());
        };
        if let Some(source) = watch.os.exit_source() {
            let src = self.sys.add_source(source, SourceKind::Fd)?;
            watch.src = Some(src);
            self.arm_process_exit(key, src);
        } else {
            // The OS side calls this from another thread; the exit reaches
            // the loop as the driver's own work.
            watch.os.notify_on_exit(Box::new(move |ended| {
                // If the driver is gone there is nobody to tell.
                let _ = remote.run_internal(move |drv| drv.process_ended(key, ended));
            }))?;
        }
        Ok(())
    }

    /// Waits (internally) for the exit source of process `key` to be readable.
    fn arm_process_exit(&mut self, key: Key, src: SourceId) {
        let owner = Owner {
            kind: HandleKind::Process,
            key,
        };
        let mut op = IoOp::new(
            owner,
            IoCallback::Internal(Internal::ProcessExit),
            crate::sys::buf::AnyBuf::empty(),
            IoMode::Once,
        );
        op.src = src;
        self.start_io(op, false);
    }

    /// The watch of process `key`, whether its handle is live or released.
    fn process_watch(&self, key: Key) -> Option<&Watch> {
        match self.tables.processes.get(key) {
            Some(state) => state.watch.as_ref(),
            None => self.subsystems.processes.orphans.iter().find(|o| o.key == key).map(|o| &o.watch),
        }
    }

    /// A watched process's exit source is readable: reap it.
    pub(crate) fn process_exit_ready(&mut self, owner: Owner) -> bool {
        let key = owner.key;
        let Some((reaped, src)) = self.process_watch(key).map(|w| (w.os.try_reap(), w.src)) else {
            return false;
        };
        match reaped {
            Ok(Some(ended)) => self.process_ended(key, ended),
            Ok(None) => {
                // Woken without an exit (should not happen with pidfd): watch on.
                if let Some(src) = src {
                    self.arm_process_exit(key, src);
                }
                false
            }
            Err(_) => self.process_ended(key, sys_process::Ended::unknown()),
        }
    }

    /// Records the exit and queues every waiter; closes the watch.
    fn process_ended(&mut self, key: Key, ended: sys_process::Ended) -> bool {
        let status = ExitStatus {
            code: ended.code,
            signal: ended.signal,
        };
        let watch = if let Some(state) = self.tables.processes.get_mut(key) {
            state.exited = Some(status);
            let waiters = std::mem::take(&mut state.waiters);
            let watch = state.watch.take();
            for op in waiters {
                self.push_ready(op, Outcome::Event);
            }
            watch
        } else {
            self.subsystems.processes.orphans
                .iter()
                .position(|o| o.key == key)
                .map(|i| self.subsystems.processes.orphans.swap_remove(i).watch)
        };
        if let Some(src) = watch.as_ref().and_then(|w| w.src) {
            self.sys.remove_source(src);
        }
        drop(watch);
        false
    }

    pub(crate) fn complete_process_wait(&mut self, key: Key) -> bool {
        let Some(Op::ProcessWait(op)) = self.ops.remove(key) else {
            return false;
        };
        let status = self
            .tables.processes
            .get(op.process.0)
            .and_then(|s| s.exited)
            .unwrap_or(ExitStatus {
                code: None,
                signal: None,
            });
        (op.callback)(self, op.process, status);
        true
    }

    pub(crate) fn destroy_process(&mut self, key: Key) {
        let Some(entry) = self.tables.processes.remove(key) else {
            return;
        };
        for op in entry.waiters {
            self.ops.remove(op);
        }
        let Some(watch) = entry.watch else {
            return;
        };
        if sys_process::MUST_REAP || watch.src.is_some() {
            // Keep watching so the child is reaped when it exits (and the
            // internal read on its exit source completes then).
            self.subsystems.processes.orphans.push(Orphan { key, watch });
        } else {
            // Nothing to reap (Windows): withdraw the notification now.
            watch.os.abandon();
        }
    }

    /// Closes the watches of released, still running processes (driver drop).
    /// The driver is going away: the OS side reaps released children that
    /// have exited and leaves those still running to a detached thread that
    /// waits for them, so none becomes a zombie.
    pub(crate) fn drop_orphans(&mut self) {
        for orphan in std::mem::take(&mut self.subsystems.processes.orphans) {
            if let Some(src) = orphan.watch.src {
                self.sys.remove_source(src);
            }
            orphan.watch.os.abandon();
        }
    }
}

impl Processes<'_> {
    /// Spawns `command`. A program that cannot be found or executed is an
    /// `Err` here (`NotFound`, `NotAllowed` …) and nothing is left behind.
    pub fn spawn(&mut self, command: Command) -> Result<Child> {
        let mut cmd = std::process::Command::new(&command.program);
        cmd.args(&command.args);
        if command.env_clear {
            cmd.env_clear();
        }
        for (k, v) in &command.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &command.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(to_std(command.stdin));
        cmd.stdout(to_std(command.stdout));
        cmd.stderr(to_std(command.stderr));
        let spawned = sys_process::spawn(&mut cmd)?;
        let process = self.watch(spawned.process, true)?;
        let mut adopt = |end: Option<OwnedPipe>| end.map(|end| self.drv.adopt_pipe_fd(end)).transpose();
        Ok(Child {
            process,
            stdin: adopt(spawned.stdin)?,
            stdout: adopt(spawned.stdout)?,
            stderr: adopt(spawned.stderr)?,
        })
    }

    /// Watches an existing process by pid. Unix: for a child of this process
    /// the exit status is reported; for any other process only the fact that
    /// it ended ([`ExitStatus::is_unknown`]). Windows: the process is opened
    /// (`OpenProcess`) and its exit code reported, child or not.
    pub fn adopt(&mut self, pid: u32) -> Result<ProcessId> {
        let os = OsProcess::adopt(pid)?;
        self.watch(os, false)
    }

    /// Enters `os` in the table and watches it. If it cannot be watched, a
    /// child just spawned is killed (the caller gets an `Err`, so nothing
    /// may keep running) and the OS side makes sure nothing is left behind.
    fn watch(&mut self, os: OsProcess, spawned: bool) -> Result<ProcessId> {
        let key = self.drv.tables.processes.insert(ProcessState {
            pid: os.pid(),
            watch: Some(Watch { os, src: None }),
            exited: None,
            waiters: Vec::new(),
        });
        if let Err(e) = self.drv.watch_process(key) {
            if let Some(ProcessState { watch: Some(watch), .. }) = self.drv.tables.processes.remove(key) {
                if spawned {
                    let _ = watch.os.kill(crate::signal_numbers::SIGKILL);
                }
                watch.os.abandon();
            }
            return Err(e);
        }
        Ok(ProcessId(key))
    }

    /// The process id.
    pub fn pid(&self, process: ProcessId) -> Result<u32> {
        self.drv
            .tables.processes
            .get(process.0)
            .map(|s| s.pid)
            .ok_or_else(Error::invalid_handle)
    }

    /// Whether the process has exited (and been reaped).
    pub fn has_exited(&self, process: ProcessId) -> Result<bool> {
        Ok(self.exit_status(process)?.is_some())
    }

    /// How the process ended, once it has.
    pub fn exit_status(&self, process: ProcessId) -> Result<Option<ExitStatus>> {
        self.drv
            .tables.processes
            .get(process.0)
            .map(|s| s.exited)
            .ok_or_else(Error::invalid_handle)
    }

    /// Sends `signo` to the process. A process that has already exited is
    /// [`Status::NotFound`]; its pid is never signalled, since it may belong
    /// to another process by now. A number that is no signal is
    /// `InvalidArgument`.
    ///
    /// Windows, as libuv: `SIGINT`, `SIGQUIT`, `SIGKILL` and `SIGTERM` (see
    /// [`signal_numbers`](crate::signal_numbers)) terminate the process
    /// (`TerminateProcess`), which then exits with code 1 (no signal in its
    /// [`ExitStatus`]); signal 0 only checks that it still runs; other
    /// signals are `NotSupported`.
    pub fn kill(&mut self, process: ProcessId, signo: i32) -> Result<()> {
        let s = self
            .drv
            .tables.processes
            .get(process.0)
            .ok_or_else(Error::invalid_handle)?;
        match (&s.exited, &s.watch) {
            (None, Some(watch)) => Ok(watch.os.kill(signo)?),
            _ => Err(Error::new(Status::NotFound)),
        }
    }

    /// Calls `callback` with the exit status once the process has exited (from
    /// the next `process_events` if it already has). Several waits may be
    /// pending; each counts as a waiter of the loop.
    pub fn wait(
        &mut self,
        process: ProcessId,
        callback: impl FnOnce(&mut Driver, ProcessId, ExitStatus) + 'static,
    ) -> Result<ProcessWait> {
        let exited = self
            .drv
            .tables.processes
            .get(process.0)
            .ok_or_else(Error::invalid_handle)?
            .exited
            .is_some();
        let key = self.drv.ops.insert(Op::ProcessWait(ProcessWaitOp {
            process,
            callback: Box::new(callback),
        }));
        if exited {
            self.drv.push_ready(key, Outcome::Event);
        } else {
            self.drv
                .tables.processes
                .get_mut(process.0)
                .expect("checked")
                .waiters
                .push(key);
        }
        Ok(ProcessWait(key))
    }

    /// Withdraws a wait; its callback will not run. Returns whether it was pending.
    pub fn cancel_wait(&mut self, process: ProcessId, wait: ProcessWait) -> bool {
        match self.drv.ops.get(wait.0) {
            Some(Op::ProcessWait(op)) if op.process == process => {}
            _ => return false,
        }
        if let Some(state) = self.drv.tables.processes.get_mut(process.0) {
            state.waiters.retain(|k| *k != wait.0);
        }
        self.drv.ops.remove(wait.0).is_some()
    }
}
