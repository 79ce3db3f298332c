//! Running external programs: echoing them, checking their exit status,
//! enforcing a time limit, and counting the tests that libtest reports.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The error type of every task: a message meant for the person at the
/// terminal, already phrased as a full sentence.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error(error.to_string())
    }
}

/// The result type of every task.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error`] from format arguments.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        $crate::cmd::Error(format!($($arg)*))
    };
}

/// A program to run, kept as plain data so that it can be run directly or
/// wrapped into another command (such as the test network namespace).
#[derive(Clone, Debug)]
pub struct Job {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    label: Option<String>,
}

impl Job {
    /// Starts describing a run of `program`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Job {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            label: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the program.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from the program's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Replaces the echoed command line with a short label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The program this job runs.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments this job passes.
    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }

    /// The environment changes this job makes.
    pub fn environment(&self) -> &[(OsString, Option<OsString>)] {
        &self.env
    }

    /// Builds the [`Command`] that runs this job in `dir`.
    pub fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).current_dir(dir);
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// A short name for the job in messages: its label, or the program's
    /// file name and its arguments, cut to a readable length.
    pub fn short(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        let program = Path::new(&self.program)
            .file_name()
            .unwrap_or(&self.program)
            .to_string_lossy()
            .into_owned();
        let mut text = program;
        for arg in &self.args {
            text.push(' ');
            text.push_str(&quote(&arg.to_string_lossy()));
        }
        const LIMIT: usize = 100;
        if text.chars().count() > LIMIT {
            text = text.chars().take(LIMIT).collect::<String>() + "...";
        }
        text
    }

    /// Prints the command line the way a person would type it.
    pub fn echo(&self) {
        let text = match &self.label {
            Some(label) => label.clone(),
            None => {
                let mut parts = Vec::new();
                for (key, value) in &self.env {
                    if let Some(value) = value {
                        parts.push(format!("{}={}", key.to_string_lossy(), quote(&value.to_string_lossy())));
                    }
                }
                parts.push(quote(&self.program.to_string_lossy()));
                parts.extend(self.args.iter().map(|a| quote(&a.to_string_lossy())));
                parts.join(" ")
            }
        };
        println!("$ {text}");
        let _ = io::stdout().flush();
    }

    /// Runs the job with inherited standard streams and returns its status.
    pub fn status(&self, dir: &Path) -> Result<ExitStatus> {
        self.echo();
        self.command(dir)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| fail!("Could not start {}: {e}.", self.program.to_string_lossy()))
    }

    /// Runs the job and fails unless it exits successfully.
    pub fn run(&self, dir: &Path) -> Result<()> {
        let status = self.status(dir)?;
        if status.success() {
            Ok(())
        } else {
            Err(fail!("`{}` failed ({}).", self.short(), describe(status)))
        }
    }

    /// Runs the job without echoing it and returns its standard output;
    /// fails unless it exits successfully.
    pub fn output(&self, dir: &Path) -> Result<String> {
        let out = self
            .command(dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| fail!("Could not start {}: {e}.", self.program.to_string_lossy()))?;
        if !out.status.success() {
            return Err(fail!("`{}` failed ({}).", self.short(), describe(out.status)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the job without echoing it, discards its standard output and
    /// returns its standard error; fails unless it exits successfully.
    pub fn output_with_stderr(&self, dir: &Path) -> Result<String> {
        let out = self
            .command(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| fail!("Could not start {}: {e}.", self.program.to_string_lossy()))?;
        if !out.status.success() {
            return Err(fail!("`{}` failed ({}).", self.short(), describe(out.status)));
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Runs the job without echoing it, sends its output to `log` (or
    /// discards it), and reports whether it succeeded.
    pub fn quiet(&self, dir: &Path, log: Option<&Path>) -> Result<bool> {
        let mut command = self.command(dir);
        command.stdin(Stdio::null());
        match log {
            Some(path) => {
                let file = std::fs::File::create(path)?;
                command.stdout(file.try_clone()?).stderr(file);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        match command.status() {
            Ok(status) => Ok(status.success()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(fail!("Could not start {}: {e}.", self.program.to_string_lossy())),
        }
    }

    /// Runs a test command: its standard output is echoed line by line and
    /// scanned for libtest's `test result:` lines, and the whole run is
    /// killed if it takes longer than `limit`.
    pub fn run_tests(&self, dir: &Path, limit: Duration) -> Result<TestRun> {
        self.echo();
        let started = Instant::now();
        let mut child = self
            .command(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail!("Could not start {}: {e}.", self.program.to_string_lossy()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut counts = TestCounts::default();
            let mut out = io::stdout();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
                if let Some(found) = TestCounts::parse(&line) {
                    counts += found;
                }
            }
            let _ = sender.send(counts);
        });
        let deadline = started + limit;
        let (status, timed_out) = loop {
            if let Some(status) = child.try_wait()? {
                break (status, false);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                break (child.wait()?, true);
            }
            thread::sleep(Duration::from_millis(100));
        };
        // A test process that outlived the child could keep the pipe open;
        // the counts gathered so far are good enough in that case.
        let counts = receiver.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        Ok(TestRun {
            status,
            counts,
            timed_out,
            elapsed: started.elapsed(),
        })
    }
}

/// What one run of a test command produced.
#[derive(Debug)]
pub struct TestRun {
    /// The exit status of the command.
    pub status: ExitStatus,
    /// The tests it reported, summed over all test binaries.
    pub counts: TestCounts,
    /// Whether the run was killed for exceeding its time limit.
    pub timed_out: bool,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Test totals as libtest reports them at the end of each test binary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests marked `#[ignore]`.
    pub ignored: u64,
}

impl TestCounts {
    /// Reads a libtest summary line such as
    /// `test result: ok. 4 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
    pub fn parse(line: &str) -> Option<TestCounts> {
        let rest = line.trim().strip_prefix("test result: ")?;
        let (_, rest) = rest.split_once(". ")?;
        let mut counts = TestCounts::default();
        let mut seen = false;
        for part in rest.split(';') {
            let mut words = part.split_whitespace();
            let (Some(number), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => counts.passed = number,
                "failed" => counts.failed = number,
                "ignored" => counts.ignored = number,
                _ => continue,
            }
            seen = true;
        }
        seen.then_some(counts)
    }

    /// Whether any test ran at all.
    pub fn any(&self) -> bool {
        self.passed + self.failed > 0
    }
}

impl std::ops::AddAssign for TestCounts {
    fn add_assign(&mut self, other: TestCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

impl fmt::Display for TestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        )
    }
}

/// Describes an exit status in words.
pub fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(signal) = status.signal() {
                    return format!("killed by signal {signal}");
                }
            }
            "no exit code".to_owned()
        }
    }
}

/// Quotes a word for display in a POSIX shell command line.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Finds a program on `PATH`, and also in the system directories that a
/// non-root `PATH` often lacks (`ip` lives in `/usr/sbin`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Prints a section heading.
pub fn heading(text: &str) {
    println!();
    println!("==> {text}");
    let _ = io::stdout().flush();
}

/// Prints a message that must not be overlooked.
pub fn banner(lines: &[&str]) {
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let rule = "!".repeat(width + 6);
    println!();
    println!("{rule}");
    for line in lines {
        println!("!! {line:<width$} !!");
    }
    println!("{rule}");
    let _ = io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summaries() {
        let ok = "test result: ok. 4 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            TestCounts::parse(ok),
            Some(TestCounts {
                passed: 4,
                failed: 0,
                ignored: 1
            })
        );
        let failed =
            "test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s";
        assert_eq!(
            TestCounts::parse(failed),
            Some(TestCounts {
                passed: 2,
                failed: 3,
                ignored: 0
            })
        );
        assert_eq!(TestCounts::parse("test foo ... ok"), None);
        assert_eq!(TestCounts::parse("running 3 tests"), None);
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("cargo"), "cargo");
        assert_eq!(quote("-Zbuild-std=std,panic_abort"), "-Zbuild-std=std,panic_abort");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
