//! Copies a file with positional reads and writes on the worker pool, 64 KiB
//! at a time: `file_copy <from> <to>` (default: a generated temporary file).

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use eventcore::{Driver, ExitReason, FileHandle, IoMode, OpenMode};

const CHUNK: usize = 64 * 1024;

fn main() -> Result<(), eventcore::Error> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (from, to) = match (args.next(), args.next()) {
        (Some(f), Some(t)) => (f, t),
        _ => {
            let f = std::env::temp_dir().join(format!("eventcore-copy-{}.src", std::process::id()));
            std::fs::write(&f, vec![7u8; 3 * CHUNK + 123]).expect("write source");
            (f.clone(), f.with_extension("dst"))
        }
    };
    let mut drv = Driver::new()?;
    let copied = Rc::new(Cell::new(0u64));
    let c = copied.clone();
    drv.files().open(&from, OpenMode::Read, move |drv, src| {
        let src = src.expect("open source");
        drv.files().open(&to, OpenMode::CreateTruncate, move |drv, dst| {
            let dst = dst.expect("open destination");
            copy_from(drv, src, dst, 0, c);
        });
    });
    while drv.process_events(Some(Duration::from_secs(10)))? == ExitReason::Idle {}
    println!("copied {} bytes; leaks: {}", copied.get(), drv.leak_report());
    Ok(())
}

fn copy_from(drv: &mut Driver, src: FileHandle, dst: FileHandle, offset: u64, copied: Rc<Cell<u64>>) {
    drv.files().read(
        src,
        offset,
        Vec::with_capacity(CHUNK),
        IoMode::All,
        move |drv, src, res, buf| {
            let n = match res {
                Ok(n) => n,
                Err(e) => e.transferred(), // end of file after a partial chunk
            };
            if n == 0 {
                drv.files().close(src, |_, r| r.expect("close source"));
                drv.files().close(dst, |_, r| r.expect("close destination"));
                return;
            }
            // The buffer's length is what was read.
            drv.files()
                .write(dst, offset, buf, IoMode::All, move |drv, dst, res, _| {
                    let n = res.expect("write") as u64;
                    copied.set(copied.get() + n);
                    copy_from(drv, src, dst, offset + n, copied);
                });
        },
    );
}
