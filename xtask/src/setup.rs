//! `cargo xtask setup`: what a fresh machine lacks for the eBPF programs, per
//! shared/notes/ebpf-toolchain.md: the nightly toolchain's rust-src, and bpf-linker
//! 0.13 built against the nightly toolchain's own libLLVM (Debian's LLVM is too old).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

const BPF_LINKER: &str = "0.13.0";

fn output(program: &str, args: &[&str]) -> Result<String> {
    let o = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !o.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/eco2ai")
}

/// `rustc +nightly -vV` facts: (commit hash, LLVM major version).
fn nightly_facts() -> Result<(String, String)> {
    let vv = output("rustup", &["run", "nightly", "rustc", "-vV"])?;
    let field = |k: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let hash = field("commit-hash:").context("no commit-hash in rustc -vV")?;
    let llvm = field("LLVM version:").context("no LLVM version in rustc -vV")?;
    let major = llvm.split('.').next().unwrap_or_default().to_string();
    Ok((hash, major))
}

fn ensure_nightly() -> Result<()> {
    if output("rustup", &["run", "nightly", "rustc", "--version"]).is_ok() {
        return Ok(());
    }
    eprintln!("xtask: installing the nightly toolchain (minimal profile)");
    output(
        "rustup",
        &["toolchain", "install", "nightly", "--profile", "minimal"],
    )
    .map(drop)
}

fn ensure_rust_src() -> Result<()> {
    let sysroot = PathBuf::from(output(
        "rustup",
        &["run", "nightly", "rustc", "--print", "sysroot"],
    )?);
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the nightly toolchain");
    output(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
    .map(drop)
}

/// bpf-linker linked against nightly's libLLVM; rebuilt when nightly changes.
fn ensure_bpf_linker() -> Result<()> {
    let (hash, major) = nightly_facts()?;
    let stamp = cache_dir().join("bpf-linker.stamp");
    let want = format!("{BPF_LINKER} {hash}");
    let have_version = output("bpf-linker", &["--version"]).is_ok_and(|v| v.contains(BPF_LINKER));
    if have_version && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return Ok(());
    }
    let sysroot_lib = PathBuf::from(output(
        "rustup",
        &["run", "nightly", "rustc", "--print", "sysroot"],
    )?)
    .join("lib");
    let lib = std::fs::read_dir(&sysroot_lib)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        .with_context(|| format!("no libLLVM in {}", sysroot_lib.display()))?;
    // A prefix whose lib/ holds libLLVM.so (to link) and its versioned name (to run).
    let prefix = cache_dir().join("llvm-prefix");
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)?;
    for name in ["libLLVM.so", lib.as_str()] {
        let link = plib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(sysroot_lib.join(&lib), &link)?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER} against nightly's LLVM {major} (1-3 minutes)"
    );
    let status = Command::new("cargo")
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER}"),
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status})");
    }
    std::fs::write(&stamp, want)?;
    Ok(())
}

/// Debian packages the tests use, each with a file that says it is installed:
/// promtool (metrics exposition, config, rules and their unit tests), amtool
/// (Alertmanager config), VictoriaMetrics as a remote_write receiver, Chromium to check
/// that report.html renders headless, DejaVu for the PNG figures' labels; Slurm, munge
/// and iproute2 for the namespace cluster's tests (cluster/); openssl and curl for the
/// TLS tests (a private CA, a real client).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("prometheus", "/usr/bin/promtool"),
    ("prometheus-alertmanager", "/usr/bin/amtool"),
    ("victoria-metrics", "/usr/bin/victoria-metrics"),
    ("chromium", "/usr/bin/chromium"),
    ("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu"),
    ("slurm-wlm", "/usr/sbin/slurmctld"),
    ("munge", "/usr/sbin/munged"),
    ("iproute2", "/bin/ip"),
    ("openssl", "/usr/bin/openssl"),
    ("curl", "/usr/bin/curl"),
];

fn ensure_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, file)| !std::path::Path::new(file).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("xtask: not root, so not installing {list}: the tests that need them skip");
        return Ok(());
    }
    eprintln!("xtask: installing Debian's {list}");
    output("apt-get", &["update", "-qq"])?;
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {list} failed ({status})");
    }
    Ok(())
}

/// Installs what the eBPF build and the tests need; an error says which step failed.
pub fn setup() -> Result<()> {
    ensure_debian_packages().context("Debian packages")?;
    ensure_nightly().context("nightly toolchain")?;
    ensure_rust_src().context("rust-src for nightly")?;
    ensure_bpf_linker().context("bpf-linker")?;
    Ok(())
}
