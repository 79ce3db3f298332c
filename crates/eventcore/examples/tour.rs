//! A tour of every subsystem the driver has on this machine: it runs each one
//! for real (timers, events across threads, TCP, UDP, Unix sockets) and prints
//! what happened. `cargo xtask demo` runs it.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::{BackendKind, DatagramOptions, Driver, ExitReason, IoMode, ListenOptions};

fn main() -> Result<(), eventcore::Error> {
    for &kind in BackendKind::available() {
        println!("== eventcore on {} ==", kind.name());
        let mut drv = Driver::with_backend(kind)?;
        timers(&mut drv)?;
        events(&mut drv)?;
        tcp(&mut drv)?;
        udp(&mut drv)?;
        #[cfg(unix)]
        unix_sockets(&mut drv)?;
        println!("leak report at the end: {}", drv.leak_report());
    }
    Ok(())
}

/// Runs the loop until nothing is left to wait for.
fn run(drv: &mut Driver) -> Result<(), eventcore::Error> {
    while drv.process_events(Some(Duration::from_secs(10)))? == ExitReason::Idle {}
    Ok(())
}

fn timers(drv: &mut Driver) -> Result<(), eventcore::Error> {
    let start = Instant::now();
    let one_shot = drv.timers().create();
    drv.timers().set(one_shot, Duration::from_millis(30), Duration::ZERO)?;
    drv.timers().wait(one_shot, move |drv, t, fired| {
        println!("timers: one-shot fired={fired} after {:?}", start.elapsed());
        drv.release_ref(t).unwrap();
    })?;

    let ticks = Rc::new(Cell::new(0));
    let periodic = drv.timers().create();
    drv.timers()
        .set(periodic, Duration::from_millis(10), Duration::from_millis(10))?;
    fn tick(drv: &mut Driver, t: eventcore::TimerId, ticks: Rc<Cell<u32>>, start: Instant) {
        ticks.set(ticks.get() + 1);
        println!("timers: periodic tick {} at {:?}", ticks.get(), start.elapsed());
        if ticks.get() == 3 {
            drv.release_ref(t).unwrap();
        } else {
            drv.timers()
                .wait(t, move |drv, t, _| tick(drv, t, ticks, start))
                .unwrap();
        }
    }
    let t2 = ticks.clone();
    drv.timers().wait(periodic, move |drv, t, _| tick(drv, t, t2, start))?;
    run(drv)
}

fn events(drv: &mut Driver) -> Result<(), eventcore::Error> {
    let ev = drv.events().create();
    drv.events().wait(ev, |drv, ev| {
        println!(
            "events: a trigger from another thread woke the waiter on the loop thread {:?}",
            std::thread::current().id()
        );
        drv.release_ref(ev).unwrap();
    })?;
    let remote = drv.remote();
    let worker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        remote
            .run_in_owner_thread(|_| println!("events: a closure sent from another thread ran here"))
            .unwrap();
        remote.trigger(ev, false).unwrap();
    });
    run(drv)?;
    worker.join().unwrap();
    Ok(())
}

fn tcp(drv: &mut Driver) -> Result<(), eventcore::Error> {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = drv
        .sockets()
        .listen(any, ListenOptions::default(), |drv, listener, accepted| {
            let (conn, peer) = accepted.expect("accept");
            println!("tcp: accepted {peer}");
            drv.release_ref(listener).unwrap();
            drv.sockets()
                .read(conn, Vec::with_capacity(5), IoMode::All, |drv, conn, res, buf| {
                    println!("tcp: server read {:?}: {:?}", res, String::from_utf8_lossy(&buf));
                    drv.sockets().write(conn, buf, IoMode::All, |drv, conn, _, _| {
                        drv.release_ref(conn).unwrap();
                    });
                });
        })?;
    let addr = drv.sockets().local_address(listener)?;
    println!("tcp: listening on {addr}");
    drv.sockets().connect(addr, None, |drv, conn, res| {
        println!(
            "tcp: connected: {res:?}, state {:?}",
            drv.sockets().connection_state(conn)
        );
        drv.sockets()
            .write(conn, b"hello".to_vec(), IoMode::All, |drv, conn, _, _| {
                drv.sockets()
                    .read(conn, Vec::with_capacity(5), IoMode::All, |drv, conn, res, buf| {
                        println!(
                            "tcp: client got the echo {:?}: {:?}",
                            res,
                            String::from_utf8_lossy(&buf)
                        );
                        drv.release_ref(conn).unwrap();
                    });
            });
    })?;
    run(drv)
}

fn udp(drv: &mut Driver) -> Result<(), eventcore::Error> {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = drv.sockets().create_datagram(any, DatagramOptions::default())?;
    let b = drv.sockets().create_datagram(any, DatagramOptions::default())?;
    let a_addr = drv.sockets().local_address(a)?;
    drv.sockets()
        .receive(a, Vec::with_capacity(64), IoMode::Once, |drv, a, res, buf| {
            let (n, from) = res.expect("receive");
            println!("udp: {n} bytes from {from}: {:?}", String::from_utf8_lossy(&buf[..n]));
            drv.release_ref(a).unwrap();
        });
    drv.sockets()
        .send(b, b"datagram".to_vec(), Some(a_addr), IoMode::Once, |drv, b, res, _| {
            println!("udp: sent {res:?}");
            drv.release_ref(b).unwrap();
        });
    run(drv)
}

#[cfg(unix)]
fn unix_sockets(drv: &mut Driver) -> Result<(), eventcore::Error> {
    let (a, b) = drv.sockets().stream_pair()?;
    drv.sockets()
        .write(a, b"over a socketpair".to_vec(), IoMode::All, |drv, a, _, _| {
            drv.release_ref(a).unwrap();
        });
    drv.sockets()
        .read(b, Vec::with_capacity(17), IoMode::All, |drv, b, res, buf| {
            println!("unix: {res:?}: {:?}", String::from_utf8_lossy(&buf));
            drv.release_ref(b).unwrap();
        });
    run(drv)
}
