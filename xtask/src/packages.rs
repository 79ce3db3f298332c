//! The Debian packages each test leg needs, and installing the missing ones.

use std::path::Path;

use crate::cmd::{find_program, Job, Result};
use crate::fail;

/// Something a package puts on the machine, used to tell whether it works.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// A program that must be found on `PATH` (or in the sbin directories).
    Program(&'static str),
    /// A file or directory that must exist.
    File(&'static str),
}

/// One Debian package and what shows that it is installed.
#[derive(Clone, Copy, Debug)]
pub struct Package {
    /// The Debian package name.
    pub name: &'static str,
    /// What the package installs that the tasks use.
    pub probes: &'static [Probe],
}

/// The packages the Linux leg needs: `ip` to set up the test network
/// namespace and `unshare` (and `mount`) to enter it, and libclang, without
/// which the workspace (its benchmark crate) does not build.
pub const LINUX: &[Package] = &[
    Package {
        name: "iproute2",
        probes: &[Probe::Program("ip")],
    },
    Package {
        name: "util-linux",
        probes: &[Probe::Program("unshare")],
    },
    LIBCLANG,
    LIBCLANG_HEADERS,
];

/// libclang, loaded at build time by bindgen in the build script of
/// `libuv-sys2` (the benchmark builds libuv from source and generates its
/// bindings).
const LIBCLANG: Package = Package {
    name: "libclang1-14",
    probes: &[Probe::File("/usr/lib/llvm-14/lib/libclang.so.1")],
};

/// clang's own headers (`stddef.h` …), which bindgen needs to parse `uv.h`.
const LIBCLANG_HEADERS: Package = Package {
    name: "libclang-common-14-dev",
    probes: &[Probe::File("/usr/lib/llvm-14/lib/clang")],
};

/// The packages `cargo xtask bench` (and the benchmark part of `cargo xtask
/// demo`) needs to build the benchmark.
pub const BENCH: &[Package] = &[LIBCLANG, LIBCLANG_HEADERS];

/// What `cargo xtask bench --http` needs besides: the `wrk` load generator.
pub const HTTP: &[Package] = &[Package {
    name: "wrk",
    probes: &[Probe::Program("wrk")],
}];

/// The packages the Windows leg needs: Debian's own Rust toolchain (which
/// can build the standard library for `x86_64-pc-windows-gnu` from source),
/// the MinGW-w64 cross linker, and Wine to run the test executables.
pub const WINDOWS: &[Package] = &[
    Package {
        name: "rustc-web",
        probes: &[Probe::File("/usr/bin/rustc"), Probe::File("/usr/bin/rustdoc")],
    },
    Package {
        name: "cargo-web",
        probes: &[Probe::File("/usr/bin/cargo")],
    },
    Package {
        name: "rust-web-src",
        probes: &[Probe::File("/usr/lib/rustlib/src/rust/library/Cargo.lock")],
    },
    Package {
        name: "gcc-mingw-w64-x86-64",
        probes: &[Probe::Program("x86_64-w64-mingw32-gcc")],
    },
    Package {
        name: "wine",
        probes: &[Probe::Program("wine"), Probe::Program("wineserver")],
    },
    Package {
        name: "wine64",
        probes: &[Probe::File("/usr/lib/wine/wine64")],
    },
];

/// What `cargo xtask screenshot` needs besides the Windows packages: a
/// virtual X server for Wine's X11 driver, and ImageMagick's `import` to
/// take the picture (its `convert` is not probed: a stand-in may exist).
pub const SCREENSHOT: &[Package] = &[
    Package {
        name: "xvfb",
        probes: &[Probe::Program("Xvfb")],
    },
    Package {
        name: "imagemagick",
        probes: &[Probe::File("/usr/bin/import")],
    },
];

impl Package {
    /// Whether dpkg records the package as installed (when dpkg exists) and
    /// everything the package should provide is present.
    fn is_present(&self) -> bool {
        let recorded = match dpkg_status(self.name) {
            Some(status) => status == "install ok installed",
            None => true,
        };
        recorded
            && self.probes.iter().all(|probe| match probe {
                Probe::Program(name) => find_program(name).is_some(),
                Probe::File(path) => Path::new(path).exists(),
            })
    }
}

/// Whether every package in `wanted` is installed (without a word).
pub fn all_present(wanted: &[Package]) -> bool {
    wanted.iter().all(Package::is_present)
}

/// Asks dpkg for a package's status; `None` if dpkg itself is unavailable.
fn dpkg_status(name: &str) -> Option<String> {
    let output = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    // dpkg-query exits with 1 for a package it has never heard of.
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether the current user is root.
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure every package in `wanted` is installed, installing the
/// missing ones with apt-get when running as root.
pub fn ensure(wanted: &[Package], dir: &Path) -> Result<()> {
    let missing: Vec<&Package> = wanted.iter().filter(|p| !p.is_present()).collect();
    if missing.is_empty() {
        let names: Vec<&str> = wanted.iter().map(|p| p.name).collect();
        println!("All needed packages are installed: {}.", names.join(", "));
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    let apt_line = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
        names.join(" ")
    );
    if !is_root() {
        return Err(fail!(
            "These packages are missing: {}. Install them as root with:\n    {apt_line}",
            names.join(", ")
        ));
    }
    println!("Installing the missing packages: {}.", names.join(", "));
    Job::new("apt-get")
        .args(["-q", "update"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run(dir)?;
    Job::new("apt-get")
        .args(["-q", "install", "-y"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run(dir)?;
    let still: Vec<&str> = missing.iter().filter(|p| !p.is_present()).map(|p| p.name).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(fail!(
            "apt-get finished, but these packages still do not provide what the tests need: {}.",
            still.join(", ")
        ))
    }
}
