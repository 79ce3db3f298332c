//! Contract tests for child processes: exit codes and terminating signals,
//! piped, null and handed-over standard streams, environment and working
//! directory, spawn failures, adopt, `has_exited`, `kill`, `wait` /
//! `cancel_wait` — and no zombies: the upstream regression test
//! `issue-122-coalesced-sigchld.d` (20 children exiting at the same instant
//! must all be reaped), plus children whose handles were released early.
//!
//! Zombie checks look at `/proc/<pid>/stat` first (which does not reap), and
//! only then ask `waitpid(pid, WNOHANG)`, which must fail with ECHILD.

mod util;

use std::cell::{Cell, RefCell};
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::{
    BackendKind, Command, Driver, ExitReason, ExitStatus, IoMode, PipeHandle, ProcessId, Result, Status, Stdio,
};
use util::{assert_no_leaks, driver, run_until, run_until_not_idle, TempDir};

const LIMIT: Duration = Duration::from_secs(10);

type Slot<T> = Rc<RefCell<Option<T>>>;

fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

/// Counts how often it was dropped: a callback that never runs must still be
/// freed, exactly once.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: &Result<T>, status: Status) {
    match r {
        Ok(v) => panic!("expected Err({status:?}), got Ok({v:?})"),
        Err(e) => assert_eq!(e.status(), status, "unexpected error {e}"),
    }
}

/// `sh -c script` with the given streams.
fn sh(script: &str) -> Command {
    Command::new("sh").arg("-c").arg(script)
}

/// Waits for `p` to exit and returns its status; checks that the callback
/// runs from `process_events` (not inside `wait`), once, with `p`.
fn wait_exit(drv: &mut Driver, p: ProcessId) -> ExitStatus {
    let s = slot();
    let s2 = s.clone();
    drv.processes()
        .wait(p, move |_, got, st| {
            assert_eq!(got, p, "the callback gets its process");
            assert!(s2.borrow().is_none(), "a wait callback ran twice");
            *s2.borrow_mut() = Some(st);
        })
        .expect("wait");
    assert!(s.borrow().is_none(), "wait callback ran inside wait()");
    run_until(drv, LIMIT, |_| s.borrow().is_some());
    let st = s.borrow_mut().take();
    st.unwrap()
}

/// Reads a pipe to its end (`Disconnected`); returns everything read.
fn read_to_end(drv: &mut Driver, p: PipeHandle) -> Vec<u8> {
    let out: Rc<RefCell<Vec<u8>>> = Rc::default();
    let done = Rc::new(Cell::new(false));
    fn next(drv: &mut Driver, p: PipeHandle, out: Rc<RefCell<Vec<u8>>>, done: Rc<Cell<bool>>) {
        drv.pipes()
            .read(p, vec![0; 4096], IoMode::Once, move |drv, p, r, buf| match r {
                Ok(n) => {
                    out.borrow_mut().extend_from_slice(&buf[..n]);
                    next(drv, p, out, done);
                }
                Err(e) => {
                    assert_eq!(e.status(), Status::Disconnected, "{e}");
                    done.set(true);
                }
            });
    }
    next(drv, p, out.clone(), done.clone());
    run_until(drv, LIMIT, |_| done.get());
    let v = out.borrow().clone();
    v
}

/// The state letter of `/proc/<pid>/stat` (`Z` for a zombie), or `None` if
/// the process is gone (reaped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Asserts that `pid` is not a zombie and was reaped: `/proc` shows no `Z`,
/// and `waitpid(pid, WNOHANG)` fails with ECHILD.
#[track_caller]
fn assert_reaped(pid: u32) {
    assert_ne!(proc_state(pid), Some('Z'), "pid {pid} is a zombie");
    let mut status = 0;
    // SAFETY: waitpid with a valid out pointer; WNOHANG never blocks.
    let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, -1, "waitpid({pid}) found an unreaped child");
    assert_eq!(err.raw_os_error(), Some(libc::ECHILD), "waitpid({pid}): {err}");
}

/// Runs the loop until `done` holds, with a timer keeping it alive (a
/// released process's watch is no waiter).
fn run_with_keepalive(drv: &mut Driver, mut done: impl FnMut(&mut Driver) -> bool) {
    let keep = drv.timers().create();
    drv.timers().set(keep, LIMIT, Duration::ZERO).unwrap();
    run_until(drv, LIMIT, &mut done);
    drv.release_ref(keep).unwrap();
}

/// The loop must drain to `OutOfWaiters`.
#[track_caller]
fn assert_out_of_waiters(drv: &mut Driver) {
    assert_eq!(run_until_not_idle(drv, LIMIT), ExitReason::OutOfWaiters);
    assert_eq!(drv.waiter_count(), 0);
}

/// A blocking OS pipe made with `pipe2` (close-on-exec): (read end, write end).
fn os_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors on success.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Exit codes come through: `exit 3` is code 3 (no signal, not success),
/// `true` is success. Afterwards `has_exited` and `exit_status` say so, the
/// child is reaped, and the loop ends `OutOfWaiters` once the handles are
/// released.
fn process_exit_code(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(sh("exit 3")).expect("spawn");
    assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
    let pid = drv.processes().pid(child.process).unwrap();
    let st = wait_exit(&mut drv, child.process);
    assert_eq!(st.code(), Some(3));
    assert_eq!(st.signal(), None);
    assert!(!st.success() && !st.is_unknown());
    assert!(drv.processes().has_exited(child.process).unwrap());
    assert_eq!(drv.processes().exit_status(child.process).unwrap(), Some(st));
    assert_reaped(pid);

    let ok = drv.processes().spawn(Command::new("true")).unwrap();
    let st = wait_exit(&mut drv, ok.process);
    assert!(st.success());
    assert_eq!(st.code(), Some(0));

    assert!(!drv.release_ref(child.process).unwrap());
    assert!(!drv.release_ref(ok.process).unwrap());
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// A child killed by a signal reports that signal and no exit code:
/// SIGTERM → 15, SIGKILL → 9. `kill` itself never runs the wait callback.
fn process_killed_by_signal(kind: BackendKind) {
    let mut drv = driver(kind);
    for signo in [libc::SIGTERM, libc::SIGKILL] {
        let child = drv.processes().spawn(Command::new("sleep").arg("10")).unwrap();
        let pid = drv.processes().pid(child.process).unwrap();
        assert!(!drv.processes().has_exited(child.process).unwrap());
        let s: Slot<ExitStatus> = slot();
        let s2 = s.clone();
        drv.processes()
            .wait(child.process, move |_, _, st| *s2.borrow_mut() = Some(st))
            .unwrap();
        // Not a signal: refused, and the child is not touched.
        assert_status(&drv.processes().kill(child.process, 1000), Status::InvalidArgument);
        assert!(proc_state(pid).is_some_and(|s| s != 'Z'));
        let start = Instant::now();
        drv.processes().kill(child.process, signo).expect("kill");
        assert!(s.borrow().is_none(), "wait callback ran inside kill()");
        run_until(&mut drv, LIMIT, |_| s.borrow().is_some());
        assert!(start.elapsed() < Duration::from_secs(5), "killed promptly");
        let st = s.take().unwrap();
        assert_eq!(st.signal(), Some(signo), "{st:?}");
        assert_eq!(st.code(), None);
        assert!(!st.success());
        assert_reaped(pid);
        assert!(!drv.release_ref(child.process).unwrap());
    }
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// `cat` with all three streams piped: what goes into stdin comes out of
/// stdout once stdin is closed, stderr stays empty, and the child exits 0.
fn process_piped_stdio_round_trip(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv
        .processes()
        .spawn(
            Command::new("cat")
                .stdin(Stdio::Pipe)
                .stdout(Stdio::Pipe)
                .stderr(Stdio::Pipe),
        )
        .unwrap();
    let (stdin, stdout, stderr) = (child.stdin.unwrap(), child.stdout.unwrap(), child.stderr.unwrap());
    let data = b"hello through cat\n".repeat(50);
    let wrote = Rc::new(Cell::new(false));
    let w = wrote.clone();
    let len = data.len();
    drv.pipes()
        .write(stdin, data.clone(), IoMode::All, move |drv, p, r, _| {
            assert_eq!(r.unwrap(), len);
            assert!(!drv.release_ref(p).unwrap(), "closing stdin");
            w.set(true);
        });
    assert_eq!(read_to_end(&mut drv, stdout), data);
    assert!(wrote.get());
    assert_eq!(read_to_end(&mut drv, stderr), b"");
    assert!(wait_exit(&mut drv, child.process).success());
    for p in [stdout, stderr] {
        assert!(!drv.release_ref(p).unwrap());
    }
    assert!(!drv.release_ref(child.process).unwrap());
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// The environment and the working directory of the command are applied:
/// `echo "$FOO"; pwd` prints the value and the directory.
fn process_env_and_working_directory_applied(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("proc-cwd");
    let child = drv
        .processes()
        .spawn(
            sh("echo \"$FOO\"; pwd")
                .env("FOO", "bar baz")
                .current_dir(dir.path())
                .stdout(Stdio::Pipe),
        )
        .unwrap();
    let out = String::from_utf8(read_to_end(&mut drv, child.stdout.unwrap())).unwrap();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(out, format!("bar baz\n{}\n", cwd.display()));
    assert!(wait_exit(&mut drv, child.process).success());
    drv.release_ref(child.stdout.unwrap()).unwrap();
    drv.release_ref(child.process).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// `env_clear` starts the child with only what `env` sets, and `env_remove`
/// hides one inherited variable.
fn process_env_clear_and_remove(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv
        .processes()
        .spawn(
            Command::new("/bin/sh")
                .arg("-c")
                .arg("echo \"${HOME-unset}:${ONLY-unset}\"")
                .env_clear()
                .env("ONLY", "me")
                .stdout(Stdio::Pipe),
        )
        .unwrap();
    let out = String::from_utf8(read_to_end(&mut drv, child.stdout.unwrap())).unwrap();
    assert_eq!(out, "unset:me\n");
    assert!(wait_exit(&mut drv, child.process).success());
    drv.release_ref(child.stdout.unwrap()).unwrap();
    drv.release_ref(child.process).unwrap();

    // (Not PATH: a shell sets a default PATH when none is inherited.)
    assert!(std::env::var_os("HOME").is_some(), "HOME is inherited");
    let child = drv
        .processes()
        .spawn(
            Command::new("/bin/sh")
                .arg("-c")
                .arg("echo \"${HOME-unset}\"")
                .env_remove("HOME")
                .stdout(Stdio::Pipe),
        )
        .unwrap();
    let out = String::from_utf8(read_to_end(&mut drv, child.stdout.unwrap())).unwrap();
    assert_eq!(out, "unset\n");
    assert!(wait_exit(&mut drv, child.process).success());
    drv.release_ref(child.stdout.unwrap()).unwrap();
    drv.release_ref(child.process).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// Upstream `issue-122-coalesced-sigchld.d`: 20 children that all block on
/// one shared pipe and exit (code 7) the instant its write end is closed.
/// All 20 wait callbacks run, each once, within 5 s; afterwards every pid is
/// reaped (`waitpid(pid, WNOHANG)` = -1 / ECHILD, no zombie in `/proc`).
fn process_twenty_children_exiting_at_once_all_reaped(kind: BackendKind) {
    const N: usize = 20;
    let mut drv = driver(kind);
    let (rfd, wfd) = os_pipe();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let mut pids = Vec::new();
    let mut procs = Vec::new();
    for _ in 0..N {
        let child = drv
            .processes()
            .spawn(
                sh("read x; exit 7")
                    .stdin(Stdio::Handle(rfd.try_clone().unwrap()))
                    .stdout(Stdio::Null),
            )
            .expect("spawn");
        let c = calls.clone();
        drv.processes()
            .wait(child.process, move |_, p, st| c.borrow_mut().push((p, st)))
            .unwrap();
        pids.push(drv.processes().pid(child.process).unwrap());
        procs.push(child.process);
    }
    drop(rfd);
    // Give every child time to reach `read`, then let them all go at once.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        drv.process_events(Some(Duration::ZERO)).unwrap(),
        ExitReason::Timeout,
        "no child may exit before the pipe closes"
    );
    let start = Instant::now();
    drop(wfd);
    run_until(&mut drv, Duration::from_secs(5), |_| calls.borrow().len() >= N);
    eprintln!("{N} children reaped in {:?}", start.elapsed());
    assert_eq!(
        drv.process_events(Some(Duration::ZERO)).unwrap(),
        ExitReason::OutOfWaiters
    );
    let calls = calls.borrow();
    assert_eq!(calls.len(), N, "one callback per child");
    for p in &procs {
        let mine: Vec<_> = calls.iter().filter(|(q, _)| q == p).collect();
        assert_eq!(mine.len(), 1, "exactly one callback for {p:?}");
        assert_eq!(mine[0].1.code(), Some(7));
    }
    for &pid in &pids {
        assert_reaped(pid);
    }
    for p in procs {
        assert!(!drv.release_ref(p).unwrap());
    }
    assert_no_leaks(&drv);
}

/// Spawning a program that does not exist fails in `spawn` with `NotFound`
/// (by absolute path and by `PATH` look-up), as does a missing working
/// directory; nothing is left behind — not even the pipes asked for.
fn process_spawn_missing_program_is_not_found(kind: BackendKind) {
    let mut drv = driver(kind);
    let commands = [
        Command::new("/nonexistent/eventcore-no-such-program"),
        Command::new("eventcore-no-such-program-on-path"),
        Command::new("true").current_dir("/nonexistent/eventcore-no-such-dir"),
    ];
    for cmd in commands {
        let r = drv
            .processes()
            .spawn(cmd.stdin(Stdio::Pipe).stdout(Stdio::Pipe).stderr(Stdio::Pipe));
        let e = r.as_ref().map(|c| c.process).expect_err("spawn must fail");
        assert_eq!(e.status(), Status::NotFound, "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        assert_no_leaks(&drv);
    }
    assert_eq!(drv.waiter_count(), 0);
    assert_out_of_waiters(&mut drv);
}

/// A file without execute permission cannot be spawned: `NotAllowed`
/// (EACCES, also for root), with nothing left behind.
fn process_spawn_non_executable_is_not_allowed(kind: BackendKind) {
    use std::os::unix::fs::PermissionsExt;
    let mut drv = driver(kind);
    let dir = TempDir::new("proc-noexec");
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = drv.processes().spawn(Command::new(&script));
    let e = r.map(|c| c.process).expect_err("spawn must fail");
    assert_eq!(e.status(), Status::NotAllowed, "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    assert_no_leaks(&drv);
    assert_out_of_waiters(&mut drv);
}

/// A child whose handle is released while it still runs is still reaped
/// when it exits (as long as the loop runs): it disappears from `/proc`
/// without ever being waited for, and `waitpid` finds nothing.
fn process_released_before_exit_is_still_reaped(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(sh("sleep 0.2")).unwrap();
    let pid = drv.processes().pid(child.process).unwrap();
    assert!(!drv.release_ref(child.process).unwrap());
    assert!(!drv.is_valid(child.process));
    assert_status(&drv.processes().pid(child.process), Status::InvalidHandle);
    assert_eq!(drv.waiter_count(), 0, "a released process is no waiter");
    assert!(proc_state(pid).is_some(), "still running");

    run_with_keepalive(&mut drv, |_| proc_state(pid).is_none());
    assert_reaped(pid);
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// A cancelled wait's callback never runs (and is freed at once); the loop
/// ends `OutOfWaiters` (the process alone is no waiter). The child is still
/// reaped, `has_exited` becomes true, and a second cancel returns false. A
/// wait registered next to the cancelled one still runs.
fn process_cancel_wait(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(sh("sleep 0.2")).unwrap();
    let p = child.process;
    let pid = drv.processes().pid(p).unwrap();
    let ran = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(0));
    let (r, d) = (ran.clone(), DropCounter(dropped.clone()));
    let w = drv
        .processes()
        .wait(p, move |_, _, _| {
            let _d = &d;
            r.set(true);
        })
        .unwrap();
    assert_eq!(drv.waiter_count(), 1);
    assert!(drv.processes().cancel_wait(p, w));
    assert_eq!(dropped.get(), 1, "the cancelled callback is freed");
    assert!(!drv.processes().cancel_wait(p, w), "nothing left to cancel");
    assert_eq!(drv.waiter_count(), 0);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::OutOfWaiters
    );

    // A second wait, kept, still gets the exit.
    let st = wait_exit(&mut drv, p);
    assert_eq!(st.code(), Some(0));
    assert!(drv.processes().has_exited(p).unwrap());
    assert!(!ran.get(), "a cancelled wait's callback must never run");
    assert_reaped(pid);
    drv.release_ref(p).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// A cancelled wait on a process that is left alone still lets the driver
/// reap it: no callback, and the child leaves no zombie.
fn process_cancel_wait_then_exit_is_reaped_silently(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(Command::new("true")).unwrap();
    let p = child.process;
    let pid = drv.processes().pid(p).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let w = drv.processes().wait(p, move |_, _, _| r.set(true)).unwrap();
    assert!(drv.processes().cancel_wait(p, w));
    run_with_keepalive(&mut drv, |drv| drv.processes().has_exited(p).unwrap());
    assert!(!ran.get());
    assert_reaped(pid);
    drv.release_ref(p).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// A wait on a process that has already exited is not called inside `wait`
/// but from the very next `process_events` (even a polling one), with the
/// same status; several waits are each called once.
fn process_wait_after_exit_runs_from_next_process_events(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(sh("exit 4")).unwrap();
    let p = child.process;
    assert_eq!(wait_exit(&mut drv, p).code(), Some(4));

    let got = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..2 {
        let g = got.clone();
        drv.processes()
            .wait(p, move |_, _, st| g.borrow_mut().push(st.code()))
            .unwrap();
    }
    assert!(got.borrow().is_empty(), "wait callback ran inside wait()");
    assert_eq!(drv.waiter_count(), 2);
    assert_eq!(drv.process_events(Some(Duration::ZERO)).unwrap(), ExitReason::Idle);
    assert_eq!(*got.borrow(), [Some(4), Some(4)]);
    drv.release_ref(p).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// Several waits on a running process are all called, each exactly once.
fn process_several_waits_all_called(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(sh("sleep 0.1; exit 2")).unwrap();
    let p = child.process;
    let got = Rc::new(RefCell::new(Vec::new()));
    for i in 0..3 {
        let g = got.clone();
        drv.processes()
            .wait(p, move |_, _, st| g.borrow_mut().push((i, st.code())))
            .unwrap();
    }
    assert_eq!(drv.waiter_count(), 3);
    assert_out_of_waiters(&mut drv);
    let mut got = got.borrow().clone();
    got.sort();
    assert_eq!(got, [(0, Some(2)), (1, Some(2)), (2, Some(2))]);
    drv.release_ref(p).unwrap();
    assert_no_leaks(&drv);
}

/// `kill` after the process has exited (and been reaped) is `NotFound`: the
/// pid may belong to someone else by now, so it is never signalled.
fn process_kill_after_exit_is_not_found(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(Command::new("true")).unwrap();
    let p = child.process;
    assert!(wait_exit(&mut drv, p).success());
    assert_status(&drv.processes().kill(p, libc::SIGTERM), Status::NotFound);
    assert_status(&drv.processes().kill(p, libc::SIGKILL), Status::NotFound);
    drv.release_ref(p).unwrap();
    assert_status(&drv.processes().kill(p, libc::SIGTERM), Status::InvalidHandle);
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// `has_exited` is false while the child runs and true once the loop has
/// seen it exit; `exit_status` follows.
fn process_has_exited_follows_the_child(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(sh("sleep 0.2; exit 1")).unwrap();
    let p = child.process;
    assert!(!drv.processes().has_exited(p).unwrap());
    assert_eq!(drv.processes().exit_status(p).unwrap(), None);
    run_with_keepalive(&mut drv, |drv| drv.processes().has_exited(p).unwrap());
    let st = drv.processes().exit_status(p).unwrap().expect("exited");
    assert_eq!(st.code(), Some(1));
    drv.release_ref(p).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// `Stdio::Null` gives the child an empty stdin and swallows stderr;
/// `Stdio::Handle` hands it an open file as stdout, whose content is checked.
fn process_stdio_null_and_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("proc-stdio");
    let out_path = dir.path().join("out.txt");
    let file = std::fs::File::create(&out_path).unwrap();
    let child = drv
        .processes()
        .spawn(
            sh("cat; echo out; echo err >&2")
                .stdin(Stdio::Null)
                .stdout(Stdio::Handle(OwnedFd::from(file)))
                .stderr(Stdio::Null),
        )
        .unwrap();
    assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
    assert!(wait_exit(&mut drv, child.process).success());
    assert_eq!(std::fs::read(&out_path).unwrap(), b"out\n");
    drv.release_ref(child.process).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// A child started with `std::process::Command` can be adopted by pid: its
/// exit code is reported and the driver reaps it. Adopting a pid that no
/// longer exists is an error, with nothing left behind.
fn process_adopt_child_pid(kind: BackendKind) {
    let mut drv = driver(kind);
    let std_child = std::process::Command::new("sh")
        .args(["-c", "sleep 0.1; exit 5"])
        .spawn()
        .unwrap();
    let pid = std_child.id();
    drop(std_child); // does not wait: the driver reaps
    let p = drv.processes().adopt(pid).expect("adopt");
    assert_eq!(drv.processes().pid(p).unwrap(), pid);
    assert_eq!(wait_exit(&mut drv, p).code(), Some(5));
    assert_reaped(pid);
    drv.release_ref(p).unwrap();

    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let r = drv.processes().adopt(gone_pid);
    assert!(r.is_err(), "adopting a reaped pid must fail: {r:?}");
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// Callbacks may start and release anything: each wait callback releases
/// its own process handle and spawns the next child, three times; the loop
/// then ends `OutOfWaiters` with nothing left and every child reaped.
fn process_spawn_from_wait_callback(kind: BackendKind) {
    fn chain(drv: &mut Driver, n: i32, codes: Rc<RefCell<Vec<i32>>>, pids: Rc<RefCell<Vec<u32>>>) {
        let child = drv.processes().spawn(sh(&format!("exit {n}"))).expect("spawn");
        pids.borrow_mut().push(drv.processes().pid(child.process).unwrap());
        drv.processes()
            .wait(child.process, move |drv, p, st| {
                codes.borrow_mut().push(st.code().unwrap());
                assert!(!drv.release_ref(p).unwrap(), "own handle released");
                if n < 3 {
                    chain(drv, n + 1, codes, pids);
                }
            })
            .unwrap();
    }
    let mut drv = driver(kind);
    let codes = Rc::new(RefCell::new(Vec::new()));
    let pids = Rc::new(RefCell::new(Vec::new()));
    chain(&mut drv, 1, codes.clone(), pids.clone());
    assert_out_of_waiters(&mut drv);
    assert_eq!(*codes.borrow(), [1, 2, 3]);
    for &pid in pids.borrow().iter() {
        assert_reaped(pid);
    }
    assert_no_leaks(&drv);
}

/// Dropping the driver while a child still runs leaks nothing: the child is
/// not left behind as a zombie once it exits (nobody else will reap it).
fn process_driver_dropped_before_child_exits_leaves_no_zombie(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(sh("sleep 0.2")).unwrap();
    let pid = drv.processes().pid(child.process).unwrap();
    drop(drv);
    let deadline = Instant::now() + Duration::from_secs(3);
    while proc_state(pid).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = proc_state(pid);
    if state == Some('Z') {
        // Reap it here so the failure does not leave a zombie behind.
        // SAFETY: waitpid with a null status pointer is allowed.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
    }
    assert_eq!(state, None, "pid {pid} outlived its driver as {state:?} (Z = zombie)");
}

/// After release the process handle is stale: every call is
/// `InvalidHandle`, `cancel_wait` is false, nothing panics.
fn process_stale_handle_is_invalid_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(Command::new("true")).unwrap();
    let p = child.process;
    let pid = drv.processes().pid(p).unwrap();
    let w = drv.processes().wait(p, |_, _, _| {}).unwrap();
    assert!(!drv.release_ref(p).unwrap());
    assert_eq!(drv.waiter_count(), 0, "the release withdrew the wait");
    assert_status(&drv.processes().pid(p), Status::InvalidHandle);
    assert_status(&drv.processes().has_exited(p), Status::InvalidHandle);
    assert_status(&drv.processes().exit_status(p), Status::InvalidHandle);
    assert_status(&drv.processes().kill(p, libc::SIGTERM), Status::InvalidHandle);
    assert_status(&drv.processes().wait(p, |_, _, _| {}).map(drop), Status::InvalidHandle);
    assert!(!drv.processes().cancel_wait(p, w));
    assert_status(&drv.release_ref(p), Status::InvalidHandle);
    // The released child is still reaped while the loop runs.
    run_with_keepalive(&mut drv, |_| proc_state(pid).is_none());
    assert_reaped(pid);
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

contract_tests! {
    process_exit_code,
    process_killed_by_signal,
    process_piped_stdio_round_trip,
    process_env_and_working_directory_applied,
    process_env_clear_and_remove,
    process_twenty_children_exiting_at_once_all_reaped,
    process_spawn_missing_program_is_not_found,
    process_spawn_non_executable_is_not_allowed,
    process_released_before_exit_is_still_reaped,
    process_cancel_wait,
    process_cancel_wait_then_exit_is_reaped_silently,
    process_wait_after_exit_runs_from_next_process_events,
    process_several_waits_all_called,
    process_kill_after_exit_is_not_found,
    process_has_exited_follows_the_child,
    process_stdio_null_and_handle,
    process_adopt_child_pid,
    process_stale_handle_is_invalid_handle,
    process_spawn_from_wait_callback,
    process_driver_dropped_before_child_exits_leaves_no_zombie,
}
