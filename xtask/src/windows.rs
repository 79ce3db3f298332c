//! The Windows leg: cross-building the library's unit tests for
//! `x86_64-pc-windows-gnu` with Debian's Rust toolchain and running them
//! under Wine, in a Wine prefix that belongs to the project.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cmd::{Job, Result};
use crate::fail;

/// The Rust target the leg builds for.
pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// Debian's `cargo` (package cargo-web), used by absolute path so that the
/// rustup toolchain can stay first on `PATH` for everything else.
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Debian's `rustc` (package rustc-web).
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// Debian's `rustdoc` (package rustc-web).
const DEBIAN_RUSTDOC: &str = "/usr/bin/rustdoc";
/// The MinGW-w64 C compiler, which is also the linker for the target.
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// Bumped whenever the prefix setup below changes, so that existing
/// prefixes are set up again.
const PREFIX_FORMAT: &str = "eventcore wine prefix v1";

/// Paths the leg uses, all under the workspace's `target/` directory.
pub struct Layout {
    /// The workspace root.
    pub root: PathBuf,
    /// Cargo's target directory for the Windows build, kept apart from the
    /// Linux one so that the two toolchains never share artifacts.
    pub target_dir: PathBuf,
    /// The Wine prefix.
    pub prefix: PathBuf,
    /// Where the `bcryptprimitives.dll` shim is built.
    pub shim_dir: PathBuf,
    /// Whether the prefix uses Wine's null graphics driver (the tests), or
    /// its default X11 driver (`cargo xtask screenshot`, under Xvfb).
    pub headless: bool,
}

/// The contract-test files (crates/eventcore/tests/*.rs) that run on the
/// WinAPI backend. A subsystem joins this list when the backend implements it.
const WINDOWS_TEST_TARGETS: &[&str] = &[
    "driver",
    "errors",
    "os_handles",
    "timers",
    "events",
    "tcp",
    "udp",
    "dns",
    "gui",
    "af_unix",
    "files",
    "pipes",
    "processes",
    "signals",
    "watchers",
    "foreign",
    "rt_executor",
    "rt_alloc",
    "rt_time",
    "rt_events",
    "rt_net",
    "rt_dns",
    "rt_files",
    "rt_pipes",
    "rt_watch",
    "rt_windows",
    "rt_streams",
    "remote_stress",
    "http_example",
    "buffers",
    "hyper_all_cores",
    "hyper",
    "tokio_io",
];

impl Layout {
    /// The layout for the workspace at `root`.
    pub fn new(root: &Path) -> Self {
        let target = root.join("target");
        Layout {
            root: root.to_owned(),
            target_dir: target.join("windows"),
            prefix: target.join("wine-prefix"),
            shim_dir: target.join("wine-shim"),
            headless: true,
        }
    }

    /// The same layout with a prefix of its own, `target/wine-prefix-x11`,
    /// whose windows go to the X display in `DISPLAY` (Wine's default X11
    /// graphics driver) instead of nowhere.
    pub fn with_x11_prefix(self) -> Self {
        Layout {
            prefix: self.root.join("target").join("wine-prefix-x11"),
            headless: false,
            ..self
        }
    }

    /// Adds the Wine variables every Wine command needs.
    pub fn wine_env(&self, job: Job) -> Job {
        job.env("WINEPREFIX", &self.prefix).env("WINEDEBUG", "-all")
    }

    /// A run of Debian's cargo for the Windows tests of the library: its unit
    /// tests and the contract tests of the subsystems the WinAPI backend has.
    /// `extra` goes before the `--` that separates cargo's own options from
    /// the test harness's, and `harness` after it.
    pub fn cargo_test(&self, extra: &[&str], harness: &[String]) -> Job {
        let job = Job::new(DEBIAN_CARGO)
            .args(["test", "-p", "eventcore-driver", "--lib", "--target", TARGET])
            // The optional integrations (hyper, tokio-io) and their tests.
            .arg("--all-features")
            // Every test binary runs, also after one failed.
            .arg("--no-fail-fast")
            .args(WINDOWS_TEST_TARGETS.iter().flat_map(|t| ["--test", t]))
            .arg("-Zbuild-std=std,panic_abort,test")
            .arg("--target-dir")
            .arg(&self.target_dir)
            .args(extra);
        let job = debian_toolchain(job);
        let job = if harness.is_empty() {
            job
        } else {
            job.arg("--").args(harness)
        };
        self.wine_env(job)
    }

    /// A run of Debian's rustdoc over the library for the target, warnings
    /// denied: the Windows-only API (the GUI mode, `MessageHook`,
    /// `AttachedDriver`) is documented and its intra-doc links resolve, as
    /// docs.rs will build it.
    pub fn cargo_doc(&self) -> Job {
        let job = Job::new(DEBIAN_CARGO)
            .args(["doc", "-p", "eventcore-driver", "--no-deps", "--all-features"])
            .args(["--target", TARGET, "-Zbuild-std=std,panic_abort"])
            .arg("--target-dir")
            .arg(&self.target_dir)
            .env("RUSTDOCFLAGS", "-D warnings");
        debian_toolchain(job)
    }

    /// A check of the library for a system without a backend yet
    /// (`x86_64-unknown-freebsd`), through Debian's toolchain and its
    /// standard library sources: the README promises that the crate builds
    /// there, without a `Driver`.
    pub fn cargo_check_other_os(&self) -> Job {
        let job = Job::new(DEBIAN_CARGO)
            .args([
                "check",
                "-p",
                "eventcore-driver",
                "--lib",
                "--target",
                "x86_64-unknown-freebsd",
            ])
            .arg("-Zbuild-std=std,panic_abort")
            .arg("--target-dir")
            .arg(self.root.join("target").join("other-os"));
        debian_toolchain(job)
    }

    /// A run of Debian's cargo that builds one example of the library for
    /// the target (`cargo xtask screenshot` builds `gui`).
    pub fn cargo_build_example(&self, example: &str) -> Job {
        let job = Job::new(DEBIAN_CARGO)
            .args(["build", "-p", "eventcore-driver", "--example", example])
            .args(["--target", TARGET, "-Zbuild-std=std,panic_abort"])
            .arg("--target-dir")
            .arg(&self.target_dir);
        debian_toolchain(job)
    }

    /// Where [`Layout::cargo_build_example`] puts the example's executable.
    pub fn example_exe(&self, example: &str) -> PathBuf {
        self.target_dir
            .join(TARGET)
            .join("debug")
            .join("examples")
            .join(format!("{example}.exe"))
    }

    /// Creates the Wine prefix if needed, makes it headless (unless it is the
    /// X11 prefix), and installs the `bcryptprimitives.dll` shim into it.
    /// Safe to run every time: the slow steps happen only when something is
    /// missing or out of date.
    pub fn prepare_prefix(&self) -> Result<()> {
        let marker = self.prefix.join(".xtask-prefix");
        let wine_version = wine_version()?;
        let kind = if self.headless { "" } else { " (x11)" };
        let wanted = format!("{PREFIX_FORMAT}{kind}\n{wine_version}\n");
        let current = std::fs::read_to_string(&marker).unwrap_or_default();
        if current != wanted {
            self.create_prefix()?;
            std::fs::write(&marker, &wanted)?;
        } else {
            println!("The Wine prefix {} is ready ({wine_version}).", self.prefix.display());
        }
        self.install_shim()
    }

    fn create_prefix(&self) -> Result<()> {
        std::fs::create_dir_all(&self.prefix)?;
        let log = self.prefix.join("xtask-wineboot.log");
        println!(
            "Setting up the Wine prefix {} (its log is {}).",
            self.prefix.display(),
            log.display()
        );
        let started = Instant::now();
        // `wineboot -i` creates (or updates) the prefix. It prints harmless
        // complaints about the missing 32-bit half of Wine, hence the log.
        // Wine is told not to offer to install Mono or Gecko; the tests need
        // neither, and there is nobody to answer the dialog.
        let ok = self
            .wine_env(Job::new("wineboot").arg("-i"))
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .quiet(&self.root, Some(&log))?;
        if !ok {
            return Err(fail!(
                "`wineboot -i` failed; see {} for what Wine printed.",
                log.display()
            ));
        }
        if self.headless {
            self.set_null_graphics()?;
        } else {
            // X11, Wine's default driver: nothing to set.
            self.wait_for_wineserver()?;
        }
        println!(
            "The Wine prefix was set up in {:.1} s.",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Headless windows: the null graphics driver instead of X11.
    fn set_null_graphics(&self) -> Result<()> {
        let reg_log = self.prefix.join("xtask-reg.log");
        let ok = self
            .wine_env(Job::new("wine").args([
                "reg",
                "add",
                r"HKCU\Software\Wine\Drivers",
                "/v",
                "Graphics",
                "/d",
                "null",
                "/f",
            ]))
            .quiet(&self.root, Some(&reg_log))?;
        if !ok {
            return Err(fail!(
                "Setting Wine's Graphics driver to null failed; see {}.",
                reg_log.display()
            ));
        }
        self.wait_for_wineserver()?;
        let user_reg = std::fs::read_to_string(self.prefix.join("user.reg")).unwrap_or_default();
        if !user_reg.contains("\"Graphics\"=\"null\"") {
            return Err(fail!(
                "Wine accepted the Graphics=null setting but {} does not record it.",
                self.prefix.join("user.reg").display()
            ));
        }
        Ok(())
    }

    /// Waits until the prefix's wineserver has exited, so that the registry
    /// is written out and no wineserver outside the test namespace serves
    /// the Wine processes inside it.
    pub fn wait_for_wineserver(&self) -> Result<()> {
        self.wine_env(Job::new("wineserver").arg("-w"))
            .quiet(&self.root, None)?;
        Ok(())
    }

    /// Stops whatever the prefix's wineserver still runs.
    pub fn kill_wineserver(&self) -> Result<()> {
        self.wine_env(Job::new("wineserver").arg("-k"))
            .quiet(&self.root, None)?;
        Ok(())
    }

    /// Builds the `bcryptprimitives.dll` shim (see `xtask/wine/`) and copies
    /// it into the prefix's `system32` when it differs from the copy there.
    fn install_shim(&self) -> Result<()> {
        let source_dir = self.root.join("xtask").join("wine");
        let source = source_dir.join("bcryptprimitives.c");
        let def = source_dir.join("bcryptprimitives.def");
        let dll = self.shim_dir.join("bcryptprimitives.dll");
        if is_stale(&dll, &[&source, &def]) {
            std::fs::create_dir_all(&self.shim_dir)?;
            Job::new(MINGW_GCC)
                .args(["-shared", "-O2", "-Wall", "-Wextra", "-s", "-o"])
                .arg(&dll)
                .arg(&source)
                .arg(&def)
                .arg("-lbcrypt")
                .run(&self.root)?;
        }
        let installed = self
            .prefix
            .join("drive_c")
            .join("windows")
            .join("system32")
            .join("bcryptprimitives.dll");
        let built = std::fs::read(&dll)?;
        if std::fs::read(&installed).ok().as_deref() != Some(&built[..]) {
            std::fs::write(&installed, &built)?;
            println!("Installed the ProcessPrng shim as {}.", installed.display());
        }
        Ok(())
    }
}

/// Points a run of Debian's cargo at Debian's compiler and rustdoc, with
/// nightly features allowed for `-Zbuild-std`.
fn debian_toolchain(job: Job) -> Job {
    job.env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTDOC", DEBIAN_RUSTDOC)
        // `cargo run` points these at the rustup toolchain; the Debian
        // toolchain must not pick up its libraries or its settings.
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
}

/// Whether `output` is missing or older than any of `inputs`.
fn is_stale(output: &Path, inputs: &[&Path]) -> bool {
    let Ok(built) = output.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    inputs.iter().any(|input| {
        input
            .metadata()
            .and_then(|m| m.modified())
            .map(|changed| changed > built)
            .unwrap_or(true)
    })
}

/// The installed Wine's version line, such as `wine-8.0 (Debian 8.0~repack-4)`.
fn wine_version() -> Result<String> {
    let output = std::process::Command::new("wine")
        .arg("--version")
        .env("WINEDEBUG", "-all")
        .output()
        .map_err(|e| fail!("Cannot run `wine --version`: {e}."))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
