//! `cargo xtask demo` and `cargo xtask bench`.

use std::path::Path;
use std::process::ExitCode;

use crate::cmd::{heading, Job, Result};
use crate::fail;
use crate::packages::{self, Package};

/// One part of the demo: a title, the packages it needs and the command
/// that shows it.
struct Part {
    title: &'static str,
    packages: &'static [Package],
    job: fn() -> Job,
}

/// The parts of `cargo xtask demo`, run in order.
const PARTS: &[Part] = &[
    Part {
        title: "A tour of eventcore (crates/eventcore/examples/tour.rs)",
        packages: &[],
        job: tour,
    },
    Part {
        title: "The benchmark, quick mode (crates/eventcore-bench; `cargo xtask bench` for the full run)",
        packages: packages::BENCH,
        job: quick_bench,
    },
];

fn tour() -> Job {
    cargo().args(["run", "--release", "-p", "eventcore-driver", "--example", "tour"])
}

fn quick_bench() -> Job {
    bench_job(&["--quick", "--out", QUICK_OUT])
}

/// Where quick runs write their table and chart (full runs: docs/benchmarks).
const QUICK_OUT: &str = "target/eventcore-bench";
const FULL_OUT: &str = "docs/benchmarks";

/// `cargo run --release -p eventcore-bench -- ARGS`.
fn bench_job(args: &[&str]) -> Job {
    cargo()
        .args(["run", "--release", "-p", "eventcore-bench", "--"])
        .args(args)
}

/// The cargo that runs `cargo xtask`, i.e. the rustup toolchain's.
fn cargo() -> Job {
    Job::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cargo xtask demo`: every part in turn, stopping at the first one
/// that fails.
/// The cargo arguments that build the HTTP example the `--http` benchmark
/// and `--instructions` run.
pub const HTTP_EXAMPLE_BUILD: &[&str] = &[
    "build",
    "--release",
    "-p",
    "eventcore-driver",
    "--example",
    "http_plaintext",
];

pub fn demo(root: &Path) -> Result<ExitCode> {
    for part in PARTS {
        heading(part.title);
        if !part.packages.is_empty() {
            packages::ensure(part.packages, root)?;
        }
        (part.job)().run(root)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `cargo xtask bench [--quick] [--json] [--http]`: builds the
/// benchmark in release mode (and, for `--http`, the `http_plaintext`
/// example it measures) and runs it. Full runs write their results to
/// `docs/benchmarks/`, quick ones to `target/eventcore-bench/`.
pub fn bench(root: &Path, args: &[String]) -> Result<ExitCode> {
    let (mut quick, mut json, mut http) = (false, false, false);
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--http" => http = true,
            other => {
                return Err(fail!(
                    "`cargo xtask bench` takes --quick, --json and --http, not {other:?}."
                ))
            }
        }
    }
    // With --json, stdout carries the JSON lines only: everything else
    // (package checks, cargo's progress) goes to stderr.
    let say = |text: &str| {
        if json {
            eprintln!("{text}");
        } else {
            heading(text);
        }
    };
    say("Packages the benchmark needs");
    let mut wanted = packages::BENCH.to_vec();
    if http {
        wanted.extend_from_slice(packages::HTTP);
    }
    if !(json && packages::all_present(&wanted)) {
        packages::ensure(&wanted, root)?;
    }
    if http {
        say("Building the HTTP example (crates/eventcore/examples/http_plaintext.rs)");
        let build = cargo().args(HTTP_EXAMPLE_BUILD);
        run(&build, root, json)?;
    }
    let mut bench_args: Vec<&str> = Vec::new();
    if quick {
        bench_args.push("--quick");
    }
    if json {
        bench_args.push("--json");
    }
    if http {
        bench_args.push("--http");
    }
    bench_args.extend(["--out", if quick { QUICK_OUT } else { FULL_OUT }]);
    say("The benchmark (crates/eventcore-bench)");
    run(&bench_job(&bench_args), root, json)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a job; without echoing its command line on stdout when `quiet`.
fn run(job: &Job, root: &Path, quiet: bool) -> Result<()> {
    if !quiet {
        return job.run(root);
    }
    let status = job.command(root).stdin(std::process::Stdio::null()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(fail!("`{}` failed ({}).", job.short(), crate::cmd::describe(status)))
    }
}
