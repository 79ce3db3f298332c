//! An ecosystem codec on the async layer: a tiny line-based key-value
//! protocol ("SET key value" / "GET key" / "QUIT") over TCP, read with
//! futures-util's `AsyncBufReadExt::lines` on a `TcpStream`'s reading half
//! and answered through `AsyncWriteExt` on its writing half — the
//! `futures-io` traits `AsyncBufRead` / `AsyncWrite` that `ByteStream`
//! implements over its internal buffers. The client is in the same program;
//! it ends when the client has its answers. Loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;

use eventcore::rt::{self, Executor, Listener, TcpStream};
use eventcore::Driver;
use futures_util::io::{AsyncBufReadExt, AsyncWriteExt};
use futures_util::stream::StreamExt;

/// Serves one connection: one answer line per request line.
async fn serve(mut conn: TcpStream) -> std::io::Result<usize> {
    let mut store: HashMap<String, String> = HashMap::new();
    let (reader, mut writer) = conn.halves();
    let mut lines = reader.lines();
    let mut handled = 0;
    while let Some(line) = lines.next().await {
        let line = line?;
        let mut words = line.splitn(3, ' ');
        let answer = match (words.next(), words.next(), words.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                store.insert(k.to_owned(), v.to_owned());
                "OK".to_owned()
            }
            (Some("GET"), Some(k), None) => match store.get(k) {
                Some(v) => format!("VALUE {v}"),
                None => "NOT_FOUND".to_owned(),
            },
            (Some("QUIT"), None, None) => {
                writer.write_all(b"BYE\n").await?;
                break;
            }
            _ => format!("ERROR unknown request {line:?}"),
        };
        writer.write_all(format!("{answer}\n").as_bytes()).await?;
        handled += 1;
    }
    // Flush what is buffered and shut down our side: the client reads end of stream.
    writer.close().await?;
    Ok(handled)
}

fn main() -> eventcore::Result<()> {
    let mut ex = Executor::new(Driver::new()?);
    let answers = ex.block_on(async {
        let listener = Listener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())?;
        let addr = listener.local_addr()?.as_inet().expect("an IP address");
        let server = rt::spawn(async move {
            let (conn, _) = listener.accept().await?;
            serve(conn).await.map_err(eventcore::Error::from)
        });

        let mut conn = TcpStream::connect(addr).await?;
        let (reader, mut writer) = conn.halves();
        let requests = [
            "SET language rust",
            "SET driver eventcore",
            "GET driver",
            "GET missing",
            "FLY away",
            "QUIT",
        ];
        for r in requests {
            writer
                .write_all(format!("{r}\n").as_bytes())
                .await
                .map_err(eventcore::Error::from)?;
        }
        writer.flush().await.map_err(eventcore::Error::from)?;
        let answers: Vec<String> = reader.lines().map(|l| l.expect("answer line")).collect().await;
        let handled = server.await.expect("the server task")?;
        println!("server handled {handled} requests");
        Ok::<_, eventcore::Error>(answers)
    })?;
    for a in &answers {
        println!("< {a}");
    }
    assert_eq!(
        answers,
        [
            "OK",
            "OK",
            "VALUE eventcore",
            "NOT_FOUND",
            "ERROR unknown request \"FLY away\"",
            "BYE"
        ]
    );
    println!("leaks: {}", ex.leak_report());
    Ok(())
}
