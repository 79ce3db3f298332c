//! Contract tests for foreign descriptors (`Driver::polls`): descriptors the
//! program owns — on Unix any pollable descriptor (pipes, sockets, eventfd,
//! timerfd), on Windows sockets — waited on for readability and
//! writability, one-shot and repeating, cancelled and released; bad input
//! (registering twice, a regular file, an invalid or closed descriptor);
//! and on Windows kernel objects (events set by other threads, more than 64
//! of them, invalid handles). The same scenarios through `rt::AsyncFd` and
//! `rt::wait_handle`.

mod util;

/// Everything in one module, so that `-- foreign` selects this file's tests
/// in `cargo xtask test` (their names start with `foreign::`).
mod foreign {

    use std::cell::{Cell, RefCell};
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::rc::Rc;
    use std::time::Duration;

    use crate::util::{self, assert_no_leaks, assert_out_of_waiters, assert_status, driver, run_until, DropCounter};
    use eventcore::rt::{self, AsyncFd};
    use eventcore::{BackendKind, Driver, ExitReason, Interest, PollHandle, Readiness, Status};

    /// A connected loopback TCP pair from std ("another library's" sockets):
    /// (ours, the peer). Ours is non-blocking.
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let ours = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        ours.set_nonblocking(true).unwrap();
        (ours, peer)
    }

    #[cfg(unix)]
    fn register<S: std::os::fd::AsFd>(drv: &mut Driver, s: &S) -> eventcore::Result<PollHandle> {
        drv.polls().register(s.as_fd())
    }

    #[cfg(windows)]
    fn register<S: std::os::windows::io::AsSocket>(drv: &mut Driver, s: &S) -> eventcore::Result<PollHandle> {
        drv.polls().register(s.as_socket())
    }

    /// What callbacks saw.
    type Seen = Rc<RefCell<Vec<eventcore::Result<Readiness>>>>;

    /// Reads everything the non-blocking stream holds now.
    fn drain(s: &mut TcpStream) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return total,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    crate::contract_tests!(
        readable_once_when_data_arrives,
        writable_at_once_but_never_inside_the_call,
        both_reports_the_first_direction_and_withdraws_the_other,
        watch_repeats_until_unwatched,
        watch_is_level_triggered,
        watch_of_both_directions_reports_each,
        unwatch_from_inside_the_callback,
        cancel_says_whether_a_wait_was_pending,
        release_withdraws_pending_waits,
        registering_twice_is_already_exists,
        one_wait_per_direction,
        stale_handles_are_invalid,
        a_panicking_watch_goes_on,
        rt_readable_writable_and_stream,
        rt_dropped_wait_is_withdrawn,
        listening_socket_is_readable_with_a_pending_connection,
        writable_again_once_the_peer_reads,
        socket_closed_while_registered,
    );

    /// A listening socket is readable when a connection waits to be accepted.
    fn listening_socket_is_readable_with_a_pending_connection(kind: BackendKind) {
        let mut drv = driver(kind);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let h = register(&mut drv, &listener).unwrap();
        let ready = Rc::new(Cell::new(false));
        let rd = ready.clone();
        drv.polls()
            .wait_readable(h, move |_, _, r| {
                assert!(r.unwrap().is_readable());
                rd.set(true);
            })
            .unwrap();
        assert_eq!(
            drv.process_events(Some(Duration::from_millis(50))).unwrap(),
            ExitReason::Timeout
        );
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        run_until(&mut drv, Duration::from_secs(5), |_| ready.get());
        listener.accept().expect("the connection is there");
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// A socket whose send buffer is full (the peer does not read) is not
    /// writable; once the peer reads, the wait fires.
    fn writable_again_once_the_peer_reads(kind: BackendKind) {
        let mut drv = driver(kind);
        let (mut ours, mut peer) = tcp_pair();
        let chunk = vec![1u8; 64 * 1024];
        let mut sent = 0usize;
        loop {
            match ours.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(sent < 256 << 20, "the send buffer never filled");
        }
        let h = register(&mut drv, &ours).unwrap();
        let ready = Rc::new(Cell::new(false));
        let rd = ready.clone();
        drv.polls()
            .wait_writable(h, move |_, _, r| {
                assert!(r.unwrap().is_writable());
                rd.set(true);
            })
            .unwrap();
        assert_eq!(
            drv.process_events(Some(Duration::from_millis(50))).unwrap(),
            ExitReason::Timeout
        );
        assert!(!ready.get(), "a full socket is not writable");
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0;
            while got < sent {
                got += peer.read(&mut buf).unwrap();
            }
            peer
        });
        run_until(&mut drv, Duration::from_secs(10), |_| ready.get());
        let _peer = reader.join().unwrap();
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// A socket closed while registered (a program error): nothing hangs,
    /// the pending wait can still be cancelled (unless it ended), the release
    /// works, and the driver goes on serving other sockets.
    fn socket_closed_while_registered(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, _peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let fired = Rc::new(RefCell::new(None));
        let f = fired.clone();
        let wait = drv
            .polls()
            .wait_readable(h, move |_, _, r| *f.borrow_mut() = Some(r))
            .unwrap();
        drop(ours);
        drv.process_events(Some(Duration::from_millis(50))).unwrap();
        eprintln!("{}: after the close, callback: {:?}", kind.name(), fired.borrow());
        if fired.borrow().is_none() {
            assert!(drv.polls().cancel(h, wait));
        }
        assert!(!drv.release_ref(h).unwrap());
        // Another registration works as before.
        let (ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let ready = Rc::new(Cell::new(false));
        let rd = ready.clone();
        drv.polls().wait_readable(h, move |_, _, r| rd.set(r.is_ok())).unwrap();
        peer.write_all(b"x").unwrap();
        run_until(&mut drv, Duration::from_secs(5), |_| ready.get());
        drv.release_ref(h).unwrap();
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// A wait for readability does not complete while nothing arrived, and
    /// completes (from `process_events`) once the peer writes.
    fn readable_once_when_data_arrives(kind: BackendKind) {
        let mut drv = driver(kind);
        let (mut ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let seen: Seen = Rc::default();
        let s = seen.clone();
        drv.polls()
            .wait_readable(h, move |_, got, r| {
                assert_eq!(got, h);
                s.borrow_mut().push(r);
            })
            .unwrap();
        assert_eq!(drv.waiter_count(), 1);
        assert_eq!(
            drv.process_events(Some(Duration::from_millis(50))).unwrap(),
            ExitReason::Timeout
        );
        assert!(seen.borrow().is_empty(), "not readable yet");
        peer.write_all(b"hello").unwrap();
        run_until(&mut drv, Duration::from_secs(5), |_| !seen.borrow().is_empty());
        let r = seen.borrow_mut().pop().unwrap().expect("readable");
        assert!(r.is_readable() && !r.is_writable());
        assert_eq!(drain(&mut ours), 5, "the driver consumed nothing");
        assert_out_of_waiters(&mut drv);
        assert!(!drv.release_ref(h).unwrap());
        assert_no_leaks(&drv);
    }

    /// A connected socket is writable at once; the callback still runs only
    /// from `process_events`.
    fn writable_at_once_but_never_inside_the_call(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, _peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let ran = Rc::new(Cell::new(false));
        let r2 = ran.clone();
        drv.polls()
            .wait_writable(h, move |_, _, r| {
                assert!(r.unwrap().is_writable());
                r2.set(true);
            })
            .unwrap();
        assert!(!ran.get(), "never inside the call that started the wait");
        run_until(&mut drv, Duration::from_secs(5), |_| ran.get());
        assert_out_of_waiters(&mut drv);
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// A one-shot wait for both directions on a socket with room and no data
    /// reports writable, once, and leaves no wait behind.
    fn both_reports_the_first_direction_and_withdraws_the_other(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let seen: Seen = Rc::default();
        let s = seen.clone();
        drv.polls()
            .wait(h, Interest::BOTH, move |_, _, r| s.borrow_mut().push(r))
            .unwrap();
        assert_eq!(drv.waiter_count(), 1, "one wait, one waiter");
        run_until(&mut drv, Duration::from_secs(5), |_| !seen.borrow().is_empty());
        assert_out_of_waiters(&mut drv);
        assert_eq!(seen.borrow().len(), 1);
        assert!(seen.borrow()[0].as_ref().unwrap().is_writable());
        // The readable half was withdrawn: data now wakes nothing.
        peer.write_all(b"x").unwrap();
        assert_eq!(
            drv.process_events(Some(Duration::from_millis(50))).unwrap(),
            ExitReason::OutOfWaiters
        );
        assert_eq!(seen.borrow().len(), 1);
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// A watch reports each arrival (the callback reads until `WouldBlock`),
    /// keeps the loop alive, and ends with `unwatch`.
    fn watch_repeats_until_unwatched(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let ours = Rc::new(RefCell::new(ours));
        let got = Rc::new(Cell::new(0usize));
        let calls = Rc::new(Cell::new(0usize));
        let (o, g, c) = (ours.clone(), got.clone(), calls.clone());
        drv.polls()
            .watch(h, Interest::READABLE, move |_, _, r| {
                assert!(r.unwrap().is_readable());
                c.set(c.get() + 1);
                g.set(g.get() + drain(&mut o.borrow_mut()));
            })
            .unwrap();
        assert!(drv.polls().is_watching(h));
        assert_eq!(drv.waiter_count(), 1, "an active watch is a waiter");
        for round in 1..=3 {
            peer.write_all(&[round; 10]).unwrap();
            run_until(&mut drv, Duration::from_secs(5), |_| got.get() == 10 * round as usize);
        }
        assert!(calls.get() >= 3);
        assert!(drv.polls().unwatch(h));
        assert!(!drv.polls().unwatch(h), "only once");
        assert_out_of_waiters(&mut drv);
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// A watch whose callback leaves the data unread reports it again in the
    /// next loop turns (level-triggered), once per turn.
    fn watch_is_level_triggered(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let calls = Rc::new(Cell::new(0usize));
        let c = calls.clone();
        drv.polls()
            .watch(h, Interest::READABLE, move |_, _, _| c.set(c.get() + 1))
            .unwrap();
        peer.write_all(b"unread").unwrap();
        run_until(&mut drv, Duration::from_secs(5), |_| calls.get() >= 1);
        let before = calls.get();
        for _ in 0..3 {
            drv.process_events(Some(Duration::from_secs(2))).unwrap();
        }
        assert!(calls.get() > before, "reported again while unread");
        assert!(
            calls.get() <= before + 3 * 2,
            "at most once per loop turn ({} calls)",
            calls.get()
        );
        drv.polls().unwatch(h);
        drv.release_ref(h).unwrap();
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// A watch of both directions reports each direction in a callback of its
    /// own; unwatching stops both.
    fn watch_of_both_directions_reports_each(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        peer.write_all(b"data").unwrap();
        let (r, w) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let (r2, w2) = (r.clone(), w.clone());
        drv.polls()
            .watch(h, Interest::READABLE | Interest::WRITABLE, move |_, _, res| {
                let res = res.unwrap();
                if res.is_readable() {
                    r2.set(r2.get() + 1);
                }
                if res.is_writable() {
                    w2.set(w2.get() + 1);
                }
            })
            .unwrap();
        assert_eq!(drv.waiter_count(), 1, "one watch, one waiter");
        run_until(&mut drv, Duration::from_secs(5), |_| r.get() > 0 && w.get() > 0);
        assert!(drv.polls().unwatch(h));
        assert_out_of_waiters(&mut drv);
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// A watch callback that unwatches its own handle is never called again,
    /// and its closure is dropped exactly once.
    fn unwatch_from_inside_the_callback(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, _peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let calls = Rc::new(Cell::new(0));
        let drops = Rc::new(Cell::new(0));
        let (c, guard) = (calls.clone(), DropCounter(drops.clone()));
        drv.polls()
            .watch(h, Interest::WRITABLE, move |drv, h, _| {
                let _ = &guard;
                c.set(c.get() + 1);
                assert!(drv.polls().unwatch(h));
            })
            .unwrap();
        assert_out_of_waiters(&mut drv);
        assert_eq!(calls.get(), 1);
        assert_eq!(drops.get(), 1);
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// `cancel` is `true` for a pending wait (its callback never runs, and is
    /// dropped), `false` afterwards and for a wait that has completed.
    fn cancel_says_whether_a_wait_was_pending(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let drops = Rc::new(Cell::new(0));
        let guard = DropCounter(drops.clone());
        let w = drv
            .polls()
            .wait_readable(h, move |_, _, _| {
                let _ = &guard;
                panic!("a cancelled wait's callback ran");
            })
            .unwrap();
        assert!(drv.polls().cancel(h, w));
        assert!(!drv.polls().cancel(h, w), "only once");
        assert_eq!(drops.get(), 1);
        // A wait whose completion is already queued: cancel still wins.
        let w = drv
            .polls()
            .wait_writable(h, |_, _, _| panic!("cancelled after it was queued"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
        assert!(drv.polls().cancel(h, w));
        peer.write_all(b"x").unwrap();
        assert_out_of_waiters(&mut drv);
        // A completed wait cannot be cancelled.
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        let w = drv.polls().wait_readable(h, move |_, _, _| d.set(true)).unwrap();
        run_until(&mut drv, Duration::from_secs(5), |_| done.get());
        assert!(!drv.polls().cancel(h, w));
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
    }

    /// Releasing the handle withdraws its waits and its watch: no callback
    /// runs, each closure is dropped once, and the descriptor stays open (the
    /// program owns it).
    fn release_withdraws_pending_waits(kind: BackendKind) {
        let mut drv = driver(kind);
        let (mut ours, mut peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let drops = Rc::new(Cell::new(0));
        let (g1, g2) = (DropCounter(drops.clone()), DropCounter(drops.clone()));
        drv.polls()
            .wait_readable(h, move |_, _, _| {
                let _ = &g1;
                panic!("released");
            })
            .unwrap();
        drv.polls()
            .watch(h, Interest::WRITABLE, move |_, _, _| {
                let _ = &g2;
            })
            .unwrap();
        assert!(!drv.release_ref(h).unwrap());
        assert_eq!(drops.get(), 2);
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
        // Still ours, still open.
        peer.write_all(b"still open").unwrap();
        ours.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 10];
        ours.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"still open");
    }

    /// The same descriptor registered twice in one driver is `AlreadyExists`;
    /// after a release it can be registered again; another driver may
    /// register it too.
    fn registering_twice_is_already_exists(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, _peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        assert_status(&register(&mut drv, &ours), Status::AlreadyExists);
        let mut other = driver(kind);
        let h2 = register(&mut other, &ours).expect("another driver may register it");
        other.release_ref(h2).unwrap();
        drv.release_ref(h).unwrap();
        let h = register(&mut drv, &ours).expect("registered again after the release");
        drv.release_ref(h).unwrap();
        assert_no_leaks(&drv);
        assert_no_leaks(&other);
    }

    /// One wait per direction: a second one, or a watch of that direction, is
    /// `Busy`; the other direction is free.
    fn one_wait_per_direction(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, _peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let w = drv.polls().wait_readable(h, |_, _, _| {}).unwrap();
        assert_status(&drv.polls().wait_readable(h, |_, _, _| {}), Status::Busy);
        assert_status(&drv.polls().wait(h, Interest::BOTH, |_, _, _| {}), Status::Busy);
        assert_status(&drv.polls().watch(h, Interest::READABLE, |_, _, _| {}), Status::Busy);
        drv.polls().watch(h, Interest::WRITABLE, |_, _, _| {}).unwrap();
        assert_status(&drv.polls().wait_writable(h, |_, _, _| {}), Status::Busy);
        assert!(drv.polls().cancel(h, w));
        drv.polls().unwatch(h);
        drv.release_ref(h).unwrap();
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// A released handle is `InvalidHandle` everywhere; calls that return a
    /// flag say `false`.
    fn stale_handles_are_invalid(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, _peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let w = drv.polls().wait_readable(h, |_, _, _| {}).unwrap();
        drv.release_ref(h).unwrap();
        assert_status(&drv.polls().wait_readable(h, |_, _, _| {}), Status::InvalidHandle);
        assert_status(
            &drv.polls().watch(h, Interest::BOTH, |_, _, _| {}),
            Status::InvalidHandle,
        );
        assert!(!drv.polls().cancel(h, w));
        assert!(!drv.polls().unwatch(h));
        assert!(!drv.polls().is_watching(h));
        assert_status(&drv.release_ref(h), Status::InvalidHandle);
        assert_no_leaks(&drv);
    }

    /// A panic in a watch callback comes out of `process_events`; the watch
    /// stays armed and reports again.
    fn a_panicking_watch_goes_on(kind: BackendKind) {
        let mut drv = driver(kind);
        let (ours, _peer) = tcp_pair();
        let h = register(&mut drv, &ours).unwrap();
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        drv.polls()
            .watch(h, Interest::WRITABLE, move |_, _, _| {
                c.set(c.get() + 1);
                if c.get() == 1 {
                    panic!("first report");
                }
            })
            .unwrap();
        assert_eq!(util::run_until_panic(&mut drv, Duration::from_secs(5)), "first report");
        assert!(drv.polls().is_watching(h));
        run_until(&mut drv, Duration::from_secs(5), |_| calls.get() >= 2);
        drv.polls().unwatch(h);
        drv.release_ref(h).unwrap();
        assert_out_of_waiters(&mut drv);
        assert_no_leaks(&drv);
    }

    /// `rt::AsyncFd`: `readable` waits for the peer's data, `writable` is
    /// ready at once, the readiness stream yields each arrival, and dropping
    /// it all leaves nothing behind; `into_inner` gives the socket back.
    fn rt_readable_writable_and_stream(kind: BackendKind) {
        let mut ex = util::rt::executor(kind);
        ex.block_on(async {
            let (ours, mut peer) = tcp_pair();
            let fd = AsyncFd::new(ours).unwrap();
            fd.writable().await.unwrap();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                peer.write_all(b"one").unwrap();
                peer
            });
            rt::timeout(Duration::from_secs(5), fd.readable())
                .await
                .unwrap()
                .unwrap();
            let mut fd = fd;
            assert_eq!(drain(fd.get_mut()), 3);
            let mut peer = writer.join().unwrap();
            {
                let mut stream = fd.watch(Interest::READABLE);
                for round in 0..3u8 {
                    peer.write_all(&[round]).unwrap();
                    let r = rt::timeout(Duration::from_secs(5), stream.next())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    assert!(r.is_readable());
                    // The driver borrows nothing: read it ourselves.
                    let mut buf = [0u8; 8];
                    let n = loop {
                        match fd.get_ref().read(&mut buf) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => rt::yield_now().await,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    assert_eq!(&buf[..n], &[round]);
                }
                // A second watch of the same direction is Busy, as an item.
                let mut second = fd.watch(Interest::READABLE);
                assert_status(&second.next().await.unwrap(), Status::Busy);
                assert!(second.next().await.is_none());
            }
            let ours = fd.into_inner();
            ours.set_nonblocking(true).unwrap();
        });
        util::rt::assert_settled(&mut ex);
        util::rt::assert_no_leaks(&ex);
    }

    /// A dropped `readable` future withdraws its wait at once.
    fn rt_dropped_wait_is_withdrawn(kind: BackendKind) {
        let mut ex = util::rt::executor(kind);
        ex.block_on(async {
            let (ours, _peer) = tcp_pair();
            let fd = AsyncFd::new(ours).unwrap();
            let mut wait = Box::pin(fd.readable());
            assert!(util::rt::poll_once(&mut wait).await.is_pending());
            assert_eq!(util::rt::pending_ops(), 1);
            drop(wait);
            assert_eq!(util::rt::pending_ops(), 0);
            assert!(rt::timeout(Duration::from_millis(30), fd.readable()).await.is_err());
        });
        util::rt::assert_settled(&mut ex);
        util::rt::assert_no_leaks(&ex);
    }

    /// Unix descriptors of every pollable kind, and the bad inputs of Unix.
    #[cfg(unix)]
    mod unix_only {
        use std::fs::File;
        use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

        use super::*;
        use crate::util::{os_pipe, TempDir};

        crate::contract_tests!(
            pipe_of_another_library,
            writable_again_once_the_reader_drains_the_pipe,
            hang_up_is_readable,
            eventfd_set_by_another_thread,
            timerfd_watch,
            regular_files_and_directories_are_not_supported,
            invalid_descriptors,
            a_descriptor_of_the_driver_is_already_exists,
            closed_while_registered_neither_hangs_nor_fails_the_release,
            rt_pipe_of_another_library,
        );

        fn set_nonblocking(fd: &impl AsRawFd) {
            // SAFETY: fcntl on a descriptor the caller owns.
            unsafe {
                let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }

        /// A blocking pipe whose write end another thread fills later: the
        /// read end's wait fires once data is there, and the program reads it.
        fn pipe_of_another_library(kind: BackendKind) {
            let mut drv = driver(kind);
            let (r, w) = os_pipe();
            let h = drv.polls().register(r.as_fd()).unwrap();
            let got = Rc::new(RefCell::new(Vec::new()));
            let g = got.clone();
            let mut file = File::from(r.try_clone().unwrap());
            drv.polls()
                .wait_readable(h, move |_, _, res| {
                    assert!(res.unwrap().is_readable());
                    let mut buf = [0u8; 16];
                    let n = file.read(&mut buf).unwrap();
                    g.borrow_mut().extend_from_slice(&buf[..n]);
                })
                .unwrap();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                File::from(w).write_all(b"from C").unwrap();
            });
            run_until(&mut drv, Duration::from_secs(5), |_| !got.borrow().is_empty());
            writer.join().unwrap();
            assert_eq!(&*got.borrow(), b"from C");
            drv.release_ref(h).unwrap();
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
            drop(r);
        }

        /// A full pipe's write end is not writable; once the reader drains it,
        /// the wait fires.
        fn writable_again_once_the_reader_drains_the_pipe(kind: BackendKind) {
            let mut drv = driver(kind);
            let (r, w) = os_pipe();
            set_nonblocking(&w);
            let mut wf = File::from(w);
            let chunk = [7u8; 4096];
            loop {
                match wf.write(&chunk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            let h = drv.polls().register(wf.as_fd()).unwrap();
            let ready = Rc::new(Cell::new(false));
            let rd = ready.clone();
            drv.polls()
                .wait_writable(h, move |_, _, res| {
                    assert!(res.unwrap().is_writable());
                    rd.set(true);
                })
                .unwrap();
            assert_eq!(
                drv.process_events(Some(Duration::from_millis(50))).unwrap(),
                ExitReason::Timeout
            );
            assert!(!ready.get(), "a full pipe is not writable");
            let mut rf = File::from(r);
            let mut buf = vec![0u8; 1 << 20];
            assert!(rf.read(&mut buf).unwrap() > 0);
            run_until(&mut drv, Duration::from_secs(5), |_| ready.get());
            drv.release_ref(h).unwrap();
            assert_no_leaks(&drv);
        }

        /// The writer closing its end makes the read end readable (end of file).
        fn hang_up_is_readable(kind: BackendKind) {
            let mut drv = driver(kind);
            let (r, w) = os_pipe();
            let h = drv.polls().register(r.as_fd()).unwrap();
            let ready = Rc::new(Cell::new(false));
            let rd = ready.clone();
            drv.polls()
                .wait_readable(h, move |_, _, res| {
                    assert!(res.unwrap().is_readable());
                    rd.set(true);
                })
                .unwrap();
            drop(w);
            run_until(&mut drv, Duration::from_secs(5), |_| ready.get());
            let mut buf = [0u8; 4];
            assert_eq!(File::from(r.try_clone().unwrap()).read(&mut buf).unwrap(), 0);
            drv.release_ref(h).unwrap();
            assert_no_leaks(&drv);
        }

        /// An eventfd written by another thread, watched: each write is reported
        /// and read back by the callback.
        fn eventfd_set_by_another_thread(kind: BackendKind) {
            let mut drv = driver(kind);
            // SAFETY: eventfd returns a new descriptor (checked) that we own.
            let efd = unsafe {
                let fd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
                assert!(fd >= 0);
                OwnedFd::from_raw_fd(fd)
            };
            let h = drv.polls().register(efd.as_fd()).unwrap();
            let total = Rc::new(Cell::new(0u64));
            let t = total.clone();
            let mut reader = File::from(efd.try_clone().unwrap());
            drv.polls()
                .watch(h, Interest::READABLE, move |_, _, res| {
                    res.unwrap();
                    let mut v = [0u8; 8];
                    if reader.read_exact(&mut v).is_ok() {
                        t.set(t.get() + u64::from_ne_bytes(v));
                    }
                })
                .unwrap();
            let mut writer = File::from(efd.try_clone().unwrap());
            let thread = std::thread::spawn(move || {
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(20));
                    writer.write_all(&1u64.to_ne_bytes()).unwrap();
                }
            });
            run_until(&mut drv, Duration::from_secs(5), |_| total.get() == 3);
            thread.join().unwrap();
            drv.release_ref(h).unwrap();
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
        }

        /// A periodic timerfd, watched: expirations are counted until the
        /// callback unwatches.
        fn timerfd_watch(kind: BackendKind) {
            let mut drv = driver(kind);
            // SAFETY: timerfd_create returns a new descriptor (checked) that we
            // own; timerfd_settime reads the itimerspec we pass.
            let tfd = unsafe {
                let fd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK);
                assert!(fd >= 0);
                let spec = libc::itimerspec {
                    it_interval: libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 10_000_000,
                    },
                    it_value: libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 10_000_000,
                    },
                };
                assert_eq!(libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()), 0);
                OwnedFd::from_raw_fd(fd)
            };
            let h = drv.polls().register(tfd.as_fd()).unwrap();
            let expirations = Rc::new(Cell::new(0u64));
            let e = expirations.clone();
            let mut reader = File::from(tfd.try_clone().unwrap());
            drv.polls()
                .watch(h, Interest::READABLE, move |drv, h, res| {
                    res.unwrap();
                    let mut v = [0u8; 8];
                    if reader.read_exact(&mut v).is_ok() {
                        e.set(e.get() + u64::from_ne_bytes(v));
                    }
                    if e.get() >= 3 {
                        drv.polls().unwatch(h);
                    }
                })
                .unwrap();
            assert_out_of_waiters(&mut drv);
            assert!(expirations.get() >= 3);
            drv.release_ref(h).unwrap();
            assert_no_leaks(&drv);
        }

        /// Regular files and directories are always "ready" and cannot be
        /// waited on: `NotSupported` on both backends.
        fn regular_files_and_directories_are_not_supported(kind: BackendKind) {
            let mut drv = driver(kind);
            let dir = TempDir::new("foreign");
            let path = dir.path().join("plain");
            std::fs::write(&path, b"x").unwrap();
            let file = File::open(&path).unwrap();
            assert_status(&drv.polls().register(file.as_fd()), Status::NotSupported);
            let d = File::open(dir.path()).unwrap();
            assert_status(&drv.polls().register(d.as_fd()), Status::NotSupported);
            assert_no_leaks(&drv);
        }

        /// Negative and unopened descriptor numbers are `InvalidHandle`.
        fn invalid_descriptors(kind: BackendKind) {
            let mut drv = driver(kind);
            assert_status(&drv.polls().register_raw(-1), Status::InvalidHandle);
            // Far above any descriptor (or handle value) a test process has.
            assert_status(&drv.polls().register_raw(1_000_000), Status::InvalidHandle);
            assert_no_leaks(&drv);
        }

        /// A descriptor the driver itself uses (here a socket it adopted)
        /// is `AlreadyExists` on both Linux backends.
        fn a_descriptor_of_the_driver_is_already_exists(kind: BackendKind) {
            use std::os::fd::AsRawFd;
            let mut drv = driver(kind);
            let (ours, _peer) = tcp_pair();
            let sock = drv.sockets().adopt_stream(ours).unwrap();
            let fd = drv.sockets().socket_ref(sock).unwrap().as_raw_fd();
            assert_status(&drv.polls().register_raw(fd), Status::AlreadyExists);
            drv.release_ref(sock).unwrap();
            assert_no_leaks(&drv);
        }

        /// A descriptor closed while registered (a program error): the wait
        /// does not complete falsely on epoll, nothing hangs, and cancelling
        /// and releasing still work.
        fn closed_while_registered_neither_hangs_nor_fails_the_release(kind: BackendKind) {
            let mut drv = driver(kind);
            let (r, w) = os_pipe();
            let h = drv.polls().register(r.as_fd()).unwrap();
            let fired = Rc::new(RefCell::new(None));
            let f = fired.clone();
            let wait = drv
                .polls()
                .wait_readable(h, move |_, _, res| *f.borrow_mut() = Some(res))
                .unwrap();
            drop(r);
            let r = drv.process_events(Some(Duration::from_millis(50))).unwrap();
            eprintln!(
                "{}: after the close: {r:?}, callback: {:?}",
                kind.name(),
                fired.borrow()
            );
            if fired.borrow().is_none() {
                assert!(drv.polls().cancel(h, wait), "still pending, and cancellable");
            }
            assert!(!drv.release_ref(h).unwrap(), "the release does not fail");
            drop(w);
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
        }

        /// The example's scenario through `rt::AsyncFd`: a pipe's read end.
        fn rt_pipe_of_another_library(kind: BackendKind) {
            let mut ex = util::rt::executor(kind);
            ex.block_on(async {
                let (r, w) = os_pipe();
                set_nonblocking(&r);
                let fd = AsyncFd::new(File::from(r)).unwrap();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    File::from(w).write_all(b"async").unwrap();
                });
                let mut got = Vec::new();
                let mut fd = fd;
                while got.len() < 5 {
                    rt::timeout(Duration::from_secs(5), fd.readable())
                        .await
                        .unwrap()
                        .unwrap();
                    let mut buf = [0u8; 16];
                    match fd.get_mut().read(&mut buf) {
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(got, b"async");
                writer.join().unwrap();
                // A regular file cannot be registered.
                let dir = TempDir::new("foreign-rt");
                std::fs::write(dir.path().join("f"), b"").unwrap();
                let file = File::open(dir.path().join("f")).unwrap();
                assert_status(&AsyncFd::new(file).map(drop), Status::NotSupported);
            });
            util::rt::assert_settled(&mut ex);
            util::rt::assert_no_leaks(&ex);
        }
    }

    /// Windows kernel objects, and the bad inputs of Windows.
    #[cfg(windows)]
    mod windows_only {
        use std::os::windows::io::{AsRawSocket, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};
        use std::sync::Arc;

        use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
        use windows_sys::Win32::System::Threading::{CreateEventW, ResetEvent, SetEvent};

        use super::*;

        crate::contract_tests!(
            event_set_by_another_thread,
            watch_an_auto_reset_event,
            a_manual_reset_event_is_reported_once_per_turn,
            more_than_64_events,
            invalid_handles,
            closing_the_programs_handle_is_harmless,
            cancel_after_the_event_was_set,
            kinds_of_wait_must_match,
            not_a_socket,
            rt_wait_handle,
            a_child_process_handle,
            attached_to_the_programs_message_loop,
        );

        /// A process handle is signalled when the process exits (std's
        /// `Child` lends it; the driver waits on its own duplicate).
        fn a_child_process_handle(kind: BackendKind) {
            use std::os::windows::io::AsHandle;
            let mut drv = driver(kind);
            let mut child = std::process::Command::new("cmd")
                .args(["/C", "exit 3"])
                .spawn()
                .expect("cmd");
            let h = drv.polls().register_object(child.as_handle()).unwrap();
            let exited = Rc::new(Cell::new(false));
            let e = exited.clone();
            drv.polls()
                .wait_signalled(h, move |_, _, r| e.set(r.unwrap().is_signalled()))
                .unwrap();
            run_until(&mut drv, Duration::from_secs(10), |_| exited.get());
            assert_eq!(child.wait().unwrap().code(), Some(3));
            drv.release_ref(h).unwrap();
            assert_no_leaks(&drv);
        }

        /// A driver attached to the program's own `GetMessageW` loop (which
        /// never calls the driver and is not alertable) still runs the
        /// wait's callback when another thread sets the event; the callback
        /// ends the program's loop with `PostQuitMessage`.
        fn attached_to_the_programs_message_loop(kind: BackendKind) {
            use windows_sys::Win32::UI::WindowsAndMessaging::{
                DispatchMessageW, GetMessageW, PostQuitMessage, TranslateMessage, MSG,
            };
            let mut drv = driver(kind);
            let event = Event::new(false);
            let h = drv.polls().register_object(event.borrow()).unwrap();
            let ran = Rc::new(Cell::new(false));
            let r = ran.clone();
            drv.polls()
                .wait_signalled(h, move |_, _, res| {
                    res.unwrap();
                    r.set(true);
                    // SAFETY: posts WM_QUIT to this (the loop's) thread.
                    unsafe { PostQuitMessage(7) };
                })
                .unwrap();
            let attached = drv.attach_to_message_loop(Duration::from_millis(10));
            let e = event.clone();
            let setter = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                e.set();
            });
            // SAFETY: MSG is plain data that GetMessageW fills.
            let mut msg: MSG = unsafe { std::mem::zeroed() };
            // SAFETY: the thread's own message loop, until WM_QUIT.
            while unsafe { GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) } > 0 {
                // SAFETY: dispatching a message this thread took.
                unsafe {
                    TranslateMessage(&msg);
                    DispatchMessageW(&msg);
                }
            }
            setter.join().unwrap();
            assert_eq!(msg.wParam, 7);
            assert!(ran.get(), "the callback ran inside the program's loop");
            let mut drv = attached.detach();
            drv.release_ref(h).unwrap();
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
        }

        /// An event handle that any thread may set.
        #[derive(Clone)]
        struct Event(Arc<OwnedHandle>);

        impl Event {
            fn new(manual_reset: bool) -> Event {
                // SAFETY: an unnamed event; the handle (checked) is ours.
                let h = unsafe { CreateEventW(std::ptr::null(), i32::from(manual_reset), 0, std::ptr::null()) };
                assert!(!h.is_null());
                // SAFETY: as above.
                Event(Arc::new(unsafe { OwnedHandle::from_raw_handle(h as RawHandle) }))
            }
            fn raw(&self) -> HANDLE {
                std::os::windows::io::AsRawHandle::as_raw_handle(&*self.0) as HANDLE
            }
            fn set(&self) {
                // SAFETY: sets an event we hold a handle to.
                assert_ne!(unsafe { SetEvent(self.raw()) }, 0);
            }
            fn reset(&self) {
                // SAFETY: resets an event we hold a handle to.
                assert_ne!(unsafe { ResetEvent(self.raw()) }, 0);
            }
            fn borrow(&self) -> BorrowedHandle<'_> {
                std::os::windows::io::AsHandle::as_handle(&*self.0)
            }
        }

        /// The example's scenario: another thread sets an auto-reset event; the
        /// one-shot wait's callback runs on the loop thread, once.
        fn event_set_by_another_thread(kind: BackendKind) {
            let mut drv = driver(kind);
            let event = Event::new(false);
            let h = drv.polls().register_object(event.borrow()).unwrap();
            let seen: Seen = Rc::default();
            let s = seen.clone();
            let loop_thread = std::thread::current().id();
            drv.polls()
                .wait_signalled(h, move |_, _, r| {
                    assert_eq!(std::thread::current().id(), loop_thread);
                    s.borrow_mut().push(r);
                })
                .unwrap();
            assert_eq!(drv.waiter_count(), 1);
            assert_eq!(
                drv.process_events(Some(Duration::from_millis(50))).unwrap(),
                ExitReason::Timeout
            );
            let e = event.clone();
            let setter = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                e.set();
            });
            run_until(&mut drv, Duration::from_secs(5), |_| !seen.borrow().is_empty());
            setter.join().unwrap();
            assert!(seen.borrow()[0].as_ref().unwrap().is_signalled());
            assert_out_of_waiters(&mut drv);
            assert_eq!(seen.borrow().len(), 1);
            drv.release_ref(h).unwrap();
            assert_no_leaks(&drv);
        }

        /// A watch on an auto-reset event reports each set.
        fn watch_an_auto_reset_event(kind: BackendKind) {
            let mut drv = driver(kind);
            let event = Event::new(false);
            let h = drv.polls().register_object(event.borrow()).unwrap();
            let calls = Rc::new(Cell::new(0));
            let c = calls.clone();
            drv.polls()
                .watch_signalled(h, move |drv, h, r| {
                    assert!(r.unwrap().is_signalled());
                    c.set(c.get() + 1);
                    if c.get() == 3 {
                        drv.polls().unwatch(h);
                    }
                })
                .unwrap();
            for n in 1..=3 {
                event.set();
                run_until(&mut drv, Duration::from_secs(5), |_| calls.get() == n);
            }
            assert_out_of_waiters(&mut drv);
            drv.release_ref(h).unwrap();
            assert_no_leaks(&drv);
        }

        /// A manual-reset event stays signalled: the watch reports it once per
        /// loop turn (no flood of thread-pool callbacks), until it is reset.
        fn a_manual_reset_event_is_reported_once_per_turn(kind: BackendKind) {
            let mut drv = driver(kind);
            let event = Event::new(true);
            let h = drv.polls().register_object(event.borrow()).unwrap();
            let calls = Rc::new(Cell::new(0));
            let c = calls.clone();
            drv.polls()
                .watch_signalled(h, move |_, _, _| c.set(c.get() + 1))
                .unwrap();
            event.set();
            run_until(&mut drv, Duration::from_secs(5), |_| calls.get() >= 3);
            let mut turns = 0;
            let before = calls.get();
            for _ in 0..5 {
                if drv.process_events(Some(Duration::from_secs(1))).unwrap() == ExitReason::Idle {
                    turns += 1;
                }
            }
            assert!(calls.get() - before <= turns, "at most one report per turn");
            event.reset();
            drv.polls().unwatch(h);
            drv.release_ref(h).unwrap();
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
        }

        /// 100 events, more than a wait function takes (64), all waited for at
        /// once and set by another thread.
        fn more_than_64_events(kind: BackendKind) {
            let mut drv = driver(kind);
            let events: Vec<Event> = (0..100).map(|_| Event::new(false)).collect();
            let done = Rc::new(Cell::new(0));
            let mut handles = Vec::new();
            for e in &events {
                let h = drv.polls().register_object(e.borrow()).unwrap();
                let d = done.clone();
                drv.polls()
                    .wait_signalled(h, move |_, _, r| {
                        r.unwrap();
                        d.set(d.get() + 1);
                    })
                    .unwrap();
                handles.push(h);
            }
            assert_eq!(drv.waiter_count(), 100);
            let setter_events = events.clone();
            let setter = std::thread::spawn(move || {
                for e in setter_events.iter().rev() {
                    e.set();
                }
            });
            run_until(&mut drv, Duration::from_secs(10), |_| done.get() == 100);
            setter.join().unwrap();
            for h in handles {
                drv.release_ref(h).unwrap();
            }
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
        }

        /// Null, `INVALID_HANDLE_VALUE` and values that name no handle are
        /// `InvalidHandle`.
        fn invalid_handles(kind: BackendKind) {
            let mut drv = driver(kind);
            for raw in [std::ptr::null_mut(), INVALID_HANDLE_VALUE, 0x00ff_fff0 as HANDLE] {
                assert_status(
                    &drv.polls().register_object_raw(raw as RawHandle),
                    Status::InvalidHandle,
                );
            }
            assert_no_leaks(&drv);
        }

        /// The driver waits on its own duplicate: closing the program's handle
        /// while registered neither fires the wait nor breaks the release.
        fn closing_the_programs_handle_is_harmless(kind: BackendKind) {
            let mut drv = driver(kind);
            let event = Event::new(false);
            let h = drv.polls().register_object(event.borrow()).unwrap();
            let fired = Rc::new(Cell::new(false));
            let f = fired.clone();
            drv.polls().wait_signalled(h, move |_, _, _| f.set(true)).unwrap();
            drop(event);
            assert_eq!(
                drv.process_events(Some(Duration::from_millis(50))).unwrap(),
                ExitReason::Timeout
            );
            assert!(!fired.get());
            assert!(!drv.release_ref(h).unwrap());
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
        }

        /// A cancel right after the event was set: the callback never runs,
        /// whether the thread-pool callback had already come or not.
        fn cancel_after_the_event_was_set(kind: BackendKind) {
            let mut drv = driver(kind);
            let event = Event::new(false);
            let h = drv.polls().register_object(event.borrow()).unwrap();
            for round in 0..20 {
                let w = drv
                    .polls()
                    .wait_signalled(h, move |_, _, _| panic!("cancelled wait ran (round {round})"))
                    .unwrap();
                event.set();
                if round % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let _ = drv.polls().cancel(h, w);
                drv.process_events(Some(Duration::from_millis(5))).unwrap();
                event.reset();
            }
            drv.release_ref(h).unwrap();
            assert_out_of_waiters(&mut drv);
            assert_no_leaks(&drv);
        }

        /// `wait_signalled` is for objects and `wait` for sockets; the other
        /// way round is `InvalidArgument`.
        fn kinds_of_wait_must_match(kind: BackendKind) {
            let mut drv = driver(kind);
            let event = Event::new(false);
            let obj = drv.polls().register_object(event.borrow()).unwrap();
            let (ours, _peer) = tcp_pair();
            let sock = register(&mut drv, &ours).unwrap();
            assert_status(&drv.polls().wait_readable(obj, |_, _, _| {}), Status::InvalidArgument);
            assert_status(
                &drv.polls().watch(obj, Interest::BOTH, |_, _, _| {}),
                Status::InvalidArgument,
            );
            assert_status(&drv.polls().wait_signalled(sock, |_, _, _| {}), Status::InvalidArgument);
            assert_status(
                &drv.polls().watch_signalled(sock, |_, _, _| {}),
                Status::InvalidArgument,
            );
            drv.release_ref(obj).unwrap();
            drv.release_ref(sock).unwrap();
            assert_no_leaks(&drv);
            let _ = ours.as_raw_socket();
        }

        /// A value that is no socket is `InvalidHandle`.
        fn not_a_socket(kind: BackendKind) {
            let mut drv = driver(kind);
            assert_status(&drv.polls().register_raw(0x00ff_fff4), Status::InvalidHandle);
            assert_no_leaks(&drv);
        }

        /// `rt::wait_handle` completes when another thread sets the event.
        fn rt_wait_handle(kind: BackendKind) {
            let mut ex = util::rt::executor(kind);
            ex.block_on(async {
                let event = Event::new(false);
                let e = event.clone();
                let setter = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    e.set();
                });
                rt::timeout(Duration::from_secs(5), rt::wait_handle(event.borrow()))
                    .await
                    .unwrap()
                    .unwrap();
                setter.join().unwrap();
                // A dropped wait is withdrawn.
                let mut wait = Box::pin(rt::wait_handle(event.borrow()));
                assert!(util::rt::poll_once(&mut wait).await.is_pending());
                drop(wait);
                assert_eq!(util::rt::pending_ops(), 0);
            });
            util::rt::assert_settled(&mut ex);
            util::rt::assert_no_leaks(&ex);
        }
    }
}
