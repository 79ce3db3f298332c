//! Measures how fast connections are made and accepted on the default
//! backend: 20,000 loopback connections, 64 in flight, each connected,
//! accepted and closed. On Windows this measures the `WSAAsyncSelect` path
//! that accept and connect take (see docs/design.md).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventcore::{Driver, ExitReason, ListenOptions, SocketAddress};

const TOTAL: usize = 20_000;
const IN_FLIGHT: usize = 64;

fn main() -> Result<(), eventcore::Error> {
    let mut drv = Driver::new()?;
    let accepted = Rc::new(Cell::new(0usize));
    let a = accepted.clone();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = drv
        .sockets()
        .listen(any, ListenOptions::default(), move |drv, _, res| {
            let (conn, _) = res.expect("accept");
            a.set(a.get() + 1);
            drv.release_ref(conn).unwrap();
        })?;
    let addr = drv.sockets().local_address(listener)?;
    let started = Rc::new(Cell::new(0usize));
    let connected = Rc::new(Cell::new(0usize));
    fn connect_one(drv: &mut Driver, addr: SocketAddress, started: Rc<Cell<usize>>, connected: Rc<Cell<usize>>) {
        if started.get() == TOTAL {
            return;
        }
        started.set(started.get() + 1);
        let a2 = addr.clone();
        drv.sockets()
            .connect(addr, None, move |drv, conn, res| {
                res.expect("connect");
                connected.set(connected.get() + 1);
                drv.release_ref(conn).unwrap();
                connect_one(drv, a2, started, connected);
            })
            .expect("connect");
    }
    let t0 = Instant::now();
    for _ in 0..IN_FLIGHT {
        connect_one(&mut drv, addr.clone(), started.clone(), connected.clone());
    }
    while accepted.get() < TOTAL || connected.get() < TOTAL {
        if drv.process_events(Some(Duration::from_secs(10)))? != ExitReason::Idle {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "backend {}: {} connections connected and accepted in {:.2} s: {:.0} conn/s",
        drv.backend().name(),
        accepted.get(),
        secs,
        accepted.get() as f64 / secs
    );
    drv.release_ref(listener)?;
    Ok(())
}
