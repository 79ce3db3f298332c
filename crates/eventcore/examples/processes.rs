//! Spawns a child with piped standard streams, sends it text, reads its
//! answer, and waits for its exit status — all on one event loop.

use std::time::Duration;

use eventcore::{Command, Driver, ExitReason, IoMode, Stdio};

fn main() -> Result<(), eventcore::Error> {
    let mut drv = Driver::new()?;
    // A filter that reads stdin to its end: `tr` upper-cases on Unix; `sort`
    // (of one line) echoes it on Windows.
    #[cfg(unix)]
    let command = Command::new("tr").arg("a-z").arg("A-Z");
    #[cfg(windows)]
    let command = Command::new("cmd").args(["/C", "sort"]);
    let child = drv.processes().spawn(command.stdin(Stdio::Pipe).stdout(Stdio::Pipe))?;
    let (stdin, stdout) = (child.stdin.unwrap(), child.stdout.unwrap());
    println!("spawned pid {}", drv.processes().pid(child.process)?);

    // Write, then close stdin so `tr` sees end of input and exits.
    drv.pipes().write(
        stdin,
        b"hello from eventcore\n".to_vec(),
        IoMode::All,
        |drv, stdin, res, _| {
            println!("wrote {res:?} bytes to the child");
            drv.release_ref(stdin).unwrap();
        },
    );
    // Read until end of stream.
    fn read_more(drv: &mut Driver, out: eventcore::PipeHandle, mut text: Vec<u8>) {
        drv.pipes().read(
            out,
            Vec::with_capacity(256),
            IoMode::Once,
            move |drv, out, res, buf| match res {
                Ok(n) => {
                    text.extend_from_slice(&buf[..n]);
                    read_more(drv, out, text);
                }
                Err(e) => {
                    println!("child said {:?} (then: {e})", String::from_utf8_lossy(&text));
                    drv.release_ref(out).unwrap();
                }
            },
        );
    }
    read_more(&mut drv, stdout, Vec::new());
    drv.processes().wait(child.process, |drv, p, status| {
        println!("child exited: {status:?}");
        drv.release_ref(p).unwrap();
    })?;
    while drv.process_events(Some(Duration::from_secs(10)))? == ExitReason::Idle {}
    println!("leaks: {}", drv.leak_report());
    Ok(())
}
