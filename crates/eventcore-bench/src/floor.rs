//! Hand-written floors: the same work with blocking system calls and no
//! event loop, where such a program makes sense. They show what the kernel
//! (and the hypervisor) cost on their own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::harness::*;

/// `ping_pong`: two threads doing blocking send / recv.
pub fn ping_pong(name: &'static str) -> RunFn {
    Box::new(move |ctx| {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let server = std::thread::spawn(move || -> Result<()> {
            let (mut s, _) = listener.accept().map_err(err)?;
            s.set_nodelay(true).map_err(err)?;
            let mut buf = [0u8; 64];
            loop {
                let n = s.read(&mut buf).map_err(err)?;
                if n == 0 {
                    return Ok(());
                }
                s.write_all(&buf[..n]).map_err(err)?;
            }
        });
        let mut c = TcpStream::connect(addr).map_err(err)?;
        c.set_nodelay(true).map_err(err)?;
        let mut reply = [0u8; 5];
        let w = Window::open();
        let mut n = 0u64;
        let m = loop {
            c.write_all(PING).map_err(err)?;
            c.read_exact(&mut reply).map_err(err)?;
            n += 1;
            if w.started().elapsed() >= ctx.duration {
                break w.close(n as f64);
            }
        };
        drop(c);
        server.join().map_err(|_| "server thread panicked")??;
        Ok(Sample::rate(name, "rt/s", m, 1.0))
    })
}

/// `pump`: a blocking writer thread (8 KiB writes) and reader (64 KiB reads).
pub fn pump() -> RunFn {
    Box::new(|ctx| {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let sunk = Arc::new(AtomicU64::new(0));
        let s2 = sunk.clone();
        let reader = std::thread::spawn(move || -> Result<()> {
            let (mut s, _) = listener.accept().map_err(err)?;
            let mut buf = vec![0u8; PUMP_READ];
            loop {
                match s.read(&mut buf).map_err(err)? {
                    0 => return Ok(()),
                    n => s2.fetch_add(n as u64, Ordering::Relaxed),
                };
            }
        });
        let mut c = TcpStream::connect(addr).map_err(err)?;
        c.set_nodelay(true).map_err(err)?;
        let buf = vec![b'x'; PUMP_WRITE];
        let start = sunk.load(Ordering::Relaxed);
        let w = Window::open();
        let m = loop {
            c.write_all(&buf).map_err(err)?;
            if w.started().elapsed() >= ctx.duration {
                break w.close((sunk.load(Ordering::Relaxed) - start) as f64);
            }
        };
        drop(c);
        reader.join().map_err(|_| "reader thread panicked")??;
        Ok(pump_sample(m))
    })
}

/// `udp_pummel`: one thread, a blocking send then a blocking receive (the
/// datagram is already queued when `send` returns on loopback).
pub fn udp_pummel() -> RunFn {
    Box::new(|ctx| {
        let rx = UdpSocket::bind("127.0.0.1:0").map_err(err)?;
        let tx = UdpSocket::bind("127.0.0.1:0").map_err(err)?;
        tx.connect(rx.local_addr().map_err(err)?).map_err(err)?;
        let mut buf = [0u8; 1500];
        let w = Window::open();
        let mut n = 0u64;
        let m = loop {
            tx.send(DATAGRAM).map_err(err)?;
            rx.recv(&mut buf).map_err(err)?;
            n += 1;
            if w.started().elapsed() >= ctx.duration {
                break w.close(n as f64);
            }
        };
        Ok(Sample::rate("udp_pummel", "dgram/s", m, 1.0))
    })
}

fn epoll() -> Result<OwnedFd> {
    // SAFETY: a fresh descriptor, owned by the OwnedFd.
    unsafe {
        let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if fd < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `loop_count`: `epoll_wait` with a zero timeout on an empty set.
pub fn loop_count() -> RunFn {
    Box::new(|ctx| {
        let ep = epoll()?;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let w = Window::open();
        let mut n = 0u64;
        loop {
            // SAFETY: `events` has room for 64 entries.
            unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 64, 0) };
            n += 1;
            if n.is_multiple_of(1024) && w.started().elapsed() >= ctx.duration {
                break;
            }
        }
        Ok(Sample::rate("loop_count", "iter/s", w.close(n as f64), 1.0))
    })
}

/// `async_pummel`: an eventfd written by the pummel thread and read
/// (blocking) by the "loop" thread; each read is one callback.
pub fn async_pummel() -> RunFn {
    Box::new(|ctx| {
        // SAFETY: a fresh blocking eventfd, owned by the OwnedFd.
        let efd = unsafe {
            let fd = libc::eventfd(0, libc::EFD_CLOEXEC);
            if fd < 0 {
                return Err(err(std::io::Error::last_os_error()));
            }
            Arc::new(OwnedFd::from_raw_fd(fd))
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (e2, s2) = (efd.clone(), stop.clone());
        let pummel = std::thread::spawn(move || {
            let one: u64 = 1;
            while !s2.load(Ordering::Acquire) {
                // SAFETY: writes 8 bytes from a live u64.
                unsafe { libc::write(e2.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
        });
        let w = Window::open();
        let mut count = 0u64;
        let mut v: u64 = 0;
        while count < ctx.async_callbacks {
            // SAFETY: reads 8 bytes into a live u64.
            let r = unsafe { libc::read(efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
            if r == 8 {
                count += 1;
            }
        }
        let m = w.close(count as f64);
        stop.store(true, Ordering::Release);
        pummel.join().map_err(|_| "pummel thread panicked")?;
        Ok(Sample::rate("async_pummel", "cb/s", m, 1.0))
    })
}

/// `file_read`: one thread, `pread` of 64 KiB after 64 KiB.
pub fn file_read() -> RunFn {
    Box::new(|ctx| {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(&ctx.file_path).map_err(err)?;
        let mut buf = vec![0u8; FILE_CHUNK];
        let w = Window::open();
        let mut off = 0u64;
        while off < ctx.file_size {
            let n = file.read_at(&mut buf, off).map_err(err)?;
            if n == 0 {
                return Err("short file".into());
            }
            off += n as u64;
        }
        Ok(file_sample(w.close(off as f64)))
    })
}

/// `dns`: ten threads doing blocking `getaddrinfo("localhost")`.
pub fn dns() -> RunFn {
    Box::new(|ctx| {
        let left = Arc::new(AtomicUsize::new(ctx.dns_lookups));
        let w = Window::open();
        let threads: Vec<_> = (0..DNS_IN_FLIGHT)
            .map(|_| {
                let left = left.clone();
                std::thread::spawn(move || -> Result<u64> {
                    let mut done = 0;
                    while left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                        .is_ok()
                    {
                        ("localhost", 0).to_socket_addrs().map_err(err)?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut done = 0;
        for t in threads {
            done += t.join().map_err(|_| "lookup thread panicked")??;
        }
        Ok(Sample::rate("dns", "lookups/s", w.close(done as f64), 1.0))
    })
}

/// `copy`: `std::io::copy` at both ends, two threads doing blocking reads
/// and writes (the sender copies `std::io::repeat(..).take(1 GiB)`, the
/// receiver copies into `std::io::sink()` until end of stream).
pub fn copy() -> RunFn {
    Box::new(|_ctx| {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let receiver = std::thread::spawn(move || -> Result<Measured> {
            let (mut conn, _) = listener.accept().map_err(err)?;
            let w = Window::open();
            let n = std::io::copy(&mut conn, &mut std::io::sink()).map_err(err)?;
            Ok(w.close(n as f64))
        });
        let mut conn = TcpStream::connect(addr).map_err(err)?;
        std::io::copy(&mut std::io::repeat(COPY_FILL).take(COPY_BYTES), &mut conn).map_err(err)?;
        conn.shutdown(std::net::Shutdown::Write).map_err(err)?;
        let measured = receiver.join().map_err(|_| "receiver thread panicked")??;
        drop(conn);
        copy_sample(measured)
    })
}
