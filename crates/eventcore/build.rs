//! Tells the compiler which targets have a backend, and says so at build time
//! for those that do not yet.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(eventcore_backend)");
    // Set by hand (RUSTFLAGS="--cfg loom") for the loom model of `remote`.
    println!("cargo::rustc-check-cfg=cfg(loom)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "windows" {
        println!("cargo::rustc-cfg=eventcore_backend");
    } else {
        println!(
            "cargo::warning=eventcore has no backend for target_os = \"{os}\" yet: only the \
             backend-neutral parts (handle table, timer queue, statuses) are built; `Driver` \
             is not available. "
        );
    }
}
