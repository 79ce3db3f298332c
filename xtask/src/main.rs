//! The project's task runner, run as `cargo xtask <command>` (the alias is
//! in `.cargo/config.toml`). See `DEVELOPERS.md` for what each command does
//! and why.

mod cmd;
mod demo;
mod instructions;
mod loom;
mod netns;
mod package;
mod packages;
mod sanitize;
mod screenshot;
mod test;
mod windows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <command>

Commands:
    test [--linux] [--windows] [--no-lint] [-- <test harness arguments>]
        Checks formatting and lints, then runs the tests: the Linux leg
        natively and the Windows leg under Wine, both in a private network
        namespace. Without --linux or --windows, both legs run. Arguments
        after `--` (test-name filters, --nocapture, ...) go to the test
        harness of every leg that runs.
    fuzz [--seconds N] [--seed S]
        Runs the randomised API-sequence tester (tests/fuzz_sequences.rs)
        in release mode inside the test namespace: new seeds for N seconds
        per backend (default 60), or only seed S (a seed that failed, as
        printed). The normal test run gives it about 3 s per backend.
    demo
        Shows what eventcore does: runs the tour example, then the benchmark
        in --quick mode (both in release mode; about two minutes).
    bench [--quick] [--json] [--http]
        Runs the benchmark (crates/eventcore-bench): libuv's scenarios on
        every eventcore backend, tokio, libuv and a hand-written floor, in
        one run. --quick: short runs (about a minute); --json: one JSON
        object per figure on stdout; --http: the HTTP plaintext servers
        under wrk instead. A full run writes its table and chart to
        docs/benchmarks/, a quick one to target/eventcore-bench/.
    bench --instructions [--only a,b] [--seconds S]
        Instructions per operation under callgrind (each timed window
        alone, exact operation counts, median and spread of 3 rounds) for
        eventcore-epoll(-async), tokio, libuv and the floor, and system
        calls per operation under strace for io_uring; installs valgrind
        and strace when missing. Writes
        target/eventcore-bench/instructions/instructions.md.
    screenshot
        Cross-builds the Windows GUI example (examples/gui.rs), runs it
        under Wine on a virtual X server (Xvfb) and saves a picture of its
        window as docs/gui-example.png.
    help
        Prints this text.

Environment:
    XTASK_TEST_TIMEOUT_SECS   time limit for running one leg's tests
                              (default 1800)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::Options::parse(&args[1..]).and_then(|o| test::run(&root, &o)),
        Some("fuzz") => sanitize::FuzzOptions::parse(&args[1..]).and_then(|o| sanitize::fuzz(&root, &o)),
        Some("demo") if args.len() == 1 => demo::demo(&root),
        Some("bench") if args.iter().any(|a| a == "--instructions") => instructions::run(&root, &args[1..]),
        Some("bench") => demo::bench(&root, &args[1..]),
        Some("screenshot") if args.len() == 1 => screenshot::run(&root),
        // Run by `cargo xtask test` inside the test namespace; not for people.
        Some("netns-probe") => return netns::probe(),
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the xtask crate lives inside the workspace")
        .to_owned()
}
