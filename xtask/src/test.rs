//! `cargo xtask test`: system packages, formatting and lints, then the Linux
//! leg (native tests in a private network namespace) and the Windows leg
//! (cross-built unit tests under Wine, in the same kind of namespace).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cmd::{banner, describe, heading, Job, Result, TestCounts, TestRun};
use crate::netns::{self, Isolation};
use crate::windows::Layout;
use crate::{fail, loom, package, packages};

/// The default time limit for running one leg's tests (not building them).
const DEFAULT_TIMEOUT_SECS: u64 = 30 * 60;

/// The variable that overrides [`DEFAULT_TIMEOUT_SECS`].
const TIMEOUT_VAR: &str = "XTASK_TEST_TIMEOUT_SECS";

/// What `cargo xtask test` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Run the Linux leg.
    pub linux: bool,
    /// Run the Windows leg.
    pub windows: bool,
    /// Run `cargo fmt --check`, `cargo clippy` and `cargo doc` (warnings
    /// denied) first.
    pub lint: bool,
    /// Arguments for the test harness (test-name filters and the like).
    pub harness: Vec<String>,
}

impl Options {
    /// Reads the command line that follows `test`.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut linux = false;
        let mut windows = false;
        let mut lint = true;
        let mut harness = Vec::new();
        let mut rest = args.iter();
        for arg in rest.by_ref() {
            match arg.as_str() {
                "--linux" => linux = true,
                "--windows" => windows = true,
                "--no-lint" => lint = false,
                "--" => break,
                other => {
                    return Err(fail!(
                        "`cargo xtask test` does not know `{other}`. Put test-name filters after `--`."
                    ))
                }
            }
        }
        harness.extend(rest.cloned());
        if !linux && !windows {
            linux = true;
            windows = true;
        }
        Ok(Options {
            linux,
            windows,
            lint,
            harness,
        })
    }
}

/// How one step ended.
enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// One line of the closing summary.
struct Step {
    name: &'static str,
    outcome: Outcome,
    detail: String,
}

/// Everything the run did, for the closing summary.
#[derive(Default)]
struct Report {
    steps: Vec<Step>,
    counts: TestCounts,
}

impl Report {
    fn record(&mut self, name: &'static str, result: Result<()>) -> bool {
        let passed = result.is_ok();
        let outcome = match result {
            Ok(()) => Outcome::Passed,
            Err(error) => {
                eprintln!("xtask: {name}: {error}");
                Outcome::Failed(error.0)
            }
        };
        self.steps.push(Step {
            name,
            outcome,
            detail: String::new(),
        });
        passed
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.steps.push(Step {
            name,
            outcome: Outcome::Skipped(why.to_owned()),
            detail: String::new(),
        });
    }

    fn failed(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.outcome, Outcome::Failed(_)))
    }

    fn print(&self) {
        heading("Summary of `cargo xtask test`");
        for step in &self.steps {
            let (word, why) = match &step.outcome {
                Outcome::Passed => ("passed", String::new()),
                Outcome::Failed(why) => ("FAILED", format!(": {}", first_line(why))),
                Outcome::Skipped(why) => ("skipped", format!(": {why}")),
            };
            let detail = if step.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", step.detail)
            };
            println!("    {:<12} {word}{why}{detail}", step.name);
        }
        println!();
        if self.failed() {
            println!("Result: FAILED.");
        } else {
            println!("Result: everything passed.");
        }
        // The closing line, in the plain form CI reads: totals of all legs.
        println!("xtask: {}", self.counts);
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Runs `cargo xtask test`.
pub fn run(root: &Path, options: &Options) -> Result<ExitCode> {
    let started = Instant::now();
    let mut report = Report::default();
    let limit = time_limit()?;

    heading("System packages");
    let mut wanted = Vec::new();
    if options.linux {
        wanted.extend_from_slice(packages::LINUX);
    }
    if options.windows {
        wanted.extend_from_slice(packages::WINDOWS);
    }
    let packages_ok = report.record("packages", packages::ensure(&wanted, root));

    if options.lint {
        heading("Formatting");
        report.record("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]).run(root));
        heading("Lints");
        report.record(
            "clippy",
            cargo()
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ])
                .run(root),
        );
        report.record("unsafe docs", package::windows_safety_comments(root));
        heading("Documentation");
        // Every item's docs, private ones included, with links that resolve.
        report.record(
            "rustdoc",
            cargo()
                .args(["doc", "-p", "eventcore-driver", "--no-deps", "--document-private-items"])
                .env("RUSTDOCFLAGS", "-D warnings")
                .run(root),
        );
        if options.windows && packages_ok {
            // The Windows-only API, documented as docs.rs builds it.
            report.record("rustdoc win", Layout::new(root).cargo_doc().run(root));
            report.record("other os", Layout::new(root).cargo_check_other_os().run(root));
        }
        heading("Packaging: publish dry run, rust-version, the README's project");
        report.record("publish", package::publish_dry_run(root));
        report.record("rust-version", package::rust_version(root));
        report.record("readme", package::newcomer(root));
    } else {
        for step in [
            "rustfmt",
            "clippy",
            "unsafe docs",
            "rustdoc",
            "publish",
            "rust-version",
            "readme",
        ] {
            report.skip(step, "--no-lint was given");
        }
    }

    let isolation = if packages_ok {
        Some(Isolation::detect(root, &root.join("target").join("xtask-netns"))?)
    } else {
        None
    };
    if let Some(Isolation::Host { reason }) = &isolation {
        banner(&[
            "NO TEST NETWORK NAMESPACE:",
            reason,
            "The tests run on the host's network, without EVENTCORE_TEST_NETNS,",
            "so every test that needs the namespace will SKIP itself.",
            "Run `cargo xtask test` as root to get the full test suite.",
        ]);
    }

    if options.linux {
        match &isolation {
            Some(isolation) => linux_leg(root, options, isolation, limit, &mut report),
            None => report.skip("linux leg", "system packages are missing"),
        }
        if loom::filtered(&options.harness) {
            report.skip("loom", "test-name filters were given");
        } else {
            report.record("loom", loom::run(root));
        }
    }
    if options.windows {
        match &isolation {
            Some(isolation) => windows_leg(root, options, isolation, limit, &mut report),
            None => report.skip("windows leg", "system packages are missing"),
        }
    }

    report.print();
    println!("(`cargo xtask test` took {:.0} s.)", started.elapsed().as_secs_f64());
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The cargo that runs `cargo xtask`, i.e. the rustup toolchain's.
fn cargo() -> Job {
    Job::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn time_limit() -> Result<Duration> {
    match std::env::var(TIMEOUT_VAR) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| fail!("{TIMEOUT_VAR} must be a number of seconds, not `{text}`.")),
        Err(_) => Ok(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
    }
}

fn linux_leg(root: &Path, options: &Options, isolation: &Isolation, limit: Duration, report: &mut Report) {
    const NAME: &str = "linux leg";
    heading("Linux leg: building the tests (outside the namespace, with registry access)");
    // Every feature: the optional integrations (hyper, tokio-io) have tests.
    let build = cargo()
        .args(["test", "--workspace", "--all-features", "--no-run"])
        .run(root);
    if let Err(error) = build {
        report.record(NAME, Err(fail!("building the tests failed: {error}")));
        return;
    }
    heading(if isolation.is_namespace() {
        "Linux leg: running the tests in a fresh network namespace"
    } else {
        "Linux leg: running the tests on the host network (no namespace)"
    });
    let mut job = cargo().args(["test", "--workspace", "--all-features", "--offline", "--no-fail-fast"]);
    if !options.harness.is_empty() {
        job = job.arg("--").args(&options.harness);
    }
    let run = isolation.wrap(job).run_tests(root, limit);
    finish_leg(NAME, run, options, isolation, limit, report);
    let asan = crate::sanitize::asan(root, &options.harness, isolation, limit);
    finish_leg("asan", asan, options, isolation, limit, report);
}

fn windows_leg(root: &Path, options: &Options, isolation: &Isolation, limit: Duration, report: &mut Report) {
    const NAME: &str = "windows leg";
    let layout = Layout::new(root);
    heading("Windows leg: preparing the Wine prefix");
    if let Err(error) = layout.prepare_prefix() {
        report.record(NAME, Err(fail!("preparing Wine failed: {error}")));
        return;
    }
    heading("Windows leg: cross-building the unit tests for x86_64-pc-windows-gnu");
    let build_started = Instant::now();
    if let Err(error) = layout.cargo_test(&["--no-run"], &[]).run(root) {
        report.record(NAME, Err(fail!("cross-building the tests failed: {error}")));
        return;
    }
    println!("The cross build took {:.1} s.", build_started.elapsed().as_secs_f64());
    heading(if isolation.is_namespace() {
        "Windows leg: running the unit tests under Wine in a fresh network namespace"
    } else {
        "Windows leg: running the unit tests under Wine on the host network (no namespace)"
    });
    // No wineserver from outside may serve the Wine processes inside.
    let _ = layout.wait_for_wineserver();
    let run = isolation
        .wrap(layout.cargo_test(&["--offline"], &options.harness))
        .run_tests(root, limit);
    // Inside the namespace, the wineserver dies with it; outside, stop it.
    let _ = layout.kill_wineserver();
    finish_leg(NAME, run, options, isolation, limit, report);
}

fn finish_leg(
    name: &'static str,
    run: Result<TestRun>,
    options: &Options,
    isolation: &Isolation,
    limit: Duration,
    report: &mut Report,
) {
    let run = match run {
        Ok(run) => run,
        Err(error) => {
            report.record(name, Err(error));
            return;
        }
    };
    report.counts += run.counts;
    let result = if run.timed_out {
        Err(fail!(
            "killed after {} s, the limit set by {TIMEOUT_VAR}",
            limit.as_secs()
        ))
    } else if !run.status.success() {
        Err(fail!("the tests failed ({})", describe(run.status)))
    } else if !run.counts.any() && options.harness.is_empty() {
        // With filters, a leg may rightly match nothing; without, a leg
        // that runs no test at all is broken.
        Err(fail!("no test ran"))
    } else {
        Ok(())
    };
    report.record(name, result);
    let place = if isolation.is_namespace() {
        format!("in the test namespace with {}=1", netns::ENV_VAR)
    } else {
        "on the host network, so the namespace-only tests skipped themselves".to_owned()
    };
    if let Some(step) = report.steps.last_mut() {
        step.detail = format!("{}; {place}; {:.1} s", run.counts, run.elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Options::parse(&args)
    }

    #[test]
    fn both_legs_by_default() {
        let options = parse(&[]).unwrap();
        assert!(options.linux && options.windows && options.lint);
        assert!(options.harness.is_empty());
    }

    #[test]
    fn one_leg_and_filters() {
        let options = parse(&["--windows", "--", "timer", "--nocapture"]).unwrap();
        assert!(!options.linux && options.windows);
        assert_eq!(options.harness, ["timer", "--nocapture"]);
    }

    #[test]
    fn unknown_flags_are_refused() {
        assert!(parse(&["--mac"]).is_err());
        assert!(parse(&["timer"]).is_err());
    }
}
