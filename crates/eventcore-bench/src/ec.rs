//! The scenarios on eventcore's callback API, one driver per thread.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, DatagramOptions, Driver, ExitReason, IoMode, ListenOptions, SocketAddress, StreamSocket};

use crate::harness::*;

/// A driver configuration the scenarios run on: a backend and its tuning
/// (the io_uring options are measured as systems of their own).
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub kind: BackendKind,
    /// io_uring: a submission-queue polling thread.
    pub sqpoll: bool,
    /// io_uring: multishot accepts.
    pub multishot_accept: bool,
    /// io_uring: multishot receives into [`RECV_BUFFERS`].
    pub multishot_recv: bool,
}

/// The provided buffers of a driver with multishot receives (the
/// `eventcore-io_uring-recv` systems): count and size. Big enough that a
/// `pump` read takes a buffer's worth per completion, and enough of them
/// for every connection of the scenarios to hold one.
pub const RECV_BUFFERS: (u16, u32) = (256, 16 * 1024);

impl From<BackendKind> for Setup {
    fn from(kind: BackendKind) -> Setup {
        Setup {
            kind,
            sqpoll: false,
            multishot_accept: false,
            multishot_recv: false,
        }
    }
}

/// A driver of `setup`.
pub fn driver(setup: Setup) -> Result<Driver> {
    let mut b = Driver::builder().backend(setup.kind);
    if setup.sqpoll {
        b = b.io_uring_sqpoll(Duration::from_millis(10));
    }
    if setup.multishot_accept {
        b = b.io_uring_multishot_accept(true);
    }
    if setup.multishot_recv {
        b = b.io_uring_multishot_recv(RECV_BUFFERS.0, RECV_BUFFERS.1);
    }
    b.build().map_err(err)
}

/// Runs the loop until nothing is left to wait for (or an exit request).
fn run(drv: &mut Driver) -> Result<()> {
    loop {
        match drv.process_events(None).map_err(err)? {
            ExitReason::OutOfWaiters | ExitReason::Exited => return Ok(()),
            _ => {}
        }
    }
}

fn listen_options() -> ListenOptions {
    ListenOptions {
        backlog: 1024,
        ..ListenOptions::default()
    }
}

// ------------------------------------------------------------------ servers

/// What the server does with each connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// Echo everything until end of stream.
    Echo,
    /// Echo one read, then close (`pound`).
    EchoOnceClose,
    /// Read and count bytes until end of stream (`pump`).
    Sink,
}

struct Server {
    addr: SocketAddr,
    stop: StopFlag,
    thread: JoinHandle<Result<()>>,
}

impl Server {
    fn stop(self) -> Result<()> {
        self.stop.stop(self.addr);
        self.thread.join().map_err(|_| "server thread panicked")?
    }
}

/// Starts a server thread with its own driver.
fn server(kind: Setup, serve: Serve, buf: usize, sunk: Arc<AtomicU64>) -> Result<Server> {
    let stop = StopFlag::default();
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || -> Result<()> {
        let mut drv = driver(kind)?;
        let listener = drv.sockets().listen(
            "127.0.0.1:0".parse::<SocketAddr>().expect("literal"),
            listen_options(),
            move |drv, listener, accepted| {
                if flag.is_set() {
                    if let Ok((conn, _)) = accepted {
                        let _ = drv.release_ref(conn);
                    }
                    let _ = drv.release_ref(listener);
                    return;
                }
                let Ok((conn, _)) = accepted else { return };
                let _ = drv.sockets().set_no_delay(conn, true);
                match serve {
                    Serve::Sink => sink(drv, conn, Vec::with_capacity(buf), sunk.clone()),
                    _ => echo(drv, conn, Vec::with_capacity(buf), serve),
                }
            },
        );
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(err(e)));
                return Ok(());
            }
        };
        let addr = drv.sockets().local_address(listener).map_err(err)?;
        let _ = tx.send(addr.as_inet().ok_or_else(|| "not an IP listener".to_string()));
        run(&mut drv)
    });
    let addr = rx.recv().map_err(err)??;
    Ok(Server { addr, stop, thread })
}

fn echo(drv: &mut Driver, conn: StreamSocket, buf: Vec<u8>, serve: Serve) {
    drv.sockets().read(conn, buf, IoMode::Once, move |drv, conn, res, buf| {
        let Ok(n) = res else {
            let _ = drv.release_ref(conn);
            return;
        };
        debug_assert_eq!(buf.len(), n);
        drv.sockets()
            .write(conn, buf, IoMode::All, move |drv, conn, res, mut buf| {
                if res.is_err() || serve == Serve::EchoOnceClose {
                    let _ = drv.release_ref(conn);
                    return;
                }
                buf.clear();
                echo(drv, conn, buf, serve);
            });
    });
}

fn sink(drv: &mut Driver, conn: StreamSocket, buf: Vec<u8>, sunk: Arc<AtomicU64>) {
    drv.sockets()
        .read(conn, buf, IoMode::Once, move |drv, conn, res, mut buf| match res {
            Ok(n) => {
                sunk.fetch_add(n as u64, Ordering::Relaxed);
                buf.clear();
                sink(drv, conn, buf, sunk);
            }
            Err(_) => {
                let _ = drv.release_ref(conn);
            }
        });
}

// ------------------------------------------------------------------ clients

/// State shared by a client's callbacks.
struct Client {
    deadline: Duration,
    window: Cell<Option<Window>>,
    count: Cell<u64>,
    done: Cell<bool>,
    result: Cell<Option<Measured>>,
    failure: RefCell<Option<String>>,
}

impl Client {
    fn new(deadline: Duration) -> Rc<Client> {
        Rc::new(Client {
            deadline,
            window: Cell::new(None),
            count: Cell::new(0),
            done: Cell::new(false),
            result: Cell::new(None),
            failure: RefCell::new(None),
        })
    }

    fn open(&self) {
        self.window.set(Some(Window::open()));
    }

    /// Counts one operation; closes the window once the time is up.
    /// Returns whether to go on.
    fn tick(&self) -> bool {
        if self.done.get() {
            return false;
        }
        let Some(w) = self.window.get() else {
            // Before the window opens (other connections still connecting).
            return true;
        };
        self.count.set(self.count.get() + 1);
        if w.started().elapsed() >= self.deadline {
            self.result.set(Some(w.close(self.count.get() as f64)));
            self.done.set(true);
            return false;
        }
        true
    }

    fn fail(&self, why: String) {
        self.failure.borrow_mut().get_or_insert(why);
        self.done.set(true);
    }

    fn outcome(&self) -> Result<Measured> {
        if let Some(f) = self.failure.borrow().clone() {
            return Err(f);
        }
        self.result.get().ok_or_else(|| "no result".into())
    }
}

fn ping_round(drv: &mut Driver, conn: StreamSocket, st: Rc<Client>, msg: Vec<u8>, reply: Vec<u8>) {
    drv.sockets().write(conn, msg, IoMode::All, move |drv, conn, res, msg| {
        if let Err(e) = res {
            st.fail(err(e));
            let _ = drv.release_ref(conn);
            return;
        }
        drv.sockets()
            .read(conn, reply, IoMode::All, move |drv, conn, res, mut reply| {
                if let Err(e) = res {
                    st.fail(err(e));
                    let _ = drv.release_ref(conn);
                    return;
                }
                reply.clear();
                if st.tick() {
                    ping_round(drv, conn, st, msg, reply);
                } else {
                    let _ = drv.release_ref(conn);
                }
            });
    });
}

/// `conns` connections doing `size`-byte round trips until the time is up.
fn ping_pong_run(kind: Setup, ctx: &Ctx, conns: usize, size: usize) -> Result<Measured> {
    let server = server(kind, Serve::Echo, size.max(64), Arc::default())?;
    let mut drv = driver(kind)?;
    let st = Client::new(ctx.duration);
    let connected = Rc::new(Cell::new(0usize));
    for _ in 0..conns {
        let st = st.clone();
        let connected = connected.clone();
        drv.sockets()
            .connect(server.addr, None, move |drv, conn, res| {
                if let Err(e) = res {
                    st.fail(err(e));
                    let _ = drv.release_ref(conn);
                    return;
                }
                let _ = drv.sockets().set_no_delay(conn, true);
                connected.set(connected.get() + 1);
                if connected.get() == conns {
                    st.open();
                }
                let msg = if size == PING.len() {
                    PING.to_vec()
                } else {
                    vec![b'x'; size]
                };
                ping_round(drv, conn, st, msg, Vec::with_capacity(size));
            })
            .map_err(err)?;
    }
    run(&mut drv)?;
    server.stop()?;
    st.outcome()
}

/// `ping_pong`: one connection, "PING\n" round trips.
pub fn ping_pong(kind: Setup, name: &'static str) -> RunFn {
    Box::new(move |ctx| {
        let m = ping_pong_run(kind, ctx, 1, PING.len())?;
        Ok(Sample::rate(name, "rt/s", m, 1.0))
    })
}

/// `ping_pong_many`: 100 connections, 1 KiB round trips.
pub fn ping_pong_many(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let m = ping_pong_run(kind, ctx, MANY, MANY_SIZE)?;
        Ok(Sample::rate("ping_pong_many", "rt/s", m, 1.0))
    })
}

/// `pump`: one connection, 8 KiB writes, 64 KiB reads.
pub fn pump(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let sunk = Arc::new(AtomicU64::new(0));
        let server = server(kind, Serve::Sink, PUMP_READ, sunk.clone())?;
        let mut drv = driver(kind)?;
        let result: Rc<Cell<Option<Result<Measured>>>> = Rc::default();
        let deadline = ctx.duration;
        let r = result.clone();
        drv.sockets()
            .connect(server.addr, None, move |drv, conn, res| {
                if let Err(e) = res {
                    r.set(Some(Err(err(e))));
                    let _ = drv.release_ref(conn);
                    return;
                }
                let _ = drv.sockets().set_no_delay(conn, true);
                let w = Window::open();
                let start = sunk.load(Ordering::Relaxed);
                pump_write(drv, conn, vec![b'x'; PUMP_WRITE], w, deadline, sunk, start, r);
            })
            .map_err(err)?;
        run(&mut drv)?;
        server.stop()?;
        Ok(pump_sample(result.take().ok_or("no result")??))
    })
}

#[allow(clippy::too_many_arguments)]
fn pump_write(
    drv: &mut Driver,
    conn: StreamSocket,
    buf: Vec<u8>,
    w: Window,
    deadline: Duration,
    sunk: Arc<AtomicU64>,
    start: u64,
    r: Rc<Cell<Option<Result<Measured>>>>,
) {
    drv.sockets().write(conn, buf, IoMode::All, move |drv, conn, res, buf| {
        if let Err(e) = res {
            r.set(Some(Err(err(e))));
            let _ = drv.release_ref(conn);
            return;
        }
        if w.started().elapsed() >= deadline {
            let bytes = sunk.load(Ordering::Relaxed) - start;
            r.set(Some(Ok(w.close(bytes as f64))));
            let _ = drv.release_ref(conn);
            return;
        }
        pump_write(drv, conn, buf, w, deadline, sunk, start, r);
    });
}

/// `pound`: 100 concurrent connect / write / read / close.
pub fn pound(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let server = server(kind, Serve::EchoOnceClose, 64, Arc::default())?;
        let mut drv = driver(kind)?;
        let st = Client::new(ctx.pound_duration);
        st.open();
        for _ in 0..MANY {
            pound_one(&mut drv, server.addr, st.clone());
        }
        run(&mut drv)?;
        server.stop()?;
        let m = st.outcome()?;
        Ok(Sample::rate("pound", "conn/s", m, 1.0))
    })
}

fn pound_one(drv: &mut Driver, addr: SocketAddr, st: Rc<Client>) {
    let st2 = st.clone();
    let started = drv.sockets().connect(addr, None, move |drv, conn, res| {
        if let Err(e) = res {
            st.fail(err(e));
            let _ = drv.release_ref(conn);
            return;
        }
        drv.sockets()
            .write(conn, PING.to_vec(), IoMode::All, move |drv, conn, res, mut buf| {
                if let Err(e) = res {
                    st.fail(err(e));
                    let _ = drv.release_ref(conn);
                    return;
                }
                buf.clear();
                drv.sockets().read(conn, buf, IoMode::All, move |drv, conn, res, _| {
                    let _ = drv.release_ref(conn);
                    if let Err(e) = res {
                        return st.fail(err(e));
                    }
                    if st.tick() {
                        pound_one(drv, addr, st);
                    }
                });
            });
    });
    if let Err(e) = started {
        st2.fail(err(e));
    }
}

/// `udp_pummel`: one sender, one receiver, in one loop.
pub fn udp_pummel(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let mut drv = driver(kind)?;
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        let rx = drv
            .sockets()
            .create_datagram(any, DatagramOptions::default())
            .map_err(err)?;
        let to = drv.sockets().local_address(rx).map_err(err)?;
        let tx = drv
            .sockets()
            .create_datagram(
                any,
                DatagramOptions {
                    target: Some(to),
                    ..DatagramOptions::default()
                },
            )
            .map_err(err)?;
        let st = Client::new(ctx.duration);
        st.open();
        udp_send(&mut drv, tx, rx, DATAGRAM.to_vec(), st.clone());
        udp_recv(&mut drv, rx, Vec::with_capacity(1500), st.clone());
        run(&mut drv)?;
        let m = st.outcome()?;
        Ok(Sample::rate("udp_pummel", "dgram/s", m, 1.0))
    })
}

fn udp_send(
    drv: &mut Driver,
    tx: eventcore::DatagramSocket,
    rx: eventcore::DatagramSocket,
    buf: Vec<u8>,
    st: Rc<Client>,
) {
    drv.sockets()
        .send(tx, buf, None, IoMode::Once, move |drv, tx, res, buf| {
            if let Err(e) = res {
                // The receiver would wait for ever: end it too.
                st.fail(err(e));
                let _ = drv.release_ref(rx);
            }
            if st.done.get() {
                let _ = drv.release_ref(tx);
                return;
            }
            udp_send(drv, tx, rx, buf, st);
        });
}

fn udp_recv(drv: &mut Driver, rx: eventcore::DatagramSocket, buf: Vec<u8>, st: Rc<Client>) {
    drv.sockets()
        .receive(rx, buf, IoMode::Once, move |drv, rx, res, mut buf| {
            if let Err(e) = res {
                st.fail(err(e));
            }
            buf.clear();
            if st.tick() {
                udp_recv(drv, rx, buf, st);
            } else {
                let _ = drv.release_ref(rx);
            }
        });
}

/// `loop_count`: empty loop iterations (a zero-timeout `process_events`
/// with one armed timer keeping the loop alive).
pub fn loop_count(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let mut drv = driver(kind)?;
        let t = drv.timers().create();
        drv.timers().set(t, ctx.duration * 10, Duration::ZERO).map_err(err)?;
        let w = Window::open();
        let mut n: u64 = 0;
        loop {
            drv.process_events(Some(Duration::ZERO)).map_err(err)?;
            n += 1;
            if n.is_multiple_of(1024) && w.started().elapsed() >= ctx.duration {
                break;
            }
        }
        let m = w.close(n as f64);
        drv.release_ref(t).map_err(err)?;
        Ok(Sample::rate("loop_count", "iter/s", m, 1.0))
    })
}

const RUNNING: u8 = 0;
const STOP: u8 = 1;
const STOPPED: u8 = 2;

/// `async_pummel`: another thread triggers an event through a `Remote` in a
/// tight loop until the loop has run the wanted number of callbacks.
pub fn async_pummel(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let mut drv = driver(kind)?;
        let ev = drv.events().create();
        let remote = drv.remote();
        let state = Arc::new(AtomicU8::new(RUNNING));
        let s = state.clone();
        let pummel = std::thread::spawn(move || {
            while s.load(Ordering::Acquire) == RUNNING {
                if remote.trigger(ev, false).is_err() {
                    break;
                }
            }
            s.store(STOPPED, Ordering::Release);
        });
        let count = Rc::new(Cell::new(0u64));
        let w = Window::open();
        pummel_wait(&mut drv, ev, count.clone(), ctx.async_callbacks, state);
        run(&mut drv)?;
        let m = w.close(count.get() as f64);
        pummel.join().map_err(|_| "pummel thread panicked")?;
        Ok(Sample::rate("async_pummel", "cb/s", m, 1.0))
    })
}

fn pummel_wait(drv: &mut Driver, ev: eventcore::EventId, count: Rc<Cell<u64>>, want: u64, state: Arc<AtomicU8>) {
    let _ = drv.events().wait(ev, move |drv, ev| {
        count.set(count.get() + 1);
        if count.get() == want {
            state.store(STOP, Ordering::Release);
            while state.load(Ordering::Acquire) != STOPPED {
                std::thread::yield_now();
            }
            let _ = drv.release_ref(ev);
            return;
        }
        pummel_wait(drv, ev, count, want, state);
    });
}

/// `million_timers`: create and arm every timer, then run until all fired.
/// Each callback captures one pointer (the shared counters), as a C program
/// would keep them behind the loop's `data`; the tables are reserved up front
/// as libuv's benchmark allocates its handle array; and every deadline is
/// `base + timeout` from one clock reading (`set_at`), as libuv's timeouts
/// count from its loop time, read once before the loop.
pub fn million_timers(kind: Setup) -> RunFn {
    struct Count {
        n: usize,
        fired: Cell<usize>,
        last: Cell<Option<Instant>>,
    }
    Box::new(move |ctx| {
        let mut drv = driver(kind)?;
        let n = ctx.timers;
        let count = Rc::new(Count {
            n,
            fired: Cell::new(0),
            last: Cell::new(None),
        });
        let rss0 = reset_peak_rss();
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let mut last_deadline = t0;
        drv.timers().reserve(n);
        let base = Instant::now();
        for i in 0..n {
            let t = drv.timers().create();
            let deadline = base + timer_timeout(i, n);
            last_deadline = deadline;
            drv.timers().set_at(t, deadline, Duration::ZERO).map_err(err)?;
            let count = count.clone();
            drv.timers()
                .wait(t, move |drv, t, _| {
                    count.fired.set(count.fired.get() + 1);
                    if count.fired.get() == count.n {
                        count.last.set(Some(Instant::now()));
                    }
                    let _ = drv.release_ref(t);
                })
                .map_err(err)?;
        }
        let t1 = Instant::now();
        run(&mut drv)?;
        let end = count.last.get().ok_or("not every timer fired")?;
        let cpu = cpu_time() - cpu0;
        let peak = peak_rss_bytes().saturating_sub(rss0);
        Ok(timer_sample(TimerRun {
            init: t1 - t0,
            dispatch: end - t1,
            late_ms: late_ms(end, last_deadline),
            cpu,
            peak_rss: peak,
            timers: n,
        }))
    })
}

/// `file_read`: the whole file in 64 KiB positional reads, four in flight
/// (one file handle each: a handle has one read slot).
pub fn file_read(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let mut drv = driver(kind)?;
        let file = std::fs::File::open(&ctx.file_path).map_err(err)?;
        let size = ctx.file_size;
        let next = Rc::new(Cell::new(0u64));
        let read = Rc::new(Cell::new(0u64));
        let failure: Rc<RefCell<Option<String>>> = Rc::default();
        let w = Window::open();
        for _ in 0..FILE_IN_FLIGHT {
            let h = drv.files().adopt(file.try_clone().map_err(err)?).map_err(err)?;
            file_next(
                &mut drv,
                h,
                Vec::with_capacity(FILE_CHUNK),
                size,
                next.clone(),
                read.clone(),
                failure.clone(),
            );
        }
        run(&mut drv)?;
        let m = w.close(read.get() as f64);
        if let Some(f) = failure.take() {
            return Err(f);
        }
        if read.get() != size {
            return Err(format!("read {} of {size} bytes", read.get()));
        }
        Ok(file_sample(m))
    })
}

fn file_next(
    drv: &mut Driver,
    h: eventcore::FileHandle,
    buf: Vec<u8>,
    size: u64,
    next: Rc<Cell<u64>>,
    read: Rc<Cell<u64>>,
    failure: Rc<RefCell<Option<String>>>,
) {
    let offset = next.get();
    if offset >= size {
        let _ = drv.release_ref(h);
        return;
    }
    next.set(offset + FILE_CHUNK as u64);
    drv.files()
        .read(h, offset, buf, IoMode::Once, move |drv, h, res, mut buf| {
            buf.clear();
            match res {
                Ok(n) => read.set(read.get() + n as u64),
                Err(e) => {
                    failure.borrow_mut().get_or_insert(err(e));
                    let _ = drv.release_ref(h);
                    return;
                }
            }
            file_next(drv, h, buf, size, next, read, failure);
        });
}

/// `dns`: lookups of "localhost", ten in flight.
pub fn dns(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let mut drv = driver(kind)?;
        let left = Rc::new(Cell::new(ctx.dns_lookups));
        let done = Rc::new(Cell::new(0usize));
        let failure: Rc<RefCell<Option<String>>> = Rc::default();
        let w = Window::open();
        for _ in 0..DNS_IN_FLIGHT.min(ctx.dns_lookups) {
            lookup(&mut drv, left.clone(), done.clone(), failure.clone());
        }
        run(&mut drv)?;
        let m = w.close(done.get() as f64);
        if let Some(f) = failure.take() {
            return Err(f);
        }
        Ok(Sample::rate("dns", "lookups/s", m, 1.0))
    })
}

fn lookup(drv: &mut Driver, left: Rc<Cell<usize>>, done: Rc<Cell<usize>>, failure: Rc<RefCell<Option<String>>>) {
    if left.get() == 0 {
        return;
    }
    left.set(left.get() - 1);
    drv.dns().lookup("localhost", move |drv, _, res| {
        match res {
            Ok(_) => done.set(done.get() + 1),
            Err(e) => {
                failure.borrow_mut().get_or_insert(err(e));
                return;
            }
        }
        lookup(drv, left, done, failure);
    });
}

/// `idle_connections`: RSS growth per accepted connection that waits for
/// data (a zero-length read: no buffer).
pub fn idle_connections(kind: Setup) -> RunFn {
    Box::new(move |ctx| {
        let n = ctx.idle_connections;
        let mut drv = driver(kind)?;
        let accepted = Rc::new(Cell::new(0usize));
        let a = accepted.clone();
        let conns: Rc<RefCell<Vec<StreamSocket>>> = Rc::new(RefCell::new(Vec::with_capacity(n)));
        let c = conns.clone();
        let listener = drv
            .sockets()
            .listen(
                "127.0.0.1:0".parse::<SocketAddr>().expect("literal"),
                listen_options(),
                move |drv, _, res| {
                    let Ok((conn, _)) = res else { return };
                    a.set(a.get() + 1);
                    c.borrow_mut().push(conn);
                    // The smallest useful callback: one pointer to the
                    // connection's state (here the shared counter).
                    let state = a.clone();
                    drv.sockets()
                        .read(conn, Vec::new(), IoMode::Once, move |_, _, _, _: Vec<u8>| {
                            drop(state);
                        });
                },
            )
            .map_err(err)?;
        let addr = match drv.sockets().local_address(listener).map_err(err)? {
            SocketAddress::Inet(a) => a,
            _ => return Err("not an IP listener".into()),
        };
        let release = Arc::new(AtomicBool::new(false));
        // The baseline: the listener is up, no connection exists yet.
        let mark = MemMark::now();
        let clients = idle_clients(addr, n, release.clone());
        while accepted.get() < n {
            drv.process_events(Some(Duration::from_secs(5))).map_err(err)?;
            if clients.is_finished() && accepted.get() < n {
                break;
            }
        }
        let sample = mark.idle_sample(n);
        release.store(true, Ordering::Release);
        clients.join().map_err(|_| "client thread panicked")??;
        for conn in conns.borrow_mut().drain(..) {
            let _ = drv.release_ref(conn);
        }
        drv.release_ref(listener).map_err(err)?;
        if accepted.get() < n {
            return Err(format!("accepted {} of {n}", accepted.get()));
        }
        Ok(sample)
    })
}
