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
//! - The HTTP plaintext servers (scenario `http`): each server runs under
//!   callgrind; after a warm-up its counters are zeroed
//!   (`callgrind_control -z`), `wrk` loads it for the window, and the dump
//!   taken then (`callgrind_control -d`) holds the instructions of exactly
//!   the requests wrk counted. Server CPU time per request comes from the
//!   native `cargo xtask bench --http`.

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

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
const SCENARIOS: &[&str] = &["ping_pong_pinned", "pound", "loop_count", "http"];

/// The HTTP servers measured by the `http` scenario: (system, whether the
/// program is the `http_plaintext` example rather than the benchmark, its
/// arguments before the address).
const HTTP_SERVERS: &[(&str, bool, &[&str])] = &[
    ("eventcore-epoll", true, &["epoll"]),
    ("eventcore-epoll-same", false, &["serve-eventcore", "epoll"]),
    ("eventcore-epoll-rt-same", false, &["serve-eventcore-rt", "epoll"]),
    ("tokio", false, &["serve-tokio"]),
    ("eventcore-epoll-hyper", false, &["serve-hyper", "epoll"]),
    ("tokio-hyper", false, &["serve-hyper-tokio"]),
    ("floor", false, &["serve-floor"]),
];

/// wrk's connections for the `http` scenario.
const HTTP_CONNECTIONS: usize = 16;

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
    let http = options.only.iter().any(|s| s == "http");
    heading("Packages: valgrind and strace");
    let mut wanted = vec![VALGRIND, STRACE];
    if http {
        wanted.extend_from_slice(packages::HTTP);
    }
    packages::ensure(&wanted, root)?;
    heading("Building the benchmark (release)");
    cargo()
        .args(["build", "--release", "-p", "eventcore-bench"])
        .run(root)?;
    if http {
        heading("Building the HTTP example (release)");
        cargo().args(crate::demo::HTTP_EXAMPLE_BUILD).run(root)?;
    }
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
        if scenario == "http" {
            let example = root.join("target/release/examples/http_plaintext");
            for &(system, of_example, args) in HTTP_SERVERS {
                heading(&format!("callgrind: http on {system}"));
                let program = if of_example { &example } else { &bench };
                match http_callgrind(root, program, args, &out, system, options.seconds) {
                    Ok((per_request, requests)) => {
                        medians.push(("http".into(), system.to_string(), per_request));
                        println!("http {system}: {per_request:.0} instructions/request ({requests:.0} requests)");
                        report.push_str(&format!(
                            "| http ({HTTP_CONNECTIONS} connections) | {system} | {per_request:.0} | {requests:.0} requests | 1 |\n"
                        ));
                    }
                    Err(e) => println!("http {system}: not measured ({e})"),
                }
            }
            continue;
        }
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
    ("http", "eventcore-epoll", "tokio", 0.8),
    ("http", "eventcore-epoll-same", "tokio", 0.8),
    ("http", "eventcore-epoll-rt-same", "tokio", 0.8),
    ("http", "eventcore-epoll-hyper", "tokio-hyper", 0.8),
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

/// Instructions per request of one HTTP server under callgrind, and the
/// requests the window counted (see the module docs).
fn http_callgrind(
    root: &Path,
    program: &Path,
    args: &[&str],
    out: &Path,
    system: &str,
    seconds: f64,
) -> Result<(f64, f64)> {
    let stem = format!("cg.http.{system}");
    remove_dumps(out, &stem)?;
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let file = out.join(&stem);
    let log = std::fs::File::create(out.join(format!("{stem}.log")))?;
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(program)
        .args(args)
        .arg(addr.to_string())
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| fail!("cannot start valgrind: {e}"))?;
    // Killed (and so dumped by callgrind once more) however this ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("piped");
    let child = Kill(child);
    let mut line = String::new();
    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(fail!("{system} did not listen on {addr} under valgrind"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.0.id().to_string();
    let secs = (seconds.ceil() as u64).max(1);
    wrk(root, addr, 1)?;
    Job::new("callgrind_control").args(["-z", &pid]).output(root)?;
    let requests = wrk(root, addr, secs * 3)?;
    Job::new("callgrind_control").args(["-d", &pid]).output(root)?;
    drop(child);
    let text = std::fs::read_to_string(format!("{}.1", file.display()))
        .map_err(|e| fail!("no callgrind dump for {system}: {e}"))?;
    let instructions = dump_total(&text).ok_or_else(|| fail!("no total in the callgrind dump for {system}"))?;
    if requests <= 0.0 {
        return Err(fail!("wrk counted no request on {system}"));
    }
    Ok((instructions / requests, requests))
}

/// Runs wrk (one thread, [`HTTP_CONNECTIONS`] connections) against `addr`
/// for `secs` seconds; the requests it counted.
fn wrk(root: &Path, addr: SocketAddr, secs: u64) -> Result<f64> {
    let text = Job::new("wrk")
        .args(["-t1", &format!("-c{HTTP_CONNECTIONS}"), &format!("-d{secs}s")])
        .arg(format!("http://{addr}/plaintext"))
        .output(root)?;
    // "  123456 requests in 5.00s, 17.00MB read"
    text.lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| fail!("unexpected wrk output: {text}"))
}

/// Removes the callgrind dumps of `stem` (`STEM`, `STEM.N`, `STEM.log`)
/// left by an earlier run — and only those: the stem of one system is a
/// prefix of another's (`eventcore-epoll`, `eventcore-epoll-async`).
fn remove_dumps(out: &Path, stem: &str) -> Result<()> {
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(stem))
            .is_some_and(|rest| {
                let part = rest
                    .strip_prefix('.')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                rest.is_empty() || rest == ".log" || part
            });
        if ours {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// The instructions a callgrind dump counted (its `summary:` line).
fn dump_total(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|n| n.trim().parse::<f64>().ok())
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
    remove_dumps(out, &stem)?;
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
        let instructions = dump_total(&text);
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
