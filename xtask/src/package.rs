//! The checks that keep the library publishable: the package builds from its
//! `.crate` alone (`cargo publish --dry-run`), the manifest's `rust-version`
//! is confirmed by a build with that toolchain, and the README's "Use it"
//! section is what a newcomer's project really needs.

use std::path::{Path, PathBuf};

use crate::cmd::{Job, Result};
use crate::fail;

/// The library's package name (the crate it gives programs is `eventcore`).
pub const LIBRARY: &str = "eventcore-driver";

/// `cargo publish --dry-run` of the library: packages it, then builds the
/// packaged crate on its own, with its dependencies from the registry.
pub fn publish_dry_run(root: &Path) -> Result<()> {
    cargo()
        .args(["publish", "--dry-run", "--allow-dirty", "-p", LIBRARY])
        .run(root)
}

/// Checks the library with the toolchain its `rust-version` names: the
/// oldest rustup toolchain on the machine must be that version (or older),
/// and the library must build with it.
pub fn rust_version(root: &Path) -> Result<()> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let wanted = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .ok_or_else(|| fail!("the workspace manifest has no rust-version"))?;
    let wanted_version = parse_version(&wanted).ok_or_else(|| fail!("rust-version `{wanted}` is not a version"))?;
    let list = Job::new("rustup").args(["toolchain", "list"]).output(root)?;
    let mut toolchains = Vec::new();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let version = rustup_run(name, "rustc").arg("--version").output(root).ok();
        if let Some(v) = version
            .as_deref()
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(parse_version)
        {
            toolchains.push((v, name.to_owned()));
        }
    }
    toolchains.sort();
    let Some((oldest, name)) = toolchains.first().cloned() else {
        return Err(fail!("no rustup toolchain answers `rustc --version`"));
    };
    println!(
        "rust-version is {wanted}; the oldest toolchain here is {name} ({}.{}.{}).",
        oldest.0, oldest.1, oldest.2
    );
    if oldest > wanted_version {
        return Err(fail!(
            "rust-version {wanted} cannot be confirmed: the oldest toolchain here is {}.{}.{}; raise the field",
            oldest.0,
            oldest.1,
            oldest.2
        ));
    }
    rustup_run(&name, "cargo")
        .args([
            "check",
            "-p",
            LIBRARY,
            "--lib",
            "--all-features",
            "--ignore-rust-version",
        ])
        .arg("--target-dir")
        .arg(root.join("target").join("rust-version"))
        .run(root)
}

/// Builds and runs the README's "Use it" project outside the workspace: its
/// `[dependencies]` block (with the path pointed at this checkout) and its
/// `src/main.rs`, exactly as a newcomer would copy them.
pub fn newcomer(root: &Path) -> Result<()> {
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let section = readme
        .split("\n## Use it")
        .nth(1)
        .ok_or_else(|| fail!("README.md has no \"## Use it\" section"))?;
    let section = section.split("\n## ").next().unwrap_or(section);
    let toml = code_block(section, "toml").ok_or_else(|| fail!("the \"Use it\" section has no toml block"))?;
    let main = code_block(section, "rust").ok_or_else(|| fail!("the \"Use it\" section has no rust block"))?;
    let shown = "path = \"../eventcore/crates/eventcore\"";
    if !toml.contains(shown) {
        return Err(fail!("the README's dependency line no longer says `{shown}`"));
    }
    let library = root.join("crates").join("eventcore");
    let toml = toml.replace(shown, &format!("path = {:?}", library.display().to_string()));
    let dir = newcomer_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"newcomer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n{toml}"),
    )?;
    std::fs::write(dir.join("src").join("main.rs"), main)?;
    println!("The README's project is in {}.", dir.display());
    let result = cargo()
        .arg("run")
        .env("CARGO_TARGET_DIR", root.join("target").join("newcomer"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .run(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Every `unsafe` block of the Windows backend has a `// SAFETY:` comment
/// right above it (or on its line). Clippy's `undocumented_unsafe_blocks`
/// holds the rule for the code built on Linux; no clippy can build for the
/// Windows target here, so this reads the Windows sources instead.
pub fn windows_safety_comments(root: &Path) -> Result<()> {
    let dir = root.join("crates/eventcore/src/sys/windows");
    let mut missing = Vec::new();
    let mut blocks = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !opens_unsafe_block(line) {
                continue;
            }
            blocks += 1;
            let documented = line.contains("SAFETY:")
                || lines[..i]
                    .iter()
                    .rev()
                    .map(|l| l.trim())
                    .take_while(|l| l.starts_with("//"))
                    .any(|l| l.contains("SAFETY:"));
            if !documented {
                missing.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    println!("{blocks} unsafe blocks in {}.", dir.display());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(fail!(
            "unsafe blocks without a `// SAFETY:` comment: {}",
            missing.join(", ")
        ))
    }
}

/// Whether `line` opens an `unsafe { … }` block (not an unsafe fn, impl or
/// extern, and not a comment).
fn opens_unsafe_block(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("unsafe").any(|(at, _)| {
        let before_ok = at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric() && code.as_bytes()[at - 1] != b'_';
        before_ok && code[at + "unsafe".len()..].trim_start().starts_with('{')
    })
}

/// A directory outside the workspace (cargo would otherwise take the project
/// for a member of it).
fn newcomer_dir() -> PathBuf {
    std::env::temp_dir().join(format!("eventcore-newcomer-{}", std::process::id()))
}

/// The first fenced code block of `lang` in `text`.
fn code_block(text: &str, lang: &str) -> Option<String> {
    let start = text.find(&format!("```{lang}\n"))? + lang.len() + 4;
    let len = text[start..].find("```")?;
    Some(text[start..start + len].to_owned())
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn rustup_run(toolchain: &str, program: &str) -> Job {
    Job::new("rustup")
        .args(["run", toolchain, program])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
}

/// The cargo that runs `cargo xtask`, i.e. the rustup toolchain's.
fn cargo() -> Job {
    Job::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_blocks() {
        assert_eq!(parse_version("1.95"), Some((1, 95, 0)));
        assert_eq!(parse_version("1.97.0-nightly"), Some((1, 97, 0)));
        let text = "a\n```toml\nx = 1\n```\n```rust\nfn main() {}\n```\n";
        assert_eq!(code_block(text, "toml").as_deref(), Some("x = 1\n"));
        assert_eq!(code_block(text, "rust").as_deref(), Some("fn main() {}\n"));
    }

    #[test]
    fn unsafe_blocks_are_recognised() {
        assert!(opens_unsafe_block("    let x = unsafe { f() };"));
        assert!(opens_unsafe_block("unsafe {"));
        assert!(!opens_unsafe_block("unsafe fn f() {"));
        assert!(!opens_unsafe_block("unsafe impl Send for X {}"));
        assert!(!opens_unsafe_block("// unsafe { in a comment }"));
        assert!(!opens_unsafe_block("let not_unsafe = 1; { }"));
    }
}
