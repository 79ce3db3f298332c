//! Output: the table with CPU per operation and the ratios, JSON lines, the
//! targets of the benchmark issue, a Markdown copy and an SVG chart.

use std::fmt::Write as _;

use crate::harness::{fmt_value, Series};

/// The systems in table order: eventcore first, then the others.
pub fn systems(series: &[Series]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in series {
        if !out.contains(&s.system) {
            out.push(s.system.clone());
        }
    }
    let rank = |s: &str| match s {
        _ if s.starts_with("eventcore") => 0,
        _ if s.starts_with("tokio") => 1,
        "libuv" => 2,
        "floor" => 3,
        _ => 4,
    };
    out.sort_by_key(|s| rank(s));
    out
}

/// The figure names in first-seen order.
pub fn scenarios(series: &[Series]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for s in series {
        if !out.contains(&s.scenario) {
            out.push(s.scenario);
        }
    }
    out
}

fn find<'a>(series: &'a [Series], scenario: &str, system: &str) -> Option<&'a Series> {
    series.iter().find(|s| s.scenario == scenario && s.system == system)
}

/// One JSON object per line, in the format.
/// Reads back what [`json_lines`] wrote (one figure per line; the medians
/// become one-round series), so a chart can be drawn again from saved results.
pub fn series_from_json_lines(text: &str) -> Result<Vec<Series>, String> {
    fn field<'a>(line: &'a str, key: &str) -> Result<&'a str, String> {
        let tag = format!("\"{key}\": ");
        let start = line.find(&tag).ok_or_else(|| format!("no {key} in {line}"))? + tag.len();
        let rest = &line[start..];
        let end = rest.find([',', '}']).ok_or_else(|| format!("bad {key} in {line}"))?;
        Ok(rest[..end].trim().trim_matches('"'))
    }
    let number = |v: &str| {
        if v == "null" {
            Ok(f64::NAN)
        } else {
            v.parse::<f64>().map_err(|e| e.to_string())
        }
    };
    let leak = |v: &str| -> &'static str { Box::leak(v.to_string().into_boxed_str()) };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            Ok(Series {
                scenario: leak(field(line, "scenario")?),
                system: field(line, "system")?.to_string(),
                unit: leak(field(line, "unit")?),
                higher_is_better: field(line, "higher_is_better")? == "true",
                values: vec![number(field(line, "value")?)?],
                cpus: vec![number(field(line, "cpu_us_per_op")?)?],
            })
        })
        .collect()
}

pub fn json_lines(series: &[Series]) -> String {
    let mut out = String::new();
    for s in series {
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v}")
            } else {
                "null".into()
            }
        };
        let _ = writeln!(
            out,
            "{{\"scenario\": \"{}\", \"system\": \"{}\", \"value\": {}, \"unit\": \"{}\", \"higher_is_better\": {}, \"cpu_us_per_op\": {}}}",
            s.scenario,
            s.system,
            num(s.value()),
            s.unit,
            s.higher_is_better,
            num(s.cpu())
        );
    }
    out
}

/// A table as rows of cells; rendered as text or Markdown.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn text(&self) -> String {
        let cols = self.head.len();
        let mut width = vec![0; cols];
        for row in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in row.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for (n, row) in std::iter::once(&self.head).chain(&self.rows).enumerate() {
            for (i, c) in row.iter().enumerate() {
                let pad = width[i] - c.chars().count();
                if i < 2 {
                    let _ = write!(out, "{c}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{}{c}  ", " ".repeat(pad));
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
            if n == 0 {
                let total: usize = width.iter().map(|w| w + 2).sum();
                out.push_str(&"-".repeat(total.saturating_sub(2)));
                out.push('\n');
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.head.join(" | "));
        let align: Vec<&str> = (0..self.head.len())
            .map(|i| if i < 2 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "| {} |", align.join(" | "));
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        out
    }
}

fn value_table(series: &[Series]) -> Table {
    let systems = systems(series);
    let mut head = vec!["scenario".to_string(), "unit".to_string()];
    head.extend(systems.iter().cloned());
    let mut rows = Vec::new();
    for sc in scenarios(series) {
        let first = series.iter().find(|s| s.scenario == sc).expect("seen");
        let arrow = if first.higher_is_better { "↑" } else { "↓" };
        let mut row = vec![sc.to_string(), format!("{} {arrow}", first.unit)];
        for sys in &systems {
            row.push(match find(series, sc, sys) {
                Some(s) => format!("{} ({:.2} µs)", fmt_value(s.value()), s.cpu()),
                None => "—".into(),
            });
        }
        rows.push(row);
    }
    Table { head, rows }
}

/// The eventcore systems of the run.
fn eventcore_systems(series: &[Series]) -> Vec<String> {
    systems(series)
        .into_iter()
        .filter(|s| s.starts_with("eventcore"))
        .collect()
}

/// Whether a ratio of `ec` to `other` means something: hyper servers
/// (`--http`: `…-hyper`, `…-hyper-cores`, `tokio-hyper`, `tokio-mt-hyper`)
/// are compared with hyper servers only, the others with the others.
fn comparable(ec: &str, other: &str) -> bool {
    ec.contains("hyper") == other.contains("hyper")
}

fn ratio_table(series: &[Series]) -> Table {
    let others: Vec<String> = systems(series)
        .into_iter()
        .filter(|s| !s.starts_with("eventcore"))
        .collect();
    let mut head = vec!["scenario".to_string(), "eventcore system".to_string()];
    for o in &others {
        head.push(format!("÷ {o}"));
    }
    let mut rows = Vec::new();
    for sc in scenarios(series) {
        for ec in eventcore_systems(series) {
            let Some(e) = find(series, sc, &ec) else {
                continue;
            };
            let mut row = vec![sc.to_string(), ec.clone()];
            for o in &others {
                if !comparable(&ec, o) {
                    row.push("—".into());
                    continue;
                }
                row.push(match find(series, sc, o) {
                    Some(s) => format!("{:.2}× (CPU {:.2}×)", e.value() / s.value(), e.cpu() / s.cpu()),
                    None => "—".into(),
                });
            }
            rows.push(row);
        }
    }
    Table { head, rows }
}

/// What a target compares.
#[derive(Clone, Copy)]
enum On {
    Value,
    Cpu,
}

/// A target of the benchmark issue.
struct Target {
    label: &'static str,
    scenario: &'static str,
    on: On,
    /// The better (max for higher-is-better, min otherwise) of these systems.
    vs: &'static [&'static str],
    /// The bound on eventcore ÷ the reference.
    bound: f64,
    /// `true`: the ratio must be at least `bound`; `false`: at most.
    at_least: bool,
}

const TARGETS: &[Target] = &[
    Target {
        label: "ping_pong_pinned ≥ 1.1× tokio",
        scenario: "ping_pong_pinned",
        on: On::Value,
        vs: &["tokio"],
        bound: 1.1,
        at_least: true,
    },
    Target {
        label: "ping_pong_pinned ≥ 0.95× floor",
        scenario: "ping_pong_pinned",
        on: On::Value,
        vs: &["floor"],
        bound: 0.95,
        at_least: true,
    },
    Target {
        label: "ping_pong_many ≥ 1.1× best of libuv, tokio",
        scenario: "ping_pong_many",
        on: On::Value,
        vs: &["libuv", "tokio"],
        bound: 1.1,
        at_least: true,
    },
    Target {
        label: "pound ≥ 1.1× best of libuv, tokio",
        scenario: "pound",
        on: On::Value,
        vs: &["libuv", "tokio"],
        bound: 1.1,
        at_least: true,
    },
    Target {
        label: "pump ≥ 1.0× best of libuv, tokio",
        scenario: "pump",
        on: On::Value,
        vs: &["libuv", "tokio"],
        bound: 1.0,
        at_least: true,
    },
    Target {
        label: "ping_pong CPU/op ≤ 0.8× tokio",
        scenario: "ping_pong",
        on: On::Cpu,
        vs: &["tokio"],
        bound: 0.8,
        at_least: false,
    },
    Target {
        label: "ping_pong CPU/op ≤ 1.0× libuv",
        scenario: "ping_pong",
        on: On::Cpu,
        vs: &["libuv"],
        bound: 1.0,
        at_least: false,
    },
    Target {
        label: "pump CPU/op ≤ 0.8× tokio",
        scenario: "pump",
        on: On::Cpu,
        vs: &["tokio"],
        bound: 0.8,
        at_least: false,
    },
    Target {
        label: "pump CPU/op ≤ 1.0× libuv",
        scenario: "pump",
        on: On::Cpu,
        vs: &["libuv"],
        bound: 1.0,
        at_least: false,
    },
    Target {
        label: "million_timers init ≤ 0.5× libuv",
        scenario: "million_timers_init",
        on: On::Value,
        vs: &["libuv"],
        bound: 0.5,
        at_least: false,
    },
    Target {
        label: "million_timers peak RSS ≤ 0.5× libuv",
        scenario: "million_timers_rss",
        on: On::Value,
        vs: &["libuv"],
        bound: 0.5,
        at_least: false,
    },
    Target {
        label: "async_pummel ≥ 1.0× libuv",
        scenario: "async_pummel",
        on: On::Value,
        vs: &["libuv"],
        bound: 1.0,
        at_least: true,
    },
    Target {
        label: "http_plaintext (64 conns) ≥ 1.1× tokio",
        scenario: "http_plaintext_64",
        on: On::Value,
        vs: &["tokio"],
        bound: 1.1,
        at_least: true,
    },
    Target {
        label: "http_plaintext (256 conns) ≥ 1.1× tokio",
        scenario: "http_plaintext_256",
        on: On::Value,
        vs: &["tokio"],
        bound: 1.1,
        at_least: true,
    },
    Target {
        label: "http_pipelined (64 conns) ≥ 1.3× tokio",
        scenario: "http_pipelined_64",
        on: On::Value,
        vs: &["tokio"],
        bound: 1.3,
        at_least: true,
    },
    Target {
        label: "http_pipelined (256 conns) ≥ 1.3× tokio",
        scenario: "http_pipelined_256",
        on: On::Value,
        vs: &["tokio"],
        bound: 1.3,
        at_least: true,
    },
    Target {
        label: "http_pipelined (64 conns) ≥ 0.8× floor",
        scenario: "http_pipelined_64",
        on: On::Value,
        vs: &["floor"],
        bound: 0.8,
        at_least: true,
    },
    Target {
        label: "http_pipelined (256 conns) ≥ 0.8× floor",
        scenario: "http_pipelined_256",
        on: On::Value,
        vs: &["floor"],
        bound: 0.8,
        at_least: true,
    },
];

/// Bytes of driver state per idle connection allowed.
const IDLE_BOUND: f64 = 256.0;

fn target_table(series: &[Series]) -> Table {
    let head = ["target", "eventcore system", "measured", "result"]
        .map(String::from)
        .to_vec();
    let mut rows = Vec::new();
    // The targets are about eventcore's own servers and loops; the hyper
    // servers of `--http` have none.
    for ec in eventcore_systems(series).into_iter().filter(|s| !s.contains("hyper")) {
        for t in TARGETS {
            let Some(e) = find(series, t.scenario, &ec) else {
                continue;
            };
            let pick = |s: &Series| match t.on {
                On::Value => s.value(),
                On::Cpu => s.cpu(),
            };
            let higher = matches!(t.on, On::Value) && e.higher_is_better;
            let refs: Vec<f64> =
                t.vs.iter()
                    .filter_map(|v| find(series, t.scenario, v))
                    .map(pick)
                    .collect();
            if refs.is_empty() {
                continue;
            }
            let best = if higher {
                refs.iter().cloned().fold(f64::MIN, f64::max)
            } else {
                refs.iter().cloned().fold(f64::MAX, f64::min)
            };
            let ratio = pick(e) / best;
            rows.push(verdict(t.label, &ec, ratio, t.bound, t.at_least, "×"));
        }
        // Lateness can be zero or negative (libuv fires up to a millisecond
        // early): compared as a difference, not a ratio.
        if let (Some(e), Some(l)) = (
            find(series, "million_timers_late", &ec),
            find(series, "million_timers_late", "libuv"),
        ) {
            let (ev, lv) = (e.value(), l.value());
            rows.push(vec![
                "million_timers time past the last deadline ≤ libuv's".to_string(),
                ec.clone(),
                format!("{ev:.3} ms vs {lv:.3} ms"),
                if ev <= lv {
                    "hit".to_string()
                } else {
                    format!("MISS by {:.3} ms", ev - lv)
                },
            ]);
        }
        if let Some(e) = find(series, "idle_connections_heap", &ec) {
            rows.push(verdict(
                "driver state per idle TCP connection ≤ 256 B (heap bytes)",
                &ec,
                e.value(),
                IDLE_BOUND,
                false,
                " B",
            ));
        }
        if let Some(e) = find(series, "idle_connections", &ec) {
            rows.push(verdict(
                "driver state per idle TCP connection ≤ 256 B (RSS)",
                &ec,
                e.value(),
                IDLE_BOUND,
                false,
                " B",
            ));
        }
    }
    Table { head, rows }
}

fn verdict(label: &str, ec: &str, v: f64, bound: f64, at_least: bool, unit: &str) -> Vec<String> {
    let ok = if at_least { v >= bound } else { v <= bound };
    let result = if !v.is_finite() {
        "—".to_string()
    } else if ok {
        "hit".to_string()
    } else if at_least {
        format!("MISS by {:.1} %", (1.0 - v / bound) * 100.0)
    } else {
        format!("MISS by {:.1} %", (v / bound - 1.0) * 100.0)
    };
    let shown = if unit == "×" {
        format!("{v:.2}×")
    } else {
        format!("{v:.0}{unit}")
    };
    vec![label.to_string(), ec.to_string(), shown, result]
}

/// What the CPU figures of the scenarios are.
pub const CPU_NOTE: &str = "the CPU time (user + sys, all threads of the process) per operation";
/// What the CPU figures of the HTTP runs are.
pub const HTTP_CPU_NOTE: &str = "the server process's CPU time (user + sys) per request";

/// The whole report as text for the terminal.
pub fn text(series: &[Series], cpu_note: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Medians; beside each figure {cpu_note}.\n");
    out.push_str(&value_table(series).text());
    out.push_str("\nRatios: eventcore ÷ each other system (figure, and CPU per operation).\n\n");
    out.push_str(&ratio_table(series).text());
    let targets = target_table(series);
    if !targets.rows.is_empty() {
        out.push_str("\nTargets of the benchmark issue (ratios from this run).\n\n");
        out.push_str(&targets.text());
    }
    out
}

/// The whole report as Markdown.
pub fn markdown(series: &[Series], command: &str, machine: &str, cpu_note: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Command: `{command}`\n");
    let _ = writeln!(out, "Machine: {machine}\n");
    let _ = writeln!(out, "Medians; in parentheses {cpu_note}.\n");
    out.push_str(&value_table(series).markdown());
    out.push_str("\nRatios: eventcore ÷ each other system (figure, and CPU per operation).\n\n");
    out.push_str(&ratio_table(series).markdown());
    let targets = target_table(series);
    if !targets.rows.is_empty() {
        out.push_str("\nTargets:\n\n");
        out.push_str(&targets.markdown());
    }
    let mut spread = String::new();
    for s in series {
        if s.values.len() > 1 && s.spread() > 0.15 {
            let _ = write!(spread, "{} {} {:.0} %; ", s.scenario, s.system, s.spread() * 100.0);
        }
    }
    if !spread.is_empty() {
        let _ = writeln!(
            out,
            "\nSpread (max − min) / median above 15 %: {}",
            spread.trim_end_matches("; ")
        );
    }
    out
}

/// One line about the machine: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: u64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb as f64 / (1024.0 * 1024.0))
        })
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{model}, {cores} CPUs, {mem:.0} GiB, Linux {kernel}")
}

/// Colours of the systems in the chart.
fn colour(system: &str) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match system {
        // Blues for epoll, purples for io_uring; the async layer lighter.
        s if s.contains("io_uring") && s.ends_with("-async") => RGBColor(185, 150, 225),
        s if s.contains("io_uring") => RGBColor(110, 60, 170),
        s if s.ends_with("-async") => RGBColor(110, 170, 230),
        s if s.starts_with("eventcore") => RGBColor(31, 100, 180),
        "tokio" => RGBColor(230, 120, 40),
        s if s.starts_with("tokio") => RGBColor(240, 175, 110),
        "libuv" => RGBColor(60, 160, 80),
        "floor" => RGBColor(130, 130, 130),
        _ => RGBColor(160, 80, 160),
    }
}

/// Draws the chart: per figure, one bar per system, its length relative to
/// the best system of that figure (so longer is always better), labelled
/// with the figure itself.
pub fn chart(series: &[Series], path: &std::path::Path, title: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let scenarios = scenarios(series);
    let systems = systems(series);
    let bar = 16;
    let gap = 14;
    let label_w = 210;
    let bar_w = 520;
    let value_w = 170;
    let rows: usize = scenarios
        .iter()
        .map(|sc| series.iter().filter(|s| s.scenario == *sc).count())
        .sum();
    let legend_h = 30;
    let height = 50 + legend_h + rows * bar + scenarios.len() * gap + 20;
    let width = label_w + bar_w + value_w + 20;
    let root = SVGBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let font = |size| ("sans-serif", size).into_font();
    root.draw(&Text::new(title.to_string(), (10, 10), font(18)))
        .map_err(|e| e.to_string())?;
    let mut x = 10;
    for sys in &systems {
        root.draw(&Rectangle::new([(x, 45), (x + 12, 57)], colour(sys).filled()))
            .map_err(|e| e.to_string())?;
        root.draw(&Text::new(sys.clone(), (x + 16, 44), font(13)))
            .map_err(|e| e.to_string())?;
        x += 22 + sys.len() as i32 * 7;
    }
    let mut y = (50 + legend_h) as i32;
    for sc in scenarios {
        let rows: Vec<&Series> = systems.iter().filter_map(|sys| find(series, sc, sys)).collect();
        let hib = rows[0].higher_is_better;
        let score = |s: &Series| {
            let v = s.value();
            if hib {
                v
            } else if v > 0.0 {
                1.0 / v
            } else {
                0.0
            }
        };
        let best = rows.iter().map(|s| score(s)).fold(0.0, f64::max);
        let block = rows.len() as i32 * bar as i32;
        root.draw(&Text::new(
            format!("{sc} ({}{})", rows[0].unit, if hib { ", ↑" } else { ", ↓" }),
            (10, y + block / 2 - 7),
            font(13),
        ))
        .map_err(|e| e.to_string())?;
        for s in rows {
            let frac = if best > 0.0 { score(s) / best } else { 0.0 };
            let len = (frac * bar_w as f64).max(1.0) as i32;
            let x0 = label_w;
            root.draw(&Rectangle::new(
                [(x0, y + 2), (x0 + len, y + bar as i32 - 2)],
                colour(&s.system).filled(),
            ))
            .map_err(|e| e.to_string())?;
            root.draw(&Text::new(fmt_value(s.value()), (x0 + len + 4, y + 2), font(11)))
                .map_err(|e| e.to_string())?;
            y += bar as i32;
        }
        y += gap as i32;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
