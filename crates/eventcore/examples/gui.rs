//! A real Windows GUI program on eventcore: a top-level Win32 window whose
//! text is updated live by a driver timer, by a TCP client that talks to an
//! echo server over 127.0.0.1 (server and client both on the same driver),
//! and by a directory watcher on a temporary directory that the timer changes
//! every half second — all on the window's own thread. The window stays
//! responsive throughout: the driver's wait pumps the thread's window
//! messages, and each change repaints the window (`InvalidateRect`).
//!
//! Two ways to run it:
//!
//! - By default the driver is in charge: `process_events(None)` waits for I/O
//!   and timers and dispatches the window's messages as they arrive. Closing
//!   the window posts `WM_QUIT` (`WM_DESTROY` → `PostQuitMessage`), and
//!   `process_events` returns `ExitReason::Quit`.
//! - With `--attached` the program's own `GetMessageW` loop is in charge and
//!   the driver is attached to it (`Driver::attach_to_message_loop`). The
//!   driver's callbacks then keep running inside every loop that dispatches
//!   messages — including the modal loop Windows runs while the window is
//!   being moved or resized, during which the default mode's callbacks wait
//!   until the mouse button is released.
//!
//! - With `--async` the TCP client is an `eventcore::rt` task: the driver
//!   goes into an `rt::Executor`, whose `block_on(rt::quit_message())` runs
//!   the window (the executor's waits pump the messages too) while the task
//!   sends a ping every tick and awaits its echo, updating the window as it
//!   goes; the server, the timer and the watcher stay on the callback API of
//!   the same driver.
//!
//! `--seconds N` closes the window after N seconds (`cargo xtask screenshot`
//! runs it under Wine with Xvfb that way, in `--async` mode). Other targets
//! only print a note.

#[cfg(not(windows))]
fn main() {
    println!("this example needs Windows");
}

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    match app::run() {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(message) => {
            eprintln!("gui: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(windows)]
mod app {
    use std::cell::RefCell;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use eventcore::{Driver, ExitReason, FileChange, IoMode, ListenOptions, StreamSocket, TimerId, WatcherId};
    use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, RECT, WPARAM};
    use windows_sys::Win32::Graphics::Gdi::{
        BeginPaint, BitBlt, CreateCompatibleBitmap, CreateCompatibleDC, CreateFontW, CreateSolidBrush, DeleteDC,
        DeleteObject, DrawTextW, EndPaint, FillRect, InvalidateRect, SelectObject, SetBkMode, SetTextColor,
        ANTIALIASED_QUALITY, CLIP_DEFAULT_PRECIS, DEFAULT_CHARSET, DEFAULT_PITCH, DT_END_ELLIPSIS, DT_LEFT,
        DT_NOPREFIX, DT_SINGLELINE, DT_VCENTER, FF_SWISS, FW_BOLD, FW_NORMAL, HFONT, OUT_DEFAULT_PRECIS, PAINTSTRUCT,
        SRCCOPY, TRANSPARENT,
    };
    use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        CreateWindowExW, DefWindowProcW, DispatchMessageW, GetClientRect, GetMessageW, LoadCursorW, PostMessageW,
        PostQuitMessage, RegisterClassExW, TranslateMessage, CS_HREDRAW, CS_VREDRAW, CW_USEDEFAULT, IDC_ARROW, MSG,
        WM_CLOSE, WM_DESTROY, WM_ENTERSIZEMOVE, WM_ERASEBKGND, WM_EXITSIZEMOVE, WM_PAINT, WM_SIZE, WNDCLASSEXW,
        WS_OVERLAPPEDWINDOW, WS_VISIBLE,
    };

    const TITLE: &str = "eventcore GUI example";
    const TICK: Duration = Duration::from_millis(100);

    /// Everything the window shows. The driver's callbacks change it and ask
    /// for a repaint; `WM_PAINT` draws it.
    #[derive(Default)]
    struct State {
        hwnd: HWND,
        attached: bool,
        started: Option<Instant>,
        close_after: Option<Duration>,
        ticks: u64,
        async_client: bool,
        server: Option<SocketAddr>,
        accepted: u64,
        client: Option<StreamSocket>,
        in_flight: bool,
        round_trips: u64,
        last_rtt: Option<Duration>,
        last_echo: String,
        tcp_error: Option<String>,
        messages: u64,
        client_size: (i32, i32),
        moving: bool,
        fonts: Option<(HFONT, HFONT)>,
        watched: Option<PathBuf>,
        changes: u64,
        last_change: Option<String>,
        watch_error: Option<String>,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::default();
    }

    /// Changes the state and repaints the window.
    fn update(f: impl FnOnce(&mut State)) {
        let hwnd = STATE.with(|s| {
            let mut s = s.borrow_mut();
            f(&mut s);
            s.hwnd
        });
        if !hwnd.is_null() {
            // SAFETY: our own window; a null rectangle invalidates the whole
            // client area, and the background is painted in WM_PAINT.
            unsafe { InvalidateRect(hwnd, std::ptr::null(), 0) };
        }
    }

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    struct Options {
        seconds: Option<u64>,
        attached: bool,
        async_client: bool,
    }

    fn parse_args() -> Result<Options, String> {
        let mut options = Options {
            seconds: None,
            attached: false,
            async_client: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seconds" => {
                    let value = args.next().ok_or("--seconds needs a number")?;
                    let seconds = value
                        .parse()
                        .map_err(|_| format!("--seconds: not a number of seconds: {value}"))?;
                    options.seconds = Some(seconds);
                }
                "--attached" => options.attached = true,
                "--async" => options.async_client = true,
                other => {
                    return Err(format!(
                        "unknown argument {other}; usage: gui [--seconds N] [--attached | --async]"
                    ))
                }
            }
        }
        Ok(options)
    }

    pub fn run() -> Result<i32, String> {
        let options = parse_args()?;
        let mut drv = Driver::new().map_err(|e| format!("cannot create the driver: {e}"))?;
        let hwnd = create_window()?;
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.hwnd = hwnd;
            s.attached = options.attached;
            s.async_client = options.async_client;
            s.started = Some(Instant::now());
            s.close_after = options.seconds.map(Duration::from_secs);
            s.fonts = Some(create_fonts());
        });

        // The periodic timer drives the TCP client and refreshes the text
        // (the window alone keeps the loop waiting for its messages).
        let timer = drv.timers().create();
        drv.timers().set(timer, TICK, TICK).map_err(|e| format!("timer: {e}"))?;
        drv.timers().wait(timer, tick).map_err(|e| format!("timer: {e}"))?;
        // `--seconds`: close the window the way a person would.
        let closer = options.seconds.map(|seconds| {
            let t = drv.timers().create();
            drv.timers()
                .set(t, Duration::from_secs(seconds), Duration::ZERO)
                .expect("a new timer");
            drv.timers()
                .wait(t, move |_, _, fired| {
                    if fired {
                        // SAFETY: posting to our own window.
                        unsafe { PostMessageW(hwnd, WM_CLOSE, 0, 0) };
                    }
                })
                .expect("a new timer");
            t
        });
        let listener = start_tcp(&mut drv, !options.async_client)?;
        let watcher = start_watcher(&mut drv);

        let code = if options.async_client {
            // The driver goes into an executor; its `block_on` waits in the
            // driver, which pumps the window's messages as before.
            let addr = STATE.with(|s| s.borrow().server).ok_or("no server address")?;
            drv.set_message_hook(|_| {
                STATE.with(|s| s.borrow_mut().messages += 1);
                false
            });
            let mut ex = eventcore::rt::Executor::new(drv);
            let client = ex.spawn(async_client(addr));
            let code = ex.block_on(eventcore::rt::quit_message());
            client.abort();
            // Back to the driver for the clean-up below: the executor gives
            // it up once the task and every handle it held are gone.
            ex.block_on(async {});
            return Ok(ex.with_driver(|drv| {
                drv.clear_message_hook();
                cleanup(drv, timer, closer, listener, watcher, code)
            }));
        } else if options.attached {
            let attached = drv.attach_to_message_loop(Duration::from_millis(10));
            let code = message_loop();
            drv = attached.detach();
            code
        } else {
            drv.set_message_hook(|_| {
                STATE.with(|s| s.borrow_mut().messages += 1);
                false
            });
            let code = loop {
                match drv.process_events(None) {
                    Ok(ExitReason::Quit(code)) => break code,
                    Ok(ExitReason::Idle | ExitReason::Timeout) => {}
                    Ok(other) => return Err(format!("the driver stopped: {other:?}")),
                    Err(e) => return Err(format!("process_events: {e}")),
                }
            };
            drv.clear_message_hook();
            code
        };

        Ok(cleanup(&mut drv, timer, closer, listener, watcher, code))
    }

    /// The window is gone: release everything and let the cancelled
    /// operations finish, so the driver ends without leaks.
    fn cleanup(
        drv: &mut Driver,
        timer: TimerId,
        closer: Option<TimerId>,
        listener: eventcore::StreamListener,
        watcher: Option<WatcherId>,
        code: i32,
    ) -> i32 {
        let (client, summary, watched) = STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.hwnd = std::ptr::null_mut();
            if let Some((normal, bold)) = s.fonts.take() {
                // SAFETY: fonts we created; no DC has them selected any more.
                unsafe {
                    DeleteObject(normal);
                    DeleteObject(bold);
                }
            }
            let summary = format!(
                "window closed after {:.1} s: {} timer ticks, {} accepted, {} TCP round trips ({}), \
                 {} seen by the directory watcher ({})",
                s.started.map(|t| t.elapsed()).unwrap_or_default().as_secs_f64(),
                s.ticks,
                plural(s.accepted, "connection", "connections"),
                s.round_trips,
                s.tcp_error.as_deref().unwrap_or("no error"),
                plural(s.changes, "change", "changes"),
                s.watch_error.as_deref().unwrap_or("no error"),
            );
            (s.client.take(), summary, s.watched.take())
        });
        let _ = drv.release_ref(timer);
        if let Some(t) = closer {
            let _ = drv.release_ref(t);
        }
        let _ = drv.release_ref(listener);
        if let Some(client) = client {
            let _ = drv.release_ref(client);
        }
        if let Some(watcher) = watcher {
            let _ = drv.release_ref(watcher);
        }
        while let Ok(ExitReason::Idle) = drv.process_events(Some(Duration::from_secs(2))) {}
        if let Some(dir) = watched {
            let _ = std::fs::remove_dir_all(dir);
        }
        println!("gui: {summary}; exit code {code}");
        println!("gui: leak report: {}", drv.leak_report());
        code
    }

    /// The `--async` TCP client: a ping every tick, its echo awaited.
    async fn async_client(addr: SocketAddr) {
        let stream = match eventcore::rt::TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(e) => return update(|s| s.tcp_error = Some(format!("connect: {e}"))),
        };
        let _ = stream.set_nodelay(true);
        for n in 1.. {
            eventcore::rt::sleep(TICK).await;
            let started = Instant::now();
            let message = format!("ping {n}").into_bytes();
            let len = message.len();
            if let (Err(e), _) = stream.write_all_owned(message).await {
                return update(|s| s.tcp_error = Some(format!("write: {e}")));
            }
            match stream.read_exact_owned(Vec::with_capacity(len)).await {
                (Ok(_), buf) => update(|s| {
                    s.round_trips = n;
                    s.last_rtt = Some(started.elapsed());
                    s.last_echo = String::from_utf8_lossy(&buf).into_owned();
                }),
                (Err(e), _) => return update(|s| s.tcp_error = Some(format!("read: {e}"))),
            }
        }
    }

    /// The program's own message loop (`--attached`): the driver's callbacks
    /// run from its hidden window's messages, dispatched here.
    fn message_loop() -> i32 {
        // SAFETY: MSG is plain data that GetMessageW fills.
        let mut msg: MSG = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: the standard loop over this thread's queue.
            let got = unsafe { GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) };
            if got == 0 {
                return msg.wParam as i32;
            }
            if got == -1 {
                return 1;
            }
            STATE.with(|s| s.borrow_mut().messages += 1);
            // SAFETY: a message GetMessageW just returned.
            unsafe {
                TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
        }
    }

    /// The periodic timer's callback: counts, starts the next round trip,
    /// and waits for the next tick.
    fn tick(drv: &mut Driver, timer: TimerId, fired: bool) {
        if !fired {
            return;
        }
        let (start, touch) = STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.ticks += 1;
            // Every half second, a change in the watched directory.
            let touch = match &s.watched {
                Some(dir) if s.ticks % 5 == 0 => Some((dir.clone(), s.ticks / 5)),
                _ => None,
            };
            let start = match s.client {
                Some(conn) if !s.in_flight => {
                    s.in_flight = true;
                    Some((conn, s.round_trips + 1))
                }
                _ => None,
            };
            (start, touch)
        });
        if let Some((conn, n)) = start {
            round_trip(drv, conn, n);
        }
        if let Some((dir, step)) = touch {
            if let Err(e) = change_files(&dir, step) {
                update(|s| s.watch_error = Some(format!("changing files: {e}")));
            }
        }
        update(|_| {});
        if let Err(e) = drv.timers().wait(timer, tick) {
            update(|s| s.tcp_error = Some(format!("timer: {e}")));
        }
    }

    /// A directory watcher on a fresh temporary directory, which the timer
    /// changes every half second. `None` (and the reason on the screen) if
    /// the watch cannot be set up.
    fn start_watcher(drv: &mut Driver) -> Option<WatcherId> {
        let dir = std::env::temp_dir().join(format!("eventcore-gui-example-{}", std::process::id()));
        let watcher = std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|()| {
                drv.watchers()
                    .watch_directory(&dir, false, on_change)
                    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))
            });
        match watcher {
            Ok(watcher) => {
                update(|s| s.watched = Some(dir));
                Some(watcher)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                update(|s| s.watch_error = Some(e));
                None
            }
        }
    }

    fn on_change(_: &mut Driver, _: WatcherId, change: eventcore::Result<FileChange>) {
        update(|s| match change {
            Ok(change) => {
                s.changes += 1;
                s.last_change = Some(format!("{:?} {}", change.kind, change.name.to_string_lossy()));
            }
            Err(e) => s.watch_error = Some(format!("watcher: {e}")),
        });
    }

    /// One step of a cycle of changes: create a file, change it, rename it,
    /// remove it.
    fn change_files(dir: &Path, step: u64) -> std::io::Result<()> {
        let (note, renamed) = (dir.join("note.txt"), dir.join("renamed.txt"));
        match step % 4 {
            1 => std::fs::write(&note, format!("step {step}\n")),
            2 => std::fs::write(&note, format!("step {step}, changed\n")),
            3 => std::fs::rename(&note, &renamed),
            _ => match std::fs::remove_file(&renamed) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        }
    }

    /// The echo server on 127.0.0.1 and a client connecting to it.
    fn start_tcp(drv: &mut Driver, callback_client: bool) -> Result<eventcore::StreamListener, String> {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let listener = drv
            .sockets()
            .listen(any, ListenOptions::default(), |drv, _, accepted| match accepted {
                Ok((conn, _peer)) => {
                    update(|s| s.accepted += 1);
                    echo(drv, conn, Vec::with_capacity(256));
                }
                Err(e) => update(|s| s.tcp_error = Some(format!("accept: {e}"))),
            })
            .map_err(|e| format!("listen: {e}"))?;
        let addr = drv
            .sockets()
            .local_address(listener)
            .ok()
            .and_then(|a| a.as_inet())
            .ok_or("the listener has no address")?;
        update(|s| s.server = Some(addr));
        if !callback_client {
            return Ok(listener);
        }
        drv.sockets()
            .connect(addr, None, |drv, conn, result| match result {
                Ok(()) => {
                    let _ = drv.sockets().set_no_delay(conn, true);
                    update(|s| s.client = Some(conn));
                }
                Err(e) => {
                    let _ = drv.release_ref(conn);
                    update(|s| s.tcp_error = Some(format!("connect: {e}")));
                }
            })
            .map_err(|e| format!("connect: {e}"))?;
        Ok(listener)
    }

    /// The server side of one connection: echoes whatever arrives until the
    /// client goes away.
    fn echo(drv: &mut Driver, conn: StreamSocket, buf: Vec<u8>) {
        drv.sockets().read(conn, buf, IoMode::Once, |drv, conn, result, buf| {
            if result.is_err() {
                // The client closed (or the program is ending).
                let _ = drv.release_ref(conn);
                return;
            }
            // The buffer holds what arrived.
            drv.sockets()
                .write(conn, buf, IoMode::All, |drv, conn, result, mut buf| {
                    if result.is_err() {
                        let _ = drv.release_ref(conn);
                        return;
                    }
                    buf.clear();
                    echo(drv, conn, buf);
                });
        });
    }

    /// One client round trip: send "ping N", read the echo back.
    fn round_trip(drv: &mut Driver, conn: StreamSocket, n: u64) {
        let started = Instant::now();
        let message = format!("ping {n}").into_bytes();
        let len = message.len();
        drv.sockets()
            .write(conn, message, IoMode::All, move |drv, conn, result, _| {
                if let Err(e) = result {
                    return client_failed(drv, conn, format!("write: {e}"));
                }
                drv.sockets().read(
                    conn,
                    Vec::with_capacity(len),
                    IoMode::All,
                    move |drv, conn, result, buf| {
                        if let Err(e) = result {
                            return client_failed(drv, conn, format!("read: {e}"));
                        }
                        update(|s| {
                            s.in_flight = false;
                            s.round_trips = n;
                            s.last_rtt = Some(started.elapsed());
                            s.last_echo = String::from_utf8_lossy(&buf).into_owned();
                        });
                    },
                );
            });
    }

    fn client_failed(drv: &mut Driver, conn: StreamSocket, error: String) {
        let _ = drv.release_ref(conn);
        update(|s| {
            s.client = None;
            s.in_flight = false;
            s.tcp_error.get_or_insert(error);
        });
    }

    fn create_window() -> Result<HWND, String> {
        let class = wide("eventcore-gui-example");
        let title = wide(TITLE);
        // SAFETY: registers the example's window class and creates a visible
        // top-level window of it; the strings outlive both calls.
        unsafe {
            let instance = GetModuleHandleW(std::ptr::null());
            let mut wc: WNDCLASSEXW = std::mem::zeroed();
            wc.cbSize = std::mem::size_of::<WNDCLASSEXW>() as u32;
            wc.style = CS_HREDRAW | CS_VREDRAW;
            wc.lpfnWndProc = Some(window_proc);
            wc.hInstance = instance;
            wc.hCursor = LoadCursorW(std::ptr::null_mut(), IDC_ARROW);
            wc.lpszClassName = class.as_ptr();
            if RegisterClassExW(&wc) == 0 {
                return Err(format!("RegisterClassExW: {}", std::io::Error::last_os_error()));
            }
            let hwnd = CreateWindowExW(
                0,
                class.as_ptr(),
                title.as_ptr(),
                WS_OVERLAPPEDWINDOW | WS_VISIBLE,
                CW_USEDEFAULT,
                CW_USEDEFAULT,
                640,
                400,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                instance,
                std::ptr::null(),
            );
            if hwnd.is_null() {
                return Err(format!("CreateWindowExW: {}", std::io::Error::last_os_error()));
            }
            Ok(hwnd)
        }
    }

    fn create_fonts() -> (HFONT, HFONT) {
        let face = wide("Tahoma");
        let font = |height: i32, weight: u32| {
            // SAFETY: a plain font description; the face name outlives the call.
            unsafe {
                CreateFontW(
                    -height,
                    0,
                    0,
                    0,
                    weight as i32,
                    0,
                    0,
                    0,
                    u32::from(DEFAULT_CHARSET),
                    u32::from(OUT_DEFAULT_PRECIS),
                    u32::from(CLIP_DEFAULT_PRECIS),
                    u32::from(ANTIALIASED_QUALITY),
                    u32::from(DEFAULT_PITCH | FF_SWISS),
                    face.as_ptr(),
                )
            }
        };
        (font(17, FW_NORMAL), font(22, FW_BOLD))
    }

    unsafe extern "system" fn window_proc(hwnd: HWND, msg: u32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
        match msg {
            WM_PAINT => {
                paint(hwnd);
                0
            }
            // The whole client area is painted in WM_PAINT (no flicker).
            WM_ERASEBKGND => 1,
            WM_SIZE => {
                let (w, h) = ((lparam & 0xFFFF) as i32, ((lparam >> 16) & 0xFFFF) as i32);
                update(|s| s.client_size = (w, h));
                0
            }
            WM_ENTERSIZEMOVE | WM_EXITSIZEMOVE => {
                update(|s| s.moving = msg == WM_ENTERSIZEMOVE);
                0
            }
            WM_DESTROY => {
                // SAFETY: ends the thread's message loop: the driver's
                // `process_events` (or our GetMessageW loop) sees WM_QUIT.
                unsafe { PostQuitMessage(0) };
                0
            }
            // SAFETY: default handling of a message of our own window.
            _ => unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
        }
    }

    /// The text lines of the window, each with whether it is a heading.
    fn lines(s: &State) -> Vec<(bool, String)> {
        let elapsed = s.started.map(|t| t.elapsed()).unwrap_or_default();
        let mut lines = vec![(true, "eventcore on the WinAPI backend".to_owned())];
        lines.push((
            false,
            if s.attached {
                "Attached: this program's GetMessageW loop runs the driver's callbacks".to_owned()
            } else if s.async_client {
                "Async: an rt task is the TCP client; block_on waits and pumps messages".to_owned()
            } else {
                "The driver in charge: process_events waits for I/O and pumps messages".to_owned()
            },
        ));
        lines.push((false, String::new()));
        lines.push((true, "Timer".to_owned()));
        lines.push((
            false,
            format!(
                "{:.1} s elapsed, {} ticks (every {} ms)",
                elapsed.as_secs_f64(),
                s.ticks,
                TICK.as_millis()
            ),
        ));
        lines.push((true, "TCP echo over loopback".to_owned()));
        lines.push((
            false,
            match s.server {
                Some(addr) => format!(
                    "Server on {addr}: {} accepted",
                    plural(s.accepted, "connection", "connections")
                ),
                None => "Server: not listening".to_owned(),
            },
        ));
        lines.push((
            false,
            match (&s.tcp_error, s.last_rtt) {
                (Some(e), _) => format!("Client: {} round trips, then {e}", s.round_trips),
                (None, Some(rtt)) => format!(
                    "Client: {} round trips completed, last \"{}\" in {:.2} ms",
                    s.round_trips,
                    s.last_echo,
                    rtt.as_secs_f64() * 1000.0
                ),
                (None, None) if s.client.is_some() => "Client: connected".to_owned(),
                (None, None) => "Client: connecting…".to_owned(),
            },
        ));
        lines.push((true, "Directory watcher".to_owned()));
        lines.push((
            false,
            match &s.watched {
                Some(dir) => format!("Watching {}", dir.display()),
                None => "Not watching".to_owned(),
            },
        ));
        lines.push((
            false,
            match (&s.watch_error, &s.last_change) {
                (Some(e), _) => format!("{}, then {e}", plural(s.changes, "change", "changes")),
                (None, Some(last)) => format!("{} seen, last: {last}", plural(s.changes, "change", "changes")),
                (None, None) => "No changes yet (the timer makes one every 0.5 s)".to_owned(),
            },
        ));
        lines.push((true, "Window".to_owned()));
        lines.push((
            false,
            format!(
                "{} messages dispatched, client area {} × {}{}",
                s.messages,
                s.client_size.0,
                s.client_size.1,
                if s.moving {
                    " (being moved / resized)"
                } else {
                    " (move or resize me)"
                }
            ),
        ));
        lines.push((false, String::new()));
        lines.push((
            false,
            match s.close_after {
                Some(limit) => format!(
                    "Closes by itself in {} s, or close the window to quit.",
                    limit.saturating_sub(elapsed).as_secs_f64().ceil()
                ),
                None => "Close the window to quit.".to_owned(),
            },
        ));
        lines
    }

    fn plural(n: u64, one: &str, many: &str) -> String {
        format!("{n} {}", if n == 1 { one } else { many })
    }

    const fn rgb(r: u8, g: u8, b: u8) -> u32 {
        r as u32 | (g as u32) << 8 | (b as u32) << 16
    }

    /// Draws the state into an off-screen bitmap, then copies it to the
    /// window in one go.
    fn paint(hwnd: HWND) {
        let Ok(text) = STATE.with(|s| s.try_borrow().map(|s| (lines(&s), s.fonts))) else {
            return;
        };
        let (lines, fonts) = text;
        // SAFETY: the standard BeginPaint / EndPaint pair on our own window;
        // every GDI object created here is selected out and deleted before
        // EndPaint.
        unsafe {
            let mut ps: PAINTSTRUCT = std::mem::zeroed();
            let hdc = BeginPaint(hwnd, &mut ps);
            let mut client: RECT = std::mem::zeroed();
            GetClientRect(hwnd, &mut client);
            let (w, h) = (client.right.max(1), client.bottom.max(1));
            let mem = CreateCompatibleDC(hdc);
            let bitmap = CreateCompatibleBitmap(hdc, w, h);
            let old_bitmap = SelectObject(mem, bitmap);

            let background = CreateSolidBrush(rgb(250, 250, 247));
            FillRect(mem, &client, background);
            DeleteObject(background);
            let band = CreateSolidBrush(rgb(36, 70, 122));
            let band_rect = RECT {
                left: 0,
                top: 0,
                right: w,
                bottom: 8,
            };
            FillRect(mem, &band_rect, band);
            DeleteObject(band);

            SetBkMode(mem, TRANSPARENT as i32);
            let old_font = fonts.map(|(normal, _)| SelectObject(mem, normal));
            let mut y = 18;
            for (heading, line) in &lines {
                if line.is_empty() {
                    // A gap. DrawTextW is never given an empty string: Wine
                    // reads it anyway, and a fault inside a window procedure
                    // is swallowed silently, ending the paint half-way.
                    y += 12;
                    continue;
                }
                let (height, color, indent) = if *heading {
                    (28, rgb(36, 70, 122), 20)
                } else {
                    (22, rgb(30, 30, 30), 36)
                };
                if let Some((normal, bold)) = fonts {
                    SelectObject(mem, if *heading { bold } else { normal });
                }
                SetTextColor(mem, color);
                let text: Vec<u16> = line.encode_utf16().collect();
                let mut rect = RECT {
                    left: indent,
                    top: y,
                    right: w - 12,
                    bottom: y + height,
                };
                DrawTextW(
                    mem,
                    text.as_ptr(),
                    text.len() as i32,
                    &mut rect,
                    DT_LEFT | DT_SINGLELINE | DT_VCENTER | DT_NOPREFIX | DT_END_ELLIPSIS,
                );
                y += height;
            }
            if let Some(old) = old_font {
                SelectObject(mem, old);
            }

            BitBlt(hdc, 0, 0, w, h, mem, 0, 0, SRCCOPY);
            SelectObject(mem, old_bitmap);
            DeleteObject(bitmap);
            DeleteDC(mem);
            EndPaint(hwnd, &ps);
        }
    }
}
