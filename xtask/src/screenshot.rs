//! `cargo xtask screenshot`: runs the Windows GUI example
//! (`crates/eventcore/examples/gui.rs`) under Wine on a virtual X server and
//! saves a picture of its window as `docs/gui-example.png`.
//!
//! The example is cross-built like the Windows leg's tests. It runs in a Wine
//! prefix of its own, `target/wine-prefix-x11`, which keeps Wine's default
//! X11 graphics driver (the tests' prefix uses the null driver, so their
//! windows are never drawn). Xvfb has no window manager, so the window has no
//! frame: the picture shows its client area.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{heading, Job, Result};
use crate::windows::Layout;
use crate::{fail, packages};

/// How long the example runs (`--seconds`), and when the picture is taken.
const RUN_SECONDS: u64 = 6;
const SHOOT_AFTER: Duration = Duration::from_secs(4);
/// How long the example may take to end after its `--seconds` (closing the
/// window takes Wine about 2 s without a window manager).
const GRACE_SECONDS: u64 = 20;
/// The virtual screen; the picture is trimmed to the window.
const SCREEN: &str = "1024x768x24";
/// Where the picture goes, relative to the workspace root.
const OUTPUT: &str = "docs/gui-example.png";

/// Runs `cargo xtask screenshot`.
pub fn run(root: &Path) -> Result<ExitCode> {
    heading("System packages");
    let mut wanted = packages::WINDOWS.to_vec();
    wanted.extend_from_slice(packages::SCREENSHOT);
    packages::ensure(&wanted, root)?;

    heading("Cross-building examples/gui.rs for x86_64-pc-windows-gnu");
    let layout = Layout::new(root).with_x11_prefix();
    layout.cargo_build_example("gui").run(root)?;
    let exe = layout.example_exe("gui");
    if !exe.is_file() {
        return Err(fail!("The build finished but {} is missing.", exe.display()));
    }

    heading("The Wine prefix for X11");
    layout.prepare_prefix()?;
    // Wine processes of this prefix left over from an earlier run would
    // serve the new one with a stale display.
    layout.kill_wineserver()?;

    heading("Running the example under Wine on Xvfb");
    let log_dir = root.join("target").join("xtask-screenshot");
    std::fs::create_dir_all(&log_dir)?;
    let mut session = Session {
        layout: &layout,
        xvfb: None,
        gui: None,
    };
    let display = session.start_xvfb(root, &log_dir)?;
    // Taken next to the logs first, so that a failed run leaves the picture
    // in docs/ as it was.
    let taken = log_dir.join("gui-example.png");
    let result = session.shoot(root, &exe, &display, &taken);
    session.stop();
    let (width, height) = result?;
    let output = root.join(OUTPUT);
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(&taken, &output)?;
    println!("Saved {OUTPUT} ({width} × {height} pixels).");
    Ok(ExitCode::SUCCESS)
}

/// The processes a screenshot run starts; [`Session::stop`] (or dropping it)
/// ends them.
struct Session<'a> {
    layout: &'a Layout,
    xvfb: Option<Child>,
    gui: Option<Child>,
}

impl Session<'_> {
    /// Starts Xvfb on a display it picks itself (`-displayfd`: the first free
    /// one, written to our pipe once the server accepts connections) and
    /// returns that display, such as `:1`.
    fn start_xvfb(&mut self, root: &Path, log_dir: &Path) -> Result<String> {
        let log = log_dir.join("xvfb.log");
        let job = Job::new("Xvfb").args(["-displayfd", "1", "-screen", "0", SCREEN, "-nolisten", "tcp", "-br"]);
        job.echo();
        let mut child = job
            .command(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| fail!("Could not start Xvfb: {e}."))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.xvfb = Some(child);
        let (sender, receiver) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next().and_then(|l| l.ok()));
            // Keep reading, so that Xvfb never writes into a closed pipe.
            for _ in lines {}
        });
        match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(number)) if number.trim().parse::<u32>().is_ok() => {
                let display = format!(":{}", number.trim());
                println!("Xvfb is running on display {display}.");
                Ok(display)
            }
            _ => Err(fail!(
                "Xvfb did not report a display within 20 s; see {}.",
                log.display()
            )),
        }
    }

    /// Runs the example, takes the picture while it runs, waits for it to
    /// close its window, and returns the picture's size.
    fn shoot(&mut self, root: &Path, exe: &Path, display: &str, output: &Path) -> Result<(u32, u32)> {
        let gui = self
            .layout
            .wine_env(Job::new("wine"))
            .arg(exe)
            .args(["--async", "--seconds", &RUN_SECONDS.to_string()])
            .env("DISPLAY", display);
        gui.echo();
        let started = Instant::now();
        let child = gui
            .command(root)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| fail!("Could not start wine: {e}."))?;
        self.gui = Some(child);
        thread::sleep(SHOOT_AFTER);
        if let Some(status) = self.gui.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(fail!(
                "The example ended before the picture was taken ({}).",
                crate::cmd::describe(status)
            ));
        }
        // The root window, trimmed to what is not the (black) background:
        // the example's window.
        Job::new("import")
            .args(["-window", "root", "-trim", "+repage"])
            .arg(output)
            .env("DISPLAY", display)
            .run(root)?;
        let size = png_size(output)?;
        // The example closes its window after RUN_SECONDS; give it time to
        // shut down cleanly and report.
        let deadline = started + Duration::from_secs(RUN_SECONDS + GRACE_SECONDS);
        let status = loop {
            let child = self.gui.as_mut().expect("started above");
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            thread::sleep(Duration::from_millis(100));
        };
        match status {
            Some(status) if status.success() => {}
            Some(status) => {
                return Err(fail!("The example failed ({}).", crate::cmd::describe(status)));
            }
            None => {
                return Err(fail!(
                    "The example did not end within {GRACE_SECONDS} s of its --seconds {RUN_SECONDS}."
                ));
            }
        }
        // Nothing but a black screen trims to a single pixel.
        if size.0 < 200 || size.1 < 100 {
            return Err(fail!(
                "{} is only {} × {} pixels: the window was not on the screen.",
                output.display(),
                size.0,
                size.1
            ));
        }
        Ok(size)
    }

    /// Ends the example (if still running), this prefix's wineserver and
    /// every Wine process it serves, and Xvfb.
    fn stop(&mut self) {
        if let Some(mut gui) = self.gui.take() {
            if gui.try_wait().ok().flatten().is_none() {
                let _ = gui.kill();
            }
            let _ = gui.wait();
        }
        let _ = self.layout.kill_wineserver();
        if let Some(mut xvfb) = self.xvfb.take() {
            // SIGTERM lets Xvfb remove its lock file and socket; SIGKILL only
            // if it does not end within a few seconds.
            let _ = Job::new("kill")
                .args(["-TERM", &xvfb.id().to_string()])
                .quiet(Path::new("/"), None);
            let deadline = Instant::now() + Duration::from_secs(5);
            while xvfb.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = xvfb.kill();
            let _ = xvfb.wait();
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The width and height in a PNG file's header.
fn png_size(path: &Path) -> Result<(u32, u32)> {
    let bytes = std::fs::read(path).map_err(|e| fail!("Cannot read {}: {e}.", path.display()))?;
    // The signature (8 bytes), then the IHDR chunk: length, type, width, height.
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return Err(fail!("{} is not a PNG file.", path.display()));
    }
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    Ok((word(16), word(20)))
}
