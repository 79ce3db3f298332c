//! The AddressSanitizer stage of the Linux leg, and `cargo xtask fuzz`.
//!
//! The stage builds the library's Linux tests (doc tests included) with
//! `-Zsanitizer=address` on the rustup toolchain (`RUSTC_BOOTSTRAP=1` lets
//! the stable compiler take the flag), for the explicit host target so that
//! build scripts and proc macros stay uninstrumented, into a target
//! directory of its own. As in the normal Linux leg, the build happens
//! outside the namespace and the run, `--offline`, inside it. LeakSanitizer
//! comes with AddressSanitizer on x86_64 Linux and is asked for explicitly.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cmd::{banner, describe, heading, Job, Result, TestRun};
use crate::fail;
use crate::netns::Isolation;

/// The target the sanitized build is for (the host's; given explicitly so
/// that `RUSTFLAGS` does not reach build scripts and proc macros).
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The sanitizer runtime's options for the run.
const ASAN_OPTIONS: &str = "detect_leaks=1:abort_on_error=0:halt_on_error=1";

/// The cargo that runs `cargo xtask`, i.e. the rustup toolchain's.
fn cargo() -> Job {
    Job::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo test -p eventcore-driver --all-features` with AddressSanitizer,
/// followed by `extra`.
fn asan_cargo_test(extra: &[&str]) -> Job {
    cargo()
        .args(["test", "-p", "eventcore-driver", "--all-features"])
        .args(["--target", TARGET, "--target-dir"])
        .arg(Path::new("target").join("asan"))
        .args(extra)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", "-Zsanitizer=address")
        .env("RUSTDOCFLAGS", "-Zsanitizer=address")
        .env("ASAN_OPTIONS", ASAN_OPTIONS)
        .env("LSAN_OPTIONS", "report_objects=1")
}

/// The ASan + LSan stage: builds outside the namespace, runs inside it.
/// `harness` (filters and the like) goes to the test harness.
pub fn asan(root: &Path, harness: &[String], isolation: &Isolation, limit: Duration) -> Result<TestRun> {
    heading("Linux leg, AddressSanitizer + LeakSanitizer: building the library's tests");
    let started = Instant::now();
    asan_cargo_test(&["--no-run"])
        .run(root)
        .map_err(|e| fail!("building the sanitized tests failed: {e}"))?;
    println!("The sanitized build took {:.1} s.", started.elapsed().as_secs_f64());
    heading(if isolation.is_namespace() {
        "Linux leg, AddressSanitizer + LeakSanitizer: running the tests in a fresh network namespace"
    } else {
        "Linux leg, AddressSanitizer + LeakSanitizer: running the tests on the host network (no namespace)"
    });
    let mut job = asan_cargo_test(&["--offline"]);
    if !harness.is_empty() {
        job = job.arg("--").args(harness);
    }
    isolation.wrap(job).run_tests(root, limit)
}

/// What `cargo xtask fuzz` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub struct FuzzOptions {
    /// Seconds per backend.
    pub seconds: u64,
    /// Replay this seed only.
    pub seed: Option<u64>,
}

impl FuzzOptions {
    /// Reads the command line that follows `fuzz`.
    pub fn parse(args: &[String]) -> Result<FuzzOptions> {
        let mut options = FuzzOptions {
            seconds: 60,
            seed: None,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut number = |name: &str| -> Result<u64> {
                let text = rest.next().ok_or_else(|| fail!("`{name}` needs a number."))?;
                text.parse()
                    .map_err(|_| fail!("`{name}` needs a number, not `{text}`."))
            };
            match arg.as_str() {
                "--seconds" => options.seconds = number("--seconds")?,
                "--seed" => options.seed = Some(number("--seed")?),
                other => return Err(fail!("`cargo xtask fuzz` does not know `{other}`.")),
            }
        }
        Ok(options)
    }
}

/// `cargo xtask fuzz`: the randomised API-sequence tester
/// (`crates/eventcore/tests/fuzz_sequences.rs`) in release mode, for the
/// given time per backend or for one seed, inside the test namespace.
pub fn fuzz(root: &Path, options: &FuzzOptions) -> Result<ExitCode> {
    let isolation = Isolation::detect(root, &root.join("target").join("xtask-netns"))?;
    if let Isolation::Host { reason } = &isolation {
        banner(&[
            "NO TEST NETWORK NAMESPACE:",
            reason,
            "The fuzzer runs on the host's network (it talks to 127.0.0.1 only).",
        ]);
    }
    let test = [
        "test",
        "--release",
        "-p",
        "eventcore-driver",
        "--test",
        "fuzz_sequences",
    ];
    heading("Fuzz: building the sequence tester (release mode)");
    cargo().args(test).arg("--no-run").run(root)?;
    heading("Fuzz: running it");
    let mut job = cargo()
        .args(test)
        .args(["--offline", "--", "--nocapture", "fuzz_sequences"])
        .env("EVENTCORE_FUZZ_SECONDS", options.seconds.to_string());
    if let Some(seed) = options.seed {
        job = job.env("EVENTCORE_FUZZ_SEED", seed.to_string());
    }
    // Two backends one after the other, plus the build's start and slack.
    let limit = Duration::from_secs(2 * options.seconds + 180);
    let run = isolation.wrap(job).run_tests(root, limit)?;
    if run.timed_out {
        return Err(fail!("the fuzzer was killed after {} s", limit.as_secs()));
    }
    if !run.status.success() {
        return Err(fail!(
            "the fuzzer found a problem ({}); the seed to replay is printed above",
            describe(run.status)
        ));
    }
    println!("xtask fuzz: {} in {:.0} s", run.counts, run.elapsed.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<FuzzOptions> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        FuzzOptions::parse(&args)
    }

    #[test]
    fn fuzz_options() {
        assert_eq!(
            parse(&[]).unwrap(),
            FuzzOptions {
                seconds: 60,
                seed: None
            }
        );
        assert_eq!(
            parse(&["--seconds", "5", "--seed", "42"]).unwrap(),
            FuzzOptions {
                seconds: 5,
                seed: Some(42)
            }
        );
        assert!(parse(&["--seconds"]).is_err());
        assert!(parse(&["--seed", "x"]).is_err());
        assert!(parse(&["--minutes", "1"]).is_err());
    }
}
