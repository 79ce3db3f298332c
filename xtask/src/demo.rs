//! `cargo xtask demo` and `cargo xtask bench`.

use std::path::Path;
use std::process::ExitCode;

use crate::cmd::{heading, Job, Result};

/// One part of the demo: a title and the command that shows it.
struct Part {
    title: &'static str,
    job: fn() -> Job,
}

/// The parts of `cargo xtask demo`, run in order. The benchmark will be
/// added here as a further part once its crate exists.
const PARTS: &[Part] = &[Part {
    title: "A tour of eventcore (crates/eventcore/examples/tour.rs)",
    job: tour,
}];

fn tour() -> Job {
    cargo().args(["run", "--release", "-p", "eventcore", "--example", "tour"])
}

/// The cargo that runs `cargo xtask`, i.e. the rustup toolchain's.
fn cargo() -> Job {
    Job::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cargo xtask demo`: every part in turn, stopping at the first one
/// that fails.
pub fn demo(root: &Path) -> Result<ExitCode> {
    for part in PARTS {
        heading(part.title);
        (part.job)().run(root)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `cargo xtask bench`, which has nothing to run yet.
pub fn bench() -> Result<ExitCode> {
    eprintln!(
        "xtask: there is no benchmark yet: the benchmark crate does not exist, \
         so `cargo xtask bench` has nothing to run."
    );
    Ok(ExitCode::FAILURE)
}
