//! `cargo xtask bench --instructions`: the benchmark's scenarios measured by
//! what does not move with the machine's load.
//!
//! - Systems valgrind can run (epoll, tokio, libuv, the floor): every timed
//!   window of the benchmark zeroes callgrind's counters when it opens and
//!   dumps them when it closes, with the window's exact operation count in
//!   the dump's trigger (`crates/eventcore-bench/src/harness.rs`). One
//!   valgrind run per scenario and system, `--rounds 3`: instructions per
//!   operation of each window, reported as the median and the spread.
//! - io_uring, which valgrind cannot run: `strace -c -f` over a short and a
//!   long run, the windows' operation counts printed by the benchmark
//!   (`EVENTCORE_BENCH_WINDOWS`), and system calls per operation as the
//!   difference of the two runs (the setup's calls cancel out); CPU time per
//!   operation from a native run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cmd::{heading, Job, Result};
use crate::fail;
use crate::packages::{self, Package, Probe};

const VALGRIND: Package = Package {
    name: "valgrind",
    probes: &[Probe::Program("valgrind")],
};

const STRACE: Package = Package {
    name: "strace",
    probes: &[Probe::Program("strace")],
};

/// Where the callgrind dumps and the report go.
const OUT: &str = "target/eventcore-bench/instructions";

/// The scenarios measured unless `--only` says otherwise: the per-operation
/// paths the performance work steers by. (`async_pummel`, cross-thread
/// wake-ups from busy threads, runs for many minutes under valgrind, which
/// runs one thread at a time: ask for it with `--only`.)
const SCENARIOS: &[&str] = &["ping_pong_pinned", "pound", "loop_count"];

/// Systems valgrind can run.
const VALGRIND_SYSTEMS: &[&str] = &["eventcore-epoll", "eventcore-epoll-async", "tokio", "libuv", "floor"];

/// Systems measured by system calls instead.
const STRACE_SYSTEMS: &[&str] = &["eventcore-io_uring", "eventcore-io_uring-async"];

struct Options {
    only: Vec<String>,
    seconds: f64,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        only: SCENARIOS.iter().map(|s| s.to_string()).collect(),
        seconds: 1.0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--instructions" => {}
            "--only" => {
                let list = it.next().ok_or_else(|| fail!("--only needs a list"))?;
                o.only = list.split(',').map(str::to_owned).collect();
            }
            "--seconds" => {
                let s = it.next().ok_or_else(|| fail!("--seconds needs a number"))?;
                o.seconds = s.parse().map_err(|_| fail!("--seconds takes a number, not {s:?}"))?;
            }
            other => {
                return Err(fail!(
                    "`cargo xtask bench --instructions` takes --only LIST and --seconds S, not {other:?}."
                ))
            }
        }
    }
    Ok(o)
}

/// Runs the instruction and system-call counts and writes the report.
pub fn run(root: &Path, args: &[String]) -> Result<ExitCode> {
    let options = parse(args)?;
    heading("Packages: valgrind and strace");
    packages::ensure(&[VALGRIND, STRACE], root)?;
    heading("Building the benchmark (release)");
    cargo()
        .args(["build", "--release", "-p", "eventcore-bench"])
        .run(root)?;
    let bench = root.join("target/release/eventcore-bench");
    let out = root.join(OUT);
    std::fs::create_dir_all(&out)?;
    let mut report = String::from(
        "| scenario | system | instructions / op (median) | spread (min–max) | rounds |\n|---|---|---:|---|---:|\n",
    );
    let mut calls =
        String::from("| scenario | system | system calls / op | CPU µs / op (native) |\n|---|---|---:|---:|\n");
    let mut medians: Vec<(String, String, f64)> = Vec::new();
    for scenario in &options.only {
        for system in VALGRIND_SYSTEMS {
            heading(&format!("callgrind: {scenario} on {system}"));
            match callgrind(root, &bench, &out, scenario, system, options.seconds)? {
                Some(per_op) if !per_op.is_empty() => {
                    let (median, min, max) = spread(&per_op);
                    medians.push((scenario.clone(), system.to_string(), median));
                    println!("{scenario} {system}: {median:.0} instructions/op ({min:.0}–{max:.0})");
                    report.push_str(&format!(
                        "| {scenario} | {system} | {median:.0} | {min:.0}–{max:.0} | {} |\n",
                        per_op.len()
                    ));
                }
                _ => println!("{scenario} {system}: not measured (the scenario has no such system)"),
            }
        }
        for system in STRACE_SYSTEMS {
            heading(&format!("strace: {scenario} on {system}"));
            match syscalls(root, &bench, &out, scenario, system, options.seconds)? {
                Some((per_op, cpu)) => {
                    println!("{scenario} {system}: {per_op:.2} system calls/op, {cpu:.2} µs CPU/op");
                    calls.push_str(&format!("| {scenario} | {system} | {per_op:.2} | {cpu:.2} |\n"));
                }
                None => println!("{scenario} {system}: not measured (no io_uring here, or no such system)"),
            }
        }
    }
    let text = format!(
        "# Instructions and system calls per operation\n\nMeasured by `cargo xtask bench --instructions` \
         (callgrind windows of {s} s, 3 rounds; strace over {s} s and {l} s runs).\n\n{report}\n{calls}\n{targets}",
        s = options.seconds,
        l = options.seconds * 3.0,
        targets = targets(&medians),
    );
    std::fs::write(out.join("instructions.md"), &text)?;
    heading(&format!("Wrote {}", out.join("instructions.md").display()));
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The instruction targets: eventcore's figure against a reference system's
/// in the same run, at most `limit` times it.
const TARGETS: &[(&str, &str, &str, f64)] = &[
    ("ping_pong_pinned", "eventcore-epoll", "libuv", 0.8),
    ("ping_pong_pinned", "eventcore-epoll-async", "tokio", 0.8),
    ("pound", "eventcore-epoll", "libuv", 0.8),
    ("loop_count", "eventcore-epoll", "libuv", 1.0),
];

/// The targets table for the systems measured in this run.
fn targets(medians: &[(String, String, f64)]) -> String {
    let find = |scenario: &str, system: &str| {
        medians
            .iter()
            .find(|(sc, sy, _)| sc == scenario && sy == system)
            .map(|(_, _, m)| *m)
    };
    let mut out = String::from("| target | ratio | |\n|---|---:|---|\n");
    for &(scenario, system, reference, limit) in TARGETS {
        let (Some(ours), Some(theirs)) = (find(scenario, system), find(scenario, reference)) else {
            continue;
        };
        let ratio = ours / theirs;
        let verdict = if ratio <= limit {
            "**hit**".to_owned()
        } else {
            format!("MISS by {:.0} %", (ratio / limit - 1.0) * 100.0)
        };
        out.push_str(&format!(
            "| {scenario}: {system} instructions ≤ {limit}× {reference} | {ratio:.2}× | {verdict} |\n"
        ));
    }
    out
}

fn cargo() -> Job {
    Job::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The median, minimum and maximum of `v` (not empty).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// One valgrind run of `scenario` on `system`: instructions per operation of
/// each window (`None` if the benchmark measured no window).
fn callgrind(
    root: &Path,
    bench: &Path,
    out: &Path,
    scenario: &str,
    system: &str,
    seconds: f64,
) -> Result<Option<Vec<f64>>> {
    let stem = format!("cg.{scenario}.{system}");
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&stem))
        {
            std::fs::remove_file(path)?;
        }
    }
    let file = out.join(&stem);
    let log = out.join(format!("{stem}.log"));
    let ok = Job::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(bench)
        .args(["--only", scenario, "--systems", system, "--rounds", "3", "--seconds"])
        .arg(seconds.to_string())
        .arg("--json")
        .quiet(root, Some(&log))?;
    if !ok {
        return Err(fail!("valgrind failed on {scenario} / {system}: see {}", log.display()));
    }
    let mut per_op = Vec::new();
    for part in 1.. {
        let path = PathBuf::from(format!("{}.{part}", file.display()));
        let Ok(text) = std::fs::read_to_string(&path) else {
            break;
        };
        let ops = text
            .lines()
            .find_map(|l| l.split("eventcore-bench window ops=").nth(1))
            .and_then(|n| n.trim().parse::<f64>().ok());
        let instructions = text
            .lines()
            .find_map(|l| l.strip_prefix("summary:"))
            .and_then(|n| n.trim().parse::<f64>().ok());
        if let (Some(ops), Some(i)) = (ops, instructions) {
            if ops > 0.0 {
                per_op.push(i / ops);
            }
        }
    }
    Ok(Some(per_op))
}

/// System calls per operation (difference of a short and a long run under
/// `strace -c -f`) and CPU µs per operation (a native run's median).
fn syscalls(
    root: &Path,
    bench: &Path,
    out: &Path,
    scenario: &str,
    system: &str,
    seconds: f64,
) -> Result<Option<(f64, f64)>> {
    let mut runs = Vec::new();
    for (i, s) in [seconds, seconds * 3.0].into_iter().enumerate() {
        let summary = out.join(format!("strace.{scenario}.{system}.{i}"));
        let stderr = Job::new("strace")
            .args(["-c", "-f", "-o"])
            .arg(&summary)
            .arg(bench)
            .args(["--only", scenario, "--systems", system, "--rounds", "1", "--seconds"])
            .arg(s.to_string())
            .arg("--json")
            .env("EVENTCORE_BENCH_WINDOWS", "1")
            .output_with_stderr(root)?;
        let ops: f64 = stderr
            .lines()
            .filter_map(|l| l.split("eventcore-bench window ops=").nth(1))
            .filter_map(|n| n.trim().parse::<f64>().ok())
            .sum();
        let text = std::fs::read_to_string(&summary).unwrap_or_default();
        let calls = text
            .lines()
            .find(|l| l.trim_end().ends_with("total"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<f64>().ok());
        match calls {
            Some(c) if ops > 0.0 => runs.push((ops, c)),
            _ => return Ok(None),
        }
    }
    let (d_ops, d_calls) = (runs[1].0 - runs[0].0, runs[1].1 - runs[0].1);
    if d_ops <= 0.0 {
        return Ok(None);
    }
    let native = Job::new(bench)
        .args(["--only", scenario, "--systems", system, "--rounds", "3", "--seconds"])
        .arg(seconds.to_string())
        .arg("--json")
        .output(root)?;
    let cpus: Vec<f64> = native
        .lines()
        .filter_map(|l| l.split("\"cpu_us_per_op\": ").nth(1))
        .filter_map(|n| n.trim_end_matches('}').trim().parse::<f64>().ok())
        .collect();
    let cpu = if cpus.is_empty() { f64::NAN } else { spread(&cpus).0 };
    Ok(Some((d_calls / d_ops, cpu)))
}
