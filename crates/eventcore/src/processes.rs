//! Child processes: spawn, adopt, wait, kill — without zombies.
//!
//! Each process is watched from the moment it is spawned or adopted (on
//! Linux through a pidfd in the wait set; without pidfd, a waiter thread), and
//! reaped as soon as it exits, whether or not anyone waits for it and even
//! after its handle is released. [`Processes::wait`] callbacks count as
//! waiters of the loop; the watch itself does not.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, Entry, HandleKind, Key};
use crate::io::{Internal, IoCallback, IoMode, IoOp, Owner};
use crate::pipes::PipeHandle;
use crate::sys::{process as sys_process, SourceId, SourceKind};
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

    /// The signal that terminated the process, if one did (Unix).
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Whether neither is known: an adopted process that is not our child
    /// ends without the OS telling us how.
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
    /// An existing file, pipe or socket, handed to the child.
    Handle(OwnedFd),
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
    /// Runs `program` (looked up in `PATH` if it has no slash), with no
    /// arguments, the parent's environment and directory, and inherited streams.
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

    /// Adds an argument (passed as is, never through a shell).
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

/// How the driver learns that a process exited.
struct Watch {
    pidfd: Option<OwnedFd>,
    src: Option<SourceId>,
}

pub(crate) struct ProcessState {
    pid: u32,
    watch: Watch,
    exited: Option<ExitStatus>,
    waiters: Vec<Key>,
}

/// A released process that has not exited yet: still watched, to be reaped.
pub(crate) struct Orphan {
    key: Key,
    pid: u32,
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
        Stdio::Handle(fd) => std::process::Stdio::from(fd),
    }
}

impl Driver {
    /// Child processes: spawn, adopt, wait, kill.
    pub fn processes(&mut self) -> Processes<'_> {
        Processes { drv: self }
    }

    fn watch_process(&mut self, key: Key, pid: u32) -> Result<()> {
        match sys_process::pidfd_open(pid) {
            Ok(pidfd) => {
                let src = self.sys.add_source(&pidfd, SourceKind::Fd)?;
                let owner = Owner {
                    kind: HandleKind::Process,
                    key,
                };
                let mut op = IoOp::new(
                    owner,
                    IoCallback::Internal(Internal::ProcessExit),
                    Vec::new(),
                    IoMode::Once,
                );
                op.src = src;
                let state = self.process_table.get_mut(key).expect("live");
                state.watch = Watch {
                    pidfd: Some(pidfd),
                    src: Some(src),
                };
                self.start_io(op, false);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                // No pidfd: a thread blocks in waitid and hands the status to
                // the loop through the driver's own Remote.
                let remote = self.remote();
                std::thread::Builder::new()
                    .name("eventcore-waitpid".into())
                    .spawn(move || {
                        let ended = sys_process::wait_blocking(pid);
                        // If the driver is gone there is nobody to tell.
                        let _ = remote.run_internal(move |drv| {
                            drv.process_ended(key, ended);
                        });
                    })?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A watched process's pidfd is readable: reap it.
    pub(crate) fn process_exit_ready(&mut self, owner: Owner) -> bool {
        let key = owner.key;
        let pidfd = match self.process_table.get(key) {
            Some(state) => state.watch.pidfd.as_ref(),
            None => self
                .orphans
                .iter()
                .find(|o| o.key == key)
                .and_then(|o| o.watch.pidfd.as_ref()),
        };
        let Some(pidfd) = pidfd else {
            return false;
        };
        match sys_process::try_reap_pidfd(pidfd) {
            Ok(Some(ended)) => self.process_ended(key, ended),
            Ok(None) => {
                // Woken without an exit (should not happen with pidfd): watch on.
                if let Some(src) = self.process_src(key) {
                    let owner = Owner {
                        kind: HandleKind::Process,
                        key,
                    };
                    let mut op = IoOp::new(
                        owner,
                        IoCallback::Internal(Internal::ProcessExit),
                        Vec::new(),
                        IoMode::Once,
                    );
                    op.src = src;
                    self.start_io(op, false);
                }
                false
            }
            Err(_) => self.process_ended(
                key,
                sys_process::Ended {
                    code: None,
                    signal: None,
                },
            ),
        }
    }

    fn process_src(&self, key: Key) -> Option<SourceId> {
        match self.process_table.get(key) {
            Some(state) => state.watch.src,
            None => self.orphans.iter().find(|o| o.key == key).and_then(|o| o.watch.src),
        }
    }

    /// Records the exit and queues every waiter; closes the watch.
    fn process_ended(&mut self, key: Key, ended: sys_process::Ended) -> bool {
        let status = ExitStatus {
            code: ended.code,
            signal: ended.signal,
        };
        let watch = if let Some(state) = self.process_table.get_mut(key) {
            state.exited = Some(status);
            let waiters = std::mem::take(&mut state.waiters);
            let watch = std::mem::replace(&mut state.watch, Watch { pidfd: None, src: None });
            for op in waiters {
                self.push_ready(op, Outcome::Event);
            }
            Some(watch)
        } else {
            self.orphans
                .iter()
                .position(|o| o.key == key)
                .map(|i| self.orphans.swap_remove(i).watch)
        };
        if let Some(src) = watch.and_then(|w| w.src) {
            self.sys.remove_source(src);
        }
        false
    }

    pub(crate) fn complete_process_wait(&mut self, key: Key) -> bool {
        let Some(Entry {
            value: Op::ProcessWait(op),
            ..
        }) = self.ops.remove(key)
        else {
            return false;
        };
        let status = self
            .process_table
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
        let Some(entry) = self.process_table.remove(key) else {
            return;
        };
        for op in entry.value.waiters {
            self.ops.remove(op);
        }
        if entry.value.exited.is_none() {
            // Keep watching so the child is reaped when it exits.
            self.orphans.push(Orphan {
                key,
                pid: entry.value.pid,
                watch: entry.value.watch,
            });
        }
    }

    /// Closes the watches of released, still running processes (driver drop).
    /// The driver is going away: reap released children that have exited,
    /// and leave those still running to a detached thread that waits for
    /// them, so none becomes a zombie.
    pub(crate) fn drop_orphans(&mut self) {
        for orphan in std::mem::take(&mut self.orphans) {
            if let Some(src) = orphan.watch.src {
                self.sys.remove_source(src);
            }
            let reaped = match &orphan.watch.pidfd {
                Some(pidfd) => !matches!(sys_process::try_reap_pidfd(pidfd), Ok(None)),
                None => false,
            };
            if !reaped {
                let pid = orphan.pid;
                // Without a thread the child stays a zombie until this process
                // exits; nothing else can be done then.
                let _ = std::thread::Builder::new()
                    .name("eventcore-reaper".into())
                    .spawn(move || sys_process::wait_blocking(pid));
            }
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
        let mut child = cmd.spawn()?;
        let pid = child.id();
        // The std handle is dropped without waiting: this driver reaps.
        let stdin = child.stdin.take().map(OwnedFd::from);
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        drop(child);
        let process = self.adopt_pid(pid)?;
        let mut adopt = |fd: Option<OwnedFd>| fd.map(|fd| self.drv.adopt_pipe_fd(fd)).transpose();
        Ok(Child {
            process,
            stdin: adopt(stdin)?,
            stdout: adopt(stdout)?,
            stderr: adopt(stderr)?,
        })
    }

    /// Watches an existing process by pid. For a child of this process the
    /// exit status is reported; for any other process only the fact that it
    /// ended ([`ExitStatus::is_unknown`]).
    pub fn adopt(&mut self, pid: u32) -> Result<ProcessId> {
        self.adopt_pid(pid)
    }

    fn adopt_pid(&mut self, pid: u32) -> Result<ProcessId> {
        let key = self.drv.process_table.insert(ProcessState {
            pid,
            watch: Watch { pidfd: None, src: None },
            exited: None,
            waiters: Vec::new(),
        });
        if let Err(e) = self.drv.watch_process(key, pid) {
            self.drv.process_table.remove(key);
            return Err(e);
        }
        Ok(ProcessId(key))
    }

    /// The process id.
    pub fn pid(&self, process: ProcessId) -> Result<u32> {
        self.drv
            .process_table
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
            .process_table
            .get(process.0)
            .map(|s| s.exited)
            .ok_or_else(Error::invalid_handle)
    }

    /// Sends `signo` to the process (on Windows: terminates it). A process that
    /// has already exited is [`Status::NotFound`]; its pid is never signalled,
    /// since it may belong to another process by now.
    pub fn kill(&mut self, process: ProcessId, signo: i32) -> Result<()> {
        let s = self
            .drv
            .process_table
            .get(process.0)
            .ok_or_else(Error::invalid_handle)?;
        if s.exited.is_some() {
            return Err(Error::new(Status::NotFound));
        }
        Ok(sys_process::send_signal(s.watch.pidfd.as_ref(), s.pid, signo)?)
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
            .process_table
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
                .process_table
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
        if let Some(state) = self.drv.process_table.get_mut(process.0) {
            state.waiters.retain(|k| *k != wait.0);
        }
        self.drv.ops.remove(wait.0).is_some()
    }
}
