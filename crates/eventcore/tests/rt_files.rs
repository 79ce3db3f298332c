//! The async layer's files: write and read back, size, truncate, end of file,
//! open failures, close, `Busy` for a second read — and open, read, write and
//! truncate dropped at each state (never polled, pending, completed but not
//! polled), with no file left open in the end.

mod util;

use eventcore::rt::{self, File};
use eventcore::{BackendKind, OpenMode, Status};
use util::rt::{assert_settled, executor, pending_ops, poll_once, until};

fn open_files() -> usize {
    rt::with_driver(|d| d.leak_report().files)
}

/// Write a file in two positional writes, read it back whole and in part,
/// check its size, truncate it, read past its end, close it.
fn write_read_size_truncate(kind: BackendKind) {
    let dir = util::TempDir::new("rt-files");
    let path = dir.path().join("data");
    let mut ex = executor(kind);
    ex.block_on(async {
        let f = File::create(&path).await.expect("create");
        let (r, _) = f.write_all_at(b"hello ".to_vec(), 0).await;
        assert_eq!(r.unwrap(), 6);
        let (r, _) = f.write_all_at(b"world".to_vec(), 6).await;
        assert_eq!(r.unwrap(), 5);
        assert_eq!(f.size().unwrap(), 11);
        let (r, buf) = f.read_exact_at(Vec::with_capacity(11), 0).await;
        assert_eq!((r.unwrap(), &buf[..]), (11, &b"hello world"[..]));
        let (r, buf) = f.read_at(Vec::with_capacity(64), 6).await;
        assert_eq!(&buf[..r.unwrap()], b"world");
        f.truncate(5).await.expect("truncate");
        assert_eq!(f.size().unwrap(), 5);
        let (r, _) = f.read_at(Vec::with_capacity(4), 5).await;
        assert_eq!(r.unwrap_err().status(), Status::EndOfFile);
        let (r, _) = f.read_exact_at(Vec::with_capacity(8), 0).await;
        let e = r.unwrap_err();
        assert_eq!((e.status(), e.transferred()), (Status::EndOfFile, 5));
        f.close().await.expect("close");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");

        let err = File::open(dir.path().join("missing"), OpenMode::Read)
            .await
            .expect_err("missing");
        assert_eq!(err.status(), Status::NotFound);
        let err = File::open(&path, OpenMode::CreateNew).await.expect_err("exists");
        assert_eq!(err.status(), Status::AlreadyExists);
    });
    assert_settled(&mut ex);
}

/// A read and a write may be in flight together; a second read is `Busy`.
fn one_read_and_one_write_at_once(kind: BackendKind) {
    let dir = util::TempDir::new("rt-files");
    let path = dir.path().join("data");
    std::fs::write(&path, vec![1u8; 4096]).unwrap();
    let mut ex = executor(kind);
    ex.block_on(async {
        let f = File::open(&path, OpenMode::ReadWrite).await.unwrap();
        let read = f.read_exact_at(Vec::with_capacity(4096), 0);
        let write = f.write_all_at(vec![2u8; 4096], 4096);
        let (r, w) = futures_util::future::join(read, write).await;
        assert_eq!(r.0.unwrap(), 4096);
        assert_eq!(w.0.unwrap(), 4096);
        let mut a = Box::pin(f.read_at(Vec::with_capacity(4), 0));
        assert!(poll_once(&mut a).await.is_pending());
        let (r, buf) = f.read_at(Vec::with_capacity(4), 0).await;
        assert_eq!(r.unwrap_err().status(), Status::Busy);
        assert!(buf.is_empty() && buf.capacity() >= 4, "the buffer comes back, empty");
        let (r, _) = a.await;
        assert_eq!(r.unwrap(), 4);
    });
    assert_settled(&mut ex);
}

/// An open dropped at each state: never polled (nothing opened), pending
/// (an open cannot be withdrawn: its callback still runs and closes the
/// file), completed but not polled (the file is closed).
fn open_dropped_at_each_state(kind: BackendKind) {
    let dir = util::TempDir::new("rt-files");
    let path = dir.path().join("data");
    std::fs::write(&path, b"x").unwrap();
    let mut ex = executor(kind);
    ex.block_on(async {
        drop(File::open(&path, OpenMode::Read));
        assert_eq!(pending_ops(), 0);

        let mut o = Box::pin(File::open(&path, OpenMode::Read));
        assert!(poll_once(&mut o).await.is_pending());
        drop(o);
        until("the abandoned open completes and closes its file", || {
            pending_ops() == 0 && open_files() == 0
        })
        .await;

        let mut o = Box::pin(File::open(&path, OpenMode::Read));
        assert!(poll_once(&mut o).await.is_pending());
        until("the open completes", || open_files() == 1).await;
        drop(o);
        assert_eq!(open_files(), 0);
    });
    assert_settled(&mut ex);
}

/// Reads, writes and truncates dropped at each state. A pending read or
/// write is withdrawn while its buffer stays with the worker; the file stays
/// usable; the write and truncate that were dropped may still happen.
fn io_dropped_at_each_state(kind: BackendKind) {
    let dir = util::TempDir::new("rt-files");
    let path = dir.path().join("data");
    std::fs::write(&path, vec![9u8; 1 << 16]).unwrap();
    let mut ex = executor(kind);
    ex.block_on(async {
        let f = File::open(&path, OpenMode::ReadWrite).await.unwrap();
        let base = pending_ops();

        drop(f.read_at(Vec::with_capacity(1 << 16), 0));
        drop(f.write_at(vec![1; 8], 0));
        drop(f.truncate(1));
        assert_eq!(pending_ops(), base);
        assert_eq!(f.size().unwrap(), 1 << 16, "nothing happened");

        let mut r = Box::pin(f.read_exact_at(Vec::with_capacity(1 << 16), 0));
        assert!(poll_once(&mut r).await.is_pending());
        drop(r);
        let mut w = Box::pin(f.write_all_at(vec![7; 16], 0));
        assert!(poll_once(&mut w).await.is_pending());
        drop(w);
        // The slots are free again at once.
        let (res, buf) = f.read_exact_at(Vec::with_capacity(16), 1 << 15).await;
        assert_eq!((res.unwrap(), buf), (16, vec![9; 16]));

        let mut r = Box::pin(f.read_at(Vec::with_capacity(16), 0));
        assert!(poll_once(&mut r).await.is_pending());
        let mut w = Box::pin(f.write_all_at(vec![5; 16], 100));
        assert!(poll_once(&mut w).await.is_pending());
        let mut t = Box::pin(f.truncate(1 << 15));
        assert!(poll_once(&mut t).await.is_pending());
        until("all three complete", || pending_ops() == base).await;
        drop((r, w, t));
        assert_eq!(f.size().unwrap(), 1 << 15, "the truncate happened");
        let (res, buf) = f.read_exact_at(Vec::with_capacity(16), 100).await;
        assert_eq!((res.unwrap(), buf), (16, vec![5; 16]), "the write happened");

        // A dropped truncate still happens.
        let mut t = Box::pin(f.truncate(10));
        assert!(poll_once(&mut t).await.is_pending());
        drop(t);
        until("the truncate lands", || f.size().unwrap() == 10).await;
    });
    assert_settled(&mut ex);
}

contract_tests! {
    write_read_size_truncate,
    one_read_and_one_write_at_once,
    open_dropped_at_each_state,
    io_dropped_at_each_state,
}
