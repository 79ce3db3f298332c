//! Resolves the names given on the command line (default: `localhost`) on the
//! worker pool and prints their addresses.

use std::time::Duration;

use eventcore::{Driver, ExitReason};

fn main() -> Result<(), eventcore::Error> {
    let mut drv = Driver::new()?;
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names.push("localhost".into());
    }
    for name in names {
        drv.dns().lookup(&name.clone(), move |_, _, result| match result {
            Ok(addrs) => println!("{name}: {addrs:?}"),
            Err(e) => println!("{name}: lookup failed: {e}"),
        });
    }
    while drv.process_events(Some(Duration::from_secs(10)))? == ExitReason::Idle {}
    Ok(())
}
