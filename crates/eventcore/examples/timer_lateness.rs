//! Measures how late one-shot timers fire: 200 timers with timeouts of 1 to
//! 20 ms, one after another; prints the median, 99th percentile and maximum
//! lateness. The numbers in docs/design.md come from this program.

use std::time::{Duration, Instant};

use eventcore::{Driver, ExitReason};

fn main() -> Result<(), eventcore::Error> {
    let mut drv = Driver::new()?;
    let mut lateness = Vec::new();
    for i in 0..200u64 {
        let timeout = Duration::from_millis(1 + i % 20);
        let t = drv.timers().create();
        let start = Instant::now();
        drv.timers().set(t, timeout, Duration::ZERO)?;
        let fired = std::rc::Rc::new(std::cell::Cell::new(None));
        let f = fired.clone();
        drv.timers().wait(t, move |drv, t, _| {
            f.set(Some(Instant::now()));
            drv.release_ref(t).unwrap();
        })?;
        while drv.process_events(None)? == ExitReason::Idle && fired.get().is_none() {}
        let at = fired.get().expect("the timer fired");
        lateness.push(at.duration_since(start).saturating_sub(timeout));
    }
    lateness.sort();
    let pick = |q: f64| lateness[((lateness.len() - 1) as f64 * q) as usize];
    println!(
        "backend {}: timer lateness over {} one-shot timers of 1-20 ms: median {:?}, p99 {:?}, max {:?}",
        drv.backend().name(),
        lateness.len(),
        pick(0.5),
        pick(0.99),
        lateness.last().unwrap()
    );
    Ok(())
}
