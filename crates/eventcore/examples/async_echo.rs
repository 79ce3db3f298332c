//! An async echo server and its clients in one program: the server accepts
//! connections and answers each in a task of its own; three clients send a
//! few messages each, check the echoes, and the program ends when they are
//! done. Loopback only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventcore::rt::{self, Executor, Listener, TcpStream};
use eventcore::{Driver, Status};

const CLIENTS: usize = 3;
const ROUNDS: usize = 4;

/// Echoes everything `conn` sends until it closes its side.
async fn serve(conn: TcpStream) -> eventcore::Result<usize> {
    let mut echoed = 0;
    let mut buf = Vec::with_capacity(4096);
    loop {
        // The read appends to the empty buffer: it comes back holding
        // exactly what arrived.
        let (r, b) = conn.read_owned(buf).await;
        match r {
            Ok(_) => {}
            Err(e) if e.status() == Status::Disconnected => return Ok(echoed),
            Err(e) => return Err(e),
        }
        let (r, mut b) = conn.write_all_owned(b).await;
        echoed += r?;
        b.clear();
        buf = b;
    }
}

/// Sends `ROUNDS` messages and checks each echo; returns the round-trip time.
async fn client(id: usize, addr: SocketAddr) -> eventcore::Result<Duration> {
    let conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let start = Instant::now();
    for round in 0..ROUNDS {
        let msg = format!("client {id}, message {round}").into_bytes();
        let len = msg.len();
        let (r, sent) = conn.write_all_owned(msg).await;
        r?;
        let (r, echo) = conn.read_exact_owned(Vec::with_capacity(len)).await;
        r?;
        assert_eq!(echo, sent, "the echo matches");
    }
    Ok(start.elapsed())
}

fn main() -> eventcore::Result<()> {
    let mut ex = Executor::new(Driver::new()?);
    ex.block_on(async {
        let listener = Listener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())?;
        let addr = listener.local_addr()?.as_inet().expect("an IP address");
        println!("echo server on {addr}");
        let server = rt::spawn(async move {
            let mut sessions = Vec::new();
            for _ in 0..CLIENTS {
                let (conn, peer) = listener.accept().await?;
                println!("  accepted {peer}");
                sessions.push(rt::spawn(serve(conn)));
            }
            let mut total = 0;
            for s in sessions {
                total += s.await.expect("a session task")?;
            }
            Ok::<usize, eventcore::Error>(total)
        });
        let clients: Vec<_> = (0..CLIENTS).map(|id| rt::spawn(client(id, addr))).collect();
        for (id, c) in clients.into_iter().enumerate() {
            let took = c.await.expect("a client task")?;
            println!("  client {id}: {ROUNDS} round trips in {took:?}");
        }
        let echoed = rt::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server finishes")
            .expect("the server task")?;
        println!("server echoed {echoed} bytes");
        Ok::<(), eventcore::Error>(())
    })?;
    println!("leaks: {}", ex.leak_report());
    Ok(())
}
