//! The scenarios on libuv (built from source by `libuv-sys2`), written as a
//! C program would: handles and requests with stable addresses, state found
//! through their `data` pointers, one loop per thread.
//!
//! Every handle or request allocated here is freed in its close or
//! completion callback; every loop is closed after it ran dry.

#![allow(clippy::missing_safety_doc)]

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use libuv_sys2 as uv;

use crate::harness::*;

// ------------------------------------------------------------------ helpers

/// A loop with a stable address, closed on drop.
struct Loop(Box<uv::uv_loop_t>);

impl Loop {
    fn new() -> Result<Loop> {
        let mut l: Box<MaybeUninit<uv::uv_loop_t>> = Box::new_uninit();
        // SAFETY: uv_loop_init initialises the loop in place.
        unsafe {
            check(uv::uv_loop_init(l.as_mut_ptr()), "uv_loop_init")?;
            Ok(Loop(l.assume_init()))
        }
    }

    fn ptr(&mut self) -> *mut uv::uv_loop_t {
        &mut *self.0
    }

    fn run(&mut self) -> Result<()> {
        // SAFETY: a live, initialised loop.
        unsafe { check(uv::uv_run(self.ptr(), uv::uv_run_mode_UV_RUN_DEFAULT), "uv_run").map(drop) }
    }

    fn run_once(&mut self) {
        // SAFETY: a live, initialised loop.
        unsafe {
            uv::uv_run(self.ptr(), uv::uv_run_mode_UV_RUN_ONCE);
        }
    }

    fn set_data<T>(&mut self, data: *const T) {
        self.0.data = data as *mut c_void;
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // SAFETY: the loop ran dry (every handle closed) before it is dropped;
        // uv_loop_close reports EBUSY otherwise and then we leak rather than
        // free memory libuv still uses.
        unsafe {
            if uv::uv_loop_close(self.ptr()) != 0 {
                let leaked = std::mem::replace(&mut self.0, Box::new(std::mem::zeroed()));
                std::mem::forget(leaked);
            }
        }
    }
}

fn check(r: c_int, what: &str) -> Result<c_int> {
    if r < 0 {
        Err(format!("{what}: {}", uv_error(r)))
    } else {
        Ok(r)
    }
}

fn uv_error(r: c_int) -> String {
    // SAFETY: uv_strerror returns a static string for any code.
    unsafe {
        std::ffi::CStr::from_ptr(uv::uv_strerror(r))
            .to_string_lossy()
            .into_owned()
    }
}

/// The loop's `data`, as the state type this scenario put there.
unsafe fn loop_data<'a, T>(l: *mut uv::uv_loop_t) -> &'a T {
    &*((*l).data as *const T)
}

unsafe fn handle_loop(h: *mut c_void) -> *mut uv::uv_loop_t {
    (*(h as *mut uv::uv_handle_t)).loop_
}

fn sockaddr(addr: SocketAddr) -> uv::sockaddr_in {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only");
    };
    let ip = std::ffi::CString::new(v4.ip().to_string()).expect("no NUL");
    // SAFETY: uv_ip4_addr fills the zeroed sockaddr_in.
    unsafe {
        let mut sa: uv::sockaddr_in = std::mem::zeroed();
        uv::uv_ip4_addr(ip.as_ptr(), v4.port() as c_int, &mut sa);
        sa
    }
}

fn local_port(h: *const uv::uv_tcp_t) -> Result<u16> {
    // SAFETY: getsockname writes at most `len` bytes into the storage.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of_val(&ss) as c_int;
        check(
            uv::uv_tcp_getsockname(h, &mut ss as *mut _ as *mut uv::sockaddr, &mut len),
            "uv_tcp_getsockname",
        )?;
        Ok(u16::from_be((*(&ss as *const _ as *const libc::sockaddr_in)).sin_port))
    }
}

unsafe extern "C" fn free_on_close<T>(h: *mut uv::uv_handle_t) {
    drop(Box::from_raw(h as *mut T));
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal")
}

// ------------------------------------------------------------------ servers

#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    Echo,
    EchoOnceClose,
    Sink,
}

struct ServerState {
    serve: Serve,
    buf: usize,
    stop: StopFlag,
    sunk: Arc<AtomicU64>,
}

/// A connection of a server: the handle first, so the handle's address is
/// the connection's.
#[repr(C)]
struct ServerConn {
    tcp: uv::uv_tcp_t,
    rbuf: Vec<u8>,
}

#[repr(C)]
struct WriteReq {
    req: uv::uv_write_t,
    data: Vec<u8>,
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
        let mut lp = Loop::new()?;
        let state = ServerState {
            serve,
            buf,
            stop: flag,
            sunk,
        };
        lp.set_data(&state);
        // SAFETY: the listener lives in a Box freed by its close callback;
        // everything libuv is given outlives the loop run.
        unsafe {
            let listener: *mut uv::uv_tcp_t = Box::into_raw(Box::new(std::mem::zeroed()));
            let setup = (|| {
                check(uv::uv_tcp_init(lp.ptr(), listener), "uv_tcp_init")?;
                let sa = sockaddr(loopback());
                check(
                    uv::uv_tcp_bind(listener, &sa as *const _ as *const uv::sockaddr, 0),
                    "uv_tcp_bind",
                )?;
                check(
                    uv::uv_listen(listener as *mut uv::uv_stream_t, 1024, Some(on_connection)),
                    "uv_listen",
                )?;
                local_port(listener)
            })();
            match setup {
                Ok(port) => {
                    let _ = tx.send(Ok(SocketAddr::from(([127, 0, 0, 1], port))));
                }
                Err(e) => {
                    let _ = tx.send(Err(e.clone()));
                    uv::uv_close(listener as *mut _, Some(free_on_close::<uv::uv_tcp_t>));
                    lp.run()?;
                    return Err(e);
                }
            }
        }
        lp.run()
    });
    let addr = rx.recv().map_err(err)??;
    Ok(Server { addr, stop, thread })
}

unsafe extern "C" fn on_connection(server: *mut uv::uv_stream_t, status: c_int) {
    if status < 0 {
        return;
    }
    let lp = handle_loop(server as *mut c_void);
    let state: &ServerState = loop_data(lp);
    let conn = Box::into_raw(Box::new(ServerConn {
        tcp: std::mem::zeroed(),
        rbuf: vec![0; state.buf],
    }));
    uv::uv_tcp_init(lp, &mut (*conn).tcp);
    (*conn).tcp.data = conn as *mut c_void;
    if uv::uv_accept(server, &mut (*conn).tcp as *mut _ as *mut uv::uv_stream_t) != 0 {
        uv::uv_close(conn as *mut _, Some(free_on_close::<ServerConn>));
        return;
    }
    if state.stop.is_set() {
        uv::uv_close(conn as *mut _, Some(free_on_close::<ServerConn>));
        uv::uv_close(server as *mut _, Some(free_on_close::<uv::uv_tcp_t>));
        return;
    }
    uv::uv_tcp_nodelay(&mut (*conn).tcp, 1);
    uv::uv_read_start(conn as *mut uv::uv_stream_t, Some(server_alloc), Some(server_read));
}

unsafe extern "C" fn server_alloc(h: *mut uv::uv_handle_t, _size: usize, buf: *mut uv::uv_buf_t) {
    let conn = h as *mut ServerConn;
    (*buf).base = (*conn).rbuf.as_mut_ptr() as *mut c_char;
    (*buf).len = (*conn).rbuf.len();
}

unsafe extern "C" fn server_read(s: *mut uv::uv_stream_t, nread: isize, buf: *const uv::uv_buf_t) {
    if nread < 0 {
        uv::uv_close(s as *mut _, Some(free_on_close::<ServerConn>));
        return;
    }
    if nread == 0 {
        return;
    }
    let state: &ServerState = loop_data(handle_loop(s as *mut c_void));
    let n = nread as usize;
    match state.serve {
        Serve::Sink => {
            state.sunk.fetch_add(n as u64, Ordering::Relaxed);
        }
        Serve::Echo | Serve::EchoOnceClose => {
            let data = std::slice::from_raw_parts((*buf).base as *const u8, n).to_vec();
            let req = Box::into_raw(Box::new(WriteReq {
                req: std::mem::zeroed(),
                data,
            }));
            let b = uv::uv_buf_t {
                base: (*req).data.as_mut_ptr() as *mut c_char,
                len: n,
            };
            if uv::uv_write(&mut (*req).req, s, &b, 1, Some(server_written)) != 0 {
                drop(Box::from_raw(req));
                uv::uv_close(s as *mut _, Some(free_on_close::<ServerConn>));
            }
        }
    }
}

unsafe extern "C" fn server_written(req: *mut uv::uv_write_t, status: c_int) {
    let stream = (*req).handle;
    drop(Box::from_raw(req as *mut WriteReq));
    let state: &ServerState = loop_data(handle_loop(stream as *mut c_void));
    if (status < 0 || state.serve == Serve::EchoOnceClose) && uv::uv_is_closing(stream as *const _) == 0 {
        uv::uv_close(stream as *mut _, Some(free_on_close::<ServerConn>));
    }
}

// ------------------------------------------------------------------ clients

struct ClientState {
    deadline: Duration,
    addr: SocketAddr,
    conns: usize,
    connected: Cell<usize>,
    window: Cell<Option<Window>>,
    count: Cell<u64>,
    done: Cell<bool>,
    result: Cell<Option<Measured>>,
    failure: std::cell::RefCell<Option<String>>,
}

impl ClientState {
    fn new(deadline: Duration, addr: SocketAddr, conns: usize) -> ClientState {
        ClientState {
            deadline,
            addr,
            conns,
            connected: Cell::new(0),
            window: Cell::new(None),
            count: Cell::new(0),
            done: Cell::new(false),
            result: Cell::new(None),
            failure: Default::default(),
        }
    }

    fn tick(&self) -> bool {
        if self.done.get() {
            return false;
        }
        let Some(w) = self.window.get() else {
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

#[repr(C)]
struct ClientConn {
    tcp: uv::uv_tcp_t,
    connect: uv::uv_connect_t,
    write: uv::uv_write_t,
    msg: Vec<u8>,
    reply: Vec<u8>,
    got: usize,
    /// The write request is free again (its callback ran).
    written: bool,
    /// The whole reply arrived; the next message waits for `written`.
    replied: bool,
}

unsafe fn client_conn(lp: *mut uv::uv_loop_t, state: &ClientState, msg: Vec<u8>) -> Result<()> {
    let conn = Box::into_raw(Box::new(ClientConn {
        tcp: std::mem::zeroed(),
        connect: std::mem::zeroed(),
        write: std::mem::zeroed(),
        reply: vec![0; msg.len()],
        msg,
        got: 0,
        written: false,
        replied: false,
    }));
    check(uv::uv_tcp_init(lp, &mut (*conn).tcp), "uv_tcp_init")?;
    let sa = sockaddr(state.addr);
    if let Err(e) = check(
        uv::uv_tcp_connect(
            &mut (*conn).connect,
            &mut (*conn).tcp,
            &sa as *const _ as *const uv::sockaddr,
            Some(client_connected),
        ),
        "uv_tcp_connect",
    ) {
        uv::uv_close(conn as *mut _, Some(free_on_close::<ClientConn>));
        return Err(e);
    }
    Ok(())
}

unsafe fn client_close(conn: *mut ClientConn) {
    if uv::uv_is_closing(conn as *const _) == 0 {
        uv::uv_close(conn as *mut _, Some(client_closed));
    }
}

/// Frees the connection; `pound` opens the next one.
unsafe extern "C" fn client_closed(h: *mut uv::uv_handle_t) {
    let lp = (*h).loop_;
    let conn = Box::from_raw(h as *mut ClientConn);
    let state: &ClientState = loop_data(lp);
    if state.conns == 0 && !state.done.get() {
        // `pound`: the next connection.
        if let Err(e) = client_conn(lp, state, conn.msg) {
            state.fail(e);
        }
    }
}

unsafe extern "C" fn client_connected(req: *mut uv::uv_connect_t, status: c_int) {
    let conn = (*req).handle as *mut ClientConn;
    let state: &ClientState = loop_data(handle_loop(conn as *mut c_void));
    if status < 0 {
        state.fail(format!("connect: {}", uv_error(status)));
        return client_close(conn);
    }
    uv::uv_tcp_nodelay(&mut (*conn).tcp, 1);
    if state.conns > 0 {
        state.connected.set(state.connected.get() + 1);
        if state.connected.get() == state.conns {
            state.window.set(Some(Window::open()));
        }
    }
    uv::uv_read_start(conn as *mut _, Some(client_alloc), Some(client_read));
    client_send(conn);
}

unsafe fn client_send(conn: *mut ClientConn) {
    (*conn).written = false;
    (*conn).replied = false;
    let b = uv::uv_buf_t {
        base: (*conn).msg.as_mut_ptr() as *mut c_char,
        len: (*conn).msg.len(),
    };
    if uv::uv_write(&mut (*conn).write, conn as *mut _, &b, 1, Some(client_written)) != 0 {
        client_close(conn);
    }
}

unsafe extern "C" fn client_written(req: *mut uv::uv_write_t, status: c_int) {
    let conn = (*req).handle as *mut ClientConn;
    let state: &ClientState = loop_data(handle_loop(conn as *mut c_void));
    if status < 0 {
        if !state.done.get() {
            state.fail(format!("write: {}", uv_error(status)));
        }
        return client_close(conn);
    }
    // The reply may have come before this callback ran; the request is
    // only free now.
    (*conn).written = true;
    if (*conn).replied && uv::uv_is_closing(conn as *const _) == 0 {
        client_send(conn);
    }
}

unsafe extern "C" fn client_alloc(h: *mut uv::uv_handle_t, _size: usize, buf: *mut uv::uv_buf_t) {
    let conn = h as *mut ClientConn;
    let got = (*conn).got;
    (*buf).base = (*conn).reply.as_mut_ptr().add(got) as *mut c_char;
    (*buf).len = (*conn).reply.len() - got;
}

unsafe extern "C" fn client_read(s: *mut uv::uv_stream_t, nread: isize, _buf: *const uv::uv_buf_t) {
    let conn = s as *mut ClientConn;
    let state: &ClientState = loop_data(handle_loop(conn as *mut c_void));
    if nread < 0 {
        if !state.done.get() {
            state.fail(format!("read: {}", uv_error(nread as c_int)));
        }
        return client_close(conn);
    }
    (*conn).got += nread as usize;
    if (*conn).got < (*conn).reply.len() {
        return;
    }
    (*conn).got = 0;
    let more = state.tick();
    if state.conns == 0 {
        // `pound`: one exchange per connection.
        return client_close(conn);
    }
    if !more {
        return client_close(conn);
    }
    (*conn).replied = true;
    if (*conn).written {
        client_send(conn);
    }
}

fn ping_pong_run(ctx: &Ctx, conns: usize, size: usize) -> Result<Measured> {
    let server = server(Serve::Echo, size.max(64), Arc::default())?;
    let mut lp = Loop::new()?;
    let state = ClientState::new(ctx.duration, server.addr, conns);
    lp.set_data(&state);
    for _ in 0..conns {
        let msg = if size == PING.len() {
            PING.to_vec()
        } else {
            vec![b'x'; size]
        };
        // SAFETY: the loop and the state outlive the run.
        unsafe { client_conn(lp.ptr(), &state, msg)? };
    }
    lp.run()?;
    server.stop()?;
    state.outcome()
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

/// `pound`: `conns == 0` in the state marks one exchange per connection.
pub fn pound() -> RunFn {
    Box::new(|ctx| {
        let server = server(Serve::EchoOnceClose, 64, Arc::default())?;
        let mut lp = Loop::new()?;
        let state = ClientState::new(ctx.pound_duration, server.addr, 0);
        state.window.set(Some(Window::open()));
        lp.set_data(&state);
        for _ in 0..MANY {
            // SAFETY: the loop and the state outlive the run.
            unsafe { client_conn(lp.ptr(), &state, PING.to_vec())? };
        }
        lp.run()?;
        server.stop()?;
        Ok(Sample::rate("pound", "conn/s", state.outcome()?, 1.0))
    })
}

// --------------------------------------------------------------------- pump

struct PumpState {
    deadline: Duration,
    window: Cell<Option<Window>>,
    sunk: Arc<AtomicU64>,
    start: Cell<u64>,
    result: Cell<Option<Measured>>,
    failure: std::cell::RefCell<Option<String>>,
}

/// `pump`: 8 KiB writes, one in flight, until the time is up.
pub fn pump() -> RunFn {
    Box::new(|ctx| {
        let sunk = Arc::new(AtomicU64::new(0));
        let server = server(Serve::Sink, PUMP_READ, sunk.clone())?;
        let mut lp = Loop::new()?;
        let state = PumpState {
            deadline: ctx.duration,
            window: Cell::new(None),
            sunk,
            start: Cell::new(0),
            result: Cell::new(None),
            failure: Default::default(),
        };
        lp.set_data(&state);
        // SAFETY: as in `client_conn`; the connection is freed on close.
        unsafe {
            let conn = Box::into_raw(Box::new(ClientConn {
                tcp: std::mem::zeroed(),
                connect: std::mem::zeroed(),
                write: std::mem::zeroed(),
                msg: vec![b'x'; PUMP_WRITE],
                reply: Vec::new(),
                got: 0,
                written: false,
                replied: false,
            }));
            check(uv::uv_tcp_init(lp.ptr(), &mut (*conn).tcp), "uv_tcp_init")?;
            let sa = sockaddr(server.addr);
            check(
                uv::uv_tcp_connect(
                    &mut (*conn).connect,
                    &mut (*conn).tcp,
                    &sa as *const _ as *const uv::sockaddr,
                    Some(pump_connected),
                ),
                "uv_tcp_connect",
            )?;
        }
        lp.run()?;
        server.stop()?;
        if let Some(f) = state.failure.take() {
            return Err(f);
        }
        Ok(pump_sample(state.result.get().ok_or("no result")?))
    })
}

unsafe extern "C" fn pump_connected(req: *mut uv::uv_connect_t, status: c_int) {
    let conn = (*req).handle as *mut ClientConn;
    let state: &PumpState = loop_data(handle_loop(conn as *mut c_void));
    if status < 0 {
        *state.failure.borrow_mut() = Some(uv_error(status));
        return uv::uv_close(conn as *mut _, Some(free_on_close::<ClientConn>));
    }
    uv::uv_tcp_nodelay(&mut (*conn).tcp, 1);
    state.start.set(state.sunk.load(Ordering::Relaxed));
    state.window.set(Some(Window::open()));
    pump_send(conn);
}

unsafe fn pump_send(conn: *mut ClientConn) {
    let b = uv::uv_buf_t {
        base: (*conn).msg.as_mut_ptr() as *mut c_char,
        len: (*conn).msg.len(),
    };
    if uv::uv_write(&mut (*conn).write, conn as *mut _, &b, 1, Some(pump_written)) != 0 {
        uv::uv_close(conn as *mut _, Some(free_on_close::<ClientConn>));
    }
}

unsafe extern "C" fn pump_written(req: *mut uv::uv_write_t, status: c_int) {
    let conn = (*req).handle as *mut ClientConn;
    let state: &PumpState = loop_data(handle_loop(conn as *mut c_void));
    let w = state.window.get().expect("open");
    if status < 0 {
        *state.failure.borrow_mut() = Some(uv_error(status));
    } else if w.started().elapsed() < state.deadline {
        return pump_send(conn);
    } else {
        let bytes = state.sunk.load(Ordering::Relaxed) - state.start.get();
        state.result.set(Some(w.close(bytes as f64)));
    }
    uv::uv_close(conn as *mut _, Some(free_on_close::<ClientConn>));
}

// ---------------------------------------------------------------------- udp

#[repr(C)]
struct Udp {
    handle: uv::uv_udp_t,
    send: uv::uv_udp_send_t,
    to: uv::sockaddr_in,
    buf: Vec<u8>,
}

struct UdpState {
    client: ClientState,
    closed: Cell<bool>,
    rx: *mut Udp,
    tx: *mut Udp,
}

/// `udp_pummel`: one sender, one receiver, in one loop.
pub fn udp_pummel() -> RunFn {
    Box::new(|ctx| {
        let mut lp = Loop::new()?;
        let new = || {
            Box::into_raw(Box::new(Udp {
                // SAFETY: plain C structs, initialised by libuv before use.
                handle: unsafe { std::mem::zeroed() },
                send: unsafe { std::mem::zeroed() },
                to: sockaddr(loopback()),
                buf: vec![0; 1500],
            }))
        };
        let (rx, tx) = (new(), new());
        let state = UdpState {
            client: ClientState::new(ctx.duration, loopback(), 0),
            closed: Cell::new(false),
            rx,
            tx,
        };
        state.client.window.set(Some(Window::open()));
        lp.set_data(&state);
        // SAFETY: both sockets live in Boxes freed by their close callbacks.
        unsafe {
            check(uv::uv_udp_init(lp.ptr(), &mut (*rx).handle), "uv_udp_init")?;
            check(uv::uv_udp_init(lp.ptr(), &mut (*tx).handle), "uv_udp_init")?;
            let sa = sockaddr(loopback());
            check(
                uv::uv_udp_bind(&mut (*rx).handle, &sa as *const _ as *const uv::sockaddr, 0),
                "uv_udp_bind",
            )?;
            let mut len = std::mem::size_of::<uv::sockaddr_in>() as c_int;
            check(
                uv::uv_udp_getsockname(&(*rx).handle, &mut (*tx).to as *mut _ as *mut uv::sockaddr, &mut len),
                "uv_udp_getsockname",
            )?;
            (*tx).buf = DATAGRAM.to_vec();
            check(
                uv::uv_udp_recv_start(&mut (*rx).handle, Some(udp_alloc), Some(udp_recv)),
                "uv_udp_recv_start",
            )?;
            udp_send(tx);
        }
        lp.run()?;
        Ok(Sample::rate("udp_pummel", "dgram/s", state.client.outcome()?, 1.0))
    })
}

unsafe fn udp_send(tx: *mut Udp) {
    let b = uv::uv_buf_t {
        base: (*tx).buf.as_mut_ptr() as *mut c_char,
        len: (*tx).buf.len(),
    };
    let r = uv::uv_udp_send(
        &mut (*tx).send,
        &mut (*tx).handle,
        &b,
        1,
        &(*tx).to as *const _ as *const uv::sockaddr,
        Some(udp_sent),
    );
    if r != 0 {
        udp_finish(handle_loop(tx as *mut c_void), Some(uv_error(r)));
    }
}

unsafe fn udp_finish(lp: *mut uv::uv_loop_t, failure: Option<String>) {
    let state: &UdpState = loop_data(lp);
    if state.closed.replace(true) {
        return;
    }
    if let Some(f) = failure {
        state.client.fail(f);
    }
    state.client.done.set(true);
    for h in [state.rx, state.tx] {
        if uv::uv_is_closing(h as *const _) == 0 {
            uv::uv_close(h as *mut _, Some(free_on_close::<Udp>));
        }
    }
}

unsafe extern "C" fn udp_sent(req: *mut uv::uv_udp_send_t, status: c_int) {
    let tx = (*req).handle as *mut Udp;
    let lp = handle_loop(tx as *mut c_void);
    let state: &UdpState = loop_data(lp);
    if state.closed.get() {
        return;
    }
    if status < 0 {
        return udp_finish(lp, Some(uv_error(status)));
    }
    udp_send(tx);
}

unsafe extern "C" fn udp_alloc(h: *mut uv::uv_handle_t, _size: usize, buf: *mut uv::uv_buf_t) {
    let u = h as *mut Udp;
    (*buf).base = (*u).buf.as_mut_ptr() as *mut c_char;
    (*buf).len = (*u).buf.len();
}

unsafe extern "C" fn udp_recv(
    h: *mut uv::uv_udp_t,
    nread: isize,
    _buf: *const uv::uv_buf_t,
    addr: *const uv::sockaddr,
    _flags: std::ffi::c_uint,
) {
    let lp = handle_loop(h as *mut c_void);
    let state: &UdpState = loop_data(lp);
    if nread < 0 {
        return udp_finish(lp, Some(uv_error(nread as c_int)));
    }
    if nread == 0 && addr.is_null() {
        return; // nothing more to read for now
    }
    if !state.client.tick() {
        udp_finish(lp, None);
    }
}

// ------------------------------------------------------------- loop, async

struct CountState {
    deadline: Duration,
    window: Window,
    count: Cell<u64>,
    result: Cell<Option<Measured>>,
}

/// `loop_count`: an idle handle's callbacks (one per loop iteration).
pub fn loop_count() -> RunFn {
    Box::new(|ctx| {
        let mut lp = Loop::new()?;
        let state = CountState {
            deadline: ctx.duration,
            window: Window::open(),
            count: Cell::new(0),
            result: Cell::new(None),
        };
        lp.set_data(&state);
        // SAFETY: the idle handle is freed by its close callback.
        unsafe {
            let idle: *mut uv::uv_idle_t = Box::into_raw(Box::new(std::mem::zeroed()));
            check(uv::uv_idle_init(lp.ptr(), idle), "uv_idle_init")?;
            check(uv::uv_idle_start(idle, Some(idle_cb)), "uv_idle_start")?;
        }
        lp.run()?;
        Ok(Sample::rate(
            "loop_count",
            "iter/s",
            state.result.get().ok_or("no result")?,
            1.0,
        ))
    })
}

unsafe extern "C" fn idle_cb(h: *mut uv::uv_idle_t) {
    let state: &CountState = loop_data(handle_loop(h as *mut c_void));
    let n = state.count.get() + 1;
    state.count.set(n);
    if n.is_multiple_of(1024) && state.window.started().elapsed() >= state.deadline {
        state.result.set(Some(state.window.close(n as f64)));
        uv::uv_idle_stop(h);
        uv::uv_close(h as *mut _, Some(free_on_close::<uv::uv_idle_t>));
    }
}

struct PummelState {
    want: u64,
    count: Cell<u64>,
    flag: Arc<AtomicU8>,
}

struct SendPtr(*mut uv::uv_async_t);
// SAFETY: uv_async_send is the one libuv call that is safe from any thread;
// the pointer stays valid until the pummel thread says it stopped.
unsafe impl Send for SendPtr {}

const RUNNING: u8 = 0;
const STOP: u8 = 1;
const STOPPED: u8 = 2;

/// `async_pummel`: libuv's own benchmark, one pummel thread.
pub fn async_pummel() -> RunFn {
    Box::new(|ctx| {
        let mut lp = Loop::new()?;
        let flag = Arc::new(AtomicU8::new(RUNNING));
        let state = PummelState {
            want: ctx.async_callbacks,
            count: Cell::new(0),
            flag: flag.clone(),
        };
        lp.set_data(&state);
        // SAFETY: the async handle is freed by its close callback, which
        // runs after the pummel thread stopped touching it.
        let handle = unsafe {
            let h: *mut uv::uv_async_t = Box::into_raw(Box::new(std::mem::zeroed()));
            check(uv::uv_async_init(lp.ptr(), h, Some(async_cb)), "uv_async_init")?;
            SendPtr(h)
        };
        let f = flag.clone();
        let w = Window::open();
        let pummel = std::thread::spawn(move || {
            let h = handle;
            while f.load(Ordering::Acquire) == RUNNING {
                // SAFETY: see SendPtr.
                unsafe { uv::uv_async_send(h.0) };
            }
            f.store(STOPPED, Ordering::Release);
        });
        lp.run()?;
        let m = w.close(state.count.get() as f64);
        pummel.join().map_err(|_| "pummel thread panicked")?;
        Ok(Sample::rate("async_pummel", "cb/s", m, 1.0))
    })
}

unsafe extern "C" fn async_cb(h: *mut uv::uv_async_t) {
    let state: &PummelState = loop_data(handle_loop(h as *mut c_void));
    let n = state.count.get() + 1;
    state.count.set(n);
    if n == state.want {
        state.flag.store(STOP, Ordering::Release);
        while state.flag.load(Ordering::Acquire) != STOPPED {
            std::thread::yield_now();
        }
        uv::uv_close(h as *mut _, Some(free_on_close::<uv::uv_async_t>));
    }
}

// ------------------------------------------------------------------- timers

struct TimerState {
    n: usize,
    fired: Cell<usize>,
    last: Cell<Option<Instant>>,
}

/// `million_timers`: libuv's benchmark (one array of handles).
pub fn million_timers() -> RunFn {
    Box::new(|ctx| {
        let n = ctx.timers;
        let mut lp = Loop::new()?;
        let state = TimerState {
            n,
            fired: Cell::new(0),
            last: Cell::new(None),
        };
        lp.set_data(&state);
        let rss0 = reset_peak_rss();
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let mut timers: Vec<MaybeUninit<uv::uv_timer_t>> = Vec::with_capacity(n);
        // SAFETY: the vector never reallocates (capacity n), so the handles
        // keep their addresses; they are closed before it is freed.
        unsafe {
            timers.set_len(n);
            uv::uv_update_time(lp.ptr());
            let base = Instant::now();
            for (i, t) in timers.iter_mut().enumerate() {
                uv::uv_timer_init(lp.ptr(), t.as_mut_ptr());
                let ms = timer_timeout(i, n).as_millis() as u64;
                uv::uv_timer_start(t.as_mut_ptr(), Some(timer_cb), ms, 0);
            }
            let t1 = Instant::now();
            let ran = lp.run();
            let end = state.last.get();
            let cpu = cpu_time() - cpu0;
            let peak = peak_rss_bytes().saturating_sub(rss0);
            for t in timers.iter_mut() {
                uv::uv_close(t.as_mut_ptr() as *mut _, None);
            }
            lp.run()?;
            ran?;
            let end = end.ok_or("not every timer fired")?;
            let last_deadline = base + timer_timeout(n - 1, n);
            Ok(timer_sample(TimerRun {
                init: t1 - t0,
                dispatch: end - t1,
                late_ms: late_ms(end, last_deadline),
                cpu,
                peak_rss: peak,
                timers: n,
            }))
        }
    })
}

unsafe extern "C" fn timer_cb(h: *mut uv::uv_timer_t) {
    let state: &TimerState = loop_data(handle_loop(h as *mut c_void));
    state.fired.set(state.fired.get() + 1);
    if state.fired.get() == state.n {
        state.last.set(Some(Instant::now()));
    }
}

// -------------------------------------------------------------------- files

#[repr(C)]
struct FsRead {
    req: uv::uv_fs_t,
    buf: Vec<u8>,
}

struct FileState {
    fd: c_int,
    size: u64,
    next: Cell<u64>,
    read: Cell<u64>,
    failure: std::cell::RefCell<Option<String>>,
}

/// `file_read`: 64 KiB `uv_fs_read`s at explicit offsets, four in flight.
pub fn file_read() -> RunFn {
    Box::new(|ctx| {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&ctx.file_path).map_err(err)?;
        let mut lp = Loop::new()?;
        let state = FileState {
            fd: file.as_raw_fd(),
            size: ctx.file_size,
            next: Cell::new(0),
            read: Cell::new(0),
            failure: Default::default(),
        };
        lp.set_data(&state);
        let w = Window::open();
        for _ in 0..FILE_IN_FLIGHT {
            let r = Box::into_raw(Box::new(FsRead {
                // SAFETY: a plain C struct that uv_fs_read initialises.
                req: unsafe { std::mem::zeroed() },
                buf: vec![0; FILE_CHUNK],
            }));
            // SAFETY: the request lives until its last callback frees it.
            unsafe { fs_next(lp.ptr(), r) };
        }
        lp.run()?;
        let m = w.close(state.read.get() as f64);
        if let Some(f) = state.failure.take() {
            return Err(f);
        }
        if state.read.get() != ctx.file_size {
            return Err(format!("read {} of {} bytes", state.read.get(), ctx.file_size));
        }
        Ok(file_sample(m))
    })
}

unsafe fn fs_next(lp: *mut uv::uv_loop_t, r: *mut FsRead) {
    let state: &FileState = loop_data(lp);
    let offset = state.next.get();
    if offset >= state.size {
        drop(Box::from_raw(r));
        return;
    }
    state.next.set(offset + FILE_CHUNK as u64);
    let b = uv::uv_buf_t {
        base: (*r).buf.as_mut_ptr() as *mut c_char,
        len: (*r).buf.len(),
    };
    let rc = uv::uv_fs_read(lp, &mut (*r).req, state.fd, &b, 1, offset as i64, Some(fs_done));
    if rc < 0 {
        state.failure.borrow_mut().get_or_insert(uv_error(rc));
        drop(Box::from_raw(r));
    }
}

unsafe extern "C" fn fs_done(req: *mut uv::uv_fs_t) {
    let r = req as *mut FsRead;
    let lp = (*req).loop_;
    let state: &FileState = loop_data(lp);
    let result = (*req).result;
    uv::uv_fs_req_cleanup(req);
    if result < 0 {
        state.failure.borrow_mut().get_or_insert(uv_error(result as c_int));
        drop(Box::from_raw(r));
        return;
    }
    state.read.set(state.read.get() + result as u64);
    fs_next(lp, r);
}

// ---------------------------------------------------------------------- dns

struct DnsState {
    left: Cell<usize>,
    done: Cell<usize>,
    failure: std::cell::RefCell<Option<String>>,
}

/// `dns`: `uv_getaddrinfo("localhost")`, ten in flight.
pub fn dns() -> RunFn {
    Box::new(|ctx| {
        let mut lp = Loop::new()?;
        let state = DnsState {
            left: Cell::new(ctx.dns_lookups),
            done: Cell::new(0),
            failure: Default::default(),
        };
        lp.set_data(&state);
        let w = Window::open();
        for _ in 0..DNS_IN_FLIGHT.min(ctx.dns_lookups) {
            // SAFETY: each request is a Box freed by its last callback.
            unsafe {
                let req: *mut uv::uv_getaddrinfo_t = Box::into_raw(Box::new(std::mem::zeroed()));
                dns_next(lp.ptr(), req);
            }
        }
        lp.run()?;
        let m = w.close(state.done.get() as f64);
        if let Some(f) = state.failure.take() {
            return Err(f);
        }
        Ok(Sample::rate("dns", "lookups/s", m, 1.0))
    })
}

unsafe fn dns_next(lp: *mut uv::uv_loop_t, req: *mut uv::uv_getaddrinfo_t) {
    let state: &DnsState = loop_data(lp);
    if state.left.get() == 0 {
        drop(Box::from_raw(req));
        return;
    }
    state.left.set(state.left.get() - 1);
    let rc = uv::uv_getaddrinfo(
        lp,
        req,
        Some(dns_done),
        c"localhost".as_ptr(),
        std::ptr::null(),
        std::ptr::null(),
    );
    if rc < 0 {
        state.failure.borrow_mut().get_or_insert(uv_error(rc));
        drop(Box::from_raw(req));
    }
}

unsafe extern "C" fn dns_done(req: *mut uv::uv_getaddrinfo_t, status: c_int, res: *mut uv::addrinfo) {
    let lp = (*req).loop_;
    let state: &DnsState = loop_data(lp);
    uv::uv_freeaddrinfo(res);
    if status < 0 {
        state.failure.borrow_mut().get_or_insert(uv_error(status));
        drop(Box::from_raw(req));
        return;
    }
    state.done.set(state.done.get() + 1);
    dns_next(lp, req);
}

// ---------------------------------------------------------- idle connections

struct IdleState {
    accepted: Cell<usize>,
    conns: std::cell::RefCell<Vec<*mut uv::uv_tcp_t>>,
}

/// `idle_connections`: RSS growth per accepted connection with reading
/// started (libuv asks for a buffer only when data arrives).
pub fn idle_connections() -> RunFn {
    Box::new(|ctx| {
        let n = ctx.idle_connections;
        let mut lp = Loop::new()?;
        let state = IdleState {
            accepted: Cell::new(0),
            conns: std::cell::RefCell::new(Vec::with_capacity(n)),
        };
        lp.set_data(&state);
        // SAFETY: handles live in Boxes freed by their close callbacks.
        let listener: *mut uv::uv_tcp_t = unsafe {
            let l: *mut uv::uv_tcp_t = Box::into_raw(Box::new(std::mem::zeroed()));
            check(uv::uv_tcp_init(lp.ptr(), l), "uv_tcp_init")?;
            let sa = sockaddr(loopback());
            check(
                uv::uv_tcp_bind(l, &sa as *const _ as *const uv::sockaddr, 0),
                "uv_tcp_bind",
            )?;
            check(
                uv::uv_listen(l as *mut uv::uv_stream_t, 1024, Some(idle_accept)),
                "uv_listen",
            )?;
            l
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], local_port(listener)?));
        let release = Arc::new(AtomicBool::new(false));
        let mark = MemMark::now();
        let clients = idle_clients(addr, n, release.clone());
        while state.accepted.get() < n && !clients.is_finished() {
            lp.run_once();
        }
        let sample = mark.idle_sample(n);
        release.store(true, Ordering::Release);
        let joined = clients.join().map_err(|_| "client thread panicked")?;
        // SAFETY: every handle is closed once; the loop then frees them.
        unsafe {
            for c in state.conns.borrow_mut().drain(..) {
                uv::uv_close(c as *mut _, Some(free_on_close::<uv::uv_tcp_t>));
            }
            uv::uv_close(listener as *mut _, Some(free_on_close::<uv::uv_tcp_t>));
        }
        lp.run()?;
        joined?;
        if state.accepted.get() < n {
            return Err(format!("accepted {} of {n}", state.accepted.get()));
        }
        Ok(sample)
    })
}

unsafe extern "C" fn idle_accept(server: *mut uv::uv_stream_t, status: c_int) {
    if status < 0 {
        return;
    }
    let lp = handle_loop(server as *mut c_void);
    let state: &IdleState = loop_data(lp);
    let c: *mut uv::uv_tcp_t = Box::into_raw(Box::new(std::mem::zeroed()));
    uv::uv_tcp_init(lp, c);
    if uv::uv_accept(server, c as *mut _) != 0 {
        uv::uv_close(c as *mut _, Some(free_on_close::<uv::uv_tcp_t>));
        return;
    }
    uv::uv_read_start(c as *mut _, Some(idle_alloc), Some(idle_read));
    state.accepted.set(state.accepted.get() + 1);
    state.conns.borrow_mut().push(c);
}

unsafe extern "C" fn idle_alloc(_h: *mut uv::uv_handle_t, _size: usize, buf: *mut uv::uv_buf_t) {
    (*buf).base = std::ptr::null_mut();
    (*buf).len = 0;
}

unsafe extern "C" fn idle_read(_s: *mut uv::uv_stream_t, _n: isize, _b: *const uv::uv_buf_t) {}
