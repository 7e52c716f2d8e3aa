//! The build's commit for `hf_training_plugin_info{commit}`: `git rev-parse --short HEAD`,
//! or "unknown" where git or the repository is absent (a crate tarball, a copied tree).

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit =
        git(&manifest, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ECO2AI_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it names (a
    // commit). Only existing paths are named: a missing one would rerun every build.
    println!("cargo:rerun-if-changed=build.rs");
    // Found without git too: a build whose git call failed once (a lock, another
    // GIT_DIR in its environment) must still rerun when HEAD moves, not keep "unknown".
    let git_dir = git(&manifest, &["rev-parse", "--absolute-git-dir"])
        .map(PathBuf::from)
        .or_else(|| {
            manifest
                .ancestors()
                .map(|d| d.join(".git"))
                .find(|g| g.is_dir())
        });
    println!("cargo:rerun-if-env-changed=GIT_DIR");
    if let Some(git_dir) = git_dir {
        let head = git_dir.join("HEAD");
        if head.exists() {
            println!("cargo:rerun-if-changed={}", head.display());
        }
        let branch = git(&manifest, &["symbolic-ref", "-q", "HEAD"]).or_else(|| {
            let head = std::fs::read_to_string(&head).ok()?;
            Some(head.strip_prefix("ref: ")?.trim().to_string())
        });
        if let Some(branch) = branch {
            let reference = git_dir.join(branch);
            if reference.exists() {
                println!("cargo:rerun-if-changed={}", reference.display());
            }
        }
        let packed = git_dir.join("packed-refs");
        if packed.exists() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
}
