//! The HTTP plaintext comparison (TechEmpower's shape: keep-alive,
//! pipelining, a fixed "Hello, World!" body): the eventcore example
//! `http_plaintext`, an equivalent tokio server and a hand-written epoll
//! server, each a single-threaded child process, measured with `wrk -t1`
//! at 64 and 256 connections, without and with pipelining (depth 16).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{err, Result, Series};
use crate::{finish, progress, Options};

/// The body of every response.
const BODY: &[u8] = b"Hello, World!";

/// The response up to the `Date` value.
fn head(server: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nServer: {server}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nDate: ",
        BODY.len()
    )
    .into_bytes()
}

/// `Date` header value for `secs` since the epoch (RFC 7231 IMF-fixdate).
pub fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let mut out = [b' '; 29];
    out.copy_from_slice(&s.as_bytes()[..29]);
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Appends one response per complete request in `input[*start..]` to
/// `out`; advances `start` past them. Requests are GETs without a body: a
/// request ends at the first empty line.
fn respond(input: &[u8], start: &mut usize, out: &mut Vec<u8>, head: &[u8], date: &[u8; 29]) {
    let mut i = *start;
    while i + 4 <= input.len() {
        match input[i..].windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => {
                i += p + 4;
                out.extend_from_slice(head);
                out.extend_from_slice(date);
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(BODY);
                *start = i;
            }
            None => break,
        }
    }
}

fn parse_addr(arg: Option<&String>) -> SocketAddr {
    arg.and_then(|a| a.parse().ok())
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal"))
}

// -------------------------------------------------------------- tokio server

/// `eventcore-bench serve-tokio ADDR`: the tokio server (current-thread).
pub fn serve_tokio(addr: Option<&String>) -> ExitCode {
    use std::cell::Cell;
    use std::rc::Rc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = parse_addr(addr);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serve-tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let r: std::io::Result<()> = local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let date = Rc::new(Cell::new(http_date(now_secs())));
        let d = date.clone();
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                d.set(http_date(now_secs()));
            }
        });
        println!("listening on {addr}");
        let head: Rc<[u8]> = head("tokio").into();
        loop {
            let (mut s, _) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            let (date, head) = (date.clone(), head.clone());
            tokio::task::spawn_local(async move {
                let mut input = vec![0u8; 4096];
                let mut filled = 0;
                let mut out = Vec::with_capacity(4096);
                loop {
                    if filled == input.len() {
                        input.resize(input.len() * 2, 0);
                    }
                    let n = match s.read(&mut input[filled..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    filled += n;
                    let mut start = 0;
                    respond(&input[..filled], &mut start, &mut out, &head, &date.get());
                    input.copy_within(start..filled, 0);
                    filled -= start;
                    if !out.is_empty() {
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
            });
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve-tokio: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----------------------------------------- eventcore servers, the same logic

/// A backend by name, for the `serve-…` commands.
pub fn backend_named(name: Option<&String>) -> std::result::Result<eventcore::BackendKind, String> {
    let name = name.ok_or("a backend name is needed")?;
    let name = name.strip_suffix("-recv").unwrap_or(name);
    eventcore::BackendKind::available()
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| format!("no backend {name:?} on this machine"))
}

/// A driver for the `serve-…` commands on the backend named (a name
/// ending in `-recv`, such as `io_uring-recv`: with multishot receives
/// into [`RECV_BUFFERS`](crate::ec::RECV_BUFFERS)).
pub fn driver_named(name: Option<&String>) -> std::result::Result<eventcore::Driver, String> {
    let kind = backend_named(name)?;
    let mut builder = eventcore::Driver::builder().backend(kind);
    if name.is_some_and(|n| n.ends_with("-recv")) {
        let (buffers, size) = crate::ec::RECV_BUFFERS;
        builder = builder.io_uring_multishot_recv(buffers, size);
    }
    builder.build().map_err(|e| e.to_string())
}

/// A connection of [`serve_eventcore`]: the buffer not lent to the driver
/// waits here (the input while a response is written, the output while a
/// request is read), so each callback captures one pointer.
struct EcConn {
    input: std::cell::Cell<Vec<u8>>,
    out: std::cell::Cell<Vec<u8>>,
    head: std::rc::Rc<[u8]>,
    date: std::rc::Rc<std::cell::Cell<[u8; 29]>>,
}

fn ec_read(drv: &mut eventcore::Driver, conn: eventcore::StreamSocket, state: std::rc::Rc<EcConn>) {
    let mut input = state.input.take();
    if input.len() == input.capacity() {
        input.reserve(input.capacity().max(4096));
    }
    drv.sockets().read(
        conn,
        input,
        eventcore::IoMode::Once,
        move |drv, conn, res, mut input| {
            if res.is_err() {
                let _ = drv.release_ref(conn);
                return;
            }
            let mut out = state.out.take();
            let mut start = 0;
            respond(&input, &mut start, &mut out, &state.head, &state.date.get());
            input.drain(..start);
            state.input.set(input);
            if out.is_empty() {
                state.out.set(out);
                return ec_read(drv, conn, state);
            }
            drv.sockets()
                .write(conn, out, eventcore::IoMode::All, move |drv, conn, res, mut out| {
                    if res.is_err() {
                        let _ = drv.release_ref(conn);
                        return;
                    }
                    out.clear();
                    state.out.set(out);
                    ec_read(drv, conn, state);
                });
        },
    );
}

/// `eventcore-bench serve-eventcore BACKEND ADDR`: the tokio server's logic
/// (`respond`) on eventcore's callback API, so that the two runtimes are
/// compared on the same request handling (the `http_plaintext` example
/// parses each request in full).
pub fn serve_eventcore(args: &[String]) -> ExitCode {
    use std::cell::Cell;
    use std::rc::Rc;
    let r = (|| -> std::result::Result<(), String> {
        let mut drv = driver_named(args.first())?;
        let addr = parse_addr(args.get(1));
        let date = Rc::new(Cell::new(http_date(now_secs())));
        let tick = drv.timers().create();
        drv.timers()
            .set(tick, Duration::from_secs(1), Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
        fn on_tick(drv: &mut eventcore::Driver, tick: eventcore::TimerId, date: Rc<Cell<[u8; 29]>>) {
            let _ = drv.timers().wait(tick, move |drv, tick, _| {
                date.set(http_date(now_secs()));
                on_tick(drv, tick, date);
            });
        }
        on_tick(&mut drv, tick, date.clone());
        let head: Rc<[u8]> = head("eventcore").into();
        let options = eventcore::ListenOptions {
            backlog: 1024,
            ..eventcore::ListenOptions::default()
        };
        drv.sockets()
            .listen(addr, options, move |drv, _, res| {
                let Ok((conn, _)) = res else { return };
                let _ = drv.sockets().set_no_delay(conn, true);
                let state = Rc::new(EcConn {
                    input: Cell::new(Vec::with_capacity(4096)),
                    out: Cell::new(Vec::with_capacity(4096)),
                    head: head.clone(),
                    date: date.clone(),
                });
                ec_read(drv, conn, state);
            })
            .map_err(|e| e.to_string())?;
        println!("listening on {addr}");
        loop {
            drv.process_events(None).map_err(|e| e.to_string())?;
        }
    })();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve-eventcore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `eventcore-bench serve-eventcore-rt BACKEND ADDR`: the tokio server's
/// code on eventcore's async layer (a task per connection, owned buffers).
pub fn serve_eventcore_rt(args: &[String]) -> ExitCode {
    use eventcore::rt;
    use std::cell::Cell;
    use std::rc::Rc;
    let r = (|| -> std::result::Result<(), String> {
        let mut ex = rt::Executor::new(driver_named(args.first())?);
        let addr = parse_addr(args.get(1));
        ex.block_on(async move {
            let listener = rt::TcpListener::bind_with(
                addr,
                eventcore::ListenOptions {
                    backlog: 1024,
                    ..eventcore::ListenOptions::default()
                },
            )
            .map_err(|e| e.to_string())?;
            let date = Rc::new(Cell::new(http_date(now_secs())));
            let d = date.clone();
            rt::spawn(async move {
                let mut tick = rt::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    d.set(http_date(now_secs()));
                }
            });
            println!("listening on {addr}");
            let head: Rc<[u8]> = head("eventcore").into();
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let _ = s.set_nodelay(true);
                let (date, head) = (date.clone(), head.clone());
                rt::spawn(async move {
                    let mut input = Vec::with_capacity(4096);
                    let mut out = Vec::with_capacity(4096);
                    loop {
                        if input.len() == input.capacity() {
                            input.reserve(input.capacity());
                        }
                        let (res, buf) = s.read_owned(input).await;
                        input = buf;
                        if res.is_err() {
                            return;
                        }
                        let mut start = 0;
                        respond(&input, &mut start, &mut out, &head, &date.get());
                        input.drain(..start);
                        if !out.is_empty() {
                            let (res, buf) = s.write_all_owned(out).await;
                            out = buf;
                            if res.is_err() {
                                return;
                            }
                            out.clear();
                        }
                    }
                });
            }
        })
    })();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve-eventcore-rt: {e}");
            ExitCode::FAILURE
        }
    }
}

// -------------------------------------------------------------- epoll floor

struct FloorConn {
    fd: OwnedFd,
    input: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    sent: usize,
}

fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `eventcore-bench serve-floor ADDR`: a hand-written single-threaded epoll
/// server (edge-triggered, reads until EAGAIN, one write per batch of
/// responses) — the least a server of this shape can do.
pub fn serve_floor(addr: Option<&String>) -> ExitCode {
    match floor_main(parse_addr(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn floor_main(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    // SAFETY: plain syscalls on descriptors this function owns; the event
    // array has room for the count passed.
    unsafe {
        let ep = OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?);
        let add = |fd: RawFd, token: u64, events: u32| {
            let mut ev = libc::epoll_event { events, u64: token };
            cvt(libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev))
        };
        const LISTENER: u64 = u64::MAX;
        add(listener.as_raw_fd(), LISTENER, libc::EPOLLIN as u32)?;
        println!("listening on {addr}");
        let head = head("floor");
        let mut date = http_date(now_secs());
        let mut date_at = Instant::now();
        let mut conns: Vec<Option<FloorConn>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let n = libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 256, 1000);
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if date_at.elapsed() >= Duration::from_secs(1) {
                date = http_date(now_secs());
                date_at = Instant::now();
            }
            for ev in &events[..n as usize] {
                let token = ev.u64;
                if token == LISTENER {
                    loop {
                        let fd = libc::accept4(
                            listener.as_raw_fd(),
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        );
                        if fd < 0 {
                            break;
                        }
                        let one: libc::c_int = 1;
                        libc::setsockopt(
                            fd,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&one as *const libc::c_int).cast(),
                            4,
                        );
                        let slot = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        conns[slot] = Some(FloorConn {
                            fd: OwnedFd::from_raw_fd(fd),
                            input: vec![0; 4096],
                            filled: 0,
                            out: Vec::with_capacity(4096),
                            sent: 0,
                        });
                        let flags = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32;
                        if add(fd, slot as u64, flags).is_err() {
                            conns[slot] = None;
                            free.push(slot);
                        }
                    }
                    continue;
                }
                let slot = token as usize;
                let Some(c) = conns[slot].as_mut() else {
                    continue;
                };
                if !floor_serve(c, &head, &date) {
                    conns[slot] = None;
                    free.push(slot);
                }
            }
        }
    }
}

/// Reads until EAGAIN, answers every complete request, writes until done or
/// EAGAIN. Returns false when the connection is finished.
unsafe fn floor_serve(c: &mut FloorConn, head: &[u8], date: &[u8; 29]) -> bool {
    loop {
        if c.filled == c.input.len() {
            c.input.resize(c.input.len() * 2, 0);
        }
        let r = libc::read(
            c.fd.as_raw_fd(),
            c.input[c.filled..].as_mut_ptr().cast(),
            c.input.len() - c.filled,
        );
        if r == 0 {
            return false;
        }
        if r < 0 {
            match *libc::__errno_location() {
                libc::EAGAIN => break,
                libc::EINTR => continue,
                _ => return false,
            }
        }
        c.filled += r as usize;
    }
    let mut start = 0;
    respond(&c.input[..c.filled], &mut start, &mut c.out, head, date);
    c.input.copy_within(start..c.filled, 0);
    c.filled -= start;
    while c.sent < c.out.len() {
        let r = libc::send(
            c.fd.as_raw_fd(),
            c.out[c.sent..].as_ptr().cast(),
            c.out.len() - c.sent,
            libc::MSG_NOSIGNAL,
        );
        if r < 0 {
            match *libc::__errno_location() {
                libc::EAGAIN => return true,
                libc::EINTR => continue,
                _ => return false,
            }
        }
        c.sent += r as usize;
    }
    c.out.clear();
    c.sent = 0;
    true
}

// ---------------------------------------------------------------- the runner

/// TechEmpower's pipelining script: `depth` requests per write.
const PIPELINE_LUA: &str = r#"
init = function(args)
  local r = {}
  local depth = tonumber(args[1]) or 1
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
"#;

struct ServerProc {
    system: String,
    child: Child,
    addr: SocketAddr,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(err)?;
    l.local_addr().map_err(err)
}

fn start(system: &str, program: &Path, args: &[&str]) -> Result<ServerProc> {
    let addr = free_port()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    // Wait for its "listening on" line, then for a connect to work.
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let proc = ServerProc {
        system: system.to_string(),
        child,
        addr,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{system} server did not listen on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(proc)
}

/// User + system CPU time of a process so far (`/proc/PID/stat`).
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields after the command: state is 0, utime 11, stime 12.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz)
}

/// Runs wrk once; returns the requests it counted and the seconds it ran.
fn wrk(addr: SocketAddr, conns: usize, secs: u64, script: Option<&Path>) -> Result<(f64, f64)> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s")]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(format!("http://{addr}/plaintext"));
    if script.is_some() {
        cmd.args(["--", "16"]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run wrk ({e}); `cargo xtask bench --http` installs it"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("wrk failed: {text}"));
    }
    // "  123456 requests in 5.00s, 17.00MB read"
    let line = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .ok_or_else(|| format!("unexpected wrk output: {text}"))?;
    let mut words = line.split_whitespace();
    let requests: f64 = words.next().and_then(|w| w.parse().ok()).ok_or("wrk count")?;
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        progress(&format!(
            "    wrk reported errors: {}",
            text.trim().replace('\n', " | ")
        ));
    }
    Ok((requests, secs as f64))
}

/// The eventcore example's binary, next to this one (`cargo build --release
/// -p eventcore-driver --example http_plaintext` puts it there).
fn example_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(err)?;
    let dir = exe.parent().ok_or("no directory")?;
    let p = dir.join("examples").join("http_plaintext");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build --release -p eventcore-driver --example http_plaintext` (cargo xtask bench --http does)",
            p.display()
        ))
    }
}

/// `--http`: every server, every configuration, alternating rounds.
pub fn run(options: &Options) -> Result<()> {
    let rounds = options.rounds.unwrap_or(if options.quick { 2 } else { 3 }).max(1);
    // wrk takes whole seconds.
    let secs = match options.seconds {
        Some(s) => (s.ceil() as u64).max(1),
        None if options.quick => 1,
        None => 5,
    };
    let me = std::env::current_exe().map_err(err)?;
    // Needed only if a server of the example runs.
    let example = example_path();
    let script = std::env::temp_dir().join(format!("eventcore-bench-{}.lua", std::process::id()));
    std::fs::write(&script, PIPELINE_LUA).map_err(err)?;
    progress(&format!(
        "HTTP plaintext with wrk -t1, {secs} s per run, {rounds} round(s), on {}.",
        crate::report::machine()
    ));
    // The example on every backend of the machine, then the references;
    // then hyper on eventcore (one executor, and one per CPU) and on tokio
    // (current-thread, and multi-thread). `--systems` picks some of them.
    // (system, the example's binary or this one, arguments)
    let mut wanted: Vec<(String, bool, Vec<&str>)> = Vec::new();
    let kinds = eventcore::BackendKind::available();
    for kind in kinds {
        wanted.push((format!("eventcore-{}", kind.name()), true, vec![kind.name()]));
    }
    for kind in kinds {
        wanted.push((
            format!("eventcore-{}-same", kind.name()),
            false,
            vec!["serve-eventcore", kind.name()],
        ));
        wanted.push((
            format!("eventcore-{}-rt-same", kind.name()),
            false,
            vec!["serve-eventcore-rt", kind.name()],
        ));
    }
    // Multishot receives (io_uring), only when `--systems` names them.
    if kinds.contains(&eventcore::BackendKind::IoUring) {
        wanted.push((
            "eventcore-io_uring-recv-same".into(),
            false,
            vec!["serve-eventcore", "io_uring-recv"],
        ));
        wanted.push((
            "eventcore-io_uring-recv-rt-same".into(),
            false,
            vec!["serve-eventcore-rt", "io_uring-recv"],
        ));
        wanted.push((
            "eventcore-io_uring-recv-hyper".into(),
            false,
            vec!["serve-hyper", "io_uring-recv"],
        ));
    }
    wanted.push(("tokio".into(), false, vec!["serve-tokio"]));
    wanted.push(("floor".into(), false, vec!["serve-floor"]));
    for kind in kinds {
        wanted.push((
            format!("eventcore-{}-hyper", kind.name()),
            false,
            vec!["serve-hyper", kind.name()],
        ));
    }
    wanted.push(("tokio-hyper".into(), false, vec!["serve-hyper-tokio"]));
    for kind in kinds {
        wanted.push((
            format!("eventcore-{}-hyper-cores", kind.name()),
            false,
            vec!["serve-hyper-cores", kind.name()],
        ));
    }
    wanted.push(("tokio-mt-hyper".into(), false, vec!["serve-hyper-tokio-mt"]));
    let mut servers = Vec::new();
    for (system, of_example, args) in wanted {
        match &options.systems {
            Some(systems) if !systems.contains(&system) => continue,
            None if system.contains("-recv") => continue,
            _ => {}
        }
        let program = if of_example {
            example.as_ref().map_err(Clone::clone)?
        } else {
            &me
        };
        servers.push(start(&system, program, &args)?);
    }
    if servers.is_empty() {
        return Err("--systems names none of the HTTP servers".into());
    }
    let mut series: Vec<Series> = Vec::new();
    let configs: [(&'static str, usize, bool); 4] = [
        ("http_plaintext_64", 64, false),
        ("http_plaintext_256", 256, false),
        ("http_pipelined_64", 64, true),
        ("http_pipelined_256", 256, true),
    ];
    for (name, conns, pipelined) in configs {
        if let Some(only) = &options.only {
            if !only.iter().any(|o| name.starts_with(o.as_str())) {
                continue;
            }
        }
        progress(&format!(
            "{name}: {conns} connections{}",
            if pipelined { ", pipelining depth 16" } else { "" }
        ));
        for round in 0..rounds {
            for i in 0..servers.len() {
                let s = &servers[(i + round) % servers.len()];
                let cpu0 = proc_cpu(s.child.id());
                let (requests, secs) = match wrk(s.addr, conns, secs, pipelined.then_some(script.as_path())) {
                    Ok(r) => r,
                    Err(e) => {
                        progress(&format!("  round {} {:<30} FAILED: {e}", round + 1, s.system));
                        continue;
                    }
                };
                let cpu = proc_cpu(s.child.id()).saturating_sub(cpu0);
                let rate = requests / secs;
                let cpu_us = cpu.as_secs_f64() * 1e6 / requests;
                progress(&format!(
                    "  round {} {:<30} {:>12.0} req/s {:>8.2} µs server CPU/req",
                    round + 1,
                    s.system,
                    rate,
                    cpu_us
                ));
                match series.iter_mut().find(|x| x.scenario == name && x.system == s.system) {
                    Some(x) => {
                        x.values.push(rate);
                        x.cpus.push(cpu_us);
                    }
                    None => series.push(Series {
                        scenario: name,
                        system: s.system.to_string(),
                        unit: "req/s",
                        higher_is_better: true,
                        values: vec![rate],
                        cpus: vec![cpu_us],
                    }),
                }
            }
        }
    }
    drop(servers);
    let _ = std::fs::remove_file(&script);
    finish(
        options,
        &series,
        "http",
        &format!("HTTP plaintext, wrk -t1 — {}", crate::command_line(options)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn every_complete_request_is_answered() {
        let date = http_date(0);
        let head = head("t");
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HT";
        let (mut start, mut out) = (0, Vec::new());
        respond(input, &mut start, &mut out, &head, &date);
        assert_eq!(&input[start..], b"GET / HT");
        let one = head.len() + 29 + 4 + BODY.len();
        assert_eq!(out.len(), 2 * one);
        assert!(out.ends_with(b"\r\n\r\nHello, World!"));
    }
}
