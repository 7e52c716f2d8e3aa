//! Builds the eBPF programs (`../probe-ebpf`) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, as aya-build does, and embeds them (cfg `eco2ai_ebpf`).
//! Where bpf-linker or the nightly rust-src is missing the probe is built without them
//! and says so; `ECO2AI_REQUIRE_EBPF=1` (set by `cargo xtask test`) makes that an error.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|p| env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn skip(why: &str) {
    if env::var("ECO2AI_REQUIRE_EBPF").is_ok_and(|v| v == "1") {
        eprintln!("eBPF programs are required (ECO2AI_REQUIRE_EBPF=1) but: {why}");
        std::process::exit(1);
    }
    println!(
        "cargo:warning=eBPF programs not built ({why}); the probe will take steps through the marker socket. `cargo xtask setup` installs the toolchain."
    );
}

fn nightly_has_rust_src() -> bool {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let sysroot = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
        }
        _ => false,
    }
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(eco2ai_ebpf)");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let ebpf_dir = manifest.join("../probe-ebpf");
    rerun_if(&manifest, &ebpf_dir);
    if env::var("ECO2AI_SKIP_EBPF").is_ok_and(|v| v == "1") {
        return skip("ECO2AI_SKIP_EBPF=1");
    }
    if !on_path("bpf-linker") {
        return skip("bpf-linker not found on PATH");
    }
    if !nightly_has_rust_src() {
        return skip("the nightly toolchain or its rust-src component is missing");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    let target_dir = out_dir.join("ebpf-target");
    let out = match ebpf_build(&ebpf_dir, &target_dir).output() {
        Ok(o) => o,
        Err(e) => return skip(&format!("could not run rustup: {e}")),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        for line in &lines[lines.len().saturating_sub(30)..] {
            println!("cargo:warning={line}");
        }
        return skip("building probe-ebpf failed (see the warnings above)");
    }
    let built = target_dir.join("bpfel-unknown-none/release/eco2ai-probe-ebpf");
    if let Err(e) = std::fs::copy(&built, out_dir.join("eco2ai-probe-ebpf")) {
        return skip(&format!("copying {}: {e}", built.display()));
    }
    println!("cargo:rustc-cfg=eco2ai_ebpf");
}

/// What makes the eBPF build run again: its sources, the shared layouts, the two
/// switches, and a newly installed bpf-linker.
fn rerun_if(manifest: &Path, ebpf_dir: &Path) {
    for p in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("../probe-common/src").display()
    );
    println!("cargo:rerun-if-env-changed=ECO2AI_SKIP_EBPF");
    println!("cargo:rerun-if-env-changed=ECO2AI_REQUIRE_EBPF");
    if let Some(home) = env::var_os("CARGO_HOME")
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into()))
    {
        // Rebuild once bpf-linker is installed.
        println!(
            "cargo:rerun-if-changed={}",
            Path::new(&home).join("bin").display()
        );
    }
}

/// The nightly cargo build of probe-ebpf for bpfel-unknown-none, in an environment of
/// its own (this build's compiler, flags and target dir are not its).
fn ebpf_build(ebpf_dir: &Path, target_dir: &Path) -> Command {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let flags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
    ]
    .join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ])
    .arg("--manifest-path")
    .arg(ebpf_dir.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir)
    .env("CARGO_ENCODED_RUSTFLAGS", flags);
    for key in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cmd.env_remove(key);
    }
    cmd
}
