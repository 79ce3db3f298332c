//! `eventcore-bench`: libuv's benchmark scenarios, run in one process on
//! every eventcore backend of this machine, on tokio (current-thread
//! runtime), on libuv (built from source) and on a hand-written floor where
//! one makes sense; medians over alternating rounds, CPU time per operation
//! beside every figure. With `--http`, the HTTP plaintext servers measured
//! with `wrk` instead. See `docs/benchmarks.md` for what each scenario does
//! and the latest measured table.
//!
//! Run it with `cargo xtask bench [--quick] [--json] [--http]`.

mod ec;
mod ec_async;
mod floor;
mod harness;
mod http;
mod http_hyper;
mod report;
mod tk;
mod uv;

// The hyper examples of the library, built into this binary for `--http`
// (`serve-hyper…`): the servers measured are their code. `hyper_all_cores`
// brings `hyper_server` in as its module `server`.
#[path = "../../eventcore/examples/hyper_all_cores.rs"]
#[allow(dead_code)]
mod hyper_all_cores;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use eventcore::BackendKind;

use harness::{Ctx, Entry, RunFn, Scenario, Series};

const USAGE: &str = "\
Usage: eventcore-bench [--quick] [--json] [--http] [--rounds N] [--only a,b]
                       [--systems a,b] [--seconds S] [--out DIR]
       eventcore-bench chart RESULTS.jsonl OUT.svg TITLE
                       (draws the chart again from saved results)

    --quick      short durations (the whole run takes about a minute)
    --json       print one JSON object per figure and system on stdout
    --http       run the HTTP servers under wrk instead of the scenarios
    --rounds N   alternating rounds per scenario (default 3); medians of them
    --only LIST  run only these scenarios (comma-separated names)
    --systems L  run only these systems (eventcore-epoll, tokio, libuv ...;
                 with --http also the servers, e.g. tokio-hyper); naming
                 eventcore-io_uring-sqpoll, eventcore-io_uring-multishot,
                 eventcore-io_uring-recv or eventcore-io_uring-async-recv
                 adds those io_uring tunings (not run otherwise; with
                 --http eventcore-io_uring-recv-same, -recv-rt-same and
                 -recv-hyper)
    --seconds S  length of each timed run (default 5, --quick 0.4; with
                 --http whole seconds of wrk, default 5, --quick 1)
    --out DIR    also write results.md, results.jsonl and chart.svg there
                 (http.md, http.jsonl and http.svg with --http)
";

/// Command-line options.
pub struct Options {
    quick: bool,
    json: bool,
    http: bool,
    rounds: Option<usize>,
    only: Option<Vec<String>>,
    systems: Option<Vec<String>>,
    seconds: Option<f64>,
    out: Option<PathBuf>,
    args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        json: false,
        http: false,
        rounds: None,
        only: None,
        systems: None,
        seconds: None,
        out: None,
        args: args.to_vec(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--http" => o.http = true,
            "--rounds" => {
                let n = it.next().ok_or("--rounds needs a number")?;
                o.rounds = Some(n.parse().map_err(|_| "--rounds needs a number")?);
            }
            "--only" => {
                let list = it.next().ok_or("--only needs a list")?;
                o.only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--systems" => {
                let list = it.next().ok_or("--systems needs a list")?;
                o.systems = Some(list.split(',').map(str::to_owned).collect());
            }
            "--seconds" => {
                let n = it.next().ok_or("--seconds needs a number")?;
                o.seconds = Some(n.parse().map_err(|_| "--seconds needs a number")?);
            }
            "--out" => o.out = Some(it.next().ok_or("--out needs a directory")?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// `eventcore-bench chart RESULTS.jsonl OUT.svg TITLE`.
fn redraw_chart(args: &[String]) -> ExitCode {
    let [input, output, title] = args else {
        eprintln!("eventcore-bench: chart takes RESULTS.jsonl OUT.svg TITLE\n{USAGE}");
        return ExitCode::from(2);
    };
    let drawn = std::fs::read_to_string(input)
        .map_err(|e| format!("{input}: {e}"))
        .and_then(|text| report::series_from_json_lines(&text))
        .and_then(|series| report::chart(&series, std::path::Path::new(output), title));
    match drawn {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventcore-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The HTTP comparison servers, started by `--http` as child processes.
    match args.first().map(String::as_str) {
        Some("serve-tokio") => return http::serve_tokio(args.get(1)),
        Some("serve-floor") => return http::serve_floor(args.get(1)),
        Some("serve-eventcore") => return http::serve_eventcore(&args[1..]),
        Some("serve-eventcore-rt") => return http::serve_eventcore_rt(&args[1..]),
        Some("serve-hyper") => return http_hyper::serve_eventcore(&args[1..]),
        Some("serve-hyper-cores") => return http_hyper::serve_eventcore_cores(&args[1..]),
        Some("serve-hyper-tokio") => return http_hyper::serve_tokio(args.get(1), false),
        Some("serve-hyper-tokio-mt") => return http_hyper::serve_tokio(args.get(1), true),
        Some("chart") => return redraw_chart(&args[1..]),
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("eventcore-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = if options.http {
        http::run(&options)
    } else {
        run(&options)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventcore-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn entry(system: impl Into<String>, run: RunFn) -> Entry {
    Entry {
        system: system.into(),
        run,
    }
}

/// The scenarios, in the order they run.
///
/// `tuned`: also the io_uring tuning options as systems of their own
/// (`eventcore-io_uring-sqpoll`, `eventcore-io_uring-multishot`,
/// `eventcore-io_uring-recv` and `eventcore-io_uring-async-recv`), which
/// run only when `--systems` names them.
fn scenarios(ctx: &Ctx, rounds: usize, quick: bool, tuned: bool) -> Vec<Scenario> {
    let kinds = BackendKind::available();
    let uring = kinds.contains(&BackendKind::IoUring) && tuned;
    let tuning = |sqpoll, multishot_accept, multishot_recv| ec::Setup {
        kind: BackendKind::IoUring,
        sqpoll,
        multishot_accept,
        multishot_recv,
    };
    let ec = |f: &dyn Fn(ec::Setup) -> RunFn| -> Vec<Entry> {
        kinds
            .iter()
            .map(|&k| entry(format!("eventcore-{}", k.name()), f(k.into())))
            .collect()
    };
    // The plain backends, and where `tuned` the io_uring tunings (multishot
    // accept only where the scenario accepts many connections).
    let ec_with = |f: &dyn Fn(ec::Setup) -> RunFn, multishot: bool| -> Vec<Entry> {
        let mut e = ec(f);
        if uring {
            e.push(entry("eventcore-io_uring-sqpoll", f(tuning(true, false, false))));
            e.push(entry("eventcore-io_uring-recv", f(tuning(false, false, true))));
            if multishot {
                e.push(entry("eventcore-io_uring-multishot", f(tuning(false, true, false))));
            }
        }
        e
    };
    let scenario = |name, pinned, entries: Vec<Entry>| Scenario {
        name,
        pinned,
        rounds,
        entries,
    };
    let ping = |name: &'static str| {
        let mut e = ec_with(&|k| ec::ping_pong(k, name), false);
        e.extend(kinds.iter().map(|&k| {
            entry(
                format!("eventcore-{}-async", k.name()),
                ec_async::ping_pong(k.into(), name),
            )
        }));
        if uring {
            e.push(entry(
                "eventcore-io_uring-async-recv",
                ec_async::ping_pong(tuning(false, false, true), name),
            ));
        }
        e.push(entry("tokio", tk::ping_pong(name)));
        e.push(entry("libuv", uv::ping_pong(name)));
        e.push(entry("floor", floor::ping_pong(name)));
        e
    };
    let with = |mut e: Vec<Entry>, more: Vec<Entry>| {
        e.extend(more);
        e
    };
    // One million timers take about a second per system; in quick mode two
    // rounds are enough to see them.
    let timer_rounds = if quick { rounds.min(2) } else { rounds };
    let _ = ctx;
    vec![
        scenario("ping_pong", false, ping("ping_pong")),
        scenario("ping_pong_pinned", true, ping("ping_pong_pinned")),
        scenario(
            "ping_pong_many",
            false,
            with(
                ec_with(&ec::ping_pong_many, false),
                vec![
                    entry("tokio", tk::ping_pong_many()),
                    entry("libuv", uv::ping_pong_many()),
                ],
            ),
        ),
        scenario(
            "pump",
            false,
            with(
                ec_with(&ec::pump, false),
                vec![
                    entry("tokio", tk::pump()),
                    entry("libuv", uv::pump()),
                    entry("floor", floor::pump()),
                ],
            ),
        ),
        scenario("copy", false, {
            let mut e: Vec<Entry> = kinds
                .iter()
                .map(|&k| entry(format!("eventcore-{}-async", k.name()), ec_async::copy(k.into())))
                .collect();
            if uring {
                e.push(entry(
                    "eventcore-io_uring-async-recv",
                    ec_async::copy(tuning(false, false, true)),
                ));
            }
            e.push(entry("tokio", tk::copy()));
            e.push(entry("floor", floor::copy()));
            e
        }),
        scenario(
            "pound",
            false,
            with(
                ec_with(&ec::pound, true),
                vec![entry("tokio", tk::pound()), entry("libuv", uv::pound())],
            ),
        ),
        Scenario {
            rounds: timer_rounds,
            ..scenario(
                "million_timers",
                false,
                with(
                    ec(&ec::million_timers),
                    vec![
                        entry("tokio", tk::million_timers()),
                        entry("libuv", uv::million_timers()),
                    ],
                ),
            )
        },
        scenario(
            "async_pummel",
            false,
            with(
                ec(&ec::async_pummel),
                vec![
                    entry("tokio", tk::async_pummel()),
                    entry("libuv", uv::async_pummel()),
                    entry("floor", floor::async_pummel()),
                ],
            ),
        ),
        scenario(
            "loop_count",
            false,
            with(
                ec(&ec::loop_count),
                vec![
                    entry("tokio", tk::loop_count()),
                    entry("libuv", uv::loop_count()),
                    entry("floor", floor::loop_count()),
                ],
            ),
        ),
        scenario(
            "file_read",
            false,
            with(
                ec(&ec::file_read),
                vec![
                    entry("tokio", tk::file_read()),
                    entry("libuv", uv::file_read()),
                    entry("floor", floor::file_read()),
                ],
            ),
        ),
        scenario(
            "dns",
            false,
            with(
                ec(&ec::dns),
                vec![
                    entry("tokio", tk::dns()),
                    entry("libuv", uv::dns()),
                    entry("floor", floor::dns()),
                ],
            ),
        ),
        scenario(
            "udp_pummel",
            false,
            with(
                ec(&ec::udp_pummel),
                vec![
                    entry("tokio", tk::udp_pummel()),
                    entry("libuv", uv::udp_pummel()),
                    entry("floor", floor::udp_pummel()),
                ],
            ),
        ),
        scenario(
            "idle_connections",
            false,
            with(
                ec(&ec::idle_connections),
                vec![
                    entry("tokio", tk::idle_connections()),
                    entry("libuv", uv::idle_connections()),
                ],
            ),
        ),
    ]
}

/// Writes the file `file_read` reads: `size` bytes, then reads it once so
/// that it sits in the page cache.
fn make_file(path: &std::path::Path, size: u64) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut f = std::fs::File::create(path).map_err(harness::err)?;
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 + 3) as u8).collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).map_err(harness::err)?;
        left -= n as u64;
    }
    drop(f);
    let mut f = std::fs::File::open(path).map_err(harness::err)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).map_err(harness::err)? > 0 {}
    Ok(())
}

/// The command line that made this run, for the report.
pub fn command_line(options: &Options) -> String {
    let mut c = String::from("cargo xtask bench");
    let mut args = options.args.iter();
    while let Some(a) = args.next() {
        if a == "--out" {
            args.next();
            continue;
        }
        c.push(' ');
        c.push_str(a);
    }
    c
}

/// Prints a progress line on stderr.
pub fn progress(line: &str) {
    eprintln!("{line}");
}

/// Writes the text report (or JSON lines) and the files under `--out`.
pub fn finish(options: &Options, series: &[Series], stem: &str, title: &str) -> Result<(), String> {
    let cpu_note = if stem == "http" {
        report::HTTP_CPU_NOTE
    } else {
        report::CPU_NOTE
    };
    if options.json {
        print!("{}", report::json_lines(series));
    } else {
        println!();
        print!("{}", report::text(series, cpu_note));
    }
    if let Some(dir) = &options.out {
        std::fs::create_dir_all(dir).map_err(harness::err)?;
        let md = report::markdown(series, &command_line(options), &report::machine(), cpu_note);
        std::fs::write(dir.join(format!("{stem}.md")), md).map_err(harness::err)?;
        std::fs::write(dir.join(format!("{stem}.jsonl")), report::json_lines(series)).map_err(harness::err)?;
        let svg = dir.join(format!("{stem}.svg"));
        report::chart(series, &svg, title)?;
        progress(&format!(
            "Wrote {stem}.md, {stem}.jsonl and {stem}.svg in {}.",
            dir.display()
        ));
    }
    Ok(())
}

fn run(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    let quick = options.quick;
    let rounds = options.rounds.unwrap_or(3).max(1);
    let fd_limit = harness::raise_fd_limit(65536);
    let wanted_idle = if quick { 2_000 } else { 10_000 };
    // Two descriptors per idle connection (both ends live in this process).
    let idle = wanted_idle.min((fd_limit.saturating_sub(200) / 2) as usize);
    let file_path = std::env::temp_dir().join(format!("eventcore-bench-{}.dat", std::process::id()));
    let duration = match options.seconds {
        Some(s) => Duration::from_secs_f64(s),
        None if quick => Duration::from_millis(400),
        None => Duration::from_secs(5),
    };
    let ctx = Ctx {
        duration,
        // libuv's pound runs twice as long as its other benchmarks.
        pound_duration: duration * 2,
        timers: 1_000_000,
        async_callbacks: if quick { 200_000 } else { 1_000_000 },
        dns_lookups: 1000,
        file_size: 256 << 20,
        file_path,
        idle_connections: idle,
    };
    progress(&format!(
        "eventcore-bench on {}; {} round(s) per scenario, {} s per timed run{}.",
        report::machine(),
        rounds,
        ctx.duration.as_secs_f64(),
        if quick { " (--quick)" } else { "" }
    ));
    if idle < wanted_idle {
        progress(&format!(
            "Descriptor limit {fd_limit}: idle_connections uses {idle} connections."
        ));
    }
    let tuned = options.systems.as_ref().is_some_and(|s| {
        s.iter().any(|x| {
            x.starts_with("eventcore-io_uring-")
                && (x.ends_with("sqpoll") || x.ends_with("multishot") || x.ends_with("recv"))
        })
    });
    let mut all = scenarios(&ctx, rounds, quick, tuned);
    if let Some(systems) = &options.systems {
        for sc in &mut all {
            sc.entries.retain(|e| systems.contains(&e.system));
        }
    }
    let mut series = Vec::new();
    let mut file_made = false;
    for sc in &all {
        if let Some(only) = &options.only {
            if !only.iter().any(|o| o == sc.name) {
                continue;
            }
        }
        if sc.name == "file_read" && !file_made {
            make_file(&ctx.file_path, ctx.file_size)?;
            file_made = true;
        }
        progress(&format!(
            "{}{}",
            sc.name,
            if sc.pinned { " (whole process on one CPU)" } else { "" }
        ));
        series.extend(harness::run_scenario(&ctx, sc, &mut |l| progress(l)));
    }
    if file_made {
        let _ = std::fs::remove_file(&ctx.file_path);
    }
    progress(&format!("The scenarios took {:.0} s.", started.elapsed().as_secs_f64()));
    finish(
        options,
        &series,
        "results",
        &format!("eventcore-bench — {}", command_line(options)),
    )
}
