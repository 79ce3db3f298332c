//! Listens for SIGUSR1 and SIGUSR2, sends itself each from a timer callback,
//! and prints what arrived.

//! Unix only: Windows has console control events instead (Ctrl+C, Ctrl+Break,
//! close), which `Driver::signals` maps to `SIGINT`, `SIGBREAK` and `SIGHUP`.

#[cfg(not(unix))]
fn main() {
    println!(
        "this example raises POSIX signals; on Windows, listen for eventcore::signal_numbers::SIGINT and press Ctrl+C"
    );
}

#[cfg(unix)]
fn main() -> Result<(), eventcore::Error> {
    use std::time::Duration;

    use eventcore::{Driver, ExitReason};

    let mut drv = Driver::new()?;
    let mut seen = 0;
    let usr1 = drv.signals().listen(libc::SIGUSR1, move |_, _, signo| {
        seen += 1;
        println!("got signal {signo} (SIGUSR1), {seen} so far");
    })?;
    let usr2 = drv.signals().listen(libc::SIGUSR2, move |drv, me, signo| {
        println!("got signal {signo} (SIGUSR2): stopping");
        drv.release_ref(me).unwrap();
        drv.release_ref(usr1).unwrap();
    })?;
    let _ = usr2;
    let timer = drv.timers().create();
    drv.timers().set(timer, Duration::from_millis(20), Duration::ZERO)?;
    drv.timers().wait(timer, |drv, t, _| {
        // SAFETY: raise() only sends a signal to this thread, where the
        // driver blocked both signals so that they arrive through signalfd.
        unsafe {
            libc::raise(libc::SIGUSR1);
            libc::raise(libc::SIGUSR1);
            libc::raise(libc::SIGUSR2);
        }
        drv.release_ref(t).unwrap();
    })?;
    while drv.process_events(Some(Duration::from_secs(5)))? == ExitReason::Idle {}
    println!("leaks: {}", drv.leak_report());
    Ok(())
}
