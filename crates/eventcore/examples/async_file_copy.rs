//! Copies a file with positional reads and writes on the worker pool, two
//! chunks in flight at once (one read, one write), with owned buffers that
//! travel between them: `async_file_copy <from> <to>` (default: a generated
//! temporary file).

use std::path::PathBuf;

use eventcore::rt::{Executor, File};
use eventcore::{Driver, OpenMode, Status};

const CHUNK: usize = 64 * 1024;

async fn copy(from: &PathBuf, to: &PathBuf) -> eventcore::Result<u64> {
    let src = File::open(from, OpenMode::Read).await?;
    let dst = File::create(to).await?;
    let size = src.size()?;
    let mut offset = 0u64;
    // Reads fill a buffer's capacity: nothing needs zeroing.
    let mut spare = Vec::with_capacity(CHUNK);
    let mut writing = None;
    while offset < size {
        // Read the next chunk while the previous one is being written.
        let read = src.read_at(std::mem::take(&mut spare), offset);
        let (r, buf) = match writing.take() {
            Some(write) => {
                let (read, written) = futures_util::future::join(read, write).await;
                let (w, back): (eventcore::Result<usize>, Vec<u8>) = written;
                w?;
                spare = back;
                read
            }
            None => read.await,
        };
        let n = match r {
            Ok(n) => n,
            Err(e) if e.status() == Status::EndOfFile => break,
            Err(e) => return Err(e),
        };
        // The read set the buffer's length to what it read.
        writing = Some(dst.write_all_at(buf, offset));
        offset += n as u64;
        if spare.capacity() == 0 {
            spare = Vec::with_capacity(CHUNK);
        }
        spare.clear();
    }
    if let Some(write) = writing.take() {
        write.await.0?;
    }
    drop(writing);
    dst.close().await?;
    src.close().await?;
    Ok(offset)
}

fn main() -> eventcore::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (from, to, generated) = match (args.next(), args.next()) {
        (Some(f), Some(t)) => (f, t, false),
        _ => {
            let f = std::env::temp_dir().join(format!("eventcore-async-copy-{}.src", std::process::id()));
            let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 253) as u8).collect();
            std::fs::write(&f, data).expect("write source");
            (f.clone(), f.with_extension("dst"), true)
        }
    };
    let mut ex = Executor::new(Driver::new()?);
    let copied = ex.block_on(copy(&from, &to))?;
    println!("copied {copied} bytes from {} to {}", from.display(), to.display());
    if generated {
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        println!("contents match");
        let _ = std::fs::remove_file(&from);
        let _ = std::fs::remove_file(&to);
    }
    println!("leaks: {}", ex.leak_report());
    Ok(())
}
