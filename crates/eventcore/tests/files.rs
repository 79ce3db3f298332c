//! Contract tests for files: the upstream scenario `0-file` (positional I/O
//! with overlapping writes, create-truncate vs create-new), open statuses,
//! end of file, cancellation with owned buffers, one read and one write in
//! flight per file, a 1 GiB round trip, many files at once, truncate, adopt,
//! stale handles and append mode.
//!
//! Every operation's callback is checked not to run inside the call that
//! started it; scenarios end with the loop at `OutOfWaiters` and nothing open.

mod util;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use eventcore::{BackendKind, Driver, ExitReason, FileHandle, IoMode, OpenMode, Result, Status};
use util::{
    assert_no_leaks, assert_out_of_waiters, assert_status, driver, run_until, run_until_not_idle, slot, DropCounter,
    Slot, TempDir,
};

const LIMIT: Duration = Duration::from_secs(20);

type Transfer = (Result<usize>, Vec<u8>);

/// Runs the loop until `slot` is filled, and takes the value.
fn take<T>(drv: &mut Driver, slot: &Slot<T>) -> T {
    run_until(drv, LIMIT, |_| slot.borrow().is_some());
    let v = slot.borrow_mut().take();
    v.expect("filled")
}

/// Opens `path`, checking that the callback runs from `process_events`.
fn open(drv: &mut Driver, path: impl AsRef<Path>, mode: OpenMode) -> Result<FileHandle> {
    let s = slot();
    let s2 = s.clone();
    drv.files().open(path, mode, move |_, r| *s2.borrow_mut() = Some(r));
    assert!(s.borrow().is_none(), "open callback ran inside open()");
    take(drv, &s)
}

fn write(drv: &mut Driver, f: FileHandle, offset: u64, data: Vec<u8>, mode: IoMode) -> Transfer {
    let s = slot();
    let s2 = s.clone();
    drv.files().write(f, offset, data, mode, move |_, h, r, b| {
        assert_eq!(h, f, "the callback gets the file it was started on");
        *s2.borrow_mut() = Some((r, b));
    });
    assert!(s.borrow().is_none(), "write callback ran inside write()");
    take(drv, &s)
}

fn read(drv: &mut Driver, f: FileHandle, offset: u64, len: usize, mode: IoMode) -> Transfer {
    let s = slot();
    let s2 = s.clone();
    drv.files()
        .read(f, offset, Vec::with_capacity(len), mode, move |_, h, r, b| {
            assert_eq!(h, f, "the callback gets the file it was started on");
            *s2.borrow_mut() = Some((r, b));
        });
    assert!(s.borrow().is_none(), "read callback ran inside read()");
    take(drv, &s)
}

fn close(drv: &mut Driver, f: FileHandle) -> Result<()> {
    let s = slot();
    let s2 = s.clone();
    drv.files().close(f, move |_, r| *s2.borrow_mut() = Some(r));
    assert!(s.borrow().is_none(), "close callback ran inside close()");
    take(drv, &s)
}

fn truncate(drv: &mut Driver, f: FileHandle, size: u64) -> Result<()> {
    let s = slot();
    let s2 = s.clone();
    drv.files().truncate(f, size, move |_, r| *s2.borrow_mut() = Some(r));
    assert!(s.borrow().is_none(), "truncate callback ran inside truncate()");
    take(drv, &s)
}

/// Releases the file's last reference, drains the loop (the descriptor is
/// closed off the loop thread) and checks that nothing is left.
#[track_caller]
fn release_and_check(drv: &mut Driver, f: FileHandle) {
    assert!(!drv.release_ref(f).unwrap(), "that was the last reference");
    assert_out_of_waiters(drv);
    assert_no_leaks(drv);
}

/// A file in `dir` holding `content`, created with `std::fs`.
fn make_file(dir: &TempDir, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Upstream `0-file.d`: create-truncate gives an empty file; a write of 7
/// bytes at 0 and one of the rest at offset 5 (overlapping the first) grow it
/// to 7 and then 13 bytes; reads at 0 and 5 in `All` mode see the bytes of
/// both writes; each step is started from the previous step's callback.
/// `close` reports success; create-new on the existing file is
/// `AlreadyExists`; once the file is deleted, create-new makes an empty one.
fn file_positional_io_with_overlapping_writes(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-0");
    let path = dir.path().join("test.dat");
    const DATA: &[u8] = b"Hello, World!";

    let f = open(&mut drv, &path, OpenMode::CreateTruncate).expect("create-truncate");
    assert_eq!(drv.files().size(f).unwrap(), 0);

    let steps: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let log = steps.clone();
    drv.files()
        .write(f, 0, DATA[..7].to_vec(), IoMode::All, move |drv, f, r, _| {
            assert_eq!(r.unwrap(), 7);
            assert_eq!(drv.files().size(f).unwrap(), 7);
            log.borrow_mut().push("write 0");
            let log = log.clone();
            drv.files()
                .write(f, 5, DATA[5..].to_vec(), IoMode::All, move |drv, f, r, _| {
                    assert_eq!(r.unwrap(), DATA.len() - 5);
                    assert_eq!(drv.files().size(f).unwrap(), DATA.len() as u64);
                    log.borrow_mut().push("write 5");
                    let log = log.clone();
                    drv.files()
                        .read(f, 0, Vec::with_capacity(7), IoMode::All, move |drv, f, r, head| {
                            assert_eq!(r.unwrap(), 7);
                            assert_eq!(head, &DATA[..7]);
                            log.borrow_mut().push("read 0");
                            let log = log.clone();
                            drv.files().read(
                                f,
                                5,
                                Vec::with_capacity(DATA.len() - 5),
                                IoMode::All,
                                move |drv, f, r, tail| {
                                    assert_eq!(r.unwrap(), DATA.len() - 5);
                                    let mut all = head;
                                    all.truncate(5);
                                    all.extend_from_slice(&tail);
                                    assert_eq!(all, DATA);
                                    log.borrow_mut().push("read 5");
                                    drv.files().close(f, move |_, r| {
                                        r.expect("close");
                                        log.borrow_mut().push("closed");
                                    });
                                },
                            );
                        });
                });
        });
    assert!(steps.borrow().is_empty(), "a callback ran inside write()");
    assert_out_of_waiters(&mut drv);
    assert_eq!(*steps.borrow(), ["write 0", "write 5", "read 0", "read 5", "closed"]);
    assert_eq!(std::fs::read(&path).unwrap(), DATA);

    // Create-new on the existing file fails; after deleting it, it succeeds.
    assert_status(&open(&mut drv, &path, OpenMode::CreateNew), Status::AlreadyExists);
    std::fs::remove_file(&path).unwrap();
    let f = open(&mut drv, &path, OpenMode::CreateNew).expect("create-new");
    assert_eq!(drv.files().size(f).unwrap(), 0);
    close(&mut drv, f).expect("close");
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// Upstream `0-file.d`, asynchronous part: create-truncate succeeds, then
/// create-new on the same path reports `AlreadyExists` (through the callback)
/// and opens nothing. Create-truncate of an existing file empties it.
fn file_create_new_on_existing_is_already_exists(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-exists");
    let path = make_file(&dir, "old.dat", b"previous content");

    let f = open(&mut drv, &path, OpenMode::CreateTruncate).expect("create-truncate");
    assert_eq!(drv.files().size(f).unwrap(), 0, "create-truncate empties");
    let r = open(&mut drv, &path, OpenMode::CreateNew);
    assert_status(&r, Status::AlreadyExists);
    #[cfg(unix)]
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EEXIST));
    #[cfg(windows)]
    assert_eq!(r.unwrap_err().raw_os_error(), Some(80)); // ERROR_FILE_EXISTS
    assert_eq!(drv.leak_report().files, 1, "only the first open left a file");
    release_and_check(&mut drv, f);
}

/// Opening a missing file for reading (or read-write) is `NotFound` with the
/// OS code, through the callback; nothing is opened.
fn file_open_missing_is_not_found(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-missing");
    for mode in [OpenMode::Read, OpenMode::ReadWrite] {
        let r = open(&mut drv, dir.path().join("nope.dat"), mode);
        assert_status(&r, Status::NotFound);
        #[cfg(unix)]
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        #[cfg(windows)]
        assert_eq!(r.unwrap_err().raw_os_error(), Some(2)); // ERROR_FILE_NOT_FOUND
    }
    // A missing directory on the way is NotFound too, even when creating.
    let r = open(&mut drv, dir.path().join("no-dir/new.dat"), OpenMode::CreateNew);
    assert_status(&r, Status::NotFound);
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// A read that starts at or past the end of the file is `EndOfFile` with
/// nothing transferred, in every waiting mode; the buffer comes back.
fn file_read_past_end_is_end_of_file(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-eof");
    let path = make_file(&dir, "ten.dat", b"0123456789");
    let f = open(&mut drv, &path, OpenMode::Read).unwrap();
    for (offset, mode) in [
        (10, IoMode::Once),
        (10, IoMode::All),
        (4096, IoMode::Once),
        (1 << 40, IoMode::All),
    ] {
        let (r, buf) = read(&mut drv, f, offset, 8, mode);
        assert_status(&r, Status::EndOfFile);
        assert_eq!(r.unwrap_err().transferred(), 0);
        assert!(buf.is_empty() && buf.capacity() >= 8, "the buffer comes back, empty");
    }
    // Just before the end still reads.
    let (r, buf) = read(&mut drv, f, 9, 8, IoMode::Once);
    assert_eq!(r.unwrap(), 1);
    assert_eq!(buf[0], b'9');
    release_and_check(&mut drv, f);
}

/// An `All` read that runs into the end of the file ends with `EndOfFile`
/// and the count of bytes it did read in `transferred`; those bytes are in
/// the returned buffer. A `Once` read over the end just returns what there is.
fn file_read_all_spanning_end_reports_transferred(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-eof-all");
    let path = make_file(&dir, "ten.dat", b"0123456789");
    let f = open(&mut drv, &path, OpenMode::Read).unwrap();

    let (r, buf) = read(&mut drv, f, 4, 16, IoMode::All);
    assert_status(&r, Status::EndOfFile);
    assert_eq!(r.unwrap_err().transferred(), 6);
    assert!(buf.capacity() >= 16);
    assert_eq!(&buf[..], b"456789", "the length is what was read");

    let (r, buf) = read(&mut drv, f, 4, 16, IoMode::Once);
    assert_eq!(r.unwrap(), 6);
    assert_eq!(&buf[..6], b"456789");
    release_and_check(&mut drv, f);
}

/// A big read cancelled while a worker runs it: its callback never runs (and
/// is freed), the buffer does not come back from the cancel (the worker may
/// still write into it — the driver drops it when the worker is done), the
/// loop drains to `OutOfWaiters` with a waiter count of 0, and the file can be
/// read again afterwards. A second cancel finds nothing.
fn file_cancel_read_in_flight(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-cancel");
    const LEN: usize = 64 << 20;
    let path = dir.path().join("big.dat");
    std::fs::write(&path, vec![0x5a; LEN]).unwrap();
    let f = open(&mut drv, &path, OpenMode::Read).unwrap();

    let ran = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(0));
    let (r, d) = (ran.clone(), DropCounter(dropped.clone()));
    drv.files()
        .read(f, 0, Vec::with_capacity(LEN), IoMode::All, move |_, _, _, _| {
            let _d = &d;
            r.set(true);
        });
    assert!(drv.waiter_count() > 0, "a pending read is a waiter");
    let c = drv.files().cancel_read(f).expect("the read was pending");
    if matches!(kind, BackendKind::Epoll | BackendKind::IoUring) {
        // Files run on the worker pool on Linux, whatever the backend: the
        // worker holds the buffer.
        assert!(c.buffer.is_none(), "the worker may still write into it");
    }
    if let Some(buf) = &c.buffer {
        assert_eq!(buf.len(), LEN);
    }
    assert!(c.transferred <= LEN);
    assert_eq!(dropped.get(), 1, "the cancelled callback is freed");
    assert!(drv.files().cancel_read(f).is_none(), "nothing left to cancel");

    assert_out_of_waiters(&mut drv);
    assert!(!ran.get(), "a cancelled read's callback must never run");

    // The file is still usable.
    let (r, buf) = read(&mut drv, f, (LEN - 4) as u64, 4, IoMode::All);
    assert_eq!(r.unwrap(), 4);
    assert_eq!(buf, [0x5a; 4]);
    release_and_check(&mut drv, f);
    assert!(!ran.get());
}

/// A big write cancelled while a worker runs it: its callback never runs
/// (and is freed), the loop drains to `OutOfWaiters`, and a second cancel
/// finds nothing. Whether the bytes reached the file is not specified (the
/// worker may be inside `pwrite`), but the file holds no other bytes.
fn file_cancel_write_in_flight(kind: BackendKind) {
    const LEN: usize = 64 << 20;
    let mut drv = driver(kind);
    let dir = TempDir::new("file-cancel-write");
    let path = dir.path().join("w.dat");
    let f = open(&mut drv, &path, OpenMode::CreateNew).unwrap();
    let ran = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(0));
    let (r, d) = (ran.clone(), DropCounter(dropped.clone()));
    drv.files()
        .write(f, 0, vec![0xc3; LEN], IoMode::All, move |_, _, _, _| {
            let _d = &d;
            r.set(true);
        });
    let c = drv.files().cancel_write(f).expect("the write was pending");
    assert!(c.transferred <= LEN);
    assert_eq!(dropped.get(), 1, "the cancelled callback is freed");
    assert!(drv.files().cancel_write(f).is_none());
    assert_out_of_waiters(&mut drv);
    assert!(!ran.get(), "a cancelled write's callback must never run");
    release_and_check(&mut drv, f);
    let content = std::fs::read(&path).unwrap();
    assert!(content.len() <= LEN);
    assert!(content.iter().all(|&b| b == 0xc3), "only the written bytes");
}

/// Dropping the driver while a read runs on a worker thread does not crash
/// or hang; the worker finishes on its own and its result is discarded.
fn file_driver_dropped_with_read_in_flight(kind: BackendKind) {
    let dir = TempDir::new("file-drop");
    let path = make_file(&dir, "d.dat", &vec![4; 8 << 20]);
    let ran = Rc::new(Cell::new(false));
    {
        let mut drv = driver(kind);
        let f = open(&mut drv, &path, OpenMode::Read).unwrap();
        let r = ran.clone();
        drv.files()
            .read(f, 0, Vec::with_capacity(8 << 20), IoMode::All, move |_, _, _, _| {
                r.set(true)
            });
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(!ran.get());
    // The file is not locked or damaged.
    assert_eq!(std::fs::read(&path).unwrap().len(), 8 << 20);
}

/// Releasing a file with a read and a write in flight cancels both: neither
/// callback runs, and the loop drains to `OutOfWaiters` with nothing left.
fn file_release_with_operations_in_flight(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-release");
    let path = make_file(&dir, "data.dat", &vec![1; 1 << 20]);
    let f = open(&mut drv, &path, OpenMode::ReadWrite).unwrap();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    drv.files()
        .read(f, 0, Vec::with_capacity(1 << 20), IoMode::All, move |_, _, _, _| {
            r.set(r.get() + 1)
        });
    let r = ran.clone();
    drv.files()
        .write(f, 1 << 20, vec![2; 1 << 20], IoMode::All, move |_, _, _, _| {
            r.set(r.get() + 1)
        });
    release_and_check(&mut drv, f);
    assert_eq!(ran.get(), 0, "callbacks of a released file never run");
}

/// Starts a truncate on a fresh file and returns the file and a flag that
/// the truncate's callback sets.
fn file_with_truncate_in_flight(drv: &mut Driver, dir: &TempDir) -> (FileHandle, Rc<Cell<bool>>) {
    let path = make_file(dir, "t.dat", &[1; 4096]);
    let f = open(drv, &path, OpenMode::ReadWrite).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drv.files().truncate(f, 10, move |_, _| r.set(true));
    (f, ran)
}

/// A truncate still running on the worker pool when the file's last
/// reference is released is a pending operation of that file: it is
/// cancelled with the others, and its callback never runs.
fn file_release_with_truncate_in_flight(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-release-truncate");
    let (f, ran) = file_with_truncate_in_flight(&mut drv, &dir);
    assert!(!drv.release_ref(f).unwrap());
    assert_out_of_waiters(&mut drv);
    assert!(!ran.get(), "the truncate callback ran after the release");
    assert_no_leaks(&drv);
}

/// The same with `close`: it cancels the pending truncate (whose callback
/// never runs) and reports its own result.
fn file_close_with_truncate_in_flight(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-close-truncate");
    let (f, ran) = file_with_truncate_in_flight(&mut drv, &dir);
    let closed: Slot<Result<()>> = slot();
    let c = closed.clone();
    drv.files().close(f, move |_, res| *c.borrow_mut() = Some(res));
    assert_out_of_waiters(&mut drv);
    closed.take().expect("close callback").expect("close");
    assert!(!ran.get(), "the truncate callback ran after close");
    assert_no_leaks(&drv);
}

/// `Immediate` transfers: a write completes at once with everything written
/// (buffered in the page cache); a read of cached data either gets it or —
/// if the data would have to come from the device — is `WouldBlock`; a read
/// past the end is `EndOfFile`. All callbacks run from `process_events`.
fn file_immediate_transfers(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-immediate");
    let path = dir.path().join("i.dat");
    let f = open(&mut drv, &path, OpenMode::CreateNew).unwrap();
    let (r, _) = write(&mut drv, f, 0, b"immediate".to_vec(), IoMode::Immediate);
    assert_eq!(r.unwrap(), 9);
    let (r, buf) = read(&mut drv, f, 0, 9, IoMode::Immediate);
    match r {
        Ok(n) => {
            assert!(n > 0 && n <= 9);
            assert_eq!(&buf[..n], &b"immediate"[..n]);
        }
        Err(e) => assert_eq!(e.status(), Status::WouldBlock, "{e}"),
    }
    let (r, _) = read(&mut drv, f, 9, 4, IoMode::Immediate);
    assert_status(&r, Status::EndOfFile);
    release_and_check(&mut drv, f);
}

/// One read and one write may be in flight on a file at once; both complete.
/// A second read (or write) while one is pending is `Busy`, through its
/// callback, with its buffer back — and does not disturb the pending one.
fn file_read_and_write_in_flight_second_read_busy(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-busy");
    const LEN: usize = 4 << 20;
    let path = make_file(&dir, "data.dat", &vec![7; LEN]);
    let f = open(&mut drv, &path, OpenMode::ReadWrite).unwrap();

    let read1: Slot<Transfer> = slot();
    let write1: Slot<Transfer> = slot();
    let read2: Slot<Transfer> = slot();
    let write2: Slot<Transfer> = slot();
    let s = read1.clone();
    drv.files()
        .read(f, 0, Vec::with_capacity(LEN), IoMode::All, move |_, _, r, b| {
            *s.borrow_mut() = Some((r, b))
        });
    let s = write1.clone();
    drv.files()
        .write(f, LEN as u64, vec![9; LEN], IoMode::All, move |_, _, r, b| {
            *s.borrow_mut() = Some((r, b))
        });
    let s = read2.clone();
    drv.files()
        .read(f, 0, Vec::with_capacity(3), IoMode::Once, move |_, _, r, b| {
            *s.borrow_mut() = Some((r, b))
        });
    let s = write2.clone();
    drv.files()
        .write(f, 0, b"abc".to_vec(), IoMode::Once, move |_, _, r, b| {
            *s.borrow_mut() = Some((r, b))
        });
    assert!(read2.borrow().is_none(), "Busy must come from process_events");
    assert!(write2.borrow().is_none(), "Busy must come from process_events");
    assert_out_of_waiters(&mut drv);

    let (r, buf) = read2.take().expect("second read completed");
    assert_status(&r, Status::Busy);
    assert!(buf.is_empty() && buf.capacity() >= 3);
    let (r, buf) = write2.take().expect("second write completed");
    assert_status(&r, Status::Busy);
    assert_eq!(buf, b"abc");

    let (r, buf) = read1.take().expect("first read completed");
    assert_eq!(r.unwrap(), LEN);
    assert!(buf.iter().all(|&b| b == 7), "the busy write did not land");
    let (r, _) = write1.take().expect("first write completed");
    assert_eq!(r.unwrap(), LEN);
    assert_eq!(drv.files().size(f).unwrap(), 2 * LEN as u64);
    release_and_check(&mut drv, f);
}

/// Fills chunk `index` of the 1 GiB scenario: every 4 KiB block starts with
/// its file offset (little endian) and is otherwise the chunk number.
fn fill_chunk(buf: &mut [u8], index: usize) {
    buf.fill(index as u8 ^ 0xa5);
    let base = (index * buf.len()) as u64;
    for (i, block) in buf.chunks_mut(4096).enumerate() {
        block[..8].copy_from_slice(&(base + (i * 4096) as u64).to_le_bytes());
    }
}

/// A 1 GiB file written in 64 MiB chunks with `All` writes, each started from
/// the previous one's callback with the buffer it gave back, then read back
/// the same way and compared block by block. Real data, no holes. The file
/// is deleted at the end.
fn file_one_gib_round_trip_in_64_mib_chunks(kind: BackendKind) {
    const CHUNK: usize = 64 << 20;
    const CHUNKS: usize = 16;
    let mut drv = driver(kind);
    let dir = TempDir::new("file-1gib");
    let path = dir.path().join("big.dat");
    let f = open(&mut drv, &path, OpenMode::CreateNew).unwrap();

    fn write_chunk(drv: &mut Driver, f: FileHandle, index: usize, mut buf: Vec<u8>, done: Rc<Cell<usize>>) {
        if index == CHUNKS {
            return;
        }
        fill_chunk(&mut buf, index);
        drv.files()
            .write(f, (index * CHUNK) as u64, buf, IoMode::All, move |drv, f, r, buf| {
                assert_eq!(r.expect("write"), CHUNK);
                assert_eq!(buf.len(), CHUNK, "the buffer comes back");
                done.set(index + 1);
                write_chunk(drv, f, index + 1, buf, done);
            });
    }
    let written = Rc::new(Cell::new(0));
    write_chunk(&mut drv, f, 0, vec![0; CHUNK], written.clone());
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_eq!(written.get(), CHUNKS);
    assert_eq!(drv.files().size(f).unwrap(), (CHUNK * CHUNKS) as u64);

    fn read_chunk(
        drv: &mut Driver,
        f: FileHandle,
        index: usize,
        buf: Vec<u8>,
        expected: Rc<RefCell<Vec<u8>>>,
        done: Rc<Cell<usize>>,
    ) {
        if index == CHUNKS {
            return;
        }
        drv.files().read(
            f,
            (index * CHUNK) as u64,
            buf,
            IoMode::All,
            move |drv, f, r, mut buf| {
                assert_eq!(r.expect("read"), CHUNK);
                fill_chunk(&mut expected.borrow_mut(), index);
                assert!(*expected.borrow() == buf, "chunk {index} differs");
                buf.clear();
                done.set(index + 1);
                read_chunk(drv, f, index + 1, buf, expected, done);
            },
        );
    }
    let read_back = Rc::new(Cell::new(0));
    let expected = Rc::new(RefCell::new(vec![0; CHUNK]));
    read_chunk(&mut drv, f, 0, Vec::with_capacity(CHUNK), expected, read_back.clone());
    assert_eq!(run_until_not_idle(&mut drv, LIMIT), ExitReason::OutOfWaiters);
    assert_eq!(read_back.get(), CHUNKS);

    // Past the end of the 1 GiB file.
    let (r, _) = read(&mut drv, f, (CHUNK * CHUNKS) as u64, 1, IoMode::Once);
    assert_status(&r, Status::EndOfFile);
    close(&mut drv, f).expect("close");
    std::fs::remove_file(&path).unwrap();
    assert_out_of_waiters(&mut drv);
    assert_no_leaks(&drv);
}

/// 200 files at once: all opened together, and each one — from its own
/// callbacks — written, read back, checked and closed, all concurrently.
/// Every step runs exactly once per file.
fn file_many_files_at_once(kind: BackendKind) {
    const N: usize = 200;
    let mut drv = driver(kind);
    let dir = TempDir::new("file-many");
    let closed = Rc::new(RefCell::new(vec![0usize; N]));

    for i in 0..N {
        let path = dir.path().join(format!("f{i}.dat"));
        let closed = closed.clone();
        drv.files().open(&path, OpenMode::CreateNew, move |drv, r| {
            let f = r.unwrap_or_else(|e| panic!("open {i}: {e}"));
            let data = format!("file number {i}").repeat(100).into_bytes();
            let len = data.len();
            drv.files().write(f, 0, data, IoMode::All, move |drv, f, r, data| {
                assert_eq!(r.unwrap(), len);
                drv.files()
                    .read(f, 0, Vec::with_capacity(len), IoMode::All, move |drv, f, r, back| {
                        assert_eq!(r.unwrap(), len);
                        assert_eq!(back, data, "file {i}");
                        drv.files().close(f, move |_, r| {
                            r.expect("close");
                            closed.borrow_mut()[i] += 1;
                        });
                    });
            });
        });
    }
    assert_eq!(drv.waiter_count(), N, "200 pending opens");
    assert_out_of_waiters(&mut drv);
    assert!(
        closed.borrow().iter().all(|&n| n == 1),
        "every file closed exactly once: {:?}",
        closed.borrow()
    );
    for i in 0..N {
        let content = std::fs::read(dir.path().join(format!("f{i}.dat"))).unwrap();
        assert_eq!(content, format!("file number {i}").repeat(100).into_bytes());
    }
    assert_no_leaks(&drv);
}

/// `truncate` shrinks and grows a file (off the loop thread, callback from
/// `process_events`); `size` follows; the grown part reads as zeros and the
/// kept part is unchanged.
fn file_truncate_then_size(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-truncate");
    let path = make_file(&dir, "t.dat", &[b'x'; 100]);
    let f = open(&mut drv, &path, OpenMode::ReadWrite).unwrap();
    assert_eq!(drv.files().size(f).unwrap(), 100);

    truncate(&mut drv, f, 10).expect("shrink");
    assert_eq!(drv.files().size(f).unwrap(), 10);
    truncate(&mut drv, f, 1000).expect("grow");
    assert_eq!(drv.files().size(f).unwrap(), 1000);

    let (r, buf) = read(&mut drv, f, 0, 1000, IoMode::All);
    assert_eq!(r.unwrap(), 1000);
    assert_eq!(&buf[..10], &[b'x'; 10]);
    assert!(buf[10..].iter().all(|&b| b == 0), "the grown part is zeros");
    truncate(&mut drv, f, 0).expect("empty");
    assert_eq!(drv.files().size(f).unwrap(), 0);
    release_and_check(&mut drv, f);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

/// An open `std::fs::File` can be adopted: size, read and write work on it,
/// and the last release closes it.
fn file_adopt_std_file(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-adopt");
    let path = make_file(&dir, "a.dat", b"abc");
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    // Windows: the backend does overlapped I/O, so the file must allow it.
    #[cfg(windows)]
    std::os::windows::fs::OpenOptionsExt::custom_flags(&mut options, 0x4000_0000); // FILE_FLAG_OVERLAPPED
    let std_file = options.open(&path).unwrap();
    let f = drv.files().adopt(std_file).unwrap();
    assert!(drv.is_valid(f));
    assert_eq!(drv.files().size(f).unwrap(), 3);

    let (r, buf) = read(&mut drv, f, 0, 3, IoMode::All);
    assert_eq!(r.unwrap(), 3);
    assert_eq!(buf, b"abc");
    let (r, _) = write(&mut drv, f, 3, b"def".to_vec(), IoMode::All);
    assert_eq!(r.unwrap(), 3);
    assert_eq!(drv.files().size(f).unwrap(), 6);
    release_and_check(&mut drv, f);
    assert!(!drv.is_valid(f));
    assert_eq!(std::fs::read(&path).unwrap(), b"abcdef");
}

/// After `close` the handle is stale: read, write, truncate and close report
/// `InvalidHandle` through their callbacks (with the buffers back), `size`
/// and `release_ref` return it, and nothing reaches another file — not even
/// one opened afterwards, which may reuse the slot.
fn file_stale_handle_after_close_is_invalid_handle(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-stale");
    let path = make_file(&dir, "s.dat", b"stale");
    let f = open(&mut drv, &path, OpenMode::ReadWrite).unwrap();
    close(&mut drv, f).expect("close");
    assert!(!drv.is_valid(f));

    let other_path = make_file(&dir, "other.dat", b"other");
    let other = open(&mut drv, &other_path, OpenMode::ReadWrite).unwrap();
    assert_ne!(other, f);

    let (r, buf) = read(&mut drv, f, 0, 5, IoMode::Once);
    assert_status(&r, Status::InvalidHandle);
    assert!(buf.is_empty() && buf.capacity() >= 5);
    let (r, buf) = write(&mut drv, f, 0, b"XXXXX".to_vec(), IoMode::All);
    assert_status(&r, Status::InvalidHandle);
    assert_eq!(buf, b"XXXXX");
    assert_status(&truncate(&mut drv, f, 0), Status::InvalidHandle);
    assert_status(&close(&mut drv, f), Status::InvalidHandle);
    assert_status(&drv.files().size(f), Status::InvalidHandle);
    assert_status(&drv.release_ref(f), Status::InvalidHandle);
    assert!(drv.files().cancel_read(f).is_none());
    assert!(drv.files().cancel_write(f).is_none());

    // A handle of another driver is as invalid, even if the slot matches.
    let mut drv2 = driver(kind);
    let other2 = open(&mut drv2, &other_path, OpenMode::Read).unwrap();
    assert_status(&drv.files().size(other2), Status::InvalidHandle);
    let (r, _) = read(&mut drv, other2, 0, 5, IoMode::Once);
    assert_status(&r, Status::InvalidHandle);
    assert_status(&drv.release_ref(other2), Status::InvalidHandle);
    release_and_check(&mut drv2, other2);

    assert_eq!(drv.files().size(other).unwrap(), 5);
    release_and_check(&mut drv, other);
    assert_eq!(std::fs::read(&other_path).unwrap(), b"other");
    assert_eq!(std::fs::read(&path).unwrap(), b"stale");
}

/// In `Append` mode every write goes to the end of the file, whatever offset
/// it names; an append-open of a missing file creates it.
fn file_append_mode_appends(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-append");
    let path = make_file(&dir, "log.dat", b"abc");
    let f = open(&mut drv, &path, OpenMode::Append).unwrap();
    let (r, _) = write(&mut drv, f, 0, b"def".to_vec(), IoMode::All);
    assert_eq!(r.unwrap(), 3);
    let (r, _) = write(&mut drv, f, 1, b"gh".to_vec(), IoMode::Once);
    assert_eq!(r.unwrap(), 2);
    assert_eq!(drv.files().size(f).unwrap(), 8);
    let (r, buf) = read(&mut drv, f, 0, 8, IoMode::All);
    assert_eq!(r.unwrap(), 8);
    assert_eq!(buf, b"abcdefgh");
    release_and_check(&mut drv, f);
    assert_eq!(std::fs::read(&path).unwrap(), b"abcdefgh");

    let fresh = dir.path().join("fresh.dat");
    let f = open(&mut drv, &fresh, OpenMode::Append).expect("append creates");
    let (r, _) = write(&mut drv, f, 100, b"one".to_vec(), IoMode::All);
    assert_eq!(r.unwrap(), 3);
    release_and_check(&mut drv, f);
    assert_eq!(std::fs::read(&fresh).unwrap(), b"one");
}

/// A zero-length read or write completes with `Ok(0)` from `process_events`
/// (not inside the call) and moves nothing.
fn file_zero_length_transfer_completes(kind: BackendKind) {
    let mut drv = driver(kind);
    let dir = TempDir::new("file-zero");
    let path = make_file(&dir, "z.dat", b"zz");
    let f = open(&mut drv, &path, OpenMode::ReadWrite).unwrap();
    for mode in [IoMode::Once, IoMode::All] {
        let (r, buf) = read(&mut drv, f, 0, 0, mode);
        assert_eq!(r.unwrap(), 0);
        assert!(buf.is_empty());
        let (r, _) = write(&mut drv, f, 0, Vec::new(), mode);
        assert_eq!(r.unwrap(), 0);
    }
    assert_eq!(drv.files().size(f).unwrap(), 2);
    release_and_check(&mut drv, f);
}

contract_tests! {
    file_positional_io_with_overlapping_writes,
    file_create_new_on_existing_is_already_exists,
    file_open_missing_is_not_found,
    file_read_past_end_is_end_of_file,
    file_read_all_spanning_end_reports_transferred,
    file_cancel_read_in_flight,
    file_cancel_write_in_flight,
    file_driver_dropped_with_read_in_flight,
    file_release_with_operations_in_flight,
    file_release_with_truncate_in_flight,
    file_close_with_truncate_in_flight,
    file_immediate_transfers,
    file_read_and_write_in_flight_second_read_busy,
    file_one_gib_round_trip_in_64_mib_chunks,
    file_many_files_at_once,
    file_truncate_then_size,
    file_adopt_std_file,
    file_stale_handle_after_close_is_invalid_handle,
    file_append_mode_appends,
    file_zero_length_transfer_completes,
}

/// Scenarios that need POSIX paths, permissions or error codes.
#[cfg(unix)]
mod unix_only {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    /// Opening a file with mode 000 is `NotAllowed` (EACCES).
    ///
    /// The tests run as root, for whom permission bits do not apply. The open
    /// runs on the driver's worker threads, which inherit the credentials of the
    /// thread that starts them; so the scenario sets this thread's file-system
    /// uid to `nobody` (`setfsuid`, which is per-thread and drops the file
    /// capabilities) before the driver starts any worker, and restores it at the
    /// end. If permission bits still do not apply (the probe open from this
    /// thread succeeds), the scenario prints why and skips.
    fn file_open_without_permission_is_not_allowed(kind: BackendKind) {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("file-perm");
        let path = make_file(&dir, "secret.dat", b"secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();

        /// Restores the thread's file-system uid, also if the scenario fails.
        struct FsUid(libc::uid_t);
        impl Drop for FsUid {
            fn drop(&mut self) {
                // SAFETY: setfsuid only changes this thread's credentials.
                unsafe { libc::setfsuid(self.0) };
            }
        }
        // SAFETY: as above; the return value is the previous fsuid.
        let _restore = FsUid(unsafe { libc::setfsuid(65534) } as libc::uid_t);
        if std::fs::File::open(&path).is_ok() {
            eprintln!(
                "SKIPPED file_open_without_permission_is_not_allowed: mode 000 does not deny \
                 access here (running with file capabilities that setfsuid did not drop)"
            );
            return;
        }

        let mut drv = driver(kind);
        for mode in [OpenMode::Read, OpenMode::ReadWrite, OpenMode::Append] {
            let r = open(&mut drv, &path, mode);
            assert_status(&r, Status::NotAllowed);
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EACCES));
        }
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// A path that goes through a regular file as if it were a directory is an
    /// error with the OS code (ENOTDIR), reported through the callback.
    fn file_open_path_under_regular_file_fails(kind: BackendKind) {
        let mut drv = driver(kind);
        let dir = TempDir::new("file-notdir");
        let file = make_file(&dir, "plain.dat", b"x");
        for mode in [OpenMode::Read, OpenMode::CreateNew] {
            let r = open(&mut drv, file.join("below.dat"), mode);
            let e = r.expect_err("a path below a regular file cannot be opened");
            assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
        }
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// A path with a NUL byte is `InvalidArgument`, through the callback (never
    /// a panic, never inside `open`).
    fn file_open_path_with_nul_byte_is_invalid_argument(kind: BackendKind) {
        let mut drv = driver(kind);
        let dir = TempDir::new("file-nul");
        let mut bad = dir.path().as_os_str().as_bytes().to_vec();
        bad.extend_from_slice(b"/a\0b.dat");
        let r = open(&mut drv, OsStr::from_bytes(&bad), OpenMode::CreateTruncate);
        assert_status(&r, Status::InvalidArgument);
        assert!(!dir.path().join("a").exists());
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// File names that are not UTF-8 work: create, write and read back, with the
    /// file visible under exactly those bytes.
    fn file_non_utf8_path_works(kind: BackendKind) {
        let mut drv = driver(kind);
        let dir = TempDir::new("file-nonutf8");
        let name = OsStr::from_bytes(b"caf\xe9-\xff\xfe.dat");
        assert!(name.to_str().is_none(), "the name must not be UTF-8");
        let path = dir.path().join(name);

        let f = open(&mut drv, &path, OpenMode::CreateNew).expect("create-new");
        let (r, _) = write(&mut drv, f, 0, b"latin-1".to_vec(), IoMode::All);
        assert_eq!(r.unwrap(), 7);
        let (r, buf) = read(&mut drv, f, 0, 7, IoMode::All);
        assert_eq!(r.unwrap(), 7);
        assert_eq!(buf, b"latin-1");
        close(&mut drv, f).expect("close");

        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [name.to_owned()]);
        assert_eq!(std::fs::read(&path).unwrap(), b"latin-1");

        let f = open(&mut drv, &path, OpenMode::Read).expect("reopen");
        assert_eq!(drv.files().size(f).unwrap(), 7);
        release_and_check(&mut drv, f);
    }

    contract_tests! {
        file_open_without_permission_is_not_allowed,
        file_open_path_under_regular_file_fails,
        file_open_path_with_nul_byte_is_invalid_argument,
        file_non_utf8_path_works,
    }
}

/// Windows-only scenarios.
#[cfg(windows)]
mod windows_only {
    use std::os::windows::fs::OpenOptionsExt;

    use super::*;

    /// A file another handle holds without sharing cannot be opened:
    /// `SharingViolation` with `ERROR_SHARING_VIOLATION` (32), through the
    /// callback — the original driver reported a generic error here.
    fn file_open_while_held_exclusively_is_sharing_violation(kind: BackendKind) {
        let mut drv = driver(kind);
        let dir = TempDir::new("file-share");
        let path = make_file(&dir, "held.dat", b"mine");
        let exclusive = std::fs::OpenOptions::new()
            .read(true)
            .share_mode(0)
            .open(&path)
            .unwrap();
        for mode in [OpenMode::Read, OpenMode::ReadWrite, OpenMode::Append] {
            let r = open(&mut drv, &path, mode);
            assert_status(&r, Status::SharingViolation);
            assert_eq!(r.unwrap_err().raw_os_error(), Some(32));
        }
        drop(exclusive);
        let f = open(&mut drv, &path, OpenMode::Read).expect("open once released");
        release_and_check(&mut drv, f);
    }

    contract_tests! {
        file_open_while_held_exclusively_is_sharing_violation,
    }
}
