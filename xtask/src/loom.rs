//! The loom stage of the Linux leg: the model of the cross-thread wake-up
//! (`crates/eventcore/src/remote/loom_tests.rs`), whose unit tests exist only
//! in a build with `--cfg loom`. It runs in release mode (loom explores
//! thousands of interleavings per test) in a target directory of its own, as
//! `--cfg loom` changes every crate's build.

use std::path::Path;
use std::time::Duration;

use crate::cmd::{heading, Job, Result};
use crate::fail;

/// loom's bound on the preemptions of one execution: every interleaving with
/// at most this many is explored. With 2 the tests take about 6 s on two
/// cores; with 3 they took 90 to 115 s (the three-sender io_uring model
/// alone about 55 s), too long for every run on a shared machine. Both pass;
/// the lost wake-ups planted while writing the model (a flag cleared after
/// the take, a re-armed poll that ignores a readable eventfd) were found
/// with 2.
const MAX_PREEMPTIONS: &str = "2";

/// A limit for the whole stage, build included, far above its usual time.
const LIMIT: Duration = Duration::from_secs(15 * 60);

/// Whether the harness arguments name tests (the model runs only unfiltered).
pub fn filtered(harness: &[String]) -> bool {
    harness.iter().any(|a| !a.starts_with('-'))
}

/// Builds and runs the loom tests.
pub fn run(root: &Path) -> Result<()> {
    heading("Loom: the model of the cross-thread wake-up (release build, --cfg loom)");
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg loom"),
        _ => "--cfg loom".to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run = Job::new(cargo)
        .args(["test", "-p", "eventcore-driver", "--lib", "--release", "--target-dir"])
        .arg(root.join("target").join("loom"))
        .args(["--", "loom"])
        .env("RUSTFLAGS", rustflags)
        .env("LOOM_MAX_PREEMPTIONS", MAX_PREEMPTIONS)
        .run_tests(root, LIMIT)?;
    if run.timed_out {
        Err(fail!("killed after {} s", LIMIT.as_secs()))
    } else if !run.status.success() {
        Err(fail!("the loom tests failed"))
    } else if !run.counts.any() {
        Err(fail!("no loom test ran"))
    } else {
        println!("The loom stage took {:.1} s.", run.elapsed.as_secs_f64());
        Ok(())
    }
}
