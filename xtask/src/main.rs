//! The project's task runner, run as `cargo xtask <command>` (the alias is
//! in `.cargo/config.toml`). See `DEVELOPERS.md` for what each command does
//! and why.

mod cmd;
mod demo;
mod netns;
mod packages;
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
    demo
        Shows what eventcore does: runs the tour example in release mode.
    bench
        Runs the benchmark (which does not exist yet).
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
        Some("demo") if args.len() == 1 => demo::demo(&root),
        Some("bench") if args.len() == 1 => demo::bench(),
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
