//! Measuring: time windows with the process's CPU time, memory, CPU pinning,
//! and running every system of a scenario in alternating rounds.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a run could not do, in words.
pub type Result<T> = std::result::Result<T, String>;

/// Turns any displayable error into the benchmark's error type.
pub fn err<E: fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The sizes and durations of one benchmark run.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// How long each timed scenario runs (libuv's 5 s; shorter with `--quick`).
    pub duration: Duration,
    /// `pound` runs this long (libuv's 10 s; shorter with `--quick`).
    pub pound_duration: Duration,
    /// Timers of `million_timers`.
    pub timers: usize,
    /// Callbacks `async_pummel` waits for.
    pub async_callbacks: u64,
    /// Lookups of `dns`.
    pub dns_lookups: usize,
    /// Size of the file `file_read` reads.
    pub file_size: u64,
    /// The file `file_read` reads (created before the scenario).
    pub file_path: std::path::PathBuf,
    /// Connections of `idle_connections`.
    pub idle_connections: usize,
}

/// The process's CPU time so far: user + system, all threads (`getrusage`).
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Valgrind client requests for callgrind: a window zeroes the counters when
/// it opens and dumps them when it closes, so a run under
/// `valgrind --tool=callgrind` gives the instructions of each window alone
/// (`cargo xtask bench --instructions`). Natively the instruction sequence
/// is a no-op (four rotations by 128 bits in all, and `xchg rbx, rbx`).
mod callgrind {
    /// `VG_USERREQ_TOOL_BASE('C', 'T')`: callgrind's first request.
    const BASE: u64 = (b'C' as u64) << 24 | (b'T' as u64) << 16;
    const ZERO_STATS: u64 = BASE + 1;
    const DUMP_STATS_AT: u64 = BASE + 3;

    #[cfg(target_arch = "x86_64")]
    fn request(code: u64, arg: u64) {
        let args: [u64; 6] = [code, arg, 0, 0, 0, 0];
        let mut result: u64 = 0;
        // SAFETY: valgrind's "special instruction" preamble (rotations of
        // rdi that restore it) and a no-op exchange; valgrind reads `args`
        // through rax and writes its answer to rdx; natively nothing changes.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") args.as_ptr(),
                inout("rdx") result,
                options(nostack),
            );
        }
        let _ = result;
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn request(_: u64, _: u64) {}

    /// Zeroes callgrind's counters (all threads).
    pub fn zero_stats() {
        request(ZERO_STATS, 0);
    }

    /// Dumps callgrind's counters with `label` as the dump's trigger, and
    /// zeroes them.
    pub fn dump_stats_at(label: &str) {
        let text = std::ffi::CString::new(label).unwrap_or_default();
        request(DUMP_STATS_AT, text.as_ptr() as u64);
    }
}

/// A timed window: wall clock and process CPU time from `open` to `close`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    wall: Instant,
    cpu: Duration,
}

/// What a closed window measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Wall-clock time of the window.
    pub elapsed: Duration,
    /// CPU time (user + system, all threads) spent in the window.
    pub cpu: Duration,
    /// Operations done in the window.
    pub ops: f64,
}

impl Window {
    /// Starts measuring now.
    pub fn open() -> Window {
        callgrind::zero_stats();
        Window {
            cpu: cpu_time(),
            wall: Instant::now(),
        }
    }

    /// Stops measuring; `ops` operations were done in the window.
    pub fn close(self, ops: f64) -> Measured {
        let elapsed = self.wall.elapsed();
        let measured = Measured {
            elapsed,
            cpu: cpu_time().saturating_sub(self.cpu),
            ops,
        };
        callgrind::dump_stats_at(&format!("eventcore-bench window ops={ops}"));
        if std::env::var_os("EVENTCORE_BENCH_WINDOWS").is_some() {
            // For counts taken outside the process (`strace -c`): the
            // exact operations of each window.
            eprintln!("eventcore-bench window ops={ops}");
        }
        measured
    }

    /// When the window opened.
    pub fn started(&self) -> Instant {
        self.wall
    }
}

impl Measured {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops / self.elapsed.as_secs_f64()
    }

    /// CPU microseconds per operation.
    pub fn cpu_us_per_op(&self) -> f64 {
        if self.ops > 0.0 {
            self.cpu.as_secs_f64() * 1e6 / self.ops
        } else {
            f64::NAN
        }
    }
}

/// One figure of a run.
#[derive(Clone, Debug)]
pub struct Metric {
    /// The scenario name in the output (`ping_pong`, `million_timers_init` …).
    pub name: &'static str,
    /// The unit (`rt/s`, `s`, `MB` …).
    pub unit: &'static str,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// The value.
    pub value: f64,
}

/// What one run of one system in one scenario produced.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Its figures (most scenarios have one).
    pub metrics: Vec<Metric>,
    /// CPU time per operation, µs.
    pub cpu_us_per_op: f64,
}

impl Sample {
    /// A throughput sample: `measured.rate()` in `unit`, scaled by `scale`.
    pub fn rate(name: &'static str, unit: &'static str, measured: Measured, scale: f64) -> Sample {
        Sample {
            metrics: vec![Metric {
                name,
                unit,
                higher_is_better: true,
                value: measured.rate() * scale,
            }],
            cpu_us_per_op: measured.cpu_us_per_op(),
        }
    }
}

/// A way to run one scenario on one system.
pub type RunFn = Box<dyn Fn(&Ctx) -> Result<Sample>>;

/// One system's entry in a scenario.
pub struct Entry {
    /// `eventcore-epoll`, `tokio`, `libuv`, `floor` …
    pub system: String,
    /// Runs it once.
    pub run: RunFn,
}

/// A scenario and the systems it runs on.
pub struct Scenario {
    /// Its name (also the name of its first figure).
    pub name: &'static str,
    /// Whether the whole process is pinned to one CPU while it runs.
    pub pinned: bool,
    /// How many alternating rounds (each system once per round).
    pub rounds: usize,
    /// The systems.
    pub entries: Vec<Entry>,
}

/// Every sample of one (figure, system) pair.
#[derive(Clone, Debug)]
pub struct Series {
    /// The figure's name.
    pub scenario: &'static str,
    /// The system.
    pub system: String,
    /// The unit.
    pub unit: &'static str,
    /// Whether larger is better.
    pub higher_is_better: bool,
    /// Values of every round.
    pub values: Vec<f64>,
    /// CPU µs per operation of every round.
    pub cpus: Vec<f64>,
}

impl Series {
    /// The median value.
    pub fn value(&self) -> f64 {
        median(&self.values)
    }

    /// The median CPU per operation.
    pub fn cpu(&self) -> f64 {
        median(&self.cpus)
    }

    /// The spread of the values: (max − min) / median.
    pub fn spread(&self) -> f64 {
        let max = self.values.iter().cloned().fold(f64::MIN, f64::max);
        let min = self.values.iter().cloned().fold(f64::MAX, f64::min);
        (max - min) / self.value()
    }
}

/// The median (the mean of the middle two for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().cloned().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs a scenario: `rounds` rounds, each running every system once, the
/// order rotated from round to round so that no system always goes first.
pub fn run_scenario(ctx: &Ctx, scenario: &Scenario, progress: &mut dyn FnMut(&str)) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    let pin = if scenario.pinned {
        match pin_process() {
            Ok(pin) => Some(pin),
            Err(e) => {
                progress(&format!("  cannot pin the process ({e}); skipped"));
                return series;
            }
        }
    } else {
        None
    };
    let n = scenario.entries.len();
    for round in 0..scenario.rounds {
        for i in 0..n {
            let entry = &scenario.entries[(i + round) % n];
            match (entry.run)(ctx) {
                Ok(sample) => {
                    for m in &sample.metrics {
                        let s = match series
                            .iter_mut()
                            .find(|s| s.scenario == m.name && s.system == entry.system)
                        {
                            Some(s) => s,
                            None => {
                                series.push(Series {
                                    scenario: m.name,
                                    system: entry.system.clone(),
                                    unit: m.unit,
                                    higher_is_better: m.higher_is_better,
                                    values: Vec::new(),
                                    cpus: Vec::new(),
                                });
                                series.last_mut().expect("just pushed")
                            }
                        };
                        s.values.push(m.value);
                        s.cpus.push(sample.cpu_us_per_op);
                    }
                    let first = &sample.metrics[0];
                    progress(&format!(
                        "  round {} {:<24} {:>12} {:<8} {:>8.2} µs CPU/op",
                        round + 1,
                        entry.system,
                        fmt_value(first.value),
                        first.unit,
                        sample.cpu_us_per_op
                    ));
                }
                Err(e) => progress(&format!("  round {} {:<24} FAILED: {e}", round + 1, entry.system)),
            }
        }
    }
    drop(pin);
    // Keep the entries' order in the output.
    let order: Vec<&str> = scenario.entries.iter().map(|e| e.system.as_str()).collect();
    series.sort_by_key(|s| (s.scenario != scenario.name, order.iter().position(|o| *o == s.system)));
    series
}

/// Formats a figure with about four significant digits.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        return "—".into();
    }
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

// ------------------------------------------------------------------ pinning

/// The whole process pinned to one CPU until dropped (then every thread may
/// run anywhere again).
pub struct Pinned {
    all: libc::cpu_set_t,
}

/// The thread ids of this process.
fn threads() -> Vec<libc::pid_t> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn set_affinity_all(set: &libc::cpu_set_t) -> Result<()> {
    for tid in threads() {
        // SAFETY: `set` is a valid cpu_set_t of the size we pass; tid is a
        // thread of this process (one that exited meanwhile gives ESRCH).
        let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(format!("sched_setaffinity({tid}): {e}"));
            }
        }
    }
    Ok(())
}

/// Pins every thread of the process (and so every thread it starts later) to
/// the first CPU it may use.
pub fn pin_process() -> Result<Pinned> {
    // SAFETY: sched_getaffinity fills the zeroed set; CPU_* only touch it.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&all), &mut all) != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &all))
            .ok_or("no CPU in the affinity mask")?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        set_affinity_all(&one)?;
        Ok(Pinned { all })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = set_affinity_all(&self.all);
    }
}

// ------------------------------------------------------------------- memory

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The resident set size now, bytes.
pub fn rss_bytes() -> u64 {
    status_kb("VmRSS:").unwrap_or(0) * 1024
}

/// The peak resident set size since the last [`reset_peak_rss`], bytes.
pub fn peak_rss_bytes() -> u64 {
    status_kb("VmHWM:").unwrap_or(0) * 1024
}

/// Gives freed heap memory back to the OS and resets the peak RSS counter
/// (`/proc/self/clear_refs` 5), so that the next peak is this run's own.
/// Returns the RSS after trimming.
pub fn reset_peak_rss() -> u64 {
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    rss_bytes()
}

/// Bytes allocated with malloc and not freed, over every arena (`mallinfo2`).
pub fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// Raises the soft limit of open descriptors to the hard one (and the hard
/// one to `want` when allowed, i.e. as root). Returns the new soft limit.
pub fn raise_fd_limit(want: u64) -> u64 {
    // SAFETY: getrlimit / setrlimit with a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_max < want {
            let mut more = lim;
            more.rlim_max = want;
            more.rlim_cur = want;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &more) == 0 {
                return want;
            }
        }
        lim.rlim_cur = lim.rlim_max.min(want.max(lim.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

// ----------------------------------------------------------- shared helpers

/// A listener-stop signal shared by a server thread and its client: the
/// client sets it and connects once more, so that a server blocked in accept
/// sees it.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Whether stop was asked.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Asks the server listening on `addr` to stop accepting.
    pub fn stop(&self, addr: std::net::SocketAddr) {
        self.0.store(true, Ordering::Release);
        let _ = std::net::TcpStream::connect(addr);
    }
}

/// The message of `ping_pong`.
pub const PING: &[u8] = b"PING\n";
/// Connections of `ping_pong_many` and `pound`.
pub const MANY: usize = 100;
/// Message size of `ping_pong_many`.
pub const MANY_SIZE: usize = 1024;
/// Write size of `pump`.
pub const PUMP_WRITE: usize = 8 * 1024;
/// Read size of `pump`.
pub const PUMP_READ: usize = 64 * 1024;
/// The datagram of `udp_pummel` (libuv's).
pub const DATAGRAM: &[u8] = b"RANG TANG DING DONG I AM THE JAPANESE SANDMAN";
/// Read size of `file_read`.
pub const FILE_CHUNK: usize = 64 * 1024;
/// Reads in flight in `file_read` (the size of libuv's and eventcore's pools).
pub const FILE_IN_FLIGHT: usize = 4;
/// Lookups in flight in `dns`.
pub const DNS_IN_FLIGHT: usize = 10;
/// libuv's "gbit/s": bits per second / 2^30.
pub const GBIT: f64 = 8.0 / (1u64 << 30) as f64;

/// The `pump` sample from bytes moved in a window (ops are 8 KiB writes).
pub fn pump_sample(m: Measured) -> Sample {
    let bytes = m.ops;
    Sample {
        metrics: vec![Metric {
            name: "pump",
            unit: "Gbit/s",
            higher_is_better: true,
            value: bytes / m.elapsed.as_secs_f64() * GBIT,
        }],
        cpu_us_per_op: m.cpu.as_secs_f64() * 1e6 / (bytes / PUMP_WRITE as f64),
    }
}

/// The `file_read` sample from bytes read in a window (ops are 64 KiB reads).
pub fn file_sample(m: Measured) -> Sample {
    let bytes = m.ops;
    Sample {
        metrics: vec![Metric {
            name: "file_read",
            unit: "GB/s",
            higher_is_better: true,
            value: bytes / m.elapsed.as_secs_f64() / 1e9,
        }],
        cpu_us_per_op: m.cpu.as_secs_f64() * 1e6 / (bytes / FILE_CHUNK as f64),
    }
}

/// Bytes `copy` moves from the sender to the receiver: 1 GiB.
pub const COPY_BYTES: u64 = 1 << 30;
/// The unit of `copy`'s CPU time per operation: 64 KiB copied.
pub const COPY_CHUNK: usize = 64 * 1024;
/// The byte the sender of `copy` sends.
pub const COPY_FILL: u8 = 0x5a;

/// The `copy` sample from the bytes the receiver counted in a window (ops
/// are bytes): GiB/s, CPU time per 64 KiB. Fails unless every byte of
/// [`COPY_BYTES`] arrived.
pub fn copy_sample(m: Measured) -> Result<Sample> {
    let bytes = m.ops;
    if bytes != COPY_BYTES as f64 {
        return Err(format!("copy: {bytes} bytes arrived, not {COPY_BYTES}"));
    }
    Ok(Sample {
        metrics: vec![Metric {
            name: "copy",
            unit: "GiB/s",
            higher_is_better: true,
            value: bytes / m.elapsed.as_secs_f64() / (1u64 << 30) as f64,
        }],
        cpu_us_per_op: m.cpu.as_secs_f64() * 1e6 / (bytes / COPY_CHUNK as f64),
    })
}

/// What a `million_timers` run saw.
pub struct TimerRun {
    /// Creating and arming every timer.
    pub init: Duration,
    /// From the end of init to the last callback.
    pub dispatch: Duration,
    /// From the last deadline to the last callback, ms; negative when the
    /// last timer fired before its deadline (libuv's millisecond loop clock
    /// can fire up to a millisecond early).
    pub late_ms: f64,
    /// CPU time of init + dispatch.
    pub cpu: Duration,
    /// Peak RSS above the RSS before init, bytes.
    pub peak_rss: u64,
    /// Timers.
    pub timers: usize,
}

/// The `million_timers` figures.
pub fn timer_sample(r: TimerRun) -> Sample {
    let m = |name, unit, value| Metric {
        name,
        unit,
        higher_is_better: false,
        value,
    };
    let total = r.init + r.dispatch;
    Sample {
        metrics: vec![
            m("million_timers", "s", total.as_secs_f64()),
            m("million_timers_init", "s", r.init.as_secs_f64()),
            m("million_timers_dispatch", "s", r.dispatch.as_secs_f64()),
            m("million_timers_late", "ms", r.late_ms),
            m("million_timers_rss", "MB", r.peak_rss as f64 / 1e6),
        ],
        cpu_us_per_op: r.cpu.as_secs_f64() * 1e6 / r.timers as f64,
    }
}

/// Milliseconds from `deadline` to `end` (negative if `end` came first).
pub fn late_ms(end: std::time::Instant, deadline: std::time::Instant) -> f64 {
    if end >= deadline {
        (end - deadline).as_secs_f64() * 1e3
    } else {
        -(deadline - end).as_secs_f64() * 1e3
    }
}

/// The deadline of timer `i` of `million_timers`, as libuv's benchmark sets
/// them: 1 ms for the first thousand, 2 ms for the next … up to 1 s.
pub fn timer_timeout(i: usize, timers: usize) -> Duration {
    let per_ms = timers.div_ceil(1000).max(1);
    Duration::from_millis((i / per_ms + 1) as u64)
}

/// Memory before the idle connections: RSS and heap bytes in use.
pub struct MemMark {
    rss: u64,
    heap: u64,
    cpu: Duration,
}

impl MemMark {
    /// Trims the heap, then notes RSS, heap in use and CPU time.
    pub fn now() -> MemMark {
        let rss = reset_peak_rss();
        MemMark {
            rss,
            heap: heap_bytes(),
            cpu: cpu_time(),
        }
    }

    /// The `idle_connections` figures for `conns` connections made since
    /// `self`: RSS growth per connection (the measure) and, as a
    /// cross-check that does not depend on page reuse, the growth of heap
    /// bytes in use (`idle_connections_heap`).
    pub fn idle_sample(&self, conns: usize) -> Sample {
        let cpu = cpu_time().saturating_sub(self.cpu);
        let per = |now: u64, then: u64| (now as f64 - then as f64) / conns as f64;
        let m = |name, value| Metric {
            name,
            unit: "B/conn",
            higher_is_better: false,
            value,
        };
        Sample {
            metrics: vec![
                m("idle_connections", per(rss_bytes(), self.rss)),
                m("idle_connections_heap", per(heap_bytes(), self.heap)),
            ],
            cpu_us_per_op: cpu.as_secs_f64() * 1e6 / conns as f64,
        }
    }
}

/// Opens `n` blocking client connections to `addr` from a thread of its
/// own, keeping them open until `release` is set; the vector is allocated
/// before the call returns the thread, so its growth is not measured.
pub fn idle_clients(
    addr: std::net::SocketAddr,
    n: usize,
    release: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<()>> {
    let mut conns = Vec::with_capacity(n);
    std::thread::spawn(move || {
        for _ in 0..n {
            conns.push(std::net::TcpStream::connect(addr).map_err(err)?);
        }
        while !release.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(conns);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }

    #[test]
    fn timer_deadlines_spread_over_one_second() {
        let n = 1_000_000;
        assert_eq!(timer_timeout(0, n), Duration::from_millis(1));
        assert_eq!(timer_timeout(999, n), Duration::from_millis(1));
        assert_eq!(timer_timeout(1000, n), Duration::from_millis(2));
        assert_eq!(timer_timeout(n - 1, n), Duration::from_millis(1000));
        assert_eq!(timer_timeout(9, 10), Duration::from_millis(10));
    }

    #[test]
    fn figures_are_short() {
        assert_eq!(fmt_value(1_234_567.0), "1.235M");
        assert_eq!(fmt_value(12_345.0), "12.3k");
        assert_eq!(fmt_value(123.4), "123");
        assert_eq!(fmt_value(1.234), "1.23");
        assert_eq!(fmt_value(f64::NAN), "—");
    }
}
