//! The scenarios on tokio's current-thread runtime, one runtime per thread,
//! written the way tokio programs usually are (a task per connection).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Runtime;

use crate::harness::*;

fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    Echo,
    EchoOnceClose,
    Sink,
}

struct Server {
    addr: SocketAddr,
    stop: StopFlag,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Server {
    fn stop(self) -> Result<()> {
        self.stop.stop(self.addr);
        self.thread.join().map_err(|_| "server thread panicked")?
    }
}

fn server(serve: Serve, buf: usize, sunk: Arc<AtomicU64>) -> Result<Server> {
    let stop = StopFlag::default();
    let flag = stop.clone();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || -> Result<()> {
        let rt = runtime()?;
        rt.block_on(async move {
            let listener = match TcpListener::bind(loopback()).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(err(e)));
                    return Ok(());
                }
            };
            let _ = tx.send(listener.local_addr().map_err(err));
            loop {
                let (mut s, _) = listener.accept().await.map_err(err)?;
                if flag.is_set() {
                    return Ok(());
                }
                let _ = s.set_nodelay(true);
                let sunk = sunk.clone();
                tokio::spawn(async move {
                    let mut b = vec![0u8; buf];
                    loop {
                        let n = match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        match serve {
                            Serve::Sink => {
                                sunk.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Serve::Echo => {
                                if s.write_all(&b[..n]).await.is_err() {
                                    return;
                                }
                            }
                            Serve::EchoOnceClose => {
                                let _ = s.write_all(&b[..n]).await;
                                return;
                            }
                        }
                    }
                });
            }
        })
    });
    let addr = rx.recv().map_err(err)??;
    Ok(Server { addr, stop, thread })
}

/// Counting shared by a client's tasks.
struct Shared {
    deadline: Duration,
    window: Mutex<Option<Window>>,
    count: AtomicU64,
    done: AtomicBool,
    result: Mutex<Option<Measured>>,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn new(deadline: Duration) -> Arc<Shared> {
        Arc::new(Shared {
            deadline,
            window: Mutex::new(None),
            count: AtomicU64::new(0),
            done: AtomicBool::new(false),
            result: Mutex::new(None),
            failure: Mutex::new(None),
        })
    }

    fn open(&self) {
        *self.window.lock().expect("lock") = Some(Window::open());
    }

    fn tick(&self) -> bool {
        if self.done.load(Ordering::Relaxed) {
            return false;
        }
        let Some(w) = *self.window.lock().expect("lock") else {
            return true;
        };
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if w.started().elapsed() >= self.deadline {
            if !self.done.swap(true, Ordering::Relaxed) {
                *self.result.lock().expect("lock") = Some(w.close(n as f64));
            }
            return false;
        }
        true
    }

    fn fail(&self, why: String) {
        self.failure.lock().expect("lock").get_or_insert(why);
        self.done.store(true, Ordering::Relaxed);
    }

    fn outcome(&self) -> Result<Measured> {
        if let Some(f) = self.failure.lock().expect("lock").clone() {
            return Err(f);
        }
        self.result.lock().expect("lock").ok_or_else(|| "no result".into())
    }
}

fn ping_pong_run(ctx: &Ctx, conns: usize, size: usize) -> Result<Measured> {
    let server = server(Serve::Echo, size.max(64), Arc::default())?;
    let rt = runtime()?;
    let shared = Shared::new(ctx.duration);
    let connected = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (shared, connected) = (shared.clone(), connected.clone());
            let addr = server.addr;
            tasks.push(tokio::spawn(async move {
                let mut s = match TcpStream::connect(addr).await {
                    Ok(s) => s,
                    Err(e) => return shared.fail(err(e)),
                };
                let _ = s.set_nodelay(true);
                if connected.fetch_add(1, Ordering::Relaxed) + 1 == conns {
                    shared.open();
                }
                let msg = if size == PING.len() {
                    PING.to_vec()
                } else {
                    vec![b'x'; size]
                };
                let mut reply = vec![0u8; size];
                loop {
                    if let Err(e) = s.write_all(&msg).await {
                        return shared.fail(err(e));
                    }
                    if let Err(e) = s.read_exact(&mut reply).await {
                        return shared.fail(err(e));
                    }
                    if !shared.tick() {
                        return;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    drop(rt);
    server.stop()?;
    shared.outcome()
}

/// `ping_pong` (and `ping_pong_pinned` under the name given).
pub fn ping_pong(name: &'static str) -> RunFn {
    Box::new(move |ctx| {
        let m = ping_pong_run(ctx, 1, PING.len())?;
        Ok(Sample::rate(name, "rt/s", m, 1.0))
    })
}

/// `ping_pong_many`.
pub fn ping_pong_many() -> RunFn {
    Box::new(|ctx| {
        let m = ping_pong_run(ctx, MANY, MANY_SIZE)?;
        Ok(Sample::rate("ping_pong_many", "rt/s", m, 1.0))
    })
}

/// `pump`.
pub fn pump() -> RunFn {
    Box::new(|ctx| {
        let sunk = Arc::new(AtomicU64::new(0));
        let server = server(Serve::Sink, PUMP_READ, sunk.clone())?;
        let rt = runtime()?;
        let m = rt.block_on(async {
            let mut s = TcpStream::connect(server.addr).await.map_err(err)?;
            let _ = s.set_nodelay(true);
            let buf = vec![b'x'; PUMP_WRITE];
            let start = sunk.load(Ordering::Relaxed);
            let w = Window::open();
            loop {
                s.write_all(&buf).await.map_err(err)?;
                if w.started().elapsed() >= ctx.duration {
                    let bytes = sunk.load(Ordering::Relaxed) - start;
                    return Ok::<_, String>(w.close(bytes as f64));
                }
            }
        })?;
        drop(rt);
        server.stop()?;
        Ok(pump_sample(m))
    })
}

/// `pound`.
pub fn pound() -> RunFn {
    Box::new(|ctx| {
        let server = server(Serve::EchoOnceClose, 64, Arc::default())?;
        let rt = runtime()?;
        let shared = Shared::new(ctx.pound_duration);
        shared.open();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..MANY {
                let shared = shared.clone();
                let addr = server.addr;
                tasks.push(tokio::spawn(async move {
                    let mut reply = [0u8; 5];
                    loop {
                        let mut s = match TcpStream::connect(addr).await {
                            Ok(s) => s,
                            Err(e) => return shared.fail(err(e)),
                        };
                        if let Err(e) = s.write_all(PING).await {
                            return shared.fail(err(e));
                        }
                        if let Err(e) = s.read_exact(&mut reply).await {
                            return shared.fail(err(e));
                        }
                        drop(s);
                        if !shared.tick() {
                            return;
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        drop(rt);
        server.stop()?;
        Ok(Sample::rate("pound", "conn/s", shared.outcome()?, 1.0))
    })
}

/// `udp_pummel`: a sending task and a receiving task on one runtime.
pub fn udp_pummel() -> RunFn {
    Box::new(|ctx| {
        let rt = runtime()?;
        let shared = Shared::new(ctx.duration);
        rt.block_on(async {
            let rx = UdpSocket::bind(loopback()).await.map_err(err)?;
            let tx = UdpSocket::bind(loopback()).await.map_err(err)?;
            tx.connect(rx.local_addr().map_err(err)?).await.map_err(err)?;
            shared.open();
            let s = shared.clone();
            let to = rx.local_addr().map_err(err)?;
            let sender = tokio::spawn(async move {
                while !s.done.load(Ordering::Relaxed) {
                    if let Err(e) = tx.send(DATAGRAM).await {
                        s.fail(err(e));
                        // Wake the receiver, which would wait for ever.
                        if let Ok(poke) = std::net::UdpSocket::bind(loopback()) {
                            let _ = poke.send_to(b"!", to);
                        }
                        return;
                    }
                }
            });
            let mut buf = vec![0u8; 1500];
            loop {
                rx.recv(&mut buf).await.map_err(err)?;
                if !shared.tick() {
                    break;
                }
            }
            let _ = sender.await;
            Ok::<_, String>(())
        })?;
        Ok(Sample::rate("udp_pummel", "dgram/s", shared.outcome()?, 1.0))
    })
}

/// `loop_count`: `yield_now` in the runtime's main future; each yield is one
/// turn of the scheduler with a zero-timeout poll of the I/O driver.
pub fn loop_count() -> RunFn {
    Box::new(|ctx| {
        let rt = runtime()?;
        let m = rt.block_on(async {
            let w = Window::open();
            let mut n: u64 = 0;
            loop {
                tokio::task::yield_now().await;
                n += 1;
                if n.is_multiple_of(1024) && w.started().elapsed() >= ctx.duration {
                    return w.close(n as f64);
                }
            }
        });
        Ok(Sample::rate("loop_count", "iter/s", m, 1.0))
    })
}

const RUNNING: u8 = 0;
const STOP: u8 = 1;
const STOPPED: u8 = 2;

/// `async_pummel`: another thread calls `Notify::notify_one` in a tight loop.
pub fn async_pummel() -> RunFn {
    Box::new(|ctx| {
        let rt = runtime()?;
        let notify = Arc::new(tokio::sync::Notify::new());
        let flag = Arc::new(AtomicU8::new(RUNNING));
        let (n2, f2) = (notify.clone(), flag.clone());
        let want = ctx.async_callbacks;
        let m = rt.block_on(async move {
            let pummel = std::thread::spawn(move || {
                while f2.load(Ordering::Acquire) == RUNNING {
                    n2.notify_one();
                }
                f2.store(STOPPED, Ordering::Release);
            });
            let w = Window::open();
            let mut count = 0u64;
            loop {
                notify.notified().await;
                count += 1;
                if count == want {
                    flag.store(STOP, Ordering::Release);
                    while flag.load(Ordering::Acquire) != STOPPED {
                        std::thread::yield_now();
                    }
                    break;
                }
            }
            let m = w.close(count as f64);
            let _ = pummel.join();
            m
        });
        Ok(Sample::rate("async_pummel", "cb/s", m, 1.0))
    })
}

/// `million_timers`: a task per timer, each sleeping until its deadline.
pub fn million_timers() -> RunFn {
    Box::new(|ctx| {
        let n = ctx.timers;
        let rt = runtime()?;
        let fired = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(None::<Instant>));
        let all = Arc::new(tokio::sync::Notify::new());
        let rss0 = reset_peak_rss();
        let cpu0 = cpu_time();
        let (t0, t1, last_deadline) = rt.block_on(async {
            let t0 = Instant::now();
            let mut last_deadline = t0;
            for i in 0..n {
                let timeout = timer_timeout(i, n);
                if i == n - 1 {
                    last_deadline = Instant::now() + timeout;
                }
                let (fired, last, all) = (fired.clone(), last.clone(), all.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    if fired.fetch_add(1, Ordering::Relaxed) + 1 == n {
                        *last.lock().expect("lock") = Some(Instant::now());
                        all.notify_one();
                    }
                });
            }
            let t1 = Instant::now();
            all.notified().await;
            (t0, t1, last_deadline)
        });
        let cpu = cpu_time() - cpu0;
        let peak = peak_rss_bytes().saturating_sub(rss0);
        drop(rt);
        let end = last.lock().expect("lock").ok_or("not every timer fired")?;
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

/// `file_read`: 64 KiB positional reads on the blocking pool (what
/// `tokio::fs` does for every call), four in flight.
pub fn file_read() -> RunFn {
    Box::new(|ctx| {
        use std::os::unix::fs::FileExt;
        let rt = runtime()?;
        let file = Arc::new(std::fs::File::open(&ctx.file_path).map_err(err)?);
        let size = ctx.file_size;
        let next = Arc::new(AtomicU64::new(0));
        let read = Arc::new(AtomicU64::new(0));
        let w = Window::open();
        rt.block_on(async {
            let mut tasks: Vec<tokio::task::JoinHandle<Result<()>>> = Vec::new();
            for _ in 0..FILE_IN_FLIGHT {
                let (file, next, read) = (file.clone(), next.clone(), read.clone());
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; FILE_CHUNK];
                    loop {
                        let off = next.fetch_add(FILE_CHUNK as u64, Ordering::Relaxed);
                        if off >= size {
                            return Ok(());
                        }
                        let f = file.clone();
                        let (b, r) = tokio::task::spawn_blocking(move || {
                            let r = f.read_at(&mut buf, off);
                            (buf, r)
                        })
                        .await
                        .map_err(err)?;
                        buf = b;
                        read.fetch_add(r.map_err(err)? as u64, Ordering::Relaxed);
                    }
                }));
            }
            for t in tasks {
                t.await.map_err(err)??;
            }
            Ok::<_, String>(())
        })?;
        let m = w.close(read.load(Ordering::Relaxed) as f64);
        if read.load(Ordering::Relaxed) != size {
            return Err("short read".into());
        }
        Ok(file_sample(m))
    })
}

/// `dns`: `tokio::net::lookup_host`, ten tasks.
pub fn dns() -> RunFn {
    Box::new(|ctx| {
        let rt = runtime()?;
        let left = Arc::new(AtomicUsize::new(ctx.dns_lookups));
        let done = Arc::new(AtomicUsize::new(0));
        let w = Window::open();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..DNS_IN_FLIGHT {
                let (left, done) = (left.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    while left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                        .is_ok()
                    {
                        let _addrs = tokio::net::lookup_host(("localhost", 0)).await.map_err(err)?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, String>(())
                }));
            }
            for t in tasks {
                t.await.map_err(err)??;
            }
            Ok::<_, String>(())
        })?;
        let m = w.close(done.load(Ordering::Relaxed) as f64);
        Ok(Sample::rate("dns", "lookups/s", m, 1.0))
    })
}

/// `idle_connections`: a task per accepted connection waiting in a read.
pub fn idle_connections() -> RunFn {
    Box::new(|ctx| {
        let n = ctx.idle_connections;
        let rt = runtime()?;
        let listener = rt
            .block_on(async { TcpListener::bind(loopback()).await })
            .map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let release = Arc::new(AtomicBool::new(false));
        let mark = MemMark::now();
        let clients = idle_clients(addr, n, release.clone());
        let waiting = Arc::new(AtomicUsize::new(0));
        let accepted = rt.block_on(async {
            let mut accepted = 0;
            while accepted < n {
                let Ok((s, _)) = listener.accept().await else {
                    break;
                };
                accepted += 1;
                let waiting = waiting.clone();
                tokio::spawn(async move {
                    let mut s = s;
                    waiting.fetch_add(1, Ordering::Relaxed);
                    // `readable()` first reports the readiness a new
                    // registration starts with; a read waits for real. One
                    // byte of buffer: the least a reading task can hold.
                    let mut b = [0u8; 1];
                    let _ = s.read(&mut b).await;
                });
            }
            // Let every task start waiting (register its interest).
            while waiting.load(Ordering::Relaxed) < accepted {
                tokio::task::yield_now().await;
            }
            tokio::task::yield_now().await;
            accepted
        });
        let sample = mark.idle_sample(n);
        release.store(true, Ordering::Release);
        clients.join().map_err(|_| "client thread panicked")??;
        drop(rt);
        if accepted < n {
            return Err(format!("accepted {accepted} of {n}"));
        }
        Ok(sample)
    })
}

/// `copy`: `tokio::io::copy` at both ends of one loopback TCP connection,
/// each end a current-thread runtime on a thread of its own: the sender
/// copies `tokio::io::repeat(..).take(1 GiB)` into its `TcpStream` and shuts
/// it down, the receiver copies its `TcpStream` into `tokio::io::sink()`
/// until end of stream (the window: accepted connection → end of stream).
pub fn copy() -> RunFn {
    Box::new(|_ctx| {
        let (tx, rx) = mpsc::channel();
        let receiver = std::thread::spawn(move || -> Result<Measured> {
            let rt = runtime()?;
            rt.block_on(async move {
                let listener = match TcpListener::bind(loopback()).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(err(e)));
                        return Err("bind failed".to_string());
                    }
                };
                let _ = tx.send(listener.local_addr().map_err(err));
                let (mut conn, _) = listener.accept().await.map_err(err)?;
                let w = Window::open();
                let n = tokio::io::copy(&mut conn, &mut tokio::io::sink()).await.map_err(err)?;
                Ok(w.close(n as f64))
            })
        });
        let addr = rx.recv().map_err(err)??;
        let rt = runtime()?;
        rt.block_on(async move {
            let mut conn = TcpStream::connect(addr).await.map_err(err)?;
            let mut source = tokio::io::repeat(COPY_FILL).take(COPY_BYTES);
            tokio::io::copy(&mut source, &mut conn).await.map_err(err)?;
            conn.shutdown().await.map_err(err)
        })?;
        drop(rt);
        let measured = receiver.join().map_err(|_| "receiver thread panicked")??;
        copy_sample(measured)
    })
}
