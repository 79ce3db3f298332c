//! Contract tests for pipes (upstream eventcore had none): the three I/O
//! modes, waiting for data, end of stream and a closed reader, cancellation
//! with owned buffers (including a write blocked on a full pipe), stale
//! handles, adopting OS pipe ends (and refusing regular files), and a child
//! process talking through pipes.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use eventcore::{BackendKind, Driver, ExitReason, IoMode, PipeHandle, Result, Status};
use util::{assert_no_leaks, assert_out_of_waiters, assert_status, driver, run_until, slot, Slot};

const LIMIT: Duration = Duration::from_secs(10);

type Transfer = (Result<usize>, Vec<u8>);

/// Runs the loop until `slot` is filled, and takes the value.
fn take<T>(drv: &mut Driver, slot: &Slot<T>) -> T {
    run_until(drv, LIMIT, |_| slot.borrow().is_some());
    let v = slot.borrow_mut().take();
    v.expect("filled")
}

/// Starts a read whose outcome lands in the returned slot; checks that the
/// callback does not run inside `read` and gets the right handle.
fn start_read(drv: &mut Driver, p: PipeHandle, len: usize, mode: IoMode) -> Slot<Transfer> {
    let s = slot();
    let s2 = s.clone();
    drv.pipes().read(p, Vec::with_capacity(len), mode, move |_, h, r, b| {
        assert_eq!(h, p, "the callback gets the pipe it was started on");
        assert!(s2.borrow().is_none(), "a read callback ran twice");
        *s2.borrow_mut() = Some((r, b));
    });
    assert!(s.borrow().is_none(), "read callback ran inside read()");
    s
}

fn start_write(drv: &mut Driver, p: PipeHandle, data: Vec<u8>, mode: IoMode) -> Slot<Transfer> {
    let s = slot();
    let s2 = s.clone();
    drv.pipes().write(p, data, mode, move |_, h, r, b| {
        assert_eq!(h, p, "the callback gets the pipe it was started on");
        assert!(s2.borrow().is_none(), "a write callback ran twice");
        *s2.borrow_mut() = Some((r, b));
    });
    assert!(s.borrow().is_none(), "write callback ran inside write()");
    s
}

fn read(drv: &mut Driver, p: PipeHandle, len: usize, mode: IoMode) -> Transfer {
    let s = start_read(drv, p, len, mode);
    take(drv, &s)
}

fn write(drv: &mut Driver, p: PipeHandle, data: &[u8], mode: IoMode) -> Transfer {
    let s = start_write(drv, p, data.to_vec(), mode);
    take(drv, &s)
}

/// Releases the handles' last references and checks that nothing is left.
#[track_caller]
fn release_all(drv: &mut Driver, pipes: &[PipeHandle]) {
    for &p in pipes {
        assert!(!drv.release_ref(p).unwrap(), "that was the last reference");
    }
    assert_out_of_waiters(drv);
    assert_no_leaks(drv);
}

/// Reads with `Immediate` until the pipe is empty; returns what it got.
fn drain_now(drv: &mut Driver, p: PipeHandle) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (r, buf) = read(drv, p, 256 << 10, IoMode::Immediate);
        match r {
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(e.status(), Status::WouldBlock, "{e}");
                return all;
            }
        }
    }
}

/// The three modes on a new pipe: an `All` write of 11 bytes; a `Once` read
/// into 5 bytes takes exactly those 5; an `All` read of 6 takes the rest; a
/// `Once` read into a large buffer completes with what one write sent.
/// Idle pipes are no waiters.
fn pipe_write_all_then_read_once_and_all(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().expect("pipe");
    assert_eq!(drv.waiter_count(), 0, "idle pipes are no waiters");

    let (res, buf) = write(&mut drv, w, b"hello world", IoMode::All);
    assert_eq!(res.unwrap(), 11);
    assert_eq!(buf, b"hello world", "the buffer comes back");

    let (res, buf) = read(&mut drv, r, 5, IoMode::Once);
    assert_eq!(res.unwrap(), 5);
    assert_eq!(buf, b"hello");
    let (res, buf) = read(&mut drv, r, 6, IoMode::All);
    assert_eq!(res.unwrap(), 6);
    assert_eq!(buf, b" world");

    // A Once read waits for data and completes with what there is.
    let pending = start_read(&mut drv, r, 1024, IoMode::Once);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::Timeout,
        "nothing to read yet"
    );
    assert!(pending.borrow().is_none());
    let (res, _) = write(&mut drv, w, b"abc", IoMode::Once);
    assert_eq!(res.unwrap(), 3);
    let (res, buf) = take(&mut drv, &pending);
    assert_eq!(res.unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
    release_all(&mut drv, &[r, w]);
}

/// An `All` read of more than one write's worth keeps waiting until the
/// whole buffer is filled by several writes.
fn pipe_read_all_collects_several_writes(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let pending = start_read(&mut drv, r, 9, IoMode::All);
    for part in [&b"abc"[..], b"def", b"ghi"] {
        assert!(pending.borrow().is_none(), "completed before all data came");
        let (res, _) = write(&mut drv, w, part, IoMode::All);
        assert_eq!(res.unwrap(), 3);
    }
    let (res, buf) = take(&mut drv, &pending);
    assert_eq!(res.unwrap(), 9);
    assert_eq!(buf, b"abcdefghi");
    release_all(&mut drv, &[r, w]);
}

/// `wait_for_data` completes only once data has arrived, and consumes
/// nothing: an `Immediate` read afterwards gets all of it.
fn pipe_wait_for_data_completes_after_data_arrives(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let ready: Slot<Result<()>> = slot();
    let s = ready.clone();
    drv.pipes().wait_for_data(r, move |_, p, res| {
        assert_eq!(p, r);
        *s.borrow_mut() = Some(res);
    });
    assert!(ready.borrow().is_none(), "ran inside wait_for_data()");
    assert_eq!(drv.waiter_count(), 1, "a pending wait is a waiter");
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(100))).unwrap(),
        ExitReason::Timeout
    );
    assert!(ready.borrow().is_none(), "completed without data");

    let (res, _) = write(&mut drv, w, b"xyz", IoMode::All);
    assert_eq!(res.unwrap(), 3);
    take(&mut drv, &ready).expect("wait_for_data");
    let (res, buf) = read(&mut drv, r, 16, IoMode::Immediate);
    assert_eq!(res.unwrap(), 3, "wait_for_data consumed nothing");
    assert_eq!(&buf[..3], b"xyz");
    release_all(&mut drv, &[r, w]);
}

/// An `Immediate` read of an empty pipe is `WouldBlock`, from
/// `process_events`, with the buffer back; an `Immediate` read with data
/// waiting gets it.
fn pipe_immediate_read_on_empty_is_would_block(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let (res, buf) = read(&mut drv, r, 8, IoMode::Immediate);
    assert_status(&res, Status::WouldBlock);
    assert!(buf.is_empty() && buf.capacity() >= 8, "the buffer comes back, empty");
    let (res, _) = write(&mut drv, w, b"now", IoMode::Immediate);
    assert_eq!(res.unwrap(), 3);
    let (res, buf) = read(&mut drv, r, 8, IoMode::Immediate);
    assert_eq!(res.unwrap(), 3);
    assert_eq!(&buf[..3], b"now");
    release_all(&mut drv, &[r, w]);
}

/// Once the writer is released, the reader sees end of stream: an `All`
/// read is `Disconnected` with the bytes it got in `transferred` (and in the
/// buffer), a later read is `Disconnected` with nothing, and `wait_for_data`
/// completes at once. The same through `close` instead of `release_ref`.
fn pipe_end_of_stream_after_writer_closed_is_disconnected(kind: BackendKind) {
    let mut drv = driver(kind);
    for use_close in [false, true] {
        let (r, w) = drv.pipes().create().unwrap();
        let (res, _) = write(&mut drv, w, b"last", IoMode::All);
        assert_eq!(res.unwrap(), 4);
        let pending = start_read(&mut drv, r, 10, IoMode::All);
        if use_close {
            drv.pipes().close(w).expect("close");
        } else {
            assert!(!drv.release_ref(w).unwrap());
        }
        let (res, buf) = take(&mut drv, &pending);
        assert_status(&res, Status::Disconnected);
        assert_eq!(res.unwrap_err().transferred(), 4);
        assert_eq!(&buf[..4], b"last");

        let (res, _) = read(&mut drv, r, 10, IoMode::Once);
        assert_status(&res, Status::Disconnected);
        assert_eq!(res.unwrap_err().transferred(), 0);

        let ready: Slot<Result<()>> = slot();
        let s = ready.clone();
        drv.pipes()
            .wait_for_data(r, move |_, _, res| *s.borrow_mut() = Some(res));
        match take(&mut drv, &ready) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.status(), Status::Disconnected, "{e}"),
        }
        release_all(&mut drv, &[r]);
    }
}

/// Writing to a pipe whose reader is closed is `Disconnected` with the OS
/// code EPIPE — not a crash (no SIGPIPE kills the process).
fn pipe_write_after_reader_closed_is_disconnected(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    drv.pipes().close(r).expect("close");
    for mode in [IoMode::Immediate, IoMode::Once, IoMode::All] {
        let (res, buf) = write(&mut drv, w, b"nobody listens", mode);
        assert_status(&res, Status::Disconnected);
        let e = res.unwrap_err();
        #[cfg(unix)]
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e}");
        #[cfg(windows)]
        assert!(
            matches!(e.raw_os_error(), Some(109 | 232)),
            "ERROR_BROKEN_PIPE or ERROR_NO_DATA: {e}"
        );
        assert_eq!(e.transferred(), 0);
        assert_eq!(buf, b"nobody listens");
    }
    release_all(&mut drv, &[w]);
}

/// A pending read cancelled at once never calls back; on the Linux backends
/// the untouched buffer comes back from the cancel (epoll never lent it to
/// the kernel; io_uring waits for the aborted read's completion). Data written afterwards is all there
/// for the next read (the cancelled read took nothing). A second cancel
/// finds nothing.
fn pipe_cancel_read(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let ran = Rc::new(Cell::new(false));
    let ran2 = ran.clone();
    drv.pipes()
        .read(r, Vec::with_capacity(64), IoMode::Once, move |_, _, _, _| {
            ran2.set(true)
        });
    assert_eq!(drv.waiter_count(), 1);
    let c = drv.pipes().cancel_read(r).expect("the read was pending");
    assert_eq!(c.transferred, 0);
    if matches!(kind, BackendKind::Epoll | BackendKind::IoUring) {
        assert_eq!(c.buffer_as::<Vec<u8>>().map(|b| b.capacity()), Some(64), "buffer back");
    }
    assert!(drv.pipes().cancel_read(r).is_none());
    assert_out_of_waiters(&mut drv);

    let (res, _) = write(&mut drv, w, b"after", IoMode::All);
    assert_eq!(res.unwrap(), 5);
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(50))).unwrap(),
        ExitReason::OutOfWaiters
    );
    assert!(!ran.get(), "a cancelled read's callback must never run");
    let (res, buf) = read(&mut drv, r, 64, IoMode::Once);
    assert_eq!(res.unwrap(), 5);
    assert_eq!(&buf[..5], b"after");
    release_all(&mut drv, &[r, w]);
}

/// An `All` write larger than the pipe buffer fills the pipe and waits; once
/// cancelled its callback never runs, the cancel says how many bytes went
/// through (more than 0, less than all; on epoll and io_uring with the buffer
/// back), and
/// exactly that many bytes can be read. The write end stays usable.
fn pipe_cancel_write_on_full_pipe(kind: BackendKind) {
    const LEN: usize = 4 << 20;
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let ran = Rc::new(Cell::new(false));
    let ran2 = ran.clone();
    drv.pipes()
        .write(w, data.clone(), IoMode::All, move |_, _, _, _| ran2.set(true));
    // Let it move what fits; no callback can run (the pipe is full).
    assert_eq!(
        drv.process_events(Some(Duration::from_millis(100))).unwrap(),
        ExitReason::Timeout
    );
    let c = drv.pipes().cancel_write(w).expect("the write was pending");
    assert!(
        c.transferred > 0 && c.transferred < LEN,
        "part of the write went through: {}",
        c.transferred
    );
    if matches!(kind, BackendKind::Epoll | BackendKind::IoUring) {
        assert_eq!(c.buffer.as_deref(), Some(&data[..]), "buffer back");
    }
    assert!(drv.pipes().cancel_write(w).is_none());
    assert_out_of_waiters(&mut drv);
    assert!(!ran.get(), "a cancelled write's callback must never run");

    let got = drain_now(&mut drv, r);
    assert_eq!(got.len(), c.transferred, "transferred = bytes in the pipe");
    assert!(got == data[..c.transferred], "the bytes in order");

    let (res, _) = write(&mut drv, w, b"tail", IoMode::All);
    assert_eq!(res.unwrap(), 4);
    let (res, buf) = read(&mut drv, r, 4, IoMode::All);
    assert_eq!(res.unwrap(), 4);
    assert_eq!(buf, b"tail");
    assert!(!ran.get());
    release_all(&mut drv, &[r, w]);
}

/// An `Immediate` write into a full pipe is `WouldBlock` with nothing
/// written; once the reader makes room it succeeds.
fn pipe_immediate_write_on_full_pipe_is_would_block(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let mut total = 0;
    loop {
        let (res, _) = write(&mut drv, w, &[3; 16 << 10], IoMode::Immediate);
        match res {
            Ok(n) => {
                assert!(n > 0);
                total += n;
                assert!(total <= 64 << 20, "the pipe never filled");
            }
            Err(e) => {
                assert_eq!(e.status(), Status::WouldBlock, "{e}");
                assert_eq!(e.transferred(), 0);
                break;
            }
        }
    }
    assert_eq!(drain_now(&mut drv, r).len(), total, "every byte arrived once");
    let (res, _) = write(&mut drv, w, b"room", IoMode::Immediate);
    assert_eq!(res.unwrap(), 4);
    release_all(&mut drv, &[r, w]);
}

/// A second read while one is pending is `Busy` (through its callback, with
/// its buffer); the first one is not disturbed.
fn pipe_second_read_is_busy(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let first = start_read(&mut drv, r, 4, IoMode::All);
    let (res, buf) = read(&mut drv, r, 3, IoMode::Once);
    assert_status(&res, Status::Busy);
    assert!(buf.is_empty() && buf.capacity() >= 3, "the buffer comes back, empty");
    assert!(first.borrow().is_none());
    let (res, _) = write(&mut drv, w, b"data", IoMode::All);
    assert_eq!(res.unwrap(), 4);
    let (res, buf) = take(&mut drv, &first);
    assert_eq!(res.unwrap(), 4);
    assert_eq!(buf, b"data");
    release_all(&mut drv, &[r, w]);
}

/// `close` with a read pending cancels it (no callback) and invalidates the
/// handle: read, write and `wait_for_data` are `InvalidHandle` through their
/// callbacks, a second `close` and `release_ref` return it. The other end
/// sees end of stream.
fn pipe_close_then_use_is_invalid_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let ran = Rc::new(Cell::new(false));
    let ran2 = ran.clone();
    drv.pipes()
        .read(r, Vec::with_capacity(8), IoMode::Once, move |_, _, _, _| ran2.set(true));
    drv.pipes().close(r).expect("close");
    assert!(!drv.is_valid(r));
    assert_out_of_waiters(&mut drv);
    assert!(!ran.get(), "close cancels the pending read");

    let (res, buf) = read(&mut drv, r, 8, IoMode::Once);
    assert_status(&res, Status::InvalidHandle);
    assert!(buf.is_empty() && buf.capacity() >= 8, "the buffer comes back, empty");
    let (res, _) = write(&mut drv, r, b"x", IoMode::All);
    assert_status(&res, Status::InvalidHandle);
    let ready: Slot<Result<()>> = slot();
    let s = ready.clone();
    drv.pipes()
        .wait_for_data(r, move |_, _, res| *s.borrow_mut() = Some(res));
    assert_status(&take(&mut drv, &ready), Status::InvalidHandle);
    assert_status(&drv.pipes().close(r), Status::InvalidHandle);
    assert_status(&drv.release_ref(r), Status::InvalidHandle);
    assert!(drv.pipes().cancel_read(r).is_none());

    // The writer sees the closed reader.
    let (res, _) = write(&mut drv, w, b"x", IoMode::All);
    assert_status(&res, Status::Disconnected);
    drv.pipes().close(w).expect("close");
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// Releasing a pipe with a read and a write pending cancels both: no
/// callback runs and the loop ends `OutOfWaiters`.
fn pipe_release_with_pending_operations(kind: BackendKind) {
    let mut drv = driver(kind);
    let (r, w) = drv.pipes().create().unwrap();
    let (r2, w2) = drv.pipes().create().unwrap();
    let ran = Rc::new(Cell::new(0));
    let c = ran.clone();
    drv.pipes()
        .read(r, Vec::with_capacity(8), IoMode::All, move |_, _, _, _| {
            c.set(c.get() + 1)
        });
    let c = ran.clone();
    drv.pipes()
        .write(w2, vec![1; 1 << 20], IoMode::All, move |_, _, _, _| c.set(c.get() + 1));
    assert_eq!(drv.waiter_count(), 2);
    assert!(!drv.release_ref(r).unwrap());
    assert!(!drv.release_ref(w2).unwrap());
    assert_out_of_waiters(&mut drv);
    assert_eq!(ran.get(), 0);
    release_all(&mut drv, &[w, r2]);
}

contract_tests! {
    pipe_write_all_then_read_once_and_all,
    pipe_read_all_collects_several_writes,
    pipe_wait_for_data_completes_after_data_arrives,
    pipe_immediate_read_on_empty_is_would_block,
    pipe_end_of_stream_after_writer_closed_is_disconnected,
    pipe_write_after_reader_closed_is_disconnected,
    pipe_cancel_read,
    pipe_cancel_write_on_full_pipe,
    pipe_immediate_write_on_full_pipe_is_would_block,
    pipe_second_read_is_busy,
    pipe_close_then_use_is_invalid_handle,
    pipe_release_with_pending_operations,
}

/// Scenarios that use POSIX pipes, `sh` and `cat` directly.
#[cfg(unix)]
mod unix_only {
    use std::io::Write;

    use util::TempDir;

    use eventcore::{Command, ExitStatus, Stdio};

    use super::*;
    use util::os_pipe;

    /// Ends of a blocking OS pipe made with `pipe2` are adopted (and made
    /// non-blocking): what a plain `std::fs::File` writes into the write end is
    /// read through the adopted read end, then end of stream once it is closed;
    /// and the adopted write end feeds a plain reader.
    fn pipe_adopt_os_pipe_ends(kind: BackendKind) {
        let mut drv = driver(kind);
        let (rfd, wfd) = os_pipe();
        let r = drv.pipes().adopt(rfd).expect("adopt read end");
        let mut writer = std::fs::File::from(wfd);
        writer.write_all(b"from std").unwrap();
        let (res, buf) = read(&mut drv, r, 8, IoMode::All);
        assert_eq!(res.unwrap(), 8);
        assert_eq!(buf, b"from std");
        drop(writer);
        let (res, _) = read(&mut drv, r, 8, IoMode::Once);
        assert_status(&res, Status::Disconnected);

        let (rfd, wfd) = os_pipe();
        let w = drv.pipes().adopt(wfd).expect("adopt write end");
        let (res, _) = write(&mut drv, w, b"to std", IoMode::All);
        assert_eq!(res.unwrap(), 6);
        assert!(!drv.release_ref(w).unwrap());
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(rfd), &mut got).unwrap();
        assert_eq!(got, b"to std");
        release_all(&mut drv, &[r]);
    }

    /// The stdout of a child started with `std::process::Command` is adopted
    /// and read to its end; the child's output arrives whole, then
    /// `Disconnected`.
    fn pipe_adopt_std_child_stdout(kind: BackendKind) {
        let mut drv = driver(kind);
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo one; sleep 0.1; echo two"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let out = drv.pipes().adopt(child.stdout.take().unwrap()).expect("adopt");
        let (res, buf) = read(&mut drv, out, 64, IoMode::All);
        let e = res.expect_err("the child ends before 64 bytes");
        assert_eq!(e.status(), Status::Disconnected, "{e}");
        assert_eq!(&buf[..e.transferred()], b"one\ntwo\n");
        assert!(child.wait().unwrap().success());
        release_all(&mut drv, &[out]);
    }

    /// Adopting a regular file as a pipe is an error (epoll cannot poll regular
    /// files: `NotAllowed`; io_uring refuses them the same way), not a panic;
    /// nothing is left open.
    fn pipe_adopt_regular_file_is_an_error(kind: BackendKind) {
        let mut drv = driver(kind);
        let dir = TempDir::new("pipe-file");
        let path = dir.path().join("plain.dat");
        std::fs::write(&path, b"not a pipe").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let e = drv.pipes().adopt(file).expect_err("a regular file is no pipe");
        // Both Linux backends refuse it as epoll does: EPERM.
        assert_eq!(e.status(), Status::NotAllowed, "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// A `cat` child spawned with piped stdin and stdout: 1 MiB (much more than
    /// a pipe holds, so writing and reading must overlap) goes in, the stdin
    /// pipe is closed from the write callback, the same 1 MiB comes back, then
    /// end of stream, and the child exits with 0.
    fn pipe_talks_to_cat_child(kind: BackendKind) {
        const LEN: usize = 1 << 20;
        let mut drv = driver(kind);
        let child = drv
            .processes()
            .spawn(Command::new("cat").stdin(Stdio::Pipe).stdout(Stdio::Pipe))
            .expect("spawn cat");
        let (stdin, stdout) = (child.stdin.unwrap(), child.stdout.unwrap());
        assert!(child.stderr.is_none());
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 256) as u8).collect();

        let wrote = Rc::new(Cell::new(false));
        let w2 = wrote.clone();
        drv.pipes()
            .write(stdin, data.clone(), IoMode::All, move |drv, p, r, _| {
                assert_eq!(r.unwrap(), LEN);
                drv.pipes().close(p).unwrap();
                w2.set(true);
            });
        let echoed = start_read(&mut drv, stdout, LEN, IoMode::All);
        let status: Slot<ExitStatus> = slot();
        let s = status.clone();
        drv.processes()
            .wait(child.process, move |_, _, st| *s.borrow_mut() = Some(st))
            .unwrap();

        let (res, buf) = take(&mut drv, &echoed);
        assert_eq!(res.unwrap(), LEN);
        assert!(buf == data, "cat echoed the data");
        assert!(wrote.get());
        let (res, _) = read(&mut drv, stdout, 16, IoMode::Once);
        assert_status(&res, Status::Disconnected);
        let st = take(&mut drv, &status);
        assert_eq!(st.code(), Some(0));
        assert!(!drv.release_ref(child.process).unwrap());
        release_all(&mut drv, &[stdout]);
    }

    contract_tests! {
        pipe_adopt_os_pipe_ends,
        pipe_adopt_std_child_stdout,
        pipe_adopt_regular_file_is_an_error,
        pipe_talks_to_cat_child,
    }
}
