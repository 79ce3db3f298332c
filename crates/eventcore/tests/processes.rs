//! Contract tests for child processes: exit codes and terminating signals,
//! piped, null and handed-over standard streams, environment and working
//! directory, spawn failures, adopt, `has_exited`, `kill`, `wait` /
//! `cancel_wait` — and no zombies: the upstream regression test
//! `issue-122-coalesced-sigchld.d` (20 children exiting at the same instant
//! must all be reaped), plus children whose handles were released early.
//!
//! The portable scenarios run everywhere with a trivial child (`sh -c` /
//! `true` on Unix, `cmd /C` or this test program on Windows); the ones that
//! need POSIX tools, signals and zombies are in `unix_only`, their Windows
//! counterparts (`cmd`, `TerminateProcess`, handles) in `windows_only`.
//!
//! Zombie checks (Unix) look at `/proc/<pid>/stat` first (which does not
//! reap), and only then ask `waitpid(pid, WNOHANG)`, which must fail with
//! ECHILD. Windows has no zombies; there the checks are that the process
//! object is gone once it exited (the driver closed its handle).

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::signal_numbers::{SIGKILL, SIGTERM};
use eventcore::{
    BackendKind, Child, Command, Driver, ExitReason, ExitStatus, IoMode, PipeHandle, ProcessId, Status, Stdio,
};
use util::{
    assert_no_leaks, assert_out_of_waiters, assert_status, driver, run_until, run_until_not_idle, slot, DropCounter,
    Slot, TempDir,
};

const LIMIT: Duration = Duration::from_secs(10);

/// `sh -c script` with the given streams.
#[cfg(unix)]
fn sh(script: &str) -> Command {
    Command::new("sh").arg("-c").arg(script)
}

/// A child that exits with `code` at once: `sh -c "exit N"`, `cmd /C exit N`.
fn exit_with(code: i32) -> Command {
    #[cfg(unix)]
    return sh(&format!("exit {code}"));
    #[cfg(windows)]
    return Command::new("cmd").arg("/C").arg(format!("exit {code}"));
}

/// A child that succeeds at once: `true`, `cmd /C exit 0`.
fn succeed() -> Command {
    #[cfg(unix)]
    return Command::new("true");
    #[cfg(windows)]
    return exit_with(0);
}

/// A child that runs for about `ms` milliseconds, then exits with `code`:
/// `sh -c "sleep S; exit N"` (just `sleep S` for code 0), or this test
/// program as a child on Windows (see `windows_only::child`).
fn run_for(ms: u64, code: i32) -> Command {
    #[cfg(unix)]
    {
        let secs = ms as f64 / 1000.0;
        if code == 0 {
            sh(&format!("sleep {secs}"))
        } else {
            sh(&format!("sleep {secs}; exit {code}"))
        }
    }
    #[cfg(windows)]
    windows_only::child(&format!("sleep {ms} {code}"))
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
        drv.pipes().read(
            p,
            Vec::with_capacity(4096),
            IoMode::Once,
            move |drv, p, r, buf| match r {
                Ok(n) => {
                    out.borrow_mut().extend_from_slice(&buf[..n]);
                    next(drv, p, out, done);
                }
                Err(e) => {
                    assert_eq!(e.status(), Status::Disconnected, "{e}");
                    done.set(true);
                }
            },
        );
    }
    next(drv, p, out.clone(), done.clone());
    run_until(drv, LIMIT, |_| done.get());
    let v = out.borrow().clone();
    v
}

/// Spawns `cmd` with its standard output piped, reads that to the end and
/// waits for a successful exit; releases the pipe and the process and returns
/// what the child wrote.
fn stdout_of(drv: &mut Driver, cmd: Command) -> Vec<u8> {
    let child = drv.processes().spawn(cmd.stdout(Stdio::Pipe)).unwrap();
    let out = read_to_end(drv, child.stdout.unwrap());
    assert!(wait_exit(drv, child.process).success());
    drv.release_ref(child.stdout.unwrap()).unwrap();
    drv.release_ref(child.process).unwrap();
    out
}

/// Spawns `cmd` with standard input and error null and standard output handed
/// over as a file; waits for a successful exit and returns what the child
/// wrote into the file. No pipe is made, and the driver keeps nothing.
fn stdout_through_file(drv: &mut Driver, cmd: Command) -> Vec<u8> {
    let dir = TempDir::new("proc-stdio");
    let out_path = dir.path().join("out.txt");
    let file = std::fs::File::create(&out_path).unwrap();
    let child = drv
        .processes()
        .spawn(
            cmd.stdin(Stdio::Null)
                .stdout(Stdio::Handle(file.into()))
                .stderr(Stdio::Null),
        )
        .unwrap();
    assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
    assert!(wait_exit(drv, child.process).success());
    let out = std::fs::read(&out_path).unwrap();
    drv.release_ref(child.process).unwrap();
    assert_out_of_waiters(drv);
    assert_no_leaks(drv);
    out
}

/// Spawns `cmd` with all three standard streams piped, writes `data` to its
/// standard input in one write that closes it from its callback, reads
/// standard output and error to the end and waits for a successful exit;
/// releases everything, checks that nothing is left and returns (standard
/// output, standard error).
fn piped_round_trip(drv: &mut Driver, cmd: Command, data: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let child = drv
        .processes()
        .spawn(cmd.stdin(Stdio::Pipe).stdout(Stdio::Pipe).stderr(Stdio::Pipe))
        .unwrap();
    let (stdin, stdout, stderr) = (child.stdin.unwrap(), child.stdout.unwrap(), child.stderr.unwrap());
    let wrote = Rc::new(Cell::new(false));
    let w = wrote.clone();
    let len = data.len();
    drv.pipes().write(stdin, data, IoMode::All, move |drv, p, r, _| {
        assert_eq!(r.unwrap(), len);
        assert!(!drv.release_ref(p).unwrap(), "closing stdin");
        w.set(true);
    });
    let out = read_to_end(drv, stdout);
    assert!(wrote.get());
    let err = read_to_end(drv, stderr);
    assert!(wait_exit(drv, child.process).success());
    for p in [stdout, stderr] {
        assert!(!drv.release_ref(p).unwrap());
    }
    assert!(!drv.release_ref(child.process).unwrap());
    assert_out_of_waiters(drv);
    assert_no_leaks(drv);
    (out, err)
}

/// Exits as wait callbacks report them.
type ExitLog = Rc<RefCell<Vec<(ProcessId, ExitStatus)>>>;

/// Spawns `cmd` and waits on it, logging its exit in `calls`.
fn spawn_logged(drv: &mut Driver, cmd: Command, calls: &ExitLog) -> Child {
    let child = drv.processes().spawn(cmd).expect("spawn");
    let c = calls.clone();
    drv.processes()
        .wait(child.process, move |_, p, st| c.borrow_mut().push((p, st)))
        .unwrap();
    child
}

/// The children `procs` all block reading a pipe whose write end is
/// `release`; none may have exited yet. Closes `release`, lets all of them
/// go at once, and checks that within 5 s every child's wait callback ran,
/// exactly once, with exit code 7, and that the loop then runs out of waiters.
fn release_children_expect_exit_7(drv: &mut Driver, release: impl Sized, procs: &[ProcessId], calls: &ExitLog) {
    let n = procs.len();
    assert_eq!(
        drv.process_events(Some(Duration::ZERO)).unwrap(),
        ExitReason::Timeout,
        "no child may exit before the pipe closes"
    );
    let start = Instant::now();
    drop(release);
    run_until(drv, Duration::from_secs(5), |_| calls.borrow().len() >= n);
    eprintln!("{n} children reported in {:?}", start.elapsed());
    assert_eq!(
        drv.process_events(Some(Duration::ZERO)).unwrap(),
        ExitReason::OutOfWaiters
    );
    let calls = calls.borrow();
    assert_eq!(calls.len(), n, "one callback per child");
    for p in procs {
        let mine: Vec<_> = calls.iter().filter(|(q, _)| q == p).collect();
        assert_eq!(mine.len(), 1, "exactly one callback for {p:?}");
        assert_eq!(mine[0].1.code(), Some(7));
    }
}

/// The state letter of `/proc/<pid>/stat` (`Z` for a zombie), or `None` if
/// the process is gone (reaped).
#[cfg(unix)]
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Asserts that `pid` is not a zombie and was reaped: `/proc` shows no `Z`,
/// and `waitpid(pid, WNOHANG)` fails with ECHILD.
#[cfg(unix)]
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

/// Releases the exited child `p` (process id `pid`) and checks that nothing
/// is left; on Unix it must have been reaped already (Windows has no
/// zombies).
#[track_caller]
fn release_reaped(drv: &mut Driver, p: ProcessId, pid: u32) {
    #[cfg(unix)]
    assert_reaped(pid);
    #[cfg(windows)]
    let _ = pid;
    drv.release_ref(p).unwrap();
    assert_out_of_waiters(drv);
    assert_no_leaks(drv);
}

/// Runs the loop until `done` holds, with a timer keeping it alive (a
/// released process's watch is no waiter).
fn run_with_keepalive(drv: &mut Driver, mut done: impl FnMut(&mut Driver) -> bool) {
    let keep = drv.timers().create();
    drv.timers().set(keep, LIMIT, Duration::ZERO).unwrap();
    run_until(drv, LIMIT, &mut done);
    drv.release_ref(keep).unwrap();
}

/// Exit codes come through: `exit 3` is code 3 (no signal, not success),
/// `true` is success. Afterwards `has_exited` and `exit_status` say so, the
/// child is reaped, and the loop ends `OutOfWaiters` once the handles are
/// released.
fn process_exit_code(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(exit_with(3)).expect("spawn");
    assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
    let pid = drv.processes().pid(child.process).unwrap();
    let st = wait_exit(&mut drv, child.process);
    assert_eq!(st.code(), Some(3));
    assert_eq!(st.signal(), None);
    assert!(!st.success() && !st.is_unknown());
    assert!(drv.processes().has_exited(child.process).unwrap());
    assert_eq!(drv.processes().exit_status(child.process).unwrap(), Some(st));
    #[cfg(unix)]
    assert_reaped(pid);
    #[cfg(windows)]
    let _ = pid;

    let ok = drv.processes().spawn(succeed()).unwrap();
    let st = wait_exit(&mut drv, ok.process);
    assert!(st.success());
    assert_eq!(st.code(), Some(0));

    assert!(!drv.release_ref(child.process).unwrap());
    assert!(!drv.release_ref(ok.process).unwrap());
    assert_out_of_waiters(&mut drv);
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
        succeed().current_dir("/nonexistent/eventcore-no-such-dir"),
    ];
    for cmd in commands {
        let r = drv
            .processes()
            .spawn(cmd.stdin(Stdio::Pipe).stdout(Stdio::Pipe).stderr(Stdio::Pipe));
        let e = r.as_ref().map(|c| c.process).expect_err("spawn must fail");
        assert_eq!(e.status(), Status::NotFound, "{e}");
        #[cfg(unix)]
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        assert_no_leaks(&drv);
    }
    assert_eq!(drv.waiter_count(), 0);
    assert_out_of_waiters(&mut drv);
}

/// A cancelled wait's callback never runs (and is freed at once); the loop
/// ends `OutOfWaiters` (the process alone is no waiter). The child is still
/// reaped, `has_exited` becomes true, and a second cancel returns false. A
/// wait registered next to the cancelled one still runs.
fn process_cancel_wait(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(run_for(200, 0)).unwrap();
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
    release_reaped(&mut drv, p, pid);
}

/// A cancelled wait on a process that is left alone still lets the driver
/// reap it: no callback, and the child leaves no zombie.
fn process_cancel_wait_then_exit_is_reaped_silently(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(succeed()).unwrap();
    let p = child.process;
    let pid = drv.processes().pid(p).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let w = drv.processes().wait(p, move |_, _, _| r.set(true)).unwrap();
    assert!(drv.processes().cancel_wait(p, w));
    run_with_keepalive(&mut drv, |drv| drv.processes().has_exited(p).unwrap());
    assert!(!ran.get());
    release_reaped(&mut drv, p, pid);
}

/// A wait on a process that has already exited is not called inside `wait`
/// but from the very next `process_events` (even a polling one), with the
/// same status; several waits are each called once.
fn process_wait_after_exit_runs_from_next_process_events(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(exit_with(4)).unwrap();
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
    let child = drv.processes().spawn(run_for(100, 2)).unwrap();
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
    let child = drv.processes().spawn(succeed()).unwrap();
    let p = child.process;
    assert!(wait_exit(&mut drv, p).success());
    assert_status(&drv.processes().kill(p, SIGTERM), Status::NotFound);
    assert_status(&drv.processes().kill(p, SIGKILL), Status::NotFound);
    drv.release_ref(p).unwrap();
    assert_status(&drv.processes().kill(p, SIGTERM), Status::InvalidHandle);
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// `has_exited` is false while the child runs and true once the loop has
/// seen it exit; `exit_status` follows.
fn process_has_exited_follows_the_child(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(run_for(200, 1)).unwrap();
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

/// Callbacks may start and release anything: each wait callback releases
/// its own process handle and spawns the next child, three times; the loop
/// then ends `OutOfWaiters` with nothing left and every child reaped.
fn process_spawn_from_wait_callback(kind: BackendKind) {
    fn chain(drv: &mut Driver, n: i32, codes: Rc<RefCell<Vec<i32>>>, pids: Rc<RefCell<Vec<u32>>>) {
        let child = drv.processes().spawn(exit_with(n)).expect("spawn");
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
    #[cfg(unix)]
    for &pid in pids.borrow().iter() {
        assert_reaped(pid);
    }
    assert_eq!(pids.borrow().len(), 3);
    assert_no_leaks(&drv);
}

/// After release the process handle is stale: every call is
/// `InvalidHandle`, `cancel_wait` is false, nothing panics.
fn process_stale_handle_is_invalid_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let child = drv.processes().spawn(succeed()).unwrap();
    let p = child.process;
    let pid = drv.processes().pid(p).unwrap();
    let w = drv.processes().wait(p, |_, _, _| {}).unwrap();
    assert!(!drv.release_ref(p).unwrap());
    assert_eq!(drv.waiter_count(), 0, "the release withdrew the wait");
    assert_status(&drv.processes().pid(p), Status::InvalidHandle);
    assert_status(&drv.processes().has_exited(p), Status::InvalidHandle);
    assert_status(&drv.processes().exit_status(p), Status::InvalidHandle);
    assert_status(&drv.processes().kill(p, SIGTERM), Status::InvalidHandle);
    assert_status(&drv.processes().wait(p, |_, _, _| {}).map(drop), Status::InvalidHandle);
    assert!(!drv.processes().cancel_wait(p, w));
    assert_status(&drv.release_ref(p), Status::InvalidHandle);
    // The released child is still reaped while the loop runs.
    #[cfg(unix)]
    {
        run_with_keepalive(&mut drv, |_| proc_state(pid).is_none());
        assert_reaped(pid);
    }
    #[cfg(windows)]
    let _ = pid;
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// A panic in one of two exit callbacks of a process comes out of
/// `process_events`; the other callback still runs, exactly once, and the
/// driver has nothing left afterwards.
fn process_exit_callback_panic_loses_no_other_waiter(kind: BackendKind) {
    let mut drv = driver(kind);
    let p = drv.processes().spawn(exit_with(3)).expect("spawn").process;
    drv.processes()
        .wait(p, |_, _, _| panic!("exit callback panics"))
        .expect("wait");
    let st = wait_exit_after_panic(&mut drv, p);
    assert_eq!(st.code(), Some(3));
    assert!(!drv.release_ref(p).unwrap());
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_no_leaks(&drv);
}

/// Registers a second wait on `p`, expects the first one's panic, then the
/// second wait's status.
fn wait_exit_after_panic(drv: &mut Driver, p: ProcessId) -> ExitStatus {
    let s: Slot<ExitStatus> = slot();
    let calls = Rc::new(Cell::new(0));
    let (s2, c) = (s.clone(), calls.clone());
    drv.processes()
        .wait(p, move |_, _, st| {
            c.set(c.get() + 1);
            *s2.borrow_mut() = Some(st);
        })
        .expect("wait");
    assert_eq!(util::run_until_panic(drv, LIMIT), "exit callback panics");
    run_until(drv, LIMIT, |_| calls.get() == 1);
    drv.process_events(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(calls.get(), 1, "the other waiter ran once");
    let st = s.borrow_mut().take();
    st.unwrap()
}

contract_tests! {
    process_exit_callback_panic_loses_no_other_waiter,
    process_exit_code,
    process_spawn_missing_program_is_not_found,
    process_cancel_wait,
    process_cancel_wait_then_exit_is_reaped_silently,
    process_wait_after_exit_runs_from_next_process_events,
    process_several_waits_all_called,
    process_kill_after_exit_is_not_found,
    process_has_exited_follows_the_child,
    process_stale_handle_is_invalid_handle,
    process_spawn_from_wait_callback,
}

/// Scenarios that use POSIX tools (`sh`, `cat`, `sleep`), signals, pipes,
/// permissions, `/proc` and `waitpid`.
#[cfg(unix)]
mod unix_only {
    use super::*;
    use util::os_pipe;

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
        let data = b"hello through cat\n".repeat(50);
        let (out, err) = piped_round_trip(&mut drv, Command::new("cat"), data.clone());
        assert_eq!(out, data);
        assert_eq!(err, b"");
    }

    /// The environment and the working directory of the command are applied:
    /// `echo "$FOO"; pwd` prints the value and the directory.
    fn process_env_and_working_directory_applied(kind: BackendKind) {
        let mut drv = driver(kind);
        let dir = TempDir::new("proc-cwd");
        let cmd = sh("echo \"$FOO\"; pwd").env("FOO", "bar baz").current_dir(dir.path());
        let out = String::from_utf8(stdout_of(&mut drv, cmd)).unwrap();
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(out, format!("bar baz\n{}\n", cwd.display()));
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// `env_clear` starts the child with only what `env` sets, and `env_remove`
    /// hides one inherited variable.
    fn process_env_clear_and_remove(kind: BackendKind) {
        let mut drv = driver(kind);
        let cmd = Command::new("/bin/sh")
            .arg("-c")
            .arg("echo \"${HOME-unset}:${ONLY-unset}\"")
            .env_clear()
            .env("ONLY", "me");
        let out = String::from_utf8(stdout_of(&mut drv, cmd)).unwrap();
        assert_eq!(out, "unset:me\n");

        // (Not PATH: a shell sets a default PATH when none is inherited.)
        assert!(std::env::var_os("HOME").is_some(), "HOME is inherited");
        let cmd = Command::new("/bin/sh")
            .arg("-c")
            .arg("echo \"${HOME-unset}\"")
            .env_remove("HOME");
        let out = String::from_utf8(stdout_of(&mut drv, cmd)).unwrap();
        assert_eq!(out, "unset\n");
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
        let calls: ExitLog = Rc::default();
        let mut pids = Vec::new();
        let mut procs = Vec::new();
        for _ in 0..N {
            let cmd = sh("read x; exit 7")
                .stdin(Stdio::Handle(rfd.try_clone().unwrap()))
                .stdout(Stdio::Null);
            let child = spawn_logged(&mut drv, cmd, &calls);
            pids.push(drv.processes().pid(child.process).unwrap());
            procs.push(child.process);
        }
        drop(rfd);
        // Give every child time to reach `read`, then let them all go at once.
        std::thread::sleep(Duration::from_millis(300));
        release_children_expect_exit_7(&mut drv, wfd, &procs, &calls);
        for &pid in &pids {
            assert_reaped(pid);
        }
        for p in procs {
            assert!(!drv.release_ref(p).unwrap());
        }
        assert_no_leaks(&drv);
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

    /// `Stdio::Null` gives the child an empty stdin and swallows stderr;
    /// `Stdio::Handle` hands it an open file as stdout, whose content is checked.
    fn process_stdio_null_and_handle(kind: BackendKind) {
        let mut drv = driver(kind);
        let out = stdout_through_file(&mut drv, sh("cat; echo out; echo err >&2"));
        assert_eq!(out, b"out\n");
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

    contract_tests! {
        process_killed_by_signal,
        process_piped_stdio_round_trip,
        process_env_and_working_directory_applied,
        process_env_clear_and_remove,
        process_twenty_children_exiting_at_once_all_reaped,
        process_spawn_non_executable_is_not_allowed,
        process_released_before_exit_is_still_reaped,
        process_stdio_null_and_handle,
        process_adopt_child_pid,
        process_driver_dropped_before_child_exits_leaves_no_zombie,
    }
}

/// Windows scenarios: `cmd`, `TerminateProcess`, process handles, and this
/// test program as a child (see [`windows_only::child`]).
#[cfg(windows)]
mod windows_only {
    use std::io::{Read, Write};
    use std::os::windows::io::{FromRawHandle, OwnedHandle};

    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE};
    use windows_sys::Win32::System::Pipes::CreatePipe;
    use windows_sys::Win32::System::Threading::{GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};

    use super::*;

    /// What the child program reads to know what to do.
    const CHILD_ENV: &str = "EVENTCORE_TEST_CHILD";
    /// What the child program writes to stdout first: the test harness of the
    /// child prints its own banner before the child's code runs, so a parent
    /// looks at what comes after this mark.
    const MARK: &[u8] = b"<eventcore-child>";

    /// This test program as a child that runs `script` (see [`child_main`]):
    /// `sleep MS CODE`, `wait-stdin CODE` (read stdin to its end), `echo`
    /// (stdin to stdout, then a line to stderr), `env NAME…` (print the
    /// variables and the working directory). Windows has no `sh`, `cat` or
    /// `sleep`, and `cmd` cannot do these. Its stdout goes to the null
    /// device unless the scenario says otherwise.
    pub(super) fn child(script: &str) -> Command {
        child_program().env(CHILD_ENV, script).stdout(Stdio::Null)
    }

    /// The child program without its script (set `EVENTCORE_TEST_CHILD`).
    fn child_program() -> Command {
        Command::new(std::env::current_exe().expect("current_exe")).args([
            "windows_only::child_main",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "-q",
        ])
    }

    /// The child program: does what `EVENTCORE_TEST_CHILD` says, then exits
    /// the process (before the harness reports anything). Its output goes
    /// to the real stdout (`io::stdout()`, which the harness does not
    /// capture).
    #[test]
    #[ignore = "the child program of the Windows scenarios; they run it with EVENTCORE_TEST_CHILD set"]
    fn child_main() {
        let Ok(script) = std::env::var(CHILD_ENV) else {
            return;
        };
        let words: Vec<&str> = script.split(' ').collect();
        let mut stdout = std::io::stdout();
        stdout.write_all(MARK).unwrap();
        stdout.flush().unwrap();
        let code = match words[..] {
            ["sleep", ms, code] => {
                std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
                code.parse().unwrap()
            }
            ["wait-stdin", code] => {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
                code.parse().unwrap()
            }
            ["echo"] => {
                std::io::copy(&mut std::io::stdin().lock(), &mut stdout.lock()).unwrap();
                std::io::stderr().write_all(b"to stderr\n").unwrap();
                0
            }
            ["env", ref names @ ..] => {
                for name in names {
                    match std::env::var(name) {
                        Ok(v) => writeln!(stdout, "{name}={v}").unwrap(),
                        Err(_) => writeln!(stdout, "{name} unset").unwrap(),
                    }
                }
                writeln!(stdout, "{}", std::env::current_dir().unwrap().display()).unwrap();
                0
            }
            _ => panic!("unknown child script {script:?}"),
        };
        stdout.flush().unwrap();
        std::process::exit(code);
    }

    /// What the child program wrote after its mark.
    #[track_caller]
    fn after_mark(out: &[u8]) -> &[u8] {
        let at = out
            .windows(MARK.len())
            .position(|w| w == MARK)
            .unwrap_or_else(|| panic!("no child mark in {:?}", String::from_utf8_lossy(out)));
        &out[at + MARK.len()..]
    }

    /// Reads `p` until the child's mark has arrived (the child runs).
    fn read_until_mark(drv: &mut Driver, p: PipeHandle) {
        let seen: Rc<RefCell<Vec<u8>>> = Rc::default();
        let done = Rc::new(Cell::new(false));
        fn next(drv: &mut Driver, p: PipeHandle, seen: Rc<RefCell<Vec<u8>>>, done: Rc<Cell<bool>>) {
            drv.pipes()
                .read(p, Vec::with_capacity(256), IoMode::Once, move |drv, p, r, buf| {
                    let n = r.expect("read the child's mark");
                    seen.borrow_mut().extend_from_slice(&buf[..n]);
                    if seen.borrow().windows(MARK.len()).any(|w| w == MARK) {
                        done.set(true);
                    } else {
                        next(drv, p, seen, done);
                    }
                });
        }
        next(drv, p, seen, done.clone());
        run_until(drv, Duration::from_secs(20), |_| done.get());
    }

    /// A synchronous anonymous pipe (`CreatePipe`, not inheritable), as a
    /// child's standard stream expects: (read end, write end).
    fn sync_pipe() -> (OwnedHandle, OwnedHandle) {
        let (mut r, mut w): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: CreatePipe fills both handles on success.
        let ok = unsafe { CreatePipe(&mut r, &mut w, std::ptr::null(), 0) };
        assert_ne!(ok, 0, "CreatePipe: {}", std::io::Error::last_os_error());
        // SAFETY: two fresh handles that nothing else owns.
        unsafe { (OwnedHandle::from_raw_handle(r), OwnedHandle::from_raw_handle(w)) }
    }

    /// When process `pid` was created, if a process of that id exists (the
    /// creation time tells it from a later process that got the same id).
    fn creation_time(pid: u32) -> Option<u64> {
        // SAFETY: OpenProcess returns a new handle or null.
        let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if h.is_null() {
            return None;
        }
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: fills four FILETIMEs for a handle we hold, then closes it.
        let ok = unsafe {
            let ok = GetProcessTimes(h, &mut created, &mut exited, &mut kernel, &mut user);
            CloseHandle(h);
            ok
        };
        assert_ne!(ok, 0, "GetProcessTimes: {}", std::io::Error::last_os_error());
        Some((u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
    }

    /// Waits until the process `pid` created at `created` no longer exists:
    /// it has exited and nobody — the driver included — holds a handle to
    /// it any more (Windows keeps an exited process while handles to it are
    /// open; that is its only kind of leftover).
    #[track_caller]
    fn assert_gone(pid: u32, created: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while creation_time(pid) == Some(created) {
            assert!(
                Instant::now() < deadline,
                "process {pid} still exists (a handle is open)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `cmd /C exit 3` ends with code 3; once the loop has seen the exit the
    /// driver holds no handle to the process any more (while the `ProcessId`
    /// is still alive): the process object is gone.
    fn process_handle_closed_once_exited(kind: BackendKind) {
        // The check means something: an exited process whose handle is still
        // open (here std's) exists, and goes once that handle is closed.
        let mut held = std::process::Command::new("cmd")
            .args(["/C", "exit 0"])
            .spawn()
            .unwrap();
        let held_pid = held.id();
        let held_created = creation_time(held_pid).expect("running or held");
        assert!(held.wait().unwrap().success());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(creation_time(held_pid), Some(held_created), "kept by std's handle");
        drop(held);
        assert_gone(held_pid, held_created);

        let mut drv = driver(kind);
        let child = drv.processes().spawn(exit_with(3)).unwrap();
        let pid = drv.processes().pid(child.process).unwrap();
        // The driver's handle keeps the process object until the loop runs.
        let created = creation_time(pid).expect("the driver holds the process");
        assert_eq!(wait_exit(&mut drv, child.process).code(), Some(3));
        assert_gone(pid, created);
        assert_eq!(drv.processes().pid(child.process).unwrap(), pid);
        assert!(!drv.release_ref(child.process).unwrap());
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// `cmd /C echo hello` with a piped stdout: `hello` and CRLF, then end
    /// of stream (std's pipe end is overlapped, so `ReadFileEx` works on it).
    fn process_cmd_echo_to_piped_stdout(kind: BackendKind) {
        let mut drv = driver(kind);
        let child = drv
            .processes()
            .spawn(Command::new("cmd").args(["/C", "echo hello"]).stdout(Stdio::Pipe))
            .unwrap();
        assert!(child.stdin.is_none() && child.stderr.is_none());
        let out = read_to_end(&mut drv, child.stdout.unwrap());
        assert_eq!(String::from_utf8_lossy(&out), "hello\r\n");
        assert!(wait_exit(&mut drv, child.process).success());
        drv.release_ref(child.stdout.unwrap()).unwrap();
        drv.release_ref(child.process).unwrap();
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// All three streams piped to a child that copies stdin to stdout and
    /// then writes a line to stderr: 256 KiB (four times the pipe buffer, so
    /// writing and reading must overlap) go in, stdin is closed from the
    /// write callback, the same bytes come back, stderr has its line, and
    /// the child exits 0.
    fn process_piped_stdio_round_trip(kind: BackendKind) {
        const LEN: usize = 256 * 1024;
        let mut drv = driver(kind);
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
        let (out, err) = piped_round_trip(&mut drv, child("echo"), data.clone());
        assert!(after_mark(&out) == data, "the child echoed the data");
        assert_eq!(err, b"to stderr\n");
    }

    /// The environment and the working directory of the command are applied:
    /// `cmd /C "echo %FOO%& cd"` prints the value and the directory.
    fn process_env_and_working_directory_applied(kind: BackendKind) {
        let mut drv = driver(kind);
        let dir = TempDir::new("proc-cwd");
        let cmd = Command::new("cmd")
            .args(["/C", "echo %FOO%& cd"])
            .env("FOO", "bar baz")
            .current_dir(dir.path());
        let out = String::from_utf8(stdout_of(&mut drv, cmd)).unwrap();
        let want = format!("bar baz\r\n{}\r\n", dir.path().display());
        assert_eq!(out.to_lowercase(), want.to_lowercase(), "{out:?}");
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// `env_clear` starts the child with only what `env` sets, and
    /// `env_remove` hides one inherited variable (`PATH`).
    fn process_env_clear_and_remove(kind: BackendKind) {
        let mut drv = driver(kind);
        assert!(std::env::var_os("PATH").is_some(), "PATH is inherited");
        let cases = [
            (
                child_program()
                    .env_clear()
                    .env(CHILD_ENV, "env ONLY PATH")
                    .env("ONLY", "me"),
                "ONLY=me\nPATH unset\n",
            ),
            (child("env PATH").env_remove("PATH"), "PATH unset\n"),
        ];
        for (cmd, want) in cases {
            let out = stdout_of(&mut drv, cmd);
            let out = String::from_utf8(after_mark(&out).to_vec()).unwrap();
            assert!(out.starts_with(want), "{out:?}");
        }
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// The Windows form of upstream `issue-122-coalesced-sigchld.d`: 20
    /// children block reading one shared pipe (each announces itself on its
    /// own stdout pipe first) and exit (code 7) the instant its write end is
    /// closed. All 20 wait callbacks run, each once, within 5 s, and every
    /// process object is gone afterwards.
    fn process_twenty_children_exiting_at_once(kind: BackendKind) {
        const N: usize = 20;
        let mut drv = driver(kind);
        let (r, w) = sync_pipe();
        let calls: ExitLog = Rc::default();
        let mut procs = Vec::new();
        let mut outs = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..N {
            let cmd = child("wait-stdin 7")
                .stdin(Stdio::Handle(r.try_clone().unwrap()))
                .stdout(Stdio::Pipe);
            let child = spawn_logged(&mut drv, cmd, &calls);
            let pid = drv.processes().pid(child.process).unwrap();
            ids.push((pid, creation_time(pid).expect("running")));
            procs.push(child.process);
            outs.push(child.stdout.unwrap());
        }
        drop(r);
        let start = Instant::now();
        for &out in &outs {
            read_until_mark(&mut drv, out);
        }
        eprintln!("{N} children running after {:?}", start.elapsed());
        release_children_expect_exit_7(&mut drv, w, &procs, &calls);
        for (pid, created) in ids {
            assert_gone(pid, created);
        }
        for p in procs {
            assert!(!drv.release_ref(p).unwrap());
        }
        for out in outs {
            assert!(!drv.release_ref(out).unwrap());
        }
        assert_no_leaks(&drv);
    }

    /// More processes than one wait can watch (`WaitForMultipleObjects`
    /// stops at 64 handles): 70 `cmd /C exit K` children, all waited for at
    /// once; each callback runs once with its code.
    fn process_seventy_children_beyond_the_wait_limit(kind: BackendKind) {
        const N: i32 = 70;
        let mut drv = driver(kind);
        let got = Rc::new(RefCell::new(Vec::new()));
        let start = Instant::now();
        for code in 0..N {
            let child = drv.processes().spawn(exit_with(code)).expect("spawn");
            let g = got.clone();
            drv.processes()
                .wait(child.process, move |drv, p, st| {
                    g.borrow_mut().push((code, st.code()));
                    drv.release_ref(p).unwrap();
                })
                .unwrap();
        }
        assert_eq!(drv.waiter_count(), N as usize);
        run_until(&mut drv, Duration::from_secs(25), |_| got.borrow().len() >= N as usize);
        eprintln!("{N} children spawned and reported in {:?}", start.elapsed());
        let mut got = got.borrow().clone();
        got.sort();
        let want: Vec<_> = (0..N).map(|c| (c, Some(c))).collect();
        assert_eq!(got, want);
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// `kill` with `SIGTERM`, `SIGKILL`, `SIGINT` or `SIGQUIT` terminates
    /// the process (`TerminateProcess`): its wait reports exit code 1 and no
    /// signal, promptly. Signal 0 checks that it runs; another signal is
    /// `NotSupported`, a number that is none `InvalidArgument` — neither
    /// touches the child. `kill` never runs the wait callback itself.
    fn process_kill_terminates(kind: BackendKind) {
        use eventcore::signal_numbers::{SIGINT, SIGQUIT};
        let mut drv = driver(kind);
        for signo in [SIGTERM, SIGKILL, SIGINT, SIGQUIT] {
            let child = drv.processes().spawn(child("sleep 20000 0")).unwrap();
            let p = child.process;
            assert!(!drv.processes().has_exited(p).unwrap());
            let s: Slot<ExitStatus> = slot();
            let s2 = s.clone();
            drv.processes()
                .wait(p, move |_, _, st| *s2.borrow_mut() = Some(st))
                .unwrap();
            drv.processes().kill(p, 0).expect("signal 0: still running");
            assert_status(&drv.processes().kill(p, 1000), Status::InvalidArgument);
            assert_status(&drv.processes().kill(p, -1), Status::InvalidArgument);
            assert_status(&drv.processes().kill(p, 10), Status::NotSupported); // SIGUSR1
            let start = Instant::now();
            drv.processes().kill(p, signo).expect("kill");
            assert!(s.borrow().is_none(), "wait callback ran inside kill()");
            run_until(&mut drv, LIMIT, |_| s.borrow().is_some());
            assert!(start.elapsed() < Duration::from_secs(5), "killed promptly");
            let st = s.take().unwrap();
            assert_eq!(st.code(), Some(1), "{st:?}");
            assert_eq!(st.signal(), None);
            assert!(!st.success());
            assert_status(&drv.processes().kill(p, signo), Status::NotFound);
            assert_status(&drv.processes().kill(p, 0), Status::NotFound);
            assert!(!drv.release_ref(p).unwrap());
        }
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// A process started with `std::process::Command` can be adopted by pid
    /// (`OpenProcess`): its exit code is reported even though the std handle
    /// was closed first. A pid that names no process is an error, with
    /// nothing left behind.
    fn process_adopt_pid(kind: BackendKind) {
        let mut drv = driver(kind);
        let std_child = std::process::Command::new("cmd")
            .args(["/C", "exit 5"])
            .spawn()
            .unwrap();
        let pid = std_child.id();
        let p = drv.processes().adopt(pid).expect("adopt");
        drop(std_child); // closes std's handle; the driver has its own
        assert_eq!(drv.processes().pid(p).unwrap(), pid);
        let st = wait_exit(&mut drv, p);
        assert_eq!(st.code(), Some(5));
        assert!(!st.is_unknown());
        drv.release_ref(p).unwrap();

        // Process ids are multiples of 4; this one is never handed out.
        let r = drv.processes().adopt(0xFFFF_FFFC);
        assert_status(&r, Status::InvalidArgument);
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// `Stdio::Null` gives the child an empty stdin and swallows stderr;
    /// `Stdio::Handle` hands it an open file as stdout, whose content is checked.
    fn process_stdio_null_and_handle(kind: BackendKind) {
        let mut drv = driver(kind);
        let out = stdout_through_file(&mut drv, Command::new("cmd").args(["/C", "echo out& echo err 1>&2"]));
        assert_eq!(String::from_utf8_lossy(&out), "out\r\n");
    }

    /// A process released while it runs is no waiter and leaves nothing
    /// behind: the driver withdraws its wait and closes its handle at once,
    /// so the process object is gone as soon as the child exits.
    fn process_released_before_exit_leaves_nothing(kind: BackendKind) {
        let mut drv = driver(kind);
        let child = drv.processes().spawn(child("sleep 300 0")).unwrap();
        let pid = drv.processes().pid(child.process).unwrap();
        let created = creation_time(pid).expect("running");
        assert!(!drv.release_ref(child.process).unwrap());
        assert!(!drv.is_valid(child.process));
        assert_eq!(drv.waiter_count(), 0, "a released process is no waiter");
        assert_out_of_waiters(&mut drv);
        assert_gone(pid, created);
        assert_no_leaks(&drv);
    }

    /// Dropping the driver while a child runs and a wait is pending: the wait
    /// callback is freed without running, the registered wait is withdrawn
    /// (nothing touches the dropped driver when the child exits later), and
    /// the process object goes away once the child ends.
    fn process_driver_dropped_with_pending_wait(kind: BackendKind) {
        let mut drv = driver(kind);
        let child = drv.processes().spawn(child("sleep 300 0")).unwrap();
        let pid = drv.processes().pid(child.process).unwrap();
        let created = creation_time(pid).expect("running");
        let ran = Rc::new(Cell::new(false));
        let dropped = Rc::new(Cell::new(0));
        let (r, d) = (ran.clone(), DropCounter(dropped.clone()));
        drv.processes()
            .wait(child.process, move |_, _, _| {
                let _d = &d;
                r.set(true);
            })
            .unwrap();
        drop(drv);
        assert_eq!(dropped.get(), 1, "the pending callback is freed with the driver");
        assert_gone(pid, created);
        assert!(!ran.get());
    }

    contract_tests! {
        process_handle_closed_once_exited,
        process_cmd_echo_to_piped_stdout,
        process_piped_stdio_round_trip,
        process_env_and_working_directory_applied,
        process_env_clear_and_remove,
        process_twenty_children_exiting_at_once,
        process_seventy_children_beyond_the_wait_limit,
        process_kill_terminates,
        process_adopt_pid,
        process_stdio_null_and_handle,
        process_released_before_exit_leaves_nothing,
        process_driver_dropped_with_pending_wait,
    }
}
